//! `kill -9` during writes never loses an acknowledged write and never leaves the store
//! unreadable. Runs the real `trellis-controller` binary, writes through its admin socket,
//! and kills it at a random moment, 50 rounds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use rand::Rng;
use trellis_io::client;

const ROUNDS: usize = 50;

fn start_controller(data: &Path, socket: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trellis-controller"))
        .arg("--data-dir")
        .arg(data)
        .arg("--admin-socket")
        .arg(socket)
        .args(["--agent-api", "127.0.0.1:0", "--log", "warn"])
        .args(["--metrics-listen", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start trellis-controller")
}

/// Wait until the admin socket answers (the controller is ready), or fail the test.
async fn wait_ready(socket: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(io) = tokio::net::UnixStream::connect(socket).await {
            if let Ok(a) = client::request::<_, ()>(io, Method::GET, "/v1/admin/status", None).await
            {
                if a.status.is_success() {
                    return;
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("controller exited before becoming ready: {status}");
        }
        assert!(Instant::now() < deadline, "controller not ready after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put_device(socket: &Path, n: u32) -> bool {
    let Ok(io) = tokio::net::UnixStream::connect(socket).await else {
        return false;
    };
    let body = serde_json::json!({
        "mac": format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255),
        "name": format!("device-{n}"),
        "group": "iot",
    });
    matches!(client::request(io, Method::POST, "/v1/admin/devices", Some(&body)).await, Ok(a) if a.status.is_success())
}

async fn stored_devices(socket: &Path) -> BTreeSet<String> {
    let io = tokio::net::UnixStream::connect(socket).await.unwrap();
    let list: Vec<serde_json::Value> =
        client::request::<_, ()>(io, Method::GET, "/v1/admin/devices", None)
            .await
            .unwrap()
            .json()
            .unwrap();
    list.iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let socket = dir.path().join("admin.sock");
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut next = 0u32;
    let mut home_id = None;
    for round in 0..ROUNDS {
        let mut child = start_controller(&data, &socket);
        wait_ready(&socket, &mut child).await;
        // Everything acknowledged in earlier rounds is still there, and the home is the same.
        let stored = stored_devices(&socket).await;
        let missing: Vec<_> = acked.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged writes lost: {missing:?}"
        );
        let io = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let status: serde_json::Value =
            client::request::<_, ()>(io, Method::GET, "/v1/admin/status", None)
                .await
                .unwrap()
                .json()
                .unwrap();
        let id = status["home_id"].as_str().unwrap().to_owned();
        assert_eq!(
            home_id.get_or_insert(id.clone()),
            &id,
            "the home (and its CA) must survive"
        );

        // Write as fast as possible and kill -9 at a random moment.
        let kill_after = Duration::from_millis(rand::thread_rng().gen_range(5..120));
        let started = Instant::now();
        while started.elapsed() < kill_after {
            next += 1;
            if put_device(&socket, next).await {
                acked.insert(format!("device-{next}"));
            }
        }
        // One more write in flight while the process dies.
        let in_flight = tokio::spawn({
            let socket = socket.clone();
            let n = next + 1;
            async move { put_device(&socket, n).await }
        });
        child.kill().expect("kill -9");
        child.wait().unwrap();
        next += 1;
        if in_flight.await.unwrap() {
            acked.insert(format!("device-{next}"));
        }
    }
    let mut child = start_controller(&data, &socket);
    wait_ready(&socket, &mut child).await;
    let stored = stored_devices(&socket).await;
    assert!(acked.is_subset(&stored));
    println!(
        "{ROUNDS} kill -9 rounds: {} writes acknowledged, all {} present after restart",
        acked.len(),
        acked.len()
    );
    assert!(acked.len() > ROUNDS, "the test must actually write");
    child.kill().unwrap();
    child.wait().unwrap();
}
