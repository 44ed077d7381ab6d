//! One HTTP/2 CONNECT stream as a byte stream (`AsyncRead + AsyncWrite`), so the same copy
//! loop serves TCP and tunnel sides.
//!
//! Memory stays bounded by HTTP/2 flow control: the peer can have at most the stream window
//! ([`STREAM_WINDOW`]) in flight towards us, and we release window only as the copy loop
//! takes data; on the send side h2 buffers at most `max_send_buffer_size` per stream.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per-stream receive window: 1 MiB keeps a 1 ms mesh hop busy at ~1 GB/s.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// Per-connection receive window: what all streams of one tunnel may have in flight.
pub const CONNECTION_WINDOW: u32 = 4 << 20;
/// Largest DATA frame: big frames cost less per byte (measured: 16 KiB frames move ~30 %
/// less than 1 MiB frames in the framing bench); 256 KiB keeps one frame's latency small.
pub const MAX_FRAME: u32 = 256 << 10;
/// Streams per tunnel connection before another connection is dialled (ztunnel uses 100).
pub const STREAMS_PER_CONNECTION: u32 = 100;
/// Bytes h2 may buffer per stream waiting for send window.
pub const SEND_BUFFER: usize = 256 << 10;

pub(crate) fn h2_io(e: h2::Error) -> std::io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| std::io::Error::other("h2 I/O error"))
    } else {
        std::io::Error::new(std::io::ErrorKind::ConnectionReset, e)
    }
}

/// A CONNECT stream's two halves.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    shut: bool,
}

impl H2Stream {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            pending: Bytes::new(),
            shut: false,
        }
    }

    /// The two halves and what was received but not yet read, for a copy loop that hands
    /// `Bytes` to h2 and takes them from it without copying (`copy::tunnel`).
    pub fn into_parts(self) -> (SendStream<Bytes>, RecvStream, Bytes) {
        (self.send, self.recv, self.pending)
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())), // end of stream
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                Some(Ok(chunk)) => {
                    // The chunk now lives here, not in h2's buffer: give the window back.
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    self.pending = chunk;
                }
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        let cap = match ready!(self.send.poll_capacity(cx)) {
            None => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
            Some(Ok(cap)) => cap,
        };
        let n = cap.min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // h2's connection task writes frames out as soon as it can.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.shut {
            self.shut = true;
            // END_STREAM: the peer sees EOF on its side (TCP half-close across the tunnel).
            self.send.send_data(Bytes::new(), true).map_err(h2_io)?;
        }
        Poll::Ready(Ok(()))
    }
}
