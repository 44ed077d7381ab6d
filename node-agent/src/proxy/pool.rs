//! Tunnels to peer nodes: pooled HTTP/2-over-mTLS connections, a breaker per node, locality order.
//!
//! **Pool.** Tunnels are HTTP/2 connections over mutual TLS 1.3 (see the framing decision in
//! `proxy.rs`); each new client connection is one CONNECT stream on a pooled connection to
//! the destination node, so the TLS handshake (the expensive part: ~0.5 ms of CPU per end on
//! x86, tens of ms on a MIPS router) is paid once per peer, not per stream. A node gets
//! another connection when its existing ones carry [`STREAMS_PER_CONNECTION`] streams, up
//! to [`max_connections_per_node`]: enough for every connection the outbound side accepts
//! ([`ProxyConfig::max_outbound`]) to go to one node, as it does when a home's busy service is
//! its NAS. Connections are dropped from the pool when they fail and
//! all of them when the snapshot changes (a revocation must not ride on an old connection;
//! the accepting side also re-checks the peer on every stream).
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

use bytes::Bytes;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use trellis_proto::catalog::{Instance, Service};
use trellis_proto::NodeName;

use super::copy::BufferBudget;
use super::h2stream::{
    CONNECTION_WINDOW, MAX_FRAME, SEND_BUFFER, STREAMS_PER_CONNECTION, STREAM_WINDOW,
};
use super::readahead::ReadAhead;
use super::tls;
use super::{MeshState, ProxyConfig};

pub const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_BASE: Duration = Duration::from_secs(1);
const BREAKER_MAX: Duration = Duration::from_secs(30);

/// Most tunnel connections to one node (each carries up to [`STREAMS_PER_CONNECTION`]): room
/// for all of `max_outbound` (11 with the default 1024). A fixed 8 capped a node at 800
/// concurrent client connections, below the outbound cap; `cargo xtask bench`'s
/// 1000-connection run found it (200 connections reset).
pub fn max_connections_per_node(cfg: &ProxyConfig) -> usize {
    cfg.max_outbound
        .div_ceil(STREAMS_PER_CONNECTION as usize)
        .max(1)
}

/// A handle to open CONNECT streams on one tunnel connection.
pub type Tunnel = ::h2::client::SendRequest<Bytes>;

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
    #[error("HTTP/2 with node {node} failed: {err}")]
    H2 { node: NodeName, err: ::h2::Error },
    #[error("node {0} has {1} tunnels full of streams")]
    Saturated(NodeName, usize),
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

struct Conn {
    id: u64,
    version: u64,
    send: Tunnel,
    /// Streams open on it now (maintained by [`StreamGuard`]).
    streams: Arc<std::sync::atomic::AtomicU32>,
}

#[derive(Default)]
struct PerNode {
    conns: Vec<Conn>,
    breaker: Breaker,
    /// (snapshot version, client config that expects this node's SPIFFE ID).
    config: Option<(u64, Arc<ClientConfig>)>,
    /// One dial at a time per node: a burst of new streams to a node with no connection waits
    /// for the first dial instead of opening one connection each; other nodes are not held up.
    dialing: Arc<tokio::sync::Mutex<()>>,
}

/// Counts a stream against its connection while alive.
pub struct StreamGuard(Arc<std::sync::atomic::AtomicU32>);

