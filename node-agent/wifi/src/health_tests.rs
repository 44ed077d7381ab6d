//! Tests of [`super`] (link health): flap damping (blocking, decay, hysteresis, the last-link
//! rule, the block cap), which links the report counts as up, path-change counting, the advice
//! wording and the bound on tracked peers.

use super::*;

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, n, 0])
}

fn link(n: u8, plink: &str, signal: i8) -> PeerLink {
    PeerLink {
        peer: mac(n),
        plink: plink.into(),
        signal_dbm: Some(signal),
        signal_avg_dbm: None,
        tx_bitrate_100kbps: Some(540),
        expected_throughput_kbps: Some(30_000),
        airtime_metric: Some(170),
        inactive_ms: Some(10),
        tx_failed: Some(0),
        tx_retries: Some(0),
        connected_to_gate: None,
    }
}

/// Peer 1 flaps at the given times while peer 2 stays up.
fn flap(h: &mut HealthMonitor, t: u64) -> Vec<Action> {
    let mut a = h.observe_links(t, &[link(1, "ESTAB", -50), link(2, "ESTAB", -50)]);
    a.extend(h.observe_links(t + 100, &[link(1, "HOLDING", -50), link(2, "ESTAB", -50)]));
    a
}

#[test]
fn drops_the_dumps_never_saw_still_count_and_block() {
    let mut h = HealthMonitor::new();
    let both_up = [link(1, "ESTAB", -50), link(2, "ESTAB", -50)];
    h.observe_links(0, &both_up);
    let mut actions = Vec::new();
    for t in [1_000, 2_000, 3_000] {
        // The station was deleted and re-peered before the next dump: every dump shows
        // ESTAB, only the event saw the drop.
        actions.extend(h.observe_link_lost(t, mac(1)));
        actions.extend(h.observe_links(t + 500, &both_up));
    }
    assert!(
        matches!(actions.as_slice(), [Action::Block { peer, .. }] if *peer == mac(1)),
        "{actions:?}"
    );
    let r = h.report(3_500);
    assert_eq!(r[0].flaps_10min, 3);
    // A drop reported twice (the event, then a dump without the peer) is one drop.
    let mut h = HealthMonitor::new();
    h.observe_links(0, &both_up);
    h.observe_link_lost(1_000, mac(1));
    h.observe_links(1_100, &[link(2, "ESTAB", -50)]);
    assert_eq!(h.report(1_100)[0].flaps_10min, 1);
    // A peer the monitor never saw up did not drop a link.
    h.observe_link_lost(1_200, mac(9));
    assert!(h.report(1_200).iter().all(|l| l.peer != mac(9)));
}

#[test]
fn the_report_says_which_links_are_up_now() {
    let mut h = HealthMonitor::new();
    // Peer 1 is up; peer 3 is in range but its link never comes up (a wrong password).
    h.observe_links(0, &[link(1, "ESTAB", -50), link(3, "OPN_SNT", -45)]);
    let up: Vec<(MacAddr, bool)> = h
        .report(0)
        .iter()
        .map(|l| (l.peer, l.established))
        .collect();
    assert_eq!(up, vec![(mac(1), true), (mac(3), false)]);
    // Peer 1 goes away: still remembered (for its flap history), but not up.
    h.observe_links(1_000, &[link(3, "OPN_SNT", -45)]);
    assert!(h.report(1_000).iter().all(|l| !l.established));
}

#[test]
fn a_peer_silent_for_seconds_is_not_a_link_though_it_is_still_estab() {
    let mut h = HealthMonitor::new();
    let silent = |ms| PeerLink {
        inactive_ms: Some(ms),
        ..link(1, "ESTAB", -50)
    };
    h.observe_links(0, &[silent(80), link(2, "ESTAB", -50)]);
    assert!(h.report(0).iter().all(|l| l.established));
    // Peer 1 lost power: wpa_supplicant keeps it ESTAB (mesh_max_inactivity), the radio
    // has not heard it for 4 s, then 5 s.
    h.observe_links(4_000, &[silent(4_000), link(2, "ESTAB", -50)]);
    assert!(h.report(4_000)[0].established, "4 s: a few lost beacons");
    h.observe_links(5_000, &[silent(5_000), link(2, "ESTAB", -50)]);
    let r = h.report(5_000);
    assert!(!r[0].established, "silent for 5 s: not a link");
    assert_eq!(r[0].inactive_ms, Some(5_000));
    assert!(r[1].established);
    // It comes back: heard again, up again.
    h.observe_links(9_000, &[silent(30), link(2, "ESTAB", -50)]);
    assert!(h.report(9_000)[0].established);
}

// ---- damping ----

#[test]
fn a_single_drop_is_tolerated() {
    let mut h = HealthMonitor::new();
    assert!(flap(&mut h, 0).is_empty());
    assert!(!h.is_blocked(&mac(1)));
}

#[test]
fn three_quick_drops_block_the_link() {
    let mut h = HealthMonitor::new();
    assert!(flap(&mut h, 0).is_empty());
    assert!(flap(&mut h, 5_000).is_empty());
    let a = flap(&mut h, 10_000);
    assert!(
        matches!(&a[..], [Action::Block { peer, .. }] if *peer == mac(1)),
        "{a:?}"
    );
    assert!(h.is_blocked(&mac(1)));
}

