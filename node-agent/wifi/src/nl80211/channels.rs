//! Channels: what a radio may do on each one under the regulatory domain (`iw phy X info`),
//! what it measured there (`iw dev X survey dump`), and the channel switch announcement that
//! moves the mesh (`iw dev X switch freq`).

use futures_util::TryStreamExt;
use wl_nl80211::Nl80211Attr;

use super::{cmd, ifindex_attr, with_timeout, Error, Nl80211, MAX_DUMP_ENTRIES};
use crate::raw_nla::{self, NlaWriter};

impl Nl80211 {
    /// `iw dev X survey dump`: what the radio behind interface `ifindex` measured on each
    /// channel. A malformed entry is logged and skipped.
    pub async fn survey(&self, ifindex: u32) -> Result<Vec<crate::survey::SurveyInfo>, Error> {
        let msgs = self
            .raw(cmd::GET_SURVEY, ifindex_attr(ifindex), true)
            .await?;
        let mut out = Vec::new();
        for m in msgs {
            match crate::survey::survey_from_attrs(&m.attrs) {
                Ok(Some(s)) => out.push(s),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a malformed survey entry"),
            }
        }
        Ok(out)
    }

    /// `iw phy X info`'s frequency lines: what radio `wiphy` may do on each channel under the
    /// current regulatory domain, and the widest width its hardware supports there.
    pub async fn radio_channels(
        &self,
        wiphy: u32,
    ) -> Result<Vec<crate::survey::ChannelCaps>, Error> {
        use wl_nl80211::Nl80211FrequencyInfo;
        use wl_nl80211::{Ieee80211HtCaps, Ieee80211VhtCapInfo, Nl80211BandInfo};
        // `enum nl80211_dfs_state`: USABLE 0, UNAVAILABLE 1 (radar seen), AVAILABLE 2.
        const DFS_UNAVAILABLE: u32 = 1;
        use trellis_proto::channel::{Band, Width};
        let cmd = "GET_WIPHY";
        let mut stream = self.handle.clone().wireless_physic().get().execute().await;
        // A split dump spreads one radio over several messages; channels are collected from all.
        let mut out: Vec<crate::survey::ChannelCaps> = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            let attrs = &msg.payload.attributes;
            if !attrs
                .iter()
                .any(|a| matches!(a, Nl80211Attr::Wiphy(w) if *w == wiphy))
            {
                continue;
            }
            for a in attrs {
                let Nl80211Attr::WiphyBands(bands) = a else {
                    continue;
                };
                for band in bands {
                    let mut widest = Width::Mhz20;
                    for info in &band.info {
                        match info {
                            Nl80211BandInfo::HtCapa(c)
                                if c.contains(Ieee80211HtCaps::SupWidth2040) =>
                            {
                                widest = widest.max(Width::Mhz40)
                            }
                            Nl80211BandInfo::VhtCap(c) => {
                                widest = widest.max(Width::Mhz80);
                                if c.intersects(Ieee80211VhtCapInfo::SuppChanWidthMask) {
                                    widest = Width::Mhz160;
                                }
                            }
                            _ => {}
                        }
                    }
                    for info in &band.info {
                        let Nl80211BandInfo::Freqs(freqs) = info else {
                            continue;
                        };
                        for f in freqs {
                            let mut caps = crate::survey::ChannelCaps {
                                freq_mhz: 0,
                                allowed: true,
                                dfs: false,
                                radar_unavailable: false,
                                max_width: widest,
                            };
                            let (mut no_minus, mut no_plus) = (false, false);
                            for fi in &f.info {
                                match fi {
                                    Nl80211FrequencyInfo::Freq(mhz) => caps.freq_mhz = *mhz,
                                    Nl80211FrequencyInfo::Disabled
                                    | Nl80211FrequencyInfo::NoIr
                                    | Nl80211FrequencyInfo::NoIbss => caps.allowed = false,
                                    Nl80211FrequencyInfo::Radar => caps.dfs = true,
                                    Nl80211FrequencyInfo::DfsState(state) => {
                                        caps.radar_unavailable = u32::from(state) == DFS_UNAVAILABLE
                                    }
                                    Nl80211FrequencyInfo::NoHt40Minus => no_minus = true,
                                    Nl80211FrequencyInfo::NoHt40Plus => no_plus = true,
                                    Nl80211FrequencyInfo::No80Mhz => {
                                        caps.max_width = caps.max_width.min(Width::Mhz40)
                                    }
                                    Nl80211FrequencyInfo::No160Mhz => {
                                        caps.max_width = caps.max_width.min(Width::Mhz80)
                                    }
                                    _ => {}
                                }
                            }
                            if no_minus && no_plus {
                                caps.max_width = Width::Mhz20;
                            }
                            // 40 MHz on 2.4 GHz takes most of the band: the mesh stays at 20.
                            if Band::of(caps.freq_mhz) == Some(Band::Ghz2) {
                                caps.max_width = Width::Mhz20;
                            }
                            if caps.freq_mhz != 0
                                && !out.iter().any(|c| c.freq_mhz == caps.freq_mhz)
                                && out.len() < MAX_DUMP_ENTRIES
                            {
                                out.push(caps);
                            }
                        }
                    }
                }
            }
        }
        out.sort_by_key(|c| c.freq_mhz);
        Ok(out)
    }

    /// `iw dev X switch freq F [WIDTH CENTER] [beacons N]`: a channel switch announcement on
    /// the mesh interface, `count` beacons ahead (mac80211 also sends the CSA action frame,
    /// and peers repeat it through the mesh). mac80211 refuses a mesh switch that changes
    /// the width or the band; see [`crate::channel::plan`].
    pub async fn channel_switch(
        &self,
        ifindex: u32,
        freq_mhz: u32,
        width: trellis_proto::channel::Width,
        center_freq_mhz: u32,
        count: u8,
    ) -> Result<(), Error> {
        self.raw(
            cmd::CHANNEL_SWITCH,
            channel_switch_attrs(ifindex, freq_mhz, width, center_freq_mhz, count),
            false,
        )
        .await
        .map(|_| ())
    }
}

