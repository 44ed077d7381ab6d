//! The mesh-zone DNS responder (`dns::answer`) on any datagram a LAN device can send.
//! Invariants: no panic; an answer keeps the query's ID, is a response, fits one UDP
//! datagram, and an A answer carries the virtual IP of the service asked for.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trellis_agent::dns::{answer, MAX_QUERY};
use trellis_proto::catalog::{Catalog, LearnedVia};
use trellis_proto::HomeId;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut c = Catalog::default();
        let home = HomeId::new("h").expect("a valid home id");
        for name in ["nas", "printer"] {
            c.add(&home, name, vec![], vec![], LearnedVia::Mdns)
                .expect("a valid service");
        }
        c
    })
}

fuzz_target!(|query: &[u8]| {
    let Some(r) = answer(query, catalog()) else {
        return;
    };
    assert!(
        r.len() >= 12 && r.len() <= MAX_QUERY,
        "answer of {} bytes",
        r.len()
    );
    assert_eq!(r[0..2], query[0..2], "the answer keeps the query's ID");
    assert_eq!(r[2] & 0x80, 0x80, "QR is set");
    let qd = u16::from_be_bytes([r[4], r[5]]);
    let an = u16::from_be_bytes([r[6], r[7]]);
    assert!(qd <= 1 && an <= qd);
    if an == 1 {
        // The question is copied as it came; the answer is its last 16 bytes.
        let question = &r[12..r.len() - 16];
        assert_eq!(question, &query[12..12 + question.len()]);
        let vip: [u8; 4] = r[r.len() - 4..].try_into().expect("4 bytes");
        assert!(
            catalog().services.iter().any(|s| s.vip.octets() == vip),
            "an A answer is a catalog service's virtual IP"
        );
    }
});
