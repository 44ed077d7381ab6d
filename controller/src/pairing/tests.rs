use super::*;
use trellis_proto::pake::AgentPake;

fn home() -> HomeId {
    HomeId::new("h1").unwrap()
}

fn start(
    p: &mut Pairing,
    code: &PairingCode,
    typed_secret: &str,
    now: Instant,
) -> Result<(AgentPake, PairChallenge), PairingError> {
    let (agent, spake_a) = AgentPake::start(typed_secret);
    let req = PairStart {
        slot: code.slot.clone(),
        node_name: NodeName::new("attic").unwrap(),
        spake_a,
    };
    p.start(&req, peer(1), &home(), "CA PEM", now)
        .map(|(c, _)| (agent, c))
}

fn peer(n: u8) -> IpAddr {
    IpAddr::from([192, 168, 1, n])
}

fn finish(
    p: &mut Pairing,
    agent: AgentPake,
    ch: &PairChallenge,
    now: Instant,
) -> Result<Admitted, PairingError> {
    let keys = agent
        .finish(&ch.spake_b, "attic", "h1", &ch.ca_pem)
        .unwrap();
    p.finish(
        &PairFinish {
            session: ch.session.clone(),
            csr_pem: "CSR".into(),
            confirm: keys.agent_confirm("CSR"),
        },
        now,
    )
}

#[test]
fn the_right_code_admits_once() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    assert_eq!(code.display().len(), 12);
    let (agent, ch) = start(&mut p, &code, &code.secret, now).unwrap();
    let admitted = finish(&mut p, agent, &ch, now).unwrap();
    assert_eq!(admitted.node_name.as_str(), "attic");
    // Single use: the slot now gets a decoy, refused at the confirmation.
    let (agent, ch) = start(&mut p, &code, &code.secret, now).unwrap();
    let err = finish(&mut p, agent, &ch, now).unwrap_err();
    assert_eq!(err, PairingError::WrongCode { tries: None });
}

#[test]
fn a_code_for_this_router_says_so_when_redeemed() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let satellite = p.new_code(now, false).unwrap();
    let own = p.new_code(now, true).unwrap();
    let (agent, ch) = start(&mut p, &satellite, &satellite.secret, now).unwrap();
    assert!(!finish(&mut p, agent, &ch, now).unwrap().this_router);
    let (agent, ch) = start(&mut p, &own, &own.secret, now).unwrap();
    assert!(finish(&mut p, agent, &ch, now).unwrap().this_router);
}

#[test]
fn a_wrong_code_is_refused_and_five_tries_burn_it() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    for attempt in 1..=MAX_TRIES {
        let (agent, ch) = start(&mut p, &code, "WRONGONE", now).unwrap();
        let err = finish(&mut p, agent, &ch, now).err().unwrap();
        assert_eq!(
            err,
            PairingError::WrongCode {
                tries: Some(attempt)
            }
        );
    }
    // The right code no longer works: burned, and from now on a slot like any other.
    let (agent, ch) = start(&mut p, &code, &code.secret, now).unwrap();
    let err = finish(&mut p, agent, &ch, now).unwrap_err();
    assert_eq!(err, PairingError::WrongCode { tries: None });
    assert_eq!(p.open_codes(now), 0);
}

/// What an agent sees of a run: the challenge's shape and the failure's words.
fn seen(p: &mut Pairing, slot: &str, secret: &str, now: Instant) -> (usize, usize, String, u16) {
    let code = PairingCode {
        slot: slot.into(),
        secret: secret.into(),
    };
    let (agent, ch) = start(p, &code, secret, now).unwrap();
    let shape = (ch.spake_b.len(), ch.confirm.len());
    let err = finish(p, agent, &ch, now).unwrap_err();
    let status = match err {
        PairingError::WrongCode { .. } => 403,
        _ => 0,
    };
    (shape.0, shape.1, err.to_string(), status)
}

#[test]
fn a_slot_without_a_code_answers_like_one_with_a_code() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    let unknown = if code.slot == "ZZ" { "YY" } else { "ZZ" };
    let open = seen(&mut p, &code.slot, "WRONGONE", now);
    let decoy = seen(&mut p, unknown, "WRONGONE", now);
    assert_eq!(
        open, decoy,
        "a prober cannot tell open slots from the others"
    );
    assert!(open.2.contains("wrong pairing code"), "{}", open.2);
}

