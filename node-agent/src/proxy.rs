//! The node proxy: the agent's data plane, shaped like Istio ambient's ztunnel.
//!
//! - **Outbound** ([`outbound`]): a client's connection to a service's virtual IP is redirected
//!   here by nftables (`crate::intercept`); the original destination names the service; the
//!   policy is checked at the source to fail fast; then the connection goes to the nearest
//!   healthy instance — straight to the device when it sits behind this node, otherwise
//!   through a mutual-TLS 1.3 tunnel to the node it sits behind, whose SPIFFE ID must be the
//!   one the snapshot lists for that node.
//! - **Inbound** ([`inbound`]): accepts tunnels from other nodes (client certificate required,
//!   revoked identities refused in the handshake), decides the policy **again, always**, on its
//!   own snapshot, and opens the plaintext last hop to the device on its own segment.
//!
//! ## Tunnel framing: one TLS connection per stream, pre-dialled (decided by measurement)
//!
//! `cargo bench -p trellis-agent --bench tunnel_framing` compares the two shapes on loopback
//! (P-256 certificates from a test CA, TLS 1.3, ring, 2 tokio workers, bench profile =
//! release: opt-level "z" + LTO as shipped; this machine: 2 shared cores; three runs, Nov 2026):
//!
//! | measure | TLS per stream | HTTP/2 CONNECT on one TLS conn |
//! |---|---|---|
//! | new stream, fresh TCP + TLS handshake, p50 | 0.53 ms | (only once per peer) |
//! | new stream on a pre-dialled TLS conn / on the h2 conn, p50 | 0.026–0.030 ms | 0.034–0.043 ms |
//! | single-stream bulk throughput | 746–987 MB/s | 356–468 MB/s |
//! | memory per idle tunnel / stream, both ends | 27 KiB | 0.5–1 KiB |
//!
//! Per-stream TLS moves bulk data at ~2× the rate of HTTP/2 (no DATA framing, no per-stream
//! flow-control windows, one fewer copy), and with a pool of pre-dialled connections the
//! handshake leaves the critical path, so a new stream costs the same as opening an h2
//! stream (one request/response round trip). HTTP/2 wins on memory: ~13 KiB of rustls state
//! per tunnel end versus ~0.5 KiB per h2 stream, i.e. ~13 MB per node at 1000 concurrent
//! streams. A home rarely holds more than a few hundred mesh streams per router, the bulk
//! throughput goal (≥ 0.45× direct on one-core routers) is the harder one, and a tunnel per
//! stream has no head-of-line blocking between streams and is simpler to bound (the
//! connection cap bounds TLS state too). So: one mutual-TLS connection per stream, pre-dialled.
//! Revisit if a node regularly carries >1000 concurrent mesh streams.
//!
//! ## Bounds
//! Connection caps per direction ([`ProxyConfig::max_outbound`], [`ProxyConfig::max_inbound`];
//! over the cap a connection is refused at once and counted), copy buffers 4 → 16 → 64 KiB
//! with a process-wide budget for the 64 KiB ones (`copy`), the tunnel request capped at 2 KiB
//! (`wire`), timeouts on every wait that a peer controls.
//!
//! ## Entry point for the lead
//! ```ignore
//! let (tx, rx) = tokio::sync::watch::channel(Arc::new(MeshState { .. }));   // from the snapshot
//! let handle = Proxy::start(ProxyConfig::default(), rx, metrics.clone()).await?;
//! nft = intercept::Interception::install(&intercept::Rules::for_proxy(handle.outbound.port()))?;
//! // on every snapshot / certificate / hop-count change: tx.send(Arc::new(new_state))
//! // on shutdown: drop(nft) (removes table inet trellis), handle.shutdown()
//! ```

pub mod copy;
pub mod h2stream;
pub mod inbound;
pub mod outbound;
pub mod pool;
pub mod testca;
pub mod tls;
pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use trellis_proto::catalog::Catalog;
use trellis_proto::policy::{Device, MacAddr, Policy, Source};
use trellis_proto::snapshot::PeerNode;
use trellis_proto::NodeName;

use crate::metrics::Metrics;

pub use tls::{NodeIdentity, TrustBundle};

/// The port the inbound side listens on (HBONE's 15008, so people who know Istio recognise it).
pub const DEFAULT_INBOUND_PORT: u16 = 15008;
/// The port nftables redirects intercepted connections to (ztunnel's outbound port).
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;

/// How to learn where an accepted outbound connection was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalDst {
    /// nftables `redirect`: `SO_ORIGINAL_DST` from conntrack.
    Redirect,
    /// TPROXY: the socket's local address is the original destination.
    LocalAddr,
}

/// Knobs of the proxy, with defaults sized for a router.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub outbound_addr: SocketAddr,
    pub inbound_addr: SocketAddr,
    /// Port of peers' inbound listeners when their address has none.
    pub inbound_port: u16,
    /// Concurrent intercepted connections (each: two 4 KiB copy buffers plus an HTTP/2
    /// stream, ~10 KiB idle).
    pub max_outbound: usize,
    /// Concurrent inbound streams, and separately inbound tunnel connections.
    pub max_inbound: usize,
    /// TCP connect to a peer node or device. Linkerd's outbound default is 1 s; a home mesh
    /// hop is a few ms, so 1 s means "that node is gone".
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// 64 KiB copy buffers the whole proxy may hold (4 MiB at 64).
    pub large_buffers: usize,
    pub original_dst: OriginalDst,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            outbound_addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_OUTBOUND_PORT)),
            inbound_addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_INBOUND_PORT)),
            inbound_port: DEFAULT_INBOUND_PORT,
            max_outbound: 1024,
            max_inbound: 1024,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            large_buffers: 64,
            original_dst: OriginalDst::Redirect,
        }
    }
}

