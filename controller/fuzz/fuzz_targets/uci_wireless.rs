//! `trellis wifi import`'s reading of `uci -q show wireless` output (a file a person points
//! at, or what the router's uci printed). Invariants: no panic, no hang; an import that
//! succeeds yields an SSID and passphrase the proto types accept, and a section the parser
//! reported.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_controller::uci_wireless::{import_home, parse_show, MAX_SECTIONS};
use trellis_proto::home_wifi::{Passphrase, Ssid};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sections) = parse_show(text, "wireless") {
        assert!(sections.len() <= MAX_SECTIONS);
        if let Ok(found) = import_home(text) {
            assert!(Ssid::new(found.ssid.as_str()).is_ok());
            assert!(Passphrase::new(found.passphrase.expose()).is_ok());
            assert!(sections.iter().any(|(name, _)| *name == found.section));
        }
    }
});
