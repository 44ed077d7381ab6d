//! Per-peer link health, flap damping and plain-language advice. Pure logic: the caller feeds
//! station dumps and path changes with a monotonic time in milliseconds and applies the
//! returned actions (block / unblock a peer link through `plink_action`).
//!
//! # Damping
//! Modelled on BGP route-flap damping (RFC 2439): each time an established link drops, the
//! peer's penalty grows by [`FLAP_PENALTY`]; the penalty halves every [`HALF_LIFE_MS`]. Above
//! [`SUPPRESS_AT`] the link is blocked; it is unblocked only when the penalty has decayed below
//! [`REUSE_AT`] (hysteresis: the gap between the two thresholds keeps a link from bouncing
//! between blocked and open) or after [`MAX_BLOCK_MS`] at the latest. A link is never blocked
//! when it is the node's last established link: a poor link beats no link, and a node that cut
//! itself off could not be reached to fix it. Nothing here ever restarts or reboots anything.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::nl80211::PeerLink;
use trellis_proto::api::LinkVerdict;
use trellis_proto::policy::MacAddr;

pub const FLAP_PENALTY: f64 = 1000.0;
/// Three flaps in quick succession block the link.
pub const SUPPRESS_AT: f64 = 2500.0;
pub const REUSE_AT: f64 = 750.0;
pub const HALF_LIFE_MS: u64 = 60_000;
pub const MAX_BLOCK_MS: u64 = 15 * 60_000;
/// Below this a link is weak (typical 802.11 guidance: -80 dBm is the edge of usable).
pub const WEAK_DBM: i8 = -80;
/// Below this (and above weak) a link works but is slower than it could be.
pub const FAIR_DBM: i8 = -70;
/// Above this the receivers may saturate: the nodes stand too close.
pub const TOO_STRONG_DBM: i8 = -30;
/// Under 6 Mbit/s expected throughput a backhaul link is slow.
pub const SLOW_KBPS: u32 = 6_000;
/// Path changes per minute above which the mesh "cannot decide" (mesh11sd users reported
/// thousands of changes per day on such links).
pub const UNSTABLE_PATH_CHANGES_PER_MIN: usize = 6;
/// Link drops in the flap window above which a link is called unstable.
pub const UNSTABLE_FLAPS: usize = 3;
pub const FLAP_WINDOW_MS: u64 = 10 * 60_000;
const MINUTE_MS: u64 = 60_000;
/// Bounds: peers tracked, remembered events per peer.
pub const MAX_PEERS: usize = 64;
const MAX_EVENTS: usize = 256;
/// A peer unseen this long (and not blocked) is forgotten.
const FORGET_MS: u64 = 10 * 60_000;
/// A peer the radio has heard nothing from for this long is not a link, whatever its
/// peering state says. mac80211 refreshes a mesh peer's last-receive time on every beacon
/// it hears from it (`mesh_sta_info_init`, 10 beacons a second by default), so a live peer
/// never gets near this; a powered-off one would otherwise stay ESTAB until wpa_supplicant's
/// `mesh_max_inactivity` (see [`super::sae`]) and the kernel's housekeeping remove it.
pub const SILENT_MS: u32 = 5_000;

/// What the caller must do to the radio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Block { peer: MacAddr, why: String },
    Unblock { peer: MacAddr, why: String },
}

/// One link as reported to the controller and the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkReport {
    pub peer: MacAddr,
    pub plink: String,
    /// The peer link is up (ESTAB) now.
    pub established: bool,
    pub signal_dbm: Option<i8>,
    pub expected_throughput_kbps: Option<u32>,
    pub airtime_metric: Option<u32>,
    pub tx_bitrate_100kbps: Option<u32>,
    /// Since the radio last heard the peer (the station's inactive time).
    pub inactive_ms: Option<u32>,
    pub path_changes_per_min: usize,
    pub flaps_10min: usize,
    pub damping_penalty: u32,
    pub blocked: bool,
    pub verdict: LinkVerdict,
    pub advice: Vec<String>,
}

#[derive(Debug, Clone)]
struct LinkState {
    last: Option<PeerLink>,
    last_seen_ms: u64,
    established: bool,
    penalty: f64,
    penalty_at_ms: u64,
    blocked_since_ms: Option<u64>,
    flaps: VecDeque<u64>,
    path_changes: VecDeque<u64>,
}

impl LinkState {
    fn new(now: u64) -> Self {
        Self {
            last: None,
            last_seen_ms: now,
            established: false,
            penalty: 0.0,
            penalty_at_ms: now,
            blocked_since_ms: None,
            flaps: VecDeque::new(),
            path_changes: VecDeque::new(),
        }
    }

    /// The penalty decayed to `now`.
    fn penalty(&self, now: u64) -> f64 {
        let dt = now.saturating_sub(self.penalty_at_ms) as f64;
        self.penalty * (0.5f64).powf(dt / HALF_LIFE_MS as f64)
    }

