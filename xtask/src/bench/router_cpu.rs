//! `cargo xtask bench --cpu mipsel|armv7|aarch64`: the service-mesh bench on a
//! system-emulated router CPU.
//!
//! Builds the release binaries for that CPU (the controller's multi-call binary, which is also
//! the agent, and this xtask as load client and echo server), then boots one qemu guest of that
//! CPU (`tests/router-cpu/run-guest.sh`: a Debian kernel, busybox, Debian's stunnel4, iperf3,
//! nftables and iproute2 for that architecture) with `-icount`, so that guest time counts
//! instructions and the figures do not move with this machine's load. Inside, the same bench as
//! on x86_64 runs (`bench --mesh-only --prebuilt /bin`): four namespaces, controller and two
//! agents, stunnel pair, the same load client; on one vCPU, so both routers share one core and
//! every figure is the cost of both ends together. What `-icount` models and what not:
//! benches/README.md (next to this file, `README.md`).
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{root, setup};

const USAGE: &str = "usage: cargo xtask bench --cpu mipsel|armv7|aarch64 [--duration SECS] [--shift N] [--aead aes-gcm|chacha20-poly1305] [--rr-rate RPS] [--newconn-rate RPS] [--no-build]";

/// One emulated router CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    Mipsel,
    Armv7,
    Aarch64,
}

impl Cpu {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "mipsel" => Cpu::Mipsel,
            "armv7" => Cpu::Armv7,
            "aarch64" => Cpu::Aarch64,
            other => bail!("--cpu {other:?}: choose mipsel, armv7 or aarch64\n{USAGE}"),
        })
    }
    pub fn rust_target(self) -> &'static str {
        match self {
            Cpu::Mipsel => "mipsel-unknown-linux-musl",
            Cpu::Armv7 => "armv7-unknown-linux-musleabihf",
            Cpu::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }
    /// Debian's name for the architecture (its packages go into the guest).
    pub fn debian_arch(self) -> &'static str {
        match self {
            Cpu::Mipsel => "mipsel",
            Cpu::Armv7 => "armhf",
            Cpu::Aarch64 => "arm64",
        }
    }
    fn nightly(self) -> bool {
        !matches!(self, Cpu::Aarch64)
    }
}

#[derive(Debug)]
struct Opts {
    cpu: Cpu,
    duration: f64,
    shift: u32,
    aead: Option<String>,
    rr_rate: f64,
    newconn_rate: f64,
    build: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        cpu: Cpu::Mipsel,
        duration: 10.0,
        // 2 ns per instruction: 500 M instructions per guest second, about an 880 MHz
        // 1004Kc's rate at its IPC (benches/README.md).
        shift: 1,
        aead: None,
        rr_rate: 200.0,
        newconn_rate: 50.0,
        build: true,
    };
    let mut cpu = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--cpu" => cpu = Some(Cpu::parse(val()?)?),
            "--duration" => o.duration = number(a, val()?, 1.0)?,
            "--rr-rate" => o.rr_rate = number(a, val()?, 1.0)?,
            "--newconn-rate" => o.newconn_rate = number(a, val()?, 1.0)?,
            "--shift" => {
                let v = val()?;
                o.shift = v
                    .parse()
                    .ok()
                    .filter(|s| *s <= 10)
                    .with_context(|| format!("--shift {v:?}: an integer 0..=10\n{USAGE}"))?;
            }
            "--aead" => {
                let v = val()?;
                if v != "aes-gcm" && v != "chacha20-poly1305" {
                    bail!("--aead {v:?}: choose aes-gcm or chacha20-poly1305\n{USAGE}");
                }
                o.aead = Some(v.clone());
            }
            "--no-build" => o.build = false,
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    o.cpu = cpu.context(USAGE)?;
    Ok(o)
}

fn number(flag: &str, v: &str, min: f64) -> Result<f64> {
    let x: f64 = v
        .parse()
        .with_context(|| format!("{flag} {v:?} is not a number\n{USAGE}"))?;
    if x.is_nan() || x < min {
        bail!("{flag} must be at least {min}");
    }
    Ok(x)
}

/// Where the cross build puts this CPU's release binaries.
pub fn bin_dir(cpu: Cpu) -> std::path::PathBuf {
    root()
        .join("target/cross")
        .join(cpu.rust_target())
        .join("release")
}

/// Release build of the multi-call controller (agent inside) and xtask for `cpu`.
pub fn build(cpu: Cpu) -> Result<()> {
    setup::ensure_zigbuild()?;
    let mut cmd = Command::new("cargo");
    crate::without_cargo_run_env(&mut cmd);
    cmd.current_dir(root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env("CARGO_TARGET_DIR", root().join("target/cross"));
    if cpu.nightly() {
        setup::ensure_nightly_rust_src()?;
        cmd.arg("+nightly");
    } else {
        setup::ensure_rust_targets(&[cpu.rust_target()])?;
    }
    cmd.args([
        "zigbuild",
        "--release",
        "--config",
        "cross/config.toml",
        "--target",
        cpu.rust_target(),
    ]);
    if cpu.nightly() {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    cmd.args(["-p", "xtask", "-p", "trellis-controller"])
        .args(["--bin", "xtask", "--bin", "trellis-controller"])
        .args(["--features", "trellis-controller/agent"]);
    crate::run(&mut cmd)
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    if !crate::netns::is_root() {
        bail!("cargo xtask bench --cpu needs root (apt-get download of foreign-arch packages, depmod on a scratch tree); run it as root");
    }
    if o.build {
        build(o.cpu)?;
    }
    let bin = bin_dir(o.cpu);
    let mut cmd = Command::new(root().join("tests/router-cpu/run-guest.sh"));
    cmd.args(["--arch", o.cpu.debian_arch()])
        .arg("--bin")
        .arg(&bin)
        .args(["--shift", &o.shift.to_string()]);
    if let Some(a) = &o.aead {
        cmd.args(["--env", &format!("{}={a}", trellis_aead_env())]);
    }
    cmd.args(["--", "--no-hold", "--duration", &o.duration.to_string()])
        .args(["--rr-rate", &o.rr_rate.to_string()])
        .args(["--newconn-rate", &o.newconn_rate.to_string()]);
    println!(
        "Router CPU {:?} ({}), qemu -icount shift={} ({} ns per instruction), one vCPU for both routers; TLS AEAD {}",
        o.cpu,
        o.cpu.rust_target(),
        o.shift,
        1u64 << o.shift,
        o.aead.as_deref().unwrap_or("by CPU")
    );
    crate::run(&mut cmd)
}

/// The variable `trellis_proto::tls::AEAD_ENV` names (xtask does not link the TLS crates).
fn trellis_aead_env() -> &'static str {
    "TRELLIS_TLS_AEAD"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bad_cpu_and_values_are_refused_with_what_to_do() {
        let e = parse(&args(&["--cpu", "sparc"])).unwrap_err().to_string();
        assert!(e.contains("mipsel, armv7 or aarch64"), "{e}");
        let e = parse(&args(&["--cpu", "mipsel", "--aead", "rc4"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("aes-gcm or chacha20-poly1305"), "{e}");
        assert!(parse(&args(&["--cpu", "armv7", "--shift", "99"])).is_err());
        let o = parse(&args(&["--cpu", "armv7", "--duration", "3"])).unwrap();
        assert_eq!(o.cpu.debian_arch(), "armhf");
        assert_eq!(o.duration, 3.0);
    }
}
