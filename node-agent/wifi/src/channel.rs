//! The agent's half of a coordinated channel move (pure logic): given the channel the mesh
//! interface is on and the [`MeshChannel`] the controller's snapshot names, what to do and
//! when, so that every router switches at the same moment.
//!
//! mac80211 moves a mesh with a channel switch announcement only within one band and at the
//! same width (`ieee80211_set_csa_beacon`, the mesh case, returns EINVAL otherwise); any other
//! move is a leave and join on the new channel at the switch time. A router that missed the
//! move (off, or unreachable, past the switch time) joins the new channel directly.

use trellis_proto::channel::{Band, MeshChannel, Width};

/// One beacon interval of a mac80211 mesh: 100 TU of 1.024 ms.
pub const BEACON_MS: u64 = 102;
/// How many beacons ahead the announcement goes out: a few, so a peer that misses one beacon
/// still hears it, and short enough that the move is quick.
pub const CSA_BEACONS: u8 = 5;
/// Past the switch time by more than this, the move is over: a router still on the old
/// channel missed it and rejoins on the new one.
pub const MISSED_AFTER_MS: u64 = 3_000;

/// What the mesh supervisor does about the snapshot's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MovePlan {
    /// Already there.
    Stay,
    /// Send the channel switch announcement `wait_ms` from now with `count` beacons to go.
    Announce { wait_ms: u64, count: u8 },
    /// Leave and join on the new channel `wait_ms` from now (0: at once), saying why.
    Rejoin { wait_ms: u64, why: Rejoin },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoin {
    /// The mesh is not joined yet: join on the home's channel.
    NotJoined,
    /// A width or band change, which a mesh announcement cannot carry.
    CannotAnnounce,
    /// The switch time passed while this router was away.
    MissedTheMove,
}

/// The plan for `target`, with the interface on `current` (`None`: not joined) at `now_ms`
/// (unix milliseconds).
pub fn plan(current: Option<(u32, Width)>, target: &MeshChannel, now_ms: u64) -> MovePlan {
    let switch_ms = target.switch_at_unix.saturating_mul(1000);
    let Some((freq, width)) = current else {
        return MovePlan::Rejoin {
            wait_ms: 0,
            why: Rejoin::NotJoined,
        };
    };
    if freq == target.freq_mhz && width == target.width {
        return MovePlan::Stay;
    }
    if now_ms > switch_ms + MISSED_AFTER_MS {
        return MovePlan::Rejoin {
            wait_ms: 0,
            why: Rejoin::MissedTheMove,
        };
    }
    if width != target.width || Band::of(freq) != Band::of(target.freq_mhz) {
        return MovePlan::Rejoin {
            wait_ms: switch_ms.saturating_sub(now_ms),
            why: Rejoin::CannotAnnounce,
        };
    }
    let lead = u64::from(CSA_BEACONS) * BEACON_MS;
    let announce_at = switch_ms.saturating_sub(lead);
    if now_ms <= announce_at {
        MovePlan::Announce {
            wait_ms: announce_at - now_ms,
            count: CSA_BEACONS,
        }
    } else {
        // Late (the snapshot arrived close to the switch): announce now with the beacons
        // left, at least one so peers still hear it.
        let left = switch_ms.saturating_sub(now_ms) / BEACON_MS;
        MovePlan::Announce {
            wait_ms: 0,
            count: left.clamp(1, u64::from(CSA_BEACONS)) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(freq_mhz: u32, width: Width) -> MeshChannel {
        MeshChannel {
            freq_mhz,
            width,
            center_freq_mhz: freq_mhz,
            generation: 2,
            switch_at_unix: 1_000,
            reason: "radar on channel 52".into(),
        }
    }

    #[test]
    fn every_router_announces_the_same_beacons_before_the_same_moment() {
        let t = target(5180, Width::Mhz20);
        // Two routers that got the snapshot at different times announce at the same time.
        for got_at in [995_000, 997_300] {
            let p = plan(Some((5260, Width::Mhz20)), &t, got_at);
            let MovePlan::Announce { wait_ms, count } = p else {
                panic!("{p:?}")
            };
            assert_eq!(got_at + wait_ms, 1_000_000 - 5 * BEACON_MS);
            assert_eq!(count, CSA_BEACONS);
        }
        // A late one still announces, with the beacons left.
        assert_eq!(
            plan(Some((5260, Width::Mhz20)), &t, 999_800),
            MovePlan::Announce {
                wait_ms: 0,
                count: 1
            }
        );
    }

    #[test]
    fn already_there_stays_and_not_joined_joins() {
        let t = target(5180, Width::Mhz20);
        assert_eq!(plan(Some((5180, Width::Mhz20)), &t, 0), MovePlan::Stay);
        assert_eq!(
            plan(None, &t, 0),
            MovePlan::Rejoin {
                wait_ms: 0,
                why: Rejoin::NotJoined
            }
        );
    }

    #[test]
    fn a_width_change_rejoins_at_the_switch_time() {
        let t = target(5180, Width::Mhz80);
        assert_eq!(
            plan(Some((5260, Width::Mhz20)), &t, 996_000),
            MovePlan::Rejoin {
                wait_ms: 4_000,
                why: Rejoin::CannotAnnounce
            }
        );
    }

    #[test]
    fn a_router_that_was_off_during_the_move_rejoins_on_the_new_channel() {
        let t = target(5180, Width::Mhz20);
        assert_eq!(
            plan(
                Some((5260, Width::Mhz20)),
                &t,
                1_000_000 + MISSED_AFTER_MS + 1
            ),
            MovePlan::Rejoin {
                wait_ms: 0,
                why: Rejoin::MissedTheMove
            }
        );
    }
}
