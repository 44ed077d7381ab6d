//! `cargo xtask bench`: the cargo benches, then the service-mesh comparison.
//!
//! The comparison (root; `--mesh-only` runs it alone) builds two one-core routers in network
//! namespaces ([`home`]) with the shipped release binaries — controller and agent A on router
//! A, agent B on router B, joined as in `cargo xtask demo`, the echo/iperf3 service in the
//! catalog — and measures three paths from a client behind A to a server behind B with the
//! same load client ([`load`]): direct routing, Trellis (virtual IP → mutual-TLS HTTP/2
//! CONNECT → plaintext last hop), and a mutual-TLS 1.3 stunnel pair. Per path: 1 KiB
//! request/response latency at 1000 rps over 4 persistent connections (open loop,
//! coordinated-omission corrected), a new connection per request at 200 rps, single-stream
//! iperf3 throughput (median of 3); the agents' memory idle, under load and at peak under
//! bulk; then 1000 concurrent connections through Trellis. Figures, ratios to direct and one
//! `GOAL` line per goal ([`report`]); a missed goal is printed, never an error.
pub mod home;
pub mod load;
pub mod propagation;
pub mod report;
pub mod router_cpu;
pub mod tracing;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::is_root;
use crate::{cargo, have, root, setup};
use home::{memory, reset_peak, Home};
use load::Summary;
use report::{Hold, Memory, PathFigures, Report};

const USAGE: &str = "usage: cargo xtask bench [--mesh-only] [--duration SECS] [--hold-secs SECS] [--no-hold] [--rr-rate RPS] [--newconn-rate RPS] [--prebuilt DIR]\n       cargo xtask bench --cpu mipsel|armv7|aarch64 [--duration SECS] [--shift N] [--aead aes-gcm|chacha20-poly1305]\n       cargo xtask bench --propagation [--agents N] [--changes N] [--prebuilt DIR]\n       cargo xtask bench --tracing [--duration SECS] [--rounds N] [--prebuilt DIR]";

