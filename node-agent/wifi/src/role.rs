//! The node's mesh role and the HWMP parameters that follow from it. Pure logic: inputs in,
//! decision out, time passed as an argument.
//!
//! # Roles
//! - **Portal (WAN)**: the node has an upstream (its WAN is up). It is an HWMP root in
//!   proactive RANN mode (`mesh_hwmp_rootmode=4`) and announces itself as a gate
//!   (`mesh_gate_announcements=1`), so every node keeps a fresh path towards it and knows where
//!   the outside is. Several portals are allowed: each announces, HWMP picks the best by metric.
//! - **Wired satellite**: no WAN, but a cable to the home LAN (which reaches a portal). Wired
//!   backhaul wins: its uplink is the cable, not the air.
//! - **Relay**: neither; it forwards mesh frames (`mesh_fwding=1`) and bridges its own clients.
//!
//! # Wired backhaul without a loop (decision)
//! A wired satellite's mesh interface sits in the same LAN bridge as its cable, and so does the
//! primary's: LAN → satellite bridge → air → primary bridge → LAN is a layer-2 loop. Two known
//! ways out: turn mesh forwarding off on that node (it then stops relaying for nodes behind it,
//! losing wireless coverage), or run STP on the LAN bridge with a high path cost on the mesh port
//! (what mesh11sd does with `mesh_path_cost` 65525). Trellis takes STP: the mesh port of every
//! node gets [`MESH_PORT_PATH_COST`], the primary's bridge gets the lowest bridge priority so it
//! is the STP root, and STP then blocks the wired satellite's mesh *bridge port* while its cable
//! stays forwarding. Mesh forwarding inside 802.11s stays on, so the satellite still relays for
//! wireless-only neighbours; it only stops handing mesh traffic to its LAN, which the portal's
//! gate does. That is why a wired satellite does **not** announce itself as a gate and is not an
//! HWMP root: its gate would lead into a blocked port.
//!
//! # Hysteresis
//! A WAN that bounces must not make the mesh re-root every few seconds (each switch floods
//! RANNs and re-resolves paths): a changed input must hold for [`ROLE_SETTLE_MS`] before the
//! role follows it. The first decision is immediate.

use serde::Serialize;

use super::raw_nla::MeshParam;

/// STP path cost of the mesh port in the LAN bridge: above any wired path (a 10 Mbit/s
/// Ethernet port costs 100 in 802.1D-1998 terms), below the 65535 maximum.
pub const MESH_PORT_PATH_COST: u32 = 65000;
/// Bridge priority of a portal's LAN bridge, so the primary is the STP root (default 32768).
pub const PORTAL_BRIDGE_PRIORITY: u16 = 4096;
/// How long a changed upstream must hold before the role changes.
pub const ROLE_SETTLE_MS: u64 = 10_000;

/// `mesh_hwmp_rootmode` values (`enum ieee80211_root_mode_identifier`).
pub const ROOTMODE_NONE: u32 = 0;
pub const ROOTMODE_RANN: u32 = 4;

/// RANN interval (ms) for portals: 2 s instead of the kernel's 5 s so a new or moved node finds
/// the gate quickly; the cost is one small broadcast per portal every 2 s.
pub const RANN_INTERVAL_MS: u32 = 2000;

/// Path timeouts chosen for healing within ~3 s when a relay dies (kernel default active path
/// timeout is 5 s): paths expire after 2 s idle and are refreshed every 1 s while in use.
pub const ACTIVE_PATH_TIMEOUT_MS: u32 = 2000;
pub const PATH_REFRESH_MS: u32 = 1000;
pub const PATH_TO_ROOT_TIMEOUT_MS: u32 = 3000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Portal,
    WiredSatellite,
    Relay,
}

/// What the role is decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleInputs {
    /// The WAN has a default route / carrier (upstream to the internet).
    pub wan_up: bool,
    /// A cable links this node to the home LAN (and so to a portal).
    pub wired_backhaul: bool,
    /// An operator forced the role (`--role portal|relay`).
    pub forced: Option<Role>,
}

