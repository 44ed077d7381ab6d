//! The bench's home: four network namespaces, the real release binaries in them, and the
//! stunnel pair, torn down by a guard on every exit (error, panic, Ctrl-C).
//!
//! ```text
//!  tb-client ── 10.77.1.0/24 ── tb-ra ── 10.77.9.0/24 ── tb-rb ── 10.77.2.0/24 ── tb-server
//!  load client                  controller, agent A        agent B                 echo :9000
//!  iperf3 -c                    stunnel (client side)      stunnel (server side)   iperf3 -s :5201
//!  ──────── CPU 0 (taskset) ─────────────────────┘        └──────── CPU 1 ─────────────────
//! ```
//!
//! Paths from the client: direct (kernel routing through both routers), Trellis (the
//! service's virtual IP, intercepted on router A, HTTP/2 CONNECT in mutual TLS to router B,
//! plaintext last hop) and stunnel (router A's stunnel on 10.77.1.1, mutual TLS 1.3 to router
//! B's stunnel, plaintext last hop).
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::netns::{del_quietly, ip, wait_for};
use crate::{output, teardown};

pub const CLIENT: &str = "tb-client";
pub const RA: &str = "tb-ra";
pub const RB: &str = "tb-rb";
pub const SERVER: &str = "tb-server";
const NAMESPACES: [&str; 4] = [CLIENT, RA, RB, SERVER];

pub const CLIENT_IP: &str = "10.77.1.2";
pub const CLIENT_MAC: &str = "02:77:00:00:00:02";
pub const RA_LAN: &str = "10.77.1.1";
pub const RA_WAN: &str = "10.77.9.1";
pub const RB_WAN: &str = "10.77.9.2";
pub const RB_LAN: &str = "10.77.2.1";
pub const SERVER_IP: &str = "10.77.2.2";

pub const ECHO_PORT: u16 = 9000;
pub const IPERF_PORT: u16 = 5201;
/// stunnel listens on these (client side on router A's LAN address, server side on B's).
pub const STUNNEL_ECHO_PORT: u16 = 19000;
pub const STUNNEL_IPERF_PORT: u16 = 15201;

/// Where router A and the client run, and where router B and the server run.
pub const CPU_A: u32 = 0;
pub const CPU_B: u32 = 1;

/// Tear the bench's home down: what it started and the namespaces it made (see
/// [`crate::teardown`], shared with the demo). Idempotent.
pub fn teardown() {
    teardown::teardown();
}

/// On Ctrl-C or SIGTERM: tear down, say so, then exit.
pub fn install_signal_handler() {
    teardown::install_signal_handler("bench");
}

/// The running home; dropping it tears everything down.
pub struct Home {
    pub dir: PathBuf,
    xtask: PathBuf,
    pub vip: Ipv4Addr,
    pub agent_a: u32,
    pub agent_b: u32,
    pub stunnel: Vec<u32>,
}

impl Drop for Home {
    fn drop(&mut self) {
        teardown();
    }
}

