//! The node proxy on the real kernel: two routers, a laptop and a web server, each in its own
//! network namespace, joined by veth pairs.
//!
//! ```text
//!  laptop (tc-*)        router A (ra-*)                 router B (rb-*)        server (ts-*)
//!  10.1.0.2  c0 ─── a0 10.1.0.1   a1 10.9.0.1 ─── b1 10.9.0.2   b0 10.2.0.1 ─── s0 10.2.0.2:8080
//!                      nft redirect 198.18/16        inbound :15008
//!                      → outbound :15001
//! ```
//!
//! IP forwarding stays off in the routers, so the only way from the laptop to the server is
//! through the two proxies. Needs root (namespaces, nftables, raw sockets); without root each
//! test prints why it is skipped. CI runs as root, so there they really run.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use trellis_agent::intercept::{Interception, Rules};
use trellis_agent::metrics::{AccessRecord, Metrics, Outcome};
use trellis_agent::proxy::testca::TestCa;
use trellis_agent::proxy::{MeshState, NodeIdentity, Proxy, ProxyConfig};
use trellis_proto::catalog::{Catalog, Instance, LearnedVia, ServicePort};
use trellis_proto::policy::{Action, Device, Policy, Rule, ServiceMatch, SourceMatch};
use trellis_proto::snapshot::PeerNode;
use trellis_proto::{NodeName, SpiffeId};

const LAPTOP_MAC: &str = "02:00:00:00:00:01";
const PAGE_SECRET: &str = "the-family-photos-are-private-7f3a";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root for network namespaces, nftables and raw sockets (CI runs as root)");
            return;
        }
    };
}

