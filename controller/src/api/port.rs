//! The server of the controller's LAN port (:7443): HTTPS with TLS 1.3, client certificates
//! from the home CA, one port for the agent API ([`super::agent`]), pairing and the web page
//! ([`super::web`]).
//!
//! The port's limits, so a device on the LAN cannot hold it shut ([`serve_with`]): the one
//! accept loop of `trellis-io` with a [`Gate`] ([`LIMITS`]: in total, and per source address),
//! then a seat in one of two [`Budget`]s: `agents` for connections that presented a client
//! certificate of the home CA, `guests` for everything else (the page, pairing, anonymous
//! clients, and every connection still in its TLS handshake). The total cap is the sum of
//! the two, so guests can never take the agents' seats. A seat is *waiting* while its
//! connection is in the handshake, idle, or sending its request's headers or body, and busy
//! only while the request is answered: when a class is full, a newcomer takes the oldest
//! waiting seat. Each stage has its own deadline ([`HANDSHAKE_TIMEOUT`], [`HEADER_TIMEOUT`],
//! [`BODY_TIMEOUT`]). Refusals are counted in the gate (`trellis_listener_refused_total`,
//! `GET /v1/admin/metrics` on the admin socket) and logged at most once a minute.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::api::extract::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use trellis_io::{Budget, Gate, Limits};
use trellis_proto::tls::{cert_facts, provider, root_store, CertFacts, PROTOCOL_VERSIONS};

use super::MAX_BODY;
use crate::error::{HomeError, Kind};
use crate::home::Home;

/// Connections of enrolled routers (long polls included): a home has a handful of routers,
/// each with two long polls and a report now and then.
pub const AGENT_SEATS: usize = 64;
/// Connections of everyone else: browsers of the page, satellites pairing, the anonymous.
pub const GUEST_SEATS: usize = 64;
/// The port's caps: agents and guests together, and what one device (an IPv4 address, an
/// IPv6 /64) may hold — a router runs a few calls at once, a browser six.
pub const LIMITS: Limits = Limits {
    total: AGENT_SEATS + GUEST_SEATS,
    per_source: 16,
};
/// The TLS handshake must be done this long after the connection is accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must be complete this long after the connection went idle (after the
/// handshake or the previous answer): hyper runs one timer for the idle keep-alive wait and
/// the headers, so this is also the idle timeout. Long polls are requests, not idleness.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// A request's body (at most [`MAX_BODY`]) must be complete this long after its headers: a
/// client trickling a body is answered 408 and cut off.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's read and write buffer per connection (its default is ~400 KiB): requests are at
/// most [`MAX_BODY`] plus headers.
const MAX_BUF: usize = MAX_BODY + 16 * 1024;
/// The controller's own certificate: one week, re-issued every day.
const SERVER_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const SERVER_CERT_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// The verified client certificate of a connection, if it presented one.
#[derive(Clone, Debug)]
pub(super) struct Peer(pub(super) Option<CertFacts>);

/// Serves the controller's current server certificate; swapped when it is re-issued.
#[derive(Debug)]
struct ServerCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn issue_server_cert(home: &Home) -> anyhow::Result<Arc<CertifiedKey>> {
    let (issued, key) = home.ca().issue_controller_cert(SERVER_CERT_TTL)?;
    let certs = trellis_proto::tls::certs_from_pem(&issued.cert_pem, "the controller certificate")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider().key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

impl ServerCert {
    /// Re-issue the controller's certificate; connections opened afterwards get the new one.
    fn refresh(&self, home: &Home) {
        match issue_server_cert(home) {
            Ok(ck) => *self.0.write().unwrap_or_else(|p| p.into_inner()) = ck,
            Err(e) => tracing::error!("could not re-issue the controller certificate: {e:#}"),
        }
    }
}

/// The TLS settings of the agent API, and the resolver whose certificate can be refreshed.
fn tls_config(home: &Home) -> anyhow::Result<(Arc<ServerConfig>, Arc<ServerCert>)> {
    let roots = Arc::new(root_store(home.ca().cert_pem())?);
    // Client certificates are optional at the TLS layer (pairing has none yet) and required
    // by every /v1/agent/ handler.
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()?;
    let resolver = Arc::new(ServerCert(RwLock::new(issue_server_cert(home)?)));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver.clone() as Arc<dyn ResolvesServerCert>);
    // No session resumption: a resumed session carries the client certificate of its first
    // handshake, so a router would keep showing a certificate it has replaced (serials are
    // pinned, see `Home::authorize`). Agents make a call every 30 s or so: full handshakes
    // cost nothing that matters.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), resolver))
}

