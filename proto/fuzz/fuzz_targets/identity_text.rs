//! Names and addresses that arrive as text from agents and devices: home IDs, node names,
//! SPIFFE IDs (from certificates), MAC addresses (DHCP, telemetry), `trellis why` targets.
//! Invariants: no panic; each accepted value prints back as text that parses to the same
//! value; a MAC is accepted only when it is six pairs of hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_proto::policy::{parse_target, MacAddr};
use trellis_proto::{HomeId, NodeName, SpiffeId};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = text.parse::<NodeName>() {
        assert_eq!(n.to_string().parse::<NodeName>().ok(), Some(n));
    }
    if let Ok(h) = text.parse::<HomeId>() {
        assert_eq!(h.to_string().parse::<HomeId>().ok(), Some(h));
    }
    if let Ok(id) = text.parse::<SpiffeId>() {
        assert_eq!(id.to_string().parse::<SpiffeId>().ok(), Some(id));
    }
    if let Ok(mac) = text.parse::<MacAddr>() {
        assert_eq!(mac.to_string().parse::<MacAddr>().ok(), Some(mac));
        assert_eq!(
            mac.to_string(),
            text.replace('-', ":").to_ascii_lowercase(),
            "only six pairs of hex digits are a MAC"
        );
    }
    if let Ok((svc, _port)) = parse_target(&text) {
        assert!(!svc.is_empty());
    }
});
