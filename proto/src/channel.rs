//! The mesh channel's vocabulary: what a router's radio hears on each channel (the nl80211
//! survey) and may use there (its capabilities under the regulatory domain), as agents report
//! it with their telemetry; channel numbers, bands and widths.
//!
//! The choice itself (which channel the whole home's mesh uses) is the controller's
//! (`controller/src/channel.rs`); this module only names things so both sides agree.

use serde::{Deserialize, Serialize};

/// Most radios one router reports a survey for (the mesh radios: one, two on a router that
/// runs a mesh point on both bands). With [`MAX_SURVEY_CHANNELS`] this keeps the survey under
/// ~25 KiB of JSON, well inside the agent API's 64 KiB body limit.
pub const MAX_SURVEY_RADIOS: usize = 2;
/// Most channels one radio's survey carries (2.4 GHz has 14, 5 GHz about 28, 6 GHz 59).
pub const MAX_SURVEY_CHANNELS: usize = 64;

/// A frequency band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Band {
    #[serde(rename = "2.4GHz")]
    Ghz2,
    #[serde(rename = "5GHz")]
    Ghz5,
    #[serde(rename = "6GHz")]
    Ghz6,
}

impl Band {
    /// The band a centre frequency lies in.
    pub fn of(freq_mhz: u32) -> Option<Band> {
        match freq_mhz {
            2412..=2484 => Some(Band::Ghz2),
            5150..=5895 => Some(Band::Ghz5),
            5925..=7125 => Some(Band::Ghz6),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Band::Ghz2 => "2.4 GHz",
            Band::Ghz5 => "5 GHz",
            Band::Ghz6 => "6 GHz",
        }
    }
}

/// The IEEE channel number of a 20 MHz channel's centre frequency (what `iw` prints).
pub fn channel_number(freq_mhz: u32) -> Option<u16> {
    let n = match Band::of(freq_mhz)? {
        Band::Ghz2 if freq_mhz == 2484 => 14,
        Band::Ghz2 => (freq_mhz.checked_sub(2407)?) / 5,
        Band::Ghz5 => (freq_mhz - 5000) / 5,
        Band::Ghz6 if freq_mhz == 5935 => 2,
        Band::Ghz6 => (freq_mhz.checked_sub(5950)?) / 5,
    };
    u16::try_from(n).ok()
}

/// The centre frequency of channel `number` in `band`.
pub fn channel_freq(band: Band, number: u16) -> Option<u32> {
    let n = u32::from(number);
    let f = match band {
        Band::Ghz2 if n == 14 => 2484,
        Band::Ghz2 => 2407 + 5 * n,
        Band::Ghz5 => 5000 + 5 * n,
        Band::Ghz6 if n == 2 => 5935,
        Band::Ghz6 => 5950 + 5 * n,
    };
    (Band::of(f) == Some(band) && channel_number(f) == Some(number)).then_some(f)
}

/// A channel width the mesh can run at.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Width {
    #[default]
    #[serde(rename = "20")]
    Mhz20,
    #[serde(rename = "40")]
    Mhz40,
    #[serde(rename = "80")]
    Mhz80,
    #[serde(rename = "160")]
    Mhz160,
}

impl Width {
    pub const ALL: [Width; 4] = [Width::Mhz20, Width::Mhz40, Width::Mhz80, Width::Mhz160];

    pub fn mhz(self) -> u32 {
        match self {
            Width::Mhz20 => 20,
            Width::Mhz40 => 40,
            Width::Mhz80 => 80,
            Width::Mhz160 => 160,
        }
    }

    /// Parses `20`, `40`, `80` or `160` (an optional `MHz` suffix is accepted).
    pub fn parse(s: &str) -> Result<Width, String> {
        let t = s
            .trim()
            .trim_end_matches("MHz")
            .trim_end_matches("mhz")
            .trim();
        Width::ALL
            .into_iter()
            .find(|w| w.mhz().to_string() == t)
            .ok_or_else(|| format!("width {s:?} is not one of 20, 40, 80, 160 (MHz)"))
    }
}

impl std::fmt::Display for Width {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MHz", self.mhz())
    }
}

/// One channel as a radio hears it and may use it: the survey counters
/// (`iw dev X survey dump`) and, from the radio's band list (`iw phy`), what the regulatory
/// domain and the hardware allow there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSurvey {
    pub freq_mhz: u32,
    /// The radio is on this channel now.
    #[serde(default)]
    pub in_use: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_dbm: Option<i8>,
    /// Milliseconds the radio listened on this channel (since the driver last reset the
    /// counters), and of those: sensed busy, receiving, transmitting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_ms: Option<u64>,
    /// The regulatory domain permits beaconing here (not disabled, not no-IR).
    #[serde(default)]
    pub allowed: bool,
    /// Radar detection is required here (a DFS channel).
    #[serde(default)]
    pub dfs: bool,
    /// The kernel marks the channel unavailable after a radar it (or a peer) detected.
    #[serde(default)]
    pub radar_unavailable: bool,
    /// The widest channel this 20 MHz channel may be part of (hardware and regulatory).
    #[serde(default)]
    pub max_width: Width,
}

