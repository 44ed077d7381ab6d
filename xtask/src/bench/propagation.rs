//! `cargo xtask bench --propagation [--agents N] [--changes N] [--prebuilt DIR]`: how fast a
//! config change reaches every router.
//!
//! A controller and N agents (default 64), each agent its own process with its own identity
//! in its own network namespace with its own address (the controller caps connections per
//! source address, as a home's routers each have their own), all on one bridge; paired
//! through the real exchange (`trellis pair`, `trellis-agent join`) and following the
//! controller with `trellis-agent run` (control plane only: no data plane, no speed-test
//! sink). Needs root. Then R changes (default 10), each a device-book edit through the admin
//! socket as a person's click makes one; for each, the time from the request to each agent's
//! `config applied version=V` log line (the agent acknowledges right after it). The agents'
//! log timestamps and the bench share this machine's clock. Prints p50/p99/max over N×R and
//! the `GOAL` line (p99 ≤ 200 ms to 64 agents). veth links leave out the mesh's air time: this
//! is the controller's fan-out and the agents' apply (snapshot to flash included), nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::netns::Admin;
use crate::teardown;

const USAGE: &str =
    "usage: cargo xtask bench --propagation [--agents N] [--changes N] [--prebuilt DIR]";
/// The goal: every router within this, at p99.
const GOAL_P99_MS: f64 = 200.0;

struct Opts {
    agents: usize,
    changes: usize,
    prebuilt: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        agents: 64,
        changes: 10,
        prebuilt: None,
    };
    let mut it = args.iter().filter(|a| *a != "--propagation");
    while let Some(a) = it.next() {
        let mut count = |max: usize| -> Result<usize> {
            let v = it.next().context(USAGE)?;
            v.parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .with_context(|| format!("{a} {v:?}: a whole number from 1 to {max}\n{USAGE}"))
        };
        match a.as_str() {
            "--agents" => o.agents = count(256)?,
            "--changes" => o.changes = count(1000)?,
            "--prebuilt" => o.prebuilt = Some(it.next().context(USAGE)?.into()),
            _ => bail!("{USAGE}"),
        }
    }
    Ok(o)
}

/// The controller's namespace and each agent's, with a bridge between them.
const CTL_NS: &str = "tp-ctl";
const CTL_ADDR: &str = "10.213.0.1";

fn agent_ns(i: usize) -> String {
    format!("tp-a{i:03}")
}