struct Opts {
    mesh_only: bool,
    duration: f64,
    hold_secs: f64,
    hold: bool,
    /// Another trellis-agent build (one with symbols, for perf).
    agent: Option<std::path::PathBuf>,
    /// Bring the home up and wait for Ctrl-C instead of measuring (for perf and manual runs).
    keep: bool,
    /// Binaries already built for this machine (the router-CPU guest: `/bin`); no cargo.
    prebuilt: Option<std::path::PathBuf>,
    /// Request/response rate (over 4 connections) and new-connection rate.
    rr_rate: f64,
    newconn_rate: f64,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        mesh_only: false,
        duration: 30.0,
        hold_secs: 60.0,
        hold: true,
        agent: None,
        keep: false,
        prebuilt: None,
        rr_rate: 1000.0,
        newconn_rate: 200.0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut secs = || -> Result<f64> {
            let v: f64 = it
                .next()
                .context(USAGE)?
                .parse()
                .with_context(|| format!("{a} takes seconds\n{USAGE}"))?;
            if v < 1.0 {
                bail!("{a} must be at least 1 s");
            }
            Ok(v)
        };
        match a.as_str() {
            "--mesh-only" => o.mesh_only = true,
            "--duration" => o.duration = secs()?,
            "--hold-secs" => o.hold_secs = secs()?,
            "--no-hold" => o.hold = false,
            "--keep" => o.keep = true,
            "--agent" => o.agent = Some(it.next().context(USAGE)?.into()),
            "--prebuilt" => o.prebuilt = Some(it.next().context(USAGE)?.into()),
            "--rr-rate" => o.rr_rate = secs()?,
            "--newconn-rate" => o.newconn_rate = secs()?,
            _ => bail!("{USAGE}"),
        }
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--cpu") {
        return router_cpu::run(args);
    }
    if args.iter().any(|a| a == "--propagation") {
        return propagation::run(args);
    }
    if args.iter().any(|a| a == "--tracing") {
        return tracing::run(args);
    }
    let o = parse(args)?;
    if !is_root() {
        bail!(
            "cargo xtask bench needs root: the mesh comparison builds network namespaces, veth \
             links and nftables rules (run it as root, e.g. sudo -E cargo xtask bench). Only the \
             cargo benches: cargo bench --workspace"
        );
    }
    if o.prebuilt.is_none() {
        setup::ensure_programs(setup::BENCH_PROGRAMS)?;
    }
    for (prog, pkg) in [
        ("stunnel4", "stunnel4"),
        ("iperf3", "iperf3"),
        ("nft", "nftables"),
        ("openssl", "openssl"),
        ("taskset", "util-linux"),
    ] {
        if !have(prog) {
            bail!("{prog} is missing: install the Debian package {pkg} (cargo xtask setup does)");
        }
    }
    let bin = match &o.prebuilt {
        Some(dir) => dir.clone(),
        None => {
            if !o.mesh_only {
                crate::run(cargo().args(["bench", "--workspace"]))?;
            }
            // The shipped profile: what runs on a router. The load client and echo server are
            // this xtask, built the same way.
            crate::run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
            root().join("target/release")
        }
    };
    home::install_signal_handler();
    let started = Instant::now();
    let agent = o.agent.clone().unwrap_or_else(|| bin.join("trellis-agent"));
    let home = Home::start(&bin, &agent, &bin.join("xtask"), o.prebuilt.is_some())?;
    eprintln!(
        "bench: home up (service at {}); logs in {}",
        home.vip,
        home.dir.display()
    );
    if o.keep {
        let client = format!("taskset -c {} ip netns exec {}", home::CPU_A, home::CLIENT);
        println!(
            "home up until Ctrl-C: agents {} (router A) and {} (router B); try\n  {client} iperf3 -c {} -p {}   (direct: -c {}; stunnel: -c {} -p {})\n  {client} {} bench-load --mode rr --addr {} --secs 10",
            home.agent_a,
            home.agent_b,
            home.vip,
            home::IPERF_PORT,
            home.direct(home::IPERF_PORT).ip(),
            home.stunnel_addr(home::IPERF_PORT).ip(),
            home::STUNNEL_IPERF_PORT,
            bin.join("xtask").display(),
            home.trellis(home::ECHO_PORT),
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let result = measure(&home, &o);
    let elapsed = started.elapsed().as_secs_f64();
    let (paths, mem, hold) = result?;
    let mut header = format!(
        "Service-mesh comparison: client → router A (CPU 0) → router B (CPU 1) → server; agent {}; {:.0} s per latency run, {}; CPUs {:.0} % idle just before measuring",
        agent.display(),
        o.duration,
        if o.hold { format!("{:.0} s 1000-connection run", o.hold_secs) } else { "no 1000-connection run".into() },
        mem.idle_cpu * 100.0,
    );
    if mem.idle_cpu < 0.85 {
        header += "\nWARNING: something else was using the CPUs; direct suffers most (its whole path runs on CPU 0), so ratios to direct look better than they are";
    }
    print!(
        "{}",
        Report {
            header,
            paths: &paths,
            memory: &mem,
            hold: hold.as_ref(),
            elapsed_s: elapsed,
        }
        .render()
    );
    drop(home);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Trellis,
    Stunnel,
}

const PATHS: [(Path, &str); 3] = [
    (Path::Direct, "direct"),
    (Path::Trellis, "trellis"),
    (Path::Stunnel, "stunnel"),
];

fn addr(home: &Home, p: Path, port: u16) -> std::net::SocketAddr {
    match p {
        Path::Direct => home.direct(port),
        Path::Trellis => home.trellis(port),
        Path::Stunnel => home.stunnel_addr(port),
    }
}

fn measure(home: &Home, o: &Opts) -> Result<(Vec<PathFigures>, Memory, Option<Hold>)> {
    let agents = [home.agent_a, home.agent_b];
    let mut figs: Vec<PathFigures> = PATHS
        .iter()
        .map(|(_, name)| PathFigures {
            name,
            ..Default::default()
        })
        .collect();
    let mut mem = Memory::default();
    // Idle: joined, config applied, one probe through each path; let it settle, and see how
    // busy the machine is without us (other builds skew every figure).
    std::thread::sleep(Duration::from_secs(1));
    mem.idle_cpu = idle_share(Duration::from_secs(2));
    mem.idle = agents.map(|pid| memory(pid).0);
    mem.idle_parts = agents.map(home::rss_parts);
    // Each kind of run goes through every path in turn, so a burst of noise from elsewhere
    // on the machine is less likely to land on one path only.
    let secs = o.duration.to_string();
    for (i, (p, name)) in PATHS.iter().enumerate() {
        eprintln!(
            "bench: {name}: 1 KiB request/response, {} rps over 4 connections, {secs} s",
            o.rr_rate
        );
        let watch: Vec<u32> = match p {
            Path::Trellis => agents.to_vec(),
            Path::Stunnel => home.stunnel.clone(),
            Path::Direct => vec![],
        };
        let (s, peaks) = run_load(
            home,
            &[
                "--mode",
                "rr",
                "--rate",
                &o.rr_rate.to_string(),
                "--conns",
                "4",
                "--secs",
                &secs,
            ],
            addr(home, *p, home::ECHO_PORT),
            &watch,
            Duration::from_millis(500),
        )?;
        figs[i].rr = s;
        match p {
            Path::Trellis => mem.at_load = [peaks[0].0, peaks[1].0],
            // Order in `home.stunnel`: server side (router B), then client side (router A).
            Path::Stunnel => mem.stunnel_at_load = [peaks[1].0, peaks[0].0],
            Path::Direct => {}
        }
    }
    for (i, (p, name)) in PATHS.iter().enumerate() {
        eprintln!(
            "bench: {name}: new connection per 1 KiB request, {} rps, {secs} s",
            o.newconn_rate
        );
        let rate = o.newconn_rate.to_string();
        let (s, _) = run_load(
            home,
            &["--mode", "newconn", "--rate", &rate, "--secs", &secs],
            addr(home, *p, home::ECHO_PORT),
            &[],
            Duration::from_secs(1),
        )?;
        figs[i].newconn = s;
    }
    // Peak under bulk: the high-water mark from here on.
    for pid in agents {
        reset_peak(pid);
    }
    let bulk_secs = (o.duration / 6.0).clamp(2.0, 10.0).round();
    for round in 1..=3 {
        for (i, (p, name)) in PATHS.iter().enumerate() {
            eprintln!("bench: {name}: iperf3 single stream, {bulk_secs} s (round {round}/3)");
            match iperf3(addr(home, *p, home::IPERF_PORT), bulk_secs) {
                Ok(g) => figs[i].bulk.push(g),
                Err(e) => {
                    figs[i].bulk.push(f64::NAN);
                    figs[i].bulk_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
    }
    mem.peak_bulk = agents.map(|pid| memory(pid).1);
    let hold = if o.hold {
        for pid in agents {
            reset_peak(pid);
        }
        let conns = 1000;
        eprintln!(
            "bench: trellis: {conns} concurrent connections for {:.0} s",
            o.hold_secs
        );
        let mut samples = Vec::new();
        let t0 = Instant::now();
        let s = run_load_sampled(
            home,
            &[
                "--mode",
                "hold",
                "--conns",
                &conns.to_string(),
                "--secs",
                &o.hold_secs.to_string(),
            ],
            home.trellis(home::ECHO_PORT),
            Duration::from_secs(5),
            |_| {
                let (a, b) = (memory(agents[0]).0, memory(agents[1]).0);
                samples.push((t0.elapsed().as_secs_f64(), a, b));
            },
        )?;
        Some(Hold {
            conns,
            secs: o.hold_secs,
            summary: s,
            samples,
            peak: agents.map(|pid| memory(pid).1),
        })
    } else {
        None
    };
    for pid in agents {
        if !home::alive(pid) {
            bail!(
                "an agent died during the bench; see {}/agent-*.log.err",
                home.dir.display()
            );
        }
    }
    Ok((figs, mem, hold))
}

/// Run the load client; every `every`, note the largest VmRSS (and VmHWM) of each `watch` PID.
pub(super) fn run_load(
    home: &Home,
    args: &[&str],
    addr: std::net::SocketAddr,
    watch: &[u32],
    every: Duration,
) -> Result<(Summary, Vec<(u64, u64)>)> {
    let mut peaks = vec![(0u64, 0u64); watch.len()];
    let s = run_load_sampled(home, args, addr, every, |_| {
        for (i, pid) in watch.iter().enumerate() {
            let (rss, hwm) = memory(*pid);
            peaks[i].0 = peaks[i].0.max(rss);
            peaks[i].1 = peaks[i].1.max(hwm);
        }
    })?;
    Ok((s, peaks))
}

fn run_load_sampled(
    home: &Home,
    args: &[&str],
    addr: std::net::SocketAddr,
    every: Duration,
    mut sample: impl FnMut(Duration),
) -> Result<Summary> {
    let started = Instant::now();
    let mut child = home
        .load()
        .args(args)
        .args(["--addr", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the load client")?;
    let pid = child.id();
    home::track(pid);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        sample(started.elapsed());
        std::thread::sleep(every);
    }
    let out = child.wait_with_output()?;
    home::untrack(pid);
    if !out.status.success() {
        bail!(
            "load client failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("the load client printed nothing")?;
    Summary::from_json(line)
}

/// One single-stream iperf3 run (first second omitted: slow start); Gbit/s received.
fn iperf3(addr: std::net::SocketAddr, secs: f64) -> Result<f64> {
    let out = home::pinned(home::CPU_A, home::CLIENT, "iperf3")
        .args(["-c", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-t", &secs.to_string(), "-O", "1", "-J"])
        .output()
        .context("running iperf3")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3 to {addr}: {e}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 JSON without end.sum_received.bits_per_second")
}

/// Share of both CPUs' time spent idle over `span` (from /proc/stat).
fn idle_share(span: Duration) -> f64 {
    let read = || -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal …
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        (idle, v.iter().take(8).sum())
    };
    let (i0, t0) = read();
    std::thread::sleep(span);
    let (i1, t1) = read();
    if t1 <= t0 {
        return f64::NAN;
    }
    (i1 - i0) as f64 / (t1 - t0) as f64
}