#[test]
fn a_malformed_message_is_refused_and_burns_nothing() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    for junk in ["zz", "00", &"ab".repeat(33), ""] {
        let req = PairStart {
            slot: code.slot.clone(),
            node_name: NodeName::new("attic").unwrap(),
            spake_a: junk.to_owned(),
        };
        let n = p.starts.by_source.len();
        let err = p
            .start(&req, peer(n as u8 + 2), &home(), "CA PEM", now)
            .err();
        assert!(
            matches!(err, Some(PairingError::BadMessage(_))),
            "{junk:?}: {err:?}"
        );
    }
    match p.progress(&code.slot, now) {
        Progress::Waiting { .. } => {}
        other => panic!("no try counted: {other:?}"),
    }
    // The real satellite still pairs.
    let (agent, ch) = start(&mut p, &code, &code.secret, now).unwrap();
    assert!(finish(&mut p, agent, &ch, now).is_ok());
}

#[test]
fn starts_are_limited_per_source_and_sources_are_bounded() {
    let mut limit = StartLimit::default();
    let t0 = Instant::now();
    for _ in 0..STARTS_PER_SOURCE {
        limit.admit(peer(1), t0).unwrap();
    }
    let err = limit.admit(peer(1), t0).unwrap_err();
    assert_eq!(err, PairingError::TooFast(60));
    assert!(err.to_string().contains("wait 60 s"), "{err}");
    // Another device is not held back by the first.
    limit.admit(peer(2), t0).unwrap();
    // One IPv6 /64 is one source, whatever address in it a device picks.
    let v6 = |last: u16| IpAddr::from([0xfd00, 0, 0, 1, 0, 0, 0, last]);
    for i in 0..STARTS_PER_SOURCE as u16 {
        limit.admit(v6(i), t0).unwrap();
    }
    assert!(limit.admit(v6(999), t0).is_err());
    // A minute later the first device may try again.
    limit.admit(peer(1), t0 + START_WINDOW).unwrap();
    // The table is bounded: a flood of sources is told to wait, it does not grow it.
    let mut limit = StartLimit::default();
    for i in 0..MAX_SOURCES {
        limit
            .admit(IpAddr::from([10, 0, (i / 256) as u8, i as u8]), t0)
            .unwrap();
    }
    assert_eq!(
        limit.admit(IpAddr::from([10, 1, 0, 0]), t0),
        Err(PairingError::Busy)
    );
    assert_eq!(limit.by_source.len(), MAX_SOURCES);
}

#[test]
fn codes_expire_after_ten_minutes() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    let later = now + CODE_LIFETIME + Duration::from_secs(1);
    assert_eq!(p.open_codes(later), 0);
    let (agent, ch) = start(&mut p, &code, &code.secret, later).unwrap();
    let err = finish(&mut p, agent, &ch, later).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn open_codes_and_sessions_are_bounded() {
    let mut p = Pairing::default();
    let now = Instant::now();
    for _ in 0..MAX_CODES {
        p.new_code(now, false).unwrap();
    }
    assert_eq!(
        p.new_code(now, false).unwrap_err(),
        PairingError::TooManyCodes
    );
}

#[test]
fn a_session_cannot_be_replayed() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    let (agent, ch) = start(&mut p, &code, &code.secret, now).unwrap();
    let keys = agent
        .finish(&ch.spake_b, "attic", "h1", &ch.ca_pem)
        .unwrap();
    let req = PairFinish {
        session: ch.session.clone(),
        csr_pem: "CSR".into(),
        confirm: keys.agent_confirm("CSR"),
    };
    assert!(p.finish(&req, now).is_ok());
    assert_eq!(
        p.finish(&req, now).err(),
        Some(PairingError::UnknownSession)
    );
}

#[test]
fn progress_follows_a_code_from_waiting_to_used() {
    let mut p = Pairing::default();
    let t0 = Instant::now();
    let code = p.new_code(t0, false).unwrap();
    assert!(matches!(
        p.progress(&code.slot, t0),
        Progress::Waiting { .. }
    ));
    let (agent, ch) = start(&mut p, &code, &code.secret, t0).unwrap();
    match p.progress(&code.slot, t0) {
        Progress::Pairing { node, tries, .. } => {
            assert_eq!(node.unwrap().as_str(), "attic");
            assert_eq!(tries, 1);
        }
        other => panic!("{other:?}"),
    }
    finish(&mut p, agent, &ch, t0).unwrap();
    assert_eq!(
        p.progress(&code.slot, t0),
        Progress::Used {
            node: NodeName::new("attic").unwrap()
        }
    );
    assert_eq!(p.progress("ZZ", t0), Progress::Gone);
    let other = p.new_code(t0, false).unwrap();
    assert_eq!(p.progress(&other.slot, t0 + CODE_LIFETIME), Progress::Gone);
}
