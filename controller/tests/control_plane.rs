//! The control plane end to end, in one process over real TLS on loopback: a controller's
//! agent API, agents pairing with codes, following config, renewing, being removed.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use trellis_agent::control::{tls, Agent, Controller};
use trellis_agent::join::{join, JoinError};
use trellis_agent::state::StateDir;
use trellis_controller::home::{Home, Settings};
use trellis_proto::pairing::PairingCode;
use trellis_proto::{NodeName, SpiffeId};

struct TestHome {
    home: Arc<Home>,
    addr: String,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_home() -> TestHome {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(Settings::in_dir(dir.path().join("controller"))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(trellis_controller::api::port::serve(home.clone(), listener));
    TestHome {
        home,
        addr,
        server,
        _dir: dir,
    }
}

fn code_of(home: &Home) -> PairingCode {
    PairingCode::parse(&home.new_pairing_code(false).unwrap().code).unwrap()
}

fn name(n: &str) -> NodeName {
    NodeName::new(n).unwrap()
}

async fn pair(th: &TestHome, node: &str, dir: &std::path::Path) -> StateDir {
    pair_with(th, node, dir, code_of(&th.home)).await
}

async fn pair_with(
    th: &TestHome,
    node: &str,
    dir: &std::path::Path,
    code: PairingCode,
) -> StateDir {
    let state = StateDir::new(dir.join(node));
    join(&th.addr, &code, &name(node), &state, false)
        .await
        .unwrap_or_else(|e| panic!("{node} could not join: {e}"));
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satellites_pair_follow_config_renew_and_are_revoked() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let attic = pair(&th, "attic", dirs.path()).await;
    let garage = pair(&th, "garage", dirs.path()).await;

    // The agent left pairing with its identity, the CA, the mesh credentials.
    let node = attic.node().unwrap();
    assert_eq!(
        node.identity.to_string(),
        format!("spiffe://{}/node/attic", th.home.home_id())
    );
    assert_eq!(attic.ca_pem().unwrap(), th.home.ca().cert_pem());
    assert_eq!(attic.mesh().unwrap(), th.home.snapshot().mesh);
    assert!(th.home.snapshot().mesh.sae_password.len() >= 20);

    // Both agents follow the config; each accepts the other.
    let attic_agent = Agent::load(attic.clone()).unwrap().start();
    let garage_agent = Agent::load(garage.clone()).unwrap().start();
    let v = th.home.snapshot().version;
    let mut trust = attic_agent.trust.clone();
    let seen = tokio::time::timeout(Duration::from_secs(10), trust.wait_for_version(v))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.nodes.len(), 2);
    let garage_id = garage.node().unwrap().identity;
    let garage_serial = garage_agent.agent.identity().facts.serial;
    attic_agent.trust.check(&garage_id, &garage_serial).unwrap();
    // The snapshot was persisted for fail-static.
    assert_eq!(attic.snapshot().unwrap().unwrap().version, v);

    // Renewal: a new key and certificate for the same identity, stored and served.
    let before = attic_agent.agent.identity();
    let renewed = attic_agent.agent.renew_once().await.unwrap();
    assert_eq!(renewed.facts.identity, before.facts.identity);
    assert_ne!(renewed.facts.serial, before.facts.serial);
    assert_eq!(attic.identity_pem().unwrap(), renewed.pem);
    // The renewed certificate works for the next call.
    attic_agent.agent.report_once().await.unwrap();

    // Remove the garage: the attic's agent refuses it once the next version arrives.
    let removed = th.home.remove_node(&name("garage")).unwrap();
    assert_eq!(removed.identity, garage_id);
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        trust.wait_for_version(removed.config_version),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(seen.is_revoked(&garage_id));
    let why = attic_agent
        .trust
        .check(&garage_id, &garage_serial)
        .unwrap_err();
    assert!(why.contains("was removed from this home"), "{why}");
    // And the garage can no longer renew or read config.
    let err = garage_agent
        .agent
        .renew_once()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("removed from this home"), "{err}");
    let nodes = th.home.nodes().unwrap();
    assert!(nodes
        .iter()
        .any(|n| n.name.as_str() == "garage" && n.revoked));
    assert!(nodes
        .iter()
        .any(|n| n.name.as_str() == "attic" && !n.revoked && n.last_seen_s.is_some()));
    th.server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_fails_on_both_sides_and_five_tries_burn_it() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let state = StateDir::new(dirs.path().join("attic"));
    let real = code_of(&th.home);
    let wrong = PairingCode {
        slot: real.slot.clone(),
        secret: "ZZZZZZZZ".into(),
    };
    for _ in 0..5 {
        let err = join(&th.addr, &wrong, &name("attic"), &state, false)
            .await
            .unwrap_err();
        assert!(matches!(err, JoinError::ControllerNotProven(_)), "{err}");
        assert!(err.to_string().contains("nothing was saved"));
        assert!(!state.is_joined());
    }
    // Burned: the right code now fails like any code that is not open (the controller
    // tells a prober nothing about which codes exist).
    let err = join(&th.addr, &real, &name("attic"), &state, false)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::ControllerNotProven(_)), "{err}");
    assert!(err.to_string().contains("5 wrong tries"), "{err}");
    assert!(th.home.nodes().unwrap().is_empty());
    // A fresh code still works.
    join(&th.addr, &code_of(&th.home), &name("attic"), &state, false)
        .await
        .unwrap();
    // And joining twice needs --force.
    let err = join(&th.addr, &code_of(&th.home), &name("attic2"), &state, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_controller_that_lacks_the_code_cannot_capture_a_satellite() {
    let real = start_home().await;
    let rogue = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let state = StateDir::new(dirs.path().join("attic"));
    let code = code_of(&real.home);
    // The rogue sits on the LAN and even holds a code under the same slot name: it sees the
    // slot in clear, but not the secret.
    let rogue_code = code_of(&rogue.home);
    let typed = PairingCode {
        slot: rogue_code.slot.clone(),
        secret: code.secret.clone(),
    };
    let err = join(&rogue.addr, &typed, &name("attic"), &state, false)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::ControllerNotProven(_)), "{err}");
    assert!(
        !state.path().join("ca.pem").exists(),
        "the rogue CA must not be pinned"
    );
    assert!(rogue.home.nodes().unwrap().is_empty());
    // The real controller still pairs it.
    join(&real.addr, &code, &name("attic"), &state, false)
        .await
        .unwrap();
    assert_eq!(state.ca_pem().unwrap(), real.home.ca().cert_pem());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_api_needs_a_client_certificate_and_the_long_poll_waits() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let attic = pair(&th, "attic", dirs.path()).await;

    // No client certificate: refused with a message that says what to do.
    let anonymous = Controller::new(&th.addr, tls::pairing_config().unwrap());
    let answer = anonymous
        .call::<()>(Method::GET, "/v1/agent/config?after=0", None)
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&answer.body).contains("trellis-agent join"));

    // Malformed JSON is a clear 400.
    let answer = anonymous
        .call(
            Method::POST,
            "/v1/pair/start",
            Some(&serde_json::json!({"slot": 1})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer.body).contains("malformed request body"));

    // The long poll answers "no change" after the wait, and at once when a change lands.
    let agent = Agent::load(attic.clone()).unwrap();
    let handle = agent.start();
    let current = th.home.snapshot().version;
    let mut trust = handle.trust.clone();
    tokio::time::timeout(Duration::from_secs(10), trust.wait_for_version(current))
        .await
        .unwrap();
    th.home
        .put_device(&trellis_controller::store::DeviceRow {
            mac: "aa:bb:cc:dd:ee:ff".into(),
            name: "tv".into(),
            group: "iot".into(),
        })
        .unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), trust.wait_for_version(current + 1))
        .await
        .expect("the long poll must deliver the new version without waiting out its 55 s");
    println!("config change reached the agent in {:?}", started.elapsed());
    drop(handle);

    // 204 when nothing changed within `wait`.
    let member = Controller::new(
        &th.addr,
        tls::member_config(
            &attic.ca_pem().unwrap(),
            trellis_agent::identity::CurrentIdentity::new(
                trellis_agent::identity::NodeIdentity::from_pem(&attic.identity_pem().unwrap())
                    .unwrap(),
            ),
        )
        .unwrap(),
    );
    let path = format!("/v1/agent/config?after={}&wait=1", current + 1);
    let answer = member.call::<()>(Method::GET, &path, None).await.unwrap();
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_their_last_config_when_the_controller_is_gone() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let attic = pair(&th, "attic", dirs.path()).await;
    let garage = pair(&th, "garage", dirs.path()).await;
    let v = th.home.snapshot().version;
    {
        let handle = Agent::load(attic.clone()).unwrap().start();
        let mut trust = handle.trust.clone();
        tokio::time::timeout(Duration::from_secs(10), trust.wait_for_version(v))
            .await
            .unwrap();
    }
    // The controller dies.
    th.server.abort();
    let _ = th.server.await;
    // A restarted agent comes up on the stored snapshot and still knows its peers.
    let handle = Agent::load(attic).unwrap().start();
    assert_eq!(handle.trust.version(), v);
    let garage_id: SpiffeId = garage.node().unwrap().identity;
    let serial = trellis_agent::identity::NodeIdentity::from_pem(&garage.identity_pem().unwrap())
        .unwrap()
        .facts
        .serial;
    handle.trust.check(&garage_id, &serial).unwrap();
}