/// Everything the proxy decides with, built from the config snapshot (plus this node's
/// certificate and the mesh hop counts). Replace it as a whole through the watch channel.
#[derive(Debug, Clone)]
pub struct MeshState {
    /// Bumped on every change; pooled tunnels of an older version are never reused.
    pub version: u64,
    pub local_node: NodeName,
    pub identity: NodeIdentity,
    pub bundle: Arc<TrustBundle>,
    pub nodes: Vec<PeerNode>,
    pub catalog: Catalog,
    pub policy: Policy,
    pub devices: Vec<Device>,
    /// Mesh hops from this node to others (from the wifi side); missing = unknown.
    pub hops: HashMap<NodeName, u32>,
}

impl MeshState {
    /// Check a peer certificate (already chain-verified in its handshake) against this
    /// snapshot's trust bundle: home, revocations.
    pub fn bundle_check(
        &self,
        cert: &rustls::pki_types::CertificateDer<'_>,
    ) -> Result<trellis_proto::SpiffeId, String> {
        self.bundle.check(cert).map_err(|e| e.to_string())
    }

    /// Who a client address is: a catalog service instance (its SPIFFE ID) or a device.
    pub fn resolve_client(&self, ip: IpAddr, mac: Option<MacAddr>) -> Source {
        if let Some(svc) = self.catalog.by_instance_addr(ip) {
            return Source::Workload(svc.identity.clone());
        }
        Source::device(&self.devices, &self.policy, mac, Some(ip))
    }
}

/// Where the proxy listens; dropping it does not stop the proxy, [`ProxyHandle::shutdown`] does.
pub struct ProxyHandle {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    pub fn shutdown(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Shared by every connection task.
pub(crate) struct Ctx {
    pub cfg: ProxyConfig,
    pub state: watch::Receiver<Arc<MeshState>>,
    pub metrics: Arc<Metrics>,
    pub pool: Arc<pool::Pool>,
    pub budget: copy::BufferBudget,
    pub inbound_streams: Arc<Semaphore>,
    pub server_tls: std::sync::Mutex<Option<(u64, Arc<rustls::ServerConfig>)>>,
}

impl Ctx {
    pub fn state(&self) -> Arc<MeshState> {
        self.state.borrow().clone()
    }
}

pub struct Proxy;

impl Proxy {
    /// Bind both listeners and start serving on the current tokio runtime.
    pub async fn start(
        cfg: ProxyConfig,
        state: watch::Receiver<Arc<MeshState>>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<ProxyHandle> {
        let out_l = TcpListener::bind(cfg.outbound_addr).await?;
        let in_l = TcpListener::bind(cfg.inbound_addr).await?;
        let handle_addrs = (out_l.local_addr()?, in_l.local_addr()?);
        {
            let s = state.borrow();
            metrics.set_cert_expiry(&s.identity.id.to_string(), s.identity.not_after);
        }
        let ctx = Arc::new(Ctx {
            pool: Arc::new(pool::Pool::new(cfg.clone())),
            budget: copy::BufferBudget::new(cfg.large_buffers),
            inbound_streams: Arc::new(Semaphore::new(cfg.max_inbound)),
            cfg: cfg.clone(),
            state: state.clone(),
            metrics,
            server_tls: std::sync::Mutex::new(None),
        });
        let mut tasks = Vec::new();
        // Snapshot changes empty the pool: a revocation must not ride on a pre-dialled tunnel.
        let watcher = {
            let ctx = ctx.clone();
            let mut rx = state;
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    ctx.pool.clear();
                    let s = rx.borrow().clone();
                    ctx.metrics
                        .set_cert_expiry(&s.identity.id.to_string(), s.identity.not_after);
                }
            })
        };
        tasks.push(watcher);
        tasks.push(tokio::spawn(accept_loop(
            ctx.clone(),
            out_l,
            cfg.max_outbound,
            "outbound",
        )));
        tasks.push(tokio::spawn(accept_loop(
            ctx,
            in_l,
            cfg.max_inbound,
            "inbound",
        )));
        Ok(ProxyHandle {
            outbound: handle_addrs.0,
            inbound: handle_addrs.1,
            tasks,
        })
    }
}

async fn accept_loop(ctx: Arc<Ctx>, listener: TcpListener, cap: usize, direction: &'static str) {
    let permits = Arc::new(Semaphore::new(cap));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(direction, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ctx.metrics.overflow(direction);
            tracing::warn!(direction, %peer, cap, "connection cap reached; refusing");
            reset(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            match direction {
                "outbound" => outbound::handle(ctx, stream, peer).await,
                _ => inbound::handle(ctx, stream, peer).await,
            }
            drop(permit);
        });
    }
}

/// Close with RST so the client fails at once instead of waiting for data that never comes.
pub(crate) fn reset(stream: tokio::net::TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