/// Everything this port answers: the agent API and the web page (their routes never
/// overlap), and JSON for the misses of both.
pub fn router(home: Arc<Home>) -> Router {
    super::agent::router(home.clone())
        // The web page shares this port and certificate.
        .merge(super::web::router(home))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

async fn no_route(uri: axum::http::Uri) -> HomeError {
    HomeError::new(
        Kind::NotFound,
        format!(
            "no such endpoint: {} (the API is described at /api/openapi.json)",
            uri.path()
        ),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> HomeError {
    HomeError::new(
        Kind::MethodNotAllowed,
        format!(
            "{method} is not how {} is used (the API is described at /api/openapi.json)",
            uri.path()
        ),
    )
}

/// The gate of the port, with [`LIMITS`]; the daemon shows its counters on the admin socket.
pub fn gate() -> Arc<Gate> {
    Gate::new("agent-api", LIMITS)
}

/// Serve the port with a gate of its own.
pub async fn serve(home: Arc<Home>, listener: TcpListener) -> anyhow::Result<()> {
    serve_with(home, listener, gate()).await
}

/// Serve the port under `gate` (see the module comment); returns only if the TLS setup fails.
pub async fn serve_with(
    home: Arc<Home>,
    listener: TcpListener,
    gate: Arc<Gate>,
) -> anyhow::Result<()> {
    let (tls, server_cert) = tls_config(&home)?;
    let refresher = {
        let home = home.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SERVER_CERT_REFRESH);
            tick.tick().await;
            loop {
                tick.tick().await;
                server_cert.refresh(&home);
            }
        })
    };
    // Stop re-issuing when the server stops.
    let _stop_refresher = AbortOnDrop(refresher);
    let port = Port {
        acceptor: TlsAcceptor::from(tls),
        app: router(home),
        agents: Budget::new("agents", AGENT_SEATS, gate.clone()),
        guests: Budget::new("guests", GUEST_SEATS, gate.clone()),
    };
    let port = Arc::new(port);
    match trellis_io::serve(listener, gate, move |tcp, remote, ticket| {
        let port = port.clone();
        async move {
            let _ticket = ticket;
            port.connection(tcp, remote).await;
        }
    })
    .await {}
}

/// What every connection of the port shares.
struct Port {
    acceptor: TlsAcceptor,
    app: Router,
    agents: Arc<Budget>,
    guests: Arc<Budget>,
}

impl Port {
    async fn connection(&self, tcp: TcpStream, remote: std::net::SocketAddr) {
        let server = tcp.local_addr().ok();
        // Every connection starts as a guest: until the handshake, nothing says otherwise.
        let Ok(guest) = self.guests.take(remote) else {
            trellis_io::listener::reset(tcp);
            return;
        };
        let guest = Arc::new(guest);
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            r = handshake => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            },
            _ = guest.evicted() => return,
        };
        let peer = Peer(
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c: &CertificateDer<'_>| cert_facts(c).ok()),
        );
        // rustls checked the chain to the home CA: this is one of the home's routers (whether
        // it is still enrolled, each /v1/agent/ handler checks).
        let seat = if peer.0.is_some() {
            match self.agents.take(remote) {
                Ok(seat) => Arc::new(seat),
                Err(_) => return,
            }
        } else {
            guest
        };
        let app = self.app.clone();
        let served = seat.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (app, seat, peer) = (app.clone(), served.clone(), peer.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    // Still waiting (evictable) while the body comes in; busy once it is here.
                    let body = match read_body(body).await {
                        Ok(body) => body,
                        Err(refused) => return Ok(refused.into_response()),
                    };
                    let busy = seat.busy();
                    let mut req = hyper::Request::from_parts(parts, axum::body::Body::from(body));
                    req.extensions_mut().insert(peer);
                    req.extensions_mut().insert(super::web::ClientAddr(remote));
                    if let Some(server) = server {
                        req.extensions_mut().insert(super::web::ServerAddr(server));
                    }
                    let answer = app.oneshot(req).await?;
                    // Busy until the answer's body is read out, not only until the handler
                    // returns: a newcomer must not cut an answer short.
                    Ok::<_, std::convert::Infallible>(
                        answer.map(|inner| axum::body::Body::new(BusyBody { inner, _busy: busy })),
                    )
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_BUF)
            .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
        tokio::select! {
            r = conn => {
                if let Err(e) = r {
                    tracing::debug!(%remote, "agent API connection ended: {e}");
                }
            }
            _ = seat.evicted() => {}
        }
    }
}

/// A request body read whole within [`BODY_TIMEOUT`] and [`MAX_BODY`], or the answer to send
/// instead (the connection closes after it).
async fn read_body(body: hyper::body::Incoming) -> Result<hyper::body::Bytes, BodyRefused> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyRefused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} KiB: send less",
                MAX_BODY / 1024
            ),
        )),
        Ok(Err(e)) => Err(BodyRefused(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(BodyRefused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s of its headers: send it at once",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A response body that keeps its connection's seat busy until it has been read out.
struct BusyBody {
    inner: axum::body::Body,
    _busy: trellis_io::budget::Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

struct BodyRefused(StatusCode, String);

impl IntoResponse for BodyRefused {
    fn into_response(self) -> Response {
        (
            self.0,
            [(axum::http::header::CONNECTION, "close")],
            Json(trellis_proto::pairing::ApiError { error: self.1 }),
        )
            .into_response()
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
