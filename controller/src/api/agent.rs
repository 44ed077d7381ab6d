//! The agent API: what paired routers ask of the controller — pairing (`/v1/pair/`, no
//! client certificate yet: the PAKE authenticates both sides) and `/v1/agent/` (config long
//! poll, acknowledgements, renewal, telemetry, speed-test jobs), each handler behind
//! [`AgentNode`]: a client certificate of the home CA whose router is still enrolled, with the
//! serial this controller issued to it. The server of the port is [`super::port`].

use std::sync::Arc;
use std::time::Duration;

use crate::api::extract::Json;
use crate::api::extract::JsonRejection;
use crate::api::extract::Query;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use trellis_proto::api::{
    ConfigAck, RenewRequest, RenewResponse, SpeedTestOutcome, Telemetry, TelemetryAnswer,
};
use trellis_proto::pairing::{PairChallenge, PairFinish, PairStart, PairWelcome};
use trellis_proto::NodeName;

use super::{bad_json, MAX_BODY};
use crate::error::{HomeError, Kind};
use crate::home::Home;

/// The longest a config long poll waits before answering "no change".
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The agent API's routes: pairing (no client certificate yet) and `/v1/agent/` (an
/// enrolled router's certificate, checked by [`AgentNode`]).
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
        .with_state(home)
}

/// An enrolled, non-revoked node, proven by its client certificate.
struct AgentNode(NodeName);

impl FromRequestParts<Arc<Home>> for AgentNode {
    type Rejection = HomeError;

    async fn from_request_parts(parts: &mut Parts, home: &Arc<Home>) -> Result<Self, HomeError> {
        let peer = parts.extensions.get::<super::port::Peer>().and_then(|p| p.0.clone()).ok_or_else(|| {
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
    query: Result<Query<ConfigQuery>, crate::api::extract::QueryRejection>,
) -> Result<Response, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.to_string()))?;
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
        neighbours: home.neighbours_for(&node),
        steer: home.steer_for(&node),
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
    query: Result<Query<JobsQuery>, crate::api::extract::QueryRejection>,
) -> Result<Response, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.to_string()))?;
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
