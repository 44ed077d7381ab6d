//! The controller's peak memory under parallel wrong logins (issue 13, finding 2: 20 of them
//! took it from 47 to 293 MB). Starts the real `trellis-controller`, sets the admin password
//! with the setup token, then sends three rounds of 20 parallel wrong passwords from 20
//! addresses and prints the process's peak RSS (`VmHWM`) as a `GOAL` line.
//!
//! Run: `cargo bench -p trellis-controller --bench login_rss` (the shipped profile; `cargo
//! xtask bench` runs it with the other cargo benches). `--profile dev` is quicker to build.

#[path = "../tests/support/mod.rs"]
mod support;

use support::lan::{login_request, send_from, setup_request};

const GOAL_MB: f64 = 40.0;
const PARALLEL: u8 = 20;
const ROUNDS: u8 = 3;

/// A `/proc/<pid>/status` field in MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let c = support::start_controller(dir.path(), "warn");
    let pid = c.proc.0.id();
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], c.port));
    let token = std::fs::read_to_string(dir.path().join("data/setup-token")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let idle = status_mb(pid, "VmRSS:");
    let statuses = rt.block_on(async {
        let setup = send_from(0, 1, to, &setup_request(token.trim(), "the admin password"))
            .await
            .map(|(s, _)| s);
        assert_eq!(setup, Some(200), "the admin password is set");
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for round in 0..ROUNDS {
            let tries: Vec<_> = (1..=PARALLEL)
                .map(|b| {
                    tokio::spawn(async move {
                        send_from(20 + round, b, to, &login_request("not the password")).await
                    })
                })
                .collect();
            for t in tries {
                let s = t.await.unwrap().map_or(0, |(s, _)| s);
                *statuses.entry(s).or_default() += 1;
            }
        }
        statuses
    });
    let peak = status_mb(pid, "VmHWM:");
    let after = status_mb(pid, "VmRSS:");
    println!(
        "login_rss: {ROUNDS} rounds of {PARALLEL} parallel wrong logins, answers {statuses:?}; \
         RSS idle {idle:.1} MB, after {after:.1} MB, peak {peak:.1} MB"
    );
    println!(
        "GOAL login_rss_peak {peak:.1}MB <={GOAL_MB}MB {}",
        if peak <= GOAL_MB { "MET" } else { "MISSED" }
    );
}
