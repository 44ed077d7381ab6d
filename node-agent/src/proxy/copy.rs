//! The byte pump between a client and a tunnel, with buffers that grow only under load.
//!
//! Each direction starts with a [`SMALL`] buffer (most home traffic — MQTT, a thermostat, a
//! printer status page — never fills it). After [`GROW_AFTER`] reads in a row that fill the
//! buffer, it grows to [`MEDIUM`] and then [`LARGE`] (4 → 16 → 256 KiB, ztunnel's ladder is
//! 1 → 16 → 256 KiB). Large buffers come from a process-wide [`BufferBudget`] (16 of them by
//! default: 4 MiB, the same cap as the 64 × 64 KiB it replaced): when it is spent, a busy
//! connection keeps its medium buffer instead of growing, so memory stays bounded however many
//! bulk streams run at once. 256 KiB reads instead of 64 KiB moved a single iperf3 stream
//! ~25 % faster through two one-core routers (`cargo xtask bench`): each read is one socket
//! call, one h2 frame and one wakeup of the tunnel's connection task.
//! Buffers never shrink during a connection; they go back to the allocator when it closes.
//!
//! Between a TCP socket and an HTTP/2 tunnel stream, [`tunnel`] moves `Bytes` instead of
//! copying: what is read from the socket is frozen and handed to h2 as it is, and what h2
//! received is written to the socket from h2's own buffer. A generic byte copy into a tunnel
//! costs a fresh allocation and a memcpy per read; measured under iperf3 on a one-core router,
//! allocator churn (page faults, `madvise`) took ~25 % of the sending proxy's CPU.

use std::sync::atomic::Ordering;

use portable_atomic::AtomicU64;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::h2stream::{h2_io, H2Stream};
use crate::metrics::{ConnLabels, Metrics};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const SMALL: usize = 4 * 1024;
pub const MEDIUM: usize = 16 * 1024;
pub const LARGE: usize = 256 * 1024;
/// Full reads in a row before growing: one full read is often just a burst.
pub const GROW_AFTER: u32 = 4;

/// How many [`LARGE`] buffers the whole proxy may hold at once.
#[derive(Debug, Clone)]
pub struct BufferBudget(Arc<Semaphore>);

impl BufferBudget {
    pub fn new(large_buffers: usize) -> Self {
        Self(Arc::new(Semaphore::new(large_buffers)))
    }
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
    /// One large buffer's worth, if the budget has it.
    pub fn permit(&self) -> Result<OwnedSemaphorePermit, tokio::sync::TryAcquireError> {
        self.0.clone().try_acquire_owned()
    }
}

/// Byte counts of one connection, readable while it runs.
#[derive(Debug, Default)]
pub struct Transferred {
    /// Client → upstream.
    pub sent: AtomicU64,
    /// Upstream → client.
    pub received: AtomicU64,
}

/// How often a running connection's byte counts move into the metrics.
pub const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Run `copy` (which updates `counts`) and move the counts into `metrics` as they grow:
/// every [`COUNT_EVERY`] while it runs, and the rest when it ends. A video stream or a backup
/// then shows on the traffic charts while it runs, not only once it closes.
pub async fn reporting<F: std::future::Future>(
    copy: F,
    counts: &Transferred,
    metrics: &Metrics,
    labels: &ConnLabels,
) -> F::Output {
    let mut reported = (0u64, 0u64);
    let mut report = || {
        let now = (
            counts.sent.load(Ordering::Relaxed),
            counts.received.load(Ordering::Relaxed),
        );
        metrics.add_bytes(labels, now.0 - reported.0, now.1 - reported.1);
        reported = now;
    };
    tokio::pin!(copy);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + COUNT_EVERY, COUNT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let out = loop {
        tokio::select! {
            out = &mut copy => break out,
            _ = tick.tick() => report(),
        }
    };
    report();
    out
}

/// Copy one direction until EOF, then shut the writer down (half-close, so protocols that
/// send a request and then close their side still get the answer). Returns the buffer size
/// reached.
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    budget: BufferBudget,
    count: &AtomicU64,
) -> std::io::Result<usize>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; SMALL];
    let mut full_in_a_row = 0u32;
    let mut _large: Option<OwnedSemaphorePermit> = None;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        if n == buf.len() {
            full_in_a_row += 1;
            if full_in_a_row >= GROW_AFTER {
                full_in_a_row = 0;
                if buf.len() == SMALL {
                    buf.resize(MEDIUM, 0);
                } else if buf.len() == MEDIUM {
                    if let Ok(p) = budget.permit() {
                        _large = Some(p);
                        buf.resize(LARGE, 0);
                    }
                }
            }
        } else {
            full_in_a_row = 0;
        }
    }
    w.shutdown().await?;
    Ok(buf.len())
}

