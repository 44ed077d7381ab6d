//! The web API in process: authentication, CSRF, throttle, and the JSON the page reads.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::home::Settings;

struct Fixture {
    _dir: tempfile::TempDir,
    home: Arc<Home>,
    app: Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(Settings::in_dir(dir.path().join("data"))).unwrap();
    let app = super::super::port::router(home.clone());
    Fixture {
        _dir: dir,
        home,
        app,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: serde_json::Value,
    bytes: Vec<u8>,
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: Option<serde_json::Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("other=1; {COOKIE}={c}"));
    }
    if let Some(t) = csrf {
        req = req.header(CSRF_HEADER, t);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        json,
        bytes,
    }
}

fn cookie_of(a: &Answer) -> String {
    let set = a.headers.get("set-cookie").unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    set.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// First run through the API: returns (cookie, csrf).
async fn set_up(f: &Fixture, password: &str) -> (String, String) {
    let token = f.home.setup_token().unwrap();
    let a = call(
        &f.app,
        "POST",
        "/api/ui/setup",
        None,
        Some("x"),
        Some(serde_json::json!({ "token": token, "password": password })),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    (cookie_of(&a), a.json["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_content_security_policy() {
    let f = fixture();
    let a = call(&f.app, "GET", "/", None, None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let html = String::from_utf8(a.bytes).unwrap();
    assert!(html.contains("/ui/app.js"));
    let csp = a.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(a.headers["x-content-type-options"], "nosniff");
    for (path, _) in asset_files() {
        let a = call(&f.app, "GET", &format!("/ui/{path}"), None, None, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(!a.bytes.is_empty());
    }
    let a = call(&f.app, "GET", "/ui/../store.db", None, None, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // The agent API still answers on the same router.
    let a = call(&f.app, "GET", "/v1/agent/config", None, None, None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn first_run_needs_the_setup_token_and_happens_once() {
    let f = fixture();
    let a = call(&f.app, "GET", "/api/ui/session", None, None, None).await;
    assert_eq!(a.json["state"], "setup");
    let token = f.home.setup_token().unwrap();
    let token_file = crate::auth::setup_token_path(&f.home.settings().data_dir);
    assert!(token_file.exists());

    let body = |t: &str, p: &str| Some(serde_json::json!({ "token": t, "password": p }));
    // Without the custom header: refused (a cross-site form cannot add it).
    let a = call(
        &f.app,
        "POST",
        "/api/ui/setup",
        None,
        None,
        body(&token, "good password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = call(
        &f.app,
        "POST",
        "/api/ui/setup",
        None,
        Some("x"),
        body("wrong", "good password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.json["error"]
        .as_str()
        .unwrap()
        .contains("trellis setup-token"));
    let a = call(
        &f.app,
        "POST",
        "/api/ui/setup",
        None,
        Some("x"),
        body(&token, "short"),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let (cookie, csrf) = set_up(&f, "good password").await;
    assert!(!token_file.exists(), "the token is retired once used");
    assert!(f.home.setup_token().is_err());
    let a = call(&f.app, "GET", "/api/ui/session", Some(&cookie), None, None).await;
    assert_eq!(a.json["state"], "ready");
    assert_eq!(a.json["csrf"], csrf.as_str());
    // A second setup cannot replace the password.
    let a = call(
        &f.app,
        "POST",
        "/api/ui/setup",
        None,
        Some("x"),
        body(&token, "other password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let stored = f.home.admin_password().unwrap().unwrap();
    assert!(crate::auth::verify_password(&stored, "good password"));
}

#[tokio::test]
async fn login_sessions_and_csrf() {
    let f = fixture();
    let (first, _) = set_up(&f, "good password").await;
    let a = call(&f.app, "GET", "/api/ui/overview", None, None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(
        &f.app,
        "GET",
        "/api/ui/overview",
        Some("forged"),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let login = |p: &str| Some(serde_json::json!({ "password": p }));
    let a = call(
        &f.app,
        "POST",
        "/api/ui/login",
        None,
        Some("x"),
        login("bad password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.get("set-cookie").is_none());
    let a = call(
        &f.app,
        "POST",
        "/api/ui/login",
        None,
        Some("x"),
        login("good password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = cookie_of(&a);
    let csrf = a.json["csrf"].as_str().unwrap().to_owned();
    assert_ne!(cookie, first);

    let a = call(&f.app, "GET", "/api/ui/overview", Some(&cookie), None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["routers"], serde_json::json!([]));
    // State changes need the session's CSRF token, not just any header.
    let a = call(
        &f.app,
        "POST",
        "/api/ui/pairing-codes",
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = call(
        &f.app,
        "POST",
        "/api/ui/pairing-codes",
        Some(&cookie),
        Some("guess"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = call(
        &f.app,
        "POST",
        "/api/ui/pairing-codes",
        Some(&cookie),
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    let slot = a.json["slot"].as_str().unwrap().to_owned();
    assert!(a.json["code"].as_str().unwrap().starts_with(&slot));
    let a = call(
        &f.app,
        "GET",
        &format!("/api/ui/pairing-codes/{slot}"),
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(a.json["stage"], "waiting");
    assert!(a.json["expires_in_s"].as_u64().unwrap() > 500);
    let a = call(
        &f.app,
        "GET",
        "/api/ui/pairing-codes/ZZ",
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(a.json["stage"], "expired");

    // Logout ends the session on the server, not only in the browser.
    let a = call(
        &f.app,
        "POST",
        "/api/ui/logout",
        Some(&cookie),
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = call(&f.app, "GET", "/api/ui/overview", Some(&cookie), None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_passwords_are_throttled() {
    let f = fixture();
    set_up(&f, "good password").await;
    let login = |p: &str| Some(serde_json::json!({ "password": p }));
    for _ in 0..crate::auth::MAX_FAILURES {
        let a = call(
            &f.app,
            "POST",
            "/api/ui/login",
            None,
            Some("x"),
            login("bad password"),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password waits now, from the same address: the throttle does not tell
    // guesses apart.
    let a = call(
        &f.app,
        "POST",
        "/api/ui/login",
        None,
        Some("x"),
        login("good password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.json["error"].as_str().unwrap().contains("wait"));
}

#[tokio::test]
async fn devices_groups_labels_and_empty_states() {
    let f = fixture();
    let (cookie, csrf) = set_up(&f, "good password").await;
    let c = Some(cookie.as_str());
    let t = Some(csrf.as_str());
    let a = call(&f.app, "GET", "/api/ui/groups", c, None, None).await;
    let names: Vec<&str> = a
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"trusted") && names.contains(&"iot") && names.contains(&"guest"));

    let dev = |mac: &str, group: &str| {
        Some(serde_json::json!({ "mac": mac, "name": "TV", "group": group }))
    };
    let a = call(
        &f.app,
        "POST",
        "/api/ui/devices",
        c,
        t,
        dev("not-a-mac", "iot"),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json["error"]
        .as_str()
        .unwrap()
        .contains("aa:bb:cc:dd:ee:ff"));
    let a = call(
        &f.app,
        "POST",
        "/api/ui/devices",
        c,
        t,
        dev("AA-BB-CC-DD-EE-01", "nope"),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = call(
        &f.app,
        "POST",
        "/api/ui/devices",
        c,
        t,
        dev("AA-BB-CC-DD-EE-01", "iot"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = call(&f.app, "GET", "/api/ui/devices", c, None, None).await;
    assert_eq!(a.json[0]["mac"], "aa:bb:cc:dd:ee:01");
    assert_eq!(a.json[0]["group"], "iot");

    let a = call(
        &f.app,
        "PUT",
        "/api/ui/routers/attic/label",
        c,
        t,
        Some(serde_json::json!({"label": "Attic"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json["error"].as_str().unwrap().contains("attic"));

    let a = call(&f.app, "GET", "/api/ui/traffic", c, None, None).await;
    assert_eq!(a.json["available"], true);
    assert_eq!(
        a.json["items"],
        serde_json::json!([]),
        "no router reported yet"
    );
    let a = call(
        &f.app,
        "GET",
        "/api/ui/traces?device=laptop&service=",
        c,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(
        a.json["items"],
        serde_json::json!([]),
        "no spans reported yet"
    );
    assert!(a.json["note"].as_str().unwrap().contains("last hop"));
    for page in ["services", "policy"] {
        let a = call(&f.app, "GET", &format!("/api/ui/{page}"), c, None, None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json["available"], true);
        assert_eq!(a.json["items"], serde_json::json!([]));
    }
    // A deny rule through the page, then "why" names it.
    let rule = serde_json::json!({
        "name": "no-iot-nas", "action": "deny", "sources": [{"group": "iot"}],
        "to": [{"service": "nas"}], "dry_run": false,
    });
    let a = call(
        &f.app,
        "POST",
        "/api/ui/policy/rules",
        c,
        None,
        Some(rule.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "CSRF applies to rules too");
    let a = call(&f.app, "POST", "/api/ui/policy/rules", c, t, Some(rule)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = call(
        &f.app,
        "GET",
        "/api/ui/why?source=TV&target=nas%3A445",
        c,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["allowed"], false);
    assert!(
        a.json["rule"].as_str().unwrap().contains("no-iot-nas"),
        "{}",
        a.json
    );
    let a = call(
        &f.app,
        "DELETE",
        "/api/ui/policy/rules/no-iot-nas",
        c,
        t,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = call(&f.app, "GET", "/api/ui/certificates", c, None, None).await;
    assert_eq!(a.json["ca_fingerprint"].as_str().unwrap().len(), 32 * 3 - 1);
}

/// The whole page, gzipped, within the budget (the browser test prints the figure).
#[test]
fn the_page_fits_the_size_budget() {
    let raw: usize = asset_files().map(|(_, b)| b.len()).sum();
    assert!(raw < 400 * 1024, "{raw} bytes raw");
}

#[test]
fn warnings_name_the_router_and_say_what_to_do() {
    let f = fixture();
    let web = Web {
        home: f.home.clone(),
        sessions: Sessions::default(),
        throttle: Throttle::default(),
        hasher: crate::auth::Hasher::default(),
    };
    let r = |name: &str, state: &'static str, cert: i64| RouterView {
        name: name.into(),
        label: (name == "attic").then(|| "Attic".to_owned()),
        identity: format!("spiffe://h/node/{name}"),
        state,
        last_seen_s: Some(600),
        enrolled_at: 0,
        cert_not_after: Some(1),
        cert_expires_in_s: Some(cert),
        // The fixture home's certificates live 24 h: what `Home::nodes` would say.
        wifi: None,
        cert_health: Some(crate::health::certificate(
            (1_000_000 + cert).max(0) as u64,
            1_000_000,
            std::time::Duration::from_secs(86_400),
        )),
        acked_version: 1,
        addresses: vec![],
        agent_version: String::new(),
        devices: vec![],
        services: vec![],
        portal: false,
        hops: None,
        speedtest_sink: true,
    };
    let w = warnings(
        &web,
        &[
            r("attic", "offline", 100),
            r("garage", "online", -5),
            r("shed", "removed", -5),
            r("den", "online", 80_000),
        ],
    );
    let text: Vec<String> = w
        .iter()
        .map(|w| format!("{} {}", w.level, w.message))
        .collect();
    assert_eq!(w.len(), 3, "{text:#?}");
    assert!(text[0].starts_with("error Attic is offline") && text[0].contains("10 min"));
    assert!(text[1].starts_with("warning Attic's certificate expires in 1 min"));
    assert!(text[2].starts_with("error garage's certificate has expired"));
    assert!(text
        .iter()
        .all(|t| !t.contains("shed") && !t.contains("den")));
}

#[tokio::test]
async fn a_password_reset_ends_every_session() {
    let f = fixture();
    let (cookie, _) = set_up(&f, "good password").await;
    let token = f.home.reset_admin_password().unwrap();
    let a = call(&f.app, "GET", "/api/ui/overview", Some(&cookie), None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(&f.app, "GET", "/api/ui/session", Some(&cookie), None, None).await;
    assert_eq!(a.json["state"], "setup");
    assert_eq!(f.home.setup_token().unwrap(), token);
    set_up(&f, "new password!").await;
    let stored = f.home.admin_password().unwrap().unwrap();
    assert!(crate::auth::verify_password(&stored, "new password!"));
}

#[test]
fn troubled_mesh_links_become_one_warning_per_pair_with_the_advice() {
    let router = |name: &str, label: Option<&str>| RouterView {
        name: name.into(),
        label: label.map(String::from),
        identity: String::new(),
        state: "online",
        last_seen_s: Some(1),
        enrolled_at: 0,
        cert_not_after: None,
        cert_expires_in_s: None,
        wifi: None,
        cert_health: None,
        acked_version: 1,
        addresses: vec![],
        agent_version: String::new(),
        devices: vec![],
        services: vec![],
        portal: false,
        hops: None,
        speedtest_sink: true,
    };
    let routers = [router("attic", Some("Attic")), router("garage", None)];
    let link =
        |from: &str, to: &str, verdict: &str, advice: &[&str]| trellis_proto::api::TopologyLink {
            from: NodeName::new(from).unwrap(),
            to: to.into(),
            medium: trellis_proto::api::LinkMedium::Wifi,
            signal_dbm: Some(-80),
            expected_throughput_kbps: None,
            airtime_metric: None,
            verdict: serde_json::from_value(serde_json::json!(verdict)).unwrap(),
            advice: advice.iter().map(|a| a.to_string()).collect(),
            measured: None,
        };
    let links = [
        link(
            "attic",
            "garage",
            "weak",
            &["move closer or raise tx power"],
        ),
        link(
            "garage",
            "attic",
            "weak",
            &["move closer or raise tx power"],
        ),
        link("attic", "shed", "good", &[]),
        link("garage", "shed", "unstable", &["check for interference"]),
    ];
    let w = link_warnings(&routers, &links);
    assert_eq!(
        w.len(),
        2,
        "{:?}",
        w.iter().map(|w| &w.message).collect::<Vec<_>>()
    );
    assert_eq!(w[0].subject, "Attic ↔ garage");
    assert_eq!(
        w[0].message,
        "The link between Attic and garage is weak: move closer or raise tx power."
    );
    assert!(w[1]
        .message
        .contains("garage and shed is unstable: check for interference"));
}

/// The Services page's "reached by" is the policy engine's answer: device rules, identity
/// rules and port denies count (the old summary looked at group rules only and contradicted
/// `trellis why`).
#[test]
fn reached_by_agrees_with_the_policy_engine() {
    use trellis_proto::policy::{Action, Device, Policy, Rule, ServiceMatch, SourceMatch};
    let laptop: trellis_proto::policy::MacAddr = "02:00:00:00:00:01".parse().unwrap();
    let kid: trellis_proto::policy::MacAddr = "02:00:00:00:00:02".parse().unwrap();
    let devices = vec![
        Device {
            name: "thermostat".into(),
            mac: laptop,
            ips: vec![],
            group: "iot".into(),
        },
        Device {
            name: "tablet".into(),
            mac: kid,
            ips: vec![],
            group: "trusted".into(),
        },
    ];
    let backup: trellis_proto::SpiffeId = "spiffe://h/svc/backup".parse().unwrap();
    let rule = |name: &str, action, sources, to: Vec<ServiceMatch>| Rule {
        name: name.into(),
        action,
        sources,
        to,
        dry_run: false,
    };
    let nas = |ports: Vec<u16>| ServiceMatch {
        service: Some("nas".into()),
        ports,
    };
    let policy = Policy {
        rules: vec![
            rule(
                "thermostat-nas",
                Action::Allow,
                vec![SourceMatch::Device(laptop)],
                vec![nas(vec![])],
            ),
            rule(
                "no-tablet",
                Action::Deny,
                vec![SourceMatch::Device(kid)],
                vec![nas(vec![])],
            ),
            rule(
                "backup-job",
                Action::Allow,
                vec![SourceMatch::Identity(backup.clone())],
                vec![nas(vec![])],
            ),
            rule(
                "guest-web",
                Action::Allow,
                vec![SourceMatch::Group("guest".into())],
                vec![nas(vec![443])],
            ),
        ],
        ..Policy::default()
    };
    let got = reached_by(&policy, &devices, "nas", &[443, 445]);
    assert_eq!(
        got,
        vec![
            "trusted (by default)".to_owned(),
            "guest (rule guest-web, port 443)".to_owned(),
            "thermostat (rule thermostat-nas)".to_owned(),
            "not tablet (rule no-tablet)".to_owned(),
            "spiffe://h/svc/backup (rule backup-job)".to_owned(),
        ]
    );
    // Each line is what `why` says for that source.
    let thermostat = trellis_proto::policy::Source::device(&devices, &policy, Some(laptop), None);
    assert!(policy.evaluate(&thermostat, "nas", None).allowed());
    let tablet = trellis_proto::policy::Source::device(&devices, &policy, Some(kid), None);
    assert!(!policy.evaluate(&tablet, "nas", None).allowed());
}
