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
            body: include_bytes!(concat!("../../../web/ui/", $path)),
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

// --- sessions ------------------------------------------------------------------------------

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn session_cookie(value: &str) -> HeaderValue {
    // No Max-Age: the browser forgets it when it closes; the server forgets it sooner.
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("trellis_session=; Path=/"))
}

const CLEAR_COOKIE: &str = "trellis_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0";

/// A request from a logged-in admin; for state-changing methods, CSRF-checked too.
pub struct Admin;

impl FromRequestParts<Arc<Web>> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> WebResult<Self> {
        let login_again = || {
            WebError::new(
                StatusCode::UNAUTHORIZED,
                "you are not logged in (or the session expired): log in again",
            )
        };
        let cookie = cookie_value(&parts.headers).ok_or_else(login_again)?;
        let session = web
            .sessions
            .check(&cookie, Instant::now(), web.home.password_epoch())
            .ok_or_else(login_again)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !auth::token_matches(&session.csrf, sent) || sent.is_empty() {
                return Err(WebError::new(
                    StatusCode::FORBIDDEN,
                    "this request did not come from the Trellis page (CSRF check failed): reload the page and try again",
                ));
            }
        }
        Ok(Admin)
    }
}

/// Login and first-run setup come from the page itself: they must carry the custom header,
/// and browsers that send Fetch Metadata must call it same-origin.
fn same_origin_form(headers: &HeaderMap) -> WebResult<()> {
    let refused = || {
        WebError::new(
            StatusCode::FORBIDDEN,
            "this request did not come from the Trellis page: open the router page and try again",
        )
    };
    if !headers.contains_key(CSRF_HEADER) {
        return Err(refused());
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(refused()),
    }
}

#[derive(Serialize)]
struct SessionState {
    /// "setup" (no password yet), "login", or "ready".
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    home_id: Option<String>,
}

async fn session(State(web): State<Arc<Web>>, headers: HeaderMap) -> WebResult<Json<SessionState>> {
    if web.home.admin_password()?.is_none() {
        return Ok(Json(SessionState {
            state: "setup",
            csrf: None,
            home_id: None,
        }));
    }
    let live = cookie_value(&headers).and_then(|c| {
        web.sessions
            .check(&c, Instant::now(), web.home.password_epoch())
    });
    Ok(Json(match live {
        Some(s) => SessionState {
            state: "ready",
            csrf: Some(s.csrf),
            home_id: Some(web.home.home_id().to_string()),
        },
        None => SessionState {
            state: "login",
            csrf: None,
            home_id: None,
        },
    }))
}

fn logged_in(web: &Web) -> Response {
    let s = web
        .sessions
        .create(Instant::now(), web.home.password_epoch());
    let mut resp = Json(SessionState {
        state: "ready",
        csrf: Some(s.csrf),
        home_id: Some(web.home.home_id().to_string()),
    })
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&s.cookie));
    resp
}

/// The TCP peer of a request, put in its extensions by the server (`api::agent::serve`);
/// the login throttle counts per address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The controller's own address the request came in on (put beside [`ClientAddr`]): a client
/// at that address is the router itself, which keeps the admin's hashing lane.
#[derive(Debug, Clone, Copy)]
pub struct ServerAddr(pub std::net::SocketAddr);

fn from_router_itself(client: Option<IpAddr>, server: Option<Extension<ServerAddr>>) -> bool {
    matches!((client, server), (Some(c), Some(Extension(ServerAddr(s)))) if c == s.ip())
}

/// The hasher could not take the try: it was not checked, so it does not count.
fn hash_busy(web: &Web, from: Option<IpAddr>, busy: HashBusy) -> WebError {
    web.throttle.forgive(from);
    web.home.counters.login_refused(LoginRefusal::Busy);
    let status = match busy {
        HashBusy::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        HashBusy::SourceBusy => StatusCode::TOO_MANY_REQUESTS,
    };
    WebError::new(status, busy.message())
}

