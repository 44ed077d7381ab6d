//! Whether this router's mesh password differs from a peer's, as sure as SAE failures over
//! time make it. Pure logic: the caller feeds wpa_supplicant's `MESH-SAE-AUTH-FAILURE` and
//! `MESH-PEER-CONNECTED` events (and links seen up) with a monotonic time in milliseconds.
//!
//! One SAE failure proves little: under load a commit or confirm frame is lost or late and
//! wpa_supplicant retries, then peers normally. Telling a person to re-pair a correctly paired
//! router is worse than waiting, so a peer is called "password differs" only after
//! [`SURE_FAILURES`] failures spread over at least [`SURE_SPAN_MS`] with no success in
//! between; until then it is "retrying". A success (the peer connected) clears the count.

use std::collections::BTreeMap;

use trellis_proto::policy::MacAddr;

/// Failures with one peer, with no success between them, before the diagnosis is sure.
pub const SURE_FAILURES: u32 = 3;
/// ... spread over at least this long (a burst of retries within a second is one bad moment).
pub const SURE_SPAN_MS: u64 = 30_000;
/// Peers tracked at most (a router hears a handful; a crowded block may show more).
pub const MAX_PEERS: usize = 64;
/// A peer with no failure for this long starts from zero again.
const FORGET_MS: u64 = 10 * 60_000;

/// What the failures with one peer say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaeVerdict {
    /// Failed, not (yet) sure why: wpa_supplicant retries by itself.
    Retrying { failures: u32, over_ms: u64 },
    /// Failed again and again over time, never succeeding: the passwords differ.
    PasswordDiffers { failures: u32, over_ms: u64 },
}

impl SaeVerdict {
    pub fn is_sure(self) -> bool {
        matches!(self, SaeVerdict::PasswordDiffers { .. })
    }

    /// The sentence for the person reading the agent's output.
    pub fn why(self) -> String {
        match self {
            SaeVerdict::Retrying { failures, over_ms } => format!(
                "SAE authentication with this peer failed {failures} time(s) in {} s; retrying \
                 (one failure under load is normal; a password mismatch is only reported after \
                 {SURE_FAILURES} failures over {} s with no success)",
                over_ms / 1000,
                SURE_SPAN_MS / 1000
            ),
            SaeVerdict::PasswordDiffers { failures, over_ms } => format!(
                "SAE authentication with this peer failed {failures} times over {} s and never \
                 succeeded: this node and the peer do not share the mesh password (re-pair the \
                 node, or check the mesh credentials)",
                over_ms / 1000
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    first_ms: u64,
    last_ms: u64,
    count: u32,
}

impl Failures {
    fn verdict(self) -> SaeVerdict {
        let over_ms = self.last_ms.saturating_sub(self.first_ms);
        if self.count >= SURE_FAILURES && over_ms >= SURE_SPAN_MS {
            SaeVerdict::PasswordDiffers {
                failures: self.count,
                over_ms,
            }
        } else {
            SaeVerdict::Retrying {
                failures: self.count,
                over_ms,
            }
        }
    }
}

/// SAE failures per peer since its last success (bounded).
#[derive(Debug, Default)]
pub struct SaeFailures {
    peers: BTreeMap<MacAddr, Failures>,
}

impl SaeFailures {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `MESH-SAE-AUTH-FAILURE` with `peer` at `now_ms`; returns what it says now.
    pub fn failure(&mut self, now_ms: u64, peer: MacAddr) -> SaeVerdict {
        self.forget_old(now_ms);
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            // Make room by forgetting the peer whose last failure is oldest.
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, f)| f.last_ms)
                .map(|(m, _)| *m)
            {
                self.peers.remove(&oldest);
            }
        }
        let f = self.peers.entry(peer).or_insert(Failures {
            first_ms: now_ms,
            last_ms: now_ms,
            count: 0,
        });
        f.count = f.count.saturating_add(1);
        f.last_ms = f.last_ms.max(now_ms);
        f.verdict()
    }

    /// The peer authenticated (connected, or its link is up): its failures were passing.
    pub fn success(&mut self, peer: MacAddr) {
        self.peers.remove(&peer);
    }

    /// What the failures with `peer` say, if it failed since its last success.
    pub fn verdict(&self, peer: &MacAddr) -> Option<SaeVerdict> {
        self.peers.get(peer).map(|f| f.verdict())
    }

    /// Whether some peer's password surely differs.
    pub fn any_sure(&self) -> bool {
        self.peers.values().any(|f| f.verdict().is_sure())
    }

    /// Failures counted, all peers (for the diagnosis line).
    pub fn total(&self) -> u32 {
        self.peers
            .values()
            .fold(0u32, |n, f| n.saturating_add(f.count))
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    fn forget_old(&mut self, now_ms: u64) {
        self.peers
            .retain(|_, f| now_ms.saturating_sub(f.last_ms) < FORGET_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, n, 0])
    }

    #[test]
    fn one_failure_under_load_is_retrying_not_a_wrong_password() {
        let mut f = SaeFailures::new();
        let v = f.failure(1_000, mac(1));
        assert!(!v.is_sure());
        assert!(v.why().contains("retrying"));
        assert!(!v.why().contains("re-pair"));
        // It then peers normally: nothing is left to diagnose.
        f.success(mac(1));
        assert_eq!(f.verdict(&mac(1)), None);
        assert!(!f.any_sure());
    }

    #[test]
    fn a_burst_of_failures_within_seconds_is_not_sure_either() {
        let mut f = SaeFailures::new();
        for t in [0, 200, 400, 1_000, 2_000] {
            assert!(!f.failure(t, mac(1)).is_sure());
        }
    }

    #[test]
    fn a_persistently_wrong_password_gets_the_re_pair_advice() {
        let mut f = SaeFailures::new();
        // wpa_supplicant retries every few seconds (then blocks for a while): failures keep
        // coming, never a success.
        let mut last = None;
        for t in (0..=40_000).step_by(10_000) {
            last = Some(f.failure(t, mac(1)));
        }
        let v = last.unwrap();
        assert!(v.is_sure(), "{v:?}");
        assert!(v.why().contains("re-pair"));
        assert!(f.any_sure());
        assert_eq!(f.total(), 5);
        // Another peer that failed once is still only retrying.
        assert!(!f.failure(41_000, mac(2)).is_sure());
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let mut f = SaeFailures::new();
        f.failure(0, mac(1));
        f.failure(20_000, mac(1));
        f.success(mac(1));
        assert!(!f.failure(40_000, mac(1)).is_sure());
        assert!(!f.failure(50_000, mac(1)).is_sure());
    }

    #[test]
    fn the_map_is_bounded_and_old_failures_are_forgotten() {
        let mut f = SaeFailures::new();
        for n in 0..=(MAX_PEERS as u8) {
            f.failure(u64::from(n), mac(n));
        }
        assert_eq!(f.peers.len(), MAX_PEERS);
        assert_eq!(f.verdict(&mac(0)), None, "the oldest went");
        f.failure(FORGET_MS + 1_000, mac(200));
        assert_eq!(f.peers.len(), 1);
    }
}
