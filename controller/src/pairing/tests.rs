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
    p.start(&req, &home(), "CA PEM", now).map(|c| (agent, c))
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
    // Single use.
    let err = start(&mut p, &code, &code.secret, now).unwrap_err();
    assert!(matches!(err, PairingError::UnknownCode(_)));
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
        assert_eq!(err, PairingError::WrongCode { tries: attempt });
        assert!(err.to_string().contains(&format!("try {attempt} of 5")));
    }
    // The right code no longer works: burned.
    let err = start(&mut p, &code, &code.secret, now).unwrap_err();
    assert_eq!(err, PairingError::Burned);
    let err = start(&mut p, &code, &code.secret, now).unwrap_err();
    assert!(matches!(err, PairingError::UnknownCode(_)));
}

#[test]
fn codes_expire_after_ten_minutes() {
    let mut p = Pairing::default();
    let now = Instant::now();
    let code = p.new_code(now, false).unwrap();
    let later = now + CODE_LIFETIME + Duration::from_secs(1);
    let err = start(&mut p, &code, &code.secret, later).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(p.open_codes(later), 0);
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
