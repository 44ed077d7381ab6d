//! The supervision loop's work: on every poll, the station and mesh-path dumps (what changed,
//! the mesh forming, the no-link diagnosis, the periodic report); on nl80211 and wpa_supplicant
//! events, peers lost and paths healed at once; and flap damping applied to the radio.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::diagnosis::{why_no_link, AuthFailures, DIAGNOSE_AFTER};
use super::link_report::{report, write_link_report};
use super::role_params::try_set_params;
use super::{MeshSecurity, MeshSettings, State};
use crate::health::Action;
use crate::nl80211::{Nl80211, PeerLink, WifiEvent};
use crate::raw_nla::PlinkAction;
use crate::report::Reporter;
use crate::sae::SupplicantEvent;
use crate::sae_failures::SaeVerdict;
use trellis_proto::policy::MacAddr;

pub(super) async fn on_wifi_event(
    nl: &Nl80211,
    ifindex: u32,
    ev: WifiEvent,
    s: &MeshSettings,
    out: &Reporter,
    state: &mut State,
) {
    match ev {
        WifiEvent::PeerDel { ifindex: i, peer } if i == ifindex => {
            link_lost(nl, ifindex, peer, "DELETED", out, state).await;
            // Heal now: forget every path through the lost peer, so the next frame starts a
            // fresh discovery instead of waiting for the path to time out.
            heal_paths_via(nl, ifindex, peer, out, state).await;
            refresh(nl, ifindex, s, out, state).await;
        }
        WifiEvent::PeerNew { ifindex: i, .. } if i == ifindex => {
            refresh(nl, ifindex, s, out, state).await;
        }
        WifiEvent::Radar {
            ifindex: i,
            freq_mhz,
            kind,
        } if i == ifindex || i == 0 => {
            out.line("radar", &json!({"freq": freq_mhz, "event": kind}));
            if kind == crate::nl80211::RadarEvent::Detected {
                if let Err(e) = crate::radar::record(&s.run_dir, freq_mhz, trellis_io::unix_now()) {
                    tracing::warn!(error = %e, "radar sighting not handed to the telemetry");
                }
            }
        }
        WifiEvent::ChannelSwitched {
            ifindex: i,
            freq_mhz,
        } if i == ifindex => {
            out.line(
                "channel",
                &json!({"freq": freq_mhz, "what": "the mesh is on a new channel"}),
            );
        }
        WifiEvent::InterfaceGone { ifindex: i } if i == ifindex => {
            out.line(
                "error",
                &json!({"what": format!("interface {} was deleted", s.iface)}),
            );
        }
        _ => {}
    }
}

/// The radio said the link to `peer` went down (an edge, not a dump): say so and let the
/// damping count it now, before a fast re-peering can hide it from the next dump.
async fn link_lost(
    nl: &Nl80211,
    ifindex: u32,
    peer: MacAddr,
    plink: &str,
    out: &Reporter,
    state: &mut State,
) {
    if state.links.get(&peer).is_some_and(|p| p == "ESTAB") {
        out.line("peer_down", &json!({"peer": peer, "plink": plink}));
        state.links.insert(peer, plink.to_string());
    }
    for action in state.health.observe_link_lost(out.elapsed_ms(), peer) {
        match action {
            // The station this drop deleted cannot be blocked; the decision stands and the
            // next dump blocks the peer's new entry as soon as its beacons re-create it.
            Action::Block { .. } => out.line("damping", &action),
            Action::Unblock { .. } => apply_damping(nl, ifindex, &action, out).await,
        }
    }
}

async fn heal_paths_via(nl: &Nl80211, ifindex: u32, peer: MacAddr, out: &Reporter, state: &State) {
    for p in state.paths.values().filter(|p| p.next_hop == peer) {
        if nl.delete_mesh_path(ifindex, p.dst).await.is_ok() {
            out.line(
                "heal",
                &json!({"dst": p.dst, "via_lost_peer": peer, "action": "path deleted, rediscovering"}),
            );
        }
    }
}

