//! `cargo xtask demo`: a demo home on this machine, with embedded defaults.
//!
//! As root (network namespaces): three routers (the primary runs the controller), a shared
//! backhaul standing in for the wifi mesh, and devices behind them: a trusted laptop and a
//! guest phone behind the primary, an IoT thermostat in the attic, a NAS serving a web page in
//! the garage. The routers pair with codes, the NAS becomes `nas.trellis.home.arpa`, the
//! laptop reaches it through the agents' mutual-TLS tunnel, the phone is refused. It stays up
//! until Ctrl-C (or SIGTERM) and prints where to look; `--once` checks it and tears it down.
//! However it ends, [`crate::teardown`] stops every process it started and removes every
//! namespace, link and file it made, and says so; a demo that was killed outright is swept
//! up by the next one before it builds anything.
//!
//! Without root it runs the control plane only (controller and three agents on loopback).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::netns::{ip, is_root, wait_for};
use crate::{cargo, output, root, teardown};

pub mod stops;

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
/// The link from this machine into the primary router, for the web page.
const HOST_LINK: &str = "tl-host";
/// The PIDs the loopback demo started, for the next run to stop if this one is killed.
const PIDFILE: &str = "demo.pids";

/// A demo process: its own process group (Ctrl-C in the terminal reaches only xtask, which
/// then stops it in order), killed with xtask if xtask is killed, recorded for teardown.
fn start(cmd: &mut Command, pids: Option<&Path>) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    teardown::die_with_parent(cmd).process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    teardown::track(child.id());
    if let Some(file) = pids {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)?;
        writeln!(f, "{}", child.id())?;
    }
    Ok(child)
}

/// A program inside a namespace, its standard error going to `log`.
fn start_in(namespace: &str, program: &Path, args: &[&str], log: &Path) -> Result<Child> {
    start(
        Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?),
        None,
    )
}

/// Wait until the controller exits (an error: the demo cannot go on without it). Ctrl-C and
/// SIGTERM end the process from the signal thread, after teardown.
fn wait_on(mut controller: Child, log: &Path) -> Result<()> {
    let status = controller.wait()?;
    bail!("the controller exited ({status}); see {}", log.display())
}

/// Stop what a killed demo left: with root, everything in `tl-*` namespaces (and them);
/// without, the processes its pidfile names, if they still are Trellis's.
fn sweep_leftovers(dir: &Path) {
    let mut removed = teardown::Removed::default();
    if is_root() {
        removed = teardown::sweep(PREFIX, &[HOST_LINK]);
    }
    if let Ok(pids) = std::fs::read_to_string(dir.join(PIDFILE)) {
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let ours = exe
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("trellis-"));
            // SAFETY: a plain syscall, on a PID whose program is one of ours.
            if ours && unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                removed.processes += 1;
            }
        }
    }
    if !removed.is_empty() {
        println!("demo: an earlier demo was still there: {removed}");
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
    teardown::install_signal_handler("demo");
    let result = demo(once);
    if result.is_err() && teardown::interrupted() {
        // A step failed because Ctrl-C stopped what it talked to: the signal thread is
        // tearing down and ends the process; its words are the ones to read.
        loop {
            std::thread::park();
        }
    }
    result
}

