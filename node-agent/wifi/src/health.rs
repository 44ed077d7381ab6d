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
#[path = "health_tests.rs"]
mod tests;
