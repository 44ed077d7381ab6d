//! Outbound: an intercepted client connection to a virtual IP, taken to the service.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use trellis_proto::catalog::Service;
use trellis_proto::policy::Decision;
use trellis_proto::NodeName;

use super::copy::{self, Transferred};
use super::h2stream::H2Stream;
use super::wire::{self, TunnelRequest, TunnelResponse};
use super::{pool, refusal, reset, Ctx, MeshState, OriginalDst};
use crate::metrics::{AccessRecord, ConnLabels, Outcome};
use crate::trace;

struct Conn<'a> {
    ctx: &'a Ctx,
    client_addr: SocketAddr,
    start: Instant,
    svc: &'a Service,
    port: u16,
    decision: &'a Decision,
    trace: trace::Context,
    /// The device's address when this node connected the last hop itself.
    last_hop: OnceLock<SocketAddr>,
    /// Time to reach the service (tunnel and last hop).
    connect: OnceLock<Duration>,
}

impl Conn<'_> {
    fn labels(&self) -> ConnLabels {
        ConnLabels {
            direction: "outbound",
            source_identity: self.decision.source.identity(),
            destination_identity: self.svc.identity.to_string(),
            destination_service: self.svc.name.clone(),
        }
    }

    fn log(&self, peer: &str, sent: u64, received: u64, outcome: Outcome, rule: String) {
        let rec = AccessRecord {
            direction: "outbound",
            src_addr: Some(self.client_addr),
            src_identity: self.decision.source.identity(),
            service: self.svc.name.clone(),
            port: self.port,
            dst_identity: self.svc.identity.to_string(),
            peer_node: peer.to_owned(),
            bytes_sent: sent,
            bytes_received: received,
            duration: self.start.elapsed(),
            outcome,
            rule,
        };
        self.ctx.metrics.traces.finish(
            &self.trace,
            &rec,
            &self.decision.source,
            self.last_hop.get().copied(),
            self.connect.get().copied(),
        );
        self.ctx.metrics.access(rec);
    }
}

/// Serve one intercepted connection to the end.
pub(crate) async fn handle(ctx: Arc<Ctx>, client: TcpStream, client_addr: SocketAddr) {
    let start = Instant::now();
    let started = trace::Started::now();
    let orig = match original_dst(&client, ctx.cfg.original_dst) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%client_addr, error = %e, "no original destination; was this connection intercepted?");
            return reset(client);
        }
    };
    let state = ctx.state();
    let IpAddr::V4(vip) = orig.ip().to_canonical() else {
        tracing::warn!(%client_addr, %orig, "IPv6 virtual IPs are not allocated; refusing");
        return reset(client);
    };
    let Some(svc) = state.catalog.by_vip(vip) else {
        tracing::info!(%client_addr, %orig, "no service at this virtual IP");
        return reset(client);
    };
    if svc.port(orig.port()).is_none() {
        tracing::info!(%client_addr, service = %svc.name, port = orig.port(), "service does not offer this port");
        return reset(client);
    }
    let client_ip = client_addr.ip().to_canonical();
    let mac = match client_ip {
        IpAddr::V4(v4) => ctx.neighbours.mac_of(v4),
        IpAddr::V6(_) => None,
    };
    let source = state.resolve_client(client_ip, mac);
    let decision = state.policy.evaluate(&source, &svc.name, Some(orig.port()));
    for rule in decision.would_deny() {
        ctx.metrics.dry_run_denied(rule);
        tracing::warn!(rule, source = %decision.source, service = %svc.name, "dry run: would deny");
    }
    let conn = Conn {
        ctx: &ctx,
        client_addr,
        start,
        svc,
        port: orig.port(),
        decision: &decision,
        trace: trace::Context {
            tp: ctx.metrics.traces.root(),
            parent: None,
            kind: trace::SpanKind::Client,
            started,
        },
        last_hop: OnceLock::new(),
        connect: OnceLock::new(),
    };
    if !decision.allowed() {
        ctx.metrics.denied(&decision.rule(), &svc.name, "source");
        tracing::info!(target: "trellis::policy", "{}", decision.explain());
        conn.log("", 0, 0, Outcome::Denied, decision.rule());
        return refusal::refuse(client, &svc.name, &decision.rule(), &decision.explain()).await;
    }
    ctx.metrics.opened(conn.labels());
    let req = TunnelRequest {
        service: svc.name.clone(),
        port: orig.port(),
        client_ip: Some(client_ip),
        client_mac: mac,
    };
    let (outcome, rule, peer, sent, received) = serve(&conn, &state, client, &req).await;
    ctx.metrics.closed(conn.labels());
    conn.log(&peer, sent, received, outcome, rule);
}