fn demo(once: bool) -> Result<()> {
    // The same build as `cargo xtask test`'s build stage: another feature set (say, without
    // `--all-features`) would rebuild much of the workspace after a test run.
    crate::run(cargo().args(crate::test::BINS_BUILD))?;
    let bin = root().join("target/debug");
    let dir = std::env::temp_dir().join("trellis-demo");
    sweep_leftovers(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let _guard = teardown::Guard("demo");
    let trellis = write_trellis_command(&dir, &bin)?;
    let socket = dir.join("admin.sock");
    let real = dir.join(".bin/trellis");
    let admin = crate::netns::Admin {
        trellis: &real,
        socket: &socket,
    };
    if !is_root() {
        println!("not root: running the control plane only (network namespaces need root)");
        return loopback_demo(&bin, &dir, &admin, &trellis, once);
    }
    build_home()?;
    let ctl = |args: &[&str]| admin.run(args);

    let controller = start_in(
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
    )?;
    admin.wait_ready()?;
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
        start_in(
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
                // Livelier than a real home's 30 s: the map fills in while one watches.
                "--telemetry-interval",
                "5",
            ],
            &dir.join(format!("{router}.log")),
        )?;
    }
    for (name, _, _, mac, group) in DEVICES {
        ctl(&["set-device", mac, name, group])?;
    }
    start(
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        None,
    )
    .context("starting the NAS web server (python3)")?;
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
    // The backhaul bridge stands in for the mesh; the agents see each other through it as
    // through a cable, and the map says so.
    wait_for(
        || {
            ctl(&["topology"])
                .map(|t| {
                    t.lines().filter(|l| l.contains(" cable ")).count() >= 2 * (ROUTERS.len() - 1)
                })
                .unwrap_or(false)
        },
        "the backhaul's cables to appear on the map",
    )?;
    let phone_refused = !get("phone");
    println!();
    print!("{}", ctl(&["nodes"])?);
    print!("{}", ctl(&["services"])?);
    print!("{}", ctl(&["topology"])?);
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
    // What a person runs to see that all is well: on a healthy demo it must say so.
    let check = Command::new(admin.trellis)
        .arg("--socket")
        .arg(&socket)
        .arg("check")
        .output()
        .context("running trellis check")?;
    print!("{}", String::from_utf8_lossy(&check.stdout));
    if once {
        if !phone_refused {
            bail!("the guest phone reached the NAS");
        }
        if !check.status.success() {
            bail!(
                "trellis check did not pass on a healthy demo ({}); its findings are above",
                check.status
            );
        }
        println!("demo: checked; tearing down");
        return Ok(());
    }
    let token = std::fs::read_to_string(dir.join("controller/setup-token")).unwrap_or_default();
    println!(
        "\nThe demo home runs until Ctrl-C.\n  web page:  https://10.99.99.2:7443/  (self-signed; first visit: set a password with the setup token {token})\n  metrics:   curl http://10.99.99.2:9464/metrics\n  as a device: ip netns exec {p}laptop curl http://nas.trellis.home.arpa/\n               ip netns exec {p}phone curl -m 3 http://nas.trellis.home.arpa/   (a guest: refused, with a page naming the rule)\n  manage:    {t} nodes | services | why phone nas | policy add … | remove-node attic | check\n  measure:   {t} speedtest attic garage | traffic | topology\n  logs:      {d}/*.log",
        token = token.trim(),
        d = dir.display(),
        p = PREFIX,
        t = trellis.display(),
    );
    wait_on(controller, &dir.join("controller.log"))
}

/// `<dir>/trellis`: the admin command already pointed at this demo's controller, so the
/// commands the demo prints work as typed.
fn write_trellis_command(dir: &Path, bin: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // The controller binary is the `trellis` command when called by that name.
    let real = dir.join(".bin/trellis");
    std::fs::create_dir_all(dir.join(".bin"))?;
    std::os::unix::fs::symlink(bin.join("trellis-controller"), &real)?;
    let wrapper = dir.join("trellis");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# The demo's admin command: trellis against the demo controller's socket.\nexec '{}' --socket '{}' \"$@\"\n",
            real.display(),
            dir.join("admin.sock").display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(wrapper)
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
fn build_home() -> Result<()> {
    let air = ns("air");
    for name in std::iter::once("air")
        .chain(ROUTERS.iter().map(|r| r.0))
        .chain(DEVICES.iter().map(|d| d.0))
    {
        let n = ns(name);
        ip(&["netns", "add", &n])?;
        teardown::namespace(&n);
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
    ip(&[
        "link",
        "add",
        HOST_LINK,
        "type",
        "veth",
        "peer",
        "name",
        "host0",
        "netns",
        &ns("primary"),
    ])?;
    teardown::link(HOST_LINK);
    ip(&["addr", "add", "10.99.99.1/30", "dev", HOST_LINK])?;
    ip(&["link", "set", HOST_LINK, "up"])?;
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
fn loopback_demo(
    bin: &Path,
    home: &Path,
    admin: &crate::netns::Admin,
    trellis: &Path,
    once: bool,
) -> Result<()> {
    let pids = home.join(PIDFILE);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let api = format!("127.0.0.1:{port}");
    let controller = start(
        Command::new(bin.join("trellis-controller"))
            .arg("--data-dir")
            .arg(home.join("controller"))
            .arg("--admin-socket")
            .arg(admin.socket)
            .args(["--agent-api", &api, "--metrics-listen", "off"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(home.join("controller.log"))?),
        Some(&pids),
    )?;
    wait_for(
        || std::os::unix::net::UnixStream::connect(admin.socket).is_ok(),
        "the controller",
    )?;
    let ctl = |args: &[&str]| admin.run(args);
    for (router, _) in ROUTERS {
        let code = admin.pairing_code(*router == "primary")?;
        let state = home.join(router);
        print!(
            "{router}: {}",
            output(
                Command::new(bin.join("trellis-agent"))
                    .arg("--state-dir")
                    .arg(&state)
                    .args(["join", &api, &code, "--name", router])
            )?
        );
        start(
            Command::new(bin.join("trellis-agent"))
                .arg("--state-dir")
                .arg(&state)
                .args(["run", "--no-service-mesh"])
                .stdin(Stdio::null())
                .stderr(std::fs::File::create(home.join(format!("{router}.log")))?),
            Some(&pids),
        )?;
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
        println!("demo: checked; tearing down");
        return Ok(());
    }
    println!(
        "The demo runs until Ctrl-C; try: {} nodes",
        trellis.display()
    );
    wait_on(controller, &home.join("controller.log"))
}
