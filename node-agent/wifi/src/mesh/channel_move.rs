//! Following the home's mesh channel: on every poll the supervisor reads the channel the
//! controller named ([`crate::channel_file`]), plans the move with [`crate::channel::plan`] and
//! carries it out at the planned moment — a channel switch announcement a few beacons ahead of
//! the common switch time, or a leave and join on the new channel (a width or band change, or
//! a move this router missed). Nothing is remembered across polls but the step in flight: a
//! move that did not happen (the announcement was lost, the radio refused it) is planned again
//! once its switch time has passed, and then it is a rejoin.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use trellis_proto::channel::{MeshChannel, Width};

use super::supplicant::{schedule_restart, start_supplicant, Sup};
use super::{Error, MeshSecurity, MeshSettings};
use crate::channel::{plan, MovePlan, Rejoin, MISSED_AFTER_MS};
use crate::nl80211::Nl80211;
use crate::report::Reporter;
use crate::role::RoleDecision;
use crate::sae::SupplicantConfig;

/// What to do at the planned moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Announce { count: u8 },
    Rejoin(Rejoin),
}

/// The step in flight and the channel it moves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) at: Instant,
    pub(super) target: MeshChannel,
    pub(super) step: Step,
}

pub(super) struct ChannelFollower {
    /// The channel file, when this mesh follows the home's channel.
    file: Option<PathBuf>,
    /// The channel the mesh interface is on: what it joined, then what the radio reported.
    pub(super) current: (u32, Width),
    pending: Option<Pending>,
    /// A generation announced or rejoined, and the unix ms until which it is left to happen.
    settling: Option<(u64, u64)>,
}

impl ChannelFollower {
    pub(super) fn new(file: Option<PathBuf>, freq_mhz: u32) -> Self {
        Self {
            file,
            // A mac80211 mesh joined without a width runs 20 MHz (HT20).
            current: (freq_mhz, Width::Mhz20),
            pending: None,
            settling: None,
        }
    }

    /// Reads the channel file and plans; `now_unix_ms` and `now` are the same moment.
    pub(super) fn poll(&mut self, now_unix_ms: u64, now: Instant, out: &Reporter) {
        let target = self.file.as_deref().and_then(crate::channel_file::read);
        let from = self.current.0;
        if let Some(p) = self.consider(target.as_ref(), now_unix_ms, now) {
            out.line(
                "channel_move_planned",
                &json!({
                    "from": from, "to": p.target.freq_mhz, "width": p.target.width,
                    "generation": p.target.generation, "in_ms": p.at.saturating_duration_since(now).as_millis() as u64,
                    "how": match &p.step { Step::Announce { .. } => "announce", Step::Rejoin(_) => "rejoin" },
                    "why": match &p.step { Step::Announce { .. } => "", Step::Rejoin(r) => rejoin_why(*r) },
                    "reason": p.target.reason,
                }),
            );
        }
    }

    /// The plan for `target` (the decision of [`Self::poll`], without the file): a new
    /// pending step when one is due, `None` when nothing changes.
    pub(super) fn consider(
        &mut self,
        target: Option<&MeshChannel>,
        now_unix_ms: u64,
        now: Instant,
    ) -> Option<&Pending> {
        let target = target?;
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.target.generation == target.generation)
        {
            return None;
        }
        let step = match plan(Some(self.current), target, now_unix_ms) {
            MovePlan::Stay => {
                self.pending = None;
                self.settling = None;
                return None;
            }
            MovePlan::Announce { wait_ms, count } => (wait_ms, Step::Announce { count }),
            MovePlan::Rejoin { wait_ms, why } => (wait_ms, Step::Rejoin(why)),
        };
        if let Some((generation, until)) = self.settling {
            if generation == target.generation && now_unix_ms <= until {
                return None;
            }
        }
        self.pending = Some(Pending {
            at: now + Duration::from_millis(step.0),
            target: target.clone(),
            step: step.1,
        });
        self.pending.as_ref()
    }

    /// When the step in flight is due.
    pub(super) fn due(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.at)
    }

    /// The step in flight, taken to be carried out; until its switch time has passed (and a
    /// little more), the generation is left to happen.
    pub(super) fn take(&mut self, now_unix_ms: u64) -> Option<Pending> {
        let p = self.pending.take()?;
        let until = p
            .target
            .switch_at_unix
            .saturating_mul(1000)
            .max(now_unix_ms)
            + MISSED_AFTER_MS;
        self.settling = Some((p.target.generation, until));
        Some(p)
    }

    /// The radio says the mesh is on `freq_mhz` now (a switch completed, or a join).
    pub(super) fn on_channel(&mut self, freq_mhz: u32, width: Width) {
        self.current = (freq_mhz, width);
    }
}

fn rejoin_why(r: Rejoin) -> &'static str {
    match r {
        Rejoin::NotJoined => "the mesh was not joined yet",
        Rejoin::CannotAnnounce => {
            "a width or band change, which a mesh channel switch announcement cannot carry"
        }
        Rejoin::MissedTheMove => "the switch time passed with this router still on the old channel",
    }
}

