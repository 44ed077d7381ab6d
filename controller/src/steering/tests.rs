//! Each steering rule with synthetic reports: no radios, time passed in.

use super::*;

const PHONE: &str = "02:00:00:00:00:0a";

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn node(n: &str) -> NodeName {
    NodeName::new(n).unwrap()
}

fn at(s: u64) -> Now {
    Now {
        ms: s * 1000,
        unix: 1_800_000_000 + s,
    }
}

fn ap(iface: &str, bssid: &str, band: Band, network: NetworkKind) -> AccessPointReport {
    AccessPointReport {
        network,
        interface: iface.into(),
        bssid: mac(bssid),
        band,
        channel: if band == Band::G2 { 1 } else { 36 },
        freq_mhz: if band == Band::G2 { 2412 } else { 5180 },
        neighbour_report: Some(format!("{}ff", bssid.replace(':', ""))),
        ssid: None,
        settings: None,
    }
}

/// Two routers, each with a 2.4 and a 5 GHz access point of the home network and one of
/// the iot network.
fn router(name: &str, n: u8) -> RouterView {
    RouterView {
        node: node(name),
        associated: vec![],
        heard: vec![],
        access_points: vec![
            ap(
                "phy0-ap0",
                &format!("02:aa:00:00:0{n}:02"),
                Band::G2,
                NetworkKind::Home,
            ),
            ap(
                "phy1-ap0",
                &format!("02:aa:00:00:0{n}:05"),
                Band::G5,
                NetworkKind::Home,
            ),
            ap(
                "phy0-ap1",
                &format!("02:aa:00:00:0{n}:0e"),
                Band::G2,
                NetworkKind::Iot,
            ),
        ],
    }
}

fn on(
    r: &mut RouterView,
    iface: &str,
    band: Band,
    network: NetworkKind,
    dbm: i32,
    dual: Option<bool>,
) {
    r.associated = vec![Associated {
        mac: mac(PHONE),
        interface: iface.into(),
        network,
        band,
        signal_dbm: dbm,
        dual_band: dual,
    }];
}

fn hears(r: &mut RouterView, band: Band, dbm: i32) {
    r.heard.push(HeardClient {
        mac: mac(PHONE),
        band,
        signal_dbm: dbm,
        age_ms: 500,
    });
}

/// The phone on attic's 5 GHz access point at `here`, heard by cellar on 5 GHz at `there`.
fn sticky(here: i32, there: i32) -> Vec<RouterView> {
    let mut attic = router("attic", 1);
    let mut cellar = router("cellar", 2);
    on(
        &mut attic,
        "phy1-ap0",
        Band::G5,
        NetworkKind::Home,
        here,
        Some(true),
    );
    hears(&mut cellar, Band::G5, there);
    vec![attic, cellar]
}

fn last(s: &Steering) -> Decision {
    s.device(&mac(PHONE)).unwrap().last_decision.unwrap()
}

#[test]
fn a_sticky_client_on_a_weak_ap_is_asked_to_move_where_it_is_heard_clearly_better() {
    let mut s = Steering::default();
    let made = s.decide(at(0), &sticky(-78, -60));
    assert_eq!(made.len(), 1);
    let (to_router, req) = &made[0];
    assert_eq!(
        to_router,
        &node("attic"),
        "sent to the router the client is on"
    );
    assert_eq!(req.station, mac(PHONE));
    assert_eq!(req.interface, "phy1-ap0");
    assert_eq!(req.target_node, node("cellar"));
    assert_eq!(req.target_bssid, mac("02:aa:00:00:02:05"));
    assert_eq!(req.target_neighbour_report, "02aa00000205ff");
    assert!(
        req.disassoc_timer_tbtt > 0,
        "disassociation imminent, with a timer"
    );
    // It rides on attic's next telemetry answer, once.
    assert_eq!(s.take_for(&node("attic")), vec![req.clone()]);
    assert!(s.take_for(&node("attic")).is_empty());
    assert!(s.take_for(&node("cellar")).is_empty());
    let d = last(&s);
    assert!(
        d.explain().contains("-78 dBm") && d.explain().contains("-60 dBm"),
        "{}",
        d.explain()
    );
    assert_eq!(s.device(&mac(PHONE)).unwrap().counts.steered, 1);
}

