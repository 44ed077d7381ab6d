//! The whole data path on the real kernel, against direct routing, in one run:
//! laptop → router A (nftables redirect, outbound proxy) → mutual TLS → router B (inbound
//! proxy) → server, versus laptop → A → B → server routed by the kernel (IP forwarding on).
//!
//! `cargo bench -p trellis-agent --bench mesh_path` (root: network namespaces) prints:
//! - single-stream bulk throughput (laptop → server, 256 MiB);
//! - new connection per request (~200/s): connect + 1 KiB request + 1 KiB response, p50/p99;
//! - persistent connection: 1 KiB request/response round trips, p50/p99 (closed loop).
//!
//! Both proxies run in this process, each on a single-threaded runtime (a one-core router),
//! on a machine whose cores are shared, so read ratios rather than absolutes. This is the
//! quick check for proxy changes; the full comparison with stunnel, open-loop load and
//! per-agent RSS belongs to `cargo xtask bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::*;
use trellis_proto::catalog::ServicePort;
use trellis_proto::policy::Policy;

const BULK: usize = 256 << 20;
const NEW_CONNS: usize = 300;
const ROUND_TRIPS: usize = 2000;

/// Sink on :9000 (counts bytes, answers the count) and 1 KiB echo on :9001, in the server ns.
fn start_servers(ns: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let sink = TcpListener::bind("10.2.0.2:9000").unwrap();
        let echo = TcpListener::bind("10.2.0.2:9001").unwrap();
        tx.send(()).unwrap();
        std::thread::spawn(move || {
            for s in sink.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut n = 0u64;
                    while let Ok(k) = s.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        n += k as u64;
                    }
                    let _ = s.write_all(&n.to_be_bytes());
                });
            }
        });
        for s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 1024];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("servers start");
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

struct Figures {
    mbps: f64,
    new_p50: f64,
    new_p99: f64,
    rt_p50: f64,
    rt_p99: f64,
}

fn measure(laptop: &str, ip: std::net::Ipv4Addr) -> Figures {
    in_ns(laptop, move || {
        // Bulk.
        let mut s = TcpStream::connect(SocketAddr::from((ip, 9000))).unwrap();
        let chunk = vec![0x5au8; 128 * 1024];
        let t0 = Instant::now();
        for _ in 0..BULK / chunk.len() {
            s.write_all(&chunk).unwrap();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(u64::from_be_bytes(ack) as usize, BULK, "all bytes arrived");
        let mbps = BULK as f64 / t0.elapsed().as_secs_f64() / 1e6;
        // New connection per request.
        let req = [7u8; 1024];
        let mut new = Vec::with_capacity(NEW_CONNS);
        for _ in 0..NEW_CONNS {
            // ~200 requests a second, like the new-connection run: the pool refills
            // between requests, as it would under that load.
            std::thread::sleep(Duration::from_millis(5));
            let t0 = Instant::now();
            let mut s = TcpStream::connect(SocketAddr::from((ip, 9001))).unwrap();
            s.set_nodelay(true).unwrap();
            s.write_all(&req).unwrap();
            let mut resp = [0u8; 1024];
            s.read_exact(&mut resp).unwrap();
            new.push(t0.elapsed());
        }
        // Persistent connection.
        let mut s = TcpStream::connect(SocketAddr::from((ip, 9001))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut rts = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let t0 = Instant::now();
            s.write_all(&req).unwrap();
            let mut resp = [0u8; 1024];
            s.read_exact(&mut resp).unwrap();
            rts.push(t0.elapsed());
        }
        Figures {
            mbps,
            new_p50: pct(&mut new, 0.5),
            new_p99: pct(&mut new, 0.99),
            rt_p50: pct(&mut rts, 0.5),
            rt_p99: pct(&mut rts, 0.99),
        }
    })
}

fn main() {
    require_root!();
    let f = fixture(Policy::default());
    start_servers(&f.home.server);
    for p in [&f.a, &f.b] {
        p.update(|s| {
            s.catalog.services[0].ports.push(ServicePort::new(9000));
            s.catalog.services[0].ports.push(ServicePort::new(9001));
        });
    }
    // The direct path: plain kernel routing through the same two namespaces.
    for (ns, net, via) in [
        (&f.home.ra, "10.2.0.0/24", "10.9.0.2"),
        (&f.home.rb, "10.1.0.0/24", "10.9.0.1"),
    ] {
        run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        run(&["ip", "-n", ns, "route", "add", net, "via", via]);
    }
    let direct = measure(&f.home.laptop, "10.2.0.2".parse().unwrap());
    let mesh = measure(&f.home.laptop, f.vip);
    let row = |name: &str, x: &Figures| {
        println!(
            "{name:<8} bulk {:>7.0} MB/s | new conn + 1 KiB req/resp p50 {:.3} ms p99 {:.3} ms | persistent 1 KiB round trip p50 {:.3} ms p99 {:.3} ms",
            x.mbps, x.new_p50, x.new_p99, x.rt_p50, x.rt_p99
        )
    };
    row("direct", &direct);
    row("trellis", &mesh);
    println!(
        "ratio    throughput {:.2}x direct | new-conn p50 {:.2}x | round-trip p50 {:.2}x p99 {:.2}x",
        mesh.mbps / direct.mbps,
        mesh.new_p50 / direct.new_p50,
        mesh.rt_p50 / direct.rt_p50,
        mesh.rt_p99 / direct.rt_p99
    );
}
