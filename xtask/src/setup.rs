//! Installs what the tests need on a fresh Debian 12 machine, only when it is missing.
use std::process::Command;

use anyhow::{bail, Result};

use crate::{have, output, run};

/// Debian packages the test suite uses, keyed by a program each provides.
const APT: &[(&str, &str)] = &[
    // One package runs every router CPU's static binaries (`cargo xtask test`'s
    // router-binaries stage; x86_64 runs natively).
    ("qemu-aarch64-static", "qemu-user-static"),
    ("qemu-arm-static", "qemu-user-static"),
    ("qemu-mipsel-static", "qemu-user-static"),
    ("qemu-mips-static", "qemu-user-static"),
    ("file", "file"),
    ("readelf", "binutils"),
    ("xz", "xz-utils"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("nft", "nftables"),
    ("ip", "iproute2"),
    // A real mDNS peer for the discovery tests (run without D-Bus, one per namespace).
    ("avahi-daemon", "avahi-daemon"),
    ("shellcheck", "shellcheck"),
    // The web page's browser test (controller/tests/browser.rs) drives headless Chromium.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    ("gzip", "gzip"),
    // `cargo xtask bench`: the TLS-tunnel baseline and the bulk-throughput client/server.
    ("stunnel4", "stunnel4"),
    ("iperf3", "iperf3"),
    // The namespace test's real scraper (node-agent/tests/prometheus_netns.rs) and the
    // checker of the shipped scrape config and rules (docs/prometheus/).
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    // The agent's hostapd backend: its generated configs are read by the real hostapd
    // (node-agent access_point::hostapd tests), and the VM lab runs it.
    ("hostapd", "hostapd"),
];

/// What `cargo xtask bench` runs besides the project's own binaries.
pub const BENCH_PROGRAMS: &[&str] = &["stunnel4", "iperf3", "nft", "ip", "openssl"];

/// Rust targets built on stable with the rust-std rustup ships.
pub const STABLE_TARGETS: &[&str] = &["aarch64-unknown-linux-musl", "x86_64-unknown-linux-musl"];

/// A whole `cargo xtask test` from a clean clone peaks near this much in `target/` plus the
/// lab's scratch (measured on x86_64; see `.ci/run`).
pub const TEST_RUN_NEEDS_GIB: u64 = 9;

pub fn ensure_test_tools() -> Result<()> {
    ensure_disk_space(TEST_RUN_NEEDS_GIB)?;
    ensure_apt()?;
    ensure_zigbuild()?;
    ensure_otlp_receiver()?;
    ensure_rust_targets(STABLE_TARGETS)
}

/// Refuse to start a run that cannot finish: a full disk shows up minutes later as an
/// LLVM "IO failure on output stream" in the middle of a build, which names nothing useful.
pub fn ensure_disk_space(needed_gib: u64) -> Result<()> {
    let target = crate::root().join("target");
    let probe = if target.exists() {
        target
    } else {
        crate::root()
    };
    let df = output(
        Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&probe),
    )?;
    let Some(free) = df.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()) else {
        eprintln!("xtask: could not read free space from df; going on");
        return Ok(());
    };
    let free_gib = free / (1 << 30);
    if free_gib < needed_gib {
        bail!(
            "only {free_gib} GiB free on the disk holding {}; a test run needs about \
             {needed_gib} GiB. Free some space (`cargo clean` in other checkouts, old \
             /var/tmp/trellis-lab*) and run again",
            probe.display()
        );
    }
    Ok(())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

fn ensure_apt() -> Result<()> {
    ensure_programs(&APT.iter().map(|(prog, _)| *prog).collect::<Vec<_>>())
}

/// Install the Debian packages of the APT table that provide these programs, when missing.
pub fn ensure_programs(programs: &[&str]) -> Result<()> {
    let mut missing: Vec<&str> = APT
        .iter()
        .filter(|(prog, _)| programs.contains(prog) && !have(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing tools; install them with: sudo apt-get install {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// zig (PyPI `ziglang`) is the C compiler and linker for every router target.
pub fn ensure_zigbuild() -> Result<()> {
    let zig_ok = Command::new("python3")
        .args(["-c", "import ziglang"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    add_python_scripts_to_path();
    if zig_ok && have("cargo-zigbuild") {
        return Ok(());
    }
    // Both are on PyPI as prebuilt wheels: seconds, where `cargo install` takes minutes.
    pip_install(&["ziglang", "cargo-zigbuild"])?;
    add_python_scripts_to_path();
    if !have("cargo-zigbuild") {
        bail!("cargo-zigbuild was installed by pip but is not on PATH; add pip's bin directory to PATH");
    }
    Ok(())
}

/// The trace test's OTLP receiver (node-agent/tests/support/otlp_receiver.py) decodes with
/// the official OpenTelemetry protobuf classes: PyPI `opentelemetry-proto` and `protobuf`.
pub fn ensure_otlp_receiver() -> Result<()> {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    pip_install(&["opentelemetry-proto", "protobuf"])
}

/// `pip install` of prebuilt wheels from PyPI, quietly.
fn pip_install(packages: &[&str]) -> Result<()> {
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))
}

pub fn ensure_rust_targets(targets: &[&str]) -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["target", "add"])
        .args(&missing))
}

/// Nightly with rust-src, for the -Zbuild-std targets.
pub fn ensure_nightly_rust_src() -> Result<()> {
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if comps.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The cargo-fuzz release `cargo xtask fuzz` is written against (its flags and output).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// A nightly toolchain and cargo-fuzz for `cargo xtask fuzz`, each installed only when
/// missing. Not part of `ensure_test_tools`: `test --quick` skips the fuzz stage and should
/// not pay for this. A cold `cargo install cargo-fuzz` takes a few minutes (FUZZING.md).
pub fn ensure_fuzz_tools() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !have("cargo-fuzz") {
        run(Command::new("cargo")
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .env_remove("RUSTUP_TOOLCHAIN"))?;
    }
    Ok(())
}

/// pip puts console scripts (cargo-zigbuild) in Python's scripts directory, which a fresh
/// shell may not have on PATH; add it for this process and everything it starts.
pub fn add_python_scripts_to_path() {
    let Ok(dir) = output(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ])) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir.trim());
    let mut paths: Vec<_> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if !paths.contains(&dir) {
        paths.push(dir);
        if let Ok(joined) = std::env::join_paths(paths) {
            std::env::set_var("PATH", joined);
        }
    }
}
