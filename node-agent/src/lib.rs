//! The Trellis agent, run on every router of the home (primary and satellites).
//!
//! It owns the node's side of the control plane:
//! - [`cli`]: the `trellis-agent` command line (`run`, `join`).
//! - [`wifi`]: the 802.11s mesh: nl80211, SAE through wpa_supplicant, role, link health.
pub mod cli;
pub mod wifi;
