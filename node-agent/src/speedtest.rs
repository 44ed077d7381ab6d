//! The per-hop speed test, like `batctl tp`: TCP from this router to another, timed by the
//! receiver.
//!
//! Every agent runs a small **sink** (default port 15009): routers of the home connect with
//! mutual TLS 1.3 and their node certificate (ALPN `trellis-speedtest/1`), send a header and
//! then data for the test's seconds; the sink counts bytes from the first to the last, and
//! answers with what it counted. The **sender** gets its job from the controller (a long poll,
//! [`follow_jobs`]) and reports the sink's count back. Timing at the receiver measures what
//! crossed the path, not what sat in the sender's socket buffer.
//!
//! The figure includes the TLS cost: it is what a Trellis tunnel gets over that path. On slow
//! router CPUs it can be CPU-bound rather than air-bound; the page says so.
//!
//! Bounded: one test at a time at the sink (others are refused at once), a deadline on every
//! step, a fixed 64 KiB buffer each side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use trellis_proto::api::{SpeedTestJob, SpeedTestOutcome};
use trellis_proto::snapshot::ConfigSnapshot;

use crate::control::{Agent, Trust};
use crate::proxy::tls::{client_config, peer_identity, server_config, sni};
use crate::proxy::{NodeIdentity, TrustBundle};

pub const ALPN: &[u8] = b"trellis-speedtest/1";
/// Sent first by the sender: magic, then the test's seconds (u32, big endian).
const MAGIC: &[u8; 8] = b"TRLSPD01";
const BUF: usize = 64 * 1024;
/// Longest test the sink accepts (the controller caps requests at 30 s).
const MAX_SECONDS: u32 = 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the sink's answer after the sender stops.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the job long poll waits at the controller, and the pause after a failed poll.
const POLL_WAIT_S: u64 = 55;
const POLL_RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SpeedTestError {
    #[error("this router has no configuration from the controller yet")]
    NoConfig,
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("could not reach {addr}: {source}; is the router online and its port open?")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}; is the router online?")]
    ConnectTimeout(String),
    #[error("the TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("the test broke off: {0}")]
    Io(#[from] std::io::Error),
    #[error("the receiver gave no count within {0:?}")]
    NoAnswer(Duration),
}

/// What the sink counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub bytes: u64,
    pub millis: u64,
}

impl Measured {
    pub fn bits_per_second(&self) -> u64 {
        (u128::from(self.bytes) * 8 * 1000 / u128::from(self.millis.max(1))) as u64
    }
}

fn tls_material(
    agent: &Agent,
    snapshot: &ConfigSnapshot,
) -> Result<(NodeIdentity, TrustBundle), SpeedTestError> {
    let me = NodeIdentity::from_pem(&agent.identity().pem)
        .map_err(|e| SpeedTestError::Tls(e.to_string()))?;
    let bundle =
        TrustBundle::from_snapshot(snapshot).map_err(|e| SpeedTestError::Tls(e.to_string()))?;
    Ok((me, bundle))
}

/// Serve the sink on `listener` until the task is dropped.
/// The project's one accept loop ([`trellis_io::serve`]): a few connections in all, one per
/// source (only routers of the home get past the handshake), accept errors paused, never
/// spun on; one test runs at a time.
pub async fn serve_sink(listener: TcpListener, agent: Agent, trust: Trust) {
    let gate = trellis_io::Gate::new(
        "speedtest",
        trellis_io::Limits {
            total: 4,
            per_source: 1,
        },
    );
    let one_at_a_time = Arc::new(Semaphore::new(1));
    trellis_io::serve(listener, gate, move |tcp, remote, ticket| {
        let permit = one_at_a_time.clone().try_acquire_owned();
        let agent = agent.clone();
        let trust = trust.clone();
        async move {
            let _ticket = ticket;
            let Ok(_permit) = permit else {
                tracing::debug!(%remote, "speed test refused: another one is running");
                return;
            };
            match sink_one(tcp, &agent, &trust).await {
                Ok((peer, m)) => tracing::info!(
                    %remote,
                    %peer,
                    bytes = m.bytes,
                    millis = m.millis,
                    mbit_s = m.bits_per_second() / 1_000_000,
                    "speed test received"
                ),
                Err(e) => tracing::info!(%remote, "speed test not completed: {e}"),
            }
        }
    })
    .await;
}

async fn sink_one(
    tcp: TcpStream,
    agent: &Agent,
    trust: &Trust,
) -> Result<(trellis_proto::SpiffeId, Measured), SpeedTestError> {
    let snapshot = trust.snapshot().ok_or(SpeedTestError::NoConfig)?;
    let (me, bundle) = tls_material(agent, &snapshot)?;
    let mut config =
        (*server_config(&me, &bundle).map_err(|e| SpeedTestError::Tls(e.to_string()))?).clone();
    config.alpn_protocols = vec![ALPN.to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let addr = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| SpeedTestError::ConnectTimeout(addr.clone()))?
        .map_err(|source| SpeedTestError::Handshake {
            addr: addr.clone(),
            source,
        })?;
    let peer =
        peer_identity(tls.get_ref().1, &bundle).map_err(|e| SpeedTestError::Tls(e.to_string()))?;
    if peer.node_name().is_none() {
        return Err(SpeedTestError::Tls(format!(
            "{peer} is not a router of the home; only routers run speed tests"
        )));
    }
    let mut header = [0u8; 12];
    tokio::time::timeout(CONNECT_TIMEOUT, tls.read_exact(&mut header))
        .await
        .map_err(|_| SpeedTestError::NoAnswer(CONNECT_TIMEOUT))??;
    if &header[..8] != MAGIC {
        return Err(SpeedTestError::Tls("not a speed test header".into()));
    }
    let seconds = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(SpeedTestError::Tls(format!(
            "a {seconds}-second test is not allowed (1 to {MAX_SECONDS})"
        )));
    }
    // The sender stops on its own; the deadline only guards against one that never does.
    let deadline = Duration::from_secs(u64::from(seconds) + 5);
    let mut buf = vec![0u8; BUF];
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let counting = async {
        loop {
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            bytes += n as u64;
        }
    };
    // Past the deadline the count so far stands.
    if let Ok(r) = tokio::time::timeout(deadline, counting).await {
        r?;
    }
    let millis = first
        .map(|f| last.duration_since(f).as_millis() as u64)
        .unwrap_or(0)
        .max(1);
    let m = Measured { bytes, millis };
    let mut answer = [0u8; 16];
    answer[..8].copy_from_slice(&m.bytes.to_be_bytes());
    answer[8..].copy_from_slice(&m.millis.to_be_bytes());
    tls.write_all(&answer).await?;
    tls.shutdown().await?;
    Ok((peer, m))
}

