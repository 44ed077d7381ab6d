//! The control socket of wpa_supplicant and hostapd: one protocol (`wpa_ctrl`, what `wpa_cli`
//! and `hostapd_cli` speak), so one client for both.
//!
//! The daemon listens on a Unix datagram socket named after the interface (`/run/wpa_supplicant/
//! mesh0`, `/var/run/hostapd/wlan0`); a client binds its own socket, sends a command and reads
//! one reply. After `ATTACH` the same socket also receives events, which start with `<level>`;
//! a reply never does, so each side skips the other's datagrams. Replies fit in 4 KiB (the
//! buffer of `wpa_cli`), and every wait is bounded. What the daemon says is parsed by the
//! caller ([`crate::sae`] for wpa_supplicant, the agent's access points for hostapd).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixDatagram;

/// The longest reply or event read (wpa_cli's and hostapd_cli's buffer).
pub const CTRL_BUF: usize = 4096;
/// How long a command may wait for its reply.
pub const CTRL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum CtrlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: no answer to {command} within {CTRL_TIMEOUT:?}")]
    Timeout { path: PathBuf, command: String },
    #[error("control socket {path}: {command} answered {reply:?}")]
    Refused {
        path: PathBuf,
        command: String,
        reply: String,
    },
}

/// A client of one control socket; its own socket file is removed on drop.
pub struct CtrlSocket {
    sock: UnixDatagram,
    local: PathBuf,
    remote: PathBuf,
}

impl CtrlSocket {
    /// Connects to `remote`. Retries for up to `patience`, because a daemon creates its socket
    /// a moment after it starts (zero: one try).
    pub async fn connect(remote: &Path, patience: Duration) -> Result<Self, CtrlError> {
        let io = |source| CtrlError::Io {
            path: remote.to_path_buf(),
            source,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let local = local_socket_path();
            let _ = std::fs::remove_file(&local);
            let sock = UnixDatagram::bind(&local).map_err(io)?;
            match sock.connect(remote) {
                Ok(()) => {
                    return Ok(Self {
                        sock,
                        local,
                        remote: remote.to_path_buf(),
                    })
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = std::fs::remove_file(&local);
                    tracing::debug!(error = %e, path = %remote.display(), "control socket not there yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&local);
                    return Err(io(e));
                }
            }
        }
    }

    /// The daemon's socket this client talks to.
    pub fn path(&self) -> &Path {
        &self.remote
    }

    /// Sends a command and returns its reply; events arriving meanwhile are skipped.
    pub async fn request(&self, command: &str) -> Result<String, CtrlError> {
        self.sock
            .send(command.as_bytes())
            .await
            .map_err(|source| self.io(source))?;
        let mut buf = vec![0u8; CTRL_BUF];
        let deadline = tokio::time::Instant::now() + CTRL_TIMEOUT;
        loop {
            let n = tokio::time::timeout_at(deadline, self.sock.recv(&mut buf))
                .await
                .map_err(|_| CtrlError::Timeout {
                    path: self.remote.clone(),
                    command: verb(command).to_owned(),
                })?
                .map_err(|source| self.io(source))?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with('<') {
                return Ok(text);
            }
        }
    }

    /// A command whose only good answer is `OK`.
    pub async fn ok(&self, command: &str) -> Result<(), CtrlError> {
        let reply = self.request(command).await?;
        if reply.trim() == "OK" {
            return Ok(());
        }
        Err(CtrlError::Refused {
            path: self.remote.clone(),
            command: verb(command).to_owned(),
            reply: reply.trim().chars().take(80).collect(),
        })
    }

    /// `ATTACH`: from now on this socket also receives events.
    pub async fn attach(&self) -> Result<(), CtrlError> {
        self.ok("ATTACH").await
    }

    /// The next event on an attached socket (`<level>` and its text); late replies skipped.
    pub async fn next_event(&self) -> Result<String, CtrlError> {
        let mut buf = vec![0u8; CTRL_BUF];
        loop {
            let n = self
                .sock
                .recv(&mut buf)
                .await
                .map_err(|source| self.io(source))?;
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with('<') {
                return Ok(text.into_owned());
            }
        }
    }

    fn io(&self, source: std::io::Error) -> CtrlError {
        CtrlError::Io {
            path: self.remote.clone(),
            source,
        }
    }
}

impl Drop for CtrlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
    }
}

/// The command's first word, for errors (never its arguments: a `SET` may carry a key).
fn verb(command: &str) -> &str {
    command.split(' ').next().unwrap_or("")
}

fn local_socket_path() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("trellis-ctrl-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_and_events_are_told_apart_and_refusals_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wlan0");
        let server = UnixDatagram::bind(&path).expect("bind");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            for _ in 0..3 {
                let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                let from = from.as_pathname().expect("named client").to_path_buf();
                // An event that races the reply must not be taken for it.
                server
                    .send_to(b"<3>AP-STA-CONNECTED 02:00:00:00:00:01", &from)
                    .await
                    .expect("event");
                let reply: &[u8] = match &buf[..n] {
                    b"PING" => b"PONG\n",
                    b"ATTACH" => b"OK\n",
                    _ => b"FAIL\n",
                };
                server.send_to(reply, &from).await.expect("send");
            }
        });
        let ctrl = CtrlSocket::connect(&path, Duration::ZERO)
            .await
            .expect("connect");
        assert_eq!(ctrl.request("PING").await.expect("ping"), "PONG\n");
        ctrl.attach().await.expect("attach");
        let refused = ctrl.ok("SET secret-key 123").await.expect_err("FAIL");
        let said = refused.to_string();
        assert!(said.contains("SET answered \"FAIL\""), "{said}");
        assert!(
            !said.contains("secret-key"),
            "arguments stay out of errors: {said}"
        );
        task.await.expect("server");
    }

    #[tokio::test]
    async fn a_missing_daemon_is_an_error_naming_its_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nobody");
        let err = CtrlSocket::connect(&path, Duration::ZERO)
            .await
            .err()
            .expect("no daemon");
        assert!(err.to_string().contains("nobody"), "{err}");
    }
}
