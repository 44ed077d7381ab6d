//! Activity: the event log, the traffic chart and speed tests.

use super::*;

pub(super) async fn events(State(web): State<Arc<Web>>, _: Admin) -> Json<Vec<crate::home::Event>> {
    Json(web.home.events())
}

#[derive(Serialize)]
pub(super) struct Traffic {
    available: bool,
    /// Bytes are counted when a connection closes.
    note: &'static str,
    items: Vec<crate::traffic::ServiceChart>,
}

/// The page's map of services: `GET /api/ui/graph?window=MIN`.
pub(super) async fn graph(
    State(web): State<Arc<Web>>,
    _: Admin,
    query: Result<
        crate::api::extract::Query<crate::graph::GraphQuery>,
        crate::api::extract::QueryRejection,
    >,
) -> WebResult<Json<crate::graph::DependencyMap>> {
    let crate::api::extract::Query(q) =
        query.map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(web.home.dependency_map(q.window()?)))
}

pub(super) async fn traffic(State(web): State<Arc<Web>>, _: Admin) -> Json<Traffic> {
    Json(Traffic {
        available: true,
        note: "Per minute, from the routers' proxies (reported every 30 s); bytes count when a connection ends.",
        items: web.home.traffic(),
    })
}

pub(super) async fn speedtests(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> Json<Vec<trellis_proto::api::SpeedTest>> {
    Json(web.home.speedtests())
}

pub(super) async fn start_speedtest(
    State(web): State<Arc<Web>>,
    _: Admin,
    body: Result<Json<trellis_proto::api::NewSpeedTest>, JsonRejection>,
) -> WebResult<(StatusCode, Json<trellis_proto::api::SpeedTest>)> {
    let req = json_body(body)?;
    Ok((StatusCode::ACCEPTED, Json(web.home.start_speedtest(&req)?)))
}

pub(super) async fn speedtest(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(id): Path<String>,
) -> WebResult<Json<trellis_proto::api::SpeedTest>> {
    let id = id.parse::<u64>().map_err(|_| {
        WebError::new(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a speed test number"),
        )
    })?;
    Ok(Json(web.home.speedtest(id)?))
}
