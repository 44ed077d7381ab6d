//! One message of an nl80211 survey dump as the kernel sends it (`wifi::survey`): the attribute
//! walk and the nested `NL80211_SURVEY_INFO_*`. Invariants: no panic; a parsed channel names a
//! frequency; joining it into a radio report keeps the report bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_wifi::survey::{radio_survey, survey_from_attrs, ChannelCaps};
use trellis_proto::channel::{Width, MAX_SURVEY_CHANNELS};

fuzz_target!(|buf: &[u8]| {
    if let Ok(Some(s)) = survey_from_attrs(buf) {
        let freq = s.freq_mhz.expect("a parsed channel names its frequency");
        let caps = [ChannelCaps {
            freq_mhz: freq,
            allowed: true,
            dfs: false,
            radar_unavailable: false,
            max_width: Width::Mhz20,
        }];
        let r = radio_survey("phy0", true, &caps, &[s.clone()]);
        assert!(r.channels.len() <= MAX_SURVEY_CHANNELS);
        assert_eq!(r.channels[0].in_use, s.in_use);
        if let Some(share) = r.channels[0].foreign_busy() {
            assert!((0.0..=1.0).contains(&share));
        }
    }
});
