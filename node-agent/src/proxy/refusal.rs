//! What a device sees when the home's policy refuses its connection.
//!
//! A bare reset reads as "the NAS is broken" to a person in a browser. When the refused client
//! speaks HTTP/1 (it sends a request line first, as browsers and curl do), the router answers
//! with a short `403` page that says the home's policy refused it and which rule decided, the
//! same words `trellis why` prints. Anything else (a server-first protocol, TLS, nothing sent
//! in time) keeps the reset: the proxy never guesses at a protocol it cannot answer in.
//!
//! Bounded: at most [`PEEK_LIMIT`] bytes read, for at most [`PEEK_TIMEOUT`], and the
//! connection's slot is held only that long.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much of the request is read to tell HTTP from anything else.
const PEEK_LIMIT: usize = 2048;
/// How long a refused client gets to send its request line.
const PEEK_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuse `client`: a 403 page naming `rule` if it speaks HTTP/1, else a reset.
pub(crate) async fn refuse(mut client: TcpStream, service: &str, rule: &str, explanation: &str) {
    let mut buf = vec![0u8; PEEK_LIMIT];
    let mut filled = 0;
    let deadline = tokio::time::Instant::now() + PEEK_TIMEOUT;
    // Read until the request line is complete (or it cannot be HTTP, or time is up).
    let speaks_http = loop {
        match tokio::time::timeout_at(deadline, client.read(&mut buf[filled..])).await {
            Ok(Ok(n)) if n > 0 => filled += n,
            _ => break false,
        }
        match http_request_line(&buf[..filled]) {
            Some(verdict) => break verdict,
            None if filled == buf.len() => break false,
            None => {}
        }
    };
    if !speaks_http {
        return super::reset(client);
    }
    let page = page(service, rule, explanation);
    if client.write_all(page.as_bytes()).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    // Read what is left of the request (bounded) so that closing does not turn into a reset
    // that could destroy the page before the client has read it.
    let _ = tokio::time::timeout(PEEK_TIMEOUT, async {
        let mut rest = [0u8; 1024];
        let mut left: usize = 16 * 1024;
        while left > 0 {
            match client.read(&mut rest).await {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
    })
    .await;
}

/// Whether `start` begins with an HTTP/1 request line: `Some(true)` it does, `Some(false)` it
/// cannot, `None` not enough bytes yet.
fn http_request_line(start: &[u8]) -> Option<bool> {
    let line_end = start.iter().position(|&b| b == b'\n');
    let line = &start[..line_end.unwrap_or(start.len())];
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    // A method is a token of capital letters (GET, POST, PROPFIND…): anything else is not HTTP.
    if !method.iter().all(u8::is_ascii_uppercase) || method.len() > 16 {
        return Some(false);
    }
    // The request line is not complete yet.
    line_end?;
    let target = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    let version = version.strip_suffix(b"\r").unwrap_or(version);
    Some(
        !method.is_empty()
            && !target.is_empty()
            && parts.next().is_none()
            && version.starts_with(b"HTTP/1."),
    )
}

/// The page: plain text, so nothing a person named (a rule, a service) can become markup.
fn page(service: &str, rule: &str, explanation: &str) -> String {
    let body = format!(
        "Refused by your home's Trellis policy.\r\n\r\n\
         Service: {service}\r\n\
         Rule: {rule}\r\n\
         {explanation}\r\n\r\n\
         The home's admin can change this on the router's Trellis page (Policy), or ask:\r\n\
         trellis why <this device> {service}\r\n"
    );
    format!(
        "HTTP/1.1 403 Forbidden\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n\
         X-Trellis-Rule: {}\r\n\r\n{body}",
        body.len(),
        header_safe(rule)
    )
}

/// Rule names are the admin's text: keep them printable ASCII inside a header.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn request_lines_are_told_from_other_protocols() {
        assert_eq!(
            http_request_line(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Some(true)
        );
        assert_eq!(http_request_line(b"PROPFIND /d HTTP/1.0\n"), Some(true));
        assert_eq!(http_request_line(b"GET / HT"), None);
        assert_eq!(http_request_line(b"G"), None);
        // A TLS ClientHello, SSH's banner, a lowercase word: not HTTP.
        assert_eq!(http_request_line(&[0x16, 0x03, 0x01, 0x02]), Some(false));
        assert_eq!(http_request_line(b"SSH-2.0-OpenSSH\r\n"), Some(false));
        assert_eq!(http_request_line(b"get / HTTP/1.1\r\n"), Some(false));
        assert_eq!(http_request_line(b"GET / HTTP/2\r\n"), Some(false));
        assert_eq!(http_request_line(b"GET /\r\n"), Some(false));
    }

    async fn refused_with(request: &'static [u8]) -> Vec<u8> {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            refuse(
                s,
                "nas",
                "default:guest",
                "DENIED: guest devices reach no home services",
            )
            .await;
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        server.await.unwrap();
        out
    }

    #[tokio::test]
    async fn an_http_client_gets_a_page_naming_the_rule() {
        let out = refused_with(b"GET / HTTP/1.1\r\nHost: nas.trellis.home.arpa\r\n\r\n").await;
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("X-Trellis-Rule: default:guest\r\n"), "{text}");
        assert!(text.contains("Rule: default:guest"), "{text}");
        assert!(text.contains("Service: nas"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }

    #[tokio::test]
    async fn anything_else_gets_no_page() {
        let out = refused_with(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn header_values_stay_on_their_line() {
        assert_eq!(header_safe("a\r\nX-Evil: 1"), "a??X-Evil: 1");
    }
}