/// A process pinned to `cpu` inside namespace `ns`; `taskset` and `ip netns exec` both
/// exec, so the PID is the program's own.
fn spawn(cpu: u32, ns: &str, program: &Path, args: &[&str], log: &Path) -> Result<u32> {
    let child = teardown::die_with_parent(&mut Command::new("taskset"))
        .args(["-c", &cpu.to_string(), "ip", "netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    teardown::track(pid);
    // The guard reaps it; `Child` does not kill on drop.
    drop(child);
    Ok(pid)
}

/// Kill this process too if the bench is torn down while it runs (a load client).
pub fn track(pid: u32) {
    teardown::track(pid);
}

/// It ended and was reaped: forget it.
pub fn untrack(pid: u32) {
    teardown::untrack(pid);
}

/// Whether a process we started is still there (not exited, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

/// A command run in a namespace, pinned to `cpu`.
pub fn pinned(cpu: u32, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", &cpu.to_string(), "ip", "netns", "exec", ns])
        .arg(program);
    c
}

fn sysctl(ns: &str, kv: &str) -> Result<()> {
    ip(&["netns", "exec", ns, "sysctl", "-qw", kv])
}

fn build_namespaces() -> Result<()> {
    for ns in NAMESPACES {
        del_quietly(ns);
        ip(&["netns", "add", ns])?;
        teardown::namespace(ns);
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // Thousands of short connections per path: more ephemeral ports than the default.
        sysctl(ns, "net.ipv4.ip_local_port_range=10000 65000")?;
    }
    let links = [
        (CLIENT, "eth0", CLIENT_IP, RA, "lan0", RA_LAN),
        (RA, "wan0", RA_WAN, RB, "wan0", RB_WAN),
        (RB, "lan0", RB_LAN, SERVER, "eth0", SERVER_IP),
    ];
    for (a, a_if, a_ip, b, b_if, b_ip) in links {
        ip(&[
            "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
        ])?;
        for (ns, ifname, addr) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
    }
    ip(&["-n", CLIENT, "link", "set", "eth0", "address", CLIENT_MAC])?;
    ip(&["-n", CLIENT, "route", "add", "default", "via", RA_LAN])?;
    ip(&["-n", SERVER, "route", "add", "default", "via", RB_LAN])?;
    ip(&["-n", RA, "route", "add", "10.77.2.0/24", "via", RB_WAN])?;
    ip(&["-n", RB, "route", "add", "10.77.1.0/24", "via", RA_WAN])?;
    for r in [RA, RB] {
        sysctl(r, "net.ipv4.ip_forward=1")?;
    }
    Ok(())
}

impl Home {
    /// Namespaces, controller, both agents joined, the service in the catalog, the echo and
    /// iperf3 servers, the stunnel pair; returns once every path answers.
    ///
    /// `multi_call`: `agent` is the controller's multi-call binary, which is the agent only
    /// when called `trellis-agent` (the router-CPU guest), so the copies keep those names.
    pub fn start(bin: &Path, agent: &Path, xtask: &Path, multi_call: bool) -> Result<Self> {
        Self::start_with(bin, agent, xtask, multi_call, &[])
    }

    /// [`Self::start`], with `agent_args` added to both agents' `run` flags.
    pub fn start_with(
        bin: &Path,
        agent: &Path,
        xtask: &Path,
        multi_call: bool,
        agent_args: &[&str],
    ) -> Result<Self> {
        let dir = std::env::temp_dir().join("meshbench");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin"))?;
        // The same release binaries under names of their own: a stray `pkill trellis-agent`
        // from another checkout's tests on this machine must not end the bench's agents
        // (seen once while developing it).
        let names = if multi_call {
            ["trellis-controller", "trellis-agent"]
        } else {
            ["controller", "agent"]
        };
        for (from, to) in [
            (bin.join("trellis-controller"), names[0]),
            (agent.to_owned(), names[1]),
        ] {
            std::fs::copy(&from, dir.join("bin").join(to))
                .with_context(|| format!("copying {}", from.display()))?;
        }
        let bin = &dir.join("bin");
        build_namespaces()?;
        let mut home = Home {
            dir: dir.clone(),
            xtask: xtask.to_owned(),
            vip: Ipv4Addr::UNSPECIFIED,
            agent_a: 0,
            agent_b: 0,
            stunnel: Vec::new(),
        };
        let p = |x: &Path| x.display().to_string();

        // The server side first: the echo server and iperf3 (one test at a time, as iperf3 is).
        spawn(
            CPU_B,
            SERVER,
            xtask,
            &["bench-server", &format!("{SERVER_IP}:{ECHO_PORT}")],
            &dir.join("echo.log"),
        )?;
        spawn(
            CPU_B,
            SERVER,
            Path::new("iperf3"),
            &["-s", "-B", SERVER_IP, "-p", &IPERF_PORT.to_string()],
            &dir.join("iperf3-server.log"),
        )?;

        // Controller and agents, as `cargo xtask demo` does, on two one-core routers.
        let socket = dir.join("admin.sock");
        let trellis = dir.join("trellis");
        std::os::unix::fs::symlink(bin.join(names[0]), &trellis)?;
        spawn(
            CPU_A,
            RA,
            &bin.join(names[0]),
            &[
                "--data-dir",
                &p(&dir.join("controller")),
                "--admin-socket",
                &p(&socket),
                "--agent-api",
                "0.0.0.0:7443",
                "--advertise",
                &format!("{RA_WAN}:7443"),
            ],
            &dir.join("controller.log"),
        )?;
        let admin = crate::netns::Admin {
            trellis: &trellis,
            socket: &socket,
        };
        admin.wait_ready()?;
        let ctl = |args: &[&str]| admin.run(args);
        for (name, ns, cpu, wan) in [("ra", RA, CPU_A, RA_WAN), ("rb", RB, CPU_B, RB_WAN)] {
            let code = admin.pairing_code(false)?;
            let state = dir.join(name);
            output(
                Command::new("ip")
                    .args(["netns", "exec", ns])
                    .arg(bin.join(names[1]))
                    .args(["--state-dir", &p(&state), "join", RA_WAN, &code])
                    .args(["--name", name]),
            )?;
            let (state, report) = (p(&state), p(&dir.join("no-mesh-report.json")));
            let mut args = vec![
                "--state-dir",
                &state,
                "run",
                "--no-mdns",
                "--leases",
                "/nonexistent",
                "--mesh-report",
                &report,
                "--advertise",
                wan,
            ];
            args.extend_from_slice(agent_args);
            let pid = spawn(
                cpu,
                ns,
                &bin.join(names[1]),
                &args,
                &dir.join(format!("agent-{name}.log")),
            )?;
            if name == "ra" {
                home.agent_a = pid;
            } else {
                home.agent_b = pid;
            }
        }
        ctl(&["set-device", CLIENT_MAC, "client", "trusted"])?;
        let added = ctl(&[
            "--json",
            "add-service",
            "echo",
            "--node",
            "rb",
            "--addr",
            SERVER_IP,
            "--port",
            &ECHO_PORT.to_string(),
            "--port",
            &IPERF_PORT.to_string(),
        ])?;
        let svc: serde_json::Value =
            serde_json::from_str(&added).with_context(|| format!("add-service said {added:?}"))?;
        home.vip = svc["vip"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no virtual IP in {added}"))?;
        wait_for(
            || {
                ctl(&["nodes"])
                    .map(|s| s.lines().filter(|l| l.contains(" s ago")).count() == 2)
                    .unwrap_or(false)
            },
            "both routers to report in",
        )?;

        home.start_stunnel()?;

        for (what, addr) in [
            ("the direct path", home.direct(ECHO_PORT)),
            ("the Trellis path", home.trellis(ECHO_PORT)),
            ("the stunnel path", home.stunnel_addr(ECHO_PORT)),
        ] {
            wait_for(|| home.probe(addr), what)?;
        }
        for pid in [home.agent_a, home.agent_b] {
            if !alive(pid) {
                bail!("an agent exited; see {}/agent-*.log.err", dir.display());
            }
        }
        Ok(home)
    }

    pub fn direct(&self, port: u16) -> SocketAddr {
        SocketAddr::new(SERVER_IP.parse().expect("constant"), port)
    }
    pub fn trellis(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.vip.into(), port)
    }
    pub fn stunnel_addr(&self, port: u16) -> SocketAddr {
        let p = if port == ECHO_PORT {
            STUNNEL_ECHO_PORT
        } else {
            STUNNEL_IPERF_PORT
        };
        SocketAddr::new(RA_LAN.parse().expect("constant"), p)
    }

    /// The release-built xtask run as the load client in the client namespace, on CPU 0.
    pub fn load(&self) -> Command {
        let mut c = pinned(CPU_A, CLIENT, &self.xtask);
        c.arg("bench-load");
        c
    }

    fn probe(&self, addr: SocketAddr) -> bool {
        self.load()
            .args(["--mode", "probe", "--addr", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Certificates (P-256, like the agents') and a mutual-TLS 1.3 stunnel pair.
    fn start_stunnel(&mut self) -> Result<()> {
        let d = self.dir.join("stunnel");
        std::fs::create_dir_all(&d)?;
        let openssl = |args: &[&str]| -> Result<()> {
            output(Command::new("openssl").args(args).current_dir(&d))
                .map(|_| ())
                .context("openssl (Debian package openssl)")
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=bench-ca",
                ][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        )?;
        for who in ["server", "client"] {
            openssl(
                &[
                    &["req", "-nodes", "-subj", &format!("/CN={who}")][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{who}.key"),
                        "-out",
                        &format!("{who}.csr"),
                    ],
                ]
                .concat(),
            )?;
            openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
            ])?;
        }
        let d_s = d.display();
        let conf = |who: &str, client: bool, routes: &[(String, String)]| {
            let mut s = format!(
                "; cargo xtask bench: stunnel side {who}\n\
                 foreground = yes\n\
                 syslog = no\n\
                 pid =\n\
                 {client}",
                client = if client { "client = yes\n" } else { "" }
            );
            for (i, (accept, connect)) in routes.iter().enumerate() {
                s += &format!(
                    "\n[route{i}]\n\
                     accept = {accept}\n\
                     connect = {connect}\n\
                     cert = {d_s}/{who}.pem\n\
                     key = {d_s}/{who}.key\n\
                     CAfile = {d_s}/ca.pem\n\
                     verify = 2\n\
                     sslVersionMin = TLSv1.3\n"
                );
            }
            s
        };
        let server = conf(
            "server",
            false,
            &[
                (
                    format!("{RB_WAN}:{STUNNEL_ECHO_PORT}"),
                    format!("{SERVER_IP}:{ECHO_PORT}"),
                ),
                (
                    format!("{RB_WAN}:{STUNNEL_IPERF_PORT}"),
                    format!("{SERVER_IP}:{IPERF_PORT}"),
                ),
            ],
        );
        let client = conf(
            "client",
            true,
            &[
                (
                    format!("{RA_LAN}:{STUNNEL_ECHO_PORT}"),
                    format!("{RB_WAN}:{STUNNEL_ECHO_PORT}"),
                ),
                (
                    format!("{RA_LAN}:{STUNNEL_IPERF_PORT}"),
                    format!("{RB_WAN}:{STUNNEL_IPERF_PORT}"),
                ),
            ],
        );
        std::fs::write(d.join("server.conf"), server)?;
        std::fs::write(d.join("client.conf"), client)?;
        for (cpu, ns, who) in [(CPU_B, RB, "server"), (CPU_A, RA, "client")] {
            let pid = spawn(
                cpu,
                ns,
                Path::new("stunnel4"),
                &[&d.join(format!("{who}.conf")).display().to_string()],
                &self.dir.join(format!("stunnel-{who}.log")),
            )?;
            self.stunnel.push(pid);
        }
        Ok(())
    }
}

/// Two `kB` fields of `/proc/PID/status` (0 where missing: the process is gone).
fn status_kb(pid: u32, a: &str, b: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(':')))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field(a), field(b))
}

/// VmRSS and VmHWM of a process, in kB.
pub fn memory(pid: u32) -> (u64, u64) {
    status_kb(pid, "VmRSS", "VmHWM")
}

/// RssAnon and RssFile of a process, in kB: heap and stacks versus mapped binary pages.
pub fn rss_parts(pid: u32) -> (u64, u64) {
    status_kb(pid, "RssAnon", "RssFile")
}

/// Reset a process's VmHWM to its current RSS (`/proc/PID/clear_refs`, value 5).
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}
