//! `cargo xtask bench --tracing [--duration SECS] [--rounds N] [--prebuilt DIR]`: what tracing
//! every connection costs the tunnel.
//!
//! The service-mesh home of [`super::home`] (two one-core routers, release binaries), started
//! alternately with the agents' tracing off (`--trace-sample 0`: a successful connection is
//! not traced; only denied and failed ones would be) and at 100 % (`--trace-sample 1`: a span
//! at each proxy for every connection, kept in the router's bounded ring, the default), N
//! rounds of each (default 2), in one run so both see the same machine. Per start: the
//! 1 KiB request/response load at 1000 rps over 4 connections, and a new connection per
//! request at 200 rps (each one a trace) through Trellis; the agents' RSS idle and at peak.
//! Prints the medians of each setting, the p99 overheads and the RSS difference with their
//! `GOAL` lines (p99 ≤ +5 % for both loads, RSS ≤ +1 MB). A trace is one connection, so the
//! new-connection load is where the whole cost shows. No collector: the figure is the tracing itself, not
//! an exporter's network traffic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::home::{self, memory, Home};
use super::run_load;

const USAGE: &str =
    "usage: cargo xtask bench --tracing [--duration SECS] [--rounds N] [--prebuilt DIR]";
/// The goals: tracing at 100 % costs the tunnel's p99 at most this much, and this much RSS.
const GOAL_P99_OVERHEAD: f64 = 0.05;
const GOAL_RSS_KB: u64 = 1024;

struct Opts {
    duration: f64,
    rounds: usize,
    prebuilt: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        duration: 20.0,
        rounds: 2,
        prebuilt: None,
    };
    let mut it = args.iter().filter(|a| *a != "--tracing");
    while let Some(a) = it.next() {
        let mut value = || it.next().context(USAGE);
        match a.as_str() {
            "--duration" => {
                o.duration = value()?
                    .parse()
                    .ok()
                    .filter(|d: &f64| (1.0..=600.0).contains(d))
                    .with_context(|| format!("--duration: seconds from 1 to 600\n{USAGE}"))?
            }
            "--rounds" => {
                o.rounds = value()?
                    .parse()
                    .ok()
                    .filter(|n| (1..=10).contains(n))
                    .with_context(|| format!("--rounds: a whole number from 1 to 10\n{USAGE}"))?
            }
            "--prebuilt" => o.prebuilt = Some(value()?.into()),
            _ => bail!("{USAGE}"),
        }
    }
    Ok(o)
}

/// One start of the home with one setting.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rr_p99_us: f64,
    rr_p50_us: f64,
    newconn_p99_us: f64,
    /// Both agents, kB.
    rss_idle_kb: u64,
    rss_peak_kb: u64,
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    if !crate::netns::is_root() {
        bail!("cargo xtask bench --tracing needs root: it builds network namespaces");
    }
    let bin = match &o.prebuilt {
        Some(dir) => dir.clone(),
        None => {
            crate::run(crate::cargo().args(["build", "--release", "--workspace", "--bins"]))?;
            crate::root().join("target/release")
        }
    };
    home::install_signal_handler();
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 1..=o.rounds {
        for (sample, into) in [("0", &mut off), ("1", &mut on)] {
            eprintln!(
                "bench: round {round}/{}: tracing {}",
                o.rounds,
                if sample == "0" { "off" } else { "at 100 %" }
            );
            into.push(one_start(&bin, &o, sample)?);
        }
    }
    let (off, on) = (medians(&off), medians(&on));
    print!("{}", render(&o, &off, &on));
    Ok(())
}

