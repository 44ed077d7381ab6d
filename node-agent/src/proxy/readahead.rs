//! Read-ahead under the tunnels' TLS: one large socket read instead of many small ones.
//!
//! rustls pulls ciphertext from the socket 4 KiB at a time (`READ_SIZE` in its deframer), so
//! a tunnel receiving bulk data makes four `recvmsg` calls per 16 KiB record. [`ReadAhead`]
//! starts out passing reads straight through (no buffer, nothing held by an idle tunnel);
//! after [`GROW_AFTER`] reads in a row that filled what rustls asked for, it takes a
//! [`BUFFER`]-sized buffer from the proxy's large-buffer budget and serves rustls from it, one
//! socket read per 64 KiB. When traffic calms down (reads come back short) the buffer goes
//! back to the budget. Writes pass straight through.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::copy::BufferBudget;

/// The read-ahead buffer (it takes one of the budget's large-buffer permits).
pub const BUFFER: usize = 64 * 1024;
/// Full pass-through reads in a row before taking a buffer.
pub const GROW_AFTER: u32 = 4;
/// Buffered reads in a row that bring less than an eighth of the buffer before giving it back.
pub const SHRINK_AFTER: u32 = 16;

pub struct ReadAhead<S> {
    io: S,
    budget: BufferBudget,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    _permit: Option<OwnedSemaphorePermit>,
    full_in_a_row: u32,
    short_in_a_row: u32,
}

impl<S> ReadAhead<S> {
    pub fn new(io: S, budget: BufferBudget) -> Self {
        Self {
            io,
            budget,
            buf: Vec::new(),
            start: 0,
            end: 0,
            _permit: None,
            full_in_a_row: 0,
            short_in_a_row: 0,
        }
    }

    /// Whether reads go through the buffer now.
    pub fn buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.start < this.end {
            let n = (this.end - this.start).min(out.remaining());
            out.put_slice(&this.buf[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        if this.buf.is_empty() {
            // Pass-through: read straight into the caller's buffer.
            let wanted = out.remaining();
            let before = out.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
            let n = out.filled().len() - before;
            if n > 0 && n == wanted {
                this.full_in_a_row += 1;
                if this.full_in_a_row >= GROW_AFTER {
                    this.full_in_a_row = 0;
                    if let Ok(p) = this.budget.permit() {
                        this._permit = Some(p);
                        this.buf = vec![0u8; BUFFER];
                        this.short_in_a_row = 0;
                    }
                }
            } else {
                this.full_in_a_row = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // Buffered: one large read, then serve from it.
        let mut rb = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        this.start = 0;
        this.end = n;
        if n < BUFFER / 8 {
            this.short_in_a_row += 1;
        } else {
            this.short_in_a_row = 0;
        }
        let give = n.min(out.remaining());
        out.put_slice(&this.buf[..give]);
        this.start = give;
        if this.start == this.end && this.short_in_a_row >= SHRINK_AFTER {
            // Quiet again: back to pass-through, the buffer back to the budget.
            this.buf = Vec::new();
            this._permit = None;
            this.start = 0;
            this.end = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bulk_takes_a_buffer_from_the_budget_and_quiet_gives_it_back() {
        let budget = BufferBudget::new(1);
        let (mut tx, rx) = tokio::io::duplex(4 * BUFFER);
        let mut r = ReadAhead::new(rx, budget.clone());
        // Bulk: the writer keeps the pipe full, every 4 KiB read is a full one.
        let data: Vec<u8> = (0..2 * BUFFER).map(|i| i as u8).collect();
        tx.write_all(&data).await.unwrap();
        let mut got = vec![0u8; data.len()];
        for chunk in got.chunks_mut(4096) {
            r.read_exact(chunk).await.unwrap();
        }
        assert_eq!(got, data, "bytes arrive intact and in order");
        assert!(r.buffered(), "bulk switched to read-ahead");
        assert_eq!(budget.available(), 0, "the buffer came from the budget");
        // Chatty: small messages, each read short; the buffer goes back.
        for i in 0..SHRINK_AFTER + 1 {
            tx.write_all(&[i as u8; 10]).await.unwrap();
            let mut m = [0u8; 10];
            r.read_exact(&mut m).await.unwrap();
            assert_eq!(m, [i as u8; 10]);
        }
        assert!(!r.buffered(), "quiet traffic went back to pass-through");
        assert_eq!(budget.available(), 1);
        // EOF passes through.
        drop(tx);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn no_buffer_without_budget() {
        let budget = BufferBudget::new(0);
        let (mut tx, rx) = tokio::io::duplex(4 * BUFFER);
        let mut r = ReadAhead::new(rx, budget);
        tx.write_all(&vec![1u8; BUFFER]).await.unwrap();
        let mut got = vec![0u8; BUFFER];
        for chunk in got.chunks_mut(1024) {
            r.read_exact(chunk).await.unwrap();
        }
        assert!(!r.buffered());
        assert!(got.iter().all(|b| *b == 1));
    }
}
