//! `cargo xtask lab`: the 802.11s VM lab (tests/lab/). Builds the static x86_64 musl agent and
//! controller with the project's cross recipe, then runs `tests/lab/run-lab.sh`, which boots
//! Debian's kernel with mac80211_hwsim under qemu: the controller runs on the primary router,
//! the satellites pair with it, and the agents form, secure and heal a real mesh.
//!
//! Needs root (qemu, apt-get for missing host tools and `apt-get download` of the guest
//! packages). Any failed scenario fails the command. `--agent PATH` skips the build (the
//! controller is then taken from `--controller PATH`, or from beside the agent).
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::{cross, root};

const TARGET: &str = "x86_64-unknown-linux-musl";

pub fn run(args: &[String]) -> Result<()> {
    let mut agent: Option<PathBuf> = None;
    let mut controller: Option<PathBuf> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--agent" | "--controller" => match it.next() {
                Some(p) if a == "--agent" => agent = Some(PathBuf::from(p)),
                Some(p) => controller = Some(PathBuf::from(p)),
                None => bail!("{a} needs a path"),
            },
            "--no-apt" => extra.push(a.clone()),
            other => bail!(
                "usage: cargo xtask lab [--agent PATH [--controller PATH]] [--no-apt] (unknown {other:?})"
            ),
        }
    }
    let started = Instant::now();
    let (agent, controller) = match (agent, controller) {
        (Some(a), Some(c)) => (a, c),
        (Some(a), None) => {
            let beside = a.with_file_name("trellis-controller");
            if !beside.exists() {
                bail!(
                    "no trellis-controller beside {}: give --controller PATH",
                    a.display()
                );
            }
            (a, beside)
        }
        (None, Some(_)) => bail!("--controller needs --agent too"),
        (None, None) => {
            let built = cross::run(&[TARGET.to_owned()])?;
            let path = |name: &str| {
                built
                    .iter()
                    .find(|b| b.binary == name)
                    .map(|b| b.path.clone())
                    .ok_or_else(|| anyhow::anyhow!("the cross build produced no {name}"))
            };
            (path("trellis-agent")?, path("trellis-controller")?)
        }
    };
    let script = root().join("tests/lab/run-lab.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg("--agent")
        .arg(&agent)
        .arg("--controller")
        .arg(&controller)
        .args(&extra);
    let result = crate::run(&mut cmd);
    println!(
        "LAB total_s={} (build included)",
        started.elapsed().as_secs()
    );
    result
}
