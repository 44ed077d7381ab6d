//! What the routers tell the home and what it makes of it: config acks, telemetry, the
//! mesh topology and hops from the portal, each router's liveness and the status summary.

use crate::ca::unix_now;
use crate::error::{HomeError, Kind, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use trellis_proto::api::{NodeInfo, Status, Telemetry};
use trellis_proto::NodeName;

use super::{
    capped, truncate_chars, tunnel_addresses, Home, MAX_AGENT_TEXT, MAX_REPORTED_DEVICES,
    MAX_REPORTED_LINKS,
};

impl Home {
    /// An agent says which config version it applied, or why it could not. A version the
    /// controller never published is refused: kept, it would show a router that is behind as
    /// up to date (the highest ack wins).
    pub fn ack(&self, node: &NodeName, version: u64, error: Option<&str>) -> Result<()> {
        let published = self.snapshot().version;
        if version > published {
            return Err(HomeError::new(
                Kind::BadRequest,
                format!(
                    "config version {version} was never published (the newest is {published}); acknowledge a version received from GET /v1/agent/config"
                ),
            ));
        }
        if let Some(err) = error {
            // Agent text: capped, and a field (escaped), so it cannot forge log lines.
            let err = capped(err, MAX_AGENT_TEXT);
            tracing::warn!(%node, version, error = ?err, "agent could not apply config");
            return Ok(());
        }
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(node.clone()).or_default();
        if version > entry.acked_version {
            self.counters.first_ack(version);
        }
        entry.acked_version = entry.acked_version.max(version);
        Ok(())
    }

    pub fn report(&self, node: &NodeName, mut telemetry: Telemetry) -> Result<()> {
        let outcomes = crate::wifi::cap_wifi_reports(&mut telemetry);
        self.report_inner(node, telemetry)?;
        self.steer_round(node, &outcomes);
        Ok(())
    }

    fn report_inner(&self, node: &NodeName, mut telemetry: Telemetry) -> Result<()> {
        // Tunnel endpoints reach flash and every router's snapshot: only real socket
        // addresses (`ip:port`, or a bare IP for the default port) are kept, written in one form.
        telemetry.addresses = tunnel_addresses(&telemetry.addresses);
        truncate_chars(&mut telemetry.agent_version, 40);
        if let Some(a) = &mut telemetry.speedtest_addr {
            truncate_chars(a, 64);
        }
        telemetry.devices.truncate(MAX_REPORTED_DEVICES);
        for d in &mut telemetry.devices {
            if let Some(h) = &mut d.hostname {
                truncate_chars(h, 63);
            }
            // Interface names are at most 15 bytes (IFNAMSIZ); anything longer is not one.
            if let Some(w) = &mut d.wifi {
                truncate_chars(&mut w.interface, 15);
            }
            if let Some(p) = &mut d.port {
                truncate_chars(p, 15);
            }
        }
        telemetry
            .services
            .truncate(crate::catalog::MAX_REPORTED_SERVICES);
        if let Some(mesh) = &mut telemetry.mesh {
            truncate_chars(&mut mesh.mac, 32);
            mesh.links.truncate(MAX_REPORTED_LINKS);
            mesh.macs.truncate(trellis_proto::api::MAX_NODE_MACS);
            for m in &mut mesh.macs {
                truncate_chars(m, 32);
            }
            for link in &mut mesh.links {
                truncate_chars(&mut link.peer, 32);
                link.advice.truncate(8);
                for a in &mut link.advice {
                    truncate_chars(a, MAX_AGENT_TEXT);
                }
            }
        }
        // Service names are DNS labels; anything else is not from a proxy of ours.
        telemetry
            .traffic
            .retain(|t| t.service.len() <= 63 && !t.service.is_empty());
        telemetry.traffic.truncate(crate::traffic::MAX_SERVICES);
        crate::channel::home::bound_survey(&mut telemetry.survey);
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(node, &std::mem::take(&mut telemetry.traffic), unix_now());
        telemetry
            .edges
            .truncate(trellis_proto::api::MAX_REPORTED_EDGES);
        self.graph.lock().unwrap_or_else(|p| p.into_inner()).report(
            node,
            &std::mem::take(&mut telemetry.edges),
            unix_now(),
        );
        self.traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(node, std::mem::take(&mut telemetry.traces));
        for seen in std::mem::take(&mut telemetry.services) {
            if let Err(e) = self.learn_service(node, &seen) {
                // A router repeats its report every 30 s: one line per interval, not per report.
                if let Some(times) = self.catalog_refusals.hit(Instant::now()) {
                    tracing::warn!(%node, service = ?capped(&seen.name, 63), error = %e, times, "service not added to the catalog");
                }
            }
        }
        // Peers need to know where a node can be reached: a move is a config change (stored,
        // so it survives a controller restart); the same addresses again write nothing.
        if let Some(version) = self.store.set_node_addresses(node, &telemetry.addresses)? {
            tracing::info!(%node, addresses = ?telemetry.addresses, version, "router's tunnel address changed");
            self.publish()?;
        }
        self.radar_reports(node.as_str(), &telemetry.radar);
        let skew =
            (telemetry.clock_unix > 0).then(|| telemetry.clock_unix as i64 - unix_now() as i64);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(node.clone()).or_default();
        entry.telemetry = telemetry;
        entry.reported_at = Some(Instant::now());
        entry.clock_skew_s = skew;
        Ok(())
    }

    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            home_id: self.home_id().clone(),
            config_version: self.snapshot().version,
            nodes: self.snapshot().nodes.len(),
            ca_not_after: self.ca.not_after(),
            agent_api: self.settings.advertise.clone(),
            controller_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// The routers of the home now (the published snapshot's nodes: removed ones are gone).
    pub(super) fn members(&self) -> std::collections::HashSet<NodeName> {
        self.snapshot()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The mesh as the routers last reported it: one entry per peer link, the peer named by
    /// the router whose mesh MAC it is (RAM only, from telemetry).
    pub fn topology(&self) -> Vec<trellis_proto::api::TopologyLink> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let members = self.members();
        // A router is named by its mesh interface's MAC and its other interfaces' (the far
        // end of a cable sees one of those).
        let by_mac: HashMap<String, NodeName> = live
            .iter()
            .filter(|(name, _)| members.contains(*name))
            .filter_map(|(name, l)| Some((name, l.telemetry.mesh.as_ref()?)))
            .flat_map(|(name, mesh)| {
                std::iter::once(&mesh.mac)
                    .filter(|m| !m.is_empty())
                    .chain(mesh.macs.iter().take(trellis_proto::api::MAX_NODE_MACS))
                    .map(move |mac| (mac.to_ascii_lowercase(), name.clone()))
            })
            .collect();
        // Links are as old as the report that carried them ([`crate::fleet::links_current`]),
        // at both ends: a silent router's links go, and so do the links others report to it.
        let now = Instant::now();
        let current: std::collections::HashSet<&NodeName> = live
            .iter()
            .filter(|(name, l)| {
                members.contains(*name)
                    && crate::fleet::links_current(
                        l.reported_at.map(|t| now.saturating_duration_since(t)),
                        l.telemetry
                            .report_every_s
                            .map(|s| Duration::from_secs(u64::from(s))),
                        self.settings.node_timeout,
                    )
            })
            .map(|(name, _)| name)
            .collect();
        let mut out = Vec::new();
        for (name, l) in live.iter().filter(|(name, _)| current.contains(name)) {
            let Some(mesh) = &l.telemetry.mesh else {
                continue;
            };
            for link in &mesh.links {
                let peer = link.peer.to_ascii_lowercase();
                let to = by_mac.get(&peer);
                if to.is_some_and(|n| !current.contains(n)) {
                    continue;
                }
                out.push(trellis_proto::api::TopologyLink {
                    from: name.clone(),
                    to: to.map(|n| n.to_string()).unwrap_or(peer),
                    medium: link.medium,
                    signal_dbm: link.signal_dbm,
                    expected_throughput_kbps: link.expected_throughput_kbps,
                    airtime_metric: link.airtime_metric,
                    verdict: link.verdict,
                    advice: link.advice.clone(),
                    measured: None,
                });
            }
        }
        drop(live);
        // Each link with the newest speed test between its two ends.
        let tests = self.speedtests.list(unix_now());
        for l in &mut out {
            l.measured = tests
                .iter()
                .filter(|t| {
                    t.state == trellis_proto::api::SpeedTestState::Done
                        && ((t.from == l.from && t.to.as_str() == l.to)
                            || (t.to == l.from && t.from.as_str() == l.to))
                })
                .filter_map(|t| {
                    Some(trellis_proto::api::LinkMeasurement {
                        from: t.from.clone(),
                        to: t.to.clone(),
                        bits_per_second: t.bits_per_second?,
                        at: t.finished_at?,
                    })
                })
                .max_by_key(|m| m.at);
        }
        out.sort_by(|a, b| (a.from.as_str(), a.to.as_str()).cmp(&(b.from.as_str(), b.to.as_str())));
        out
    }

    /// Mesh hops from `from` to every router reachable over the reported peer links (a
    /// breadth-first walk; blocked links and peers that are not routers of the home are left
    /// out). For the proxies' locality: prefer the instance fewest hops away.
    pub fn hops_from(&self, from: &NodeName) -> std::collections::BTreeMap<NodeName, u32> {
        let members = self.members();
        let mut next: HashMap<NodeName, Vec<NodeName>> = HashMap::new();
        for link in self.topology() {
            if !link.verdict.carries_traffic() {
                continue;
            }
            let Ok(to) = NodeName::new(link.to.clone()) else {
                continue;
            };
            if !members.contains(&to) {
                continue;
            }
            // A peer link carries traffic both ways, whichever side reported it.
            next.entry(link.from.clone()).or_default().push(to.clone());
            next.entry(to).or_default().push(link.from);
        }
        let mut hops = std::collections::BTreeMap::new();
        hops.insert(from.clone(), 0u32);
        let mut queue = std::collections::VecDeque::from([from.clone()]);
        while let Some(n) = queue.pop_front() {
            let d = hops[&n];
            for m in next.get(&n).into_iter().flatten() {
                if !hops.contains_key(m) {
                    hops.insert(m.clone(), d + 1);
                    queue.push_back(m.clone());
                }
            }
        }
        hops.remove(from);
        hops
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let portal = self.store.portal_node()?;
        let wifi = self.snapshot().wifi.clone();
        let hops = portal
            .as_ref()
            .map(|p| {
                let mut hops = self.hops_from(p);
                hops.insert(p.clone(), 0);
                hops
            })
            .unwrap_or_default();
        Ok(self
            .store
            .nodes()?
            .into_iter()
            .map(|row| {
                let l = live.get(&row.name).cloned().unwrap_or_default();
                let wifi_health = self
                    .telemetry(&row.name)
                    .and_then(|t| crate::health::wifi(&wifi, &t.access_points, t.radios));
                NodeInfo {
                    portal: portal.as_ref() == Some(&row.name),
                    hops: hops.get(&row.name).copied(),
                    name: row.name,
                    identity: row.identity,
                    enrolled_at: row.enrolled_at,
                    cert_health: row
                        .cert_not_after
                        .map(|t| crate::health::certificate(t, unix_now(), self.settings.leaf_ttl)),
                    cert_not_after: row.cert_not_after,
                    revoked: row.revoked_at.is_some(),
                    acked_version: l.acked_version,
                    last_seen_s: l.last_seen.map(|t| t.elapsed().as_secs()),
                    clock_skew_s: l.clock_skew_s,
                    wifi: wifi_health,
                    label: row.label,
                }
            })
            .collect())
    }

    /// Give a router a label for people; an empty label clears it.
    pub fn set_label(&self, name: &NodeName, label: &str) -> Result<()> {
        let label = label.trim();
        if label.chars().count() > 40 || label.chars().any(char::is_control) {
            return Err(HomeError::new(
                Kind::BadRequest,
                "a router label has at most 40 characters and no control characters",
            ));
        }
        self.store
            .set_node_label(name, (!label.is_empty()).then_some(label))?;
        tracing::info!(node = %name, "router label changed");
        Ok(())
    }

    /// Routers of the home not heard from within the node timeout (or never, once the
    /// controller has run that long): what they announced cannot be reached now.
    pub fn silent_nodes(&self) -> std::collections::HashSet<NodeName> {
        self.snapshot()
            .nodes
            .iter()
            .filter(|n| !self.liveness(&n.name, false).reachable())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Whether router `name` is heard from ([`crate::fleet`], with `--node-timeout-s`).
    pub fn liveness(&self, name: &NodeName, revoked: bool) -> crate::fleet::Liveness {
        let silent_for = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .and_then(|l| l.last_seen)
            .map(|t| t.elapsed());
        crate::fleet::Liveness::of(
            revoked,
            silent_for,
            self.started.elapsed(),
            self.settings.node_timeout,
        )
    }

    /// What keeps an enrolled router out of the mesh, if anything: a router that runs the wifi
    /// mesh (its agent reports links) needs a mesh path to the portal, or with no portal known
    /// any usable link. One that reports no wifi mesh is on a wired backhaul.
    pub fn waiting_for_mesh_link(&self, node: &NodeInfo) -> Option<&'static str> {
        let runs_wifi_mesh = self
            .telemetry(&node.name)
            .is_some_and(|t| t.mesh.as_ref().is_some_and(|m| m.runs_wifi_mesh()));
        if !runs_wifi_mesh || node.portal || node.hops.is_some() {
            return None;
        }
        let portal_known = self.store.portal_node().ok().flatten().is_some();
        let linked = self
            .topology()
            .iter()
            .any(|l| l.from == node.name && l.verdict.carries_traffic());
        if !portal_known && linked {
            return None;
        }
        Some("it follows this router; waiting for its wifi mesh link (if it is still on the setup cable, place it and unplug the cable)")
    }

    pub fn telemetry(&self, name: &NodeName) -> Option<Telemetry> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| l.telemetry.clone())
    }
}
