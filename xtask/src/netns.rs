//! Helpers shared by the commands that build homes in network namespaces (`demo`, `bench`).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::output;

/// `ip …` (iproute2), failing with its message.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Delete a namespace left over from an earlier run (quietly: it usually is not there).
pub fn del_quietly(ns: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// Poll `ready` every 100 ms for up to 30 s.
pub fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if crate::teardown::interrupted() {
            bail!("interrupted while waiting for {what}");
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The `trellis` command against one controller's admin socket, as the demo and the bench
/// drive it.
pub struct Admin<'a> {
    pub trellis: &'a Path,
    pub socket: &'a Path,
}

impl Admin<'_> {
    /// Run `trellis --socket SOCKET ARGS…`; its standard output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        output(
            Command::new(self.trellis)
                .arg("--socket")
                .arg(self.socket)
                .args(args),
        )
    }

    /// Waits until the controller listens on the admin socket.
    pub fn wait_ready(&self) -> Result<()> {
        wait_for(
            || std::os::unix::net::UnixStream::connect(self.socket).is_ok(),
            "the controller",
        )
    }

    /// A fresh single-use pairing code (`trellis pair --json`).
    /// A code for a satellite, or (`this_router`) for the agent beside the controller, which
    /// then is the portal on the map.
    pub fn pairing_code(&self, this_router: bool) -> Result<String> {
        let args: &[&str] = if this_router {
            &["pair", "--this-router", "--json"]
        } else {
            &["pair", "--json"]
        };
        let answer: serde_json::Value = serde_json::from_str(&self.run(args)?)
            .context("trellis pair --json printed no JSON")?;
        answer["code"]
            .as_str()
            .map(str::to_owned)
            .context("trellis pair --json printed no code")
    }
}
