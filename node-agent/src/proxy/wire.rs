//! The tunnel's one-message handshake, sent inside mutual TLS before the stream's bytes.
//!
//! `TRL1` + u16 length + JSON [`TunnelRequest`] from the dialling node, then u16 length + JSON
//! [`TunnelResponse`] from the accepting node; after that the TLS stream carries the client's
//! bytes unchanged. Both messages are capped at [`MAX_MESSAGE`] bytes, so a peer cannot make a
//! node buffer more than that before it is authorised.
//!
//! The request carries *facts* the source node saw (client address and MAC), not conclusions
//! (its group): the destination node resolves the device against its own snapshot and decides
//! again, so a node with a stale or tampered policy cannot widen access.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use trellis_proto::policy::MacAddr;

pub const MAGIC: &[u8; 4] = b"TRL1";
pub const MAX_MESSAGE: usize = 2048;

/// What the dialling node asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRequest {
    /// Catalog service name.
    pub service: String,
    /// Port the client dialled on the virtual IP.
    pub port: u16,
    /// The client as the source node saw it.
    pub client_ip: Option<IpAddr>,
    #[serde(default)]
    pub client_mac: Option<MacAddr>,
}

/// The accepting node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum TunnelResponse {
    /// Connected to the device; bytes follow.
    Connected { rule: String },
    /// Refused by policy at the destination.
    Denied { rule: String, explanation: String },
    /// Could not serve: unknown service, no local instance, device unreachable.
    Failed { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("tunnel message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("peer did not speak the Trellis tunnel protocol (bad magic)")]
    BadMagic,
    #[error("malformed tunnel message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn write_msg<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    magic: bool,
    msg: &T,
) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(body.len() + 6);
    if magic {
        frame.extend_from_slice(MAGIC);
    }
    frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
    frame.extend_from_slice(&body);
    // One write, so the request leaves in one TLS record.
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

async fn read_msg<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    magic: bool,
) -> Result<T, WireError> {
    if magic {
        let mut m = [0u8; 4];
        r.read_exact(&mut m).await?;
        if &m != MAGIC {
            return Err(WireError::BadMagic);
        }
    }
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_MESSAGE {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

pub async fn write_request<W: AsyncWrite + Unpin>(
    w: &mut W,
    req: &TunnelRequest,
) -> Result<(), WireError> {
    write_msg(w, true, req).await
}

pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> Result<TunnelRequest, WireError> {
    read_msg(r, true).await
}

pub async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    resp: &TunnelResponse,
) -> Result<(), WireError> {
    write_msg(w, false, resp).await
}

pub async fn read_response<R: AsyncRead + Unpin>(r: &mut R) -> Result<TunnelResponse, WireError> {
    read_msg(r, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_and_response_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let req = TunnelRequest {
            service: "nas".into(),
            port: 445,
            client_ip: Some("10.0.0.2".parse().unwrap()),
            client_mac: Some("02:00:00:00:00:01".parse().unwrap()),
        };
        write_request(&mut a, &req).await.unwrap();
        assert_eq!(read_request(&mut b).await.unwrap(), req);
        let resp = TunnelResponse::Denied {
            rule: "no-guests".into(),
            explanation: "DENIED: …".into(),
        };
        write_response(&mut b, &resp).await.unwrap();
        assert_eq!(read_response(&mut a).await.unwrap(), resp);
    }

    #[tokio::test]
    async fn oversized_and_foreign_messages_are_refused_before_buffering() {
        let (mut a, mut b) = tokio::io::duplex(64);
        // A length field of 60 000 must be refused without reading (or allocating) the body.
        a.write_all(b"TRL1\xea\x60").await.unwrap();
        let err = read_request(&mut b).await.unwrap_err();
        assert!(matches!(err, WireError::TooLarge(60000)), "{err}");

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(
            read_request(&mut b).await.unwrap_err(),
            WireError::BadMagic
        ));
    }
}
