//! The radio survey the agent reports with its telemetry: for each radio, what it hears on
//! every channel (NL80211_CMD_GET_SURVEY dump: noise, listening/busy/receive/transmit time,
//! the in-use flag) joined with what it may do there (GET_WIPHY band list: regulatory flags,
//! DFS, radar non-occupancy, widest width). The controller chooses the home's mesh channel
//! from every router's survey (`controller/src/channel.rs`); this module only measures.
//!
//! The survey attribute parser is hand written (see [`super::raw_nla`] for why raw
//! attributes) and fuzzed (`node-agent/fuzz`, target `nl80211_survey`).

use trellis_proto::channel::{
    ChannelSurvey, RadioSurvey, Width, MAX_SURVEY_CHANNELS, MAX_SURVEY_RADIOS,
};

use super::nl80211::{Error, Nl80211};
use super::raw_nla::{self, get_u32, get_u64, get_u8, NlaError};

/// `NL80211_SURVEY_INFO_*`. `wl-nl80211` 0.8 types these but drops `IN_USE` (a flag) into
/// `Other`, and the agent needs it to know which channel the radio is on.
mod survey_info {
    pub const FREQUENCY: u16 = 1;
    pub const NOISE: u16 = 2;
    pub const IN_USE: u16 = 3;
    pub const TIME: u16 = 4;
    pub const TIME_BUSY: u16 = 5;
    pub const TIME_RX: u16 = 7;
    pub const TIME_TX: u16 = 8;
}

/// One channel of a survey dump (`iw dev X survey dump`): times in ms since the driver last
/// reset its counters. Drivers report what they measure; anything may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurveyInfo {
    pub freq_mhz: Option<u32>,
    pub noise_dbm: Option<i8>,
    pub in_use: bool,
    pub active_ms: Option<u64>,
    pub busy_ms: Option<u64>,
    pub rx_ms: Option<u64>,
    pub tx_ms: Option<u64>,
}

/// Parses the value of `NL80211_ATTR_SURVEY_INFO`. Unknown kinds (the padding attribute the
/// kernel puts before 64-bit values, newer counters) are skipped; a known kind with a wrong
/// width is an error.
pub fn parse_survey_info(buf: &[u8]) -> Result<SurveyInfo, NlaError> {
    let mut s = SurveyInfo::default();
    for a in raw_nla::attrs(buf) {
        let (k, v) = a?;
        match k {
            survey_info::FREQUENCY => s.freq_mhz = Some(get_u32(k, v)?),
            survey_info::NOISE => s.noise_dbm = Some(get_u8(k, v)? as i8),
            survey_info::IN_USE => s.in_use = true,
            survey_info::TIME => s.active_ms = Some(get_u64(k, v)?),
            survey_info::TIME_BUSY => s.busy_ms = Some(get_u64(k, v)?),
            survey_info::TIME_RX => s.rx_ms = Some(get_u64(k, v)?),
            survey_info::TIME_TX => s.tx_ms = Some(get_u64(k, v)?),
            _ => {}
        }
    }
    Ok(s)
}

/// Public only for the fuzz targets (node-agent/fuzz): one message of a survey dump (the
/// interface index and one nested `NL80211_ATTR_SURVEY_INFO`). `None` when it names no
/// frequency.
#[doc(hidden)]
pub fn survey_from_attrs(buf: &[u8]) -> Result<Option<SurveyInfo>, NlaError> {
    for a in raw_nla::attrs(buf) {
        let (k, v) = a?;
        if k == raw_nla::ATTR_SURVEY_INFO {
            let s = parse_survey_info(v)?;
            return Ok(s.freq_mhz.is_some().then_some(s));
        }
    }
    Ok(None)
}

/// What a radio may do on one channel, from its band list (`iw phy`'s frequency lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCaps {
    pub freq_mhz: u32,
    /// Not disabled and not no-IR in the current regulatory domain: the mesh may beacon here.
    pub allowed: bool,
    /// Radar detection required (DFS).
    pub dfs: bool,
    /// DFS state "unavailable": a radar was detected here recently.
    pub radar_unavailable: bool,
    pub max_width: Width,
}

