//! Whole nl80211 replies and events (`wifi::nl80211`): a station dump entry, a mesh path dump
//! entry, and a multicast event with any command number. Invariants: no panic; a peer link's
//! state is one of `iw`'s names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_wifi::nl80211::{
    event_from_message, mesh_path_from_attrs, peer_link_from_attrs, RawNl80211,
};

const PLINK_NAMES: [&str; 9] = [
    "LISTEN", "OPN_SNT", "OPN_RCVD", "CNF_RCVD", "ESTAB", "HOLDING", "BLOCKED", "UNKNOWN", "NONE",
];

fuzz_target!(|data: &[u8]| {
    let Some((&cmd, attrs)) = data.split_first() else {
        return;
    };
    if let Ok(Some(link)) = peer_link_from_attrs(attrs) {
        assert!(PLINK_NAMES.contains(&link.plink.as_str()), "{}", link.plink);
    }
    let _ = mesh_path_from_attrs(attrs);
    let _ = event_from_message(&RawNl80211 {
        cmd,
        attrs: attrs.to_vec(),
    });
});
