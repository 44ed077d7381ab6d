//! The printed table, the memory and 1000-connection sections, and one `GOAL` line per goal.
use std::fmt::Write as _;

use super::load::Summary;

/// Figures of one path.
#[derive(Debug, Clone, Default)]
pub struct PathFigures {
    pub name: &'static str,
    /// 1 KiB request/response, persistent connections, open loop.
    pub rr: Summary,
    /// New connection per request.
    pub newconn: Summary,
    /// Single-stream iperf3 runs, Gbit/s (NaN when a run failed).
    pub bulk: Vec<f64>,
    pub bulk_error: Option<String>,
}

impl PathFigures {
    /// Median of the bulk runs that worked.
    pub fn bulk_gbps(&self) -> f64 {
        let mut v: Vec<f64> = self
            .bulk
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

/// Memory of the two agents, kB (A, B).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub idle: [u64; 2],
    /// (RssAnon, RssFile) of each agent when idle.
    pub idle_parts: [(u64, u64); 2],
    /// Largest VmRSS seen during the Trellis 1000 rps run.
    pub at_load: [u64; 2],
    /// VmHWM after the bulk runs (reset just before them).
    pub peak_bulk: [u64; 2],
    /// stunnel's (client side, server side) largest VmRSS during its 1000 rps run.
    pub stunnel_at_load: [u64; 2],
    /// Share of CPU time idle just before measuring (both CPUs).
    pub idle_cpu: f64,
}

/// The 1000-connection run through Trellis.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    pub conns: usize,
    pub secs: f64,
    pub summary: Summary,
    /// (seconds since start, agent A VmRSS kB, agent B VmRSS kB)
    pub samples: Vec<(f64, u64, u64)>,
    pub peak: [u64; 2],
}

pub struct Report<'a> {
    pub header: String,
    pub paths: &'a [PathFigures],
    pub memory: &'a Memory,
    pub hold: Option<&'a Hold>,
    pub elapsed_s: f64,
}

fn ms(us: f64) -> String {
    if us.is_finite() {
        format!("{:.3}", us / 1000.0)
    } else {
        "n/a".into()
    }
}

fn ratio(x: f64, base: f64) -> String {
    if x.is_finite() && base.is_finite() && base > 0.0 {
        format!("{:.2}x", x / base)
    } else {
        "n/a".into()
    }
}

/// MB = 10^6 bytes, from /proc's kB (KiB).
fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

