//! Tunnels to peer nodes: pre-dialled TLS connections, a breaker per node, and locality order.
//!
//! **Pool.** Each tunnel carries one stream (see the framing decision in `proxy.rs`), so the
//! expensive part of a new stream is the TCP + TLS 1.3 handshake. The pool keeps up to
//! `warm` handshaken connections to each peer *recently used* (within `max_idle_age`) ready,
//! takes one per new stream and dials a replacement in the background: a new client
//! connection then costs one mesh round trip (request → response) instead of three. Pooled
//! connections older than `max_idle_age` are dropped (the accepting side waits longer than
//! that for the request, so a pooled connection is never closed under us by that timer), and
//! the whole pool is emptied when the snapshot changes (a revocation must not ride on an old
//! connection).
//!
//! **Breaker.** After [`BREAKER_THRESHOLD`] failed dials in a row a node is skipped for a
//! backoff that starts at 1 s and doubles to 30 s; the first dial after the backoff is the
//! probe. Linkerd's failure accrual uses 7; a home has a handful of nodes and a dead one should
//! stop costing a connect timeout quickly.
//!
//! **Locality.** [`order_instances`]: instances behind this node first, then by mesh hops
//! (from the wifi side), unknown distance last; unreachable ones never.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use trellis_proto::catalog::{Instance, Service};
use trellis_proto::NodeName;

use super::tls;
use super::{MeshState, ProxyConfig};

pub const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_BASE: Duration = Duration::from_secs(1);
const BREAKER_MAX: Duration = Duration::from_secs(30);

pub type Tunnel = TlsStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("node {0} is not in the snapshot")]
    UnknownNode(NodeName),
    #[error("node {0} has no usable tunnel address")]
    NoAddress(NodeName),
    #[error("connect to {addr} timed out after {after:?} (is node {node} up?)")]
    Timeout {
        node: NodeName,
        addr: SocketAddr,
        after: Duration,
    },
    #[error("connect to {addr} failed: {err}")]
    Connect {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("TLS with node {node} failed: {err}")]
    Tls { node: NodeName, err: std::io::Error },
    #[error(transparent)]
    Config(#[from] tls::TlsError),
}

#[derive(Debug, Clone, Copy)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    backoff: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            failures: 0,
            open_until: None,
            backoff: BREAKER_BASE,
        }
    }
}

struct Warm {
    born: Instant,
    version: u64,
    stream: Tunnel,
}

#[derive(Default)]
struct PerNode {
    idle: Vec<Warm>,
    refilling: bool,
    last_used: Option<Instant>,
    breaker: Breaker,
    /// (snapshot version, client config that expects this node's SPIFFE ID).
    config: Option<(u64, Arc<ClientConfig>)>,
}

/// Tunnels to every peer node.
pub struct Pool {
    cfg: ProxyConfig,
    nodes: Mutex<HashMap<NodeName, PerNode>>,
}

impl Pool {
    pub fn new(cfg: ProxyConfig) -> Self {
        Self {
            cfg,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, PerNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the breaker lets us try this node now.
    pub fn allows(&self, node: &NodeName) -> bool {
        let now = Instant::now();
        self.lock()
            .get(node)
            .and_then(|n| n.breaker.open_until)
            .is_none_or(|t| now >= t)
    }

    pub fn record_success(&self, node: &NodeName) {
        let mut g = self.lock();
        let b = &mut g.entry(node.clone()).or_default().breaker;
        *b = Breaker::default();
    }

    pub fn record_failure(&self, node: &NodeName) {
        let mut g = self.lock();
        let b = &mut g.entry(node.clone()).or_default().breaker;
        b.failures += 1;
        if b.failures >= BREAKER_THRESHOLD {
            b.open_until = Some(Instant::now() + b.backoff);
            tracing::warn!(node = %node, failures = b.failures, backoff_ms = b.backoff.as_millis() as u64, "breaker open: skipping node");
            b.backoff = (b.backoff * 2).min(BREAKER_MAX);
        }
    }

    /// Idle pooled connections right now (for tests and the admin page).
    pub fn idle_count(&self, node: &NodeName) -> usize {
        self.lock().get(node).map_or(0, |n| n.idle.len())
    }

    fn client_config(
        &self,
        state: &MeshState,
        node: &NodeName,
    ) -> Result<Arc<ClientConfig>, DialError> {
        let peer = state
            .nodes
            .iter()
            .find(|p| &p.name == node)
            .ok_or_else(|| DialError::UnknownNode(node.clone()))?;
        let mut g = self.lock();
        let entry = g.entry(node.clone()).or_default();
        if let Some((v, c)) = &entry.config {
            if *v == state.version {
                return Ok(c.clone());
            }
        }
        let c = tls::client_config(&state.identity, state.bundle.clone(), peer.identity.clone())?;
        entry.config = Some((state.version, c.clone()));
        Ok(c)
    }

    fn address(&self, state: &MeshState, node: &NodeName) -> Result<SocketAddr, DialError> {
        let peer = state
            .nodes
            .iter()
            .find(|p| &p.name == node)
            .ok_or_else(|| DialError::UnknownNode(node.clone()))?;
        peer.addresses
            .iter()
            .find_map(|a| {
                a.parse::<SocketAddr>().ok().or_else(|| {
                    a.parse()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, self.cfg.inbound_port))
                })
            })
            .ok_or_else(|| DialError::NoAddress(node.clone()))
    }

