//! The agent API: HTTPS with TLS 1.3, client certificates from the home CA.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use trellis_proto::api::{
    ConfigAck, RenewRequest, RenewResponse, SpeedTestOutcome, Telemetry, TelemetryAnswer,
};
use trellis_proto::pairing::{PairChallenge, PairFinish, PairStart, PairWelcome};
use trellis_proto::tls::{cert_facts, provider, root_store, CertFacts, PROTOCOL_VERSIONS};
use trellis_proto::NodeName;

use super::{bad_json, MAX_BODY};
use crate::home::{Home, HomeError, Kind};

/// Concurrent agent connections (long polls included): a home has a handful of routers.
pub const MAX_CONNECTIONS: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An open connection that sends no request this long is closed (long polls are requests).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a config long poll waits before answering "no change".
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The controller's own certificate: one week, re-issued every day.
const SERVER_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const SERVER_CERT_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// The verified client certificate of a connection, if it presented one.
#[derive(Clone, Debug)]
struct Peer(Option<CertFacts>);

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

pub fn router(home: Arc<Home>) -> Router {
    Router::new()
        .route("/v1/pair/start", post(pair_start))
        .route("/v1/pair/finish", post(pair_finish))
        .route("/v1/pair/abort", post(pair_abort))
        .route("/v1/agent/config", get(config))
        .route("/v1/agent/config/ack", post(ack))
        .route("/v1/agent/renew", post(renew))
        .route("/v1/agent/telemetry", post(telemetry))
        .route("/v1/agent/jobs", get(jobs))
        .route("/v1/agent/jobs/result", post(job_result))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(home.clone())
        // The web page shares this port and certificate; its routes never overlap /v1/.
        .merge(super::web::router(home))
        // Every answer of this port is JSON, the misses too (after the merge: they cover
        // both routers).
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

/// Accept agent connections until the listener fails.
pub async fn serve(home: Arc<Home>, listener: TcpListener) -> anyhow::Result<()> {
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
    let acceptor = TlsAcceptor::from(tls);
    let app = router(home);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, remote) = listener.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "agent API at its connection cap ({MAX_CONNECTIONS}); refusing");
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = Peer(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c: &CertificateDer<'_>| cert_facts(c).ok()),
            );
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(super::web::ClientAddr(remote));
                    app.clone().oneshot(req)
                },
            );
            let io = hyper_util::rt::TokioIo::new(tls);
            // With a timer, hyper closes a connection that sends no request header for 30 s
            // (also between keep-alive requests): browsers of the web page keep idle
            // connections open, and each holds one of the MAX_CONNECTIONS slots.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%remote, "agent connection ended: {e}");
            }
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An enrolled, non-revoked node, proven by its client certificate.
struct AgentNode(NodeName);

impl FromRequestParts<Arc<Home>> for AgentNode {
    type Rejection = HomeError;

    async fn from_request_parts(parts: &mut Parts, home: &Arc<Home>) -> Result<Self, HomeError> {
        let peer = parts.extensions.get::<Peer>().and_then(|p| p.0.clone()).ok_or_else(|| {
            HomeError::new(
                Kind::Forbidden,
                "this endpoint needs the router's client certificate; pair it first with trellis-agent join",
            )
        })?;
        home.authorize(&peer.identity, &peer.serial).map(AgentNode)
    }
}

async fn pair_start(
    State(home): State<Arc<Home>>,
    peer: Option<axum::Extension<super::web::ClientAddr>>,
    body: Result<Json<PairStart>, JsonRejection>,
) -> Result<Json<PairChallenge>, HomeError> {
    let Json(req) = body.map_err(bad_json)?;
    home.pair_start(&req, peer.map(|axum::Extension(a)| a.0.ip()))
        .map(Json)
}

async fn pair_finish(
    State(home): State<Arc<Home>>,
    body: Result<Json<PairFinish>, JsonRejection>,
) -> Result<Json<PairWelcome>, HomeError> {
    let Json(req) = body.map_err(bad_json)?;
    home.pair_finish(&req).map(Json)
}

#[derive(Deserialize)]
struct Abort {
    session: String,
}

async fn pair_abort(
    State(home): State<Arc<Home>>,
    body: Result<Json<Abort>, JsonRejection>,
) -> Result<StatusCode, HomeError> {
    let Json(req) = body.map_err(bad_json)?;
    home.pair_abort(&req.session)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ConfigQuery {
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a newer version (capped at 60).
    #[serde(default = "default_wait")]
    wait: u64,
}

fn default_wait() -> u64 {
    55
}

/// Long poll: a newer snapshot at once, else wait for one, else 204 after `wait` seconds.
async fn config(
    State(home): State<Arc<Home>>,
    AgentNode(node): AgentNode,
    query: Result<Query<ConfigQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.body_text()))?;
    let mut rx = home.subscribe();
    let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
    let newer = tokio::time::timeout(wait, rx.wait_for(|s| s.version > q.after)).await;
    match newer {
        Ok(Ok(snapshot)) => {
            tracing::debug!(%node, version = snapshot.version, "config sent");
            Ok(Json(snapshot.as_ref().clone()).into_response())
        }
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn ack(
    State(home): State<Arc<Home>>,
    AgentNode(node): AgentNode,
    body: Result<Json<ConfigAck>, JsonRejection>,
) -> Result<StatusCode, HomeError> {
    let Json(ack) = body.map_err(bad_json)?;
    home.ack(&node, ack.version, ack.error.as_deref())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn renew(
    State(home): State<Arc<Home>>,
    AgentNode(node): AgentNode,
    body: Result<Json<RenewRequest>, JsonRejection>,
) -> Result<Json<RenewResponse>, HomeError> {
    let Json(req) = body.map_err(bad_json)?;
    home.renew(&node, &req.csr_pem).map(Json)
}

async fn telemetry(
    State(home): State<Arc<Home>>,
    AgentNode(node): AgentNode,
    body: Result<Json<Telemetry>, JsonRejection>,
) -> Result<Json<TelemetryAnswer>, HomeError> {
    let Json(t) = body.map_err(bad_json)?;
    home.report(&node, t)?;
    Ok(Json(TelemetryAnswer {
        hops: home.hops_from(&node),
    }))
}

#[derive(Debug, Deserialize)]
struct JobsQuery {
    /// Seconds to wait for a job (capped like the config long poll).
    #[serde(default = "default_wait")]
    wait: u64,
}

/// Long poll: the next speed test this node is to send, else 204 after `wait` seconds.
async fn jobs(
    State(home): State<Arc<Home>>,
    AgentNode(node): AgentNode,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.body_text()))?;
    let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
    match home.next_job(&node, wait).await {
        Some(job) => {
            tracing::debug!(%node, id = job.id, "speed test handed out");
            Ok(Json(job).into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn job_result(
    State(home): State<Arc<Home>>,
    AgentNode(node): AgentNode,
    body: Result<Json<SpeedTestOutcome>, JsonRejection>,
) -> Result<StatusCode, HomeError> {
    let Json(outcome) = body.map_err(bad_json)?;
    home.finish_speedtest(&node, &outcome)?;
    Ok(StatusCode::NO_CONTENT)
}
