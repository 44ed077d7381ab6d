//! The byte pump between a client and a tunnel, with buffers that grow only under load.
//!
//! Each direction starts with a [`SMALL`] buffer (most home traffic — MQTT, a thermostat, a
//! printer status page — never fills it). After [`GROW_AFTER`] reads in a row that fill the
//! buffer, it grows to [`MEDIUM`] and then [`LARGE`], like ztunnel's 1 → 16 → 256 KiB ladder,
//! with a lower top because a router has 64–256 MB of RAM. Large buffers come from a
//! process-wide [`BufferBudget`]: when it is spent, a busy connection keeps its medium buffer
//! instead of growing, so memory stays bounded however many bulk streams run at once.
//! Buffers never shrink during a connection; they go back to the allocator when it closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const SMALL: usize = 4 * 1024;
pub const MEDIUM: usize = 16 * 1024;
pub const LARGE: usize = 64 * 1024;
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
}

/// Byte counts of one connection, readable while it runs.
#[derive(Debug, Default)]
pub struct Transferred {
    /// Client → upstream.
    pub sent: AtomicU64,
    /// Upstream → client.
    pub received: AtomicU64,
}

/// Copy one direction until EOF, then shut the writer down (half-close, so protocols that
/// send a request and then close their side still get the answer).
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    budget: BufferBudget,
    count: &AtomicU64,
) -> std::io::Result<()>
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
                    if let Ok(p) = budget.0.clone().try_acquire_owned() {
                        _large = Some(p);
                        buf.resize(LARGE, 0);
                    }
                }
            }
        } else {
            full_in_a_row = 0;
        }
    }
    w.shutdown().await
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

    #[tokio::test]
    async fn buffers_grow_under_load_only_within_the_budget() {
        // 2 MiB through a pump with a budget of one large buffer: the first pump takes it;
        // a second concurrent pump must leave the budget at zero, not go below.
        let budget = BufferBudget::new(1);
        let data = vec![7u8; 2 * 1024 * 1024];
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (mut tx, rx) = tokio::io::duplex(LARGE * 2);
            let (wx, mut sink) = tokio::io::duplex(LARGE * 2);
            let b = budget.clone();
            let d = data.clone();
            let counter = Arc::new(AtomicU64::new(0));
            let c2 = counter.clone();
            tasks.push(tokio::spawn(async move {
                let w = tokio::spawn(async move {
                    tx.write_all(&d).await.unwrap();
                    tx.shutdown().await.unwrap();
                });
                let r = tokio::spawn(async move {
                    let mut n = 0usize;
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let k = sink.read(&mut buf).await.unwrap();
                        if k == 0 {
                            break n;
                        }
                        n += k;
                    }
                });
                pump(rx, wx, b, &c2).await.unwrap();
                w.await.unwrap();
                (r.await.unwrap(), counter.load(Ordering::Relaxed))
            }));
        }
        for t in tasks {
            let (read, counted) = t.await.unwrap();
            assert_eq!(read, 2 * 1024 * 1024);
            assert_eq!(counted, 2 * 1024 * 1024);
        }
        // Permits come back when pumps end.
        assert_eq!(budget.available(), 1);
    }
}