/// A tunnel connection lent for one stream.
pub struct Leased {
    pub send: Tunnel,
    /// Pass to [`Pool::discard`] if the connection fails.
    pub id: u64,
    /// Keep alive as long as the stream.
    pub guard: StreamGuard,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Tunnels to every peer node.
pub struct Pool {
    cfg: ProxyConfig,
    /// Large buffers (tunnel read-ahead) come from the proxy's budget.
    budget: BufferBudget,
    nodes: Mutex<HashMap<NodeName, PerNode>>,
    next_id: portable_atomic::AtomicU64,
}

impl Pool {
    pub fn new(cfg: ProxyConfig, budget: BufferBudget) -> Self {
        Self {
            cfg,
            budget,
            nodes: Mutex::new(HashMap::new()),
            next_id: 0.into(),
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

    /// Tunnel connections to a node right now (for tests and the admin page).
    pub fn connection_count(&self, node: &NodeName) -> usize {
        self.lock().get(node).map_or(0, |n| n.conns.len())
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
            if *v == state.trust_version {
                return Ok(c.clone());
            }
        }
        let c = tls::client_config(&state.identity, state.bundle.clone(), peer.identity.clone())?;
        entry.config = Some((state.trust_version, c.clone()));
        Ok(c)
    }

    fn address(&self, state: &MeshState, node: &NodeName) -> Result<SocketAddr, DialError> {
        let peer = state
            .nodes
            .iter()
            .find(|p| &p.name == node)
            .ok_or_else(|| DialError::UnknownNode(node.clone()))?;
        peer.socket_addrs(self.cfg.inbound_port)
            .next()
            .ok_or_else(|| DialError::NoAddress(node.clone()))
    }

    /// Dial a tunnel connection: TCP, mutual TLS 1.3 (peer identity checked), HTTP/2.
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
        let tcp = ReadAhead::new(tcp, self.budget.clone());
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout(
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
        })?;
        let (send, conn) = ::h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|err| DialError::H2 {
                node: node.clone(),
                err,
            })?;
        let n = node.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(node = %n, error = %e, "tunnel connection ended");
            }
        });
        Ok(send)
    }

    /// A tunnel to `node` with room for one more stream, and the guard that counts the
    /// stream against it. Reuses a pooled connection when one has room, else dials.
    pub async fn get(&self, state: &Arc<MeshState>, node: &NodeName) -> Result<Leased, DialError> {
        if let Some(t) = self.pick(state, node) {
            return Ok(t);
        }
        let dialing = self.lock().entry(node.clone()).or_default().dialing.clone();
        let _one_dial = dialing.lock().await;
        // Someone may have dialled while we waited.
        if let Some(t) = self.pick(state, node) {
            return Ok(t);
        }
        let most = max_connections_per_node(&self.cfg);
        if self.connection_count(node) >= most {
            return Err(DialError::Saturated(node.clone(), most));
        }
        let send = self.dial(state, node).await?;
        let streams = Arc::new(std::sync::atomic::AtomicU32::new(1));
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock()
            .entry(node.clone())
            .or_default()
            .conns
            .push(Conn {
                id,
                version: state.trust_version,
                send: send.clone(),
                streams: streams.clone(),
            });
        Ok(Leased {
            send,
            id,
            guard: StreamGuard(streams),
        })
    }

    fn pick(&self, state: &MeshState, node: &NodeName) -> Option<Leased> {
        use std::sync::atomic::Ordering;
        let mut g = self.lock();
        let n = g.get_mut(node)?;
        // Forget connections of an older snapshot.
        n.conns.retain(|c| c.version == state.trust_version);
        let c = n
            .conns
            .iter()
            .filter(|c| c.streams.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION)
            .min_by_key(|c| c.streams.load(Ordering::Relaxed))?;
        c.streams.fetch_add(1, Ordering::Relaxed);
        Some(Leased {
            send: c.send.clone(),
            id: c.id,
            guard: StreamGuard(c.streams.clone()),
        })
    }

    /// Drop a connection that failed, so the next stream dials afresh.
    pub fn discard(&self, node: &NodeName, id: u64) {
        if let Some(n) = self.lock().get_mut(node) {
            n.conns.retain(|c| c.id != id);
        }
    }

    /// Forget breaker state (the picture changed: a dead node may be back), keep the tunnels.
    pub fn reset_breakers(&self) {
        for n in self.lock().values_mut() {
            n.breaker = Breaker::default();
        }
    }

    /// Drop every pooled connection and forget breaker state: the snapshot changed, so
    /// identities, revocations and addresses may differ and old verdicts no longer hold.
    pub fn clear(&self) {
        for n in self.lock().values_mut() {
            n.conns.clear();
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

    /// Node B's proxy on loopback and a state for A that knows B there.
    async fn two_nodes() -> (Arc<MeshState>, crate::proxy::ProxyHandle) {
        let ca = crate::proxy::testca::TestCa::new("h").unwrap();
        let mk = |local: &str, id: crate::proxy::NodeIdentity, nodes| MeshState {
            version: 1,
            trust_version: 1,
            local_node: n(local),
            identity: id,
            bundle: ca.bundle_arc(),
            nodes,
            catalog: Default::default(),
            policy: Default::default(),
            devices: vec![],
            hops: Default::default(),
        };
        let (a, b) = (ca.issue_node("a").unwrap(), ca.issue_node("b").unwrap());
        let peer = |name: &str, id: &crate::proxy::NodeIdentity, addr: String| {
            trellis_proto::snapshot::PeerNode {
                name: n(name),
                identity: id.id.clone(),
                addresses: vec![addr],
            }
        };
        let cfg = ProxyConfig {
            outbound_addr: "127.0.0.1:0".parse().unwrap(),
            inbound_addr: "127.0.0.1:0".parse().unwrap(),
            ..ProxyConfig::default()
        };
        let b_nodes = vec![peer("a", &a, "127.0.0.1".into())];
        // The sender may go: the proxy keeps serving its last state (fail static).
        let (_, rx) = tokio::sync::watch::channel(Arc::new(mk("b", b, b_nodes)));
        let handle = crate::proxy::Proxy::start(cfg, rx, Arc::new(crate::metrics::Metrics::new()))
            .await
            .unwrap();
        let b_id = ca.issue_node("b").unwrap();
        let a_nodes = vec![peer("b", &b_id, handle.inbound.to_string())];
        (Arc::new(mk("a", a, a_nodes)), handle)
    }

    #[tokio::test]
    async fn streams_share_one_connection_until_it_is_full() {
        let (state, _b) = two_nodes().await;
        let pool = Pool::new(ProxyConfig::default(), BufferBudget::new(4));
        let b = n("b");
        let mut leases = Vec::new();
        for _ in 0..STREAMS_PER_CONNECTION {
            leases.push(pool.get(&state, &b).await.unwrap());
        }
        assert_eq!(
            pool.connection_count(&b),
            1,
            "100 streams fit one connection"
        );
        leases.push(pool.get(&state, &b).await.unwrap());
        assert_eq!(
            pool.connection_count(&b),
            2,
            "the 101st stream opens a second one"
        );
        // Streams ending free room: the next stream goes to an existing connection.
        leases.truncate(10);
        let l = pool.get(&state, &b).await.unwrap();
        assert_eq!(pool.connection_count(&b), 2);
        // A failed connection is forgotten; a new snapshot forgets them all.
        pool.discard(&b, l.id);
        assert_eq!(pool.connection_count(&b), 1);
        // A lease, hop or policy change keeps the tunnels…
        let mut same_trust = (*state).clone();
        same_trust.version += 1;
        let _l = pool.get(&Arc::new(same_trust), &b).await.unwrap();
        assert_eq!(
            pool.connection_count(&b),
            1,
            "tunnels kept across a policy change"
        );
        // …a change of trust (certificate, CA, routers, revocations) drops them.
        let mut newer = (*state).clone();
        newer.version += 2;
        newer.trust_version += 1;
        let newer = Arc::new(newer);
        let _l = pool.get(&newer, &b).await.unwrap();
        assert_eq!(
            pool.connection_count(&b),
            1,
            "old-snapshot connections dropped, one new"
        );
    }

    #[tokio::test]
    async fn dialling_a_node_that_is_not_there_fails_with_its_name() {
        let (state, b) = two_nodes().await;
        b.shutdown();
        // Let the aborted listener close.
        tokio::task::yield_now().await;
        let pool = Pool::new(ProxyConfig::default(), BufferBudget::new(4));
        let err = pool.dial(&state, &n("b")).await.unwrap_err().to_string();
        assert!(
            err.contains("connect to 127.0.0.1:") || err.contains("with node b"),
            "{err}"
        );
        let err = pool.dial(&state, &n("zz")).await.unwrap_err().to_string();
        assert_eq!(err, "node zz is not in the snapshot");
    }

    #[test]
    fn one_node_can_carry_every_outbound_connection() {
        let cfg = ProxyConfig::default();
        let most = max_connections_per_node(&cfg);
        assert!(most * STREAMS_PER_CONNECTION as usize >= cfg.max_outbound);
        assert_eq!(most, 11);
    }

    #[test]
    fn breaker_opens_after_threshold_and_backs_off() {
        let pool = Pool::new(ProxyConfig::default(), BufferBudget::new(4));
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