/// `enum nl80211_chan_width` for a width (20 MHz with HT, as mac80211 meshes run).
pub fn chan_width_value(width: trellis_proto::channel::Width) -> u32 {
    use trellis_proto::channel::Width;
    match width {
        Width::Mhz20 => 1,
        Width::Mhz40 => 2,
        Width::Mhz80 => 3,
        Width::Mhz160 => 5,
    }
}

fn channel_switch_attrs(
    ifindex: u32,
    freq_mhz: u32,
    width: trellis_proto::channel::Width,
    center_freq_mhz: u32,
    count: u8,
) -> Vec<u8> {
    NlaWriter::new()
        .u32(raw_nla::ATTR_IFINDEX, ifindex)
        .u32(raw_nla::ATTR_WIPHY_FREQ, freq_mhz)
        .u32(raw_nla::ATTR_CHANNEL_WIDTH, chan_width_value(width))
        .u32(raw_nla::ATTR_CENTER_FREQ1, center_freq_mhz)
        .u32(raw_nla::ATTR_CH_SWITCH_COUNT, u32::from(count))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_switch_carries_the_whole_chandef_and_the_count() {
        let attrs = channel_switch_attrs(4, 5180, trellis_proto::channel::Width::Mhz80, 5210, 10);
        let got: Vec<(u16, Vec<u8>)> = raw_nla::attrs(&attrs)
            .map(|a| a.map(|(k, v)| (k, v.to_vec())).expect("valid"))
            .collect();
        let u = |v: u32| v.to_ne_bytes().to_vec();
        assert_eq!(
            got,
            vec![
                (raw_nla::ATTR_IFINDEX, u(4)),
                (raw_nla::ATTR_WIPHY_FREQ, u(5180)),
                (raw_nla::ATTR_CHANNEL_WIDTH, u(3)),
                (raw_nla::ATTR_CENTER_FREQ1, u(5210)),
                (raw_nla::ATTR_CH_SWITCH_COUNT, u(10)),
            ]
        );
    }
}