/// A real TLS peer (openssl) sees what an attacker on the LAN would: TLS 1.3 only, and the
/// controller's certificate names the fixed controller DNS name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_tls13_only() {
    let th = start_home().await;
    let s_client = |version: &'static str| {
        let addr = th.addr.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr,
                    version,
                    "-servername",
                    "controller.trellis.home.arpa",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl is installed by cargo xtask setup")
        })
    };
    let old = s_client("-tls1_2").await.unwrap();
    assert!(!old.status.success(), "TLS 1.2 must be refused");
    let new = s_client("-tls1_3").await.unwrap();
    let text = String::from_utf8_lossy(&new.stdout);
    assert!(text.contains("TLSv1.3"), "{text}");
    assert!(
        text.contains("Trellis root CA"),
        "the chain names the home CA: {text}"
    );
}

/// A client certificate for `id`, signed by `ca_cert`/`ca_key`, valid in [from, to] (unix s).
fn client_cert(ca_cert: &str, ca_key: &str, id: &str, from: i64, to: i64) -> String {
    use rcgen::{
        CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
        PKCS_ECDSA_P256_SHA256,
    };
    let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).unwrap()).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    p.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// curl printing only the HTTP status, trusting the home CA, with the controller's name
/// resolved to `addr`'s port on loopback; and that port.
fn curl(addr: &str, ca_pem: &str, dir: &std::path::Path) -> (std::process::Command, String) {
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "20",
    ])
    .arg("--cacert")
    .arg(&ca)
    .args([
        "--resolve",
        &format!("controller.trellis.home.arpa:{port}:127.0.0.1"),
    ]);
    (cmd, port)
}

