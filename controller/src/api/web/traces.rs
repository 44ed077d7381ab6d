//! The page's trace view: `GET /api/ui/traces?device=D&service=S`, the home's newest
//! connection traces joined across routers (`crate::traces`), for `web/ui/pages/traces.js`.

use std::sync::Arc;

use crate::api::extract::Json;
use crate::api::extract::Query;
use axum::extract::State;
use serde::Serialize;

use super::{Admin, Web};
use crate::api::admin::TracesQuery;

#[derive(Debug, Serialize)]
pub(super) struct Traces {
    note: &'static str,
    items: Vec<crate::traces::TraceView>,
}

pub(super) async fn traces(
    State(web): State<Arc<Web>>,
    _: Admin,
    Query(q): Query<TracesQuery>,
) -> Json<Traces> {
    Json(Traces {
        note: "Newest first, from the routers' proxies (sent every 30 s); each connection is one trace: source proxy, tunnel, destination proxy, last hop.",
        items: web.home.traces(
            q.device.as_deref().filter(|d| !d.is_empty()),
            q.service.as_deref().filter(|s| !s.is_empty()),
            q.limit.unwrap_or(50),
        ),
    })
}
