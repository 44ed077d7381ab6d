//! The agent API's port (:7443) under a hostile device on the LAN (issue 13, findings 1–3):
//! real TLS clients on loopback, each from its own source address in 127.0.0.0/8, against the
//! real server. Each test is about *whether* the home stays usable, never how fast; every wait
//! is bounded so a regression fails instead of hanging.

mod support;

use support::lan::{login_request, send_from, setup_request, tcp_from, tls_from, ANSWER};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trellis_agent::control::{tls, Controller};
use trellis_agent::join::join;
use trellis_agent::state::StateDir;
use trellis_controller::home::{Home, Settings};
use trellis_proto::pairing::PairingCode;
use trellis_proto::NodeName;

const PASSWORD: &str = "a good long password";

struct TestHome {
    home: Arc<Home>,
    addr: SocketAddr,
    gate: Arc<trellis_io::Gate>,
    _server: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

async fn start_home() -> TestHome {
    let h = start_home_without_password().await;
    h.home
        .set_first_admin_password(&trellis_controller::auth::hash_password(PASSWORD, 0))
        .unwrap();
    h
}

async fn pair_attic(th: &TestHome) -> Controller {
    let code = PairingCode::parse(&th.home.new_pairing_code(false).unwrap().code).unwrap();
    let state = StateDir::new(th.dir.path().join("attic"));
    join(
        &th.addr.to_string(),
        &code,
        &NodeName::new("attic").unwrap(),
        &state,
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("attic could not join: {e}"));
    Controller::new(
        &th.addr.to_string(),
        tls::member_config(
            &state.ca_pem().unwrap(),
            trellis_agent::identity::CurrentIdentity::new(
                trellis_agent::identity::NodeIdentity::from_pem(&state.identity_pem().unwrap())
                    .unwrap(),
            ),
        )
        .unwrap(),
    )
}

/// One slow client of the three kinds the issue measured: a bare TCP connection, a TLS
/// connection that sends nothing, and one that sent its headers and the first bytes of a
/// body that never ends. Returns the connection to hold open (or `None` if it was refused).
async fn slow_client(i: usize, to: SocketAddr) -> Option<Box<dyn std::any::Any + Send>> {
    let (a, b) = (10 + (i / 200) as u8, (i % 200 + 1) as u8);
    match i % 3 {
        0 => Some(Box::new(tcp_from(a, b, to).await.ok()?)),
        1 => Some(Box::new(tls_from(a, b, to).await.ok()?)),
        _ => {
            let mut tls = tls_from(a, b, to).await.ok()?;
            tls.write_all(
                b"POST /api/ui/login HTTP/1.1\r\nhost: c\r\ncontent-type: application/json\r\n\
                  x-trellis-csrf: page\r\ncontent-length: 4000\r\n\r\n{\"password\":\"",
            )
            .await
            .ok()?;
            Some(Box::new(tls))
        }
    }
}

/// Finding 1: 200 slow connections from 200 other addresses used to hold all 64 places of
/// the port, and the agent was reset and the admin locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_polls_and_the_admin_logs_in_while_200_slow_connections_are_held() {
    let th = start_home().await;
    let attic = pair_attic(&th).await;
    let mut held = Vec::new();
    for i in 0..200 {
        held.extend(slow_client(i, th.addr).await);
    }
    assert!(
        held.len() >= 64,
        "the slow clients got in ({}); the test holds the port as an attacker would",
        held.len()
    );
    assert!(
        th.gate.held() >= trellis_controller::api::port::GUEST_SEATS,
        "the guests' seats are full of slow clients: {}",
        th.gate.held()
    );

    let path = "/v1/agent/config?after=0&wait=1";
    let poll = tokio::time::timeout(ANSWER, attic.call::<()>(Method::GET, path, None))
        .await
        .expect("the poll ends")
        .expect("the enrolled agent reaches the controller");
    assert_eq!(poll.status, StatusCode::OK, "attic gets its config");

