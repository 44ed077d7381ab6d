//! dnsmasq's lease file (`discovery::parse_leases`), written from what DHCP clients claim,
//! and the device book built from it. Invariants: no panic; at most MAX_LEASES leases;
//! device names are DNS labels; a lease printed in dnsmasq's format parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_agent::discovery::{devices_from_leases, label_from, parse_leases, MAX_LEASES};

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let leases = parse_leases(&text);
    assert!(leases.len() <= MAX_LEASES);
    for l in &leases {
        if let Some(label) = l.hostname.as_deref().and_then(label_from) {
            assert!(is_label(&label), "{label:?}");
        }
        let line = format!(
            "{} {} {} {} {}",
            l.expires,
            l.mac.map(|m| m.to_string()).unwrap_or_else(|| "*".into()),
            l.ip,
            l.hostname.as_deref().unwrap_or("*"),
            l.client_id.as_deref().unwrap_or("*"),
        );
        assert_eq!(parse_leases(&line), vec![l.clone()], "lease line {line:?}");
    }
    for d in devices_from_leases(&leases, &[], "guest") {
        assert!(
            is_label(&d.name) || d.name.starts_with("device-"),
            "{:?}",
            d.name
        );
    }
});