/// curl (a real TLS client) asks for the config with a client certificate; returns the HTTP
/// status, or None when the TLS handshake itself was refused.
fn curl_config(
    addr: &str,
    ca_pem: &str,
    cert_and_key: Option<&str>,
    dir: &std::path::Path,
) -> Option<u16> {
    let (mut cmd, port) = curl(addr, ca_pem, dir);
    if let Some(pem) = cert_and_key {
        let f = dir.join("client.pem");
        std::fs::write(&f, pem).unwrap();
        cmd.arg("--cert").arg(&f);
    }
    cmd.arg(format!(
        "https://controller.trellis.home.arpa:{port}/v1/agent/config?after=0&wait=0"
    ));
    let out = cmd
        .output()
        .expect("curl is installed by cargo xtask setup");
    let code: u16 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code != 0).then_some(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_wrong_certificates_is_refused_and_with_a_good_one_accepted() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let attic = pair(&th, "attic", dirs.path()).await;
    let garage = pair(&th, "garage", dirs.path()).await;
    th.home.remove_node(&name("garage")).unwrap();
    let backup = th.home.ca_backup();
    let home_id = th.home.home_id().to_string();
    let now = trellis_controller::ca::unix_now() as i64;
    let other =
        trellis_controller::ca::HomeCa::generate(&trellis_proto::HomeId::new("otherhome").unwrap())
            .unwrap();
    let addr = th.addr.clone();
    let ca = backup.ca_cert_pem.clone();
    let d = dirs.path().to_owned();
    let attic_pem = attic.identity_pem().unwrap();
    let garage_pem = garage.identity_pem().unwrap();
    let results = tokio::task::spawn_blocking(move || {
        let try_with = |pem: Option<&str>| curl_config(&addr, &ca, pem, &d);
        vec![
            ("a good node certificate", try_with(Some(&attic_pem))),
            ("no client certificate", try_with(None)),
            (
                "a certificate from another CA",
                try_with(Some(&client_cert(
                    other.cert_pem(),
                    other.key_pem(),
                    &format!("spiffe://{home_id}/node/attic"),
                    now - 60,
                    now + 3600,
                ))),
            ),
            (
                "an expired certificate",
                try_with(Some(&client_cert(
                    &backup.ca_cert_pem,
                    &backup.ca_key_pem,
                    &format!("spiffe://{home_id}/node/attic"),
                    now - 7200,
                    now - 3600,
                ))),
            ),
            ("a removed node's certificate", try_with(Some(&garage_pem))),
            (
                "a node the home never enrolled",
                try_with(Some(&client_cert(
                    &backup.ca_cert_pem,
                    &backup.ca_key_pem,
                    &format!("spiffe://{home_id}/node/ghost"),
                    now - 60,
                    now + 3600,
                ))),
            ),
            (
                "a service identity",
                try_with(Some(&client_cert(
                    &backup.ca_cert_pem,
                    &backup.ca_key_pem,
                    &format!("spiffe://{home_id}/svc/nas"),
                    now - 60,
                    now + 3600,
                ))),
            ),
        ]
    })
    .await
    .unwrap();
    for (what, status) in &results {
        println!(
            "{what}: {}",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "TLS handshake refused".into())
        );
    }
    assert_eq!(
        results[0].1,
        Some(200),
        "a good certificate must be accepted"
    );
    for (what, status) in &results[1..] {
        assert!(
            matches!(status, None | Some(403)),
            "{what} must be refused, got {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_on_time_and_kept_when_the_controller_is_down() {
    let dir = tempfile::tempdir().unwrap();
    // 6-second certificates: the agent must renew about every 3 s.
    let home = Home::open(Settings {
        leaf_ttl: Duration::from_secs(6),
        ..Settings::in_dir(dir.path().join("controller"))
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(trellis_controller::api::port::serve(home.clone(), listener));
    let th = TestHome {
        home,
        addr,
        server,
        _dir: dir,
    };
    let dirs = tempfile::tempdir().unwrap();
    let attic = pair(&th, "attic", dirs.path()).await;
    let handle = Agent::load(attic.clone()).unwrap().start();
    let mut renewals = handle.agent.renewals();
    let mut serials = vec![handle.agent.identity().facts.serial];
    for round in 0..3 {
        let before = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(10), renewals.changed())
            .await
            .unwrap_or_else(|_| panic!("renewal {round} did not happen within 10 s"))
            .unwrap();
        let id = handle.agent.identity();
        println!("renewal {round} after {:?}", before.elapsed());
        assert!(!serials.contains(&id.facts.serial));
        serials.push(id.facts.serial.clone());
        // The connection to the controller keeps working with each new certificate.
        handle.agent.report_once().await.unwrap();
        assert_eq!(attic.identity_pem().unwrap(), id.pem);
    }
    // The controller goes away: renewals fail, the last certificate stays in use and on disk.
    th.server.abort();
    let _ = th.server.await;
    let kept = handle.agent.identity();
    let waited = tokio::time::timeout(Duration::from_secs(4), renewals.changed()).await;
    assert!(
        waited.is_err(),
        "no renewal can succeed without the controller"
    );
    assert_eq!(handle.agent.identity().facts.serial, kept.facts.serial);
    assert_eq!(attic.identity_pem().unwrap(), kept.pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_names_both_ends_of_every_reported_mesh_link() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let attic = Agent::load(pair(&th, "attic", dirs.path()).await).unwrap();
    let garage = Agent::load(pair(&th, "garage", dirs.path()).await).unwrap();
    // What `trellis-agent mesh` writes on each router.
    let report = |mac: &str, peer: &str, signal: i32, verdict: &str| {
        serde_json::json!({
            "mac": mac,
            "links": [
                {"peer": peer, "signal_dbm": signal, "expected_throughput_kbps": 54000, "airtime_metric": 170, "verdict": verdict, "advice": []},
                {"peer": "02:99:99:99:99:99", "signal_dbm": -88, "verdict": "weak", "advice": ["move closer"]}
            ]
        })
    };
    for (agent, file, body) in [
        (
            &attic,
            "attic-links.json",
            report("02:00:00:00:0a:01", "02:00:00:00:0b:01", -48, "good"),
        ),
        (
            &garage,
            "garage-links.json",
            report("02:00:00:00:0b:01", "02:00:00:00:0a:01", -52, "good"),
        ),
    ] {
        let path = dirs.path().join(file);
        std::fs::write(&path, body.to_string()).unwrap();
        agent.published.mesh_report_file.publish(Some(path));
        agent.report_once().await.unwrap();
    }
    let topology = th.home.topology();
    let pairs: Vec<(String, String)> = topology
        .iter()
        .map(|l| (l.from.to_string(), l.to.clone()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("attic".to_string(), "02:99:99:99:99:99".to_string()),
            ("attic".to_string(), "garage".to_string()),
            ("garage".to_string(), "02:99:99:99:99:99".to_string()),
            ("garage".to_string(), "attic".to_string()),
        ]
    );
    let link = topology
        .iter()
        .find(|l| l.from.as_str() == "attic" && l.to == "garage")
        .unwrap();
    assert_eq!(link.signal_dbm, Some(-48));
    assert_eq!(link.verdict, trellis_proto::api::LinkVerdict::Good);
    // A removed router's links leave the map.
    th.home.remove_node(&name("garage")).unwrap();
    assert!(th
        .home
        .topology()
        .iter()
        .all(|l| l.from.as_str() != "garage" && l.to != "garage"));
    // A damaged report file is skipped, not fatal.
    std::fs::write(dirs.path().join("attic-links.json"), "{ half").unwrap();
    attic.report_once().await.unwrap();
}

#[tokio::test]
async fn a_silent_relays_links_leave_the_map_and_the_hops_take_the_other_path() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    // Two paths from attic (the portal) to shed: via garage (2 hops), via den and cellar (3).
    // Every agent reports each second, so its links stay on the map for three seconds.
    let plan = [
        ("attic", "0a", vec!["0b", "0d"]),
        ("garage", "0b", vec!["0a", "0c"]),
        ("shed", "0c", vec!["0b", "0e"]),
        ("den", "0d", vec!["0a", "0e"]),
        ("cellar", "0e", vec!["0d", "0c"]),
    ];
    let mac = |m: &str| format!("02:00:00:00:{m}:01");
    let mut agents = Vec::new();
    for (node, own, peers) in &plan {
        let code =
            PairingCode::parse(&th.home.new_pairing_code(*node == "attic").unwrap().code).unwrap();
        let agent = Agent::load(pair_with(&th, node, dirs.path(), code).await)
            .unwrap()
            .with_telemetry_interval(Duration::from_secs(1));
        let links: Vec<serde_json::Value> = peers
            .iter()
            .map(|p| serde_json::json!({"peer": mac(p), "verdict": "good"}))
            .collect();
        let path = dirs.path().join(format!("{node}-links.json"));
        std::fs::write(
            &path,
            serde_json::json!({"mac": mac(own), "links": links}).to_string(),
        )
        .unwrap();
        agent.published.mesh_report_file.publish(Some(path));
        agent.report_once().await.unwrap();
        agents.push(agent);
    }
    let hops_of = |n: &str| {
        th.home
            .nodes()
            .unwrap()
            .into_iter()
            .find(|i| i.name.as_str() == n)
            .and_then(|i| i.hops)
    };
    assert_eq!(hops_of("shed"), Some(2), "via garage");
    // garage loses power: it reports no more. Its neighbours still list it as a good peer
    // (wpa_supplicant keeps a silent peer until its inactivity timeout), and keep reporting.
    // Once three of garage's intervals have passed its report is too old to count.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for (i, (node, _, _)) in plan.iter().enumerate() {
        if *node != "garage" {
            agents[i].report_once().await.unwrap();
        }
    }
    let topology = th.home.topology();
    assert!(
        topology
            .iter()
            .all(|l| l.from.as_str() != "garage" && l.to != "garage"),
        "garage's links and the links to it left the map: {topology:?}"
    );
    assert_eq!(topology.len(), 6, "the other path stays: {topology:?}");
    assert_eq!(hops_of("shed"), Some(3), "via den and cellar");
    assert_eq!(hops_of("garage"), None);
    // The hops each agent learns for locality follow too.
    agents[2].report_once().await.unwrap();
    assert_eq!(agents[2].hops().borrow().get(&name("attic")), Some(&3));
    assert_eq!(agents[2].hops().borrow().get(&name("garage")), None);
    // garage comes back: its next report puts it and its links back on the map.
    agents[1].report_once().await.unwrap();
    assert_eq!(hops_of("shed"), Some(2));
    assert_eq!(hops_of("garage"), Some(1));
}

#[tokio::test]
async fn each_router_learns_its_mesh_hops_to_the_others_from_the_topology() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    // A line: attic — garage — shed; attic also hears the neighbour's router, blocked.
    let mut agents = Vec::new();
    for (node, mac, peers) in [
        (
            "attic",
            "02:00:00:00:0a:01",
            vec![
                ("02:00:00:00:0b:01", "good"),
                ("02:00:00:00:0c:01", "blocked"),
            ],
        ),
        (
            "garage",
            "02:00:00:00:0b:01",
            vec![("02:00:00:00:0a:01", "good"), ("02:00:00:00:0c:01", "fair")],
        ),
        (
            "shed",
            "02:00:00:00:0c:01",
            vec![("02:00:00:00:0b:01", "fair")],
        ),
    ] {
        // attic is the router the controller runs on: its agent joins with its own code.
        let code =
            PairingCode::parse(&th.home.new_pairing_code(node == "attic").unwrap().code).unwrap();
        let agent = Agent::load(pair_with(&th, node, dirs.path(), code).await).unwrap();
        let links: Vec<serde_json::Value> = peers
            .iter()
            .map(|(peer, verdict)| serde_json::json!({"peer": peer, "verdict": verdict}))
            .collect();
        let path = dirs.path().join(format!("{node}-links.json"));
        std::fs::write(
            &path,
            serde_json::json!({"mac": mac, "links": links}).to_string(),
        )
        .unwrap();
        agent.published.mesh_report_file.publish(Some(path));
        agent.report_once().await.unwrap();
        agents.push(agent);
    }
    // Everyone has reported; attic's next report brings its hops back.
    agents[0].report_once().await.unwrap();
    let hops = agents[0].hops().borrow().clone();
    assert_eq!(
        hops.iter()
            .map(|(n, h)| (n.to_string(), *h))
            .collect::<Vec<_>>(),
        vec![("garage".to_string(), 1), ("shed".to_string(), 2)],
        "the blocked attic–shed link does not count"
    );
    agents[2].report_once().await.unwrap();
    assert_eq!(agents[2].hops().borrow().get(&name("attic")), Some(&2));
    // The admin view counts from the portal (attic), as the map and `trellis nodes` show.
    let from_portal: Vec<(String, bool, Option<u32>)> = th
        .home
        .nodes()
        .unwrap()
        .into_iter()
        .map(|n| (n.name.to_string(), n.portal, n.hops))
        .collect();
    assert_eq!(
        from_portal,
        vec![
            ("attic".to_string(), true, Some(0)),
            ("garage".to_string(), false, Some(1)),
            ("shed".to_string(), false, Some(2)),
        ]
    );
    // Each is in the mesh (the pairing page's last stage): a path to the portal.
    let nodes = th.home.nodes().unwrap();
    assert!(nodes
        .iter()
        .all(|n| th.home.waiting_for_mesh_link(n).is_none()));
    // garage removed: attic reaches nobody over the air any more.
    th.home.remove_node(&name("garage")).unwrap();
    agents[0].report_once().await.unwrap();
    assert!(agents[0].hops().borrow().is_empty());
    // shed runs the wifi mesh but its only neighbour is gone: not in the mesh, and the page
    // says what it waits for. A router whose agent reports no wifi mesh (a wired satellite)
    // is in once it follows.
    let node = |n: &str| {
        th.home
            .nodes()
            .unwrap()
            .into_iter()
            .find(|x| x.name.as_str() == n)
            .unwrap()
    };
    let why = th
        .home
        .waiting_for_mesh_link(&node("shed"))
        .expect("shed has no path");
    assert!(why.contains("wifi mesh link"), "{why}");
    let wired = Agent::load(pair(&th, "cellar", dirs.path()).await).unwrap();
    wired.report_once().await.unwrap();
    assert_eq!(th.home.waiting_for_mesh_link(&node("cellar")), None);
}