/// Send to the sink of `job` for its seconds; what the sink counted.
pub async fn send(
    agent: &Agent,
    snapshot: &ConfigSnapshot,
    job: &SpeedTestJob,
) -> Result<Measured, SpeedTestError> {
    let seconds = job.seconds.clamp(1, MAX_SECONDS);
    let (me, bundle) = tls_material(agent, snapshot)?;
    let mut config = (*client_config(&me, Arc::new(bundle), job.to_identity.clone())
        .map_err(|e| SpeedTestError::Tls(e.to_string()))?)
    .clone();
    config.alpn_protocols = vec![ALPN.to_vec()];
    let addr = job.to_addr.clone();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| SpeedTestError::ConnectTimeout(addr.clone()))?
        .map_err(|source| SpeedTestError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(sni(), tcp)
        .await
        .map_err(|source| SpeedTestError::Handshake {
            addr: addr.clone(),
            source,
        })?;
    let mut header = [0u8; 12];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&seconds.to_be_bytes());
    tls.write_all(&header).await?;
    let chunk = vec![0x5au8; BUF];
    let until = Instant::now() + Duration::from_secs(u64::from(seconds));
    while Instant::now() < until {
        tls.write_all(&chunk).await?;
    }
    tls.flush().await?;
    // close_notify and FIN: the sink's count ends here.
    tls.shutdown().await?;
    let mut answer = [0u8; 16];
    tokio::time::timeout(ANSWER_TIMEOUT, tls.read_exact(&mut answer))
        .await
        .map_err(|_| SpeedTestError::NoAnswer(ANSWER_TIMEOUT))??;
    let bytes = u64::from_be_bytes(answer[..8].try_into().unwrap_or_default());
    let millis = u64::from_be_bytes(answer[8..].try_into().unwrap_or_default());
    Ok(Measured { bytes, millis })
}

/// Take speed tests from the controller, run them, report each; for as long as the agent runs.
pub async fn follow_jobs(agent: Agent, trust: Trust) {
    loop {
        let job = match agent.next_job(POLL_WAIT_S).await {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!("speed test poll: {e}");
                tokio::time::sleep(POLL_RETRY).await;
                continue;
            }
        };
        tracing::info!(id = job.id, to = %job.to, addr = %job.to_addr, seconds = job.seconds, "speed test starting");
        let result = match trust.snapshot() {
            Some(snapshot) => send(&agent, &snapshot, &job).await,
            None => Err(SpeedTestError::NoConfig),
        };
        let outcome = match result {
            Ok(m) => {
                tracing::info!(
                    id = job.id,
                    to = %job.to,
                    mbit_s = m.bits_per_second() / 1_000_000,
                    "speed test done"
                );
                SpeedTestOutcome {
                    id: job.id,
                    bytes: Some(m.bytes),
                    millis: Some(m.millis),
                    error: None,
                }
            }
            Err(e) => {
                tracing::warn!(id = job.id, to = %job.to, "speed test failed: {e}");
                SpeedTestOutcome {
                    id: job.id,
                    bytes: None,
                    millis: None,
                    error: Some(e.to_string()),
                }
            }
        };
        if let Err(e) = agent.report_job(&outcome).await {
            tracing::warn!(id = job.id, "could not report the speed test: {e}");
        }
    }
}

/// Start the sink and the job follower; the caller keeps the tasks. The sink is announced at
/// `advertise` (default: the listener's own address, or the one used towards the controller).
pub async fn start(
    listen: SocketAddr,
    advertise: Option<std::net::IpAddr>,
    agent: &Agent,
    trust: &Trust,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "speed-test sink listening");
    let advertised = match advertise.or_else(|| (!bound.ip().is_unspecified()).then(|| bound.ip()))
    {
        Some(ip) => Some(ip),
        None => agent.local_address_towards_controller().await,
    }
    .map(|ip| SocketAddr::new(ip, bound.port()));
    let (agent, trust) = (agent.clone(), trust.clone());
    Ok(vec![tokio::spawn(async move {
        // The sink needs the home's trust bundle: announce it once a config is known, so no
        // test is sent to a sink that would refuse it.
        if trust.clone().wait_for_version(1).await.is_none() {
            return;
        }
        tracing::debug!(addr = ?advertised, "announcing the speed-test sink");
        // The report task announces it at once (and retries while the controller is away).
        agent
            .published
            .speedtest_addr
            .publish(advertised.map(|a| a.to_string()));
        tokio::join!(
            serve_sink(listener, agent.clone(), trust.clone()),
            follow_jobs(agent, trust)
        );
    })])
}