/// Joins a radio's band list and its survey into what the telemetry carries: one entry per
/// channel the radio has (a channel the survey did not cover has no times), in frequency
/// order, at most [`MAX_SURVEY_CHANNELS`].
pub fn radio_survey(
    radio: &str,
    mesh: bool,
    caps: &[ChannelCaps],
    survey: &[SurveyInfo],
) -> RadioSurvey {
    let mut channels: Vec<ChannelSurvey> = caps
        .iter()
        .map(|c| {
            let s = survey.iter().find(|s| s.freq_mhz == Some(c.freq_mhz));
            ChannelSurvey {
                freq_mhz: c.freq_mhz,
                in_use: s.is_some_and(|s| s.in_use),
                noise_dbm: s.and_then(|s| s.noise_dbm),
                active_ms: s.and_then(|s| s.active_ms),
                busy_ms: s.and_then(|s| s.busy_ms),
                rx_ms: s.and_then(|s| s.rx_ms),
                tx_ms: s.and_then(|s| s.tx_ms),
                allowed: c.allowed,
                dfs: c.dfs,
                radar_unavailable: c.radar_unavailable,
                max_width: c.max_width,
            }
        })
        .collect();
    channels.sort_by_key(|c| c.freq_mhz);
    channels.dedup_by_key(|c| c.freq_mhz);
    // Disabled channels go first when the list is too long: they cannot be chosen anyway.
    if channels.len() > MAX_SURVEY_CHANNELS {
        channels.retain(|c| c.allowed);
        channels.truncate(MAX_SURVEY_CHANNELS);
    }
    RadioSurvey {
        radio: radio.to_string(),
        mesh,
        channels,
    }
}

/// Surveys this router's mesh radios (at most [`MAX_SURVEY_RADIOS`]): the dump goes through
/// the mesh interface. A radio whose band list fails is logged and left out; one whose driver
/// gives no survey is reported with its channels and no times.
pub async fn collect(nl: &Nl80211) -> Result<Vec<RadioSurvey>, Error> {
    let radios = nl.radios().await?;
    let interfaces = nl.interfaces().await?;
    let mut out = Vec::new();
    for radio in &radios {
        if out.len() >= MAX_SURVEY_RADIOS {
            break;
        }
        // Only mesh radios: the choice is the mesh's, and the report stays small.
        let Some(mesh_if) = interfaces
            .iter()
            .find(|i| i.wiphy == radio.wiphy && i.iftype == "mesh point")
        else {
            continue;
        };
        let caps = match nl.radio_channels(radio.wiphy).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(radio = %radio.name, error = %e, "no band list, radio not surveyed");
                continue;
            }
        };
        let survey = match nl.survey(mesh_if.ifindex).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(radio = %radio.name, error = %e, "no survey from the driver");
                Vec::new()
            }
        };
        out.push(radio_survey(&radio.name, true, &caps, &survey));
    }
    Ok(out)
}

/// How often the telemetry's survey is refreshed: counters move slowly and the band list
/// (a split GET_WIPHY dump) is large; the choice needs minutes of air, not seconds.
pub const SURVEY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The last survey, refreshed at most every [`SURVEY_EVERY`]; what the telemetry carries.
#[derive(Default)]
pub struct SurveyCache {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Vec<RadioSurvey>)>>,
}

