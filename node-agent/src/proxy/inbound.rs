//! Inbound: tunnel connections from other nodes; every CONNECT stream is authorised here
//! again, then gets its plaintext last hop to the device.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;
use trellis_proto::identity::Workload;
use trellis_proto::policy::{MacAddr, Source};
use trellis_proto::SpiffeId;

use super::copy::{self, Transferred};
use super::h2stream::{
    H2Stream, CONNECTION_WINDOW, MAX_FRAME, SEND_BUFFER, STREAMS_PER_CONNECTION, STREAM_WINDOW,
};
use super::outbound::{HDR_CLIENT_IP, HDR_CLIENT_MAC, HDR_TRACEPARENT};
use super::readahead::ReadAhead;
use super::wire::TunnelResponse;
use super::{tls, Ctx, MeshState};
use crate::metrics::{AccessRecord, ConnLabels, Outcome};
use crate::trace;

fn server_config(ctx: &Ctx, state: &MeshState) -> Result<Arc<rustls::ServerConfig>, tls::TlsError> {
    let mut g = ctx.server_tls.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((v, c)) = g.as_ref() {
        if *v == state.trust_version {
            return Ok(c.clone());
        }
    }
    let c = tls::server_config(&state.identity, &state.bundle)?;
    *g = Some((state.trust_version, c.clone()));
    Ok(c)
}

/// Whether a peer may open streams under this snapshot: the home's one peer rule
/// ([`trellis_proto::snapshot::PeerTrust::admit`], in the trust bundle).
fn peer_allowed(conn: &rustls::ServerConnection, state: &MeshState) -> Result<SpiffeId, String> {
    tls::peer_identity(conn, &state.bundle).map_err(|e| e.to_string())
}

/// Serve one tunnel connection: TLS, then HTTP/2 streams until the peer goes away.
pub(crate) async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, peer_addr: SocketAddr) {
    let state = ctx.state();
    let config = match server_config(&ctx, &state) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve tunnels: this node's TLS identity is unusable");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tcp = ReadAhead::new(tcp, ctx.budget.clone());
    let tls = match tokio::time::timeout(ctx.cfg.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            // Revoked, foreign-CA and wrong-home peers end here, with the reason.
            tracing::warn!(%peer_addr, error = %e, "refused tunnel: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer_addr, "refused tunnel: TLS handshake timed out");
            return;
        }
    };
    let peer_id = match peer_allowed(tls.get_ref().1, &state) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(%peer_addr, error = %e, "refused tunnel");
            return;
        }
    };
    // Keep the verified certificate to re-check it against each new snapshot.
    let peer_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned();
    let mut conn = match tokio::time::timeout(
        ctx.cfg.handshake_timeout,
        ::h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(SEND_BUFFER)
            .max_concurrent_streams(STREAMS_PER_CONNECTION)
            .handshake::<_, Bytes>(tls),
    )
    .await
    {
        Ok(Ok(c)) => c,
        _ => {
            tracing::warn!(peer = %peer_id, "refused tunnel: no HTTP/2 preface");
            return;
        }
    };
    while let Some(next) = conn.accept().await {
        let Ok((req, mut respond)) = next else { break };
        // The snapshot may have changed since the handshake: a revoked or removed node gets
        // no new streams on a connection opened before.
        let state = ctx.state();
        let still_ok = peer_cert
            .as_ref()
            .ok_or_else(|| "no peer certificate".to_owned())
            .and_then(|c| state.bundle_check(c))
            .and_then(|id| {
                if id.kind == Workload::Node && !state.nodes.iter().any(|n| n.identity == id) {
                    Err(format!("{id} is no longer a node of this home"))
                } else {
                    Ok(id)
                }
            });
        if let Err(e) = still_ok {
            tracing::warn!(peer = %peer_id, error = %e, "closing tunnel: peer no longer allowed");
            respond.send_reset(::h2::Reason::REFUSED_STREAM);
            conn.abrupt_shutdown(::h2::Reason::REFUSED_STREAM);
            break;
        }
        let Ok(permit) = ctx.inbound_streams.clone().try_acquire_owned() else {
            ctx.metrics.overflow("inbound");
            respond.send_reset(::h2::Reason::REFUSED_STREAM);
            continue;
        };
        let ctx = ctx.clone();
        let peer_id = peer_id.clone();
        tokio::spawn(async move {
            stream(ctx, state, peer_id, req, respond).await;
            drop(permit);
        });
    }
}