    /// Dial a fresh tunnel (TCP + mutual TLS 1.3, peer identity checked).
    pub async fn dial(&self, state: &MeshState, node: &NodeName) -> Result<Tunnel, DialError> {
        let config = self.client_config(state, node)?;
        let addr = self.address(state, node)?;
        let after = self.cfg.connect_timeout;
        let tcp = tokio::time::timeout(after, TcpStream::connect(addr))
            .await
            .map_err(|_| DialError::Timeout {
                node: node.clone(),
                addr,
                after,
            })?
            .map_err(|err| DialError::Connect { addr, err })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(config);
        tokio::time::timeout(
            self.cfg.handshake_timeout,
            connector.connect(tls::sni(), tcp),
        )
        .await
        .map_err(|_| DialError::Tls {
            node: node.clone(),
            err: std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"),
        })?
        .map_err(|err| DialError::Tls {
            node: node.clone(),
            err,
        })
    }

    /// A tunnel to `node`: a warm one if the pool has it (`true`), else a fresh dial.
    pub async fn get(
        self: &Arc<Self>,
        state: &Arc<MeshState>,
        node: &NodeName,
    ) -> Result<(Tunnel, bool), DialError> {
        let warm = {
            let mut g = self.lock();
            let n = g.entry(node.clone()).or_default();
            n.last_used = Some(Instant::now());
            let max_age = self.cfg.pool_max_idle_age;
            n.idle
                .retain(|w| w.version == state.version && w.born.elapsed() < max_age);
            n.idle.pop()
        };
        self.refill(state, node);
        match warm {
            Some(w) => Ok((w.stream, true)),
            None => Ok((self.dial(state, node).await?, false)),
        }
    }

    /// Top the node's idle set up to `warm` in the background (one refill task per node).
    fn refill(self: &Arc<Self>, state: &Arc<MeshState>, node: &NodeName) {
        if self.cfg.pool_warm == 0 {
            return;
        }
        {
            let mut g = self.lock();
            let n = g.entry(node.clone()).or_default();
            if n.refilling || n.idle.len() >= self.cfg.pool_warm {
                return;
            }
            n.refilling = true;
        }
        let pool = self.clone();
        let state = state.clone();
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                let need = {
                    let g = pool.lock();
                    g.get(&node).is_some_and(|n| {
                        n.idle.len() < pool.cfg.pool_warm
                            && n.last_used
                                .is_some_and(|t| t.elapsed() < pool.cfg.pool_max_idle_age)
                    })
                };
                if !need || !pool.allows(&node) {
                    break;
                }
                match pool.dial(&state, &node).await {
                    Ok(stream) => {
                        let mut g = pool.lock();
                        if let Some(n) = g.get_mut(&node) {
                            n.idle.push(Warm {
                                born: Instant::now(),
                                version: state.version,
                                stream,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::debug!(node = %node, error = %e, "pool refill failed");
                        pool.record_failure(&node);
                        break;
                    }
                }
            }
            if let Some(n) = pool.lock().get_mut(&node) {
                n.refilling = false;
            }
        });
    }

    /// Drop every idle tunnel and forget breaker state: the snapshot changed, so identities,
    /// revocations and addresses may differ and old verdicts about nodes no longer hold.
    pub fn clear(&self) {
        for n in self.lock().values_mut() {
            n.idle.clear();
            n.config = None;
            n.breaker = Breaker::default();
        }
    }
}

/// Instances of `svc` in the order to try them: this node's first, then fewest mesh hops.
pub fn order_instances<'a>(
    svc: &'a Service,
    local: &NodeName,
    hops: &HashMap<NodeName, u32>,
) -> Vec<&'a Instance> {
    let mut v: Vec<&Instance> = svc.instances.iter().filter(|i| i.reachable).collect();
    // Stable sort keeps the catalog's order among equals, so choices are predictable.
    v.sort_by_key(|i| {
        (
            &i.node != local,
            hops.get(&i.node).copied().unwrap_or(u32::MAX),
        )
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::catalog::LearnedVia;
    use trellis_proto::{HomeId, SpiffeId};

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    #[test]
    fn same_node_first_then_fewest_hops_never_unreachable() {
        let home = HomeId::new("h").unwrap();
        let inst = |node: &str, ip: &str, reachable| Instance {
            node: n(node),
            addr: ip.parse().unwrap(),
            reachable,
        };
        let svc = Service {
            name: "nas".into(),
            identity: SpiffeId::service(&home, "nas").unwrap(),
            vip: "198.18.0.5".parse().unwrap(),
            ports: vec![],
            instances: vec![
                inst("far", "10.0.3.2", true),
                inst("unknown", "10.0.4.2", true),
                inst("near", "10.0.2.2", true),
                inst("dead", "10.0.5.2", false),
                inst("me", "10.0.1.2", true),
            ],
            learned_via: LearnedVia::Manual,
        };
        let hops = [(n("far"), 3), (n("near"), 1), (n("dead"), 0)]
            .into_iter()
            .collect();
        let order: Vec<_> = order_instances(&svc, &n("me"), &hops)
            .iter()
            .map(|i| i.node.to_string())
            .collect();
        assert_eq!(order, ["me", "near", "far", "unknown"]);
    }

    #[test]
    fn breaker_opens_after_threshold_and_backs_off() {
        let pool = Pool::new(ProxyConfig::default());
        let node = n("attic");
        for _ in 0..BREAKER_THRESHOLD - 1 {
            pool.record_failure(&node);
            assert!(pool.allows(&node));
        }
        pool.record_failure(&node);
        assert!(
            !pool.allows(&node),
            "open after {BREAKER_THRESHOLD} failures"
        );
        pool.record_success(&node);
        assert!(pool.allows(&node));
        // Backoff doubles, capped.
        let mut g = pool.lock();
        let b = &mut g.get_mut(&node).unwrap().breaker;
        b.failures = 10;
        b.backoff = BREAKER_MAX;
        drop(g);
        pool.record_failure(&node);
        assert_eq!(pool.lock()[&node].breaker.backoff, BREAKER_MAX);
    }
}