#[test]
fn drops_spread_over_time_decay_and_never_block() {
    let mut h = HealthMonitor::new();
    for i in 0..10 {
        assert!(flap(&mut h, i * 5 * 60_000).is_empty(), "flap {i}");
    }
}

#[test]
fn a_blocked_link_is_not_counted_as_flapping_and_is_unblocked_after_decay() {
    let mut h = HealthMonitor::new();
    for t in [0, 1_000, 2_000] {
        flap(&mut h, t);
    }
    assert!(h.is_blocked(&mac(1)));
    // while blocked it shows BLOCKED: no new penalty
    let a = h.observe_links(3_000, &[link(1, "BLOCKED", -50), link(2, "ESTAB", -50)]);
    assert!(a.is_empty());
    // penalty ~3000 decays below 750 after two half-lives (+ a bit)
    assert!(
        h.tick(60_000).is_empty(),
        "still above reuse after one half-life"
    );
    let a = h.tick(125_000);
    assert!(
        matches!(&a[..], [Action::Unblock { peer, .. }] if *peer == mac(1)),
        "{a:?}"
    );
    assert!(!h.is_blocked(&mac(1)));
}

#[test]
fn hysteresis_keeps_an_unblocked_link_open_after_one_more_drop() {
    let mut h = HealthMonitor::new();
    for t in [0, 1_000, 2_000] {
        flap(&mut h, t);
    }
    h.tick(200_000);
    assert!(!h.is_blocked(&mac(1)));
    // one drop after release: penalty 1000 < 2500, stays open
    assert!(flap(&mut h, 201_000).is_empty());
    assert!(!h.is_blocked(&mac(1)));
}

#[test]
fn the_last_link_is_never_blocked() {
    let mut h = HealthMonitor::new();
    for t in [0, 1_000, 2_000, 3_000, 4_000] {
        h.observe_links(t, &[link(1, "ESTAB", -50)]);
        let a = h.observe_links(t + 100, &[link(1, "HOLDING", -50)]);
        assert!(a.is_empty(), "{a:?}");
    }
    assert!(!h.is_blocked(&mac(1)));
}

#[test]
fn a_peer_vanishing_from_the_dump_is_a_drop() {
    let mut h = HealthMonitor::new();
    for t in [0, 1_000, 2_000] {
        h.observe_links(t, &[link(1, "ESTAB", -50), link(2, "ESTAB", -50)]);
        h.observe_links(t + 100, &[link(2, "ESTAB", -50)]);
    }
    assert!(h.is_blocked(&mac(1)));
}

#[test]
fn a_long_block_ends_at_the_cap() {
    let mut h = HealthMonitor::new();
    for t in (0..30).map(|i| i * 200) {
        flap(&mut h, t);
    }
    assert!(h.is_blocked(&mac(1)));
    // a huge penalty would keep it blocked for long; the cap releases it
    let a = h.tick(MAX_BLOCK_MS + 10_000);
    assert!(matches!(&a[..], [Action::Unblock { .. }]), "{a:?}");
}

// ---- reports and advice ----

#[test]
fn path_changes_per_minute_are_counted_on_both_links() {
    let mut h = HealthMonitor::new();
    h.observe_links(0, &[link(1, "ESTAB", -50), link(2, "ESTAB", -50)]);
    for i in 0..8 {
        let (old, new) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
        h.observe_path_change(i * 1000, Some(mac(old)), mac(new));
    }
    let r = h.report(10_000);
    assert_eq!(r[0].path_changes_per_min, 8);
    assert_eq!(r[1].path_changes_per_min, 8);
    assert_eq!(r[0].verdict, LinkVerdict::Unstable);
    // a minute later the churn is forgotten
    assert_eq!(h.report(80_000)[0].path_changes_per_min, 0);
}

#[test]
fn advice_speaks_plainly() {
    let (v, a) = advise(Some(-85), Some(30_000), 0, 0, false);
    assert_eq!(v, LinkVerdict::Weak);
    assert!(a[0].contains("move the nodes closer"), "{a:?}");

    let (v, a) = advise(Some(-20), None, 0, 0, false);
    assert_eq!(v, LinkVerdict::TooClose);
    assert!(a[0].contains("too close"));

    let (v, _) = advise(Some(-75), None, 0, 0, false);
    assert_eq!(v, LinkVerdict::Fair);

    let (v, a) = advise(Some(-50), Some(50_000), 0, 0, false);
    assert_eq!(v, LinkVerdict::Good);
    assert_eq!(a, vec!["good link".to_string()]);

    let (v, a) = advise(Some(-50), Some(2_000), 0, 4, false);
    assert_eq!(v, LinkVerdict::Unstable);
    assert!(a.iter().any(|s| s.contains("slow link")));
    assert!(a.iter().any(|s| s.contains("dropped 4 times")));
}

#[test]
fn tracked_peers_are_bounded() {
    let mut h = HealthMonitor::new();
    let many: Vec<PeerLink> = (0..=255u8)
        .map(|n| {
            let mut l = link(n, "ESTAB", -50);
            l.peer = MacAddr([2, 0, 0, 1, n, 0]);
            l
        })
        .collect();
    h.observe_links(0, &many);
    assert_eq!(h.report(0).len(), MAX_PEERS);
}
