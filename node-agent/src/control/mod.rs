//! The agent's side of the control plane: the mTLS client of the controller's agent API,
//! following the config snapshot (long poll, acknowledge, persist, fail static), renewing
//! the node certificate, and reporting telemetry.
//!
//! Entry point: [`Agent::start`]; the data plane reads [`Trust`] to decide which peers to
//! accept.

pub mod address;
pub mod tls;

mod agent;
pub mod telemetry;
mod trust;

pub use agent::{Agent, AgentHandle, Hops};
pub use trust::Trust;

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use rustls::ClientConfig;
use serde::Serialize;
use trellis_io::client::{self, Answer, ClientError};

/// Default port of the controller's agent API.
pub const DEFAULT_PORT: u16 = 7443;

/// `host`, `host:port`, `[v6]` or `[v6]:port` → `host:port` with the default port.
pub fn with_default_port(addr: &str) -> String {
    let has_port = if let Some(rest) = addr.strip_prefix('[') {
        rest.contains("]:")
    } else {
        addr.matches(':').count() == 1
    };
    if has_port {
        addr.to_owned()
    } else if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{DEFAULT_PORT}")
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

/// One controller endpoint with one TLS configuration.
#[derive(Clone)]
pub struct Controller {
    pub addr: String,
    config: Arc<ClientConfig>,
    /// Counts the controller's answers (any status): a task waiting out a retry backoff
    /// wakes when another task's call gets through (the controller is back).
    answered: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Connect(#[from] tls::ConnectError),
    #[error("controller at {addr}: {source}")]
    Api { addr: String, source: ClientError },
    #[error("controller at {addr} did not answer within {after:?}; is the link to the primary router down?")]
    Timeout { addr: String, after: Duration },
}

/// Longest a call may take, handshake and answer included: a call caught by a mesh outage
/// must not wait on TCP retransmissions for minutes.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// A long poll waits up to 60 s at the controller, then the answer.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(75);

impl Controller {
    pub fn new(addr: &str, config: Arc<ClientConfig>) -> Self {
        Self {
            addr: with_default_port(addr),
            config,
            answered: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Changes each time the controller answers a call of any task (see `answered`).
    pub fn answers(&self) -> tokio::sync::watch::Receiver<u64> {
        self.answered.subscribe()
    }

    /// One request on a fresh TLS connection, within [`CALL_TIMEOUT`].
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, CallError> {
        self.call_within(CALL_TIMEOUT, method, path, body).await
    }

    /// A long-poll GET (`?wait=` at most 60 s), within [`LONG_POLL_TIMEOUT`].
    pub async fn long_poll(&self, path: &str) -> Result<Answer, CallError> {
        self.call_within::<()>(LONG_POLL_TIMEOUT, Method::GET, path, None)
            .await
    }

    async fn call_within<B: Serialize + ?Sized>(
        &self,
        limit: Duration,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, CallError> {
        let call = async {
            let io = tls::connect(&self.addr, self.config.clone()).await?;
            client::request(io, method, path, body)
                .await
                .map_err(|source| CallError::Api {
                    addr: self.addr.clone(),
                    source,
                })
        };
        let answer =
            tokio::time::timeout(limit, call)
                .await
                .map_err(|_| CallError::Timeout {
                    addr: self.addr.clone(),
                    after: limit,
                })??;
        self.answered.send_modify(|n| *n = n.wrapping_add(1));
        Ok(answer)
    }

    /// A request whose 2xx answer is JSON.
    pub async fn json<T: serde::de::DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CallError> {
        self.call(method, path, body)
            .await?
            .json()
            .map_err(|source| CallError::Api {
                addr: self.addr.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::with_default_port;

    #[test]
    fn addresses_get_the_default_port() {
        assert_eq!(with_default_port("192.168.1.1"), "192.168.1.1:7443");
        assert_eq!(with_default_port("192.168.1.1:8443"), "192.168.1.1:8443");
        assert_eq!(with_default_port("router.lan"), "router.lan:7443");
        assert_eq!(with_default_port("fd00::1"), "[fd00::1]:7443");
        assert_eq!(with_default_port("[fd00::1]"), "[fd00::1]:7443");
        assert_eq!(with_default_port("[fd00::1]:9"), "[fd00::1]:9");
    }
}
