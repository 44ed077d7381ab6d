//! Wires the service mesh's data plane to the control plane inside `trellis-agent run`.
//!
//! Every applied config snapshot, every renewed certificate and every change of the DHCP
//! leases rebuilds one [`MeshState`] and hands it to the proxy through a watch channel; the
//! DNS responder follows the catalog the same way. Interception (`table inet trellis`) is
//! installed once and removed when the agent stops. What discovery finds goes back to the
//! controller with the telemetry, which adds it to the catalog.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use trellis_proto::api::SeenService;
use trellis_proto::catalog::LearnedVia;
use trellis_proto::snapshot::ConfigSnapshot;

use crate::control::telemetry::Slot;
use crate::control::{Agent, AgentHandle};
use crate::discovery::{self, DiscoveryEvent, MdnsBrowser};
use crate::intercept::{Interception, Rules};
use crate::metrics::Metrics;
use crate::proxy::{MeshState, NodeIdentity, Proxy, ProxyConfig, ProxyHandle};

/// How often the DHCP lease file is looked at again.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Most services one node reports (the controller caps it too).
const MAX_SEEN: usize = 64;
/// DNS-SD types browsed on the LAN: file shares, printers, web UIs, Home Assistant, media.
pub const BROWSED_TYPES: &[&str] = &[
    "_smb._tcp.local.",
    "_ipp._tcp.local.",
    "_http._tcp.local.",
    "_home-assistant._tcp.local.",
    "_googlecast._tcp.local.",
    "_airplay._tcp.local.",
];

/// Knobs of `trellis-agent run` for the service mesh.
#[derive(Debug, Clone)]
pub struct Options {
    pub proxy: ProxyConfig,
    /// Install nftables interception (needs root and nft).
    pub intercept: bool,
    /// Where the mesh-zone DNS answers (dnsmasq forwards `trellis.home.arpa` here).
    pub dns: Option<SocketAddr>,
    /// Where `/metrics` is served (Prometheus text).
    pub metrics: Option<SocketAddr>,
    /// dnsmasq's lease file.
    pub leases: Option<PathBuf>,
    /// Browse mDNS/DNS-SD on the LAN.
    pub mdns: bool,
    /// The address other routers reach this one by (default: the inbound listener's, or
    /// the one used towards the controller).
    pub advertise: Option<std::net::IpAddr>,
    /// The OTLP/HTTP collector spans are exported to (none: the ring only).
    pub otlp: Option<crate::trace::export::Collector>,
    /// The share of traces exported when all went well (denied and failed: always).
    pub trace_sample: f64,
}

/// The running data plane; stops (and removes interception) when dropped.
pub struct ServiceMesh {
    pub proxy: Option<ProxyHandle>,
    pub metrics: Arc<Metrics>,
    _interception: Option<Interception>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ServiceMesh {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(p) = self.proxy.take() {
            p.shutdown();
        }
    }
}

/// Build what the proxy decides with from the snapshot, the certificate and the leases.
/// `generation` moves on every rebuild (a renewal or a lease change too, not only a new
/// snapshot), so the proxy never reuses state built from an older picture.
fn mesh_state(
    generation: u64,
    trust_generation: u64,
    agent: &Agent,
    snapshot: &ConfigSnapshot,
    leases: &[discovery::Lease],
    hops: &crate::control::Hops,
) -> anyhow::Result<MeshState> {
    let local = agent
        .node
        .identity
        .node_name()
        .ok_or_else(|| anyhow::anyhow!("this node's identity is not a node identity"))?;
    let devices = discovery::devices_from_leases(
        leases,
        &snapshot.devices,
        &snapshot.policy.unknown_device_group,
    );
    let identity = NodeIdentity::from_pem(&agent.identity().pem)?;
    let hops: HashMap<_, _> = hops.iter().map(|(n, h)| (n.clone(), *h)).collect();
    let mut state = MeshState::from_snapshot(snapshot, local, identity, devices, hops)?;
    state.version = generation;
    state.trust_version = trust_generation;
    Ok(state)
}

/// What a tunnel's TLS depends on: this node's certificate, the CA, the routers and the
/// revocations. When it changes, pooled tunnels go; when only leases, hops, the catalog or
/// policy change, they stay.
fn trust_fingerprint(snapshot: &ConfigSnapshot, serial: &trellis_proto::CertSerial) -> Vec<u8> {
    serde_json::to_vec(&(
        serial,
        &snapshot.ca_pem,
        &snapshot.nodes,
        &snapshot.revoked,
        &snapshot.revoked_serials,
    ))
    .unwrap_or_default()
}