#[test]
fn hysteresis_a_move_must_be_clearly_better_and_the_client_weak() {
    let mut s = Steering::default();
    // 6 dB better is inside the 8 dB margin.
    assert!(s.decide(at(0), &sticky(-78, -72)).is_empty());
    assert!(
        last(&s).reason.contains("8 dB better"),
        "{}",
        last(&s).reason
    );
    // Good enough here: never moved, however well another hears it.
    assert!(s.decide(at(1), &sticky(-60, -40)).is_empty());
    assert!(last(&s).reason.contains("good enough"));
    // Clearly better: moved.
    assert_eq!(s.decide(at(2), &sticky(-78, -70)).len(), 1);
}

#[test]
fn dual_band_clients_prefer_5ghz() {
    let mut s = Steering::default();
    let mut attic = router("attic", 1);
    on(
        &mut attic,
        "phy0-ap0",
        Band::G2,
        NetworkKind::Home,
        -45,
        Some(true),
    );
    hears(&mut attic, Band::G5, -58);
    let made = s.decide(at(0), &[attic.clone(), router("cellar", 2)]);
    assert_eq!(made.len(), 1, "{:?}", last(&s));
    assert_eq!(
        made[0].1.target_bssid,
        mac("02:aa:00:00:01:05"),
        "attic's own 5 GHz AP"
    );
    assert!(last(&s).reason.contains("can do 5 GHz"));
    // A weak 5 GHz signal is no reason.
    let mut s = Steering::default();
    attic.heard[0].signal_dbm = -75;
    assert!(s.decide(at(0), &[attic.clone()]).is_empty());
    // A client that did not say it does 5 GHz is not band-steered.
    let mut s = Steering::default();
    attic.heard[0].signal_dbm = -50;
    attic.associated[0].dual_band = None;
    assert!(s.decide(at(0), &[attic]).is_empty());
}

#[test]
fn a_client_that_only_does_2g_and_the_iot_network_are_never_steered() {
    let mut s = Steering::default();
    let mut attic = router("attic", 1);
    let mut cellar = router("cellar", 2);
    on(
        &mut attic,
        "phy0-ap0",
        Band::G2,
        NetworkKind::Home,
        -85,
        Some(false),
    );
    hears(&mut cellar, Band::G2, -40);
    assert!(s.decide(at(0), &[attic.clone(), cellar.clone()]).is_empty());
    assert!(last(&s).reason.contains("only does 2.4 GHz"));
    let mut s = Steering::default();
    on(
        &mut attic,
        "phy0-ap1",
        Band::G2,
        NetworkKind::Iot,
        -85,
        Some(true),
    );
    assert!(s.decide(at(0), &[attic, cellar]).is_empty());
    assert!(last(&s).reason.contains("iot network is never steered"));
}

#[test]
fn a_client_that_declines_twice_is_left_alone_for_a_while() {
    let mut s = Steering::default();
    let cfg = s.config;
    let attic = node("attic");
    let mut t = 0;
    for round in 0..2 {
        let made = s.decide(at(t), &sticky(-80, -60));
        assert_eq!(made.len(), 1, "round {round}");
        // One request at a time.
        assert!(s.decide(at(t + 1), &sticky(-80, -60)).is_empty());
        assert!(last(&s).reason.contains("waiting for its answer"));
        let outcome = SteerOutcome {
            id: made[0].1.id,
            station: mac(PHONE),
            result: SteerResult::Declined,
            status_code: Some(7),
        };
        s.outcome(at(t + 2), &attic, &outcome);
        t += 3;
    }
    let d = s.device(&mac(PHONE)).unwrap();
    assert_eq!(d.counts.declined, 2);
    assert!(d.left_alone_until_unix.is_some());
    assert!(s.decide(at(t), &sticky(-80, -60)).is_empty());
    assert!(
        last(&s).reason.contains("declined twice"),
        "{}",
        last(&s).reason
    );
    // After the back-off it may be asked again.
    let later = t + cfg.back_off_ms / 1000 + 1;
    assert_eq!(s.decide(at(later), &sticky(-80, -60)).len(), 1);
}

