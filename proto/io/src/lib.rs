//! `trellis-io`: the I/O both Trellis binaries do the same way.
//!
//! `trellis-proto` promises no I/O; this small crate beside it holds what both binaries do
//! with sockets and files alike, so there is one failure policy and one set of limits:
//!
//! - [`client`]: the one HTTP/1.1 client of the APIs, over any stream (TLS to the controller,
//!   the admin unix socket), with bounded answers.
//! - [`files`]: replacing a file atomically, with its mode from the start; on flash only when
//!   its content changed, and synced.
//! - [`paths`]: where things live by default (OpenWrt's places on a router, `./trellis-data`
//!   on a development machine).
//! - [`listener`]: the accept loop ([`listener::serve`]) and its [`listener::Gate`] — a cap on
//!   connections in total and per source address (an IPv6 /64 counts as one source), refusals
//!   reset at once, counted, and logged at most once a minute; accept errors (EMFILE and
//!   friends) back off briefly and the loop goes on, never ending the daemon, never spinning.
//! - [`budget`]: seats for a class of connections inside a listener (the controller's web page
//!   and pairing, the enrolled agents): when a class is full, the oldest connection that is
//!   still waiting for its request gives up its seat, so stalling clients cannot hold a door shut.
//! - [`metrics`]: the Prometheus text of those counters, and the small `/metrics` endpoint
//!   both daemons serve with it.
//! - [`ratelog`]: "at most one log line per interval" for anything a client can trigger.
//! - [`runtime`]: the daemons' async runtime, and [`runtime::blocking`], the one way their code
//!   waits on flash or a child process without stalling the other connections.
//! - [`signal`]: the stop signal both daemons obey (SIGTERM from procd, or Ctrl-C).
//! - [`logging`]: the `--log` filter both daemons take (checked at start) and the logger.

#![forbid(unsafe_code)]

pub mod budget;
pub mod client;
pub mod files;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod ratelog;
pub mod runtime;
pub mod signal;

pub use budget::{Budget, Seat};

/// Seconds since the Unix epoch by the system clock (0 if the clock is before 1970): the one
/// clock reading behind certificate lifetimes, ages and sightings; the pure logic takes the
/// time as an argument.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
pub use listener::{serve, Gate, Limits, Refusal, Ticket};
