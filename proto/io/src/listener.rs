//! The accept loop every Trellis listener runs, and the gate that admits connections.
//!
//! One failure policy for all of them ([`accept_error_pause`]): an error that belongs to the
//! one connection being accepted (it was reset while queued) is skipped at once; anything else
//! — out of file descriptors (EMFILE, ENFILE), of buffers or memory — pauses the loop for
//! [`ACCEPT_BACKOFF`] and then tries again, because the kernel keeps the connection queued and
//! the listener stays readable: retrying at once would spin a core at 100 % until an fd is
//! freed. The loop never ends: a daemon that stops accepting is worse than one that waits.
//!
//! The [`Gate`] holds the caps: connections in total, and per source address, so one device
//! cannot take every slot. A refused connection is reset at once (the client fails fast
//! instead of waiting), counted under its [`Refusal`] reason, and logged at most once a minute.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
// MIPS32 has no 64-bit atomics: portable-atomic falls back to a lock there.
use portable_atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::ratelog::RateLog;

/// How long the loop waits after an accept error that is not the one connection's fault.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, from everyone.
    pub total: usize,
    /// Connections held at once from one source address (one IPv6 /64).
    pub per_source: usize,
}

/// Why a connection was turned away (the `reason` label of `trellis_listener_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The listener held [`Limits::total`] connections.
    TotalCap,
    /// Its source address held [`Limits::per_source`] connections.
    PerSourceCap,
    /// Its class of connections ([`crate::Budget`]) was full of ones busy with a request.
    BudgetFull,
    /// It was still waiting for its request when its class was full and a newer one came.
    Evicted,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::TotalCap,
        Refusal::PerSourceCap,
        Refusal::BudgetFull,
        Refusal::Evicted,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::TotalCap => "total_cap",
            Refusal::PerSourceCap => "per_source_cap",
            Refusal::BudgetFull => "budget_full",
            Refusal::Evicted => "evicted",
        }
    }

    fn index(self) -> usize {
        match self {
            Refusal::TotalCap => 0,
            Refusal::PerSourceCap => 1,
            Refusal::BudgetFull => 2,
            Refusal::Evicted => 3,
        }
    }
}

/// What a listener holds, admits and refuses. Shared by its accept loop, its connections (each
/// holds a [`Ticket`]) and the `/metrics` page.
#[derive(Debug)]
pub struct Gate {
    name: &'static str,
    limits: Limits,
    held: Mutex<Held>,
    refused: [AtomicU64; 4],
    accept_errors: AtomicU64,
    refusal_log: RateLog,
    error_log: RateLog,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Only sources holding a connection have an entry: at most `limits.total` entries.
    by_source: HashMap<IpAddr, usize>,
}

/// One admitted connection's place in its [`Gate`]; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    source: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self.gate.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                held.by_source.remove(&self.source);
            }
        }
    }
}

/// The source a per-address cap counts: IPv4 as is (also when it arrives IPv4-mapped on a
/// dual-stack socket), IPv6 by its /64, since one device picks any address in its prefix.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Gate {
    /// `name` is the `listener` label in metrics and logs (e.g. `agent-api`, `proxy-outbound`).
    pub fn new(name: &'static str, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            name,
            limits,
            held: Mutex::new(Held::default()),
            refused: Default::default(),
            accept_errors: AtomicU64::new(0),
            refusal_log: RateLog::default(),
            error_log: RateLog::default(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a place for a connection from `peer`, or say which cap it hit. Not counted: the
    /// accept loop counts what it refuses ([`Gate::refuse`]).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let source = source_of(peer);
        let mut held = self.lock();
        if held.total >= self.limits.total {
            return Err(Refusal::TotalCap);
        }
        let mine = held.by_source.get(&source).copied().unwrap_or(0);
        if mine >= self.limits.per_source {
            return Err(Refusal::PerSourceCap);
        }
        held.total += 1;
        held.by_source.insert(source, mine + 1);
        Ok(Ticket {
            gate: self.clone(),
            source,
        })
    }

    /// Count a refusal, and log it if no refusal was logged in the last minute (the line says
    /// how many there were since).
    pub fn refuse(&self, reason: Refusal, peer: SocketAddr) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.refusal_log.hit(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                latest = %peer,
                reason = reason.label(),
                refused = n,
                total_cap = self.limits.total,
                per_source_cap = self.limits.per_source,
                "connections refused at the listener's limits (at most one such line a minute)"
            );
        }
    }

    /// Connections refused so far for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[reason.index()].load(Ordering::Relaxed)
    }

    /// Accept errors so far (EMFILE and the like).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.lock().total
    }

    fn accept_failed(&self, e: &io::Error) -> Duration {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
        let pause = accept_error_pause(e);
        if let Some(n) = self.error_log.hit(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                error = %e,
                errors = n,
                pause_ms = pause.as_millis() as u64,
                "accept failed; going on (at most one such line a minute)"
            );
        }
        pause
    }
}

/// The one failure policy of an accept error: how long to wait before accepting again.
pub fn accept_error_pause(e: &io::Error) -> Duration {
    match e.raw_os_error() {
        // The queued connection itself failed (reset before we took it, or a firewall
        // verdict); the next one in the queue is unaffected.
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM) => Duration::ZERO,
        // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unknown: the connection stays queued and
        // the listener readable, so only a pause keeps the loop from spinning.
        _ => ACCEPT_BACKOFF,
    }
}

/// Close with RST so the client fails at once instead of waiting for data that never comes.
pub fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Accept on `listener` forever: each connection the gate admits is handed to `handle` (with
/// its [`Ticket`], to be dropped when the connection ends) on a task of its own; the others are
/// reset and counted.
pub async fn serve<H, F>(listener: TcpListener, gate: Arc<Gate>, mut handle: H) -> Infallible
where
    H: FnMut(TcpStream, SocketAddr, Ticket) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => match gate.admit(peer.ip()) {
                Ok(ticket) => {
                    tokio::spawn(handle(stream, peer, ticket));
                }
                Err(reason) => {
                    gate.refuse(reason, peer);
                    reset(stream);
                }
            },
            Err(e) => {
                let pause = gate.accept_failed(&e);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_cannot_hold_more_than_its_cap_and_places_come_back() {
        let gate = Gate::new(
            "t",
            Limits {
                total: 3,
                per_source: 2,
            },
        );
        let a1 = gate.admit(ip("10.0.0.1")).unwrap();
        let _a2 = gate.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::PerSourceCap
        );
        let _b = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3")).unwrap_err(), Refusal::TotalCap);
        drop(a1);
        assert!(gate.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_ipv6_prefix_is_one_source_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            source_of(ip("fd00:1:2:3:aaaa::1")),
            source_of(ip("fd00:1:2:3:bbbb::9"))
        );
        assert_ne!(
            source_of(ip("fd00:1:2:3::1")),
            source_of(ip("fd00:1:2:4::1"))
        );
        assert_eq!(source_of(ip("::ffff:192.168.1.5")), ip("192.168.1.5"));
    }

    #[test]
    fn out_of_descriptors_pauses_and_a_connection_reset_in_the_queue_does_not() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(accept_error_pause(&emfile), ACCEPT_BACKOFF);
        assert_eq!(accept_error_pause(&enfile), ACCEPT_BACKOFF);
        assert_eq!(accept_error_pause(&aborted), Duration::ZERO);
    }
}
