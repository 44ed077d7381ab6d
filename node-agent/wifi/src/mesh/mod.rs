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
//!
//! This file owns the command: [`main`], [`run`] (setting up, the event loop, stopping) and the
//! loop's state. The rest, by concern:
//!
//! - `supplicant`: running wpa_supplicant for an SAE mesh, forwarding its events, restarting it.
//! - `role_params`: the inputs of the HWMP role, and putting its parameters on the radio.
//! - `supervise`: what the loop does on each poll and event: peer links, paths, healing, damping.
//! - `channel_move`: following the home's mesh channel: announce the switch, or rejoin.
//! - `diagnosis`: why no peer link comes up, in words a person can act on.
//! - `link_report`: the periodic link report, as JSON lines and as the file `run` forwards.

mod channel_move;
mod diagnosis;
mod link_report;
mod role_params;
mod supervise;
mod supplicant;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::health::HealthMonitor;
use super::link::Links;
use super::nl80211::{MeshPath, Nl80211, WifiEvent};
use super::report::Reporter;
use super::role::{RoleDecision, RoleMachine};
use super::sae::SupplicantConfig;
use super::sae_failures::SaeFailures;
pub use super::settings::{Error, MeshArgs, MeshSecurity, MeshSettings, RoleArg};
use trellis_proto::policy::MacAddr;

use channel_move::{carry_out, unix_ms_now, ChannelFollower};
pub use link_report::LINK_REPORT_FILE;
use role_params::{report_role, role_inputs, try_set_params};
use supervise::{on_supplicant_event, on_wifi_event, refresh};
use supplicant::{schedule_restart, start_supplicant, Sup, SupMsg, RESTART_MIN};

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

/// Forms the mesh and supervises it until SIGINT/SIGTERM.
pub async fn run(mut s: MeshSettings) -> Result<(), Error> {
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
    let mut channel = ChannelFollower::new(
        s.follow_home_channel
            .then(|| crate::channel_file::beside(&s.run_dir.join(LINK_REPORT_FILE))),
        s.freq_mhz,
    );
    let mut tick = tokio::time::interval(s.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Link(super::link::Error::Socket(e)))?;

    loop {
        tokio::select! {
            _ = tick.tick() => {
                refresh(&nl, ifindex, &s, &out, &mut state).await;
                channel.poll(unix_ms_now(), tokio::time::Instant::now(), &out);
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
            _ = sleep_until(channel.due()) => {
                if let Some(p) = channel.take(unix_ms_now()) {
                    if let Err(e) = carry_out(&p, &nl, ifindex, &mut s, &mut sup, &state.role, &mut channel, &out).await {
                        out.line("error", &json!({"what": format!("moving the mesh to {} MHz: {e}", p.target.freq_mhz)}));
                    }
                }
            }
            ev = nl_events.next() => {
                let Some(ev) = ev else {
                    out.line("error", &json!({"what": "nl80211 event socket closed; polling only"}));
                    nl_events = Box::pin(futures_util::stream::pending());
                    continue;
                };
                if let WifiEvent::ChannelSwitched { ifindex: i, freq_mhz } = &ev {
                    if *i == ifindex {
                        channel.on_channel(*freq_mhz, channel.current.1);
                    }
                }
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

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
