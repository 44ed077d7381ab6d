//! Types the Trellis controller and its agents share.
//!
//! This crate owns the *language* of the control plane and nothing else: no I/O, no crypto,
//! no async. Both binaries depend on it so a message cannot drift between the two sides.
//!
//! - [`identity`]: SPIFFE IDs (`spiffe://<home-id>/node/<node>`, `spiffe://<home-id>/svc/<name>`).
//! - [`pairing`]: the messages of the PAKE exchange that enrolls a satellite.
//! - [`api`]: the agent API (mutual TLS) and the admin API (unix socket) bodies.
//! - [`snapshot`]: the versioned configuration snapshot agents watch, apply and acknowledge.
//! - [`catalog`]: home services, their mesh names (`<name>.trellis.home.arpa`) and virtual IPs.
//! - [`policy`]: who may talk to whom, the decision engine and its explanations.

pub mod api;
pub mod catalog;
pub mod identity;
pub mod pairing;
pub mod policy;
pub mod snapshot;

pub use identity::{HomeId, NodeName, SpiffeId};
