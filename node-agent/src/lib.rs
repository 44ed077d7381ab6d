//! The Trellis agent, run on every router of the home (primary and satellites).
//!
//! It owns the node's side of the control plane:
//! - [`cli`]: the `trellis-agent` command line (`run`, `join`).
//!
//! and the service mesh's data plane:
//! - [`proxy`]: the ztunnel-shaped node proxy (outbound, inbound, mTLS tunnels, policy).
//! - [`intercept`]: nftables interception of virtual IPs (`table inet trellis`).
//! - [`metrics`]: Prometheus text and the per-connection access log.
//! - [`dns`]: the mesh zone `trellis.home.arpa` (A records → virtual IPs).
//! - [`discovery`]: DHCP leases and mDNS/DNS-SD on this router's segment.
pub mod cli;
pub mod discovery;
pub mod dns;
pub mod intercept;
pub mod metrics;
pub mod proxy;