impl SurveyCache {
    /// The current survey (empty on a host without radios or nl80211).
    pub async fn get(&self) -> Vec<RadioSurvey> {
        let mut last = self.last.lock().await;
        if let Some((at, s)) = last.as_ref() {
            if at.elapsed() < SURVEY_EVERY {
                return s.clone();
            }
        }
        let fresh = match Nl80211::connect() {
            Ok(nl) => collect(&nl).await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "no radio survey");
                Vec::new()
            }),
            Err(e) => {
                tracing::debug!(error = %e, "no radio survey");
                Vec::new()
            }
        };
        *last = Some((std::time::Instant::now(), fresh.clone()));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raw_nla::NlaWriter;

    /// A survey dump message as mac80211_hwsim sends it (hwsim_get_survey: frequency, noise,
    /// time and busy time; IN_USE added by mac80211 for the current channel), with the padding
    /// attribute the kernel puts before every 64-bit value.
    fn hwsim_message(freq: u32, in_use: bool, active: u64, busy: u64) -> Vec<u8> {
        let mut info = NlaWriter::new();
        info.u32(1, freq).u8(2, (-92i8) as u8);
        if in_use {
            info.flag(3);
        }
        info.flag(10).u64(4, active).flag(10).u64(5, busy);
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, 4)
            .bytes(raw_nla::ATTR_SURVEY_INFO | 0x8000, &info.finish());
        w.finish()
    }

    #[test]
    fn a_survey_message_becomes_one_channel() {
        let s = survey_from_attrs(&hwsim_message(5180, true, 1200, 300))
            .expect("valid")
            .expect("names a frequency");
        assert_eq!(s.freq_mhz, Some(5180));
        assert_eq!(s.noise_dbm, Some(-92));
        assert!(s.in_use);
        assert_eq!((s.active_ms, s.busy_ms), (Some(1200), Some(300)));
        assert_eq!(s.rx_ms, None);
        let other = survey_from_attrs(&hwsim_message(5200, false, 0, 0))
            .expect("valid")
            .expect("names a frequency");
        assert!(!other.in_use);
    }

    #[test]
    fn a_short_counter_is_an_error_not_a_guess() {
        let mut info = NlaWriter::new();
        info.u32(1, 5180).u32(5, 7); // busy time must be 8 bytes
        let mut w = NlaWriter::new();
        w.bytes(raw_nla::ATTR_SURVEY_INFO, &info.finish());
        assert!(survey_from_attrs(&w.finish()).is_err());
        // No frequency: nothing to report.
        let mut w = NlaWriter::new();
        w.bytes(
            raw_nla::ATTR_SURVEY_INFO,
            &NlaWriter::new().u8(2, 1).finish(),
        );
        assert_eq!(survey_from_attrs(&w.finish()), Ok(None));
    }

    #[test]
    fn the_report_joins_capabilities_and_times() {
        let caps = [
            ChannelCaps {
                freq_mhz: 5260,
                allowed: true,
                dfs: true,
                radar_unavailable: false,
                max_width: Width::Mhz80,
            },
            ChannelCaps {
                freq_mhz: 5180,
                allowed: true,
                dfs: false,
                radar_unavailable: false,
                max_width: Width::Mhz80,
            },
        ];
        let survey = [SurveyInfo {
            freq_mhz: Some(5180),
            in_use: true,
            active_ms: Some(100),
            busy_ms: Some(10),
            ..SurveyInfo::default()
        }];
        let r = radio_survey("phy0", true, &caps, &survey);
        assert_eq!(r.channels.len(), 2);
        assert_eq!(r.channels[0].freq_mhz, 5180);
        assert!(r.channels[0].in_use);
        assert_eq!(r.channels[0].busy_ms, Some(10));
        assert!(r.channels[1].dfs);
        assert_eq!(r.channels[1].active_ms, None);
    }

    #[test]
    fn the_channel_list_is_bounded() {
        let caps: Vec<ChannelCaps> = (0..200)
            .map(|i| ChannelCaps {
                freq_mhz: 5000 + 5 * i,
                allowed: i % 2 == 0,
                dfs: false,
                radar_unavailable: false,
                max_width: Width::Mhz20,
            })
            .collect();
        let r = radio_survey("phy0", false, &caps, &[]);
        assert_eq!(r.channels.len(), MAX_SURVEY_CHANNELS);
        assert!(r.channels.iter().all(|c| c.allowed));
    }
}