/// Copy both ways until both sides are done. Returns (client → upstream, upstream → client).
pub async fn bidirectional<A, B>(
    client: A,
    upstream: B,
    budget: &BufferBudget,
    counts: &Transferred,
) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let up = pump(cr, uw, budget.clone(), &counts.sent);
    let down = pump(ur, cw, budget.clone(), &counts.received);
    // Either side failing (reset) ends the connection: the other direction has nowhere to go.
    tokio::try_join!(up, down)?;
    Ok((
        counts.sent.load(Ordering::Relaxed),
        counts.received.load(Ordering::Relaxed),
    ))
}

/// Which end of the proxied connection the TCP socket is, so the counts keep their meaning
/// (`sent` is always client → service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpSide {
    /// The intercepted client (outbound proxy).
    Client,
    /// The device behind this node (inbound proxy's last hop).
    Service,
}

/// Copy both ways between a TCP socket and a tunnel stream until both sides are done, with
/// half-close (TCP EOF → END_STREAM, END_STREAM → TCP shutdown). Returns (client → service,
/// service → client).
pub async fn tunnel<T>(
    tcp: T,
    stream: H2Stream,
    side: TcpSide,
    budget: &BufferBudget,
    counts: &Transferred,
) -> std::io::Result<(u64, u64)>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (tr, tw) = tokio::io::split(tcp);
    let (send, recv, pending) = stream.into_parts();
    let (into_tunnel, out_of_tunnel) = match side {
        TcpSide::Client => (&counts.sent, &counts.received),
        TcpSide::Service => (&counts.received, &counts.sent),
    };
    let up = tcp_to_h2(tr, send, budget.clone(), into_tunnel);
    let down = h2_to_tcp(recv, pending, tw, out_of_tunnel);
    tokio::try_join!(up, down)?;
    Ok((
        counts.sent.load(Ordering::Relaxed),
        counts.received.load(Ordering::Relaxed),
    ))
}

/// Socket → tunnel: read into a `BytesMut`, hand the filled part to h2 frozen (no copy).
/// The buffer's spare room takes the next read; once h2 has written and dropped earlier
/// chunks, `reserve` reuses the same allocation. Growth as in [`pump`].
async fn tcp_to_h2<R>(
    mut r: R,
    mut send: SendStream<Bytes>,
    budget: BufferBudget,
    count: &AtomicU64,
) -> std::io::Result<usize>
where
    R: AsyncRead + Unpin,
{
    let mut size = SMALL;
    let mut buf = BytesMut::with_capacity(size);
    let mut full_in_a_row = 0u32;
    let mut _large: Option<OwnedSemaphorePermit> = None;
    loop {
        if buf.capacity() < size / 2 {
            buf.reserve(size);
        }
        let room = (buf.capacity() - buf.len()).min(size);
        let n = (&mut r).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
        send_all(&mut send, buf.split().freeze()).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        if n == room && room == size {
            full_in_a_row += 1;
            if full_in_a_row >= GROW_AFTER {
                full_in_a_row = 0;
                if size == SMALL {
                    size = MEDIUM;
                } else if size == MEDIUM {
                    if let Ok(p) = budget.permit() {
                        _large = Some(p);
                        size = LARGE;
                    }
                }
            }
        } else if n < room {
            full_in_a_row = 0;
        }
    }
    // END_STREAM: the peer sees EOF (TCP half-close across the tunnel).
    send.send_data(Bytes::new(), true).map_err(h2_io)?;
    Ok(size)
}

/// Give h2 a chunk, in pieces as the stream's send capacity allows (slices of the same
/// buffer, not copies). h2 buffers at most `max_send_buffer_size` per stream.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> std::io::Result<()> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let cap = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            None => return Err(std::io::ErrorKind::BrokenPipe.into()),
            Some(Err(e)) => return Err(h2_io(e)),
            Some(Ok(cap)) => cap,
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, false).map_err(h2_io)?;
    }
    Ok(())
}