    let (status, text) = send_from(0, 250, th.addr, &login_request(PASSWORD))
        .await
        .expect("the admin's connection is answered");
    assert_eq!(status, 200, "the admin logs in: {text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("set-cookie: trellis_session="));
    drop(held);
}

/// Finding 1: a body trickled a byte at a time used to hold its connection for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_and_cut_off() {
    let th = start_home().await;
    let mut tls = tls_from(0, 5, th.addr).await.unwrap();
    tls.write_all(
        b"POST /api/ui/login HTTP/1.1\r\nhost: c\r\ncontent-type: application/json\r\n\
          x-trellis-csrf: page\r\ncontent-length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    // The client keeps its promise of a body alive: one byte a second, for longer than the
    // server's body deadline.
    let bound = trellis_controller::api::port::BODY_TIMEOUT * 3;
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for _ in 0..bound.as_secs() {
            tick.tick().await;
            if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(bound, rd.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server cut the trickling connection within {bound:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    trickle.abort();
}

/// Finding 3: wrong passwords from 200 addresses used to use up a ceiling shared by everyone,
/// and the admin's right password from a fresh address got 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_200_addresses_do_not_lock_out_the_admin() {
    let th = start_home().await;
    let to = th.addr;
    let guesses: Vec<_> = (1..=200u8)
        .map(|b| {
            tokio::spawn(
                async move { send_from(1, b, to, &login_request("not the password")).await },
            )
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for g in guesses {
        let status = g.await.unwrap().map_or(0, |(s, _)| s);
        *statuses.entry(status).or_default() += 1;
    }
    println!("answers to 200 parallel wrong logins (0: cut at the door): {statuses:?}");
    assert!(statuses.get(&401).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(
        statuses.keys().all(|s| [0, 401, 429, 503].contains(s)),
        "wrong passwords get 401, or a busy or door refusal: {statuses:?}"
    );

    let (status, text) = send_from(2, 1, to, &login_request(PASSWORD))
        .await
        .expect("the admin's connection is answered");
    assert_eq!(
        status, 200,
        "the admin's right password from a fresh address: {text}"
    );

    // The first-run setup token is held to the same rule, on a home without a password.
    let fresh = {
        let th2 = start_home_without_password().await;
        let to = th2.addr;
        let tries: Vec<_> = (1..=200u8)
            .map(|b| {
                tokio::spawn(async move {
                    send_from(3, b, to, &setup_request("wrong-token-wrong-tok", PASSWORD)).await
                })
            })
            .collect();
        for t in tries {
            t.await.unwrap();
        }
        let token = th2.home.setup_token().unwrap();
        send_from(4, 1, to, &setup_request(&token, PASSWORD)).await
    };
    let (status, text) = fresh.expect("the setup is answered");
    assert_eq!(
        status, 200,
        "the right setup token from a fresh address: {text}"
    );
}

async fn start_home_without_password() -> TestHome {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(Settings::in_dir(dir.path().join("controller"))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = trellis_controller::api::port::gate();
    let server = tokio::spawn(trellis_controller::api::port::serve_with(
        home.clone(),
        listener,
        gate.clone(),
    ));
    TestHome {
        home,
        addr,
        gate,
        _server: server,
        dir,
    }
}

/// GET `path` on the admin socket; the body.
fn admin_get(socket: &std::path::Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(ANSWER)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Finding 1: every refused connection used to log a line (203,337 lines in an afternoon).
/// Now they are counted, shown on the admin socket, and logged at most once a minute.
#[test]
fn refusals_are_counted_and_their_log_lines_stay_few() {
    let dir = tempfile::tempdir().unwrap();
    let c = support::start_controller(dir.path(), "info");
    let to = SocketAddr::from(([127, 0, 0, 1], c.port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 300 connections from one device: past its per-source cap, each further one is refused.
    let held: Vec<TcpStream> = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..300 {
            if let Ok(s) = tcp_from(0, 7, to).await {
                held.push(s);
            }
        }
        held
    });
    let cap = trellis_controller::api::port::LIMITS.per_source;
    let wanted = (300 - cap) as u64;
    // The refusals are counted as the controller accepts them; read the counter until it
    // has them all (bounded).
    let deadline = std::time::Instant::now() + ANSWER;
    let refused = loop {
        let page = admin_get(&c.socket, "/v1/admin/metrics");
        let n: u64 = page
            .lines()
            .find(|l| {
                l.starts_with(
                    "trellis_listener_refused_total{listener=\"agent-api\",reason=\"per_source_cap\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n >= wanted || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::yield_now();
    };
    assert!(refused >= wanted, "{refused} of {wanted} refusals counted");
    drop(held);
    drop(c);
    let log = std::fs::read_to_string(dir.path().join("controller.log")).unwrap();
    let lines = log.lines().filter(|l| l.contains("refus")).count();
    assert!(
        lines <= 2,
        "{refused} refusals wrote {lines} log lines (at most one a minute):\n{log}"
    );
}

/// A body past the limit is answered 413 (it was a 400), saying the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_says_the_limit() {
    let th = start_home().await;
    let n = trellis_controller::api::MAX_BODY + 1;
    let request = format!(
        "POST /v1/pair/start HTTP/1.1\r\nhost: c\r\ncontent-type: application/json\r\n\
         content-length: {n}\r\nconnection: close\r\n\r\n{}",
        " ".repeat(n)
    );
    let (status, text) = send_from(0, 6, th.addr, &request).await.expect("an answer");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 64 KiB"), "{text}");
}
