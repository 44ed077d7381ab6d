//! What the routers measure, as the page and the CLI read it: speed tests (queued here, run
//! by the agents), traces and per-service traffic.

use crate::ca::unix_now;
use crate::error::{HomeError, Kind, Result};
use std::time::Duration;
use trellis_proto::api::{NewSpeedTest, SpeedTest, SpeedTestJob, SpeedTestOutcome};
use trellis_proto::NodeName;

use super::Home;

impl Home {
    /// Queue a speed test between two routers of this home.
    pub fn start_speedtest(&self, req: &NewSpeedTest) -> Result<SpeedTest> {
        // A request that cannot be a test is refused before the routers are looked up.
        crate::speedtest::check_request(&req.from, &req.to, req.seconds)?;
        let snapshot = self.snapshot();
        let member = |name: &NodeName| {
            snapshot
                .nodes
                .iter()
                .find(|n| &n.name == name)
                .ok_or_else(|| {
                    HomeError::new(
                        Kind::NotFound,
                        format!("{name} is not a router of this home (see `trellis nodes`)"),
                    )
                })
        };
        member(&req.from)?;
        let to = member(&req.to)?;
        let to_addr = self
            .telemetry(&req.to)
            .and_then(|t| t.speedtest_addr)
            .ok_or_else(|| {
                HomeError::new(
                    Kind::Conflict,
                    format!(
                        "{} has not said where its speed-test sink listens: is it online, with trellis-agent run (and not --speedtest-listen off)?",
                        req.to
                    ),
                )
            })?;
        let test = self.speedtests.start(
            req.from.clone(),
            req.to.clone(),
            to.identity.clone(),
            to_addr,
            req.seconds,
            unix_now(),
        )?;
        tracing::info!(id = test.id, from = %test.from, to = %test.to, "speed test queued");
        Ok(test)
    }

    /// The next speed test `node` is to send (long poll).
    pub async fn next_job(&self, node: &NodeName, wait: Duration) -> Option<SpeedTestJob> {
        self.speedtests.next_job(node, wait).await
    }

    /// A sending router's report.
    pub fn finish_speedtest(&self, node: &NodeName, outcome: &SpeedTestOutcome) -> Result<()> {
        let test = self.speedtests.finish(node, outcome, unix_now())?;
        let message = match (test.bits_per_second, &test.error) {
            (Some(bps), _) => format!(
                "speed test {} → {}: {:.1} Mbit/s",
                test.from,
                test.to,
                bps as f64 / 1e6
            ),
            (None, Some(e)) => format!("speed test {} → {} failed: {e}", test.from, test.to),
            (None, None) => format!("speed test {} → {} failed", test.from, test.to),
        };
        // The message holds the agent's error text: a field, escaped, never the log line.
        tracing::info!(id = test.id, outcome = ?message, "speed test finished");
        self.record("speedtest", message);
        Ok(())
    }

    /// Speed tests, newest first.
    pub fn speedtests(&self) -> Vec<SpeedTest> {
        self.speedtests.list(unix_now())
    }

    pub fn speedtest(&self, id: u64) -> Result<SpeedTest> {
        self.speedtests.get(id, unix_now()).ok_or_else(|| {
            HomeError::new(
                Kind::NotFound,
                format!(
                    "no speed test {id} (the controller keeps the last {})",
                    crate::speedtest::MAX_KEPT
                ),
            )
        })
    }

    /// The newest connection traces of the home, joined across routers (`trellis traces`).
    pub fn traces(
        &self,
        device: Option<&str>,
        service: Option<&str>,
        limit: usize,
    ) -> Vec<crate::traces::TraceView> {
        self.traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .traces(device, service, limit)
    }

    /// Who talks to whom over the last `window_min` minutes (1 to 60), sources named from
    /// the device book.
    pub fn dependency_map(&self, window_min: u32) -> crate::graph::DependencyMap {
        let devices = self.snapshot().devices.clone();
        self.graph
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(unix_now(), window_min, &devices)
    }

    /// Per-service connections and bytes of the last hour, busiest first.
    pub fn traffic(&self) -> Vec<crate::traffic::ServiceChart> {
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .charts(unix_now())
    }
}
