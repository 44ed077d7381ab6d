//! The admin API: HTTP over a unix socket that only root can open.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::api::extract::Json;
use crate::api::extract::JsonRejection;
use crate::api::extract::Query;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use trellis_proto::api::{
    CaBackup, DeviceListing, NewPairingCode, NewPairingCodeRequest, NewService, NewSpeedTest,
    NodeInfo, RemovedNode, SpeedTest, Status, WhyAnswer,
};
use trellis_proto::catalog::Service;
use trellis_proto::policy::{Policy, Rule};
use trellis_proto::NodeName;

use super::{bad_json, MAX_BODY};
use crate::error::{HomeError, Kind};
use crate::home::Home;

pub fn router(home: Arc<Home>) -> Router {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/metrics", get(metrics))
        .route("/v1/admin/nodes", get(nodes))
        .route("/v1/admin/nodes/{name}", delete(remove_node))
        .route("/v1/admin/pairing-codes", post(new_code))
        .route("/v1/admin/ca/backup", get(ca_backup))
        .route("/v1/admin/devices", get(devices).post(put_device))
        .route("/v1/admin/services", get(services).post(add_service))
        .route("/v1/admin/services/{name}", delete(remove_service))
        .route("/v1/admin/policy", get(policy))
        .route("/v1/admin/policy/rules", post(add_rule))
        .route("/v1/admin/policy/rules/{name}", delete(remove_rule))
        .route("/v1/admin/groups", post(add_group))
        .route("/v1/admin/why", get(why))
        .route("/v1/admin/events", get(events))
        .route("/v1/admin/topology", get(topology))
        .route(
            "/v1/admin/channel",
            get(super::channel::show).post(super::channel::request),
        )
        .route(
            "/v1/admin/speedtests",
            get(speedtests).post(start_speedtest),
        )
        .route("/v1/admin/speedtests/{id}", get(speedtest))
        .route("/v1/admin/traffic", get(traffic))
        .route("/v1/admin/traces", get(traces))
        .route("/v1/admin/graph", get(graph))
        .route("/v1/admin/setup-token", get(setup_token))
        .route("/v1/admin/web-password", delete(reset_password))
        .merge(super::wifi::admin_routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(home)
}

/// Bind the admin socket, readable and writable by root only.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A socket left by a crashed controller; refuse if another one is still listening.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another trellis-controller is already listening on {}; stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The listeners whose counters `GET /v1/admin/metrics` shows.
#[derive(Clone, Default)]
pub struct Listeners(pub Vec<Arc<trellis_io::Gate>>);

/// Where the agent API really listens (the bound address, port 0 resolved), for status.
#[derive(Clone, Copy, Debug)]
pub struct AgentApiAddr(pub std::net::SocketAddr);

/// Serve the admin socket. Its accept loop is axum's (a unix socket, root only: the
/// `trellis-io` gate counts TCP sources, which this socket has not); axum's loop pauses on
/// accept errors and goes on, as `trellis-io`'s does.
pub async fn serve(
    home: Arc<Home>,
    listener: UnixListener,
    listeners: Listeners,
    agent_api: AgentApiAddr,
) -> anyhow::Result<()> {
    let app = router(home)
        .layer(axum::Extension(listeners))
        .layer(axum::Extension(agent_api));
    axum::serve(listener, app).await?;
    Ok(())
}

/// The same page `--metrics-listen` serves ([`crate::metrics`]).
async fn metrics(
    State(home): State<Arc<Home>>,
    listeners: Option<axum::Extension<Listeners>>,
) -> impl axum::response::IntoResponse {
    let gates = listeners
        .map(|axum::Extension(Listeners(gates))| gates)
        .unwrap_or_default();
    let page = crate::metrics::page(&home, &gates);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        page,
    )
}

/// The home's status; `agent_api` is the address handed to satellites (`--advertise`), else
/// the address the API listens on, so a status reader (LuCI, `trellis status`) never gets "".
async fn status(
    State(home): State<Arc<Home>>,
    listening: Option<axum::Extension<AgentApiAddr>>,
) -> Result<Json<Status>, HomeError> {
    let mut status = home.status()?;
    if status.agent_api.is_empty() {
        if let Some(axum::Extension(AgentApiAddr(addr))) = listening {
            status.agent_api = addr.to_string();
        }
    }
    Ok(Json(status))
}

async fn nodes(State(home): State<Arc<Home>>) -> Result<Json<Vec<NodeInfo>>, HomeError> {
    home.nodes().map(Json)
}

async fn remove_node(
    State(home): State<Arc<Home>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<RemovedNode>, HomeError> {
    let name = NodeName::new(name).map_err(|e| HomeError::new(Kind::BadRequest, e.to_string()))?;
    home.remove_node(&name).map(Json)
}

async fn new_code(
    State(home): State<Arc<Home>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<NewPairingCode>), HomeError> {
    // No body is the common case: a code for a satellite.
    let req: NewPairingCodeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NewPairingCodeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            HomeError::new(
                Kind::BadRequest,
                format!("malformed request body: {e}; send {{\"this_router\": true}} or nothing"),
            )
        })?
    };
    home.new_pairing_code(req.this_router)
        .map(|c| (StatusCode::CREATED, Json(c)))
}

async fn ca_backup(State(home): State<Arc<Home>>) -> Json<CaBackup> {
    Json(home.ca_backup())
}

/// A device as the admin API shows and takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub mac: String,
    pub name: String,
    pub group: String,
}