    fn add_penalty(&mut self, now: u64, p: f64) {
        self.penalty = self.penalty(now) + p;
        self.penalty_at_ms = now;
    }

    fn count_since(events: &VecDeque<u64>, now: u64, window: u64) -> usize {
        events
            .iter()
            .filter(|&&t| now.saturating_sub(t) < window)
            .count()
    }
}

fn push_bounded(q: &mut VecDeque<u64>, t: u64) {
    if q.len() >= MAX_EVENTS {
        q.pop_front();
    }
    q.push_back(t);
}

/// Health of every peer link of one mesh interface.
#[derive(Debug, Default)]
pub struct HealthMonitor {
    links: BTreeMap<MacAddr, LinkState>,
}

impl HealthMonitor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a station dump taken at `now_ms`; returns the blocks/unblocks to apply.
    pub fn observe_links(&mut self, now_ms: u64, links: &[PeerLink]) -> Vec<Action> {
        for l in links {
            if !self.links.contains_key(&l.peer) && self.links.len() >= MAX_PEERS {
                tracing::warn!(peer = %l.peer, "too many mesh peers tracked; ignoring a new one");
                continue;
            }
            let st = self
                .links
                .entry(l.peer)
                .or_insert_with(|| LinkState::new(now_ms));
            // A silent peer dropped its link, even while its station entry still says ESTAB.
            // A blocked peer seen ESTAB is a new station entry about to be blocked again.
            let est = l.is_established() && !is_silent(l) && st.blocked_since_ms.is_none();
            // A link we blocked shows BLOCKED: that is our doing, not a flap.
            if st.established && !est && st.blocked_since_ms.is_none() {
                push_bounded(&mut st.flaps, now_ms);
                st.add_penalty(now_ms, FLAP_PENALTY);
            }
            st.established = est;
            st.last = Some(l.clone());
            st.last_seen_ms = now_ms;
        }
        // A peer missing from the dump lost its link too (the station entry was deleted).
        let seen: Vec<MacAddr> = links.iter().map(|l| l.peer).collect();
        for (peer, st) in self.links.iter_mut() {
            if !seen.contains(peer) && st.established {
                st.established = false;
                if st.blocked_since_ms.is_none() {
                    push_bounded(&mut st.flaps, now_ms);
                    st.add_penalty(now_ms, FLAP_PENALTY);
                }
            }
        }
        self.links.retain(|_, st| {
            st.blocked_since_ms.is_some() || now_ms.saturating_sub(st.last_seen_ms) < FORGET_MS
        });
        self.decide(now_ms)
    }

    /// Records that the link to `peer` went down at `now_ms`, as the radio said it did: the
    /// kernel deleted the station (nl80211 `DEL_STATION`) or wpa_supplicant reported
    /// `MESH-PEER-DISCONNECTED`. A dump alone can miss a drop: a peer that re-peers within
    /// one poll interval (or before a busy router takes its next dump) looks as if it never
    /// left, so the edges count here and the dumps only fill in what edges do not carry.
    pub fn observe_link_lost(&mut self, now_ms: u64, peer: MacAddr) -> Vec<Action> {
        if let Some(st) = self.links.get_mut(&peer) {
            if st.established && st.blocked_since_ms.is_none() {
                push_bounded(&mut st.flaps, now_ms);
                st.add_penalty(now_ms, FLAP_PENALTY);
            }
            st.established = false;
        }
        self.decide(now_ms)
    }

    /// Records that the path to some destination moved from next hop `old` to `new`: both
    /// links take part in the churn.
    pub fn observe_path_change(&mut self, now_ms: u64, old: Option<MacAddr>, new: MacAddr) {
        for peer in old.into_iter().chain(std::iter::once(new)) {
            if let Some(st) = self.links.get_mut(&peer) {
                push_bounded(&mut st.path_changes, now_ms);
            }
        }
    }

    /// Time passing alone can unblock a link.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        self.decide(now_ms)
    }

    pub fn is_blocked(&self, peer: &MacAddr) -> bool {
        self.links
            .get(peer)
            .is_some_and(|s| s.blocked_since_ms.is_some())
    }

    fn decide(&mut self, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut established = self.links.values().filter(|s| s.established).count();
        for (peer, st) in self.links.iter_mut() {
            let p = st.penalty(now);
            match st.blocked_since_ms {
                None if p >= SUPPRESS_AT => {
                    // A blocked link's state is no longer ESTAB; count it out first.
                    let others = established - usize::from(st.established);
                    if others == 0 {
                        continue; // never cut the node's last link
                    }
                    established = others;
                    st.blocked_since_ms = Some(now);
                    st.established = false;
                    actions.push(Action::Block {
                        peer: *peer,
                        why: format!(
                            "link dropped {} times in {} min; blocked until it calms down",
                            LinkState::count_since(&st.flaps, now, FLAP_WINDOW_MS),
                            FLAP_WINDOW_MS / MINUTE_MS
                        ),
                    });
                }
                Some(since) if p < REUSE_AT || now.saturating_sub(since) >= MAX_BLOCK_MS => {
                    st.blocked_since_ms = None;
                    // Start clean: the block served its time.
                    st.penalty = 0.0;
                    st.penalty_at_ms = now;
                    actions.push(Action::Unblock {
                        peer: *peer,
                        why: format!(
                            "calm for {} s; trying the link again",
                            now.saturating_sub(since) / 1000
                        ),
                    });
                }
                _ => {}
            }
        }
        actions
    }

    /// One report per known peer, sorted by MAC.
    pub fn report(&self, now_ms: u64) -> Vec<LinkReport> {
        self.links
            .iter()
            .map(|(peer, st)| {
                let last = st.last.as_ref();
                let signal = last.and_then(|l| l.signal_avg_dbm.or(l.signal_dbm));
                let tput = last.and_then(|l| l.expected_throughput_kbps);
                let path_changes_per_min =
                    LinkState::count_since(&st.path_changes, now_ms, MINUTE_MS);
                let flaps = LinkState::count_since(&st.flaps, now_ms, FLAP_WINDOW_MS);
                let blocked = st.blocked_since_ms.is_some();
                let (verdict, advice) = advise(signal, tput, path_changes_per_min, flaps, blocked);
                LinkReport {
                    peer: *peer,
                    plink: last.map(|l| l.plink.clone()).unwrap_or_default(),
                    established: st.established,
                    signal_dbm: signal,
                    expected_throughput_kbps: tput,
                    airtime_metric: last.and_then(|l| l.airtime_metric),
                    tx_bitrate_100kbps: last.and_then(|l| l.tx_bitrate_100kbps),
                    inactive_ms: last.and_then(|l| l.inactive_ms),
                    path_changes_per_min,
                    flaps_10min: flaps,
                    damping_penalty: st.penalty(now_ms).round() as u32,
                    blocked,
                    verdict,
                    advice,
                }
            })
            .collect()
    }
}

