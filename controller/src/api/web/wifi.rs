//! The Wifi page's JSON: the home's networks (passphrases never shown back), setting and
//! removing one, and the first-setup offer to take the primary router's own SSID and key
//! (the rules are [`crate::wifi`]'s; reading the router's wireless config runs `uci`, off the
//! async workers).

use super::*;
use crate::wifi::{NetworkChange, WifiChanged, WifiOffer, WifiShown};

#[derive(Serialize)]
pub(super) struct WifiPage {
    #[serde(flatten)]
    shown: WifiShown,
    /// While the home network is not set: what this router's own wireless config offers.
    offer: Option<WifiOffer>,
}

/// Runs a rule that reads the router's files or runs `uci` on the blocking pool.
async fn blocking<T: Send + 'static>(
    web: &Web,
    f: impl FnOnce(&Home) -> crate::error::Result<T> + Send + 'static,
) -> WebResult<T> {
    let home = web.home.clone();
    tokio::task::spawn_blocking(move || f(&home))
        .await
        .map_err(|_| {
            WebError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the controller stopped that request; try again",
            )
        })?
        .map_err(WebError::from)
}

pub(super) async fn show(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<WifiPage>> {
    let shown = web.home.wifi_shown()?;
    let offer = blocking(&web, |h| h.wifi_offer()).await?;
    Ok(Json(WifiPage { shown, offer }))
}

pub(super) async fn set(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(kind): Path<String>,
    body: Result<Json<NetworkChange>, JsonRejection>,
) -> WebResult<Json<WifiChanged>> {
    let kind = crate::api::wifi::kind(&kind)?;
    let change = json_body(body)?;
    Ok(Json(web.home.set_wifi_network(kind, &change)?))
}

pub(super) async fn remove(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(kind): Path<String>,
) -> WebResult<Json<WifiChanged>> {
    let kind = crate::api::wifi::kind(&kind)?;
    Ok(Json(web.home.remove_wifi_network(kind)?))
}

/// Takes the offer: the router's own SSID and key become the home network.
pub(super) async fn import(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<WifiChanged>> {
    Ok(Json(blocking(&web, |h| h.take_wifi_offer()).await?))
}
