//! `cargo xtask cross`: fully static release binaries of both daemons for router CPUs.
//!
//! The table of OpenWrt arch → Rust target lives in `cross/targets.tsv`; the recipe and the
//! measured figures in `cross/README.md`. C code and the link go through `zig cc`
//! (cargo-zigbuild); armv7 and MIPS use nightly `-Zbuild-std` (no usable rust-std for them).
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{output, root, setup};

pub const BINARIES: &[&str] = &["trellis-agent", "trellis-controller"];

/// One row of `cross/targets.tsv`.
#[derive(Debug, Clone)]
pub struct Target {
    pub openwrt_arch: String,
    pub rust_target: String,
    pub nightly: bool,
    /// qemu-user program that runs it here ("" = runs natively).
    pub runner: String,
}

pub fn targets() -> Result<Vec<Target>> {
    let path = root().join("cross/targets.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 {
            bail!(
                "{}:{}: expected 5 tab-separated columns",
                path.display(),
                n + 1
            );
        }
        out.push(Target {
            openwrt_arch: cols[0].into(),
            rust_target: cols[1].into(),
            nightly: match cols[2] {
                "stable" => false,
                "nightly" => true,
                other => bail!(
                    "{}:{}: toolchain {other:?} is not stable or nightly",
                    path.display(),
                    n + 1
                ),
            },
            runner: cols[3].into(),
        });
    }
    Ok(out)
}

/// A built binary and what it costs in flash.
#[derive(Debug, Clone)]
pub struct Built {
    pub rust_target: String,
    pub binary: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub xz_bytes: u64,
    pub is_static: bool,
    pub seconds: u64,
}

/// How a router build is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// What ships: size-optimised with LTO (minutes per CPU on 2 cores).
    Release,
    /// CI's check that a CPU builds and starts (`[profile.router-smoke]`): the same code,
    /// features and static linking, none of the slow optimisation. Never packaged.
    Smoke,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Smoke => "router-smoke",
        }
    }
}

/// Release builds for the targets named in `args` (all of them when empty).
pub fn run(args: &[String]) -> Result<Vec<Built>> {
    run_with(args, Profile::Release)
}

pub fn run_with(args: &[String], profile: Profile) -> Result<Vec<Built>> {
    let all = targets()?;
    let mut wanted: Vec<Target> = Vec::new();
    for t in &all {
        let chosen = args.is_empty()
            || args
                .iter()
                .any(|a| a == &t.rust_target || a == &t.openwrt_arch);
        if chosen && !wanted.iter().any(|w| w.rust_target == t.rust_target) {
            wanted.push(t.clone());
        }
    }
    for a in args {
        if !all
            .iter()
            .any(|t| &t.rust_target == a || &t.openwrt_arch == a)
        {
            bail!("unknown target {a:?}; cross/targets.tsv lists the known ones");
        }
    }
    setup::ensure_zigbuild()?;
    let mut built = Vec::new();
    for t in &wanted {
        built.extend(build(t, profile)?);
    }
    println!();
    println!(
        "{:<32} {:<20} {:>10} {:>10} {:>6} linkage",
        "target", "binary", "bytes", "xz bytes", "secs"
    );
    for b in &built {
        println!(
            "{:<32} {:<20} {:>10} {:>10} {:>6} {}",
            b.rust_target,
            b.binary,
            b.bytes,
            b.xz_bytes,
            b.seconds,
            if b.is_static { "static" } else { "NOT STATIC" }
        );
    }
    if let Some(b) = built.iter().find(|b| !b.is_static) {
        bail!(
            "{} for {} is not statically linked",
            b.binary,
            b.rust_target
        );
    }
    Ok(built)
}

fn build(t: &Target, profile: Profile) -> Result<Vec<Built>> {
    let root = root();
    let target_dir = root.join("target/cross");
    let mut cmd = Command::new("cargo");
    // Run through the rustup proxy so `+nightly` works, whatever toolchain runs xtask.
    crate::without_cargo_run_env(&mut cmd);
    cmd.current_dir(&root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env("CARGO_TARGET_DIR", &target_dir);
    if t.nightly {
        setup::ensure_nightly_rust_src()?;
        cmd.arg("+nightly");
    } else {
        setup::ensure_rust_targets(&[t.rust_target.as_str()])?;
    }
    cmd.args([
        "zigbuild",
        "--profile",
        profile.dir(),
        "--config",
        "cross/config.toml",
        "--target",
    ])
    .arg(&t.rust_target);
    if t.nightly {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    for b in BINARIES {
        cmd.args(["--bin", b]);
    }
    // The controller's binary is the primary's multi-call one (controller, agent, CLI);
    // `trellis-agent` stays the agent alone, for satellites. One build of the shared crates.
    cmd.args(["--features", "trellis-controller/agent"]);
    let started = Instant::now();
    crate::run(&mut cmd)?;
    let seconds = started.elapsed().as_secs();
    // Only release builds go to dist/ (what packages are made of).
    let dist = match profile {
        Profile::Release => root.join("dist").join(&t.rust_target),
        Profile::Smoke => target_dir.join(&t.rust_target).join("smoke-dist"),
    };
    std::fs::create_dir_all(&dist)?;
    let mut out = Vec::new();
    for b in BINARIES {
        let from = target_dir.join(&t.rust_target).join(profile.dir()).join(b);
        let to = dist.join(b);
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        let bytes = std::fs::metadata(&to)?.len();
        // Roughly what the binary costs inside OpenWrt's xz-compressed squashfs.
        let xz = Command::new("xz").args(["-9e", "-c"]).arg(&to).output()?;
        if !xz.status.success() {
            bail!("xz failed on {}", to.display());
        }
        let xz_bytes = xz.stdout.len() as u64;
        out.push(Built {
            rust_target: t.rust_target.clone(),
            binary: (*b).into(),
            bytes,
            xz_bytes,
            is_static: is_static(&to)?,
            path: to,
            seconds,
        });
    }
    Ok(out)
}

/// Static means: `file` says statically (or static-pie) linked and there is no ELF interpreter.
pub fn is_static(path: &std::path::Path) -> Result<bool> {
    let file = output(Command::new("file").arg("-b").arg(path))?;
    let headers = output(Command::new("readelf").arg("-l").arg(path))?;
    Ok(
        (file.contains("statically linked") || file.contains("static-pie linked"))
            && !headers.contains("INTERP"),
    )
}

/// Run `<binary> --version` under the target's qemu-user (or natively) and return its output.
pub fn smoke_run(t: &Target, built: &Built) -> Result<String> {
    let mut cmd = if t.runner.is_empty() {
        Command::new(&built.path)
    } else {
        let mut c = Command::new(&t.runner);
        c.arg(&built.path);
        c
    };
    cmd.arg("--version");
    output(&mut cmd)
}
