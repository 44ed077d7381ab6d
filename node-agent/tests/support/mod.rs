//! Shared by the namespace tests and the mesh benchmark: a home of four network namespaces
//! (laptop, router A, router B, server), proxies running inside them, captures, the real
//! binaries started inside namespaces and killed on drop, the laptop's DNS and HTTP.
#![allow(dead_code)]

pub mod running;

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use trellis_agent::intercept::{Interception, Rules};
use trellis_agent::metrics::{AccessRecord, Metrics};
use trellis_agent::proxy::testca::TestCa;
use trellis_agent::proxy::{MeshState, NodeIdentity, Proxy, ProxyConfig};
use trellis_proto::catalog::{Catalog, Instance, LearnedVia, ServicePort};
use trellis_proto::policy::{Device, Policy};
use trellis_proto::snapshot::PeerNode;
use trellis_proto::{NodeName, SpiffeId};

pub const LAPTOP_MAC: &str = "02:00:00:00:00:01";
pub const PAGE_SECRET: &str = "the-family-photos-are-private-7f3a";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::is_root() {
            eprintln!("SKIPPED: needs root for network namespaces, nftables and raw sockets (CI runs as root)");
            return;
        }
    };
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install iproute2/nftables: cargo xtask setup)",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair from namespace `a_ns` (interface `a`, address `a_ip`) to `b_ns`, both up.
pub fn veth(a_ns: &str, a: &str, a_ip: &str, b_ns: &str, b: &str, b_ip: &str) {
    run(&[
        "ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
    ]);
    run(&["ip", "-n", a_ns, "addr", "add", a_ip, "dev", a]);
    run(&["ip", "-n", b_ns, "addr", "add", b_ip, "dev", b]);
    run(&["ip", "-n", a_ns, "link", "set", a, "up"]);
    run(&["ip", "-n", b_ns, "link", "set", b, "up"]);
}

/// Namespaces deleted on drop.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    /// Create each namespace with its loopback up.
    pub fn new(names: &[&str]) -> Self {
        for n in names {
            run(&["ip", "netns", "add", n]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        Namespaces(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            del_namespace(n);
        }
    }
}

/// Four namespaces named after this test; deleted on drop.
pub struct Home {
    pub laptop: String,
    pub ra: String,
    pub rb: String,
    pub server: String,
}

impl Home {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let h = Home {
            laptop: format!("tc-{id}"),
            ra: format!("ra-{id}"),
            rb: format!("rb-{id}"),
            server: format!("ts-{id}"),
        };
        for ns in [&h.laptop, &h.ra, &h.rb, &h.server] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        veth(&h.laptop, "c0", "10.1.0.2/24", &h.ra, "a0", "10.1.0.1/24");
        veth(&h.ra, "a1", "10.9.0.1/24", &h.rb, "b1", "10.9.0.2/24");
        veth(&h.rb, "b0", "10.2.0.1/24", &h.server, "s0", "10.2.0.2/24");
        run(&[
            "ip", "-n", &h.laptop, "link", "set", "c0", "address", LAPTOP_MAC,
        ]);
        run(&[
            "ip", "-n", &h.laptop, "route", "add", "default", "via", "10.1.0.1",
        ]);
        run(&[
            "ip", "-n", &h.server, "route", "add", "default", "via", "10.2.0.1",
        ]);
        h
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        for ns in [&self.laptop, &self.ra, &self.rb, &self.server] {
            del_namespace(ns);
        }
    }
}

