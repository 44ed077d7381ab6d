//! The controller's side of pairing (`pairing::Pairing`) fed by a stranger on the LAN: a
//! `PairStart` then a `PairFinish` as JSON, aimed at a real open code (the first byte says
//! whether to use its slot and the session the controller handed out, as a probing attacker
//! would). Invariants: no panic; without the code nobody is admitted; a code never takes
//! more than MAX_TRIES starts; the code tables stay bounded.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use trellis_controller::pairing::{Pairing, Started, MAX_TRIES};
use trellis_proto::pairing::{PairFinish, PairStart};
use trellis_proto::HomeId;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let home = HomeId::new("h").expect("a valid home id");
    let now = Instant::now();
    let mut pairing = Pairing::default();
    let code = pairing.new_code(now, false).expect("a code");
    // Messages are separated by a NUL byte; each is decoded as the agent API would.
    let mut parts = rest.split(|&b| b == 0);
    let mut starts = 0u32;
    let mut session = None;
    for part in parts.by_ref().take(8) {
        let Ok(mut start) = serde_json::from_slice::<PairStart>(part) else {
            break;
        };
        if flags & 1 != 0 {
            start.slot = code.slot.clone();
        }
        // One source (at most 8 starts: under its rate limit). A slot without an open code
        // gets a decoy run, which is not a try of the code.
        let peer = std::net::Ipv4Addr::LOCALHOST.into();
        if let Ok((challenge, started)) = pairing.start(&start, peer, &home, "CA", now) {
            if matches!(started, Started::Code { .. }) {
                starts += 1;
            }
            assert!(starts <= MAX_TRIES, "a code took {starts} starts");
            session = Some(challenge.session);
        }
    }
    for part in parts.take(4) {
        let Ok(mut finish) = serde_json::from_slice::<PairFinish>(part) else {
            continue;
        };
        if flags & 2 != 0 {
            if let Some(s) = &session {
                finish.session = s.clone();
            }
        }
        // The fuzzer never learns the code's secret, so it can never prove it.
        assert!(
            pairing.finish(&finish, now).is_err(),
            "admitted without the code"
        );
    }
    assert!(pairing.open_codes(now) <= 1);
});
