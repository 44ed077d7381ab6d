//! The node proxy: the agent's data plane, shaped like Istio ambient's ztunnel.
//!
//! - **Outbound** ([`outbound`]): a client's connection to a service's virtual IP is redirected
//!   here by nftables (`crate::intercept`); the original destination names the service; the
//!   policy is checked at the source to fail fast; then the connection goes to the nearest
//!   healthy instance — straight to the device when it sits behind this node, otherwise
//!   as an HTTP/2 CONNECT stream in a mutual-TLS 1.3 tunnel to the node it sits behind, whose
//!   SPIFFE ID must be the one the snapshot lists for that node.
//! - **Inbound** ([`inbound`]): accepts tunnels from other nodes (client certificate required,
//!   revoked identities refused in the handshake and again on every new stream), decides the
//!   policy **again, always**, on its own snapshot, and opens the plaintext last hop to the
//!   device on its own segment.
//!
//! ## Tunnel framing: HTTP/2 CONNECT on pooled mTLS connections (decided by measurement)
//!
//! Like Istio's HBONE: one mutual-TLS 1.3 connection (ALPN `h2`) per pair of nodes, carrying
//! one HTTP/2 `CONNECT <service>:<port>` stream per client connection; the source node's
//! facts travel as `trellis-client-ip` / `trellis-client-mac` headers; the destination
//! answers 200 (bytes follow), 403 with the deciding rule and its explanation (JSON body),
//! or 404/503. `cargo bench -p trellis-agent --bench tunnel_framing` compared this with one
//! TLS connection per stream on loopback (P-256 certificates, ring, 2 tokio workers, bench
//! profile = the shipped opt-level "z" + LTO; this machine has 2 shared cores):
//!
//! | measure | TLS per stream | HTTP/2 CONNECT streams |
//! |---|---|---|
//! | CPU per new stream, both ends | 555 µs (a full handshake) | 36 µs |
//! | new stream latency p50 | 0.53 ms fresh; 0.026 ms on a pre-dialled conn | 0.034–0.043 ms |
//! | single-stream bulk throughput | 750–990 MB/s | 356–468 MB/s (16 KiB frames), 538 MB/s (1 MiB) |
//! | memory per idle tunnel/stream, both ends | 27–33 KiB | 0.5–1 KiB |
//!
//! Per-stream TLS moves a single bulk stream faster, and pre-dialling hides the handshake's
//! latency — but not its CPU: every client connection costs a full P-256 handshake at both
//! ends, ~15× the CPU of an HTTP/2 stream on x86 and tens of milliseconds on a MIPS router
//! without assembly P-256, where it caps new connections at a few dozen per second. Through
//! the whole path in namespaces (`--bench mesh_path`), per-stream TLS with a warm pool gave
//! new-connection p50 4.2–9.2× direct (the pool's refill handshakes compete with requests),
//! HTTP/2 gives 1.7–2.5× (five runs), with throughput 0.23–0.36× direct against 0.26–0.27×
//! (load average ~7 on 2 cores while measuring: read these as ratios, not absolutes). HTTP/2 also
//! needs ~30× less memory per idle stream. Frames are 256 KiB and windows 1 MiB per stream /
//! 4 MiB per connection (`h2stream`), which bounds what a peer can make us buffer.
//!
//! ## Throughput through two one-core routers (`cargo xtask bench`)
//! Single-stream iperf3 from a client behind router A (CPU 0, with the client) to a server
//! behind router B (CPU 1, with the server), release binaries, medians of three 5 s runs on
//! this 2-core machine while another checkout compiled now and then (runs vary ±10 %; a busy
//! machine hurts direct most, whose whole path runs on CPU 0):
//!
//! | proxy | Trellis Gbit/s | direct Gbit/s | ratio |
//! |---|---|---|---|
//! | before: 64 KiB copy buffers, every read copied into a new `Bytes` for h2 | 6.3–6.4 | (busy machine) | — |
//! | + tunnel TLS read-ahead (`readahead`) | 6.2 | 19.1 | 0.33× |
//! | + `Bytes` handed to and taken from h2 without copies (`copy::tunnel`) | 6.5–6.6 | 19.3 | 0.34× |
//! | + 256 KiB top copy buffer (16 of them: the same 4 MiB cap) | 7.8 (7.7–8.4) | 19.2–20.6 | 0.41× (0.39–0.42×) |
//!
//! perf (cpu-clock) on router A's agent under iperf3, before: page faults, `madvise` and
//! `malloc` from a fresh 64 KiB allocation per read ~25 % of its CPU, memmove ~20 %, AES-GCM
//! 10 %; after: user space ~16 % (AES-GCM 12 %) and the kernel's TCP/veth work ~84 %. The veth
//! runs router B's receive path in the sender's context, so CPU 0 carries the client, router A
//! and most of B's kernel receive work: what is left is mostly the kernel's. Tried and not
//! kept: a 256 KiB rustls send buffer (64 KiB default; 5–8 % slower, A/B interleaved), a 1 MiB
//! h2 send buffer (no gain seen), one tokio worker instead of two (no change in throughput or
//! 1 KiB latency; the runtime is the agent's, `cli.rs`). The 0.45× goal is not reached in a
//! quiet run; ztunnel measured ≈ 0.33× and stunnel ≈ 0.23–0.29× in the same harness shape.
//!
//! ## Bounds
//! Connection caps per direction ([`ProxyConfig::max_outbound`], [`ProxyConfig::max_inbound`];
//! over the cap a connection is refused at once and counted), copy buffers 4 → 16 → 256 KiB
//! with a process-wide budget of 16 for the 256 KiB ones, shared with the tunnels' 64 KiB
//! read-ahead (`copy`, `readahead`), HTTP/2 windows and send buffers per stream
//! (`h2stream`), at most 100 streams per tunnel and `max_outbound / 100` tunnels per peer
//! (`pool`),
//! refusal bodies read up to 2 KiB (`wire`), timeouts on every wait that a peer controls.
//!
//! ## Entry point for the lead
//! ```ignore
//! let identity = proxy::NodeIdentity::from_pem(&state_dir.identity_pem()?)?;
//! let mesh = MeshState::from_snapshot(&snapshot, node_name, identity, devices, hops)?;
//! let (tx, rx) = tokio::sync::watch::channel(Arc::new(mesh));
//! let handle = Proxy::start(ProxyConfig::default(), rx, metrics.clone()).await?;   // binds :15001, :15008
//! let _nft = intercept::Interception::install(&intercept::Rules::for_proxy(handle.outbound.port()))?;
//! // every applied snapshot, renewed certificate or hop change: tx.send(Arc::new(new_state))
//! //   (bump `version` each time: pooled tunnels of older versions are dropped)
//! // shutdown: drop(_nft) removes table inet trellis; handle.shutdown()
//! ```
//! Fail static comes for free: the proxy decides with the last state it was given.