/// Delete a namespace a test made, unless the test already did (quietly: a passing run
/// prints nothing that looks like a failure).
pub fn del_namespace(ns: &str) {
    if std::path::Path::new("/run/netns").join(ns).exists() {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Move the calling thread into a named network namespace.
pub fn enter(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Run `f` on a thread inside `ns` and return its result.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// A tiny HTTP server in the server namespace; returns once it is listening.
pub fn start_web_server(ns: &str) {
    start_web_server_at(ns, "10.2.0.2:8080");
}

/// A tiny HTTP server answering every request with the page that holds [`PAGE_SECRET`].
pub fn start_web_server_at(ns: &str, addr: &str) {
    let (tx, rx) = mpsc::channel();
    let (ns, addr) = (ns.to_owned(), addr.to_owned());
    std::thread::spawn(move || {
        enter(&ns);
        let l = TcpListener::bind(&addr).expect("bind web server");
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("<html><body>{PAGE_SECRET}</body></html>");
                let _ = write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("web server did not start");
}

/// A proxy running in a namespace, on its own single-threaded runtime.
pub struct RunningProxy {
    pub state: watch::Sender<Arc<MeshState>>,
    pub metrics: Arc<Metrics>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningProxy {
    pub fn start(ns: &str, state: MeshState, intercept: bool) -> Self {
        let (_catalog_tx, catalog_rx) = watch::channel(Arc::new(state.catalog.clone()));
        let (state_tx, state_rx) = watch::channel(Arc::new(state));
        let metrics = Arc::new(Metrics::new());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ns = ns.to_owned();
        let m = metrics.clone();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let handle = Proxy::start(ProxyConfig::default(), state_rx, m)
                    .await
                    .expect("proxy binds");
                // nft runs as a child of this thread, so it lands in this namespace.
                let nft = intercept.then(|| {
                    Interception::install(&Rules::for_proxy(handle.outbound.port()))
                        .expect("nft rules")
                });
                // The mesh zone's DNS on the router's LAN address (what dnsmasq forwards to).
                if intercept {
                    let sock = tokio::net::UdpSocket::bind("10.1.0.1:53")
                        .await
                        .expect("bind DNS");
                    tokio::spawn(trellis_agent::dns::serve(sock, catalog_rx));
                }
                ready_tx.send(()).unwrap();
                let _ = stop_rx.await;
                drop(nft);
                handle.shutdown();
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("proxy did not start");
        RunningProxy {
            state: state_tx,
            metrics,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// A new state, as `service_mesh` builds one: the trust version moves when the change
    /// touched this node's identity, the trust bundle or the routers (pooled tunnels go),
    /// and stays for policy, catalog, device or hop changes (tunnels stay).
    pub fn update(&self, f: impl FnOnce(&mut MeshState)) {
        let mut s = (**self.state.borrow()).clone();
        s.version += 1;
        let trust = |s: &MeshState| format!("{:?}{:?}{:?}", s.identity.chain, s.bundle, s.nodes);
        let before = trust(&s);
        f(&mut s);
        if trust(&s) != before {
            s.trust_version += 1;
        }
        self.state.send(Arc::new(s)).unwrap();
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything an AF_PACKET socket sees on one interface while it runs.
pub struct Capture {
    stop: Arc<AtomicBool>,
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    pub fn start(ns: &str, ifname: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ns, ifname) = (ns.to_owned(), ifname.to_owned());
        let (s2, b2) = (stop.clone(), bytes.clone());
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let name = CString::new(ifname.clone()).unwrap();
            // SAFETY: plain socket syscalls on a descriptor this thread owns; every pointer
            // passed points at a local of the stated size.
            unsafe {
                let proto = (libc::ETH_P_ALL as u16).to_be();
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
                assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
                let ifindex = libc::if_nametoindex(name.as_ptr());
                assert!(ifindex > 0, "no interface {ifname}");
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = proto;
                sll.sll_ifindex = ifindex as i32;
                let rc = libc::bind(
                    fd,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(rc, 0, "bind raw socket");
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                ready_tx.send(()).unwrap();
                let mut buf = vec![0u8; 65536];
                while !s2.load(Ordering::SeqCst) {
                    let mut from: libc::sockaddr_ll = std::mem::zeroed();
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    let n = libc::recvfrom(
                        fd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    );
                    if n > 0 && from.sll_ifindex == ifindex as i32 {
                        let mut b = b2.lock().unwrap();
                        if b.len() < 16 << 20 {
                            b.extend_from_slice(&buf[..n as usize]);
                        }
                    }
                }
                libc::close(fd);
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("capture did not start");
        Capture {
            stop,
            bytes,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

/// Children killed (and reaped) on drop, so a failing test leaves no daemon behind.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The agent binary under test.
pub fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_trellis-agent"))
}

/// The controller binary, built beside the agent.
pub fn controller_binary() -> PathBuf {
    let p = agent_binary().with_file_name("trellis-controller");
    assert!(
        p.exists(),
        "{} missing: cargo build --workspace --bins (cargo xtask test does)",
        p.display()
    );
    p
}

/// Starts `program args` inside `ns`, its stderr into `log`.
pub fn spawn_in(ns: &str, program: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {}: {e}", program.display()))
}

/// Runs `program args` inside `ns` to the end.
pub fn output_in(ns: &str, program: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {}: {e}", program.display()))
}

/// What a command printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `ok` until it holds; the bound only turns a hang into a failure naming `what`.
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The laptop asks router A's DNS for a mesh name; the A record's address.
pub fn laptop_resolve(ns: &str, name: &str) -> Option<Ipv4Addr> {
    let q = trellis_agent::dns::query(0x1234, name, 1);
    in_ns(ns, move || {
        let s = std::net::UdpSocket::bind("10.1.0.2:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&q, "10.1.0.1:53").unwrap();
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("DNS answer");
        let r = &buf[..n];
        (r[3] & 0x0f == 0 && r[7] == 1)
            .then(|| Ipv4Addr::new(r[n - 4], r[n - 3], r[n - 2], r[n - 1]))
    })
}

/// The laptop fetches `/` of `web` from the virtual IP on port 80; what it received.
pub fn laptop_get(ns: &str, vip: Ipv4Addr) -> Result<String, String> {
    http_get_in(ns, SocketAddr::from((vip, 80)), "web.trellis.home.arpa")
}

/// `GET /` for `host` at `addr` from inside `ns`: the whole answer, or what went wrong
/// (a connection closed with no answer is an error, as it is to a browser).
pub fn http_get_in(ns: &str, addr: SocketAddr, host: &str) -> Result<String, String> {
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| format!("set timeout: {e}"))?;
        s.write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        match (read, out.is_empty()) {
            (Err(e), true) => Err(format!("read: {e}")),
            (Ok(_), true) => Err("connection closed with no answer".into()),
            (_, false) => Ok(String::from_utf8_lossy(&out).into_owned()),
        }
    })
}

pub struct Fixture {
    pub home: Home,
    pub ca: TestCa,
    pub a: RunningProxy,
    pub b: RunningProxy,
    pub vip: Ipv4Addr,
    pub id_a: SpiffeId,
}

pub fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

pub fn fixture(policy: Policy) -> Fixture {
    let home = Home::new();
    start_web_server(&home.server);
    let ca = TestCa::new("home1").unwrap();
    let mut catalog = Catalog::default();
    let vip = catalog
        .add(
            &ca.home,
            "web",
            vec![ServicePort {
                port: 80,
                target_port: Some(8080),
            }],
            vec![Instance {
                node: node("rb"),
                addr: "10.2.0.2".parse().unwrap(),
                reachable: true,
            }],
            LearnedVia::Mdns,
        )
        .unwrap()
        .vip;
    // Known by MAC only: the source node must learn the MAC from its neighbour table.
    let devices = vec![Device {
        name: "laptop".into(),
        mac: LAPTOP_MAC.parse().unwrap(),
        ips: vec![],
        group: "trusted".into(),
    }];
    let ident_a: NodeIdentity = ca.issue_node("ra").unwrap();
    let ident_b: NodeIdentity = ca.issue_node("rb").unwrap();
    let nodes = vec![
        PeerNode {
            name: node("ra"),
            identity: ident_a.id.clone(),
            addresses: vec!["10.9.0.1".into()],
        },
        PeerNode {
            name: node("rb"),
            identity: ident_b.id.clone(),
            addresses: vec!["10.9.0.2".into()],
        },
    ];
    let state = |local: &str, identity: NodeIdentity| MeshState {
        version: 1,
        trust_version: 1,
        local_node: node(local),
        identity,
        bundle: ca.bundle_arc(),
        nodes: nodes.clone(),
        catalog: catalog.clone(),
        policy: policy.clone(),
        devices: devices.clone(),
        hops: [(node("ra"), 1), (node("rb"), 1)].into_iter().collect(),
    };
    let id_a = ident_a.id.clone();
    let a = RunningProxy::start(&home.ra, state("ra", ident_a), true);
    let b = RunningProxy::start(&home.rb, state("rb", ident_b), false);
    Fixture {
        home,
        ca,
        a,
        b,
        vip,
        id_a,
    }
}

/// The next access-log record of `m` (waits for it; the record is written when the connection
/// closes, which can be just after the client saw the close).
pub fn next_record(rx: &mut tokio::sync::broadcast::Receiver<AccessRecord>) -> AccessRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rx.try_recv() {
            Ok(r) => return r,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no access-log record: {e:?}"),
        }
    }
}

/// An avahi-daemon in a namespace, configured through `/etc/netns/<ns>/avahi` (which
/// `ip netns exec` bind-mounts over `/etc/avahi`), without D-Bus; killed on drop.
pub struct Avahi {
    pub child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Avahi {
    pub fn start(ns: &str, iface: &str, service: Option<(&str, u16)>) -> Self {
        let dir = std::path::PathBuf::from(format!("/etc/netns/{ns}"));
        let avahi = dir.join("avahi");
        std::fs::create_dir_all(avahi.join("services")).unwrap();
        std::fs::write(
            avahi.join("avahi-daemon.conf"),
            format!(
                "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces={iface}\nenable-dbus=no\n\
                 [wide-area]\nenable-wide-area=no\n[publish]\npublish-hinfo=no\npublish-workstation=no\n"
            ),
        )
        .unwrap();
        if let Some((name, port)) = service {
            std::fs::write(
                avahi.join("services/http.service"),
                format!(
                    "<?xml version=\"1.0\" standalone='no'?>\n<service-group><name>{name}</name>\
                     <service><type>_http._tcp</type><port>{port}</port></service></service-group>\n"
                ),
            )
            .unwrap();
        }
        // `ip netns exec` gives the command its own mount namespace; a private tmpfs on
        // /run/avahi-daemon keeps the two daemons' PID files apart.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c"])
            .arg(
                "mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && \
                 exec avahi-daemon --no-drop-root --no-chroot --no-rlimits --no-proc-title \
                 -f /etc/avahi/avahi-daemon.conf",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("avahi-daemon is installed (cargo xtask setup installs it)");
        Avahi { child, dir }
    }
}

impl Drop for Avahi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