fn one_start(bin: &std::path::Path, o: &Opts, sample: &str) -> Result<Sample> {
    let home = Home::start_with(
        bin,
        &bin.join("trellis-agent"),
        &bin.join("xtask"),
        false,
        &["--trace-sample", sample],
    )?;
    let agents = [home.agent_a, home.agent_b];
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_kb = agents.iter().map(|p| memory(*p).0).sum();
    for pid in agents {
        home::reset_peak(pid);
    }
    let secs = o.duration.to_string();
    let (rr, _) = run_load(
        &home,
        &[
            "--mode", "rr", "--rate", "1000", "--conns", "4", "--secs", &secs,
        ],
        home.trellis(home::ECHO_PORT),
        &[],
        Duration::from_secs(1),
    )?;
    let (newconn, _) = run_load(
        &home,
        &["--mode", "newconn", "--rate", "200", "--secs", &secs],
        home.trellis(home::ECHO_PORT),
        &[],
        Duration::from_secs(1),
    )?;
    let rss_peak_kb = agents.iter().map(|p| memory(*p).1).sum();
    if rr.errors > 0 || newconn.errors > 0 {
        bail!(
            "the load saw errors (rr {}, newconn {}): {}",
            rr.errors,
            newconn.errors,
            rr.first_error.or(newconn.first_error).unwrap_or_default()
        );
    }
    Ok(Sample {
        rr_p99_us: rr.p99_us,
        rr_p50_us: rr.p50_us,
        newconn_p99_us: newconn.p99_us,
        rss_idle_kb,
        rss_peak_kb,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn medians(s: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    Sample {
        rr_p99_us: m(|s| s.rr_p99_us),
        rr_p50_us: m(|s| s.rr_p50_us),
        newconn_p99_us: m(|s| s.newconn_p99_us),
        rss_idle_kb: m(|s| s.rss_idle_kb as f64) as u64,
        rss_peak_kb: m(|s| s.rss_peak_kb as f64) as u64,
    }
}

fn render(o: &Opts, off: &Sample, on: &Sample) -> String {
    let pct = |a: f64, b: f64| (b / a - 1.0) * 100.0;
    let rr_over = on.rr_p99_us / off.rr_p99_us - 1.0;
    let rss_delta = on.rss_peak_kb as i64 - off.rss_peak_kb as i64;
    let met = |ok: bool| if ok { "MET" } else { "MISSED" };
    let mut out = format!(
        "Tracing cost through the Trellis tunnel (two one-core routers, release build), median of {} starts per setting, {:.0} s per load\n",
        o.rounds, o.duration
    );
    out += &format!(
        "  1 KiB request/response p50: off {:.0} us, 100 % {:.0} us ({:+.1} %)\n",
        off.rr_p50_us,
        on.rr_p50_us,
        pct(off.rr_p50_us, on.rr_p50_us)
    );
    out += &format!(
        "  1 KiB request/response p99: off {:.0} us, 100 % {:.0} us ({:+.1} %)\n",
        off.rr_p99_us,
        on.rr_p99_us,
        rr_over * 100.0
    );
    out += &format!(
        "  new connection per request p99: off {:.0} us, 100 % {:.0} us ({:+.1} %)\n",
        off.newconn_p99_us,
        on.newconn_p99_us,
        pct(off.newconn_p99_us, on.newconn_p99_us)
    );
    out += &format!(
        "  both agents' RSS: idle off {} kB, 100 % {} kB; peak off {} kB, 100 % {} kB\n",
        off.rss_idle_kb, on.rss_idle_kb, off.rss_peak_kb, on.rss_peak_kb
    );
    // A trace is a connection: the request/response load keeps 4 connections open, so it
    // shows what tracing costs traffic on an open connection; a new connection per request
    // makes every request a trace, the whole cost.
    let newconn_over = on.newconn_p99_us / off.newconn_p99_us - 1.0;
    for (name, over) in [("rr", rr_over), ("newconn", newconn_over)] {
        out += &format!(
            "GOAL tracing_{name}_p99_overhead {:+.1}% <=+{:.0}% {}\n",
            over * 100.0,
            GOAL_P99_OVERHEAD * 100.0,
            met(over <= GOAL_P99_OVERHEAD)
        );
    }
    out += &format!(
        "GOAL tracing_rss_overhead {:+.2}MB <=+{:.0}MB {}\n",
        rss_delta as f64 / 1024.0,
        GOAL_RSS_KB as f64 / 1024.0,
        met(rss_delta <= GOAL_RSS_KB as i64)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_and_goal_lines_say_what_was_measured() {
        let off = Sample {
            rr_p99_us: 1000.0,
            rr_p50_us: 400.0,
            newconn_p99_us: 3000.0,
            rss_idle_kb: 9000,
            rss_peak_kb: 12000,
        };
        let on = Sample {
            rr_p99_us: 1080.0,
            rss_peak_kb: 12500,
            ..off
        };
        let o = Opts {
            duration: 20.0,
            rounds: 2,
            prebuilt: None,
        };
        let text = render(&o, &off, &on);
        assert!(
            text.contains("GOAL tracing_rr_p99_overhead +8.0% <=+5% MISSED"),
            "{text}"
        );
        assert!(
            text.contains("GOAL tracing_newconn_p99_overhead +0.0% <=+5% MET"),
            "{text}"
        );
        assert!(
            text.contains("GOAL tracing_rss_overhead +0.49MB <=+1MB MET"),
            "{text}"
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
    }

    #[test]
    fn options_are_checked() {
        assert!(parse(&["--rounds".into(), "0".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        assert_eq!(parse(&["--tracing".into()]).map(|o| o.rounds).ok(), Some(2));
    }
}