/// Start the data plane once the first snapshot is known (stored or fresh).
pub async fn start(agent: &AgentHandle, opts: Options) -> anyhow::Result<ServiceMesh> {
    let metrics = Arc::new(Metrics::new());
    agent
        .agent
        .published
        .proxy_metrics
        .publish(Some(metrics.clone()));
    let mut trust = agent.trust.clone();
    let snapshot = trust
        .wait_for_version(1)
        .await
        .ok_or_else(|| anyhow::anyhow!("the agent stopped before any configuration arrived"))?;
    let read_leases = {
        let path = opts.leases.clone();
        move || {
            path.as_deref()
                .and_then(|p| discovery::read_leases(p).ok())
                .unwrap_or_default()
        }
    };
    let mut generation = 1u64;
    let mut last = (
        snapshot.version,
        agent.agent.identity().facts.serial,
        read_leases(),
        agent.agent.hops().borrow().clone(),
    );
    let mut trust_generation = 1u64;
    let mut last_trust = trust_fingerprint(&snapshot, &last.1);
    let first = mesh_state(
        generation,
        trust_generation,
        &agent.agent,
        &snapshot,
        &last.2,
        &last.3,
    )?;
    let (state_tx, state_rx) = watch::channel(Arc::new(first));
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(snapshot.catalog.clone()));
    let proxy = Proxy::start(opts.proxy.clone(), state_rx, metrics.clone()).await?;
    let agent_name = agent
        .agent
        .node
        .identity
        .node_name()
        .map_or_else(|| agent.agent.node.identity.to_string(), |n| n.to_string());
    metrics.traces.set_sample_rate(opts.trace_sample);
    tracing::info!(outbound = %proxy.outbound, inbound = %proxy.inbound, "service mesh proxy listening");
    // Tell the other routers where our tunnel endpoint is.
    let advertise = match opts
        .advertise
        .or_else(|| (!proxy.inbound.ip().is_unspecified()).then(|| proxy.inbound.ip()))
    {
        Some(ip) => Some(ip),
        None => agent.agent.local_address_towards_controller().await,
    };
    match advertise {
        Some(ip) => {
            // The report task announces it at once.
            agent
                .agent
                .published
                .tunnel_addresses
                .publish(vec![SocketAddr::new(ip, proxy.inbound.port()).to_string()]);
        }
        None => tracing::warn!("no address to announce for the tunnel endpoint; use --advertise"),
    }
    let interception = if opts.intercept {
        match Interception::install(&Rules::for_proxy(proxy.outbound.port())) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::error!("could not install interception (nftables table inet trellis): {e}; mesh names will not reach the proxy. Is kmod-nft-nat installed?");
                None
            }
        }
    } else {
        None
    };
    let mut tasks = Vec::new();
    if let Some(collector) = opts.otlp.clone() {
        tracing::info!(collector = %collector.url(), sample = opts.trace_sample, "exporting traces (OTLP/HTTP)");
        tasks.push(crate::trace::export::start(
            metrics.traces.clone(),
            agent_name.clone(),
            collector,
        ));
    }

    // Rebuild the proxy's state on every snapshot, renewal or lease change.
    tasks.push(tokio::spawn({
        let mut trust = agent.trust.clone();
        let mut renewals = agent.agent.renewals();
        let mut hops = agent.agent.hops();
        let agent = agent.agent.clone();
        async move {
            loop {
                tokio::select! {
                    _ = trust.changed() => {}
                    Ok(()) = renewals.changed() => {}
                    Ok(()) = hops.changed() => {}
                    _ = tokio::time::sleep(REFRESH_EVERY) => {}
                }
                let Some(snapshot) = trust.snapshot() else {
                    continue;
                };
                let now = (
                    snapshot.version,
                    agent.identity().facts.serial,
                    read_leases(),
                    hops.borrow_and_update().clone(),
                );
                if now == last {
                    continue;
                }
                generation += 1;
                let trust = trust_fingerprint(&snapshot, &now.1);
                if trust != last_trust {
                    trust_generation += 1;
                    last_trust = trust;
                }
                match mesh_state(
                    generation,
                    trust_generation,
                    &agent,
                    &snapshot,
                    &now.2,
                    &now.3,
                ) {
                    Ok(state) => {
                        state_tx.send_replace(Arc::new(state));
                        catalog_tx.send_replace(Arc::new(snapshot.catalog.clone()));
                        last = now;
                    }
                    Err(e) => tracing::error!(
                        "could not apply config v{} to the proxy: {e:#}",
                        snapshot.version
                    ),
                }
            }
        }
    }));

    if let Some(addr) = opts.dns {
        let sock = tokio::net::UdpSocket::bind(addr).await?;
        tracing::info!(%addr, "answering DNS for trellis.home.arpa");
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::dns::serve(sock, catalog_rx).await {
                tracing::error!("mesh DNS stopped: {e}");
            }
        }));
    }
    if let Some(addr) = opts.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving /metrics");
        // The one accept loop and /metrics endpoint of both daemons (trellis-io): bounded
        // connections, a header timeout, and the endpoint's own refusals on the page.
        let gate = trellis_io::Gate::new("metrics", trellis_io::metrics::METRICS_LIMITS);
        let metrics = metrics.clone();
        let counted = gate.clone();
        tasks.push(tokio::spawn(async move {
            let node = agent_name.clone();
            trellis_io::metrics::serve_pages(listener, gate, move |path, query| match path {
                "/metrics" => {
                    let mut page = metrics.render();
                    let mut listeners = metrics.listeners();
                    listeners.push(counted.clone());
                    trellis_io::metrics::render(&listeners, &mut page);
                    Some((trellis_io::metrics::PROMETHEUS_TEXT, page))
                }
                // This router's recent spans (the ring), newest first, as JSON.
                "/traces" => Some((
                    "application/json",
                    crate::trace::traces_page(&metrics.traces, &node, query),
                )),
                _ => None,
            })
            .await;
        }));
    }
    if opts.mdns {
        match MdnsBrowser::start(BROWSED_TYPES) {
            Ok((browser, events)) => tasks.push(tokio::spawn(report_discoveries(
                browser,
                events,
                agent.agent.published.services.clone(),
            ))),
            Err(e) => tracing::warn!("mDNS browsing unavailable: {e}"),
        }
    }
    Ok(ServiceMesh {
        proxy: Some(proxy),
        metrics,
        _interception: interception,
        tasks,
    })
}