impl ChannelSurvey {
    /// The share of listening time the channel was busy with others' traffic (busy minus our
    /// own transmissions), 0..=1; `None` when the driver reports no times.
    pub fn foreign_busy(&self) -> Option<f64> {
        let active = self.active_ms.filter(|a| *a > 0)?;
        let busy = self.busy_ms?;
        let own = self.tx_ms.unwrap_or(0);
        Some((busy.saturating_sub(own) as f64 / active as f64).clamp(0.0, 1.0))
    }
}

/// One radio's survey.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RadioSurvey {
    /// The radio's name (`phy0`).
    pub radio: String,
    /// This radio carries the 802.11s mesh interface.
    #[serde(default)]
    pub mesh: bool,
    /// At most [`MAX_SURVEY_CHANNELS`], in frequency order.
    #[serde(default)]
    pub channels: Vec<ChannelSurvey>,
}

impl RadioSurvey {
    pub fn channel(&self, freq_mhz: u32) -> Option<&ChannelSurvey> {
        self.channels.iter().find(|c| c.freq_mhz == freq_mhz)
    }
}

/// The channel the whole home's mesh uses, as the controller hands it out in the snapshot.
/// A new `generation` is a move: every router announces it (mesh channel switch) so that all
/// switch at `switch_at_unix` together; a router that joins later simply joins on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshChannel {
    /// The primary 20 MHz channel's centre.
    pub freq_mhz: u32,
    pub width: Width,
    /// The centre of the whole block (equal to `freq_mhz` at 20 MHz).
    pub center_freq_mhz: u32,
    /// Counts moves; an agent acts on a generation it has not seen.
    pub generation: u64,
    /// Unix seconds at which every router is on the new channel (the switch announcement's
    /// count is set so it ends then); 0 for a channel set before any router joined.
    #[serde(default)]
    pub switch_at_unix: u64,
    /// Why: "chosen from the survey", "set by a person", "radar on channel 52".
    #[serde(default)]
    pub reason: String,
}

impl MeshChannel {
    pub fn channel(&self) -> Option<u16> {
        channel_number(self.freq_mhz)
    }
}

/// Most radar sightings one telemetry report carries.
pub const MAX_RADAR_SEEN: usize = 8;

/// A radar this router's radio detected (NL80211_CMD_RADAR_DETECT, event "detected").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RadarSeen {
    pub freq_mhz: u32,
    /// When the radio reported it (the agent's clock, unix seconds).
    pub at_unix: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_numbers_match_iw() {
        assert_eq!(channel_number(2412), Some(1));
        assert_eq!(channel_number(2484), Some(14));
        assert_eq!(channel_number(5180), Some(36));
        assert_eq!(channel_number(5260), Some(52));
        assert_eq!(channel_number(5825), Some(165));
        assert_eq!(channel_number(5955), Some(1));
        assert_eq!(channel_number(900), None);
        for f in [2412, 2437, 2484, 5180, 5500, 5825, 5955, 6415] {
            let band = Band::of(f).expect("a wifi band");
            assert_eq!(
                channel_freq(band, channel_number(f).expect("numbered")),
                Some(f)
            );
        }
        assert_eq!(channel_freq(Band::Ghz5, 400), None);
    }

    #[test]
    fn widths_parse_or_say_what_is_allowed() {
        assert_eq!(Width::parse("80"), Ok(Width::Mhz80));
        assert_eq!(Width::parse("40MHz"), Ok(Width::Mhz40));
        let e = Width::parse("60").expect_err("not a width");
        assert!(e.contains("20, 40, 80, 160"), "{e}");
        assert_eq!(
            serde_json::to_string(&Width::Mhz160).expect("json"),
            "\"160\""
        );
    }

    #[test]
    fn foreign_busy_leaves_out_our_own_transmissions() {
        let c = ChannelSurvey {
            freq_mhz: 5180,
            active_ms: Some(1000),
            busy_ms: Some(400),
            tx_ms: Some(100),
            ..ChannelSurvey::default()
        };
        assert_eq!(c.foreign_busy(), Some(0.3));
        let unmeasured = ChannelSurvey {
            freq_mhz: 5180,
            ..ChannelSurvey::default()
        };
        assert_eq!(unmeasured.foreign_busy(), None);
    }
}