/// Try instances in locality order; copy once one answers. Returns what the access log needs.
async fn serve(
    conn: &Conn<'_>,
    state: &Arc<MeshState>,
    client: TcpStream,
    req: &TunnelRequest,
) -> (Outcome, String, String, u64, u64) {
    let ctx = conn.ctx;
    let mut last_err = String::from("no reachable instance");
    let instances = pool::order_instances(conn.svc, &state.local_node, &state.hops);
    for inst in instances {
        if inst.node == state.local_node {
            // Behind this very node: the last hop is ours, no tunnel.
            let target = SocketAddr::new(
                inst.addr,
                conn.svc.port(req.port).map_or(req.port, |p| p.target()),
            );
            let t0 = Instant::now();
            match tokio::time::timeout(ctx.cfg.connect_timeout, TcpStream::connect(target)).await {
                Ok(Ok(up)) => {
                    let took = t0.elapsed();
                    ctx.metrics.connect_latency_of(&conn.labels(), took);
                    let _ = conn.connect.set(took);
                    let _ = conn.last_hop.set(target);
                    let _ = up.set_nodelay(true);
                    return pump(conn, client, Upstream::Local(up), "local").await;
                }
                Ok(Err(e)) => last_err = format!("{target}: {e}"),
                Err(_) => last_err = format!("{target}: connect timed out"),
            }
            continue;
        }
        if !ctx.pool.allows(&inst.node) {
            last_err = format!("node {} skipped (breaker open)", inst.node);
            continue;
        }
        let t0 = Instant::now();
        let peer = inst.node.to_string();
        match open_stream(ctx, state, &inst.node, req, &conn.trace.tp).await {
            Err((e, node_at_fault)) => {
                if node_at_fault {
                    ctx.pool.record_failure(&inst.node);
                }
                tracing::warn!(node = %inst.node, service = %conn.svc.name, error = %e, "instance failed; trying the next");
                last_err = e;
            }
            Ok(Opened::Connected(stream, guard)) => {
                ctx.pool.record_success(&inst.node);
                let took = t0.elapsed();
                ctx.metrics.connect_latency_of(&conn.labels(), took);
                let _ = conn.connect.set(took);
                let out = pump(conn, client, Upstream::Tunnel(stream), &peer).await;
                drop(guard);
                return out;
            }
            Ok(Opened::Answer(TunnelResponse::Denied { rule, explanation })) => {
                // The destination decides, always; a deny there is final (no failover around
                // policy), and it names its rule.
                ctx.pool.record_success(&inst.node);
                ctx.metrics.denied(&rule, &conn.svc.name, "destination");
                tracing::info!(target: "trellis::policy", node = %inst.node, "{explanation}");
                refusal::refuse(client, &conn.svc.name, &rule, &explanation).await;
                return (Outcome::Denied, rule, peer, 0, 0);
            }
            Ok(Opened::Answer(TunnelResponse::Failed { reason })) => {
                ctx.pool.record_success(&inst.node);
                tracing::warn!(node = %inst.node, service = %conn.svc.name, %reason, "instance unavailable; trying the next");
                last_err = format!("{}: {reason}", inst.node);
            }
            Ok(Opened::Answer(TunnelResponse::Connected { .. })) => {
                last_err = format!("{}: answered 'connected' without status 200", inst.node);
            }
        }
    }
    reset(client);
    (
        Outcome::Error(last_err),
        conn.decision.rule(),
        String::new(),
        0,
        0,
    )
}

/// What a CONNECT stream came back with.
enum Opened {
    Connected(H2Stream, pool::StreamGuard),
    Answer(TunnelResponse),
}

/// Header names of the facts the source node passes along (values are ASCII).
pub(crate) const HDR_CLIENT_IP: &str = "trellis-client-ip";
pub(crate) const HDR_CLIENT_MAC: &str = "trellis-client-mac";
/// W3C Trace Context: the outbound span, parent of the destination's inbound span.
pub(crate) const HDR_TRACEPARENT: &str = "traceparent";