fn run(args: &[&str]) {
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

/// Four namespaces named after this test; deleted on drop.
struct Home {
    laptop: String,
    ra: String,
    rb: String,
    server: String,
}

impl Home {
    fn new() -> Self {
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
        let link = |a_ns: &str, a: &str, a_ip: &str, b_ns: &str, b: &str, b_ip: &str| {
            run(&[
                "ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns",
                b_ns,
            ]);
            run(&["ip", "-n", a_ns, "addr", "add", a_ip, "dev", a]);
            run(&["ip", "-n", b_ns, "addr", "add", b_ip, "dev", b]);
            run(&["ip", "-n", a_ns, "link", "set", a, "up"]);
            run(&["ip", "-n", b_ns, "link", "set", b, "up"]);
        };
        link(&h.laptop, "c0", "10.1.0.2/24", &h.ra, "a0", "10.1.0.1/24");
        link(&h.ra, "a1", "10.9.0.1/24", &h.rb, "b1", "10.9.0.2/24");
        link(&h.rb, "b0", "10.2.0.1/24", &h.server, "s0", "10.2.0.2/24");
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
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Move the calling thread into a named network namespace.
fn enter(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Run `f` on a thread inside `ns` and return its result.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// A tiny HTTP server in the server namespace; returns once it is listening.
fn start_web_server(ns: &str) {
    let (tx, rx) = mpsc::channel();
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let l = TcpListener::bind("10.2.0.2:8080").expect("bind web server");
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
struct RunningProxy {
    state: watch::Sender<Arc<MeshState>>,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningProxy {
    fn start(ns: &str, state: MeshState, intercept: bool) -> Self {
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

    fn update(&self, f: impl FnOnce(&mut MeshState)) {
        let mut s = (**self.state.borrow()).clone();
        s.version += 1;
        f(&mut s);
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
struct Capture {
    stop: Arc<AtomicBool>,
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(ns: &str, ifname: &str) -> Self {
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

    fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The laptop asks router A's DNS for a mesh name; the A record's address.
fn laptop_resolve(ns: &str, name: &str) -> Option<Ipv4Addr> {
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

/// The laptop fetches `/` from the virtual IP; returns what it received (empty when refused).
fn laptop_get(ns: &str, vip: Ipv4Addr) -> Result<String, String> {
    in_ns(ns, move || {
        let addr = SocketAddr::from((vip, 80));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\nHost: web.trellis.home.arpa\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        match s.read_to_end(&mut out) {
            Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(e) if out.is_empty() => Err(format!("read: {e}")),
            Err(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        }
    })
}

struct Fixture {
    home: Home,
    ca: TestCa,
    a: RunningProxy,
    b: RunningProxy,
    vip: Ipv4Addr,
    id_a: SpiffeId,
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn fixture(policy: Policy) -> Fixture {
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
fn next_record(rx: &mut tokio::sync::broadcast::Receiver<AccessRecord>) -> AccessRecord {
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

#[test]
fn laptop_reaches_the_service_through_an_encrypted_tunnel() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    let mut log_b = f.b.metrics.subscribe_access_log();
    let mesh = Capture::start(&f.home.ra, "a1");
    let last_hop = Capture::start(&f.home.rb, "b0");

    let vip = laptop_resolve(&f.home.laptop, "web.trellis.home.arpa").expect("mesh name resolves");
    assert_eq!(vip, f.vip);
    assert_eq!(
        laptop_resolve(&f.home.laptop, "nothing.trellis.home.arpa"),
        None
    );
    let page = laptop_get(&f.home.laptop, vip).expect("laptop gets the page");
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(page.contains(PAGE_SECRET), "{page}");

    let rec_a = next_record(&mut log_a);
    let rec_b = next_record(&mut log_b);
    let mesh = mesh.finish();
    let last_hop = last_hop.finish();

    // Between the routers: TLS application data only, never the page or the request.
    assert!(
        mesh.len() > 500,
        "capture on the mesh link saw {} bytes",
        mesh.len()
    );
    assert!(
        contains(&mesh, &[0x17, 0x03, 0x03]),
        "no TLS application-data record on the mesh link"
    );
    assert!(
        !contains(&mesh, PAGE_SECRET.as_bytes()),
        "page content crossed the mesh in clear"
    );
    assert!(
        !contains(&mesh, b"GET / HTTP"),
        "request crossed the mesh in clear"
    );
    // The same capture method does see plaintext where plaintext is expected: the last hop.
    assert!(
        contains(&last_hop, PAGE_SECRET.as_bytes()),
        "control: last-hop capture should see the page"
    );

    assert_eq!(rec_a.outcome, Outcome::Ok, "{rec_a}");
    assert_eq!(rec_a.direction, "outbound");
    assert_eq!(
        rec_a.src_identity,
        format!("device:{LAPTOP_MAC}"),
        "{rec_a}"
    );
    assert_eq!(rec_a.rule, "default:trusted");
    assert_eq!(rec_a.peer_node, "rb");
    assert!(rec_a.bytes_received > PAGE_SECRET.len() as u64, "{rec_a}");
    assert_eq!(rec_b.outcome, Outcome::Ok, "{rec_b}");
    assert_eq!(rec_b.peer_node, f.id_a.to_string());
    assert_eq!(rec_b.src_identity, format!("device:{LAPTOP_MAC}"));

    let text = f.b.metrics.render();
    assert!(
        text.contains(&format!(
            "trellis_tcp_connections_opened_total{{direction=\"inbound\",source_identity=\"device:{LAPTOP_MAC}\",destination_identity=\"spiffe://home1/svc/web\",destination_service=\"web\"}} 1"
        )),
        "{text}"
    );
    // Our table exists and only ours: fw4 is never touched.
    let out = Command::new("ip")
        .args(["netns", "exec", &f.home.ra, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "table inet trellis"
    );
}

#[test]
fn deny_rules_and_revocations_are_enforced_and_named() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    let mut log_b = f.b.metrics.subscribe_access_log();

    // 1. A deny rule on both nodes: refused at the source, and the decision names the rule.
    let deny = Rule {
        name: "no-laptop-to-web".into(),
        action: Action::Deny,
        sources: vec![SourceMatch::Device(LAPTOP_MAC.parse().unwrap())],
        to: vec![ServiceMatch {
            service: Some("web".into()),
            ports: vec![],
        }],
        dry_run: false,
    };
    f.a.update(|s| s.policy.rules.push(deny.clone()));
    f.b.update(|s| s.policy.rules.push(deny.clone()));
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "denied laptop got the page: {got:?}"
    );
    let rec = next_record(&mut log_a);
    assert_eq!(
        (rec.outcome.clone(), rec.rule.as_str()),
        (Outcome::Denied, "no-laptop-to-web"),
        "{rec}"
    );
    assert!(f.a.metrics.render().contains("trellis_policy_denials_total{rule=\"no-laptop-to-web\",destination_service=\"web\",enforced_at=\"source\"} 1"));
    // What `trellis why laptop web:80` prints on either node.
    let state = f.a.state.borrow().clone();
    let src = state
        .policy
        .resolve_source("laptop", &state.devices)
        .unwrap();
    let why = state.policy.evaluate(&src, "web", Some(80)).explain();
    assert!(why.starts_with("DENIED: device \"laptop\""), "{why}");
    assert!(why.contains("rule \"no-laptop-to-web\" denies it"), "{why}");

    // 2. The source node's policy is stale (allows): the destination still refuses, by name.
    f.a.update(|s| s.policy.rules.clear());
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "destination did not enforce: {got:?}"
    );
    let rec = next_record(&mut log_b);
    assert_eq!(
        (rec.outcome.clone(), rec.rule.as_str()),
        (Outcome::Denied, "no-laptop-to-web"),
        "{rec}"
    );
    let rec = next_record(&mut log_a);
    assert_eq!(rec.outcome, Outcome::Denied, "{rec}");
    assert!(f.a.metrics.render().contains("trellis_policy_denials_total{rule=\"no-laptop-to-web\",destination_service=\"web\",enforced_at=\"destination\"} 1"));

    // 3. Rule removed: the page flows again (proves 1 and 2 failed for the policy's reason).
    f.b.update(|s| s.policy.rules.clear());
    let page = laptop_get(&f.home.laptop, f.vip).expect("allowed again");
    assert!(page.contains(PAGE_SECRET), "{page}");
    let _ = next_record(&mut log_a);
    let _ = next_record(&mut log_b);

    // 4. Router A's identity revoked at B: B refuses the tunnel in the TLS handshake.
    let id_a = f.id_a.clone();
    f.b.update(|s| {
        let mut b = (*s.bundle).clone();
        b.revoked_ids.insert(id_a.clone());
        s.bundle = Arc::new(b);
    });
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "revoked node got through: {got:?}"
    );
    let rec = next_record(&mut log_a);
    assert!(matches!(rec.outcome, Outcome::Error(_)), "{rec}");

    // 5. A node with a certificate from another CA (same home ID) claims to be router B: A
    //    refuses it. Point A at a rogue inbound by giving B a foreign identity.
    f.b.update(|s| {
        s.bundle = f.ca.bundle_arc();
        let rogue = TestCa::new("home1").unwrap();
        s.identity = rogue.issue_node("rb").unwrap();
    });
    // A new snapshot at A too (resets its breaker, which step 4 may have opened).
    f.a.update(|_| {});
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "rogue node accepted: {got:?}"
    );
    let rec = next_record(&mut log_a);
    match &rec.outcome {
        Outcome::Error(e) => assert!(e.contains("not issued by this home's CA"), "{rec}"),
        other => panic!("expected an error, got {other}"),
    }
}

#[test]
fn a_dead_node_is_skipped_for_the_next_instance_and_then_not_hammered() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    // A second instance of `web` behind router C, which is "closer" (1 hop vs 2) but gone:
    // its address does not answer ARP, so every dial costs the full connect timeout.
    let ident_c = f.ca.issue_node("rc").unwrap();
    f.a.update(|s| {
        s.nodes.push(PeerNode {
            name: node("rc"),
            identity: ident_c.id.clone(),
            addresses: vec!["10.9.0.77".into()],
        });
        s.catalog.services[0].instances.insert(
            0,
            Instance {
                node: node("rc"),
                addr: "10.4.0.2".parse().unwrap(),
                reachable: true,
            },
        );
        s.hops = [(node("rc"), 1), (node("rb"), 2)].into_iter().collect();
    });
    let timed = || {
        let t0 = std::time::Instant::now();
        let page = laptop_get(&f.home.laptop, f.vip);
        (page, t0.elapsed())
    };
    // First connection: C is tried first, fails, B serves it.
    let (page, took) = timed();
    assert!(page
        .expect("served by the next instance")
        .contains(PAGE_SECRET));
    assert!(
        took >= Duration::from_millis(900),
        "C should have cost a connect timeout, took {took:?}"
    );
    let rec = next_record(&mut log_a);
    assert_eq!(
        (rec.outcome.clone(), rec.peer_node.as_str()),
        (Outcome::Ok, "rb"),
        "{rec}"
    );
    // The breaker opens after a few failures (the pool's background dials count too); from
    // then on C is skipped and a connection costs milliseconds again.
    let mut fast = None;
    for i in 0..4 {
        let (page, took) = timed();
        assert!(page.expect("still served").contains(PAGE_SECRET));
        let _ = next_record(&mut log_a);
        if took < Duration::from_millis(500) {
            fast = Some(i);
            break;
        }
    }
    assert!(
        fast.is_some(),
        "breaker never opened: every connection still waited for node C"
    );
    assert!(
        f.a.metrics
            .render()
            .contains("trellis_tcp_connect_latency_seconds_count"),
        "latency recorded"
    );
}
