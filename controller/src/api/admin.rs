//! The admin API: HTTP over a unix socket that only root can open.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use trellis_proto::api::{CaBackup, NewPairingCode, NodeInfo, RemovedNode, Status};
use trellis_proto::NodeName;

use super::{bad_json, MAX_BODY};
use crate::home::{Home, HomeError, Kind};

pub fn router(home: Arc<Home>) -> Router {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/nodes", get(nodes))
        .route("/v1/admin/nodes/{name}", delete(remove_node))
        .route("/v1/admin/pairing-codes", post(new_code))
        .route("/v1/admin/ca/backup", get(ca_backup))
        .route("/v1/admin/devices", get(devices).post(put_device))
        .route("/v1/admin/setup-token", get(setup_token))
        .route("/v1/admin/web-password", delete(reset_password))
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

pub async fn serve(home: Arc<Home>, listener: UnixListener) -> anyhow::Result<()> {
    axum::serve(listener, router(home)).await?;
    Ok(())
}

async fn status(State(home): State<Arc<Home>>) -> Result<Json<Status>, HomeError> {
    home.status().map(Json)
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
) -> Result<(StatusCode, Json<NewPairingCode>), HomeError> {
    home.new_pairing_code()
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

async fn devices(State(home): State<Arc<Home>>) -> Result<Json<Vec<Device>>, HomeError> {
    Ok(Json(
        home.devices()?
            .into_iter()
            .map(|d| Device {
                mac: d.mac,
                name: d.name,
                group: d.group,
            })
            .collect(),
    ))
}
