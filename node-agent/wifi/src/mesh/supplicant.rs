//! wpa_supplicant under the supervisor (SAE meshes): starting it on the mesh interface after
//! clearing what a killed run left, forwarding its exit and its control-socket events to the
//! main loop, and restarting it with capped exponential backoff.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Error, MeshSettings};
use crate::report::Reporter;
use crate::sae::{Ctrl, Supplicant, SupplicantEvent};

/// wpa_supplicant supervision: restart with capped exponential backoff.
pub(super) const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);

pub(super) struct Sup {
    /// The tasks owning the wpa_supplicant child and its event socket; aborting them kills
    /// the child (kill_on_drop).
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(super) ctrl: Option<Ctrl>,
    pub(super) config_path: PathBuf,
    pub(super) backoff: Duration,
    pub(super) restart_at: Option<Instant>,
    pub(super) tx: tokio::sync::mpsc::Sender<SupMsg>,
}

impl Sup {
    pub(super) fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.ctrl = None;
    }
}

/// What the supervision tasks tell the main loop.
pub(super) enum SupMsg {
    Event(SupplicantEvent),
    Exited(String),
    EventsLost(String),
}

pub(super) async fn start_supplicant(
    s: &MeshSettings,
    st: &mut Sup,
    out: &Reporter,
) -> Result<(), Error> {
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

pub(super) fn schedule_restart(st: &mut Sup, out: &Reporter) {
    let wait = st.backoff;
    st.backoff = (st.backoff * 2).min(RESTART_MAX);
    st.restart_at = Some(Instant::now() + wait);
    out.line(
        "supplicant_restart",
        &json!({"in_ms": wait.as_millis() as u64}),
    );
}