/// Tunnel → socket: write each received chunk straight from h2's buffer.
async fn h2_to_tcp<W>(
    mut recv: RecvStream,
    pending: Bytes,
    mut w: W,
    count: &AtomicU64,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if !pending.is_empty() {
        w.write_all(&pending).await?;
        count.fetch_add(pending.len() as u64, Ordering::Relaxed);
    }
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(h2_io)?;
        // The chunk now lives here, not in h2's buffer: give the window back.
        let _ = recv.flow_control().release_capacity(chunk.len());
        w.write_all(&chunk).await?;
        count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    w.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_half_closes() {
        let (mut client, proxy_client) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let budget = BufferBudget::new(1);
        let counts = Arc::new(Transferred::default());
        let c2 = counts.clone();
        let task =
            tokio::spawn(async move { bidirectional(proxy_client, proxy_up, &budget, &c2).await });
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        server.write_all(b"pong!").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong!");
        assert_eq!(task.await.unwrap().unwrap(), (4, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_connection_counts_its_bytes_while_it_runs() {
        let (mut client, proxy_client) = tokio::io::duplex(64 * 1024);
        let (proxy_up, mut server) = tokio::io::duplex(64 * 1024);
        let metrics = Arc::new(Metrics::new());
        let labels = ConnLabels {
            direction: "outbound",
            source_identity: "device:laptop".into(),
            destination_identity: "spiffe://h/svc/tv".into(),
            destination_service: "tv".into(),
        };
        let (m2, l2) = (metrics.clone(), labels.clone());
        let task = tokio::spawn(async move {
            let budget = BufferBudget::new(1);
            let counts = Transferred::default();
            reporting(
                bidirectional(proxy_client, proxy_up, &budget, &counts),
                &counts,
                &m2,
                &l2,
            )
            .await
        });
        let received = |m: &Metrics| m.service_traffic().first().map_or(0, |t| t.bytes_received);
        // A stream: 40 KB down, the connection stays open.
        server.write_all(&[7u8; 40_000]).await.unwrap();
        let mut got = vec![0u8; 40_000];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(received(&metrics), 0, "not reported before the first tick");
        tokio::time::sleep(COUNT_EVERY + std::time::Duration::from_millis(10)).await;
        assert_eq!(
            received(&metrics),
            40_000,
            "counted while the connection is open"
        );
        // The rest when it ends, counted once.
        server.write_all(&[7u8; 1_000]).await.unwrap();
        server.shutdown().await.unwrap();
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), (0, 41_000));
        assert_eq!(received(&metrics), 41_000);
    }

    /// Push `len` bytes through one pump (writer and reader concurrently); the buffer size
    /// the pump reached.
    async fn pump_size(len: usize, budget: &BufferBudget) -> usize {
        let (mut tx, rx) = tokio::io::duplex(LARGE * 2);
        let (wx, mut sink) = tokio::io::duplex(LARGE * 2);
        let w = tokio::spawn(async move {
            tx.write_all(&vec![7u8; len]).await.unwrap();
            tx.shutdown().await.unwrap();
        });
        let r = tokio::spawn(async move {
            let mut got = Vec::new();
            sink.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        let count = AtomicU64::new(0);
        let size = pump(rx, wx, budget.clone(), &count).await.unwrap();
        w.await.unwrap();
        assert_eq!(r.await.unwrap(), len);
        assert_eq!(count.load(Ordering::Relaxed), len as u64);
        size
    }

    #[tokio::test]
    async fn buffers_grow_under_load_only_within_the_budget() {
        let budget = BufferBudget::new(1);
        // A chatty small exchange never grows the buffer.
        assert_eq!(pump_size(100, &budget).await, SMALL);
        // Bulk grows it to the top, taking the one large-buffer permit, returned at the end.
        assert_eq!(pump_size(4 << 20, &budget).await, LARGE);
        assert_eq!(budget.available(), 1);
        // With the budget spent elsewhere, bulk stops at the medium size.
        let spent = BufferBudget::new(0);
        assert_eq!(pump_size(4 << 20, &spent).await, MEDIUM);
    }

    /// A real HTTP/2 stream over an in-memory pipe: the server side runs [`tunnel`] to a
    /// "device" that echoes; the client writes 4 MiB, half-closes, reads it all back.
    #[tokio::test]
    async fn tunnel_moves_bulk_both_ways_and_half_closes() {
        let (c_io, s_io) = tokio::io::duplex(256 * 1024);
        let (dev_proxy, mut device) = tokio::io::duplex(256 * 1024);
        let budget = BufferBudget::new(1);
        let counts = Arc::new(Transferred::default());
        let (b2, c2) = (budget.clone(), counts.clone());
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(s_io).await.unwrap();
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            let stream = H2Stream::new(send, req.into_body());
            tunnel(dev_proxy, stream, TcpSide::Service, &b2, &c2).await
        });
        // The device echoes everything, then closes when the client's side has.
        let echo = tokio::spawn(async move {
            let mut all = Vec::new();
            device.read_to_end(&mut all).await.unwrap();
            device.write_all(&all).await.unwrap();
            device.shutdown().await.unwrap();
        });
        let (client, conn) = h2::client::handshake(c_io).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri("svc:80")
            .body(())
            .unwrap();
        let (resp, send) = client.send_request(req, false).unwrap();
        let body = resp.await.unwrap().into_body();
        let mut s = H2Stream::new(send, body);
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (mut rd, mut wr) = tokio::io::split(&mut s);
        let expected = data.clone();
        let write = async move {
            wr.write_all(&data).await.unwrap();
            wr.shutdown().await.unwrap();
        };
        let read = async move {
            let mut back = Vec::new();
            rd.read_to_end(&mut back).await.unwrap();
            back
        };
        let ((), back) = tokio::join!(write, read);
        assert!(back == expected, "echo came back intact");
        echo.await.unwrap();
        let (sent, received) = server.await.unwrap().unwrap();
        assert_eq!((sent, received), (4 << 20, 4 << 20));
        assert_eq!(budget.available(), 1, "the large buffer went back");
    }
}
