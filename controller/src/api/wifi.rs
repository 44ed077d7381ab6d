//! The home wifi's admin API (`/v1/admin/wifi...`, `/v1/admin/roaming/{device}`): HTTP translation only; the rules are
//! [`crate::wifi`]'s.

use std::sync::Arc;

use crate::api::extract::Json;
use crate::api::extract::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use axum::Router;
use trellis_proto::home_wifi::NetworkKind;

use super::bad_json;
use crate::error::{HomeError, Kind};
use crate::home::Home;
use crate::steering::DeviceSteering;
use crate::wifi::{NetworkChange, WifiChanged, WifiShown};

pub fn admin_routes() -> Router<Arc<Home>> {
    Router::new()
        .route("/v1/admin/wifi", get(show))
        .route(
            "/v1/admin/wifi/{kind}",
            axum::routing::put(set).delete(remove),
        )
        .route("/v1/admin/roaming/{device}", get(roaming))
}

async fn roaming(
    State(home): State<Arc<Home>>,
    UrlPath(device): UrlPath<String>,
) -> Result<Json<DeviceSteering>, HomeError> {
    home.device_steering(&device).map(Json)
}

pub(crate) fn kind(text: &str) -> Result<NetworkKind, HomeError> {
    text.parse()
        .map_err(|e: String| HomeError::new(Kind::NotFound, e))
}

async fn show(State(home): State<Arc<Home>>) -> Result<Json<WifiShown>, HomeError> {
    home.wifi_shown().map(Json)
}

async fn set(
    State(home): State<Arc<Home>>,
    UrlPath(k): UrlPath<String>,
    body: Result<Json<NetworkChange>, JsonRejection>,
) -> Result<Json<WifiChanged>, HomeError> {
    let kind = kind(&k)?;
    let Json(change) = body.map_err(bad_json)?;
    home.set_wifi_network(kind, &change).map(Json)
}

async fn remove(
    State(home): State<Arc<Home>>,
    UrlPath(k): UrlPath<String>,
) -> Result<Json<WifiChanged>, HomeError> {
    home.remove_wifi_network(kind(&k)?).map(Json)
}