#[tokio::test]
async fn a_lying_agent_cannot_crash_or_bloat_the_device_map() {
    let th = start_home().await;
    let dirs = tempfile::tempdir().unwrap();
    let agent = Agent::load(pair(&th, "attic", dirs.path()).await).unwrap();
    // A hostname of two-byte characters cut at 63 bytes would split one (a panic, and with
    // panic=abort on the router the whole controller); an "interface" of 100 bytes is no
    // name. (Reports over 64 KiB are refused whole: the body limit.)
    let device = |i: u8| trellis_proto::api::SeenDevice {
        mac: format!("02:00:00:00:01:{i:02x}"),
        ip: None,
        hostname: Some("é".repeat(40)),
        wifi: Some(trellis_proto::api::WifiAssociation {
            interface: "x".repeat(100),
            signal_dbm: Some(-40),
            inactive_ms: Some(10),
            network: None,
            band: None,
            dual_band: None,
        }),
        port: Some("p".repeat(100)),
    };
    agent
        .published
        .devices
        .publish((0..90).map(device).collect());
    agent.report_once().await.unwrap();
    let placed = th.home.devices_by_router().unwrap();
    let at_attic = &placed[&name("attic")];
    assert_eq!(at_attic.len(), 64, "at most 64 devices per router");
    let d = &at_attic[0];
    let hostname = d.hostname.as_deref().unwrap();
    assert_eq!(hostname, "é".repeat(31), "cut on a character boundary");
    assert_eq!(d.wifi.as_ref().unwrap().interface.len(), 15);
    assert_eq!(d.port.as_deref().map(str::len), Some(15));
}