#[test]
fn no_answer_counts_as_ignored() {
    let mut s = Steering::default();
    let made = s.decide(at(0), &sticky(-80, -60));
    assert_eq!(made.len(), 1);
    s.decide(at(31), &sticky(-80, -60));
    let d = s.device(&mac(PHONE)).unwrap();
    assert_eq!(d.counts.ignored, 1);
    assert!(d.history.iter().any(|r| matches!(
        r,
        Record::Answered {
            result: SteerResult::Ignored,
            ..
        }
    )));
}

#[test]
fn no_ping_pong_a_client_that_moved_stays_put_for_the_hold_time() {
    let mut s = Steering::default();
    let cfg = s.config;
    let made = s.decide(at(0), &sticky(-80, -60));
    s.outcome(
        at(1),
        &node("attic"),
        &SteerOutcome {
            id: made[0].1.id,
            station: mac(PHONE),
            result: SteerResult::Accepted,
            status_code: Some(0),
        },
    );
    // Now on cellar, and attic (where it was) hears it much better a minute later.
    let mut attic = router("attic", 1);
    let mut cellar = router("cellar", 2);
    on(
        &mut cellar,
        "phy1-ap0",
        Band::G5,
        NetworkKind::Home,
        -80,
        Some(true),
    );
    hears(&mut attic, Band::G5, -50);
    let routers = vec![attic, cellar];
    assert!(s.decide(at(60), &routers).is_empty());
    assert!(
        last(&s).reason.contains("no ping-pong"),
        "{}",
        last(&s).reason
    );
    let d = s.device(&mac(PHONE)).unwrap();
    assert!(
        d.history
            .iter()
            .any(|r| matches!(r, Record::Roamed { asked: true, .. })),
        "{:?}",
        d.history
    );
    assert_eq!(d.counts.accepted, 1);
    assert_eq!(d.counts.roamed, 1);
    // After the hold, it may be moved back.
    assert_eq!(s.decide(at(61 + cfg.hold_ms / 1000), &routers).len(), 1);
}

#[test]
fn history_and_devices_are_bounded() {
    let mut s = Steering::new(Config {
        hold_ms: 0,
        answer_timeout_ms: 0,
        declines_to_back_off: u32::MAX,
        ..Config::default()
    });
    for i in 0..100 {
        s.decide(at(i), &sticky(-80, -60));
        s.take_for(&node("attic"));
    }
    let d = s.device(&mac(PHONE)).unwrap();
    assert_eq!(d.history.len(), MAX_HISTORY);
    assert!(
        d.counts.steered > MAX_HISTORY as u32,
        "counts keep counting"
    );
    let mut attic = router("attic", 1);
    for i in 0..(MAX_DEVICES + 50) {
        attic.associated = vec![Associated {
            mac: MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
            interface: "phy1-ap0".into(),
            network: NetworkKind::Home,
            band: Band::G5,
            signal_dbm: -50,
            dual_band: Some(true),
        }];
        s.decide(at(1000 + i as u64), std::slice::from_ref(&attic));
    }
    assert_eq!(s.devices.len(), MAX_DEVICES);
}

#[test]
fn a_router_that_does_not_call_gets_a_bounded_queue_and_no_stale_requests() {
    let mut s = Steering::new(Config {
        hold_ms: 0,
        answer_timeout_ms: 0,
        declines_to_back_off: u32::MAX,
        ..Config::default()
    });
    for i in 0..100 {
        s.decide(at(i), &sticky(-80, -60));
    }
    let sent = s.take_for(&node("attic"));
    assert_eq!(
        sent.len(),
        1,
        "only the request still outstanding: {sent:?}"
    );
}

#[test]
fn a_report_heard_too_long_ago_is_not_used() {
    let mut s = Steering::default();
    let mut routers = sticky(-80, -60);
    routers[1].heard[0].age_ms = 60_000;
    assert!(s.decide(at(0), &routers).is_empty());
}
