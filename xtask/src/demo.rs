//! `cargo xtask demo`: a demo home on this machine, with embedded defaults.
//!
//! As root (network namespaces): three routers (the primary runs the controller), a shared
//! backhaul standing in for the wifi mesh, and devices behind them: a trusted laptop and a
//! guest phone behind the primary, an IoT thermostat in the attic, a NAS serving a web page in
//! the garage. The routers pair with codes, the NAS becomes `nas.trellis.home.arpa`, the
//! laptop reaches it through the agents' mutual-TLS tunnel, the phone is refused. It stays up
//! until Ctrl-C and prints where to look; `--once` checks it and tears it down.
//!
//! Without root it runs the control plane only (controller and three agents on loopback).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::netns::{del_quietly, ip, is_root, spawn_in, wait_for};
use crate::{cargo, output, root};

const ROUTERS: &[(&str, &str)] = &[
    ("primary", "10.9.0.1"),
    ("attic", "10.9.0.2"),
    ("garage", "10.9.0.3"),
];
/// (namespace, router, LAN address, MAC, group)
const DEVICES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "laptop",
        "primary",
        "10.1.0.10",
        "02:de:00:00:00:10",
        "trusted",
    ),
    (
        "phone",
        "primary",
        "10.1.0.11",
        "02:de:00:00:00:11",
        "guest",
    ),
    (
        "thermostat",
        "attic",
        "10.2.0.10",
        "02:de:00:00:00:20",
        "iot",
    ),
    ("nas", "garage", "10.3.0.10", "02:de:00:00:00:30", "trusted"),
];
const PREFIX: &str = "tl-";

struct Running {
    children: Vec<Child>,
    namespaces: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        let _ = Command::new("ip")
            .args(["link", "del", "tl-host"])
            .stderr(Stdio::null())
            .status();
    }
}