/// POST JSON to the web API from source address `from` (any 127/8 address on loopback),
/// as the page does (CSRF header); the HTTP status.
fn curl_post_from(
    addr: &str,
    ca_pem: &str,
    dir: &std::path::Path,
    from: &str,
    path: &str,
    body: &str,
) -> u16 {
    let (mut cmd, port) = curl(addr, ca_pem, dir);
    let out = cmd
        .args([
            "--interface",
            from,
            "-H",
            "content-type: application/json",
            "-H",
            "x-trellis-csrf: page",
            "--data",
            body,
        ])
        .arg(format!("https://controller.trellis.home.arpa:{port}{path}"))
        .output()
        .expect("curl is installed by cargo xtask setup");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_on_one_device_does_not_lock_the_admin_out_of_another() {
    let th = start_home().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = th.home.ca().cert_pem().to_owned();
    let token = th.home.setup_token().unwrap();
    let (addr, d) = (th.addr.clone(), dir.path().to_owned());
    let statuses = tokio::task::spawn_blocking(move || {
        let post = |from: &str, path: &str, body: String| {
            curl_post_from(&addr, &ca, &d, from, path, &body)
        };
        let setup = post(
            "127.0.0.1",
            "/api/ui/setup",
            serde_json::json!({"token": token, "password": "a good long password"}).to_string(),
        );
        let wrong = || serde_json::json!({"password": "not the password"}).to_string();
        let guesses: Vec<u16> = (0..=trellis_controller::auth::MAX_FAILURES)
            .map(|_| post("127.0.0.2", "/api/ui/login", wrong()))
            .collect();
        let admin = post(
            "127.0.0.1",
            "/api/ui/login",
            serde_json::json!({"password": "a good long password"}).to_string(),
        );
        (setup, guesses, admin)
    })
    .await
    .unwrap();
    let (setup, guesses, admin) = statuses;
    assert_eq!(setup, 200);
    // The guesser's sixth try waits; the admin on another address gets in.
    assert_eq!(guesses, vec![401, 401, 401, 401, 401, 429]);
    assert_eq!(admin, 200);
}

/// A TCP forwarder in front of the controller: aborting it resets every connection through
/// it, as a controller process that exits does (the in-process server's connection tasks
/// would otherwise live on).
async fn forward(front: tokio::net::TcpListener, back: String) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((mut a, _)) = front.accept().await else {
            return;
        };
        let back = back.clone();
        conns.spawn(async move {
            if let Ok(mut b) = tokio::net::TcpStream::connect(&back).await {
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
        });
    }
}