/// Keep a bounded book of what DNS-SD shows on the LAN and publish it for the telemetry.
async fn report_discoveries(
    _browser: MdnsBrowser,
    mut events: tokio::sync::mpsc::Receiver<DiscoveryEvent>,
    services: Slot<Vec<SeenService>>,
) {
    let mut seen: BTreeMap<String, SeenService> = BTreeMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            DiscoveryEvent::Up(d) => {
                let Some(addr) = d
                    .addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or(d.addrs.iter().next())
                    .copied()
                else {
                    continue;
                };
                if seen.len() >= MAX_SEEN && !seen.contains_key(&d.fullname) {
                    continue;
                }
                seen.insert(
                    d.fullname.clone(),
                    SeenService {
                        name: d.name,
                        addr,
                        ports: vec![d.port],
                        learned_via: LearnedVia::Mdns,
                    },
                );
            }
            DiscoveryEvent::Down { fullname } => {
                seen.remove(&fullname);
            }
        }
        services.publish(seen.values().cloned().collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::snapshot::{MeshCredentials, Revocation};
    use trellis_proto::{HomeId, NodeName, SpiffeId};

    fn snapshot() -> ConfigSnapshot {
        ConfigSnapshot {
            version: 7,
            home_id: HomeId::new("home1").unwrap(),
            ca_pem: "-----BEGIN CERTIFICATE-----".into(),
            nodes: vec![],
            revoked: vec![],
            revoked_serials: vec![],
            mesh: MeshCredentials {
                mesh_id: "m".into(),
                sae_password: "p".into(),
            },
            catalog: Default::default(),
            policy: Default::default(),
            devices: vec![],
            wifi: Default::default(),
            mesh_channel: None,
        }
    }

    #[test]
    fn tunnels_are_kept_across_policy_changes_and_dropped_on_a_revocation() {
        let before = snapshot();
        let mut policy_changed = snapshot();
        policy_changed.version = 8;
        policy_changed.policy.unknown_device_group = "iot".into();
        assert_eq!(
            trust_fingerprint(&before, &trellis_proto::CertSerial::from_hex("01")),
            trust_fingerprint(&policy_changed, &trellis_proto::CertSerial::from_hex("01"))
        );
        let mut revoked = snapshot();
        revoked.revoked.push(Revocation {
            identity: SpiffeId::node(&before.home_id, &NodeName::new("attic").unwrap()),
            revoked_at: 1,
        });
        assert_ne!(
            trust_fingerprint(&before, &trellis_proto::CertSerial::from_hex("01")),
            trust_fingerprint(&revoked, &trellis_proto::CertSerial::from_hex("01"))
        );
        assert_ne!(
            trust_fingerprint(&before, &trellis_proto::CertSerial::from_hex("01")),
            trust_fingerprint(&before, &trellis_proto::CertSerial::from_hex("02")),
            "a renewed certificate"
        );
    }
}
