//! Types the Trellis controller and its agents share.
//!
//! This crate owns the *language* of the control plane: no I/O and no async. Only the `tls`
//! feature brings in certificate parsing. Both binaries depend on it so a message cannot drift
//! between the two sides.
//!
//! - [`identity`]: SPIFFE IDs (`spiffe://<home-id>/node/<node>`, `spiffe://<home-id>/svc/<name>`).
//! - [`pairing`]: the messages of the PAKE exchange that enrolls a satellite.
//! - [`api`]: the agent API (mutual TLS) and the admin API (unix socket) bodies.
//! - [`snapshot`]: the versioned configuration snapshot agents watch, apply and acknowledge.
//! - [`catalog`]: home services, their mesh names (`<name>.trellis.home.arpa`) and virtual IPs.
//! - [`channel`]: radio surveys, channel numbers, bands and widths (the mesh channel).
//! - [`home_wifi`]: the home's wifi networks, roaming keys, access-point and steering reports.
//! - [`policy`]: who may talk to whom, the decision engine and its explanations.
//! - [`pake`] (feature `tls`): the key schedule of the pairing exchange, used by both sides.
//! - [`tls`] (feature `tls`): PEM handling, the SPIFFE ID inside a certificate, TLS 1.3 settings.

#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod channel;
pub mod home_wifi;
pub mod identity;
pub mod pairing;
#[cfg(feature = "tls")]
pub mod pake;
pub mod policy;
pub mod snapshot;
#[cfg(feature = "tls")]
pub mod tls;
pub mod trace;

pub use identity::{CertSerial, HomeId, NodeName, SpiffeId};
