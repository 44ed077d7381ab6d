//! The Trellis agent, run on every router of the home (primary and satellites).
//!
//! It owns the node's side of the control plane:
//! - [`join`]: pairing with a code (SPAKE2), pinning the home CA;
//! - [`identity`]: the node's key, CSR and certificate, and when to renew it;
//! - [`control`]: the mTLS client of the controller: config long poll, fail static,
//!   renewal, telemetry; and [`control::Trust`], the peers this node accepts;
//! - [`state`]: what the agent keeps on flash, written atomically and only on change;
//! - [`cli`]: the `trellis-agent` command line (`run`, `join`).
//!
//! and the service mesh's data plane:
//! - [`proxy`]: the ztunnel-shaped node proxy (outbound, inbound, mTLS tunnels, policy).
//! - [`intercept`]: nftables interception of virtual IPs (`table inet trellis`).
//! - [`metrics`]: Prometheus text and the per-connection access log.
//! - [`dns`]: the mesh zone `trellis.home.arpa` (A records → virtual IPs).
//! - [`discovery`]: DHCP leases and mDNS/DNS-SD on this router's segment.
//! - [`service_mesh`]: wires the data plane to each applied config snapshot.
//!
//! and the wifi mesh:
//! - the 802.11s mesh itself is its own crate, [`trellis_wifi`] (`node-agent/wifi/`): nl80211,
//!   SAE through wpa_supplicant, role, link health; `trellis-agent mesh` runs it.
//! - [`mesh_channel`]: hands the snapshot's mesh channel to the mesh supervisor.
//! - [`access_point`]: the home's access points (the networks clients join): OpenWrt's
//!   wireless config or hostapd, fast roaming, BSS transition requests.
//! - [`speedtest`]: the per-hop speed test between routers (sink and sender).

#![forbid(unsafe_code)]

pub mod access_point;
pub mod backhaul;
pub mod cli;
pub mod control;
pub mod devices;
pub mod discovery;
pub mod dns;
pub mod identity;
pub mod intercept;
pub mod join;
pub mod mesh_channel;
pub mod metrics;
pub mod neighbour_table;
pub mod neighbours;
pub mod proxy;
pub mod service_mesh;
pub mod speedtest;
pub mod state;
pub mod trace;

pub use trellis_io::unix_now;

/// `TRELLIS_LOG` / `--log`: see [`trellis_io::logging`].
pub fn init_logging(filter: &str) {
    trellis_io::logging::init(filter);
}
