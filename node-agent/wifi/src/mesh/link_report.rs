//! The periodic link report: every link's health and every mesh path printed as JSON lines,
//! and the links written to [`LINK_REPORT_FILE`], where `trellis-agent run` picks them up for
//! the controller.

use serde_json::{json, Value};

use super::State;
use crate::report::Reporter;

/// Where `trellis-agent run` picks up the latest link report for the controller.
pub const LINK_REPORT_FILE: &str = "mesh-links.json";

/// Replace the link report file (tmpfs on a router: no flash wear); `run` sends it on.
pub(super) fn write_link_report(run_dir: &std::path::Path, state: &State, now_ms: u64) {
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

pub(super) fn report(out: &Reporter, state: &State, now_ms: u64) {
    out.line("links", &json!({"links": state.health.report(now_ms)}));
    let paths: Vec<Value> = state
        .paths
        .values()
        .map(|p| json!({"dst": p.dst, "next_hop": p.next_hop, "metric": p.info.metric, "hop_count": p.info.hop_count, "path_changes": p.info.path_change_count, "active": p.info.is_active()}))
        .collect();
    out.line("paths", &json!({ "paths": paths }));
}
