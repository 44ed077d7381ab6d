//! Types the Trellis controller and its agents share.
//!
//! This crate owns the *language* of the control plane and nothing else: no I/O, no crypto,
//! no async. Both binaries depend on it so a message cannot drift between the two sides.
//!
//! - [`identity`]: SPIFFE IDs (`spiffe://<home-id>/node/<node>`, `spiffe://<home-id>/svc/<name>`).
//! - [`pairing`]: the messages of the PAKE exchange that enrolls a satellite.
//! - [`api`]: the agent API (mutual TLS) and the admin API (unix socket) bodies.
//! - [`snapshot`]: the versioned configuration snapshot agents watch, apply and acknowledge.
//! - [`uci`]: a reader for OpenWrt UCI files such as `/etc/config/trellis`.

pub mod api;
pub mod identity;
pub mod pairing;
pub mod snapshot;
pub mod uci;

pub use identity::{HomeId, NodeName, SpiffeId};
