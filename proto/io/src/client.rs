//! One HTTP/1.1 request over any stream: the agent uses it over TLS to the controller, the
//! `trellis` command over the admin unix socket. One request per connection keeps it simple
//! and bounded; the control plane's rate is a few requests a minute.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use trellis_proto::pairing::ApiError;

/// Largest response accepted (a config snapshot of a large home is tens of KiB).
pub const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Connection(String),
    /// The server answered with an error; `message` is its own explanation.
    #[error("{message}")]
    Status { status: StatusCode, message: String },
    #[error("the answer is not what this version expects: {0}")]
    Decode(String),
}

/// The raw answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// Decode a success body as JSON, or turn an error answer into [`ClientError::Status`].
    pub fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        self.ok()?;
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Fail unless the status is 2xx, with the server's error message.
    pub fn ok(&self) -> Result<(), ClientError> {
        if self.status.is_success() {
            return Ok(());
        }
        let message = serde_json::from_slice::<ApiError>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).into_owned());
        Err(ClientError::Status {
            status: self.status,
            message: if message.is_empty() {
                self.status.to_string()
            } else {
                message
            },
        })
    }
}

/// Send one request on `io` and read the whole answer.
pub async fn request<IO, B>(
    io: IO,
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<Answer, ClientError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: Serialize + ?Sized,
{
    let conn_err = |e: hyper::Error| ClientError::Connection(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(conn_err)?;
    let driver = tokio::spawn(conn);
    let bytes = match body {
        Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?,
        None => Vec::new(),
    };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "trellis")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| ClientError::Connection(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(conn_err)?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| ClientError::Connection(format!("reading the answer: {e}")))?
        .to_bytes();
    driver.abort();
    Ok(Answer { status, body })
}