async fn put_device(
    State(home): State<Arc<Home>>,
    body: Result<Json<Device>, JsonRejection>,
) -> Result<Json<serde_json::Value>, HomeError> {
    let Json(d) = body.map_err(bad_json)?;
    let version = home.set_device(&d.mac, &d.name, &d.group)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

/// First run of the web page: `trellis setup-token` reads it here (root only).
async fn setup_token(State(home): State<Arc<Home>>) -> Result<Json<serde_json::Value>, HomeError> {
    let token = home.setup_token()?;
    Ok(Json(serde_json::json!({ "setup_token": token })))
}

/// A lost web password: forget it and hand back a fresh setup token (root only).
async fn reset_password(
    State(home): State<Arc<Home>>,
) -> Result<Json<serde_json::Value>, HomeError> {
    let token = home.reset_admin_password()?;
    Ok(Json(serde_json::json!({ "setup_token": token })))
}

async fn devices(State(home): State<Arc<Home>>) -> Result<Json<Vec<DeviceListing>>, HomeError> {
    home.device_listing().map(Json)
}

fn version(v: u64) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "config_version": v }))
}

async fn services(State(home): State<Arc<Home>>) -> Result<Json<Vec<Service>>, HomeError> {
    home.services().map(Json)
}

async fn add_service(
    State(home): State<Arc<Home>>,
    body: Result<Json<NewService>, JsonRejection>,
) -> Result<(StatusCode, Json<Service>), HomeError> {
    let Json(new) = body.map_err(bad_json)?;
    home.add_service(&new)
        .map(|s| (StatusCode::CREATED, Json(s)))
}

async fn remove_service(
    State(home): State<Arc<Home>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>, HomeError> {
    home.remove_service(&name).map(version)
}

async fn policy(State(home): State<Arc<Home>>) -> Json<Policy> {
    Json(home.policy())
}

async fn add_rule(
    State(home): State<Arc<Home>>,
    body: Result<Json<Rule>, JsonRejection>,
) -> Result<Json<serde_json::Value>, HomeError> {
    let Json(rule) = body.map_err(bad_json)?;
    home.add_rule(rule).map(version)
}

async fn remove_rule(
    State(home): State<Arc<Home>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>, HomeError> {
    home.remove_rule(&name).map(version)
}

#[derive(Debug, Deserialize)]
struct NewGroup {
    name: String,
}

async fn add_group(
    State(home): State<Arc<Home>>,
    body: Result<Json<NewGroup>, JsonRejection>,
) -> Result<Json<serde_json::Value>, HomeError> {
    let Json(g) = body.map_err(bad_json)?;
    home.add_group(&g.name).map(version)
}

#[derive(Debug, Deserialize)]
struct WhyQuery {
    source: String,
    target: String,
}

async fn why(
    State(home): State<Arc<Home>>,
    query: Result<Query<WhyQuery>, crate::api::extract::QueryRejection>,
) -> Result<Json<WhyAnswer>, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.to_string()))?;
    home.why(&q.source, &q.target).map(Json)
}

async fn events(State(home): State<Arc<Home>>) -> Json<Vec<crate::home::Event>> {
    Json(home.events())
}

async fn topology(State(home): State<Arc<Home>>) -> Json<Vec<trellis_proto::api::TopologyLink>> {
    Json(home.topology())
}

async fn speedtests(State(home): State<Arc<Home>>) -> Json<Vec<SpeedTest>> {
    Json(home.speedtests())
}

async fn start_speedtest(
    State(home): State<Arc<Home>>,
    body: Result<Json<NewSpeedTest>, JsonRejection>,
) -> Result<(StatusCode, Json<SpeedTest>), HomeError> {
    let Json(req) = body.map_err(bad_json)?;
    home.start_speedtest(&req)
        .map(|t| (StatusCode::ACCEPTED, Json(t)))
}

async fn speedtest(
    State(home): State<Arc<Home>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<SpeedTest>, HomeError> {
    let id = id.parse::<u64>().map_err(|_| {
        HomeError::new(
            Kind::BadRequest,
            format!("{id:?} is not a speed test number (see `trellis speedtest --list`)"),
        )
    })?;
    home.speedtest(id).map(Json)
}

/// `GET /v1/admin/traces?device=D&service=S&limit=N`: the newest traces first.
#[derive(Debug, Default, Deserialize)]
pub struct TracesQuery {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

async fn traces(
    State(home): State<Arc<Home>>,
    query: Result<Query<TracesQuery>, crate::api::extract::QueryRejection>,
) -> Result<Json<Vec<crate::traces::TraceView>>, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.to_string()))?;
    Ok(Json(home.traces(
        q.device.as_deref(),
        q.service.as_deref(),
        q.limit.unwrap_or(50),
    )))
}

/// `GET /v1/admin/graph?window=MIN`: the service dependency map.
async fn graph(
    State(home): State<Arc<Home>>,
    query: Result<Query<crate::graph::GraphQuery>, crate::api::extract::QueryRejection>,
) -> Result<Json<crate::graph::DependencyMap>, HomeError> {
    let Query(q) = query.map_err(|e| HomeError::new(Kind::BadRequest, e.to_string()))?;
    Ok(Json(home.dependency_map(q.window()?)))
}

async fn traffic(State(home): State<Arc<Home>>) -> Json<Vec<crate::traffic::ServiceChart>> {
    Json(home.traffic())
}
