//! The byte pump between a client and a tunnel, with buffers that grow only under load.
//!
//! Each direction starts with a [`SMALL`] buffer (most home traffic — MQTT, a thermostat, a
//! printer status page — never fills it). After [`GROW_AFTER`] reads in a row that fill the
//! buffer, it grows to [`MEDIUM`] and then [`LARGE`], like ztunnel's 1 → 16 → 256 KiB ladder,
//! with a lower top because a router has 64–256 MB of RAM. Large buffers come from a
//! process-wide [`BufferBudget`]: when it is spent, a busy connection keeps its medium buffer
//! instead of growing, so memory stays bounded however many bulk streams run at once.
//! Buffers never shrink during a connection; they go back to the allocator when it closes.

use std::sync::atomic::Ordering;

use portable_atomic::AtomicU64;
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
}