fn ns(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn lan_prefix(router: &str) -> &'static str {
    match router {
        "primary" => "10.1.0",
        "attic" => "10.2.0",
        _ => "10.3.0",
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let once = args.iter().any(|a| a == "--once");
    crate::run(cargo().args(["build", "--workspace", "--bins"]))?;
    let bin = root().join("target/debug");
    let dir = std::env::temp_dir().join("trellis-demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if !is_root() {
        println!("not root: running the control plane only (network namespaces need root)");
        return loopback_demo(&bin, &dir, once);
    }
    let mut running = Running {
        children: Vec::new(),
        namespaces: Vec::new(),
    };
    build_home(&mut running)?;
    let socket = dir.join("admin.sock");
    let trellis = dir.join("trellis");
    std::os::unix::fs::symlink(bin.join("trellis-controller"), &trellis)?;
    let admin = crate::netns::Admin {
        trellis: &trellis,
        socket: &socket,
    };
    let ctl = |args: &[&str]| admin.run(args);

    running.children.push(spawn_in(
        &ns("primary"),
        &bin.join("trellis-controller"),
        &[
            "--data-dir",
            &path(&dir.join("controller")),
            "--admin-socket",
            &path(&socket),
            "--agent-api",
            "0.0.0.0:7443",
            "--advertise",
            "10.9.0.1:7443",
        ],
        &dir.join("controller.log"),
    )?);
    wait_for(
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "the controller",
    )?;
    for (router, backhaul) in ROUTERS {
        let code = admin.pairing_code(*router == "primary")?;
        let state = dir.join(router);
        let joined = output(
            Command::new("ip")
                .args(["netns", "exec", &ns(router)])
                .arg(bin.join("trellis-agent"))
                .args([
                    "--state-dir",
                    &path(&state),
                    "join",
                    "10.9.0.1",
                    &code,
                    "--name",
                    router,
                ]),
        )?;
        print!("{router}: code {code}: {joined}");
        let lan = format!("{}.1", lan_prefix(router));
        let metrics = if *router == "primary" {
            "10.99.99.2:9464".to_owned()
        } else {
            format!("{backhaul}:9464")
        };
        running.children.push(spawn_in(
            &ns(router),
            &bin.join("trellis-agent"),
            &[
                "--state-dir",
                &path(&state),
                "run",
                "--dns-listen",
                &format!("{lan}:53"),
                "--metrics-listen",
                &metrics,
                "--no-mdns",
                "--leases",
                "/nonexistent",
                "--advertise",
                backhaul,
            ],
            &dir.join(format!("{router}.log")),
        )?);
    }
    for (name, _, _, mac, group) in DEVICES {
        ctl(&["set-device", mac, name, group])?;
    }
    running.children.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns("nas"),
                "python3",
                "-m",
                "http.server",
                "80",
                "--bind",
                "10.3.0.10",
                "--directory",
            ])
            .arg(nas_site(&dir)?)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the NAS web server (python3)")?,
    );
    ctl(&[
        "add-service",
        "nas",
        "--node",
        "garage",
        "--addr",
        "10.3.0.10",
        "--port",
        "80",
    ])?;
    wait_for(
        || {
            ctl(&["nodes"])
                .map(|s| s.lines().filter(|l| l.contains(" s ago")).count() == ROUTERS.len())
                .unwrap_or(false)
        },
        "every router to report in",
    )?;
    let get = |who: &str| {
        output(Command::new("ip").args([
            "netns",
            "exec",
            &ns(who),
            "curl",
            "-s",
            "-m",
            "5",
            "http://nas.trellis.home.arpa/",
        ]))
        .map(|s| s.contains("Trellis demo NAS"))
        .unwrap_or(false)
    };
    wait_for(
        || get("laptop"),
        "the laptop to reach nas.trellis.home.arpa",
    )?;
    let phone_refused = !get("phone");
    println!();
    print!("{}", ctl(&["nodes"])?);
    print!("{}", ctl(&["services"])?);
    println!("laptop → http://nas.trellis.home.arpa/: page received");
    println!(
        "phone  → http://nas.trellis.home.arpa/: {}",
        if phone_refused {
            "refused"
        } else {
            "NOT REFUSED"
        }
    );
    print!("why: {}", ctl(&["why", "phone", "nas:80"])?);
    // A speed test across the backhaul, as a person asks for it. Until the receiver has
    // announced its sink the controller says so; that answer is the only one worth waiting on.
    let mut speed = ctl(&["speedtest", "attic", "garage", "--seconds", "1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while speed
        .as_ref()
        .is_err_and(|e| format!("{e:#}").contains("has not said where its speed-test sink"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        speed = ctl(&["speedtest", "attic", "garage", "--seconds", "1"]);
    }
    print!("{}", speed?);
    if once {
        if !phone_refused {
            bail!("the guest phone reached the NAS");
        }
        println!("demo: checked; tearing down");
        return Ok(());
    }
    println!(
        "\nThe demo home runs until Ctrl-C.\n  web page:  https://10.99.99.2:7443/  (setup token: {d}/controller/setup-token)\n  metrics:   curl http://10.99.99.2:9464/metrics\n  as a device: ip netns exec {p}laptop curl http://nas.trellis.home.arpa/\n               ip netns exec {p}phone curl -m 3 http://nas.trellis.home.arpa/   (a guest: refused)\n  manage:    {t} --socket {s} nodes | services | why phone nas | policy add … | remove-node attic\n  measure:   {t} --socket {s} speedtest attic garage | traffic | topology\n  logs:      {d}/*.log",
        d = dir.display(),
        p = PREFIX,
        t = trellis.display(),
        s = socket.display()
    );
    let mut controller = running.children.remove(0);
    let status = controller.wait()?;
    bail!(
        "the controller exited ({status}); see {}",
        dir.join("controller.log").display()
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn nas_site(dir: &Path) -> Result<PathBuf> {
    let site = dir.join("nas-site");
    std::fs::create_dir_all(&site)?;
    std::fs::write(
        site.join("index.html"),
        "<html><body><h1>Trellis demo NAS</h1><p>Family photos live here.</p></body></html>\n",
    )?;
    Ok(site)
}

/// Namespaces, the backhaul (a bridge standing in for the 802.11s mesh), LANs, devices, and
/// a link from this machine to the primary router for the web page.
fn build_home(running: &mut Running) -> Result<()> {
    let air = ns("air");
    for name in std::iter::once("air")
        .chain(ROUTERS.iter().map(|r| r.0))
        .chain(DEVICES.iter().map(|d| d.0))
    {
        let n = ns(name);
        del_quietly(&n);
        ip(&["netns", "add", &n])?;
        running.namespaces.push(n.clone());
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &air, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &air, "link", "set", "br0", "up"])?;
    for (i, (router, backhaul)) in ROUTERS.iter().enumerate() {
        let r = ns(router);
        let peer = format!("air{i}");
        ip(&[
            "link", "add", "mesh0", "netns", &r, "type", "veth", "peer", "name", &peer, "netns",
            &air,
        ])?;
        ip(&["-n", &air, "link", "set", &peer, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("{backhaul}/24"),
            "dev",
            "mesh0",
        ])?;
        ip(&["-n", &r, "link", "set", "mesh0", "up"])?;
        ip(&["-n", &r, "link", "add", "br-lan", "type", "bridge"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("{}.1/24", lan_prefix(router)),
            "dev",
            "br-lan",
        ])?;
        ip(&["-n", &r, "link", "set", "br-lan", "up"])?;
    }
    for (i, (device, router, addr, mac, _)) in DEVICES.iter().enumerate() {
        let (d, r) = (ns(device), ns(router));
        let port = format!("lan{i}");
        ip(&[
            "link", "add", "eth0", "netns", &d, "type", "veth", "peer", "name", &port, "netns", &r,
        ])?;
        ip(&["-n", &r, "link", "set", &port, "master", "br-lan", "up"])?;
        ip(&["-n", &d, "link", "set", "eth0", "address", mac])?;
        ip(&[
            "-n",
            &d,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &d, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &d,
            "route",
            "add",
            "default",
            "via",
            &format!("{}.1", lan_prefix(router)),
        ])?;
        // `ip netns exec` mounts this over /etc/resolv.conf: devices ask their router.
        let etc = Path::new("/etc/netns").join(&d);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {}.1\n", lan_prefix(router)),
        )?;
    }
    let _ = Command::new("ip")
        .args(["link", "del", "tl-host"])
        .stderr(Stdio::null())
        .status();
    ip(&[
        "link",
        "add",
        "tl-host",
        "type",
        "veth",
        "peer",
        "name",
        "host0",
        "netns",
        &ns("primary"),
    ])?;
    ip(&["addr", "add", "10.99.99.1/30", "dev", "tl-host"])?;
    ip(&["link", "set", "tl-host", "up"])?;
    ip(&[
        "-n",
        &ns("primary"),
        "addr",
        "add",
        "10.99.99.2/30",
        "dev",
        "host0",
    ])?;
    ip(&["-n", &ns("primary"), "link", "set", "host0", "up"])?;
    Ok(())
}

/// Without root: controller and agents on loopback, control plane only.
fn loopback_demo(bin: &Path, home: &Path, once: bool) -> Result<()> {
    let socket = home.join("admin.sock");
    let trellis = home.join("trellis");
    std::os::unix::fs::symlink(bin.join("trellis-controller"), &trellis)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let api = format!("127.0.0.1:{port}");
    let mut running = Running {
        children: Vec::new(),
        namespaces: Vec::new(),
    };
    running.children.push(
        Command::new(bin.join("trellis-controller"))
            .arg("--data-dir")
            .arg(home.join("controller"))
            .arg("--admin-socket")
            .arg(&socket)
            .args(["--agent-api", &api])
            .stderr(std::fs::File::create(home.join("controller.log"))?)
            .spawn()?,
    );
    wait_for(
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "the controller",
    )?;
    let admin = crate::netns::Admin {
        trellis: &trellis,
        socket: &socket,
    };
    let ctl = |args: &[&str]| admin.run(args);
    for (router, _) in ROUTERS {
        let code = admin.pairing_code(*router == "primary")?;
        let state = home.join(router);
        print!(
            "{}",
            output(
                Command::new(bin.join("trellis-agent"))
                    .arg("--state-dir")
                    .arg(&state)
                    .args(["join", &api, &code, "--name", router])
            )?
        );
        running.children.push(
            Command::new(bin.join("trellis-agent"))
                .arg("--state-dir")
                .arg(&state)
                .args(["run", "--no-service-mesh"])
                .stderr(std::fs::File::create(home.join(format!("{router}.log")))?)
                .spawn()?,
        );
    }
    wait_for(
        || {
            ctl(&["nodes"])
                .map(|s| s.lines().filter(|l| l.contains(" s ago")).count() == ROUTERS.len())
                .unwrap_or(false)
        },
        "every agent to report in",
    )?;
    print!("{}", ctl(&["nodes"])?);
    if once {
        return Ok(());
    }
    println!(
        "Runs until Ctrl-C; try: {} --socket {} nodes",
        trellis.display(),
        socket.display()
    );
    let status = running.children[0].wait()?;
    bail!("the controller exited ({status})")
}
