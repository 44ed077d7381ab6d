//! Inbound: a tunnel from another node, authorised here again, then the plaintext last hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use trellis_proto::identity::Workload;
use trellis_proto::policy::Source;

use super::copy::{self, Transferred};
use super::wire::{self, TunnelResponse};
use super::{tls, Ctx};
use crate::metrics::{AccessRecord, ConnLabels, Outcome};

fn server_config(
    ctx: &Ctx,
    state: &super::MeshState,
) -> Result<Arc<rustls::ServerConfig>, tls::TlsError> {
    let mut g = ctx.server_tls.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((v, c)) = g.as_ref() {
        if *v == state.version {
            return Ok(c.clone());
        }
    }
    let c = tls::server_config(&state.identity, &state.bundle)?;
    *g = Some((state.version, c.clone()));
    Ok(c)
}

/// Serve one tunnel to the end.
pub(crate) async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, peer_addr: SocketAddr) {
    let start = Instant::now();
    let state = ctx.state();
    let config = match server_config(&ctx, &state) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve tunnels: this node's TLS identity is unusable");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut tunnel =
        match tokio::time::timeout(ctx.cfg.handshake_timeout, acceptor.accept(tcp)).await {
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
    let peer_id = match tls::peer_identity(tunnel.get_ref().1, &state.bundle) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(%peer_addr, error = %e, "refused tunnel: peer identity");
            return;
        }
    };
    // A node identity must be a node of this home's snapshot; a service identity is a host
    // agent speaking for itself (end-to-end mTLS).
    if peer_id.kind == Workload::Node && !state.nodes.iter().any(|n| n.identity == peer_id) {
        tracing::warn!(%peer_addr, peer = %peer_id, "refused tunnel: node not in the snapshot");
        return;
    }
    // Pre-dialled tunnels wait here until a client needs them.
    let req = match tokio::time::timeout(ctx.cfg.request_timeout, wire::read_request(&mut tunnel))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer_id, error = %e, "tunnel closed before a request");
            return;
        }
        Err(_) => return,
    };
    // Decide with this node's own snapshot, from the facts the source node saw. The snapshot
    // may have changed while a pre-dialled tunnel waited: check the peer again against it, so
    // a revocation also closes tunnels opened before it.
    let state = ctx.state();
    if let Err(e) = tls::peer_identity(tunnel.get_ref().1, &state.bundle) {
        tracing::warn!(%peer_addr, error = %e, "refused tunnel: peer identity (snapshot changed)");
        return;
    }
    if peer_id.kind == Workload::Node && !state.nodes.iter().any(|n| n.identity == peer_id) {
        tracing::warn!(%peer_addr, peer = %peer_id, "refused tunnel: node no longer in the snapshot");
        return;
    }
    let source = match (peer_id.kind, req.client_ip) {
        (Workload::Svc, _) => Source::Workload(peer_id.clone()),
        (Workload::Node, Some(ip)) => state.resolve_client(ip, req.client_mac),
        (Workload::Node, None) => {
            Source::device(&state.devices, &state.policy, req.client_mac, None)
        }
    };
    let Some(svc) = state.catalog.by_name(&req.service) else {
        let _ = wire::write_response(
            &mut tunnel,
            &TunnelResponse::Failed {
                reason: format!("no service {:?} in this node's catalog", req.service),
            },
        )
        .await;
        return;
    };
    let decision = state.policy.evaluate(&source, &svc.name, Some(req.port));
    for rule in decision.would_deny() {
        ctx.metrics.dry_run_denied(rule);
    }
    let labels = ConnLabels {
        direction: "inbound",
        source_identity: source.identity(),
        destination_identity: svc.identity.to_string(),
        destination_service: svc.name.clone(),
    };
    let log = |sent, received, outcome, rule: String| {
        ctx.metrics.access(AccessRecord {
            direction: "inbound",
            src_addr: req.client_ip.map(|ip| SocketAddr::new(ip, 0)),
            src_identity: source.identity(),
            service: svc.name.clone(),
            port: req.port,
            dst_identity: svc.identity.to_string(),
            peer_node: peer_id.to_string(),
            bytes_sent: sent,
            bytes_received: received,
            duration: start.elapsed(),
            outcome,
            rule,
        })
    };
    if !decision.allowed() {
        ctx.metrics
            .denied(&decision.rule(), &svc.name, "destination");
        tracing::info!(target: "trellis::policy", peer = %peer_id, "{}", decision.explain());
        let _ = wire::write_response(
            &mut tunnel,
            &TunnelResponse::Denied {
                rule: decision.rule(),
                explanation: decision.explain(),
            },
        )
        .await;
        log(0, 0, Outcome::Denied, decision.rule());
        return;
    }
    let Some(port) = svc.port(req.port) else {
        let _ = wire::write_response(
            &mut tunnel,
            &TunnelResponse::Failed {
                reason: format!("{} has no port {}", svc.name, req.port),
            },
        )
        .await;
        return;
    };
    // Only instances on this node's own segment: we never relay plaintext further.
    let mut last = String::from("no instance behind this node");
    let mut upstream = None;
    for inst in svc
        .instances
        .iter()
        .filter(|i| i.node == state.local_node && i.reachable)
    {
        let target = SocketAddr::new(inst.addr, port.target());
        match tokio::time::timeout(ctx.cfg.connect_timeout, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                upstream = Some(s);
                break;
            }
            Ok(Err(e)) => last = format!("{target}: {e}"),
            Err(_) => last = format!("{target}: connect timed out"),
        }
    }
    let Some(upstream) = upstream else {
        let _ = wire::write_response(
            &mut tunnel,
            &TunnelResponse::Failed {
                reason: last.clone(),
            },
        )
        .await;
        log(0, 0, Outcome::Error(last), decision.rule());
        return;
    };
    let _ = upstream.set_nodelay(true);
    if wire::write_response(
        &mut tunnel,
        &TunnelResponse::Connected {
            rule: decision.rule(),
        },
    )
    .await
    .is_err()
    {
        return;
    }
    ctx.metrics.opened(labels.clone());
    // Bytes "sent" are client → service, here tunnel → device.
    let counts = Transferred::default();
    let res = copy::bidirectional(tunnel, upstream, &ctx.budget, &counts).await;
    let sent = counts.sent.load(std::sync::atomic::Ordering::Relaxed);
    let received = counts.received.load(std::sync::atomic::Ordering::Relaxed);
    ctx.metrics.closed(labels, sent, received);
    let outcome = match res {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.to_string()),
    };
    log(sent, received, outcome, decision.rule());
}
