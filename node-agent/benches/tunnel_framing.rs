//! Tunnel framing, measured: one mutual-TLS 1.3 connection per stream (what Trellis does)
//! versus HTTP/2 CONNECT streams multiplexed on one shared TLS connection (Istio's HBONE).
//!
//! `cargo bench -p trellis-agent --bench tunnel_framing` prints, for each shape:
//! - new-stream latency (p50/p99): a fresh TCP+TLS handshake + request/response, a request on a
//!   pre-dialled TLS connection, and a CONNECT stream on an established HTTP/2 connection;
//! - single-stream bulk throughput (client → server, 256 MiB);
//! - memory per idle tunnel/stream (RSS growth over 1000 of them, both ends in this process).
//!
//! Loopback, both ends in one process, P-256 certificates from a test CA, ring, 2 worker
//! threads. Absolute figures depend on the machine; the ratios are what decided the design.
//! Not a pass/fail test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trellis_agent::proxy::testca::TestCa;
use trellis_agent::proxy::tls;
use trellis_agent::proxy::wire::{self, TunnelRequest, TunnelResponse};

const SAMPLES: usize = 300;
const BULK: usize = 256 << 20;
const IDLE: usize = 1000;
/// HTTP/2 DATA frame size (the protocol default is 16 KiB).
const H2_FRAME: u32 = 1 << 20;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// CPU time (user + system) this process has used, in microseconds.
fn cpu_us() -> u64 {
    // SAFETY: getrusage fills the struct we pass; no other preconditions.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

struct Setup {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

fn setup() -> Setup {
    let ca = TestCa::new("bench").unwrap();
    let a = ca.issue_node("a").unwrap();
    let b = ca.issue_node("b").unwrap();
    let bundle = ca.bundle_arc();
    Setup {
        client: tls::client_config(&a, bundle.clone(), b.id.clone()).unwrap(),
        server: tls::server_config(&b, &bundle).unwrap(),
    }
}

fn request() -> TunnelRequest {
    TunnelRequest {
        service: "nas".into(),
        port: 445,
        client_ip: Some("192.168.1.10".parse().unwrap()),
        client_mac: None,
    }
}

/// TLS-per-stream server: answer the tunnel request, then count bytes until EOF and ack.
async fn tls_server(setup: &Setup) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(setup.server.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut t) = acceptor.accept(tcp).await else {
                    return;
                };
                if wire::read_request(&mut t).await.is_err() {
                    return;
                }
                let ok = TunnelResponse::Connected {
                    rule: "default:trusted".into(),
                };
                if wire::write_response(&mut t, &ok).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0u64;
                loop {
                    match t.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k as u64,
                    }
                }
                let _ = t.write_all(&n.to_be_bytes()).await;
                let _ = t.shutdown().await;
            });
        }
    });
    addr
}

async fn dial(
    setup: &Setup,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(setup.client.clone())
        .connect(tls::sni(), tcp)
        .await
        .unwrap()
}

async fn per_stream(setup: &Setup) {
    let addr = tls_server(setup).await;
    // Fresh handshake per stream.
    let mut fresh = Vec::new();
    let cpu0 = cpu_us();
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        let mut t = dial(setup, addr).await;
        wire::write_request(&mut t, &request()).await.unwrap();
        wire::read_response(&mut t).await.unwrap();
        fresh.push(t0.elapsed());
    }
    let cpu_fresh = (cpu_us() - cpu0) as f64 / SAMPLES as f64;
    // Pre-dialled (what the pool hands out): only the request/response is on the clock.
    let mut warm = Vec::new();
    for _ in 0..SAMPLES {
        let mut t = dial(setup, addr).await;
        let t0 = Instant::now();
        wire::write_request(&mut t, &request()).await.unwrap();
        wire::read_response(&mut t).await.unwrap();
        warm.push(t0.elapsed());
    }
    // Bulk.
    let mut t = dial(setup, addr).await;
    wire::write_request(&mut t, &request()).await.unwrap();
    wire::read_response(&mut t).await.unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let t0 = Instant::now();
    for _ in 0..BULK / chunk.len() {
        t.write_all(&chunk).await.unwrap();
    }
    t.shutdown().await.unwrap();
    let mut ack = [0u8; 8];
    t.read_exact(&mut ack).await.unwrap();
    assert_eq!(u64::from_be_bytes(ack) as usize, BULK);
    let mbps = BULK as f64 / t0.elapsed().as_secs_f64() / 1e6;
    // Memory per idle tunnel (both ends live in this process).
    let before = rss_kib();
    let mut held = Vec::new();
    for _ in 0..IDLE {
        let mut t = dial(setup, addr).await;
        wire::write_request(&mut t, &request()).await.unwrap();
        wire::read_response(&mut t).await.unwrap();
        held.push(t);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per = (rss_kib().saturating_sub(before)) as f64 / IDLE as f64;
    println!(
        "TLS per stream   new stream (fresh handshake) p50 {:.3} ms p99 {:.3} ms, CPU {:.0} us (both ends) | on pre-dialled conn p50 {:.3} ms p99 {:.3} ms | bulk {:.0} MB/s | {:.1} KiB per idle tunnel (both ends)",
        pct(&mut fresh, 0.5),
        pct(&mut fresh, 0.99),
        cpu_fresh,
        pct(&mut warm, 0.5),
        pct(&mut warm, 0.99),
        mbps,
        per
    );
    drop(held);
}

