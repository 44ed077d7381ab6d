//! The HWMP role as the supervisor applies it: the inputs read from this node (its own
//! upstream, wired backhaul, a forced role), the decision printed, and its mesh parameters set
//! on the radio and read back.

use std::collections::BTreeMap;

use serde_json::json;

use super::{MeshSettings, RoleArg};
use crate::nl80211::Nl80211;
use crate::report::Reporter;
use crate::role::{Role, RoleDecision, RoleInputs};

pub(super) fn role_inputs(s: &MeshSettings) -> RoleInputs {
    RoleInputs {
        wan_up: default_route_elsewhere(&s.iface),
        wired_backhaul: s.wired_backhaul,
        forced: match s.role {
            RoleArg::Auto => None,
            RoleArg::Portal => Some(Role::Portal),
            RoleArg::Relay => Some(Role::Relay),
        },
    }
}

/// Whether an IPv4 default route leaves through an interface other than the mesh (or the
/// bridge holding it): the node has its own upstream. Read from /proc/net/route, bounded.
fn default_route_elsewhere(mesh_iface: &str) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return false;
    };
    text.lines().skip(1).take(1024).any(|l| {
        let mut f = l.split_whitespace();
        let (Some(dev), Some(dst)) = (f.next(), f.next()) else {
            return false;
        };
        dst == "00000000" && dev != mesh_iface && !dev.starts_with("br-")
    })
}

/// Prints the role decision; the parameters themselves are set by [`try_set_params`] (or went
/// with JOIN_MESH when `joined`).
pub(super) fn report_role(d: &RoleDecision, out: &Reporter, joined: bool) {
    let params: BTreeMap<String, u32> = d
        .mesh_params
        .iter()
        .map(|(p, v)| (p.iw_name().to_string(), *v))
        .collect();
    out.line(
        "role",
        &json!({"role": d.role, "why": d.why, "mesh_params": params,
                "mesh_port_path_cost": d.mesh_port_path_cost, "applied_at_join": joined}),
    );
}

/// Sets the role's mesh parameters; false while the mesh is not joined yet (ENOLINK). On
/// success the kernel's values are read back (GET_MESH_CONFIG) and printed, so what is
/// reported is what the radio runs, not what was asked for.
pub(super) async fn try_set_params(
    nl: &Nl80211,
    ifindex: u32,
    d: &RoleDecision,
    out: &Reporter,
) -> bool {
    if let Err(e) = nl.set_mesh_config(ifindex, &d.mesh_params).await {
        tracing::debug!(error = %e, "mesh parameters not applied yet");
        return false;
    }
    match nl.mesh_config(ifindex).await {
        Ok(all) => {
            let running: BTreeMap<String, u32> = all
                .iter()
                .filter(|(p, _)| d.mesh_params.iter().any(|(q, _)| q == p))
                .map(|(p, v)| (p.iw_name().to_string(), *v))
                .collect();
            out.line("mesh_config", &json!({"role": d.role, "running": running}));
        }
        Err(e) => out.line(
            "error",
            &json!({"what": format!("reading mesh parameters back: {e}")}),
        ),
    }
    true
}
