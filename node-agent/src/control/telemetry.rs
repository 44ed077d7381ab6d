//! What this router tells the controller: the telemetry report, composed in one place from
//! what the agent's parts publish.
//!
//! Each part owns its facts and publishes them into its own [`Slot`] of [`Published`] when
//! they change: discovery the services behind the router, the device watcher the devices on
//! its segment, the backhaul watcher the cables, the data plane its tunnel address and its
//! counters, the speed-test sink its address, `run` where the mesh supervisor (the second
//! procd instance) leaves its link report. No part reads another's facts and none sends a
//! report: the agent's report task wakes on its timer and on any change, and [`compose`]
//! builds the report from the latest of each.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use trellis_proto::api::{MeshLink, MeshReport, SeenDevice, SeenService, Telemetry, MAX_NODE_MACS};

use crate::access_point::runner::AccessPoints;
use crate::metrics::Metrics;
use trellis_wifi::survey::SurveyCache;

/// A mesh link report older than this is not sent (its supervisor stopped writing it).
const MESH_REPORT_STALE: Duration = Duration::from_secs(60);
/// The most of the link report file read (it holds a few dozen links).
const MESH_REPORT_MAX_BYTES: u64 = 64 * 1024;

/// One part's latest facts. Clones are the same slot; publishing wakes the reporter.
pub struct Slot<T> {
    value: Arc<watch::Sender<T>>,
    changes: Arc<watch::Sender<u64>>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<T: Clone> Slot<T> {
    fn new(initial: T, changes: &Arc<watch::Sender<u64>>) -> Self {
        Self {
            value: Arc::new(watch::channel(initial).0),
            changes: changes.clone(),
        }
    }

    /// Replaces this part's facts; the next report carries them.
    pub fn publish(&self, value: T) {
        self.value.send_replace(value);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The latest published, cloned (no lock is held after this returns).
    pub fn latest(&self) -> T {
        self.value.borrow().clone()
    }
}

/// The cables to other routers and the MACs this router is known by ([`crate::backhaul`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cables {
    pub links: Vec<MeshLink>,
    pub macs: Vec<String>,
}

/// Every part's slot.
#[derive(Clone)]
pub struct Published {
    /// Services discovery found behind this router.
    pub services: Slot<Vec<SeenService>>,
    /// Devices on this router's segment (DHCP leases, wifi stations, bridge ports).
    pub devices: Slot<Vec<SeenDevice>>,
    /// Where other routers reach this router's tunnel endpoint (`ip:port`).
    pub tunnel_addresses: Slot<Vec<String>>,
    /// Cables to other routers.
    pub cables: Slot<Cables>,
    /// Where this router's speed-test sink listens.
    pub speedtest_addr: Slot<Option<String>>,
    /// The data plane's counters (per-service totals, edges, traces).
    pub proxy_metrics: Slot<Option<Arc<Metrics>>>,
    /// Where `trellis-agent mesh` leaves its latest link report; set on routers that run it.
    pub mesh_report_file: Slot<Option<PathBuf>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for Published {
    fn default() -> Self {
        let changes = Arc::new(watch::channel(0).0);
        Self {
            services: Slot::new(Vec::new(), &changes),
            devices: Slot::new(Vec::new(), &changes),
            tunnel_addresses: Slot::new(Vec::new(), &changes),
            cables: Slot::new(Cables::default(), &changes),
            speedtest_addr: Slot::new(None, &changes),
            proxy_metrics: Slot::new(None, &changes),
            mesh_report_file: Slot::new(None, &changes),
            changes,
        }
    }
}

impl Published {
    /// Changes each time any part publishes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// What the agent itself knows, beside the parts' facts.
pub struct OwnFacts {
    pub cert_expires_in_s: i64,
    pub applied_version: u64,
    pub report_every: Duration,
}

/// The report: the latest of every part's facts, the access points' view, the radio survey.
pub async fn compose(
    published: &Published,
    access_points: Option<&AccessPoints>,
    survey: &SurveyCache,
    own: OwnFacts,
) -> Telemetry {
    let metrics = published.proxy_metrics.latest();
    let (ap_reports, heard_clients, steer_outcomes) = match access_points {
        Some(a) => a.telemetry().await,
        None => Default::default(),
    };
    let mut devices = published.devices.latest();
    if let Some(aps) = access_points {
        // Which of the home's networks each station joined (the group follows it).
        aps.annotate(&mut devices);
    }
    let mesh_file = published.mesh_report_file.latest();
    // The survey and radar sightings come from routers that run the mesh supervisor.
    let (survey, radar) = match &mesh_file {
        Some(f) => (
            survey.get().await,
            trellis_wifi::radar::read(&trellis_wifi::radar::beside(f), crate::unix_now()),
        ),
        None => Default::default(),
    };
    Telemetry {
        addresses: published.tunnel_addresses.latest(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        cert_expires_in_s: own.cert_expires_in_s,
        applied_version: own.applied_version,
        clock_unix: crate::unix_now(),
        services: published.services.latest(),
        mesh: backhaul_report(
            mesh_file.as_deref().and_then(mesh_report),
            published.cables.latest(),
        ),
        speedtest_addr: published.speedtest_addr.latest(),
        devices,
        traffic: metrics
            .as_ref()
            .map(|m| m.service_traffic())
            .unwrap_or_default(),
        traces: metrics
            .as_ref()
            .map(|m| m.traces.for_report())
            .unwrap_or_default(),
        edges: metrics
            .as_ref()
            .map(|m| m.edge_traffic())
            .unwrap_or_default(),
        access_points: ap_reports,
        radios: access_points.map(AccessPoints::radio_count),
        heard_clients,
        steer_outcomes,
        report_every_s: Some(own.report_every.as_secs().clamp(1, u32::MAX as u64) as u32),
        survey,
        radar,
    }
}

/// The backhaul links sent to the controller: the mesh supervisor's wifi links (under the
/// mesh interface's MAC) and the cables, with this router's other MACs.
fn backhaul_report(wifi: Option<MeshReport>, cables: Cables) -> Option<MeshReport> {
    let mut report = wifi.unwrap_or_default();
    report.links.extend(cables.links);
    for m in cables.macs {
        if m != report.mac && report.macs.len() < MAX_NODE_MACS {
            report.macs.push(m);
        }
    }
    (report.runs_wifi_mesh() || !report.macs.is_empty()).then_some(report)
}

/// The latest link report, if the mesh supervisor wrote one (bounded read; a damaged or
/// stale file is skipped, the next report replaces it).
fn mesh_report(path: &std::path::Path) -> Option<MeshReport> {
    let file = std::fs::File::open(path).ok()?;
    // `trellis-agent mesh` rewrites it every 10 s; an old one is from a supervisor that
    // died (kill -9), and its links are gone too.
    let age = file
        .metadata()
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .unwrap_or_default();
    if age > MESH_REPORT_STALE {
        return None;
    }
    let mut text = Vec::new();
    file.take(MESH_REPORT_MAX_BYTES)
        .read_to_end(&mut text)
        .ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_wakes_the_reporter_and_the_latest_wins() {
        let p = Published::default();
        let mut changes = p.changes();
        assert!(!changes.has_changed().unwrap());
        let services = p.services.clone();
        services.publish(vec![]);
        p.speedtest_addr.publish(Some("10.0.0.2:9000".into()));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        p.speedtest_addr.publish(Some("10.0.0.2:9001".into()));
        assert!(changes.has_changed().unwrap());
        assert_eq!(p.speedtest_addr.latest().as_deref(), Some("10.0.0.2:9001"));
    }

    #[test]
    fn cables_join_the_wifi_links_and_the_macs_are_bounded() {
        let cable = |peer: &str| MeshLink {
            peer: peer.into(),
            medium: trellis_proto::api::LinkMedium::Cable,
            signal_dbm: None,
            expected_throughput_kbps: None,
            airtime_metric: None,
            verdict: trellis_proto::api::LinkVerdict::Good,
            advice: Vec::new(),
        };
        // No mesh supervisor, no cable, no MACs: nothing to say about the backhaul.
        assert!(backhaul_report(None, Cables::default()).is_none());
        let many = (0..MAX_NODE_MACS + 5)
            .map(|i| format!("02:00:00:00:01:{i:02x}"))
            .collect();
        let r = backhaul_report(
            None,
            Cables {
                links: vec![cable("02:00:00:00:02:00")],
                macs: many,
            },
        )
        .expect("a router with cables reports them");
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.macs.len(), MAX_NODE_MACS);
    }
}