fn build_namespaces(agents: usize) -> Result<()> {
    use crate::netns::ip;
    for ns in std::iter::once(CTL_NS.to_owned()).chain((0..agents).map(agent_ns)) {
        crate::netns::del_quietly(&ns);
        ip(&["netns", "add", &ns])?;
        teardown::namespace(&ns);
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", CTL_NS, "link", "add", "br0", "type", "bridge"])?;
    ip(&[
        "-n",
        CTL_NS,
        "addr",
        "add",
        &format!("{CTL_ADDR}/16"),
        "dev",
        "br0",
    ])?;
    ip(&["-n", CTL_NS, "link", "set", "br0", "up"])?;
    for i in 0..agents {
        let ns = agent_ns(i);
        let port = format!("tp{i}");
        ip(&[
            "link", "add", &port, "netns", CTL_NS, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        ip(&["-n", CTL_NS, "link", "set", &port, "master", "br0", "up"])?;
        let addr = format!("10.213.{}.{}/16", 1 + i / 250, 1 + i % 250);
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// `ip netns exec NS program`, killed with xtask however xtask ends.
fn in_ns(ns: &str, program: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    teardown::die_with_parent(&mut c)
        .args(["netns", "exec", ns])
        .arg(program);
    c
}

/// Starts `cmd`, recorded for teardown.
fn start(cmd: &mut Command, what: &str) -> Result<()> {
    let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    teardown::track(child.id());
    Ok(())
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

/// Unix milliseconds of a tracing timestamp such as `2026-12-04T18:35:00.810738Z`.
fn log_time_ms(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, s) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days as f64 * 86_400.0) + h * 3600.0 + min * 60.0 + s) * 1000.0)
}

/// When each agent's log says it applied `version` (unix ms), for the agents that did.
fn applied_at(logs: &[PathBuf], version: u64) -> HashMap<usize, f64> {
    let needle = format!("config applied version={version} ");
    let mut out = HashMap::new();
    for (i, log) in logs.iter().enumerate() {
        let Ok(text) = std::fs::read_to_string(log) else {
            continue;
        };
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            if let Some(t) = line.split_whitespace().next().and_then(log_time_ms) {
                out.insert(i, t);
            }
        }
    }
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    if !crate::netns::is_root() {
        bail!(
            "cargo xtask bench --propagation needs root: each agent gets its own network namespace"
        );
    }
    let bin = match &o.prebuilt {
        Some(dir) => {
            std::fs::canonicalize(dir).with_context(|| format!("--prebuilt {}", dir.display()))?
        }
        None => {
            crate::run(crate::cargo().args([
                "build",
                "--release",
                "--bin",
                "trellis-agent",
                "--bin",
                "trellis-controller",
            ]))?;
            crate::root().join("target/release")
        }
    };
    // Under target/: removed now and when the bench ends (the agents' logs are the figures).
    let dir = crate::root().join("target/bench-propagation");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let d = dir.as_path();
    let port = 7443;
    let socket = d.join("admin.sock");
    crate::teardown::install_signal_handler("bench");
    let _guard = teardown::Guard("bench");
    build_namespaces(o.agents)?;
    start(
        in_ns(CTL_NS, &bin.join("trellis-controller"))
            .arg("--data-dir")
            .arg(d.join("controller"))
            .arg("--admin-socket")
            .arg(&socket)
            .args([
                "--agent-api",
                &format!("{CTL_ADDR}:{port}"),
                "--metrics-listen",
                "off",
                "--log",
                "warn",
            ])
            .stderr(std::fs::File::create(d.join("controller.log"))?),
        "trellis-controller",
    )?;
    let trellis_link = d.join("trellis");
    std::os::unix::fs::symlink(bin.join("trellis-controller"), &trellis_link)?;
    let admin = Admin {
        trellis: &trellis_link,
        socket: &socket,
    };
    let trellis = |args: &[&str]| admin.run(args);
    crate::netns::wait_for(|| trellis(&["status"]).is_ok(), "the controller to start")
        .with_context(|| format!("see {}", d.join("controller.log").display()))?;
    let config_version = || -> Result<u64> {
        let s: serde_json::Value = serde_json::from_str(&trellis(&["--json", "status"])?)?;
        s["config_version"]
            .as_u64()
            .context("status without config_version")
    };

    eprintln!("bench: pairing {} agents…", o.agents);
    let mut logs = Vec::new();
    for i in 0..o.agents {
        let name = format!("r{i:03}");
        let code = admin.pairing_code(false)?;
        let code = code.as_str();
        let state = d.join(&name);
        // The controller throttles pairing per address: when it says to wait, wait as long
        // as it says and try again.
        loop {
            let joined = in_ns(&agent_ns(i), &bin.join("trellis-agent"))
                .arg("--state-dir")
                .arg(&state)
                .args([
                    "--log",
                    "warn",
                    "join",
                    &format!("{CTL_ADDR}:{port}"),
                    code,
                    "--name",
                    &name,
                ])
                .output()?;
            if joined.status.success() {
                break;
            }
            let said = String::from_utf8_lossy(&joined.stderr).into_owned();
            let Some(secs) = said
                .split("wait ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                bail!("{name} did not join: {said}");
            };
            eprintln!("bench: the controller throttles pairing from one address; waiting {secs} s");
            std::thread::sleep(Duration::from_secs(secs + 1));
        }
        let log = d.join(format!("{name}.log"));
        start(
            in_ns(&agent_ns(i), &bin.join("trellis-agent"))
                .arg("--state-dir")
                .arg(&state)
                .args([
                    "--log",
                    "info",
                    "run",
                    "--no-service-mesh",
                    "--speedtest-listen",
                    "off",
                    "--metrics-listen",
                    "off",
                    "--dns-listen",
                    "off",
                    "--mesh-report",
                ])
                .arg(d.join(format!("{name}-mesh.json")))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?),
            &name,
        )?;
        logs.push(log);
    }
    // Everyone on the current version before the first measured change.
    let settle = Instant::now();
    loop {
        let v = config_version()?;
        if applied_at(&logs, v).len() == o.agents {
            break;
        }
        if settle.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {} agents applied config v{v} within 2 min (logs in {})",
                applied_at(&logs, v).len(),
                o.agents,
                d.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    eprintln!("bench: {} changes to {} agents…", o.changes, o.agents);
    let mut samples = Vec::new();
    for k in 0..o.changes {
        let t0 = unix_ms_now();
        let mac = format!("02:00:00:00:fe:{k:02x}");
        trellis(&["set-device", &mac, &format!("bench-{k}"), "trusted"])?;
        let v = config_version()?;
        let wait = Instant::now();
        let applied = loop {
            let a = applied_at(&logs, v);
            if a.len() == o.agents {
                break a;
            }
            if wait.elapsed() > Duration::from_secs(30) {
                bail!(
                    "only {} of {} agents applied v{v} within 30 s",
                    a.len(),
                    o.agents
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        samples.extend(applied.values().map(|t| (t - t0).max(0.0)));
        // Changes apart, as a person makes them (and each measured alone).
        std::thread::sleep(Duration::from_millis(300));
    }
    samples.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        quantile(&samples, 0.50),
        quantile(&samples, 0.99),
        samples.last().copied().unwrap_or_default(),
    );
    println!(
        "config propagation to {} agents (one namespace each, veth to the controller), {} changes ({} acks): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        o.agents,
        o.changes,
        samples.len()
    );
    println!(
        "GOAL config_propagation_p99_{}_agents {p99:.1}ms <={GOAL_P99_MS}ms {}",
        o.agents,
        if p99 <= GOAL_P99_MS { "MET" } else { "MISSED" }
    );
    drop(_guard);
    let _ = std::fs::remove_dir_all(d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_timestamps_read_as_unix_milliseconds() {
        // 2026-12-04T18:35:00.810Z = 1796409300.810 s.
        let t = log_time_ms("2026-12-04T18:35:00.810738Z").unwrap();
        assert!((t - 1_796_409_300_810.738).abs() < 0.01, "{t}");
        assert_eq!(log_time_ms("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(log_time_ms("2000-03-01T00:00:00Z"), Some(951_868_800_000.0));
        assert!(log_time_ms("yesterday").is_none());
    }

    #[test]
    fn quantiles_are_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn options_are_checked() {
        assert!(parse(&["--agents".into(), "0".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        let o = parse(&["--propagation".into(), "--agents".into(), "8".into()]).unwrap();
        assert_eq!((o.agents, o.changes), (8, 10));
    }
}
