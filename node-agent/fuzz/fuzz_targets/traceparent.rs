//! The tunnel's W3C `traceparent` header (`TraceParent::parse`), which another router sends
//! on every CONNECT (and a tampered one could send anything), and the span context the
//! inbound proxy makes of it (`Tracer::child`).
//! Invariants: no panic; a parsed header has valid ids and re-encodes to its first 55 bytes
//! for version 00; a child always has valid ids, and its parent only when the header parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_agent::trace::{TraceParent, Tracer};

fuzz_target!(|data: &[u8]| {
    let parsed = TraceParent::parse(data);
    if let Some(p) = parsed {
        assert!(p.trace_id.is_valid() && p.span_id.is_valid());
        if data.starts_with(b"00") {
            assert_eq!(&p.encode()[..], data);
        }
    }
    let (cx, parent) = Tracer::new().child(Some(data));
    assert!(cx.trace_id.is_valid() && cx.span_id.is_valid());
    assert_eq!(parent.is_some(), parsed.is_some());
});