pub(super) fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Carries out `p`: the announcement, or a leave and join on the new channel (with
/// wpa_supplicant restarted on it for an SAE mesh). `s.freq_mhz` follows the move, so a later
/// restart of wpa_supplicant joins the new channel too.
#[allow(clippy::too_many_arguments)]
pub(super) async fn carry_out(
    p: &Pending,
    nl: &Nl80211,
    ifindex: u32,
    s: &mut MeshSettings,
    sup: &mut Option<Sup>,
    role: &RoleDecision,
    follower: &mut ChannelFollower,
    out: &Reporter,
) -> Result<(), Error> {
    let t = &p.target;
    match &p.step {
        Step::Announce { count } => {
            nl.channel_switch(ifindex, t.freq_mhz, t.width, t.center_freq_mhz, *count)
                .await?;
            out.line(
                "channel_announced",
                &json!({"to": t.freq_mhz, "width": t.width, "beacons": count, "generation": t.generation}),
            );
            // The radio's CH_SWITCH_NOTIFY moves `current` when the switch happens.
        }
        Step::Rejoin(why) => {
            s.freq_mhz = t.freq_mhz;
            match (&s.security, sup.as_mut()) {
                (MeshSecurity::Sae(password), Some(st)) => {
                    SupplicantConfig {
                        mesh_id: s.mesh_id.clone(),
                        freq_mhz: t.freq_mhz,
                        password: password.clone(),
                        mesh_fwding: true,
                        ctrl_dir: s.run_dir.join("wpa"),
                    }
                    .write(&st.config_path)?;
                    // Stopping its tasks kills wpa_supplicant without an exit message (no
                    // restart is scheduled); the kernel's mesh is left, then joined anew.
                    st.stop();
                    let _ = nl.leave_mesh(ifindex).await;
                    if let Err(e) = start_supplicant(s, st, out).await {
                        // The supervisor's usual backoff brings it back, on the new channel.
                        schedule_restart(st, out);
                        return Err(e);
                    }
                }
                _ => {
                    let _ = nl.leave_mesh(ifindex).await;
                    nl.join_open_mesh(ifindex, &s.mesh_id, t.freq_mhz, &role.mesh_params)
                        .await?;
                }
            }
            follower.on_channel(t.freq_mhz, Width::Mhz20);
            out.line(
                "channel_rejoined",
                &json!({"to": t.freq_mhz, "generation": t.generation, "why": rejoin_why(*why)}),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(freq_mhz: u32, generation: u64, switch_at_unix: u64) -> MeshChannel {
        MeshChannel {
            freq_mhz,
            width: Width::Mhz20,
            center_freq_mhz: freq_mhz,
            generation,
            switch_at_unix,
            reason: "set by a person".into(),
        }
    }

    #[test]
    fn a_move_is_planned_once_then_left_to_happen_then_checked() {
        let now = Instant::now();
        let mut f = ChannelFollower::new(None, 2412);
        // No channel named: stay on the configured one.
        assert!(f.consider(None, 1_000_000, now).is_none());
        // Channel 6 at t = 1005 s, heard at 1000 s: announce 5 beacons before.
        let six = channel(2437, 2, 1005);
        let p = f
            .consider(Some(&six), 1_000_000, now)
            .cloned()
            .expect("planned");
        assert_eq!(p.step, Step::Announce { count: 5 });
        assert_eq!(p.at, now + Duration::from_millis(5_000 - 5 * 102));
        // The next polls see the same generation: nothing new.
        assert!(f.consider(Some(&six), 1_001_000, now).is_none());
        assert_eq!(f.take(1_004_490), Some(p));
        assert!(f.due().is_none());
        // While it settles, still nothing; once the radio reports the switch, it stays.
        assert!(f.consider(Some(&six), 1_004_000, now).is_none());
        f.on_channel(2437, Width::Mhz20);
        assert!(f.consider(Some(&six), 1_009_000, now).is_none());
        assert!(f.due().is_none());
    }

    #[test]
    fn a_switch_that_did_not_happen_becomes_a_rejoin() {
        let now = Instant::now();
        let mut f = ChannelFollower::new(None, 2412);
        let six = channel(2437, 2, 1005);
        f.consider(Some(&six), 1_000_000, now);
        f.take(1_004_490);
        // Long past the switch time and the radio never moved: join the new channel.
        let p = f
            .consider(Some(&six), 1_005_000 + MISSED_AFTER_MS + 1, now)
            .cloned()
            .expect("replanned");
        assert_eq!(p.step, Step::Rejoin(Rejoin::MissedTheMove));
        assert_eq!(p.at, now);
    }

    #[test]
    fn a_router_that_starts_after_the_move_joins_the_new_channel_at_once() {
        let now = Instant::now();
        let mut f = ChannelFollower::new(None, 2412);
        let p = f
            .consider(Some(&channel(2462, 7, 500)), 1_000_000, now)
            .cloned()
            .expect("planned");
        assert_eq!(p.step, Step::Rejoin(Rejoin::MissedTheMove));
        // A newer move replaces one still pending.
        let mut g = ChannelFollower::new(None, 2412);
        g.consider(Some(&channel(2437, 2, 1005)), 1_000_000, now);
        let later = g
            .consider(Some(&channel(2462, 3, 1010)), 1_000_100, now)
            .cloned()
            .expect("the newer move");
        assert_eq!(later.target.generation, 3);
    }
}
