//! What the controller's process-level tests share: the real `trellis-controller` binary
//! started as procd would, the `trellis` command through its symlink, and satellites that
//! pair and run with the real `trellis-agent`. Every process is killed when its guard drops.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod lan;

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running controller: its admin socket and agent API port on loopback.
pub struct Controller {
    pub proc: Proc,
    pub socket: PathBuf,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `trellis-controller` with its state under `dir` and wait until both its admin socket
/// and its agent API answer. Its log goes to `dir/controller.log`.
pub fn start_controller(dir: &Path, log_level: &str) -> Controller {
    start_controller_env(dir, log_level, &[])
}

/// [`start_controller`] with extra environment (a stand-in tool first on `PATH`).
pub fn start_controller_env(dir: &Path, log_level: &str, env: &[(&str, String)]) -> Controller {
    let socket = dir.join("admin.sock");
    let port = free_port();
    let log = std::fs::File::create(dir.join("controller.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_trellis-controller"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--admin-socket")
        .arg(&socket)
        .args([
            "--agent-api",
            &format!("127.0.0.1:{port}"),
            "--log",
            log_level,
            "--metrics-listen",
            "off",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(log)
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    {
        assert!(Instant::now() < deadline, "controller did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Controller { proc, socket, port }
}

/// `trellis` is a symlink to the controller binary, as the package installs it.
pub fn trellis(dir: &Path, socket: &Path, args: &[&str]) -> Output {
    let link = dir.join("trellis");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_trellis-controller"), &link).unwrap();
    }
    Command::new(&link)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// The agent binary sits beside the controller's in the target directory (`cargo xtask test`
/// builds every binary before the tests).
pub fn agent_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_trellis-controller")).with_file_name("trellis-agent");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --workspace --bins; cargo xtask test does)",
        path.display()
    );
    path
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `trellis-agent join` as router `name`, state in `dir/<name>`.
pub fn join(dir: &Path, c: &Controller, code: &str, name: &str) -> Output {
    Command::new(agent_binary())
        .arg("--state-dir")
        .arg(dir.join(name))
        .args([
            "join",
            &format!("127.0.0.1:{}", c.port),
            code,
            "--name",
            name,
        ])
        .output()
        .unwrap()
}

/// A fresh code from `trellis pair`, then router `name` joins with it.
pub fn pair(dir: &Path, c: &Controller, name: &str) {
    let out = trellis(dir, &c.socket, &["pair", "--json"]);
    let code: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let joined = join(dir, c, code["code"].as_str().unwrap(), name);
    assert!(joined.status.success(), "{}", text(&joined));
}

/// Pair router `name` and run its agent: control plane and speed-test sink on loopback; the
/// service mesh is tested in the namespace tests.
pub fn pair_and_run(dir: &Path, c: &Controller, name: &str) -> Proc {
    pair(dir, c, name);
    let child = Command::new(agent_binary())
        .arg("--state-dir")
        .arg(dir.join(name))
        .args([
            "--log",
            "warn",
            "run",
            "--no-service-mesh",
            "--speedtest-listen",
            "127.0.0.1:0",
            "--mesh-report",
        ])
        .arg(dir.join(format!("{name}-mesh.json")))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Requests with curl, a real client: HTTPS to the agent port trusting the home CA, from a
/// chosen 127/8 source address, or HTTP over the admin socket.
pub struct Curl<'a> {
    pub dir: &'a Path,
    pub port: u16,
    pub socket: PathBuf,
    pub ca_pem: String,
}

impl<'a> Curl<'a> {
    pub fn new(dir: &'a Path, c: &Controller) -> Self {
        let out = trellis(dir, &c.socket, &["ca-backup", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ca_pem = v["ca_cert_pem"].as_str().unwrap().to_owned();
        Self {
            dir,
            port: c.port,
            socket: c.socket.clone(),
            ca_pem,
        }
    }

    /// One HTTPS request from `from`, with a client certificate if given. The HTTP status
    /// (0: no answer) and the body.
    pub fn send(
        &self,
        from: &str,
        cert: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        self.send_with(from, cert, &[], method, path, body)
    }

    /// [`Curl::send`] with extra headers (`"name: value"`) and the cookie jar `dir/cookies`.
    pub fn send_with(
        &self,
        from: &str,
        cert: Option<&str>,
        headers: &[&str],
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let ca = self.dir.join("curl-ca.pem");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        let mut cmd = Command::new("curl");
        cmd.arg("--cacert")
            .arg(&ca)
            .args(["--interface", from])
            .args([
                "--resolve",
                &format!("controller.trellis.home.arpa:{}:127.0.0.1", self.port),
            ]);
        if let Some(pem) = cert {
            let f = self.dir.join(format!("client-{from}.pem"));
            std::fs::write(&f, pem).unwrap();
            cmd.arg("--cert").arg(&f);
        }
        let jar = self.dir.join("cookies");
        cmd.arg("-b").arg(&jar).arg("-c").arg(&jar);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let url = format!("https://controller.trellis.home.arpa:{}{path}", self.port);
        run(cmd, method, &url, body)
    }

    /// One request over the admin socket.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.arg("--unix-socket").arg(&self.socket);
        run(cmd, method, &format!("http://localhost{path}"), body)
    }
}

fn run(mut cmd: Command, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    cmd.args([
        "-s",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "20",
        "-X",
        method,
    ]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .expect("curl is installed by cargo xtask setup");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = all.rsplit_once('\n').unwrap_or(("", &all));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}
