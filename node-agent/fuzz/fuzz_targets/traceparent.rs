//! The tunnel's W3C `traceparent` header (`TraceParent::parse`), which another router sends
//! on every CONNECT (and a tampered one could send anything), and the span context the
//! inbound proxy makes of it (`Tracer::child`).
//! Invariants: no panic; a parsed header has valid ids and, for version 00, re-encodes to
//! the same ids with only the sampled flag kept (W3C level 1: the other flag bits are
//! reserved and set to zero when propagating); a child always has valid ids, and its parent
//! only when the header parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_agent::trace::{TraceParent, Tracer};

fuzz_target!(|data: &[u8]| {
    let parsed = TraceParent::parse(data);
    if let Some(p) = parsed {
        assert!(p.trace_id.is_valid() && p.span_id.is_valid());
        if data.starts_with(b"00") {
            let out = p.encode();
            assert_eq!(&out[..53], &data[..53]);
            assert_eq!(out[53..], *if p.sampled { b"01" } else { b"00" });
        }
    }
    let (cx, parent) = Tracer::new().child(Some(data));
    assert!(cx.trace_id.is_valid() && cx.span_id.is_valid());
    assert_eq!(parent.is_some(), parsed.is_some());
});