pub(super) async fn on_supplicant_event(
    nl: &Nl80211,
    ifindex: u32,
    ev: SupplicantEvent,
    out: &Reporter,
    state: &mut State,
) {
    match ev {
        SupplicantEvent::GroupStarted => {
            out.line("joined", &json!({"how": "wpa_supplicant (SAE)"}));
            state.params_applied = try_set_params(nl, ifindex, &state.role, out).await;
        }
        SupplicantEvent::PeerConnected(peer) => {
            state.auth_failures.success(peer);
            out.line("sae_peer_connected", &json!({"peer": peer}));
        }
        SupplicantEvent::PeerDisconnected(peer) => {
            out.line("sae_peer_disconnected", &json!({"peer": peer}));
            link_lost(nl, ifindex, peer, "DISCONNECTED", out, state).await;
        }
        SupplicantEvent::SaeAuthFailure(peer) => {
            // Retrying until sure: one failure under load is no reason to re-pair.
            let verdict = state.auth_failures.failure(out.elapsed_ms(), peer);
            let (failures, over_ms) = match verdict {
                SaeVerdict::Retrying { failures, over_ms }
                | SaeVerdict::PasswordDiffers { failures, over_ms } => (failures, over_ms),
            };
            out.line(
                "sae_auth_failure",
                &json!({"peer": peer, "count": failures, "over_s": over_ms / 1000,
                        "sure": verdict.is_sure(), "why": verdict.why()}),
            );
        }
        SupplicantEvent::SaeAuthBlocked { peer, seconds } => {
            out.line(
                "sae_auth_blocked",
                &json!({"peer": peer, "seconds": seconds,
                        "why": "repeated SAE failures: wpa_supplicant pauses attempts with this peer"}),
            );
        }
        SupplicantEvent::GroupRemoved => out.line("left", &json!({})),
        SupplicantEvent::Other(_) => {}
    }
}

