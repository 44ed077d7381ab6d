//! The router web page: static assets embedded in the binary and the JSON it calls under
//! `/api/ui/`, served on the agent API's HTTPS port (one port to open, one certificate).
//!
//! Authentication (rules in [`crate::auth`]): first run sets the admin password with the
//! setup token; then a password login gives a session cookie (HttpOnly, Secure,
//! SameSite=Strict). Every state-changing request must also carry the session's CSRF token
//! in the `X-Trellis-Csrf` header: a cross-site form cannot set headers, and a cross-site
//! script cannot read the token. Before login the header must still be present (any value),
//! which forces a CORS preflight this server never answers.
//!
//! The handlers only translate HTTP: every rule lives in [`Home`] or [`crate::auth`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::extract::Json;
use crate::api::extract::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use trellis_proto::api::NodeInfo;
use trellis_proto::api::{CertHealth, LinkVerdict};
use trellis_proto::pairing::ApiError;
use trellis_proto::NodeName;

use super::bad_json;
use crate::auth::{self, HashBusy, Hasher, Sessions, Throttle};
use crate::ca::unix_now;
use crate::error::HomeError;
use crate::home::Home;
use crate::metrics::LoginRefusal;
use crate::pairing::Progress;

pub const COOKIE: &str = "trellis_session";
pub const CSRF_HEADER: &str = "x-trellis-csrf";
/// The page's requests are small forms.
const MAX_BODY: usize = 16 * 1024;
/// The root CA gets a warning this long before it expires.
const CA_WARN_S: u64 = 90 * 24 * 3600;

/// Content-Security-Policy of every page response: only our own scripts and styles, no
/// inline code, no framing. SVG presentation attributes are not styles, so the map works.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file of the page.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset {
            path: $path,
            mime: $mime,
            body: include_bytes!(concat!("../../../../web/ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything the page is made of; `cargo test` checks the total stays under the budget.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("lib.js", JS),
    asset!("map.js", JS),
    asset!("pages/home.js", JS),
    asset!("pages/routers.js", JS),
    asset!("pages/services.js", JS),
    asset!("pages/policy.js", JS),
    asset!("pages/certificates.js", JS),
    asset!("pages/traffic.js", JS),
    asset!("pages/graph.js", JS),
    asset!("pages/wifi.js", JS),
    asset!("pages/traces.js", JS),
];

/// The page's state: the home, the sessions, the throttle, the password hasher.
pub struct Web {
    home: Arc<Home>,
    sessions: Sessions,
    throttle: Throttle,
    hasher: Hasher,
}

pub fn router(home: Arc<Home>) -> Router {
    let web = Arc::new(Web {
        home,
        sessions: Sessions::default(),
        throttle: Throttle::default(),
        hasher: Hasher::default(),
    });
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/ui/{*path}", get(asset))
        .route("/api/ui/session", get(session))
        .route("/api/ui/setup", post(setup))
        .route("/api/ui/login", post(login))
        .route("/api/ui/logout", post(logout))
        .route("/api/ui/overview", get(overview))
        .route("/api/ui/routers", get(routers))
        .route(
            "/api/ui/routers/{name}",
            axum::routing::delete(remove_router),
        )
        .route("/api/ui/routers/{name}/label", put(set_label))
        .route("/api/ui/pairing-codes", post(new_code))
        .route("/api/ui/pairing-codes/{slot}", get(pairing_progress))
        .route("/api/ui/devices", get(devices).post(set_device))
        .route("/api/ui/groups", get(groups))
        .route("/api/ui/certificates", get(certificates))
        .route("/api/ui/services", get(services))
        .route("/api/ui/policy", get(policy))
        .route("/api/ui/policy/rules", post(add_rule))
        .route(
            "/api/ui/policy/rules/{name}",
            axum::routing::delete(remove_rule),
        )
        .route("/api/ui/why", get(why))
        .route("/api/ui/traffic", get(traffic))
        .route("/api/ui/graph", get(graph))
        .route("/api/ui/wifi", get(wifi::show))
        .route("/api/ui/wifi/import", post(wifi::import))
        .route("/api/ui/wifi/{kind}", put(wifi::set).delete(wifi::remove))
        .route("/api/ui/traces", get(traces::traces))
        .route("/api/ui/speedtests", get(speedtests).post(start_speedtest))
        .route("/api/ui/speedtests/{id}", get(speedtest))
        .route("/api/ui/events", get(events))
        .route("/api/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

// --- errors --------------------------------------------------------------------------------

/// An error for the page: a status and a sentence that says what to do.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    message: String,
}

impl WebError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<HomeError> for WebError {
    fn from(e: HomeError) -> Self {
        Self::new(super::status_of(e.kind), e.message)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response()
    }
}

type WebResult<T> = Result<T, WebError>;

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> WebResult<T> {
    body.map(|Json(t)| t).map_err(|e| bad_json(e).into())
}

// --- assets --------------------------------------------------------------------------------

fn serve_asset(a: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, a.mime),
            // Embedded in the binary: a new version comes with a restart; revalidate cheaply.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        a.body,
    )
        .into_response()
}

async fn index() -> Response {
    match ASSETS.iter().find(|a| a.path == "index.html") {
        Some(a) => serve_asset(a),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => serve_asset(a),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Total size of the page's files, raw (the gzip size is checked by a test).
pub fn asset_files() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    ASSETS.iter().map(|a| (a.path, a.body))
}

/// The OpenAPI document of every API (public: it holds no secret).
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::OPENAPI,
    )
}

mod activity;
mod devices;
mod routers;
mod services;
mod session;
mod traces;
mod wifi;

use activity::*;
use devices::*;
use routers::*;
use services::*;
use session::*;
pub use session::{Admin, ClientAddr, ServerAddr};

#[cfg(test)]
mod tests;