async fn h2_server(setup: &Setup) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(setup.server.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(t) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut conn = h2::server::Builder::new()
                    .max_frame_size(H2_FRAME)
                    .initial_window_size(4 << 20)
                    .initial_connection_window_size(16 << 20)
                    .max_concurrent_streams(1000)
                    .handshake::<_, Bytes>(t)
                    .await
                    .unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut send = respond
                            .send_response(http::Response::new(()), false)
                            .unwrap();
                        let mut body = req.into_body();
                        let mut n = 0u64;
                        while let Some(Ok(chunk)) = body.data().await {
                            n += chunk.len() as u64;
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let _ = send.send_data(Bytes::copy_from_slice(&n.to_be_bytes()), true);
                    });
                }
            });
        }
    });
    addr
}

async fn h2_connect(
    client: &mut h2::client::SendRequest<Bytes>,
) -> (h2::SendStream<Bytes>, h2::RecvStream) {
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("nas.trellis.home.arpa:445")
        .body(())
        .unwrap();
    let (resp, send) = client
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(req, false)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    (send, resp.into_body())
}

async fn multiplexed(setup: &Setup) {
    let addr = h2_server(setup).await;
    let t = dial(setup, addr).await;
    let (mut client, conn) = h2::client::Builder::new()
        .max_frame_size(H2_FRAME)
        .initial_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(t)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut lat = Vec::new();
    let cpu0 = cpu_us();
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        let (mut send, _recv) = h2_connect(&mut client).await;
        lat.push(t0.elapsed());
        let _ = send.send_data(Bytes::new(), true);
    }
    let cpu_stream = (cpu_us() - cpu0) as f64 / SAMPLES as f64;
    // Bulk on one stream, respecting flow control.
    let (mut send, mut recv) = h2_connect(&mut client).await;
    let chunk = Bytes::from(vec![0x5au8; 64 * 1024]);
    let t0 = Instant::now();
    let mut left = BULK;
    while left > 0 {
        let mut data = chunk.clone();
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let cap = std::future::poll_fn(|cx| send.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let part = data.split_to(cap.min(data.len()));
            left -= part.len();
            send.send_data(part, false).unwrap();
        }
    }
    send.send_data(Bytes::new(), true).unwrap();
    let ack = recv.data().await.unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(ack[..8].try_into().unwrap()) as usize,
        BULK
    );
    let mbps = BULK as f64 / t0.elapsed().as_secs_f64() / 1e6;
    let before = rss_kib();
    let mut held = Vec::new();
    for _ in 0..IDLE {
        held.push(h2_connect(&mut client).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per = (rss_kib().saturating_sub(before)) as f64 / IDLE as f64;
    println!(
        "HTTP/2 CONNECT   new stream on shared conn p50 {:.3} ms p99 {:.3} ms, CPU {:.0} us (both ends) | bulk {:.0} MB/s | {:.1} KiB per idle stream (both ends)",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        cpu_stream,
        mbps,
        per
    );
    drop(held);
}

fn main() {
    // Each shape runs in its own process so one's freed heap cannot hide the other's memory.
    let mode = std::env::args().find_map(|a| a.strip_prefix("--mode=").map(str::to_owned));
    let Some(mode) = mode else {
        let me = std::env::current_exe().expect("own path");
        for m in ["tls", "h2"] {
            let st = std::process::Command::new(&me)
                .arg(format!("--mode={m}"))
                .status()
                .expect("re-run self");
            assert!(st.success(), "{m} run failed");
        }
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = setup();
        match mode.as_str() {
            "tls" => per_stream(&s).await,
            _ => multiplexed(&s).await,
        }
    });
}
