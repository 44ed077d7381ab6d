//! The kernel's ARP table text (`intercept::parse_arp`), whose entries LAN devices create.
//! Invariants: no panic; a MAC found is never all zeros.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use trellis_agent::intercept::parse_arp;

fuzz_target!(|data: &[u8]| {
    let Some((ip, text)) = data.split_at_checked(4) else {
        return;
    };
    let ip = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
    if let Some(mac) = parse_arp(&String::from_utf8_lossy(text), ip) {
        assert_ne!(mac.0, [0; 6]);
    }
});