/// The decided role and everything the agent applies for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleDecision {
    pub role: Role,
    /// Mesh parameters to set with SET_MESH_CONFIG.
    pub mesh_params: Vec<(MeshParam, u32)>,
    /// STP path cost of the mesh port in the LAN bridge.
    pub mesh_port_path_cost: u32,
    /// Bridge priority to give the LAN bridge (None: leave the default).
    pub bridge_priority: Option<u16>,
    /// One sentence a person can read on the router page.
    pub why: String,
}

/// Decides the role from the inputs alone.
pub fn decide(inputs: RoleInputs) -> RoleDecision {
    let (role, why) = match (inputs.forced, inputs.wan_up, inputs.wired_backhaul) {
        (Some(r), _, _) => (r, "role set by the operator".to_string()),
        (None, true, _) => (
            Role::Portal,
            "the WAN is up: this node is a way out of the mesh (HWMP root with RANN, gate)"
                .to_string(),
        ),
        (None, false, true) => (
            Role::WiredSatellite,
            "a cable reaches the home LAN: wired backhaul wins, the mesh port yields to STP"
                .to_string(),
        ),
        (None, false, false) => (
            Role::Relay,
            "no WAN and no cable: this node reaches the outside through the mesh".to_string(),
        ),
    };
    let mut mesh_params = vec![
        (MeshParam::Forwarding, 1),
        (MeshParam::HwmpActivePathTimeout, ACTIVE_PATH_TIMEOUT_MS),
        (MeshParam::PathRefreshTime, PATH_REFRESH_MS),
        (MeshParam::HwmpPathToRootTimeout, PATH_TO_ROOT_TIMEOUT_MS),
    ];
    match role {
        Role::Portal => {
            mesh_params.push((MeshParam::HwmpRootmode, ROOTMODE_RANN));
            mesh_params.push((MeshParam::HwmpRannInterval, RANN_INTERVAL_MS));
            mesh_params.push((MeshParam::GateAnnouncements, 1));
        }
        Role::WiredSatellite | Role::Relay => {
            mesh_params.push((MeshParam::HwmpRootmode, ROOTMODE_NONE));
            mesh_params.push((MeshParam::GateAnnouncements, 0));
        }
    }
    mesh_params.sort_by_key(|(p, _)| *p);
    RoleDecision {
        role,
        mesh_params,
        mesh_port_path_cost: MESH_PORT_PATH_COST,
        bridge_priority: (role == Role::Portal).then_some(PORTAL_BRIDGE_PRIORITY),
        why,
    }
}

/// Follows the inputs over time with hysteresis.
#[derive(Debug, Default)]
pub struct RoleMachine {
    current: Option<RoleDecision>,
    /// A different input seen since this time (ms), not yet applied.
    pending: Option<(RoleInputs, u64)>,
}