fn throttled(web: &Web, from: Option<IpAddr>, what: &str) -> WebResult<()> {
    web.throttle.begin(from, Instant::now()).map_err(|wait| {
        web.home.counters.login_refused(LoginRefusal::Throttled);
        WebError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong {what}s in the last minute: wait {wait} s and try again"),
        )
    })
}

#[derive(Deserialize)]
struct SetupBody {
    token: String,
    password: String,
}

async fn setup(
    State(web): State<Arc<Web>>,
    client: Option<Extension<ClientAddr>>,
    server: Option<Extension<ServerAddr>>,
    headers: HeaderMap,
    body: Result<Json<SetupBody>, JsonRejection>,
) -> WebResult<Response> {
    same_origin_form(&headers)?;
    let body = json_body(body)?;
    if web.home.admin_password()?.is_some() {
        return Err(WebError::new(
            StatusCode::CONFLICT,
            "the admin password is already set: log in with it",
        ));
    }
    auth::check_new_password(&body.password)?;
    let from = client.map(|Extension(ClientAddr(a))| a.ip());
    throttled(&web, from, "setup token")?;
    let real = web.home.setup_token()?;
    if !auth::token_matches(&real, &body.token) {
        tracing::warn!("web page: wrong setup token");
        web.home
            .counters
            .login_refused(LoginRefusal::WrongSetupToken);
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            format!(
                "that is not the setup token: run `trellis setup-token` on the router, or read {}",
                auth::setup_token_path(&web.home.settings().data_dir).display()
            ),
        ));
    }
    web.throttle.succeeded(from, Instant::now());
    let lane = web
        .throttle
        .lane(from, from_router_itself(from, server), Instant::now());
    let rec = web
        .hasher
        .hash(from, lane, body.password, unix_now())
        .await
        .map_err(|busy| hash_busy(&web, from, busy))?;
    web.home.set_first_admin_password(&rec)?;
    Ok(logged_in(&web))
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

async fn login(
    State(web): State<Arc<Web>>,
    client: Option<Extension<ClientAddr>>,
    server: Option<Extension<ServerAddr>>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> WebResult<Response> {
    same_origin_form(&headers)?;
    let body = json_body(body)?;
    let Some(rec) = web.home.admin_password()? else {
        return Err(WebError::new(
            StatusCode::CONFLICT,
            "no admin password is set yet: set one with the setup token (trellis setup-token)",
        ));
    };
    let from = client.map(|Extension(ClientAddr(a))| a.ip());
    throttled(&web, from, "password")?;
    let lane = web
        .throttle
        .lane(from, from_router_itself(from, server), Instant::now());
    let ok = web
        .hasher
        .verify(from, lane, rec, body.password)
        .await
        .map_err(|busy| hash_busy(&web, from, busy))?;
    if !ok {
        tracing::warn!("web page: wrong admin password");
        web.home.counters.login_refused(LoginRefusal::WrongPassword);
        return Err(WebError::new(
            StatusCode::UNAUTHORIZED,
            "wrong password: try again (forgotten? run `trellis reset-password` on the router and set a new one)",
        ));
    }
    web.throttle.succeeded(from, Instant::now());
    tracing::info!("web page: admin logged in");
    Ok(logged_in(&web))
}

async fn logout(State(web): State<Arc<Web>>, _: Admin, headers: HeaderMap) -> Response {
    if let Some(c) = cookie_value(&headers) {
        web.sessions.end(&c);
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE))],
    )
        .into_response()
}

// --- views ---------------------------------------------------------------------------------

/// A router as the page shows it.
#[derive(Debug, Serialize)]
pub struct RouterView {
    pub name: String,
    pub label: Option<String>,
    pub identity: String,
    /// "online", "connecting" (not seen yet since the controller started), "offline",
    /// "removed".
    pub state: &'static str,
    pub last_seen_s: Option<u64>,
    pub enrolled_at: u64,
    pub cert_not_after: Option<u64>,
    pub cert_expires_in_s: Option<i64>,
    /// The controller's verdict on it ([`crate::health::certificate`]).
    pub cert_health: Option<trellis_proto::api::CertHealth>,
    pub acked_version: u64,
    pub addresses: Vec<String>,
    pub agent_version: String,
    /// Devices behind this router (the wifi clients of its access points, and the DHCP
    /// leases of devices associated nowhere else) and the catalog services it fronts.
    pub devices: Vec<String>,
    pub services: Vec<String>,
    /// The router the controller runs on (the centre of the map).
    pub portal: bool,
    /// Mesh hops from the portal (0 for the portal); `None` when no path is reported.
    pub hops: Option<u32>,
}

