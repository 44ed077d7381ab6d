//! `trellis-agent mesh`: forms the 802.11s mesh on one radio and keeps it healthy.
//!
//! It creates the mesh-point interface through nl80211, has it joined (SAE through
//! wpa_supplicant; an open mesh through JOIN_MESH only with `--open-test-mesh`), applies the
//! role's HWMP parameters, then follows nl80211 and wpa_supplicant events, with a station and
//! mesh-path dump every `--poll-ms` for the figures events do not carry (signal, metric, path
//! changes). Everything it learns is printed as JSON lines on stdout, one object per line with
//! `t_ms` (since start), `node` and `event`; the controller client forwards the same objects.
//!
//! Pairing hook: the controller hands out [`trellis_proto::snapshot::MeshCredentials`] at
//! enrollment. [`MeshSettings::with_credentials`] turns them into settings for [`run`], so the
//! lead's `run` command can start the mesh from the snapshot instead of a password file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::health::{Action, HealthMonitor};
use super::link::Links;
use super::nl80211::{MeshPath, Nl80211, PeerLink, WifiEvent};
use super::raw_nla::PlinkAction;
use super::report::Reporter;
use super::role::{Role, RoleDecision, RoleInputs, RoleMachine};
use super::sae::{Ctrl, Supplicant, SupplicantConfig, SupplicantEvent};
use super::sae_failures::{SaeFailures, SaeVerdict};
pub use super::settings::{Error, MeshArgs, MeshSecurity, MeshSettings, RoleArg};
use trellis_proto::policy::MacAddr;

/// Entry point for the CLI: own single-threaded runtime (a router has one or two cores).
/// `paired`: the mesh credentials the controller handed over at pairing, used when the
/// command line names neither a mesh ID nor a password file.
pub fn main(args: MeshArgs, paired: Option<trellis_proto::snapshot::MeshCredentials>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if args.list {
            return list().await;
        }
        let settings = match paired {
            Some(creds) => MeshSettings::from_paired(&args, &creds)?,
            None => MeshSettings::from_args(&args)?,
        };
        run(settings).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            eprintln!("trellis-agent: {msg}");
            ExitCode::from(if matches!(e, Error::NoMeshId | Error::NoSecurity) {
                64
            } else {
                1
            })
        }
    }
}

async fn list() -> Result<(), Error> {
    let nl = Nl80211::connect()?;
    let out = Reporter::new(String::new());
    out.line("radios", &json!({ "radios": nl.radios().await? }));
    out.line(
        "interfaces",
        &json!({ "interfaces": nl.interfaces().await? }),
    );
    Ok(())
}

/// wpa_supplicant supervision: restart with capped exponential backoff.
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// After this long with peers in sight but none established, say why.
const DIAGNOSE_AFTER: Duration = Duration::from_secs(12);

struct Sup {
    /// The tasks owning the wpa_supplicant child and its event socket; aborting them kills
    /// the child (kill_on_drop).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ctrl: Option<Ctrl>,
    config_path: PathBuf,
    backoff: Duration,
    restart_at: Option<Instant>,
    tx: tokio::sync::mpsc::Sender<SupMsg>,
}

impl Sup {
    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.ctrl = None;
    }
}

/// What the supervision tasks tell the main loop.
enum SupMsg {
    Event(SupplicantEvent),
    Exited(String),
    EventsLost(String),
}