pub mod copy;
pub mod h2stream;
pub mod inbound;
pub mod outbound;
pub mod pool;
pub mod readahead;
pub(crate) mod refusal;
#[cfg(any(test, feature = "testca"))]
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
    /// Large (256 KiB) copy buffers the whole proxy may hold (4 MiB at 16); tunnel
    /// read-ahead buffers (64 KiB) take from the same budget.
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
            large_buffers: 16,
            original_dst: OriginalDst::Redirect,
        }
    }
}

/// Everything the proxy decides with, built from the config snapshot (plus this node's
/// certificate and the mesh hop counts). Replace it as a whole through the watch channel.
#[derive(Debug, Clone)]
pub struct MeshState {
    /// Bumped on every change of anything in here.
    pub version: u64,
    /// Moves only when what a tunnel's TLS depends on changes: this node's certificate, the
    /// CA, the routers of the home, revocations. Pooled tunnels and TLS configurations are
    /// keyed by it, so a lease, hop, catalog or policy change keeps the tunnels (policy is
    /// decided per stream), and a revocation drops them.
    pub trust_version: u64,
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
    /// Build the proxy's state from an applied config snapshot (nodes, CA, revocations,
    /// catalog, policy) plus what is local: this node's name and certificate, the device book
    /// (the snapshot's, merged with this node's DHCP leases: `discovery::devices_from_leases`)
    /// and mesh hop counts from the wifi side.
    pub fn from_snapshot(
        snapshot: &trellis_proto::snapshot::ConfigSnapshot,
        local_node: NodeName,
        identity: NodeIdentity,
        devices: Vec<Device>,
        hops: HashMap<NodeName, u32>,
    ) -> Result<Self, tls::TlsError> {
        Ok(Self {
            version: snapshot.version,
            trust_version: snapshot.version,
            local_node,
            identity,
            bundle: Arc::new(TrustBundle::from_snapshot(snapshot)?),
            nodes: snapshot.nodes.clone(),
            catalog: snapshot.catalog.clone(),
            policy: snapshot.policy.clone(),
            devices,
            hops,
        })
    }

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
        // The network it joined on this router's access points decides its group first: the
        // policy's one rule (`Source::device_on`) weighs it against the device book.
        let joined = mac
            .and_then(crate::access_point::joined::network_of)
            .map(|network| trellis_proto::policy::Joined {
                network,
                router: Some(self.local_node.clone()),
            });
        Source::device_on(&self.devices, &self.policy, mac, Some(ip), joined)
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
    /// Who a connecting LAN client is by MAC (the namespace the proxy was started in).
    pub neighbours: crate::neighbour_table::NeighbourTable,
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
        let budget = copy::BufferBudget::new(cfg.large_buffers);
        let ctx = Arc::new(Ctx {
            pool: Arc::new(pool::Pool::new(cfg.clone(), budget.clone())),
            budget,
            inbound_streams: Arc::new(Semaphore::new(cfg.max_inbound)),
            cfg: cfg.clone(),
            state: state.clone(),
            metrics,
            server_tls: std::sync::Mutex::new(None),
            neighbours: crate::neighbour_table::NeighbourTable::follow(),
        });
        let mut tasks = Vec::new();
        // A change of trust (certificate, CA, routers, revocations) empties the pool: a
        // revocation must not ride on an old tunnel. Any other change (leases, hops, catalog,
        // policy: decided per stream) keeps the tunnels and only gives dead nodes another try.
        let watcher = {
            let ctx = ctx.clone();
            let mut rx = state;
            let mut trust = rx.borrow().trust_version;
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let s = rx.borrow().clone();
                    if s.trust_version != trust {
                        trust = s.trust_version;
                        ctx.pool.clear();
                    } else {
                        ctx.pool.reset_breakers();
                    }
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

/// The project's one accept loop ([`trellis_io::serve`]) for a proxy direction: at most
/// `cap` connections, and a quarter of them from one source address, so one device on the
/// LAN (or one host hammering the tunnel port) cannot take every place. Refusals are reset
/// at once, counted (`trellis_proxy_overflow_total`) and logged at most once a minute.
async fn accept_loop(ctx: Arc<Ctx>, listener: TcpListener, cap: usize, direction: &'static str) {
    let gate = trellis_io::Gate::new(
        direction,
        trellis_io::Limits {
            total: cap,
            per_source: per_source_cap(cap),
        },
    );
    ctx.metrics.add_listener(gate.clone());
    trellis_io::serve(listener, gate, move |stream, peer, ticket| {
        let ctx = ctx.clone();
        async move {
            let _ = stream.set_nodelay(true);
            match direction {
                "outbound" => outbound::handle(ctx, stream, peer).await,
                _ => inbound::handle(ctx, stream, peer).await,
            }
            drop(ticket);
        }
    })
    .await;
}

/// The places one source address may hold of a direction's `cap`.
pub fn per_source_cap(cap: usize) -> usize {
    (cap / 4).max(1)
}

/// Close with RST so the client fails at once instead of waiting for data that never comes.
pub(crate) fn reset(stream: tokio::net::TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    type StateTx = watch::Sender<Arc<MeshState>>;

    /// A refused connection: the reset can land before connect() returns, or on the first
    /// read; either way it comes at once, not after a wait.
    async fn assert_refused_at_once(connected: std::io::Result<tokio::net::TcpStream>) {
        if let Ok(mut stream) = connected {
            let mut buf = [0u8; 16];
            let got = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("refused at once, not left waiting");
            assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
        }
    }

    /// A proxy of a home with no other router, `max_inbound` places on its tunnel port.
    async fn lone_proxy(max_inbound: usize) -> (ProxyHandle, Arc<Metrics>, StateTx) {
        let ca = testca::TestCa::new("h").unwrap();
        let state = MeshState {
            version: 1,
            trust_version: 1,
            local_node: NodeName::new("b").unwrap(),
            identity: ca.issue_node("b").unwrap(),
            bundle: ca.bundle_arc(),
            nodes: vec![],
            catalog: Catalog::default(),
            policy: Policy::default(),
            devices: vec![],
            hops: HashMap::new(),
        };
        let (tx, rx) = watch::channel(Arc::new(state));
        let metrics = Arc::new(Metrics::new());
        let cfg = ProxyConfig {
            outbound_addr: "127.0.0.1:0".parse().unwrap(),
            inbound_addr: "127.0.0.1:0".parse().unwrap(),
            max_inbound,
            ..ProxyConfig::default()
        };
        let h = Proxy::start(cfg, rx, metrics.clone()).await.unwrap();
        (h, metrics, tx)
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_refused_at_once_and_counted() {
        let (h, metrics, _tx) = lone_proxy(1).await;
        // The first connection holds the only permit (it sits in the TLS handshake).
        let _first = tokio::net::TcpStream::connect(h.inbound).await.unwrap();
        assert_refused_at_once(tokio::net::TcpStream::connect(h.inbound).await).await;
        assert!(
            metrics
                .render()
                .contains("trellis_proxy_overflow_total{direction=\"inbound\"} 1"),
            "{}",
            metrics.render()
        );
        h.shutdown();
    }

    #[tokio::test]
    async fn one_source_cannot_take_every_place_of_a_proxy_listener() {
        assert_eq!(per_source_cap(8), 2);
        let (h, metrics, _tx) = lone_proxy(8).await;
        let from = |ip: &str| {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            s.connect(h.inbound)
        };
        // One host holding its two places (they sit in the TLS handshake). Both directions
        // use the same accept loop; the inbound one holds a silent client long enough.
        let _a = from("127.0.0.1").await.unwrap();
        let _b = from("127.0.0.1").await.unwrap();
        let gate = metrics
            .listeners()
            .into_iter()
            .find(|g| g.name() == "inbound")
            .unwrap();
        // The listener takes both before it can refuse a third (accepts are in order).
        while gate.held() < 2 {
            tokio::task::yield_now().await;
        }
        // Its third is refused; another host still gets in.
        assert_refused_at_once(from("127.0.0.1").await).await;
        let _other = from("127.0.0.2").await.unwrap();
        while gate.held() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.refused(trellis_io::Refusal::PerSourceCap), 1);
        assert!(
            metrics
                .render()
                .contains("trellis_proxy_overflow_total{direction=\"inbound\"} 1"),
            "{}",
            metrics.render()
        );
        h.shutdown();
    }
}
