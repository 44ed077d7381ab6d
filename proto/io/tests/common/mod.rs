//! What the accept-loop tests share: a captured log, a listener whose connections say "+"
//! when admitted and stay open until the client closes, and clients from chosen 127.x
//! addresses.

#![allow(dead_code)] // each test binary uses its own part

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use trellis_io::{Gate, Limits};

/// Every log line the process writes, for counting.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Capture the whole process's log (one capture per test binary).
    pub fn install() -> Log {
        let log = Log::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        log
    }

    pub fn lines_with(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// Start the accept loop on 127.0.0.1 with `limits`: an admitted connection gets "+" and is
/// held until its client closes it.
pub async fn holding_listener(name: &'static str, limits: Limits) -> (SocketAddr, Arc<Gate>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Gate::new(name, limits);
    tokio::spawn(trellis_io::serve(
        listener,
        gate.clone(),
        |mut tcp, _, ticket| async move {
            let _ticket = ticket;
            if tcp.write_all(b"+").await.is_ok() {
                let mut sink = [0u8; 64];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        },
    ));
    (addr, gate)
}

/// A TCP connection to `to` from 127.0.0.`from`.
pub async fn connect_from(from: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0)))?;
    s.connect(to).await
}

/// Whether the listener admitted this connection: "+" arrives, or it was reset / closed.
pub async fn admitted(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
        .await
        .expect("the listener answers a connection at once, one way or the other");
    matches!(got, Ok(1) if b[0] == b'+')
}