/// Forms the mesh and supervises it until SIGINT/SIGTERM.
pub async fn run(s: MeshSettings) -> Result<(), Error> {
    let out = Reporter::new(s.node.clone());
    let nl = Nl80211::connect()?;
    let links = Links::connect()?;
    let radio = nl.radio_by_name(&s.phy).await?;
    // Subscribe before creating/joining so no peer event is missed.
    let mut nl_events: std::pin::Pin<Box<dyn futures_util::Stream<Item = WifiEvent>>> =
        Box::pin(super::nl80211::events()?);
    let iface = nl.ensure_mesh_interface(radio.wiphy, &s.iface).await?;
    let ifindex = iface.ifindex;

    let mut roles = RoleMachine::new();
    let role = roles
        .update(out.elapsed_ms(), role_inputs(&s))
        .unwrap_or_else(|| super::role::decide(role_inputs(&s)));

    out.line(
        "started",
        &json!({
            "iface": s.iface, "ifindex": ifindex, "mac": iface.mac, "phy": s.phy,
            "mesh_id": s.mesh_id, "freq": s.freq_mhz,
            "security": match s.security { MeshSecurity::Sae(_) => "sae", MeshSecurity::OpenTestMesh => "open-test-mesh" },
            "role": role.role, "role_why": role.why,
        }),
    );

    if let Some(bridge) = &s.bridge {
        links.enslave(&s.iface, bridge).await?;
        links
            .set_port_cost(&s.iface, role.mesh_port_path_cost)
            .await?;
    }
    if let Some(addr) = s.addr {
        links.add_address(&s.iface, addr).await?;
    }

    let mut sup: Option<Sup> = None;
    // Bounded: wpa_supplicant sends a handful of events per peer; if the loop falls behind,
    // the event task waits instead of growing a queue.
    let (sup_tx, mut sup_rx) = tokio::sync::mpsc::channel::<SupMsg>(64);
    let mut params_applied = false;
    match &s.security {
        MeshSecurity::OpenTestMesh => {
            links.set_up(&s.iface).await?;
            // The role's parameters go with JOIN_MESH: no window with kernel defaults.
            if let Err(e) = nl
                .join_open_mesh(ifindex, &s.mesh_id, s.freq_mhz, &role.mesh_params)
                .await
            {
                // Joined already (a previous run was killed): leave, then join with our settings.
                tracing::info!(error = %e, "leaving the mesh to rejoin it");
                nl.leave_mesh(ifindex).await?;
                nl.join_open_mesh(ifindex, &s.mesh_id, s.freq_mhz, &role.mesh_params)
                    .await?;
            }
            params_applied = true;
            out.line(
                "joined",
                &json!({"how": "JOIN_MESH (open test mesh, no encryption)"}),
            );
        }
        MeshSecurity::Sae(password) => {
            let ctrl_dir = s.run_dir.join("wpa");
            let config_path = s.run_dir.join(format!("wpa-{}.conf", s.iface));
            SupplicantConfig {
                mesh_id: s.mesh_id.clone(),
                freq_mhz: s.freq_mhz,
                password: password.clone(),
                mesh_fwding: true,
                ctrl_dir: ctrl_dir.clone(),
            }
            .write(&config_path)?;
            let mut st = Sup {
                tasks: Vec::new(),
                ctrl: None,
                config_path,
                backoff: RESTART_MIN,
                restart_at: None,
                tx: sup_tx.clone(),
            };
            // A mesh left joined by a killed run would make wpa_supplicant's join fail.
            let _ = nl.leave_mesh(ifindex).await;
            // No mesh, no links: `trellis-agent run` must not keep sending the last report.
            let _ = std::fs::remove_file(s.run_dir.join(LINK_REPORT_FILE));
            start_supplicant(&s, &mut st, &out).await?;
            sup = Some(st);
        }
    }
    report_role(&role, &out, params_applied);
    if !params_applied {
        params_applied = try_set_params(&nl, ifindex, &role, &out).await;
    }

    let mut state = State {
        mac: iface.mac,
        links: BTreeMap::new(),
        paths: BTreeMap::new(),
        formed: false,
        started: Instant::now(),
        health: HealthMonitor::new(),
        auth_failures: SaeFailures::new(),
        diagnosed: false,
        no_link_since: None,
        last_report: Instant::now(),
        role,
        params_applied,
    };
    let mut tick = tokio::time::interval(s.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Link(super::link::Error::Socket(e)))?;

    loop {
        tokio::select! {
            _ = tick.tick() => {
                refresh(&nl, ifindex, &s, &out, &mut state).await;
                if let Some(st) = sup.as_mut() {
                    if st.restart_at.is_some_and(|t| Instant::now() >= t) {
                        st.restart_at = None;
                        if let Err(e) = start_supplicant(&s, st, &out).await {
                            out.line("error", &json!({"what": format!("restarting wpa_supplicant: {e}")}));
                            schedule_restart(st, &out);
                        }
                    }
                }
                if !state.params_applied {
                    state.params_applied = try_set_params(&nl, ifindex, &state.role, &out).await;
                }
                if let Some(d) = roles.update(out.elapsed_ms(), role_inputs(&s)) {
                    state.role = d.clone();
                    report_role(&d, &out, false);
                    state.params_applied = try_set_params(&nl, ifindex, &d, &out).await;
                }
            }
            ev = nl_events.next() => {
                let Some(ev) = ev else {
                    out.line("error", &json!({"what": "nl80211 event socket closed; polling only"}));
                    nl_events = Box::pin(futures_util::stream::pending());
                    continue;
                };
                on_wifi_event(&nl, ifindex, ev, &s, &out, &mut state).await;
            }
            Some(msg) = sup_rx.recv() => match msg {
                SupMsg::Event(ev) => on_supplicant_event(&nl, ifindex, ev, &out, &mut state).await,
                SupMsg::EventsLost(e) => {
                    out.line("error", &json!({"what": format!("wpa_supplicant events: {e}")}));
                }
                SupMsg::Exited(status) => {
                    if let Some(st) = sup.as_mut() {
                        out.line("supplicant_exited", &json!({"status": status}));
                        st.stop();
                        schedule_restart(st, &out);
                    }
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    out.line("stopping", &json!({}));
    if let Some(mut st) = sup.take() {
        // Ask wpa_supplicant to leave and restore the link mode it changed; kill it only if it
        // does not exit in time.
        if let Some(ctrl) = st.ctrl.as_ref() {
            let _ = ctrl.request("TERMINATE").await;
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while let Some(m) = sup_rx.recv().await {
                    if matches!(m, SupMsg::Exited(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        st.stop();
    }
    let _ = nl.leave_mesh(ifindex).await;
    Ok(())
}

fn role_inputs(s: &MeshSettings) -> RoleInputs {
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

async fn start_supplicant(s: &MeshSettings, st: &mut Sup, out: &Reporter) -> Result<(), Error> {
    let ctrl_dir = s.run_dir.join("wpa");
    // A wpa_supplicant orphaned by a killed agent still owns the interface: ask it to go. A
    // stale socket left by a dead one makes the new one refuse to start.
    if let Ok(old) = Ctrl::connect(&ctrl_dir.join(&s.iface), Duration::ZERO).await {
        if old.request("TERMINATE").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let _ = std::fs::remove_file(ctrl_dir.join(&s.iface));
    st.stop();
    let proc = Supplicant::spawn(
        &s.wpa_supplicant,
        &s.iface,
        &st.config_path,
        &ctrl_dir,
        s.wpa_log.as_deref(),
    )?;
    let path = proc.ctrl_path();
    let tx = st.tx.clone();
    st.tasks.push(tokio::spawn(async move {
        let mut proc = proc;
        let status = match proc.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let _ = tx.send(SupMsg::Exited(status)).await;
    }));
    let events = Ctrl::connect(&path, Duration::from_secs(10)).await?;
    events.attach().await?;
    let tx = st.tx.clone();
    st.tasks.push(tokio::spawn(async move {
        loop {
            match events.next_event().await {
                Ok(ev) => {
                    if tx.send(SupMsg::Event(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(SupMsg::EventsLost(e.to_string())).await;
                    return;
                }
            }
        }
    }));
    let ctrl = Ctrl::connect(&path, Duration::from_secs(2)).await?;
    let status = ctrl.status().await.unwrap_or_default();
    out.line(
        "supplicant_started",
        &json!({"wpa_state": status.get("wpa_state"), "mode": status.get("mode")}),
    );
    st.ctrl = Some(ctrl);
    st.backoff = RESTART_MIN;
    Ok(())
}

fn schedule_restart(st: &mut Sup, out: &Reporter) {
    let wait = st.backoff;
    st.backoff = (st.backoff * 2).min(RESTART_MAX);
    st.restart_at = Some(Instant::now() + wait);
    out.line(
        "supplicant_restart",
        &json!({"in_ms": wait.as_millis() as u64}),
    );
}

/// Prints the role decision; the parameters themselves are set by [`try_set_params`] (or went
/// with JOIN_MESH when `joined`).
fn report_role(d: &RoleDecision, out: &Reporter, joined: bool) {
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
async fn try_set_params(nl: &Nl80211, ifindex: u32, d: &RoleDecision, out: &Reporter) -> bool {
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

struct State {
    /// This node's mesh interface MAC.
    mac: Option<MacAddr>,
    links: BTreeMap<MacAddr, String>,
    paths: BTreeMap<MacAddr, MeshPath>,
    formed: bool,
    started: Instant,
    health: HealthMonitor,
    /// SAE failures per peer since its last success ([`super::sae_failures`]).
    auth_failures: SaeFailures,
    diagnosed: bool,
    /// Since when no peer link is established (None while one is).
    no_link_since: Option<Instant>,
    last_report: Instant,
    role: RoleDecision,
    params_applied: bool,
}

async fn on_wifi_event(
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
            if kind == super::nl80211::RadarEvent::Detected {
                if let Err(e) = super::radar::record(&s.run_dir, freq_mhz, trellis_io::unix_now()) {
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

async fn on_supplicant_event(
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
async fn refresh(nl: &Nl80211, ifindex: u32, s: &MeshSettings, out: &Reporter, state: &mut State) {
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

/// What the SAE failures since the last success say ([`SaeFailures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthFailures {
    None,
    Retrying,
    Sure,
}

/// Why no peer link came up, in words a person can act on.
fn why_no_link(sae: bool, peers_in_range: bool, auth: AuthFailures) -> &'static str {
    match (sae, peers_in_range, auth) {
        (true, _, AuthFailures::Sure) => "SAE authentication keeps failing with every peer: the mesh password differs from the other nodes' (re-pair this node)",
        (true, _, AuthFailures::Retrying) => "SAE authentication failed and is being retried; not sure yet that the mesh password differs (wait; it is reported after repeated failures over half a minute)",
        (true, true, AuthFailures::None) => "mesh peers are in range but no link came up: authentication does not complete, most likely a wrong mesh password",
        (false, true, _) => "mesh peers are in range but no link came up: check that every node uses the same mesh settings",
        (_, false, _) => "no mesh peer in range on this channel and mesh ID: check the channel, the mesh ID and the distance",
    }
}

/// Where `trellis-agent run` picks up the latest link report for the controller.
pub const LINK_REPORT_FILE: &str = "mesh-links.json";

/// Replace the link report file (tmpfs on a router: no flash wear); `run` sends it on.
fn write_link_report(run_dir: &std::path::Path, state: &State, now_ms: u64) {
    let Some(mac) = state.mac else { return };
    let report = trellis_proto::api::MeshReport {
        mac: mac.to_string(),
        macs: Vec::new(),
        links: state
            .health
            .report(now_ms)
            .into_iter()
            // The map shows links that exist: up, or paused by flap damping. A peer in range
            // whose link never came up (a wrong password) or that went away is not one.
            .filter(|l| l.established || l.blocked)
            .map(|l| trellis_proto::api::MeshLink {
                peer: l.peer.to_string(),
                medium: trellis_proto::api::LinkMedium::Wifi,
                signal_dbm: l.signal_dbm.map(i32::from),
                expected_throughput_kbps: l.expected_throughput_kbps,
                airtime_metric: l.airtime_metric,
                verdict: l.verdict,
                advice: l.advice,
            })
            .collect(),
    };
    let Ok(json) = serde_json::to_vec(&report) else {
        return;
    };
    let written = trellis_io::files::replace(
        &run_dir.join(LINK_REPORT_FILE),
        &json,
        0o644,
        trellis_io::files::Medium::Ram,
    );
    if let Err(e) = written {
        tracing::debug!(
            "could not write the link report in {}: {e}",
            run_dir.display()
        );
    }
}

fn report(out: &Reporter, state: &State, now_ms: u64) {
    out.line("links", &json!({"links": state.health.report(now_ms)}));
    let paths: Vec<Value> = state
        .paths
        .values()
        .map(|p| json!({"dst": p.dst, "next_hop": p.next_hop, "metric": p.info.metric, "hop_count": p.info.hop_count, "path_changes": p.info.path_change_count, "active": p.info.is_active()}))
        .collect();
    out.line("paths", &json!({ "paths": paths }));
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_link_diagnosis_names_the_likely_cause() {
        use AuthFailures as A;
        assert!(why_no_link(true, true, A::Sure).contains("password differs"));
        assert!(!why_no_link(true, true, A::Retrying).contains("re-pair"));
        assert!(why_no_link(true, true, A::Retrying).contains("retried"));
        assert!(why_no_link(true, true, A::None).contains("wrong mesh password"));
        assert!(why_no_link(false, true, A::None).contains("same mesh settings"));
        assert!(why_no_link(true, false, A::None).contains("no mesh peer in range"));
    }
}