impl RoleMachine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn current(&self) -> Option<&RoleDecision> {
        self.current.as_ref()
    }

    /// Feeds the inputs seen at `now_ms`; returns a decision to apply when the role changes.
    pub fn update(&mut self, now_ms: u64, inputs: RoleInputs) -> Option<RoleDecision> {
        let wanted = decide(inputs);
        let Some(current) = &self.current else {
            self.current = Some(wanted.clone());
            return Some(wanted);
        };
        // An operator's choice is applied at once; only sensed inputs are damped.
        if wanted.role == current.role {
            self.pending = None;
            return None;
        }
        if inputs.forced.is_some() {
            self.pending = None;
            self.current = Some(wanted.clone());
            return Some(wanted);
        }
        match self.pending {
            Some((p, since)) if p == inputs => {
                if now_ms.saturating_sub(since) >= ROLE_SETTLE_MS {
                    self.pending = None;
                    self.current = Some(wanted.clone());
                    return Some(wanted);
                }
                None
            }
            _ => {
                self.pending = Some((inputs, now_ms));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(d: &RoleDecision, p: MeshParam) -> Option<u32> {
        d.mesh_params.iter().find(|(k, _)| *k == p).map(|(_, v)| *v)
    }

    #[test]
    fn wan_up_makes_a_rann_root_and_gate() {
        let d = decide(RoleInputs {
            wan_up: true,
            ..Default::default()
        });
        assert_eq!(d.role, Role::Portal);
        assert_eq!(param(&d, MeshParam::HwmpRootmode), Some(4));
        assert_eq!(param(&d, MeshParam::GateAnnouncements), Some(1));
        assert_eq!(
            param(&d, MeshParam::HwmpRannInterval),
            Some(RANN_INTERVAL_MS)
        );
        assert_eq!(param(&d, MeshParam::Forwarding), Some(1));
        assert_eq!(d.bridge_priority, Some(PORTAL_BRIDGE_PRIORITY));
    }

    #[test]
    fn wan_wins_over_a_cable() {
        let d = decide(RoleInputs {
            wan_up: true,
            wired_backhaul: true,
            forced: None,
        });
        assert_eq!(d.role, Role::Portal);
    }

    #[test]
    fn wired_satellite_relays_but_is_neither_root_nor_gate() {
        let d = decide(RoleInputs {
            wired_backhaul: true,
            ..Default::default()
        });
        assert_eq!(d.role, Role::WiredSatellite);
        assert_eq!(param(&d, MeshParam::HwmpRootmode), Some(ROOTMODE_NONE));
        assert_eq!(param(&d, MeshParam::GateAnnouncements), Some(0));
        // still forwards inside the mesh: wireless-only neighbours keep their relay
        assert_eq!(param(&d, MeshParam::Forwarding), Some(1));
        // the mesh port is the expensive one, so STP keeps the cable
        assert!(d.mesh_port_path_cost > 10_000);
        assert_eq!(d.bridge_priority, None);
    }

    #[test]
    fn nothing_upstream_is_a_relay() {
        let d = decide(RoleInputs::default());
        assert_eq!(d.role, Role::Relay);
        assert_eq!(param(&d, MeshParam::HwmpRootmode), Some(0));
    }

    #[test]
    fn every_role_heals_faster_than_the_kernel_default() {
        for inputs in [
            RoleInputs::default(),
            RoleInputs {
                wan_up: true,
                ..Default::default()
            },
        ] {
            let d = decide(inputs);
            assert!(param(&d, MeshParam::HwmpActivePathTimeout).unwrap_or(5000) < 5000);
        }
    }

    #[test]
    fn first_decision_is_immediate() {
        let mut m = RoleMachine::new();
        let d = m.update(0, RoleInputs::default()).expect("first");
        assert_eq!(d.role, Role::Relay);
        assert_eq!(m.update(1, RoleInputs::default()), None);
    }

    #[test]
    fn a_bouncing_wan_does_not_flip_the_role() {
        let mut m = RoleMachine::new();
        let up = RoleInputs {
            wan_up: true,
            ..Default::default()
        };
        m.update(0, RoleInputs::default());
        // WAN up for 4 s, down, up again for 9 s: never settled long enough
        assert_eq!(m.update(1_000, up), None);
        assert_eq!(m.update(5_000, up), None);
        assert_eq!(m.update(5_500, RoleInputs::default()), None);
        assert_eq!(m.update(6_000, up), None);
        assert_eq!(m.update(15_000, up), None);
        assert_eq!(m.current().map(|d| d.role), Some(Role::Relay));
        // holds 10 s: now it switches
        let d = m.update(16_000, up).expect("settled");
        assert_eq!(d.role, Role::Portal);
    }

    #[test]
    fn an_operator_choice_applies_at_once() {
        let mut m = RoleMachine::new();
        m.update(0, RoleInputs::default());
        let d = m
            .update(
                1,
                RoleInputs {
                    forced: Some(Role::Portal),
                    ..Default::default()
                },
            )
            .expect("forced");
        assert_eq!(d.role, Role::Portal);
    }
}
