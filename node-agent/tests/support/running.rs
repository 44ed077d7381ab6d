//! A home of the real binaries: `trellis-controller` started inside a namespace, routers
//! paired with codes from `trellis pair` and their `trellis-agent run` started inside theirs,
//! and the `trellis` CLI a person would type. Every process is killed when the home drops.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{agent_binary, controller_binary, output_in, spawn_in, text, wait_until, Procs};

pub struct RunningHome {
    /// Logs (`controller.log`, `<router>.log`), state directories and the admin socket.
    pub dir: tempfile::TempDir,
    socket: PathBuf,
    trellis: PathBuf,
    /// The controller first, then each router's agent in the order they joined.
    procs: RefCell<Procs>,
}

impl RunningHome {
    /// Starts the controller in `ns`, its agent API on `agent_api` (`ip:port`), with `extra`
    /// flags, and waits for its admin socket.
    pub fn start(ns: &str, agent_api: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir");
        let socket = dir.path().join("admin.sock");
        // `trellis` is the controller binary under another name, as on a router.
        let trellis = dir.path().join("trellis");
        std::os::unix::fs::symlink(controller_binary(), &trellis).expect("trellis link");
        let data = dir.path().join("ctl");
        let mut args = vec![
            "--data-dir",
            path_str(&data),
            "--admin-socket",
            path_str(&socket),
            "--agent-api",
            agent_api,
        ];
        args.extend(extra);
        let controller = spawn_in(
            ns,
            &controller_binary(),
            &args,
            &dir.path().join("controller.log"),
        );
        let home = RunningHome {
            dir,
            socket,
            trellis,
            procs: RefCell::new(Procs(vec![controller])),
        };
        wait_until("the controller's admin socket", || {
            std::os::unix::net::UnixStream::connect(&home.socket).is_ok()
        });
        home
    }

    /// `trellis args` against this controller; its stdout (a failure fails the test).
    pub fn trellis(&self, args: &[&str]) -> String {
        let out = Command::new(&self.trellis)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run trellis");
        assert!(out.status.success(), "trellis {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `trellis args --json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.trellis(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("trellis {a:?}: {e}: {out}"))
    }

    /// Pairs router `name` in `ns` with a fresh code (joining the controller at
    /// `controller_ip`) and starts its agent with the test defaults and `extra` flags.
    pub fn join_and_run(&self, ns: &str, name: &str, controller_ip: &str, extra: &[&str]) {
        let code = self.json(&["pair"])["code"]
            .as_str()
            .expect("a pairing code")
            .to_owned();
        let state = self.dir.path().join(name);
        let state = path_str(&state);
        let out = output_in(
            ns,
            agent_binary(),
            &[
                "--state-dir",
                state,
                "join",
                controller_ip,
                &code,
                "--name",
                name,
            ],
        );
        assert!(out.status.success(), "{name} join: {}", text(&out));
        let mut args = vec![
            "--state-dir",
            state,
            "run",
            "--leases",
            "/nonexistent",
            "--telemetry-interval",
            "1",
            "--speedtest-listen",
            "off",
        ];
        args.extend(extra);
        let log = self.dir.path().join(format!("{name}.log"));
        self.procs
            .borrow_mut()
            .0
            .push(spawn_in(ns, agent_binary(), &args, &log));
    }

    /// Every router has acknowledged the newest config version (plus `ahead`).
    pub fn synced(&self, ahead: u64) -> bool {
        let target = self.json(&["status"])["config_version"]
            .as_u64()
            .unwrap_or(u64::MAX)
            + ahead;
        let nodes = self.json(&["nodes"]);
        nodes.as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .all(|n| n["acked_version"].as_u64().unwrap_or(0) >= target)
        })
    }

    /// A log so far (`controller`, or a router's name).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Stops the controller (a power cut: SIGKILL) and reaps it.
    pub fn kill_controller(&self) {
        self.kill(0);
    }

    /// Stops the agent of the router that joined `nth` (from 0), SIGKILL, and reaps it.
    pub fn kill_router(&self, nth: usize) {
        self.kill(nth + 1);
    }

    fn kill(&self, index: usize) {
        let mut procs = self.procs.borrow_mut();
        assert!(index < procs.0.len(), "no process {index} to stop");
        let mut child = procs.0.remove(index);
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}
