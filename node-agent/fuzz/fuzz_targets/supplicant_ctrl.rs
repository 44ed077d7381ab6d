//! wpa_supplicant's control-socket traffic as the agent decodes it (`wifi::sae`): event
//! messages and `STATUS` replies, from bytes made text the way `Ctrl` does (lossy UTF-8).
//! Invariants: no panic; bounded results; a MAC-carrying event printed the way
//! wpa_supplicant prints it parses back to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_wifi::sae::{parse_event, parse_status, SupplicantEvent};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let status = parse_status(&text);
    assert!(status.len() <= 64);
    match parse_event(&text) {
        SupplicantEvent::Other(s) => assert!(s.chars().count() <= 160),
        SupplicantEvent::PeerConnected(mac) => {
            let again = parse_event(&format!("<3>MESH-PEER-CONNECTED {mac}"));
            assert_eq!(again, SupplicantEvent::PeerConnected(mac));
        }
        SupplicantEvent::SaeAuthBlocked { peer, seconds } => {
            let again = parse_event(&format!(
                "<3>MESH-SAE-AUTH-BLOCKED addr={peer} duration={seconds}"
            ));
            assert_eq!(again, SupplicantEvent::SaeAuthBlocked { peer, seconds });
        }
        _ => {}
    }
});
