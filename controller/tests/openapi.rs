//! `/api/openapi.json` documents exactly the routes the controller serves: every route in
//! the routers' source is in the document with its methods, and nothing else is; and the
//! real controller takes every documented example body and query, and answers a malformed
//! one with the documented error.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use trellis_controller::home::{Home, Settings};

mod support;

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

/// (path, method) pairs from `.route("…", get(…).post(…))` calls in a router's source.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let calls: Vec<&str> = source.split(".route(").skip(1).collect();
    for call in calls {
        let Some(start) = call.find('"') else {
            continue;
        };
        let rest = &call[start + 1..];
        let Some(end) = rest.find('"') else { continue };
        let path = rest[..end].replace("{*", "{");
        // The handlers up to the end of this call (the next builder step).
        let tail = &rest[end..];
        let stop = [
            ".route(",
            ".layer(",
            ".with_state(",
            ".merge(",
            ".fallback(",
        ]
        .iter()
        .filter_map(|s| tail.find(s))
        .min()
        .unwrap_or(tail.len());
        let handlers = &tail[..stop];
        for m in METHODS {
            let needle = format!("{m}(");
            if handlers.match_indices(&needle).any(|(i, _)| {
                i == 0
                    || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && handlers.as_bytes()[i - 1] != b'_'
            }) {
                out.insert((path.clone(), m.to_owned()));
            }
        }
    }
    out
}

#[test]
fn the_document_lists_every_route_and_only_those() {
    let doc: serde_json::Value =
        serde_json::from_str(trellis_controller::api::OPENAPI).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            documented.insert((path.clone(), method.clone()));
        }
    }
    let mut served = BTreeSet::new();
    for source in [
        include_str!("../src/api/admin.rs"),
        include_str!("../src/api/agent.rs"),
        include_str!("../src/api/web/mod.rs"),
        include_str!("../src/api/wifi.rs"),
    ] {
        served.extend(routes_in(source));
    }
    assert!(
        served.len() > 40,
        "the route scan found only {}: {served:?}",
        served.len()
    );
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "openapi.json documents routes that do not exist: {stale:?}"
    );
}

#[tokio::test]
async fn the_document_is_served_without_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(Settings {
        leaf_ttl: Duration::from_secs(3600),
        ..Settings::in_dir(dir.path().join("c"))
    })
    .unwrap();
    let app = trellis_controller::api::port::router(home);
    let resp = app
        .oneshot(
            Request::get("/api/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["paths"]["/v1/agent/config"]["get"].is_object());
}

/// The document's operations: (method, path, operation).
fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

/// Is `status` one the operation documents (exactly, or by its class like `4XX`)?
fn documented(op: &serde_json::Value, status: u16) -> bool {
    let r = &op["responses"];
    r.get(status.to_string()).is_some() || r.get(format!("{}XX", status / 100)).is_some()
}

/// A concrete path for a templated one: the routers of the home, test 1, slot K7.
fn concrete(path: &str) -> String {
    path.replace("{name}", "attic")
        .replace("{id}", "1")
        .replace("{slot}", "K7")
        .replace("{path}", "app.js")
        .replace("{kind}", "home")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_example_is_taken_and_a_malformed_body_gets_the_documented_error() {
    let doc: serde_json::Value = serde_json::from_str(trellis_controller::api::OPENAPI).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = support::start_controller(d, "warn");
    // A router of the home, for the agent endpoints and the templated paths.
    let out = support::trellis(d, &c.socket, &["pair", "--json"]);
    let code: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = trellis_proto::pairing::PairingCode::parse(code["code"].as_str().unwrap()).unwrap();
    let state = trellis_agent::state::StateDir::new(d.join("attic"));
    trellis_agent::join::join(
        &format!("127.0.0.1:{}", c.port),
        &code,
        &trellis_proto::NodeName::new("attic").unwrap(),
        &state,
        false,
    )
    .await
    .unwrap();
    let cert = state.identity_pem().unwrap();
    let curl = support::Curl::new(d, &c);

    let mut csrf = String::from("page");
    // Setup and login first: the rest of the page's API needs the session they open.
    let mut ops = operations(&doc);
    ops.sort_by_key(|(_, path, _)| !(path == "/api/ui/setup" || path == "/api/ui/login"));
    let mut checked = 0;
    for (method, path, op) in ops {
        let has_body = op.get("requestBody").is_some();
        let queries: Vec<&serde_json::Value> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "query").collect())
            .unwrap_or_default();
        if !has_body && queries.is_empty() {
            continue;
        }
        let send = |target: &str, body: Option<&str>, csrf: &str| {
            let m = method.to_uppercase();
            if path.starts_with("/v1/admin/") {
                curl.admin(&m, target, body)
            } else if path.starts_with("/v1/agent/") {
                curl.send("127.0.0.1", Some(&cert), &m, target, body)
            } else {
                let header = format!("x-trellis-csrf: {csrf}");
                curl.send_with("127.0.0.1", None, &[&header], &m, target, body)
            }
        };
        let base = concrete(&path);
        let query = |bad: bool| -> String {
            let pairs: Vec<String> = queries
                .iter()
                .map(|p| {
                    let name = p["name"].as_str().unwrap();
                    let value = match (&p["example"], bad) {
                        (_, true) if p["schema"]["type"] == "integer" => "not-a-number".to_owned(),
                        (serde_json::Value::String(s), _) => s.clone(),
                        (v, _) => v.to_string(),
                    };
                    format!("{name}={value}")
                })
                .filter(|pair| !bad || !pair.starts_with("source="))
                .collect();
            if pairs.is_empty() {
                base.clone()
            } else {
                format!("{base}?{}", pairs.join("&"))
            }
        };
        let example = has_body
            .then(|| op["requestBody"]["content"]["application/json"]["example"].to_string());
        let (status, answer) = send(&query(false), example.as_deref(), &csrf);
        assert!(
            status != 400 && status != 413 && documented(&op, status),
            "{method} {path}: the documented example got {status} {answer}"
        );
        // The bad twin: a body of the wrong shape, or a query that is not a number / lacks a
        // required parameter.
        let (bad_status, bad_answer) = if has_body {
            send(&query(false), Some("{\"truncated"), &csrf)
        } else {
            send(&query(true), None, &csrf)
        };
        assert_eq!(bad_status, 400, "{method} {path}: {bad_answer}");
        assert!(
            documented(&op, 400),
            "{method} {path} does not document its 400"
        );
        let error: serde_json::Value = serde_json::from_str(&bad_answer)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {bad_answer}"));
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad_answer}"
        );
        checked += 1;
        if path == "/api/ui/login" {
            // Now open the session the rest of the page's API needs.
            let token = support::trellis(d, &c.socket, &["setup-token", "--json"]);
            let token: serde_json::Value = serde_json::from_slice(&token.stdout).unwrap();
            let token = token["setup_token"].as_str().unwrap();
            let body = serde_json::json!({"token": token, "password": "a good long password"});
            let (status, answer) = curl.send_with(
                "127.0.0.1",
                None,
                &["x-trellis-csrf: page"],
                "POST",
                "/api/ui/setup",
                Some(&body.to_string()),
            );
            assert_eq!(status, 200, "{answer}");
            let session: serde_json::Value = serde_json::from_str(&answer).unwrap();
            csrf = session["csrf"].as_str().unwrap().to_owned();
        }
    }
    assert!(
        checked >= 23,
        "only {checked} operations with a body or query"
    );
}
