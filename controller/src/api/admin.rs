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
use crate::store::DeviceRow;

pub fn router(home: Arc<Home>) -> Router {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/nodes", get(nodes))
        .route("/v1/admin/nodes/{name}", delete(remove_node))
        .route("/v1/admin/pairing-codes", post(new_code))
        .route("/v1/admin/ca/backup", get(ca_backup))
        .route("/v1/admin/devices", get(devices).post(put_device))
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

fn normalise_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

async fn put_device(
    State(home): State<Arc<Home>>,
    body: Result<Json<Device>, JsonRejection>,
) -> Result<Json<serde_json::Value>, HomeError> {
    let Json(d) = body.map_err(bad_json)?;
    let mac = normalise_mac(&d.mac).ok_or_else(|| {
        HomeError::new(
            Kind::BadRequest,
            format!("{:?} is not a MAC address like aa:bb:cc:dd:ee:ff", d.mac),
        )
    })?;
    if d.name.is_empty() || d.name.len() > 64 {
        return Err(HomeError::new(
            Kind::BadRequest,
            "a device name has 1 to 64 characters",
        ));
    }
    let version = home.put_device(&DeviceRow {
        mac,
        name: d.name,
        group: d.group,
    })?;
    Ok(Json(serde_json::json!({ "config_version": version })))
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
