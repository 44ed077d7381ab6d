//! What a hostile device on the LAN (or a compromised, enrolled router) can do to the real
//! `trellis-controller` process, tried the way an attacker would: curl over TLS on loopback,
//! from several 127/8 source addresses, reading only what comes back and what the log says.

use std::path::Path;
use std::process::Command;

mod support;

use support::{start_controller, text, trellis, Controller, Curl};
use trellis_agent::state::StateDir;
use trellis_proto::pairing::PairingCode;
use trellis_proto::NodeName;

/// A fresh pairing code from `trellis pair`.
fn new_code(dir: &Path, c: &Controller) -> PairingCode {
    let out = trellis(dir, &c.socket, &["pair", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PairingCode::parse(v["code"].as_str().unwrap()).unwrap()
}

/// Router `name` joins with the real agent code (in process); its state directory.
async fn join(dir: &Path, c: &Controller, name: &str) -> StateDir {
    let code = new_code(dir, c);
    let state = StateDir::new(dir.join(name));
    trellis_agent::join::join(
        &format!("127.0.0.1:{}", c.port),
        &code,
        &NodeName::new(name).unwrap(),
        &state,
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("{name} could not join: {e}"));
    state
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn nodes(dir: &Path, c: &Controller) -> serde_json::Value {
    let out = trellis(dir, &c.socket, &["nodes", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status(dir: &Path, c: &Controller) -> serde_json::Value {
    let out = trellis(dir, &c.socket, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("controller.log")).unwrap()
}

// Finding 6: an ack above the published version would stick (the highest wins) and show a
// router that is behind as up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_of_a_version_never_published_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = start_controller(d, "info");
    let attic = join(d, &c, "attic").await.identity_pem().unwrap();
    let published = status(d, &c)["config_version"].as_u64().unwrap();
    let curl = Curl::new(d, &c);
    let (code, body) = curl.send(
        "127.0.0.1",
        Some(&attic),
        "POST",
        "/v1/agent/config/ack",
        Some(r#"{"version": 999999999999}"#),
    );
    assert_eq!(code, 400, "{body}");
    let error = json(&body)["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("999999999999") && error.contains("never published"),
        "the refusal says what was wrong: {error}"
    );
    // An honest ack of what was published is still taken.
    let (code, body) = curl.send(
        "127.0.0.1",
        Some(&attic),
        "POST",
        "/v1/agent/config/ack",
        Some(&format!(r#"{{"version": {published}}}"#)),
    );
    assert_eq!(code, 204, "{body}");
    let listed = nodes(d, &c);
    let attic_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "attic")
        .unwrap();
    assert_eq!(attic_row["acked_version"].as_u64(), Some(published));
}

// Finding 7: error text with newlines in an ack became a separate, real-looking log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_text_cannot_forge_a_log_line_or_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = start_controller(d, "info");
    let attic = join(d, &c, "attic").await.identity_pem().unwrap();
    let curl = Curl::new(d, &c);
    let forged =
        "2026-12-03T10:00:00.000000Z  INFO trellis_controller::home: FORGED router enrolled";
    let error = format!("disk full\n{forged}\n{}", "y".repeat(20_000));
    let body = serde_json::json!({"version": 1, "error": error}).to_string();
    let (code, answer) = curl.send(
        "127.0.0.1",
        Some(&attic),
        "POST",
        "/v1/agent/config/ack",
        Some(&body),
    );
    assert_eq!(code, 204, "{answer}");
    let log = log_of(d);
    let line = log
        .lines()
        .find(|l| l.contains("could not apply config"))
        .unwrap_or_else(|| panic!("the failed apply is logged: {log}"));
    assert!(
        line.contains("disk full") && line.contains("FORGED"),
        "the agent's text is in the line, escaped: {line}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "no line of the log is the agent's: {log}"
    );
    assert!(
        log.lines().all(|l| l.len() < 1000),
        "agent text is capped: the longest line has {} characters",
        log.lines().map(str::len).max().unwrap_or(0)
    );
}

// Finding 8: `--log garbage` silently meant a daemon that logs nothing.
#[test]
fn a_log_filter_that_is_not_one_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis-controller"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--admin-socket")
        .arg(dir.path().join("admin.sock"))
        .args(["--agent-api", "127.0.0.1:0", "--log", "garbage"])
        .args(["--metrics-listen", "off"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Refused at once; a daemon that starts anyway is killed and the test fails, not hangs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("trellis-controller started with --log garbage");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("\"garbage\" is not a log filter") && said.contains("e.g. info"),
        "{said}"
    );
    assert!(!dir.path().join("data").exists(), "nothing started");
}

// Finding 8: misses answered with an empty body, an oversized body with 400, and an error
// message with Rust debug text in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_agent_port_is_a_json_error_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = start_controller(d, "warn");
    let curl = Curl::new(d, &c);
    let huge = format!(r#"{{"slot": "{}"}}"#, "A".repeat(70 * 1024));
    for (method, path, body, want, says) in [
        ("GET", "/v1/no/such/thing", None, 404, "no such endpoint"),
        (
            "DELETE",
            "/v1/pair/start",
            None,
            405,
            "DELETE is not how /v1/pair/start",
        ),
        (
            "GET",
            "/api/ui/login",
            None,
            405,
            "GET is not how /api/ui/login",
        ),
        (
            "POST",
            "/v1/pair/start",
            Some(huge.as_str()),
            413,
            "larger than 64 KiB",
        ),
    ] {
        let (code, answer) = curl.send("127.0.0.1", None, method, path, body);
        assert_eq!(code, want, "{method} {path}: {answer}");
        let error = json(&answer)["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(says), "{method} {path}: {error}");
    }
    let out = trellis(
        d,
        &c.socket,
        &[
            "add-service",
            "nas",
            "--node",
            "ghost",
            "--addr",
            "192.168.1.5",
            "--port",
            "445",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no router named ghost in this home")
            && !text(&out).contains("NodeName("),
        "{}",
        text(&out)
    );
}

/// A well-formed start for `slot` under a made-up secret: what a prober sends.
fn probe(slot: &str) -> String {
    let (_, spake_a) = trellis_proto::pake::AgentPake::start("WRONGONE");
    serde_json::json!({"slot": slot, "node_name": "prober", "spake_a": spake_a}).to_string()
}

/// What a prober can see of a start's answer: its fields and their lengths.
fn shape(answer: &serde_json::Value) -> Vec<(String, usize)> {
    let mut fields: Vec<(String, usize)> = answer
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::len).unwrap_or(0)))
        .collect();
    fields.sort();
    fields
}

// Finding 4: an unknown slot got a distinct answer (all 1024 probed in 0.73 s found every
// open code), a garbage SPAKE2 message counted as a try (five burned a code), and
// /v1/pair/start had no rate limit and logged a WARN per refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_tells_a_prober_nothing_and_garbage_burns_no_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = start_controller(d, "info");
    let code = new_code(d, &c);
    let unknown = if code.slot == "ZZ" { "YY" } else { "ZZ" };
    let curl = Curl::new(d, &c);

    // The open slot and one without a code answer alike, at start and at finish.
    let mut seen = Vec::new();
    for (from, slot) in [("127.0.0.2", code.slot.as_str()), ("127.0.0.3", unknown)] {
        let (status, body) = curl.send(from, None, "POST", "/v1/pair/start", Some(&probe(slot)));
        assert_eq!(status, 200, "{slot}: {body}");
        let challenge = json(&body);
        let finish = serde_json::json!({
            "session": challenge["session"],
            "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----",
            "confirm": "00".repeat(32),
        })
        .to_string();
        let (fstatus, fbody) = curl.send(from, None, "POST", "/v1/pair/finish", Some(&finish));
        seen.push((shape(&challenge), fstatus, fbody));
    }
    assert_eq!(
        seen[0], seen[1],
        "a prober cannot tell an open slot from the others"
    );
    assert_eq!(seen[0].1, 403);
    assert!(seen[0].2.contains("wrong pairing code"), "{}", seen[0].2);

    // Garbage instead of a SPAKE2 element: malformed, and the code keeps its tries.
    for junk in ["zz", "00", &"ff".repeat(33), &"41".repeat(200)] {
        let body = serde_json::json!({"slot": code.slot, "node_name": "prober", "spake_a": junk})
            .to_string();
        let (status, answer) = curl.send("127.0.0.4", None, "POST", "/v1/pair/start", Some(&body));
        assert_eq!(status, 400, "{junk}: {answer}");
        assert!(
            json(&answer)["error"]
                .as_str()
                .unwrap()
                .contains("malformed"),
            "{answer}"
        );
    }
    for _ in 0..3 {
        let (status, _) = curl.send(
            "127.0.0.4",
            None,
            "POST",
            "/v1/pair/start",
            Some(&probe(&code.slot)),
        );
        assert_eq!(status, 200);
    }
    // One device gets ten starts a minute (the garbage counted too); the next is told to
    // wait, and another device is not held up.
    let mut more = 0;
    let refused = loop {
        let (status, body) = curl.send(
            "127.0.0.4",
            None,
            "POST",
            "/v1/pair/start",
            Some(&probe(unknown)),
        );
        if status != 200 || more > 20 {
            break (status, body);
        }
        more += 1;
    };
    assert_eq!(4 + 3 + more, 10, "{refused:?}");
    assert_eq!(refused.0, 429, "{}", refused.1);
    assert!(
        json(&refused.1)["error"].as_str().unwrap().contains("wait"),
        "{}",
        refused.1
    );
    let (status, body) = curl.send(
        "127.0.0.5",
        None,
        "POST",
        "/v1/pair/start",
        Some(&probe(unknown)),
    );
    assert_eq!(status, 200, "{body}");

    // The real satellite still pairs: 1 + 3 well-formed tries counted, none for the garbage.
    let state = StateDir::new(d.join("attic"));
    trellis_agent::join::join(
        &format!("127.0.0.1:{}", c.port),
        &code,
        &NodeName::new("attic").unwrap(),
        &state,
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("the real satellite is refused: {e}"));

    // Refusals a LAN client causes at will: at most one line per minute.
    let log = log_of(d);
    let noisy = log
        .lines()
        .filter(|l| l.contains("pairing refused") || l.contains("not open"))
        .count();
    assert_eq!(noisy, 1, "{log}");
}

fn services(dir: &Path, c: &Controller) -> serde_json::Value {
    let out = trellis(dir, &c.socket, &["services", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn instances_of(all: &serde_json::Value, name: &str) -> Vec<(String, String)> {
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| {
            s["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["node"].as_str().unwrap().to_owned(),
                        i["addr"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn seen(name: &str, addr: &str) -> trellis_proto::api::SeenService {
    trellis_proto::api::SeenService {
        name: name.into(),
        addr: addr.parse().unwrap(),
        ports: vec![445],
        learned_via: trellis_proto::catalog::LearnedVia::Mdns,
    }
}

// Finding 5: after the admin added `nas` behind cellar, attic's telemetry listed `nas`
// elsewhere; the catalog took it, a second report filled the 8 slots, and the admin's own
// add was then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_cannot_take_over_a_service_or_crowd_out_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = start_controller(d, "info");
    let cellar = trellis_agent::control::Agent::load(join(d, &c, "cellar").await).unwrap();
    let attic = trellis_agent::control::Agent::load(join(d, &c, "attic").await).unwrap();
    let add = |name: &str, addr: &str| {
        trellis(
            d,
            &c.socket,
            &[
                "add-service",
                name,
                "--node",
                "cellar",
                "--addr",
                addr,
                "--port",
                "445",
            ],
        )
    };
    let out = add("nas", "192.168.1.5");
    assert!(out.status.success(), "{}", text(&out));

    // attic claims nas at its own addresses, and reports a service of its own with many.
    let mut report = vec![seen("nas", "10.0.0.9"), seen("camera", "10.0.4.1")];
    report.extend((1..=9).map(|i| seen("media", &format!("10.0.1.{i}"))));
    attic.published.services.publish(report);
    attic.report_once().await.unwrap();
    attic.published.services.publish(
        (1..=9)
            .map(|i| seen("nas", &format!("10.0.2.{i}")))
            .collect(),
    );
    attic.report_once().await.unwrap();

    let all = services(d, &c);
    assert_eq!(
        instances_of(&all, "nas"),
        vec![("cellar".to_owned(), "192.168.1.5".to_owned())],
        "the admin's service is the admin's"
    );
    let media = instances_of(&all, "media");
    assert_eq!(
        media.len(),
        4,
        "a router's share is half the slots: {media:?}"
    );
    assert!(media.iter().all(|(node, _)| node == "attic"));

    // The admin's adds are never refused because of what agents reported.
    for i in 6..=12 {
        let out = add("nas", &format!("192.168.1.{i}"));
        assert!(out.status.success(), "nas #{i}: {}", text(&out));
    }
    for i in 1..=4 {
        let out = add("media", &format!("192.168.2.{i}"));
        assert!(out.status.success(), "media #{i}: {}", text(&out));
    }
    let all = services(d, &c);
    assert_eq!(instances_of(&all, "nas").len(), 8);
    assert_eq!(instances_of(&all, "media").len(), 8);
    // Once the admin added to it, media is the admin's: attic's new address is not taken.
    attic
        .published
        .services
        .publish(vec![seen("media", "10.0.3.1")]);
    attic.report_once().await.unwrap();
    assert_eq!(instances_of(&services(d, &c), "media").len(), 8);
    // The refusals are in the log, once per interval, not once per report.
    let log = log_of(d);
    let refusals = log
        .lines()
        .filter(|l| l.contains("not added to the catalog"))
        .count();
    assert_eq!(refusals, 1, "{log}");
    // A removed router owns nothing: the router that sees its device now takes it over.
    let out = trellis(d, &c.socket, &["remove-node", "attic"]);
    assert!(out.status.success(), "{}", text(&out));
    cellar
        .published
        .services
        .publish(vec![seen("camera", "10.0.4.1")]);
    cellar.report_once().await.unwrap();
    assert_eq!(
        instances_of(&services(d, &c), "camera"),
        vec![("cellar".to_owned(), "10.0.4.1".to_owned())]
    );
}

/// A client certificate for `id` signed by the home CA itself (from its backup), as someone
/// holding the CA key, or a bug, could make: valid by the CA, never issued by the controller.
fn forged_cert(dir: &Path, c: &Controller, id: &str) -> String {
    use rcgen::{
        CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
        PKCS_ECDSA_P256_SHA256,
    };
    let out = trellis(dir, &c.socket, &["ca-backup", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ca_key = KeyPair::from_pem(v["ca_key_pem"].as_str().unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(v["ca_cert_pem"].as_str().unwrap(), ca_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = now + time::Duration::hours(1);
    let cert = p.signed_by(&key, &issuer).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

// Finding 9: client certificates from the home CA were accepted whatever their serial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_the_controller_issued_and_not_replaced_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = start_controller(d, "info");
    let state = join(d, &c, "attic").await;
    let first = state.identity_pem().unwrap();
    let home_id = status(d, &c)["home_id"].as_str().unwrap().to_owned();
    let forged = forged_cert(d, &c, &format!("spiffe://{home_id}/node/attic"));
    let curl = Curl::new(d, &c);
    let poll = "/v1/agent/config?after=0&wait=0";
    let get = |pem: &str| curl.send("127.0.0.1", Some(pem), "GET", poll, None);

    assert_eq!(get(&first).0, 200, "the issued certificate works");
    let (status, body) = get(&forged);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("did not issue"), "{body}");

    // After a renewal, once the router has used its new certificate, the old one is done.
    let agent = trellis_agent::control::Agent::load(state.clone()).unwrap();
    agent.renew_once().await.unwrap();
    let renewed = state.identity_pem().unwrap();
    assert_ne!(renewed, first);
    assert_eq!(get(&renewed).0, 200);
    let (status, body) = get(&first);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("replaced"), "{body}");
    assert_eq!(get(&renewed).0, 200);
}