/// The controller (from its state directory) behind a forwarder on `front`.
async fn serve_behind(
    dir: &std::path::Path,
    front: tokio::net::TcpListener,
) -> (
    Arc<Home>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    tokio::task::JoinHandle<()>,
) {
    let home = Home::open(Settings::in_dir(dir.join("controller"))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let back = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(trellis_controller::api::port::serve(home.clone(), listener));
    (home, server, tokio::spawn(forward(front, back)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_controller_restart_the_watch_resumes_as_soon_as_the_controller_answers() {
    let dir = tempfile::tempdir().unwrap();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap().to_string();
    let (home, server, fwd) = serve_behind(dir.path(), front).await;
    let th = TestHome {
        home,
        addr: addr.clone(),
        server,
        _dir: tempfile::tempdir().unwrap(),
    };
    let dirs = tempfile::tempdir().unwrap();
    let attic = pair(&th, "attic", dirs.path()).await;
    // The watch's retry wait is an hour: only the controller answering the telemetry (every
    // second) can bring it back before the test's bound below.
    let handle = Agent::load(attic)
        .unwrap()
        .with_telemetry_interval(Duration::from_secs(1))
        .with_watch_retry(Duration::from_secs(3600), Duration::from_secs(3600))
        .start();
    let mut trust = handle.trust.clone();
    let v1 = th.home.status().unwrap().config_version;
    tokio::time::timeout(Duration::from_secs(10), trust.wait_for_version(v1))
        .await
        .expect("the agent follows the controller")
        .unwrap();

    // The controller stops: every connection resets, the watch's long poll fails and the
    // watch waits (an hour, or until the controller answers again).
    fwd.abort();
    let _ = fwd.await;
    th.server.abort();
    let _ = th.server.await;
    drop(th.home);

    // It starts again from its state directory on the same address; a change right after.
    let front = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let (home, server, fwd) = serve_behind(dir.path(), front).await;
    let th = TestHome {
        home,
        addr,
        server,
        _dir: tempfile::tempdir().unwrap(),
    };
    pair(&th, "garage", dirs.path()).await;
    let v2 = th.home.status().unwrap().config_version;
    assert!(v2 > v1);
    tokio::time::timeout(Duration::from_secs(20), trust.wait_for_version(v2))
        .await
        .expect("the watch resumed when the telemetry got through, not after its hour")
        .unwrap();
    // And acknowledged it to the controller.
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let nodes = th.home.nodes().unwrap();
            if nodes
                .iter()
                .any(|n| n.name.as_str() == "attic" && n.acked_version >= v2)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(acked.is_ok(), "attic acknowledges v{v2}");
    fwd.abort();
    th.server.abort();
}
