//! The Trellis controller: the trust root and control plane of one home.
//!
//! It runs on the primary router and owns:
//! - [`ca`]: the home's root CA and the signing of node certificates (SAN from the enrollment
//!   record, never from the CSR);
//! - [`pairing`]: single-use pairing codes and the SPAKE2 exchange that enrolls a satellite;
//! - [`store`]: the embedded SQLite store (nodes, CA material, config versions), crash-safe
//!   and written only when state changes;
//! - [`channel`]: the home's mesh channel, chosen from every router's survey (pure rule);
//! - [`catalog`]: services, policy rules, device groups and `why`, as the controller keeps them;
//! - [`home`]: the running home: store, CA, config snapshot and its watchers, in one place;
//!   [`error`]: how a request into it fails (a kind the APIs map to a status, a message);
//! - [`auth`]: the web page's admin password, setup token, sessions and login throttle;
//! - [`api`]: the agent API (HTTPS, mutual TLS 1.3) and the admin API (root-only unix socket);
//! - [`speedtest`]: speed tests between routers, queued here and run by the agents;
//! - [`traffic`]: per-service connections and bytes of the last hour, from agent reports;
//! - [`fleet`] and [`health`]: whether a router is online, and whether its certificate is
//!   healthy: the one rule behind each warning;
//! - [`metrics`]: the controller's Prometheus page (routers, config propagation, refusals);
//! - [`check`]: `trellis check`, the diagnosis of common failures;
//! - [`wifi`]: the home's wifi networks and roaming keys; [`uci_wireless`]: reading a
//!   router's existing wifi (`uci show wireless`) for the first setup's import;
//! - [`ap_neighbours`]: the 802.11k neighbour lists each router gets;
//! - [`steering`]: which wifi clients to ask to move, a pure state machine;
//! - [`cli`]: the `trellis` command (a client of the admin API);
//! - [`daemon`]: wiring all of it into the `trellis-controller` process.

#![forbid(unsafe_code)]

pub mod ap_neighbours;
pub mod api;
pub mod auth;
pub mod ca;
pub mod catalog;
pub mod channel;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod fleet;
pub mod graph;
pub mod health;
pub mod home;
pub mod metrics;
pub mod pairing;
pub mod placement;
pub mod speedtest;
pub mod steering;
pub mod store;
pub mod traces;
pub mod traffic;
pub mod uci_wireless;
pub mod wifi;
