//! Where Trellis keeps things by default: OpenWrt's places on a router, `./trellis-data` on a
//! development machine, so `cargo run` works without root and without flags.

use std::path::{Path, PathBuf};

/// True on OpenWrt (it ships `/etc/openwrt_release`).
pub fn on_openwrt() -> bool {
    Path::new("/etc/openwrt_release").exists()
}

fn pick(router: &str, dev: &str) -> PathBuf {
    if on_openwrt() {
        PathBuf::from(router)
    } else {
        PathBuf::from("trellis-data").join(dev)
    }
}

/// The controller's store (kept across sysupgrade on a router).
pub fn controller_data_dir() -> PathBuf {
    pick("/etc/trellis/controller", "controller")
}

/// The admin socket `trellis` talks to.
pub fn admin_socket() -> PathBuf {
    pick("/var/run/trellis/admin.sock", "admin.sock")
}

/// The agent's identity, pinned CA and last config.
pub fn agent_state_dir() -> PathBuf {
    pick("/etc/trellis/agent", "agent")
}