/// Open one CONNECT stream to `node` for `req`. A pooled connection may have died while
/// idle; one retry on a fresh connection is not the node's fault. Errors say whether the node
/// is to blame (for the breaker).
async fn open_stream(
    ctx: &Ctx,
    state: &Arc<MeshState>,
    node: &NodeName,
    req: &TunnelRequest,
    tp: &trace::TraceParent,
) -> Result<Opened, (String, bool)> {
    let mut last = String::new();
    for _attempt in 0..2 {
        let lease = match ctx.pool.get(state, node).await {
            Ok(l) => l,
            // Busy is not broken: the breaker counts failures of the node, not of our pool.
            Err(e @ pool::DialError::Saturated(..)) => return Err((e.to_string(), false)),
            Err(e) => return Err((e.to_string(), true)),
        };
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("{}:{}", req.service, req.port));
        if let Some(ip) = req.client_ip {
            request = request.header(HDR_CLIENT_IP, ip.to_string());
        }
        if let Some(mac) = req.client_mac {
            request = request.header(HDR_CLIENT_MAC, mac.to_string());
        }
        if let Ok(v) = http::HeaderValue::from_bytes(&tp.encode()) {
            request = request.header(HDR_TRACEPARENT, v);
        }
        let request = request
            .body(())
            .map_err(|e| (format!("bad CONNECT request: {e}"), false))?;
        let exchange = async {
            let mut send = lease.send.clone().ready().await?;
            let (resp, stream) = send.send_request(request, false)?;
            Ok::<_, ::h2::Error>((resp.await?, stream))
        };
        // The answer needs one mesh round trip plus the far node's connect to the device
        // (itself bounded by connect_timeout): twice that means the pooled connection's peer
        // vanished without closing it, and the next instance should get its chance.
        match tokio::time::timeout(ctx.cfg.connect_timeout * 2, exchange).await {
            Ok(Ok((resp, send_stream))) => {
                let status = resp.status();
                let mut body = resp.into_body();
                if status == http::StatusCode::OK {
                    return Ok(Opened::Connected(
                        H2Stream::new(send_stream, body),
                        lease.guard,
                    ));
                }
                // Refusals carry a small JSON body; read at most MAX_MESSAGE bytes of it.
                let mut text = Vec::new();
                let read = async {
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        text.extend_from_slice(
                            &chunk[..chunk.len().min(wire::MAX_MESSAGE - text.len())],
                        );
                        if text.len() >= wire::MAX_MESSAGE {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(ctx.cfg.connect_timeout, read).await;
                return Ok(Opened::Answer(serde_json::from_slice(&text).unwrap_or(
                    TunnelResponse::Failed {
                        reason: format!("status {status}"),
                    },
                )));
            }
            Ok(Err(e)) => {
                ctx.pool.discard(node, lease.id);
                last = format!("tunnel to {node}: {e}");
            }
            Err(_) => {
                ctx.pool.discard(node, lease.id);
                return Err((format!("tunnel to {node}: no answer"), true));
            }
        }
    }
    Err((last, true))
}

/// Where an allowed connection goes: a device behind this node, or a tunnel stream.
enum Upstream {
    Local(TcpStream),
    Tunnel(H2Stream),
}

async fn pump(
    conn: &Conn<'_>,
    client: TcpStream,
    upstream: Upstream,
    peer: &str,
) -> (Outcome, String, String, u64, u64) {
    let counts = Transferred::default();
    let budget = &conn.ctx.budget;
    let labels = conn.labels();
    let res = match upstream {
        Upstream::Local(up) => {
            let copy = copy::bidirectional(client, up, budget, &counts);
            copy::reporting(copy, &counts, &conn.ctx.metrics, &labels).await
        }
        Upstream::Tunnel(stream) => {
            let copy = copy::tunnel(client, stream, copy::TcpSide::Client, budget, &counts);
            copy::reporting(copy, &counts, &conn.ctx.metrics, &labels).await
        }
    };
    let sent = counts.sent.load(std::sync::atomic::Ordering::Relaxed);
    let received = counts.received.load(std::sync::atomic::Ordering::Relaxed);
    let outcome = match res {
        Ok(_) => Outcome::Ok,
        // A reset after bytes flowed is how many clients end a connection; still an error line.
        Err(e) => Outcome::Error(e.to_string()),
    };
    (
        outcome,
        conn.decision.rule(),
        peer.to_owned(),
        sent,
        received,
    )
}

fn original_dst(s: &TcpStream, how: OriginalDst) -> std::io::Result<SocketAddr> {
    match how {
        OriginalDst::Redirect => crate::intercept::original_dst(s),
        OriginalDst::LocalAddr => s.local_addr(),
    }
}