fn header<T: std::str::FromStr>(req: &http::Request<::h2::RecvStream>, name: &str) -> Option<T> {
    req.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// Send a non-200 answer with its JSON body.
fn refuse(
    respond: &mut ::h2::server::SendResponse<Bytes>,
    status: http::StatusCode,
    body: &TunnelResponse,
) {
    let resp = http::Response::builder()
        .status(status)
        .body(())
        .unwrap_or_default();
    if let Ok(mut s) = respond.send_response(resp, false) {
        let json = serde_json::to_vec(body).unwrap_or_default();
        let _ = s.send_data(Bytes::from(json), true);
    }
}

/// One CONNECT stream: decide, connect the last hop, copy.
async fn stream(
    ctx: Arc<Ctx>,
    state: Arc<MeshState>,
    peer_id: SpiffeId,
    req: http::Request<::h2::RecvStream>,
    mut respond: ::h2::server::SendResponse<Bytes>,
) {
    let start = Instant::now();
    let started = trace::Started::now();
    // A missing or malformed traceparent starts a new trace; it never fails the stream.
    let (tp, parent) = ctx
        .metrics
        .traces
        .child(req.headers().get(HDR_TRACEPARENT).map(|v| v.as_bytes()));
    let trace_cx = trace::Context {
        tp,
        parent,
        kind: trace::SpanKind::Server,
        started,
    };
    let failed = |reason: String| TunnelResponse::Failed { reason };
    let (service, port) = match req.uri().authority() {
        Some(a) if req.method() == http::Method::CONNECT => {
            (a.host().to_owned(), a.port_u16().unwrap_or(0))
        }
        _ => {
            refuse(
                &mut respond,
                http::StatusCode::BAD_REQUEST,
                &failed("expected CONNECT <service>:<port>".into()),
            );
            return;
        }
    };
    let client_ip: Option<IpAddr> = header(&req, HDR_CLIENT_IP);
    let client_mac: Option<MacAddr> = header(&req, HDR_CLIENT_MAC);
    // Decide with this node's own snapshot, from the facts the source node saw.
    let source = match (peer_id.kind, client_ip) {
        (Workload::Svc, _) => Source::Workload(peer_id.clone()),
        (Workload::Node, Some(ip)) => state.resolve_client(ip, client_mac),
        (Workload::Node, None) => Source::device(&state.devices, &state.policy, client_mac, None),
    };
    let Some(svc) = state.catalog.by_name(&service) else {
        refuse(
            &mut respond,
            http::StatusCode::NOT_FOUND,
            &failed(format!("no service {service:?} in this node's catalog")),
        );
        return;
    };
    let decision = state.policy.evaluate(&source, &svc.name, Some(port));
    for rule in decision.would_deny() {
        ctx.metrics.dry_run_denied(rule);
    }
    let labels = ConnLabels {
        direction: "inbound",
        source_identity: source.identity(),
        destination_identity: svc.identity.to_string(),
        destination_service: svc.name.clone(),
    };
    let log = |sent, received, outcome, rule: String, hop: Option<(SocketAddr, Duration)>| {
        let rec = AccessRecord {
            direction: "inbound",
            src_addr: client_ip.map(|ip| SocketAddr::new(ip, 0)),
            src_identity: source.identity(),
            service: svc.name.clone(),
            port,
            dst_identity: svc.identity.to_string(),
            peer_node: peer_id.to_string(),
            bytes_sent: sent,
            bytes_received: received,
            duration: start.elapsed(),
            outcome,
            rule,
        };
        ctx.metrics
            .traces
            .finish(&trace_cx, &rec, &source, hop.map(|h| h.0), hop.map(|h| h.1));
        ctx.metrics.access(rec);
    };
    if !decision.allowed() {
        ctx.metrics
            .denied(&decision.rule(), &svc.name, "destination");
        tracing::info!(target: "trellis::policy", peer = %peer_id, "{}", decision.explain());
        refuse(
            &mut respond,
            http::StatusCode::FORBIDDEN,
            &TunnelResponse::Denied {
                rule: decision.rule(),
                explanation: decision.explain(),
            },
        );
        log(0, 0, Outcome::Denied, decision.rule(), None);
        return;
    }
    let Some(sport) = svc.port(port) else {
        refuse(
            &mut respond,
            http::StatusCode::NOT_FOUND,
            &failed(format!("{} has no port {port}", svc.name)),
        );
        return;
    };
    // Only instances on this node's own segment: we never relay plaintext further.
    let mut last = String::from("no instance behind this node");
    let mut upstream = None;
    let t0 = Instant::now();
    for inst in svc
        .instances
        .iter()
        .filter(|i| i.node == state.local_node && i.reachable)
    {
        let target = SocketAddr::new(inst.addr, sport.target());
        match tokio::time::timeout(ctx.cfg.connect_timeout, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                upstream = Some((s, (target, t0.elapsed())));
                break;
            }
            Ok(Err(e)) => last = format!("{target}: {e}"),
            Err(_) => last = format!("{target}: connect timed out"),
        }
    }
    let Some((upstream, hop)) = upstream else {
        refuse(
            &mut respond,
            http::StatusCode::SERVICE_UNAVAILABLE,
            &failed(last.clone()),
        );
        log(0, 0, Outcome::Error(last), decision.rule(), None);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let Ok(send) = respond.send_response(http::Response::new(()), false) else {
        return;
    };
    ctx.metrics.opened(labels.clone());
    // Bytes "sent" are client → service, here tunnel → device.
    let counts = Transferred::default();
    let tunnel = H2Stream::new(send, req.into_body());
    let copy = copy::tunnel(
        upstream,
        tunnel,
        copy::TcpSide::Service,
        &ctx.budget,
        &counts,
    );
    let res = copy::reporting(copy, &counts, &ctx.metrics, &labels).await;
    let sent = counts.sent.load(std::sync::atomic::Ordering::Relaxed);
    let received = counts.received.load(std::sync::atomic::Ordering::Relaxed);
    ctx.metrics.closed(labels);
    let outcome = match res {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.to_string()),
    };
    log(sent, received, outcome, decision.rule(), Some(hop));
}
