//! Clients on the LAN as the hostile-device tests and the login bench need them: TCP and TLS
//! from a chosen source address in 127.0.0.0/8, and whole requests to the web page.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// How long any one answer may take before a test calls it a failure (not a speed goal).
pub const ANSWER: Duration = Duration::from_secs(60);

/// A TCP connection to `to` from 127.0.0.`a`.`b`.
pub async fn tcp_from(a: u8, b: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((Ipv4Addr::new(127, 0, a, b), 0)))?;
    sock.connect(to).await
}

/// A TLS connection as a browser or a satellite before pairing makes it (no client
/// certificate).
pub async fn tls_from(a: u8, b: u8, to: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(a, b, to).await?;
    let name =
        rustls_pki_types::ServerName::try_from(trellis_proto::tls::CONTROLLER_SERVER_NAME).unwrap();
    tokio_rustls::TlsConnector::from(trellis_agent::control::tls::pairing_config().unwrap())
        .connect(name, tcp)
        .await
}

pub fn login_request(password: &str) -> String {
    let body = serde_json::json!({ "password": password }).to_string();
    format!(
        "POST /api/ui/login HTTP/1.1\r\nhost: controller\r\ncontent-type: application/json\r\n\
         x-trellis-csrf: page\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Send one whole request from 127.0.`a`.`b` and read the answer: its status and text, or
/// `None` if the connection was refused or cut before an answer.
pub async fn send_from(a: u8, b: u8, to: SocketAddr, request: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut tls = tls_from(a, b, to).await.ok()?;
        tls.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        // A reset after the answer still leaves the answer read.
        let _ = tls.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.get(9..12)?.parse().ok()?;
        Some((status, text))
    };
    tokio::time::timeout(ANSWER, exchange)
        .await
        .expect("an answer, or a refusal, within the bound")
}

pub fn setup_request(token: &str, password: &str) -> String {
    let body = serde_json::json!({ "token": token, "password": password }).to_string();
    format!(
        "POST /api/ui/setup HTTP/1.1\r\nhost: controller\r\ncontent-type: application/json\r\n\
         x-trellis-csrf: page\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
