//! `cargo xtask lab`: the 802.11s VM lab (tests/lab/). Builds the static x86_64 musl agent with
//! the project's cross recipe, then runs `tests/lab/run-lab.sh`, which boots Debian's kernel with
//! mac80211_hwsim under qemu and lets the agents form, secure and heal a real mesh.
//!
//! Needs root (qemu, apt-get for missing host tools and `apt-get download` of the guest
//! packages). Any failed scenario fails the command. `--agent PATH` skips the build.
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::{cross, root};

const TARGET: &str = "x86_64-unknown-linux-musl";

pub fn run(args: &[String]) -> Result<()> {
    let mut agent: Option<PathBuf> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--agent" => match it.next() {
                Some(p) => agent = Some(PathBuf::from(p)),
                None => bail!("--agent needs a path"),
            },
            "--no-apt" => extra.push(a.clone()),
            other => bail!("usage: cargo xtask lab [--agent PATH] [--no-apt] (unknown {other:?})"),
        }
    }
    let started = Instant::now();
    let agent = match agent {
        Some(p) => p,
        None => {
            let built = cross::run(&[TARGET.to_owned()])?;
            match built.into_iter().find(|b| b.binary == "trellis-agent") {
                Some(b) => b.path,
                None => bail!("the cross build produced no trellis-agent"),
            }
        }
    };
    let script = root().join("tests/lab/run-lab.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg("--agent").arg(&agent).args(&extra);
    let result = crate::run(&mut cmd);
    println!(
        "LAB total_s={} (agent build included)",
        started.elapsed().as_secs()
    );
    result
}
