//! Property test of the APIs' JSON inputs: thousands of malformed, truncated and
//! wrongly-typed bodies against every endpoint that takes one. Every answer must be a 4xx
//! with a JSON error saying what was wrong: never a 5xx, never a panic, never a stored change.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tower::ServiceExt;
use trellis_controller::home::{Home, Settings};

const ROUNDS: usize = 300;

/// A random JSON value of bounded depth, biased towards the shapes the API expects.
fn value(rng: &mut StdRng, depth: u32) -> serde_json::Value {
    use serde_json::{json, Value};
    let words = [
        "name",
        "mac",
        "group",
        "node",
        "addr",
        "ports",
        "slot",
        "node_name",
        "spake_a",
        "session",
        "csr_pem",
        "confirm",
        "action",
        "sources",
        "to",
        "dry_run",
        "iot",
        "any",
    ];
    match rng.gen_range(0..if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>()),
        4 => json!(words[rng.gen_range(0..words.len())]),
        5 => {
            let len = rng.gen_range(0..40);
            Value::String(
                (0..len)
                    .map(|_| rng.gen_range(0x20u8..0x7f) as char)
                    .collect(),
            )
        }
        6 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..6) {
                m.insert(
                    words[rng.gen_range(0..words.len())].to_owned(),
                    value(rng, depth - 1),
                );
            }
            Value::Object(m)
        }
    }
}

fn body(rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&value(rng, 3)).unwrap();
    match rng.gen_range(0..6) {
        // Truncated JSON.
        0 if !bytes.is_empty() => bytes.truncate(rng.gen_range(0..bytes.len())),
        // Random bytes, including invalid UTF-8.
        1 => bytes = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        _ => {}
    }
    bytes
}

async fn send(app: &axum::Router, method: Method, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes)
}

#[tokio::test]
async fn malformed_json_always_gets_a_4xx_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let home: Arc<Home> = Home::open(Settings {
        leaf_ttl: Duration::from_secs(3600),
        ..Settings::in_dir(dir.path().join("c"))
    })
    .unwrap();
    let admin = trellis_controller::api::admin::router(home.clone());
    let agent = trellis_controller::api::port::router(home.clone());
    let version = home.snapshot().version;
    let mut rng = StdRng::seed_from_u64(0x7e11);
    let endpoints: [(&axum::Router, &str); 8] = [
        (&admin, "/v1/admin/devices"),
        (&admin, "/v1/admin/services"),
        (&admin, "/v1/admin/policy/rules"),
        (&admin, "/v1/admin/groups"),
        (&agent, "/v1/pair/start"),
        (&agent, "/v1/pair/finish"),
        (&agent, "/v1/pair/abort"),
        (&agent, "/v1/agent/renew"),
    ];
    let mut seen = std::collections::BTreeMap::new();
    for (app, path) in endpoints {
        for _ in 0..ROUNDS {
            let b = body(&mut rng);
            let (status, answer) = send(app, Method::POST, path, b.clone()).await;
            assert!(
                (400..500).contains(&status),
                "{path} answered {status} to {:?}: {}",
                String::from_utf8_lossy(&b),
                String::from_utf8_lossy(&answer)
            );
            if status != 204 {
                let err: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|_| {
                    panic!(
                        "{path} {status}: not a JSON error: {}",
                        String::from_utf8_lossy(&answer)
                    )
                });
                assert!(
                    err["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{path}: {err}"
                );
            }
            *seen.entry((path, status)).or_insert(0) += 1;
        }
    }
    // Random path segments and queries too.
    for _ in 0..ROUNDS {
        // Characters a URI may carry unescaped in a path segment or query value.
        const URI_CHARS: &[u8] = b"abcXYZ019-._~!$'()*+,;:@=";
        let junk: String = (0..rng.gen_range(0..20))
            .map(|_| URI_CHARS[rng.gen_range(0..URI_CHARS.len())] as char)
            .collect();
        for path in [
            format!("/v1/admin/nodes/{junk}"),
            format!("/v1/admin/services/{junk}"),
            format!("/v1/admin/policy/rules/{junk}"),
        ] {
            let (status, _) = send(&admin, Method::DELETE, &path, Vec::new()).await;
            assert!((400..500).contains(&status), "{path}: {status}");
        }
        let (status, _) = send(
            &admin,
            Method::GET,
            &format!("/v1/admin/why?source={junk}&target={junk}"),
            Vec::new(),
        )
        .await;
        assert!((400..500).contains(&status), "why {junk:?}: {status}");
    }
    println!("{seen:?}");
    assert_eq!(
        home.snapshot().version,
        version,
        "rejected input must not change the home"
    );

    // Then well-formed bodies with one field replaced by something random: these reach the
    // rules behind the JSON layer. Some are valid (a 2xx is fine); none may be a 5xx.
    let templates: [(&axum::Router, &str, serde_json::Value); 6] = [
        (
            &admin,
            "/v1/admin/devices",
            serde_json::json!({"mac": "aa:bb:cc:dd:ee:ff", "name": "tv", "group": "iot"}),
        ),
        (
            &admin,
            "/v1/admin/services",
            serde_json::json!({"name": "nas", "node": "attic", "addr": "192.168.1.2", "ports": [445]}),
        ),
        (
            &admin,
            "/v1/admin/policy/rules",
            serde_json::json!({"name": "r", "action": "allow", "sources": [{"group": "iot"}], "to": [{"service": "nas", "ports": [445]}]}),
        ),
        (
            &admin,
            "/v1/admin/groups",
            serde_json::json!({"name": "cams"}),
        ),
        (
            &agent,
            "/v1/pair/start",
            serde_json::json!({"slot": "AB", "node_name": "attic", "spake_a": "00"}),
        ),
        (
            &agent,
            "/v1/pair/finish",
            serde_json::json!({"session": "00", "csr_pem": "x", "confirm": "00"}),
        ),
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for (app, path, template) in templates {
        let keys: Vec<String> = template.as_object().unwrap().keys().cloned().collect();
        for _ in 0..ROUNDS {
            let mut b = template.clone();
            let k = &keys[rng.gen_range(0..keys.len())];
            b[k] = value(&mut rng, 2);
            let (status, answer) =
                send(app, Method::POST, path, serde_json::to_vec(&b).unwrap()).await;
            assert!(
                status < 500,
                "{path} answered {status} to {b}: {}",
                String::from_utf8_lossy(&answer)
            );
            *statuses.entry((path, status)).or_insert(0) += 1;
        }
    }
    println!("{statuses:?}");
}
