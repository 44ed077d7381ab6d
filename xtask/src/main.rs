//! `cargo xtask`: the project's automation, so a newcomer needs two commands.
//!
//! - `demo`: build and run a demo home with embedded defaults.
//! - `test`: install what the tests need (when missing), then run every check CI runs.
//! - `cross [TARGET…]`: static router binaries for the arches in `cross/targets.tsv`.
//! - `package [--target ARCH…]`: OpenWrt packages (.ipk) of both daemons and the LuCI app.
//! - `bench [--mesh-only]`: the cargo benches and the service-mesh comparison (direct vs
//!   Trellis vs stunnel in network namespaces), printing figures and goal lines.
//! - `fuzz [--smoke] [--seconds N] [TARGET…]`: the cargo-fuzz targets, each run from its seed
//!   corpus; one line per target, a crash's input and the command that reproduces it.
//! - `lab`: the 802.11s VM lab (qemu + mac80211_hwsim): satellites pair with the controller,
//!   agents form and heal a real mesh.
mod bench;
mod cross;
mod demo;
mod fuzz;
mod lab;
mod netns;
mod package;
mod setup;
mod teardown;
mod test;
mod uci;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo                  build and run a demo home (controller + agents), print its state
  test [--quick] [--only STAGE,…] [--list]
                        install what the tests need, then every stage CI runs: fmt, clippy,
                        build, tests, demo, router binaries, the VM lab, packages; each
                        stage's time, its log under target/xtask-test/, and one re-run
                        command per failure (--quick: skip the router build and the lab)
  cross [TARGET...]     static release binaries for router CPUs (default: all in
                        cross/targets.tsv), with size and xz size
  package [--target ARCH...] [--no-build]
                        OpenWrt .ipk packages (agent, controller, luci-app) into
                        dist/packages/, each read back and checked
  bench [--mesh-only] [--duration SECS] [--hold-secs SECS] [--no-hold] [--agent PATH] [--keep]
                        the cargo benches, then (root) the service-mesh comparison: direct
                        vs Trellis vs stunnel between two one-core routers in network
                        namespaces; a table, ratios and one GOAL line per goal
                        (--agent: another trellis-agent build, e.g. one with symbols
                        for perf; --keep: bring the home up and wait, for manual runs)
  lab [--agent PATH [--controller PATH]]
                        the 802.11s VM lab: qemu + mac80211_hwsim, satellites pair with the
                        controller on the primary, agents form an SAE mesh, a line topology
                        and a reroute (root; ~3 min after the build)
  fuzz [--smoke] [--seconds N] [--build-only] [--list] [TARGET...]
                        build every cargo-fuzz crate (nightly) into target/fuzz/ and run each
                        target N seconds (default 60; --smoke: 5, no AddressSanitizer) from
                        its seed corpus; a crash's input and how to reproduce it (FUZZING.md)
  setup                 only install what the tests need";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&args[1..]),
        Some("test") => test::run(&args[1..]),
        Some("cross") => cross::run(&args[1..]).map(|_| ()),
        Some("package") => package::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        // Hidden: the comparison's load client and echo server, run inside its namespaces.
        Some("bench-load") => bench::load::main(&args[1..]),
        Some("bench-server") => bench::load::server(&args[1..]),
        Some("lab") => lab::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        // Hidden: one of `test`'s own stages, run as a child so its output is the stage's log.
        Some("test-stage") => test::stage(&args[1..]),
        Some("setup") => setup::ensure_test_tools(),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    without_cargo_run_env(&mut cmd);
    cmd
}

/// Take away what `cargo run` set for xtask itself from a cargo it starts. ring's build
/// script tracks `CARGO_MANIFEST_DIR`, so a leaked one rebuilt ring, rustls and every crate
/// above them whenever builds alternated between `cargo xtask …` and a plain `cargo test -p
/// …` (measured: 2 to 11 minutes each way).
pub fn without_cargo_run_env(cmd: &mut Command) -> &mut Command {
    const RUN_ENV: &[&str] = &[
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
    ];
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if RUN_ENV.contains(&k.as_ref()) || k.starts_with("CARGO_PKG_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Run a command whose output is already directed, failing with its exit status.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

/// Run a command, echoing it, failing with its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", show(cmd));
    run_quiet(cmd)
}

/// Run a command and capture its standard output.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}
