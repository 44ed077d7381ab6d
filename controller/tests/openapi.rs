//! `/api/openapi.json` documents exactly the routes the controller serves: every route in
//! the routers' source is in the document with its methods, and nothing else is.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use trellis_controller::home::{Home, Settings};

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
        include_str!("../src/api/web.rs"),
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
        data_dir: dir.path().join("c"),
        leaf_ttl: Duration::from_secs(3600),
        advertise: String::new(),
        node_timeout: trellis_controller::home::DEFAULT_NODE_TIMEOUT,
    })
    .unwrap();
    let app = trellis_controller::api::agent::router(home);
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