/// A backhaul link between two routers (802.11s or a cable), as the agents report them;
/// the map draws and colours whatever arrives here.
#[derive(Debug, Serialize)]
pub struct LinkView {
    pub from: String,
    pub to: String,
    pub medium: trellis_proto::api::LinkMedium,
    pub signal_dbm: Option<i32>,
    pub expected_throughput_kbps: Option<u32>,
    pub airtime_metric: Option<u32>,
    pub verdict: LinkVerdict,
}

#[derive(Debug, Serialize)]
pub struct Warning {
    /// "warning" or "error".
    pub level: &'static str,
    pub subject: String,
    pub message: String,
}

/// The router's state on the page: the controller's one liveness rule.
fn router_state(web: &Web, n: &NodeInfo) -> &'static str {
    web.home.liveness(&n.name, n.revoked).as_str()
}

fn router_views(web: &Web) -> WebResult<Vec<RouterView>> {
    let now = unix_now() as i64;
    // Which catalog services run behind each router (for the map and the router cards).
    let catalog = web.home.services()?;
    // Devices are named as the device book names them, else by what they told DHCP.
    let book: std::collections::HashMap<String, String> = web
        .home
        .devices()?
        .into_iter()
        .map(|d| (d.mac, d.name))
        .collect();
    let device_name = |d: &trellis_proto::api::SeenDevice| {
        crate::home::normalise_mac(&d.mac)
            .and_then(|m| book.get(&m).cloned())
            .or_else(|| d.dhcp_name().map(str::to_owned))
            .unwrap_or_else(|| d.mac.clone())
    };
    let services_on = |node: &NodeName| -> Vec<String> {
        catalog
            .iter()
            .filter(|s| s.instances.iter().any(|i| &i.node == node))
            .map(|s| s.name.clone())
            .collect()
    };
    let placed = web.home.devices_by_router()?;
    Ok(web
        .home
        .nodes()?
        .into_iter()
        .map(|n| {
            let t = web.home.telemetry(&n.name).unwrap_or_default();
            let devices = placed.get(&n.name).map(Vec::as_slice).unwrap_or_default();
            let services = services_on(&n.name);
            RouterView {
                state: router_state(web, &n),
                name: n.name.to_string(),
                label: n.label,
                identity: n.identity.to_string(),
                last_seen_s: n.last_seen_s,
                enrolled_at: n.enrolled_at,
                cert_not_after: n.cert_not_after,
                cert_expires_in_s: n.cert_not_after.map(|t| t as i64 - now),
                cert_health: n.cert_health,
                acked_version: n.acked_version,
                addresses: t.addresses,
                agent_version: t.agent_version,
                devices: devices.iter().map(device_name).collect(),
                services,
                portal: n.portal,
                hops: n.hops,
            }
        })
        .collect())
}