/// The radio has heard nothing from the peer for [`SILENT_MS`] or longer.
pub fn is_silent(l: &PeerLink) -> bool {
    l.inactive_ms.is_some_and(|ms| ms >= SILENT_MS)
}

/// The verdict and what a person can do about it, worst problem first.
pub fn advise(
    signal_dbm: Option<i8>,
    expected_kbps: Option<u32>,
    path_changes_per_min: usize,
    flaps_10min: usize,
    blocked: bool,
) -> (LinkVerdict, Vec<String>) {
    let mut advice = Vec::new();
    let mut verdict = LinkVerdict::Good;
    if blocked {
        verdict = LinkVerdict::Blocked;
        advice.push(
            "this link kept dropping, so Trellis paused it; it will be retried automatically"
                .to_string(),
        );
    }
    if flaps_10min >= UNSTABLE_FLAPS {
        if verdict == LinkVerdict::Good {
            verdict = LinkVerdict::Unstable;
        }
        advice.push(format!(
            "unstable: the link dropped {flaps_10min} times in 10 minutes; check for \
             interference or move one node"
        ));
    }
    if path_changes_per_min > UNSTABLE_PATH_CHANGES_PER_MIN {
        if verdict == LinkVerdict::Good {
            verdict = LinkVerdict::Unstable;
        }
        advice.push(format!(
            "paths over this link changed {path_changes_per_min} times in the last minute: \
             two routes look equally good; moving a node or raising mesh_rssi_threshold helps \
             the mesh settle"
        ));
    }
    match signal_dbm {
        Some(s) if s < WEAK_DBM => {
            if verdict == LinkVerdict::Good {
                verdict = LinkVerdict::Weak;
            }
            advice.push(format!(
                "weak signal ({s} dBm): move the nodes closer or raise the transmit power"
            ));
        }
        Some(s) if s < FAIR_DBM => {
            if verdict == LinkVerdict::Good {
                verdict = LinkVerdict::Fair;
            }
            advice.push(format!(
                "fair signal ({s} dBm): it works, a spot a little closer would be faster"
            ));
        }
        Some(s) if s > TOO_STRONG_DBM => {
            if verdict == LinkVerdict::Good {
                verdict = LinkVerdict::TooClose;
            }
            advice.push(format!(
                "very strong signal ({s} dBm): the nodes may be too close; move them apart a \
                 little or lower the transmit power"
            ));
        }
        _ => {}
    }
    if let Some(k) = expected_kbps {
        if k > 0 && k < SLOW_KBPS {
            advice.push(format!(
                "slow link (about {:.1} Mbit/s expected)",
                f64::from(k) / 1000.0
            ));
        }
    }
    if advice.is_empty() {
        advice.push("good link".to_string());
    }
    (verdict, advice)
}

#[cfg(test)]
mod tests {
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
}
