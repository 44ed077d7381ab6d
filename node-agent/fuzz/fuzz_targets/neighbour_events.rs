//! A datagram of the kernel's neighbour events (`neighbour_table`), whose entries LAN devices
//! create. Invariants: no panic; a MAC kept is never all zeros; the table stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_agent::neighbour_table::apply_events;

fuzz_target!(|data: &[u8]| {
    let macs = apply_events(data);
    assert!(macs.len() <= trellis_agent::neighbours::MAX_ENTRIES);
    assert!(macs.values().all(|m| m.0 != [0; 6]));
});
