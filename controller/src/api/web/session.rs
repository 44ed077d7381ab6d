//! Sessions: the cookie, the CSRF header, the [`Admin`] extractor that every page handler
//! takes, and first-run setup, login and logout with the hasher's and the throttle's limits.

use super::*;

pub(super) fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

pub(super) fn session_cookie(value: &str) -> HeaderValue {
    // No Max-Age: the browser forgets it when it closes; the server forgets it sooner.
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("trellis_session=; Path=/"))
}

pub(super) const CLEAR_COOKIE: &str =
    "trellis_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0";

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
pub(super) fn same_origin_form(headers: &HeaderMap) -> WebResult<()> {
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
pub(super) struct SessionState {
    /// "setup" (no password yet), "login", or "ready".
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    home_id: Option<String>,
}

pub(super) async fn session(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
) -> WebResult<Json<SessionState>> {
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

pub(super) fn logged_in(web: &Web) -> Response {
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

/// The TCP peer of a request, put in its extensions by the server (`api::port::serve`);
/// the login throttle counts per address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The controller's own address the request came in on (put beside [`ClientAddr`]): a client
/// at that address is the router itself, which keeps the admin's hashing lane.
#[derive(Debug, Clone, Copy)]
pub struct ServerAddr(pub std::net::SocketAddr);

pub(super) fn from_router_itself(
    client: Option<IpAddr>,
    server: Option<Extension<ServerAddr>>,
) -> bool {
    matches!((client, server), (Some(c), Some(Extension(ServerAddr(s)))) if c == s.ip())
}

/// The hasher could not take the try: it was not checked, so it does not count.
pub(super) fn hash_busy(web: &Web, from: Option<IpAddr>, busy: HashBusy) -> WebError {
    web.throttle.forgive(from);
    web.home.counters.login_refused(LoginRefusal::Busy);
    let status = match busy {
        HashBusy::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        HashBusy::SourceBusy => StatusCode::TOO_MANY_REQUESTS,
    };
    WebError::new(status, busy.message())
}

pub(super) fn throttled(web: &Web, from: Option<IpAddr>, what: &str) -> WebResult<()> {
    web.throttle.begin(from, Instant::now()).map_err(|wait| {
        web.home.counters.login_refused(LoginRefusal::Throttled);
        WebError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong {what}s in the last minute: wait {wait} s and try again"),
        )
    })
}

#[derive(Deserialize)]
pub(super) struct SetupBody {
    token: String,
    password: String,
}

pub(super) async fn setup(
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
pub(super) struct LoginBody {
    password: String,
}

pub(super) async fn login(
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

pub(super) async fn logout(State(web): State<Arc<Web>>, _: Admin, headers: HeaderMap) -> Response {
    if let Some(c) = cookie_value(&headers) {
        web.sessions.end(&c);
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE))],
    )
        .into_response()
}
