//! `/v1/admin/channel`: the home's mesh channel (survey per router, current channel, the
//! rule's choice and runner-up) and the requests that move it (`set`, `pick`, `exclude_dfs`).
//! Routed in [`super::admin`]; the logic is [`crate::channel::home`]'s.

use std::sync::Arc;

use crate::api::extract::Json;
use crate::api::extract::JsonRejection;
use axum::extract::State;

use super::bad_json;
use crate::channel::home::{ChannelRequest, ChannelView};
use crate::error::HomeError;
use crate::home::Home;

pub async fn show(State(home): State<Arc<Home>>) -> Result<Json<ChannelView>, HomeError> {
    home.channel_view().map(Json)
}

pub async fn request(
    State(home): State<Arc<Home>>,
    body: Result<Json<ChannelRequest>, JsonRejection>,
) -> Result<Json<ChannelView>, HomeError> {
    let Json(req) = body.map_err(bad_json)?;
    home.channel_request(&req).map(Json)
}