/// Dumps stations and paths, prints what changed, runs damping and the diagnosis.
pub(super) async fn refresh(
    nl: &Nl80211,
    ifindex: u32,
    s: &MeshSettings,
    out: &Reporter,
    state: &mut State,
) {
    let now_ms = out.elapsed_ms();
    let links: Vec<PeerLink> = match nl.peer_links(ifindex).await {
        Ok(l) => l,
        Err(e) => {
            out.line("error", &json!({"what": e.to_string()}));
            return;
        }
    };
    // Peer link state changes.
    let mut lost = Vec::new();
    for l in &links {
        let prev = state.links.get(&l.peer);
        if prev.map(String::as_str) != Some(l.plink.as_str()) {
            let was_up = prev.is_some_and(|p| p == "ESTAB");
            if l.is_established() {
                out.line(
                    "peer_up",
                    &json!({"peer": l.peer, "signal_dbm": l.signal_dbm, "airtime_metric": l.airtime_metric}),
                );
            } else if was_up {
                out.line("peer_down", &json!({"peer": l.peer, "plink": l.plink}));
                lost.push(l.peer);
            }
        }
    }
    for (peer, plink) in &state.links {
        if plink == "ESTAB" && !links.iter().any(|l| &l.peer == peer) {
            out.line("peer_down", &json!({"peer": peer, "plink": "GONE"}));
            lost.push(*peer);
        }
    }
    for peer in lost {
        heal_paths_via(nl, ifindex, peer, out, state).await;
    }
    for l in links.iter().filter(|l| l.is_established()) {
        state.auth_failures.success(l.peer);
    }
    state.links = links.iter().map(|l| (l.peer, l.plink.clone())).collect();
    let estab = links.iter().filter(|l| l.is_established()).count();
    if estab > 0 && !state.formed {
        state.formed = true;
        out.line(
            "mesh_formed",
            &json!({"peers": estab, "since_start_ms": state.started.elapsed().as_millis() as u64}),
        );
    }

    // Damping. A blocked peer whose station entry is not BLOCKED (it was deleted and
    // re-created since the block, by the kernel or by wpa_supplicant) is blocked again: the
    // monitor's decision is the truth the radio must follow.
    for l in links
        .iter()
        .filter(|l| l.plink != "BLOCKED" && state.health.is_blocked(&l.peer))
    {
        if let Err(e) = nl
            .set_plink_action(ifindex, l.peer, PlinkAction::Block)
            .await
        {
            out.line(
                "error",
                &json!({"what": format!("blocking a damped peer's new station entry failed: {e}"), "peer": l.peer}),
            );
        }
    }
    for action in state.health.observe_links(now_ms, &links) {
        apply_damping(nl, ifindex, &action, out).await;
    }

    // Paths.
    match nl.mesh_paths(ifindex).await {
        Ok(paths) => {
            let mut new_map = BTreeMap::new();
            for p in paths {
                let old = state.paths.get(&p.dst);
                let changed = old.is_none_or(|o| o.next_hop != p.next_hop);
                if changed {
                    state
                        .health
                        .observe_path_change(now_ms, old.map(|o| o.next_hop), p.next_hop);
                    out.line(
                        "path",
                        &json!({"dst": p.dst, "next_hop": p.next_hop,
                                "old_next_hop": old.map(|o| o.next_hop),
                                "metric": p.info.metric, "hop_count": p.info.hop_count,
                                "active": p.info.is_active()}),
                    );
                }
                new_map.insert(p.dst, p);
            }
            for dst in state.paths.keys() {
                if !new_map.contains_key(dst) {
                    out.line("path_gone", &json!({"dst": dst}));
                }
            }
            state.paths = new_map;
        }
        Err(e) => out.line("error", &json!({"what": e.to_string()})),
    }

    // Diagnosis: no peer link for a while. Said once per outage, withdrawn when a link comes up.
    if estab > 0 {
        state.no_link_since = None;
        if state.diagnosed {
            state.diagnosed = false;
            out.line("diagnosis_cleared", &json!({"peers": estab}));
        }
    } else {
        let since = *state.no_link_since.get_or_insert_with(Instant::now);
        if !state.diagnosed && since.elapsed() >= DIAGNOSE_AFTER {
            state.diagnosed = true;
            let seen: Vec<MacAddr> = links.iter().map(|l| l.peer).collect();
            let sae = matches!(s.security, MeshSecurity::Sae(_));
            let auth = if state.auth_failures.any_sure() {
                AuthFailures::Sure
            } else if !state.auth_failures.is_empty() {
                AuthFailures::Retrying
            } else {
                AuthFailures::None
            };
            let why = why_no_link(sae, !seen.is_empty(), auth);
            out.line(
                "diagnosis",
                &json!({"problem": "no_peer_link", "peers_in_range": seen, "auth_failures": state.auth_failures.total(), "why": why}),
            );
        }
    }

    if state.last_report.elapsed() >= s.report_every {
        state.last_report = Instant::now();
        report(out, state, now_ms);
        write_link_report(&s.run_dir, state, now_ms);
    }
    for action in state.health.tick(now_ms) {
        apply_damping(nl, ifindex, &action, out).await;
    }
}

async fn apply_damping(nl: &Nl80211, ifindex: u32, action: &Action, out: &Reporter) {
    let result = match action {
        Action::Block { peer, .. } => {
            nl.set_plink_action(ifindex, *peer, PlinkAction::Block)
                .await
        }
        // Deleting the station forgets the BLOCKED state; the next beacon from the peer starts a
        // fresh peering (kernel MPM or wpa_supplicant alike, where plink_action open is refused).
        Action::Unblock { peer, .. } => nl.delete_station(ifindex, *peer).await,
    };
    match result {
        Ok(()) => out.line("damping", action),
        Err(e) => out.line(
            "error",
            &json!({"what": format!("damping action failed: {e}"), "action": action}),
        ),
    }
}