fn warnings(web: &Web, routers: &[RouterView]) -> Vec<Warning> {
    let mut out = Vec::new();
    for r in routers.iter().filter(|r| r.state != "removed") {
        let who = r.label.clone().unwrap_or_else(|| r.name.clone());
        if r.state == "offline" {
            out.push(Warning {
                level: "error",
                subject: who.clone(),
                message: format!(
                    "{who} is offline: it has not called the controller {}. Check that it has power and a link to the mesh.",
                    r.last_seen_s
                        .map(|s| format!("for {} min", s / 60))
                        .unwrap_or_else(|| "since the controller started".into())
                ),
            });
        }
        match r.cert_health {
            Some(CertHealth::Expired { .. }) => out.push(Warning {
                level: "error",
                subject: who.clone(),
                message: format!("{who}'s certificate has expired: the router cannot join the service mesh until it renews. Check that it is online and its clock is right."),
            }),
            Some(CertHealth::RenewalLate { expires_in_s }) => out.push(Warning {
                level: "warning",
                subject: who.clone(),
                message: format!("{who}'s certificate expires in {} min and was not renewed yet. Check that it is online.", expires_in_s / 60),
            }),
            _ => {}
        }
    }
    out.extend(link_warnings(routers, &web.home.topology()));
    let ca_left = web.home.ca().not_after().saturating_sub(unix_now());
    if ca_left < CA_WARN_S {
        out.push(Warning {
            level: if ca_left == 0 { "error" } else { "warning" },
            subject: "Home CA".into(),
            message: format!(
                "the home's root certificate expires in {} days; back it up and plan a new home CA",
                ca_left / 86400
            ),
        });
    }
    out
}