fn goal(
    out: &mut String,
    name: &str,
    measured: Option<f64>,
    unit: &str,
    at_most: bool,
    target: f64,
) {
    let (shown, met) = match measured {
        Some(m) if m.is_finite() => {
            let shown = if unit == "x" {
                format!("{m:.2}x")
            } else if unit == "MB" {
                format!("{m:.1}MB")
            } else {
                format!("{m}")
            };
            (shown, if at_most { m <= target } else { m >= target })
        }
        _ => ("n/a".to_owned(), false),
    };
    let target = if unit.is_empty() {
        format!("={target}")
    } else {
        format!("{}{target}{unit}", if at_most { "<=" } else { ">=" })
    };
    let _ = writeln!(
        out,
        "GOAL {name} {shown} {target} {}",
        if met { "MET" } else { "MISSED" }
    );
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "\n{}", self.header);
        let _ = writeln!(
            w,
            "{:<9} | {:>22} | {:>22} | {:<24} | errors (rr, new conn)",
            "path", "1 KiB rr p50 / p99 ms", "new conn p50 / p99 ms", "bulk Gbit/s (runs)",
        );
        let _ = writeln!(w, "{}", "-".repeat(100));
        for p in self.paths {
            let bulk = p.bulk_gbps();
            let runs: Vec<String> = p.bulk.iter().map(|x| format!("{x:.2}")).collect();
            let _ = writeln!(
                w,
                "{:<9} | {:>10} / {:>9} | {:>10} / {:>9} | {:<24} | {}, {}",
                p.name,
                ms(p.rr.p50_us),
                ms(p.rr.p99_us),
                ms(p.newconn.p50_us),
                ms(p.newconn.p99_us),
                format!(
                    "{} ({})",
                    if bulk.is_finite() {
                        format!("{bulk:.2}")
                    } else {
                        "n/a".into()
                    },
                    runs.join(" ")
                ),
                p.rr.errors,
                p.newconn.errors,
            );
        }
        if let Some(direct) = self.paths.first() {
            let _ = writeln!(w, "{}", "-".repeat(100));
            for p in &self.paths[1..] {
                let _ = writeln!(
                    w,
                    "{:<9} | vs direct: rr p50 {} p99 {} | new conn p50 {} p99 {} | bulk {}",
                    p.name,
                    ratio(p.rr.p50_us, direct.rr.p50_us),
                    ratio(p.rr.p99_us, direct.rr.p99_us),
                    ratio(p.newconn.p50_us, direct.newconn.p50_us),
                    ratio(p.newconn.p99_us, direct.newconn.p99_us),
                    ratio(p.bulk_gbps(), direct.bulk_gbps()),
                );
            }
        }
        for p in self.paths {
            for (what, s) in [("rr", &p.rr), ("new conn", &p.newconn)] {
                if let Some(e) = &s.first_error {
                    let _ = writeln!(w, "{} {what}: {} errors, first: {e}", p.name, s.errors);
                }
            }
            if let Some(e) = &p.bulk_error {
                let _ = writeln!(w, "{} bulk: {e}", p.name);
            }
        }
        let m = self.memory;
        let _ = writeln!(
            w,
            "\nagent RSS (MB = 10^6 bytes; A = router A, B = router B)\n  idle:                  A {:.1}  B {:.1}  (anonymous A {:.1} B {:.1}, binary pages A {:.1} B {:.1})\n  during 1000 rps (max): A {:.1}  B {:.1}\n  peak under bulk (HWM): A {:.1}  B {:.1}\n  stunnel during its 1000 rps run, for comparison: client side {:.1}, server side {:.1}",
            mb(m.idle[0]),
            mb(m.idle[1]),
            mb(m.idle_parts[0].0),
            mb(m.idle_parts[1].0),
            mb(m.idle_parts[0].1),
            mb(m.idle_parts[1].1),
            mb(m.at_load[0]),
            mb(m.at_load[1]),
            mb(m.peak_bulk[0]),
            mb(m.peak_bulk[1]),
            mb(m.stunnel_at_load[0]),
            mb(m.stunnel_at_load[1]),
        );
        if let Some(h) = self.hold {
            let s = &h.summary;
            let _ = writeln!(
                w,
                "\n{} connections through Trellis for {:.0} s (1 KiB echo per connection per second): {} requests, {} ok, {} errors{}; most open at once {}; latency p50 {} ms p99 {} ms max {} ms",
                h.conns,
                h.secs,
                s.sent,
                s.ok,
                s.errors,
                s.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                s.max_open,
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.max_us),
            );
            let samples: Vec<String> = h
                .samples
                .iter()
                .map(|(t, a, b)| format!("{t:.0}s A {:.1} B {:.1}", mb(*a), mb(*b)))
                .collect();
            let _ = writeln!(w, "  agent RSS MB: {}", samples.join(" | "));
            let _ = writeln!(
                w,
                "  agent peak (HWM) during the run: A {:.1} MB, B {:.1} MB",
                mb(h.peak[0]),
                mb(h.peak[1])
            );
        }
        let _ = writeln!(w, "\nrun took {:.0} s\n", self.elapsed_s);
        let find = |n: &str| self.paths.iter().find(|p| p.name == n);
        let (d, t) = (find("direct"), find("trellis"));
        let r = |f: &dyn Fn(&PathFigures) -> f64| match (d, t) {
            (Some(d), Some(t)) => Some(f(t) / f(d)),
            _ => None,
        };
        goal(w, "p99_ratio", r(&|p| p.rr.p99_us), "x", true, 1.6);
        goal(
            w,
            "newconn_p50_ratio",
            r(&|p| p.newconn.p50_us),
            "x",
            true,
            2.5,
        );
        goal(
            w,
            "throughput_ratio",
            r(&|p| p.bulk_gbps()),
            "x",
            false,
            0.45,
        );
        let max_mb = |v: [u64; 2]| Some(mb(v[0].max(v[1]))).filter(|x| *x > 0.0);
        goal(w, "agent_rss_idle", max_mb(m.idle), "MB", true, 6.0);
        goal(w, "agent_rss_1000rps", max_mb(m.at_load), "MB", true, 10.0);
        goal(
            w,
            "agent_rss_peak_bulk",
            max_mb(m.peak_bulk),
            "MB",
            true,
            12.0,
        );
        goal(
            w,
            "conn1000_errors",
            self.hold.map(|h| h.summary.errors as f64),
            "",
            true,
            0.0,
        );
        out
    }
}