/// One warning per mesh link in trouble (weak, unstable, paused, too close), with the advice
/// of the router that reported it. Both ends report a link: the pair is named once.
fn link_warnings(
    routers: &[RouterView],
    links: &[trellis_proto::api::TopologyLink],
) -> Vec<Warning> {
    let name = |n: &str| {
        routers
            .iter()
            .find(|r| r.name == n)
            .map(|r| r.label.clone().unwrap_or_else(|| r.name.clone()))
            .unwrap_or_else(|| n.to_owned())
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for l in links {
        let (what, level) = match l.verdict {
            LinkVerdict::Unstable => ("unstable", "warning"),
            LinkVerdict::Blocked => ("paused: it kept dropping", "warning"),
            LinkVerdict::Weak => ("weak", "warning"),
            LinkVerdict::TooClose => ("too strong (the routers are very close)", "warning"),
            LinkVerdict::Good | LinkVerdict::Fair | LinkVerdict::Unknown => continue,
        };
        let (a, b) = (l.from.to_string(), l.to.clone());
        let pair = if a < b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        if !seen.insert(pair) {
            continue;
        }
        let advice = if l.advice.is_empty() {
            String::new()
        } else {
            format!(": {}", l.advice.join("; "))
        };
        out.push(Warning {
            level,
            subject: format!("{} ↔ {}", name(&a), name(&b)),
            message: format!(
                "The link between {} and {} is {what}{advice}.",
                name(&a),
                name(&b)
            ),
        });
    }
    out
}

#[derive(Serialize)]
struct Overview {
    home_id: String,
    /// The router the controller runs on, once its agent joined (`trellis pair --this-router`).
    portal: Option<String>,
    config_version: u64,
    controller_version: String,
    routers: Vec<RouterView>,
    links: Vec<LinkView>,
    warnings: Vec<Warning>,
}

async fn overview(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<Overview>> {
    let status = web.home.status()?;
    let routers = router_views(&web)?;
    let warnings = warnings(&web, &routers);
    Ok(Json(Overview {
        home_id: status.home_id.to_string(),
        portal: routers
            .iter()
            .find(|r| r.portal && r.state != "removed")
            .map(|r| r.name.clone()),
        config_version: status.config_version,
        controller_version: status.controller_version,
        routers,
        links: web
            .home
            .topology()
            .into_iter()
            .map(|l| LinkView {
                from: l.from.to_string(),
                to: l.to,
                medium: l.medium,
                signal_dbm: l.signal_dbm,
                expected_throughput_kbps: l.expected_throughput_kbps,
                airtime_metric: l.airtime_metric,
                verdict: l.verdict,
            })
            .collect(),
        warnings,
    }))
}

async fn routers(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<Vec<RouterView>>> {
    router_views(&web).map(Json)
}

fn node_name(name: String) -> WebResult<NodeName> {
    NodeName::new(name).map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn remove_router(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(name): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let removed = web.home.remove_node(&node_name(name)?)?;
    Ok(Json(serde_json::json!({
        "identity": removed.identity.to_string(),
        "config_version": removed.config_version,
    })))
}

#[derive(Deserialize)]
struct LabelBody {
    label: String,
}

async fn set_label(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(name): Path<String>,
    body: Result<Json<LabelBody>, JsonRejection>,
) -> WebResult<StatusCode> {
    let body = json_body(body)?;
    web.home.set_label(&node_name(name)?, &body.label)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct CodeView {
    code: String,
    slot: String,
    expires_in_s: u64,
}

async fn new_code(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<(StatusCode, Json<CodeView>)> {
    let c = web.home.new_pairing_code(false)?;
    let slot = c
        .code
        .get(..trellis_proto::pairing::CODE_SLOT_LEN)
        .unwrap_or_default()
        .to_owned();
    Ok((
        StatusCode::CREATED,
        Json(CodeView {
            code: c.code,
            slot,
            expires_in_s: c.expires_in_s,
        }),
    ))
}

#[derive(Serialize)]
struct ProgressView {
    /// "waiting" → "pairing" → "enrolled" → "meshed"; or "expired".
    stage: &'static str,
    node: Option<String>,
    tries: u32,
    expires_in_s: u64,
    /// What an enrolled router still waits for, in words for the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

/// Whether an enrolled router is in the mesh: it follows the controller's config over its
/// own certificate, is heard from, and has its wifi mesh link if it runs one.
fn in_the_mesh(web: &Web, n: &NodeInfo) -> (bool, Option<&'static str>) {
    if n.revoked || n.acked_version == 0 || router_state(web, n) != "online" {
        return (false, None);
    }
    match web.home.waiting_for_mesh_link(n) {
        Some(why) => (false, Some(why)),
        None => (true, None),
    }
}

async fn pairing_progress(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(slot): Path<String>,
) -> WebResult<Json<ProgressView>> {
    let view = |stage, node: Option<String>, tries, left: Duration| ProgressView {
        stage,
        node,
        tries,
        expires_in_s: left.as_secs(),
        detail: None,
    };
    Ok(Json(match web.home.pairing_progress(&slot) {
        Progress::Waiting { expires_in } => view("waiting", None, 0, expires_in),
        Progress::Pairing {
            node,
            tries,
            expires_in,
        } => view("pairing", node.map(|n| n.to_string()), tries, expires_in),
        Progress::Used { node } => {
            // Enrolled; "meshed" once the new router is in the mesh (see in_the_mesh).
            let info = web.home.nodes()?.into_iter().find(|n| n.name == node);
            let (meshed, detail) = info.map(|n| in_the_mesh(&web, &n)).unwrap_or_default();
            let stage = if meshed { "meshed" } else { "enrolled" };
            ProgressView {
                detail,
                ..view(stage, Some(node.to_string()), 0, Duration::ZERO)
            }
        }
        Progress::Gone => view("expired", None, 0, Duration::ZERO),
    }))
}

#[derive(Serialize, Deserialize)]
struct DeviceView {
    mac: String,
    name: String,
    group: String,
}

/// The device book and what the routers see (`group` null: not in the book yet), so the
/// page can offer the devices people have rather than ask for a MAC.
async fn devices(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<Json<Vec<trellis_proto::api::DeviceListing>>> {
    Ok(Json(web.home.device_listing()?))
}

async fn set_device(
    State(web): State<Arc<Web>>,
    _: Admin,
    body: Result<Json<DeviceView>, JsonRejection>,
) -> WebResult<Json<serde_json::Value>> {
    let d = json_body(body)?;
    let version = web.home.set_device(&d.mac, &d.name, &d.group)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

#[derive(Serialize)]
struct GroupView {
    name: String,
    builtin: bool,
}

async fn groups(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<Vec<GroupView>>> {
    Ok(Json(
        web.home
            .groups()?
            .into_iter()
            .map(|(name, builtin)| GroupView { name, builtin })
            .collect(),
    ))
}

#[derive(Serialize)]
struct CertificatesView {
    home_id: String,
    ca_not_after: u64,
    ca_expires_in_s: i64,
    /// SHA-256 of the CA certificate (DER), to compare with `trellis ca-backup`.
    ca_fingerprint: String,
    leaf_ttl_s: u64,
    routers: Vec<RouterView>,
}

fn fingerprint(pem: &str) -> String {
    trellis_proto::tls::certs_from_pem(pem, "the home CA")
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|der| {
            let d = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
            d.as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default()
}

async fn certificates(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<CertificatesView>> {
    let ca = web.home.ca();
    Ok(Json(CertificatesView {
        home_id: web.home.home_id().to_string(),
        ca_not_after: ca.not_after(),
        ca_expires_in_s: ca.not_after() as i64 - unix_now() as i64,
        ca_fingerprint: fingerprint(ca.cert_pem()),
        leaf_ttl_s: web.home.settings().leaf_ttl.as_secs(),
        routers: router_views(&web)?,
    }))
}

/// A service as the Services page lists it.
#[derive(Serialize)]
struct ServiceView {
    name: String,
    mesh_name: String,
    identity: String,
    vip: String,
    ports: Vec<u16>,
    /// Where it runs: router, address, reachability.
    instances: Vec<serde_json::Value>,
    learned_via: String,
    /// Groups, devices and service identities that reach it, each with why ("by default",
    /// "rule NAME"), as the policy engine answers.
    reached_by: Vec<String>,
}

/// Who reaches `service`, each with why: every group (a device of it that no device rule
/// names), every device whose answer differs from its group's, and every service identity a
/// rule names. Each answer is the policy engine's own ([`Policy::evaluate`], what `trellis
/// why` asks), so the page cannot contradict it. A group refused the service as a whole but
/// granted some of its ports is listed with those ports.
///
/// [`Policy::evaluate`]: trellis_proto::policy::Policy::evaluate
fn reached_by(
    policy: &trellis_proto::policy::Policy,
    devices: &[trellis_proto::policy::Device],
    service: &str,
    ports: &[u16],
) -> Vec<String> {
    use trellis_proto::policy::{Basis, Decision, Source, SourceMatch};
    let why = |d: &Decision| match &d.basis {
        Basis::Rule { name, .. } => format!("rule {name}"),
        Basis::GroupDefault { .. } => "by default".to_owned(),
        Basis::UndefinedGroup { .. } | Basis::WorkloadDefault => "no rule".to_owned(),
    };
    // Allowed as a whole, or on these ports (each with the deciding rule).
    let reach = |source: &Source| -> Option<String> {
        let whole = policy.evaluate(source, service, None);
        if whole.allowed() {
            return Some(why(&whole));
        }
        let open: Vec<(u16, String)> = ports
            .iter()
            .map(|p| policy.evaluate(source, service, Some(*p)))
            .filter(|d| d.allowed())
            .map(|d| (d.port.unwrap_or_default(), why(&d)))
            .collect();
        let (_, first_why) = open.first()?;
        let list: Vec<String> = open.iter().map(|(p, _)| p.to_string()).collect();
        Some(format!("{first_why}, port {}", list.join(", ")))
    };
    let member = |group: &str| Source::Device {
        name: None,
        mac: None,
        ip: None,
        group: group.to_owned(),
        joined: None,
        book_group: None,
    };
    let mut out = Vec::new();
    for g in &policy.groups {
        if let Some(w) = reach(&member(&g.name)) {
            out.push(format!("{} ({w})", g.name));
        }
    }
    for d in devices {
        let source = Source::device(devices, policy, Some(d.mac), None);
        let (mine, groups) = (reach(&source), reach(&member(&d.group)));
        match (mine, groups.is_some()) {
            (Some(w), false) => out.push(format!("{} ({w})", d.name)),
            (None, true) => {
                let refused = policy.evaluate(&source, service, None);
                out.push(format!("not {} ({})", d.name, why(&refused)));
            }
            _ => {}
        }
    }
    let mut identities: Vec<&trellis_proto::SpiffeId> = policy
        .rules
        .iter()
        .flat_map(|r| &r.sources)
        .filter_map(|m| match m {
            SourceMatch::Identity(id) => Some(id),
            _ => None,
        })
        .collect();
    identities.sort_by_key(|id| id.to_string());
    identities.dedup();
    for id in identities {
        if let Some(w) = reach(&Source::Workload(id.clone())) {
            out.push(format!("{id} ({w})"));
        }
    }
    out
}

async fn services(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<serde_json::Value>> {
    let policy = web.home.policy();
    let snapshot = web.home.snapshot();
    let items: Vec<ServiceView> = web
        .home
        .services()?
        .into_iter()
        .map(|s| ServiceView {
            mesh_name: s.mesh_name(),
            identity: s.identity.to_string(),
            vip: s.vip.to_string(),
            ports: s.ports.iter().map(|p| p.port).collect(),
            instances: s
                .instances
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "router": i.node.to_string(),
                        "addr": i.addr.to_string(),
                        "reachable": i.reachable,
                    })
                })
                .collect(),
            learned_via: s.learned_via.to_string(),
            reached_by: reached_by(
                &policy,
                &snapshot.devices,
                &s.name,
                &s.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            ),
            name: s.name,
        })
        .collect();
    Ok(Json(serde_json::json!({
        "available": true,
        "reason": "No services yet: agents add what they find on their routers (mDNS, DHCP); add one by hand with `trellis add-service`.",
        "items": items,
    })))
}

async fn policy(State(web): State<Arc<Web>>, _: Admin) -> Json<serde_json::Value> {
    let p = web.home.policy();
    Json(serde_json::json!({
        "available": true,
        "reason": "No rules yet: trusted devices reach every service; IoT devices and guests reach nothing until a rule allows it.",
        "items": p.rules,
        "groups": p.groups,
        "unknown_device_group": p.unknown_device_group,
    }))
}

async fn add_rule(
    State(web): State<Arc<Web>>,
    _: Admin,
    body: Result<Json<trellis_proto::policy::Rule>, JsonRejection>,
) -> WebResult<Json<serde_json::Value>> {
    let rule = json_body(body)?;
    let version = web.home.add_rule(rule)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

async fn remove_rule(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(name): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let version = web.home.remove_rule(&name)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

#[derive(Deserialize)]
struct WhyQuery {
    source: String,
    target: String,
}

async fn why(
    State(web): State<Arc<Web>>,
    _: Admin,
    query: Result<crate::api::extract::Query<WhyQuery>, crate::api::extract::QueryRejection>,
) -> WebResult<Json<trellis_proto::api::WhyAnswer>> {
    let crate::api::extract::Query(q) =
        query.map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(web.home.why(q.source.trim(), q.target.trim())?))
}

/// The OpenAPI document of every API (public: it holds no secret).
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::OPENAPI,
    )
}

async fn events(State(web): State<Arc<Web>>, _: Admin) -> Json<Vec<crate::home::Event>> {
    Json(web.home.events())
}

#[derive(Serialize)]
struct Traffic {
    available: bool,
    /// Bytes are counted when a connection closes.
    note: &'static str,
    items: Vec<crate::traffic::ServiceChart>,
}

async fn traffic(State(web): State<Arc<Web>>, _: Admin) -> Json<Traffic> {
    Json(Traffic {
        available: true,
        note: "Per minute, from the routers' proxies (reported every 30 s); bytes count when a connection ends.",
        items: web.home.traffic(),
    })
}

async fn speedtests(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> Json<Vec<trellis_proto::api::SpeedTest>> {
    Json(web.home.speedtests())
}

async fn start_speedtest(
    State(web): State<Arc<Web>>,
    _: Admin,
    body: Result<Json<trellis_proto::api::NewSpeedTest>, JsonRejection>,
) -> WebResult<(StatusCode, Json<trellis_proto::api::SpeedTest>)> {
    let req = json_body(body)?;
    Ok((StatusCode::ACCEPTED, Json(web.home.start_speedtest(&req)?)))
}

async fn speedtest(
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

mod traces;

#[cfg(test)]
mod tests;
