//! The service dependency map: who talks to whom in the home, over a chosen window of the
//! last hour, from the agents' edge counters (`trellis graph`, the page's map of services).
//!
//! Each agent reports, per (source, service), its proxy's cumulative counters with its
//! telemetry ([`EdgeTraffic`]): connections allowed, bytes each way, denials, and a
//! connect-latency histogram. The controller keeps each router's last figures, adds the
//! differences ([`crate::traffic::counter_delta`], the one rule for cumulative counters) to
//! the edge's one-minute bucket, and keeps [`MINUTES`] buckets per edge. [`EdgeBook::map`]
//! sums a window into a [`DependencyMap`]: the sources (devices named as the device book names
//! them, workloads), the services, and per edge its connections, rate, bytes, connect-latency
//! p50/p99 and denials. RAM only, bounded by [`MAX_EDGES`] edges and [`MAX_BASELINES`]
//! (router, edge) baselines.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use trellis_proto::api::{EdgeTraffic, EDGE_LATENCY_BOUNDS_MS};
use trellis_proto::policy::{Device, MacAddr};
use trellis_proto::NodeName;

use crate::traffic::{counter_delta, MinuteSeries};

/// One-minute buckets kept per edge: the last hour.
pub const MINUTES: usize = 60;
/// Edges (source, service) the map keeps; a new one past this is not drawn.
pub const MAX_EDGES: usize = 512;
/// (router, source, service) baselines kept.
pub const MAX_BASELINES: usize = 2048;
/// The window a query sums when it names none (minutes).
pub const DEFAULT_WINDOW_MIN: u32 = 15;
/// The longest source name kept (a SPIFFE ID is the longest a proxy of ours sends).
const MAX_SOURCE_LEN: usize = 128;
/// Latency buckets: the bounds, then +Inf.
const LATENCY_BUCKETS: usize = EDGE_LATENCY_BOUNDS_MS.len() + 1;
/// Counter layout of one edge: connections, sent, received, denials, then the buckets.
const COUNTERS: usize = 4 + LATENCY_BUCKETS;

type EdgeKey = (String, String);

#[derive(Debug, Default)]
pub struct EdgeBook {
    /// Routers heard from since the controller started (their first report is a baseline).
    known: HashSet<NodeName>,
    last: HashMap<(NodeName, EdgeKey), [u64; COUNTERS]>,
    edges: BTreeMap<EdgeKey, MinuteSeries<COUNTERS>>,
}

fn counters(e: &EdgeTraffic) -> [u64; COUNTERS] {
    let mut c = [0; COUNTERS];
    c[0] = e.connections;
    c[1] = e.bytes_sent;
    c[2] = e.bytes_received;
    c[3] = e.denials;
    for (slot, n) in c[4..].iter_mut().zip(&e.connect_latency) {
        *slot = *n;
    }
    c
}

/// Text from an agent that can be an edge's source and service, or `None`.
fn edge_key(e: &EdgeTraffic) -> Option<EdgeKey> {
    let service_ok = !e.service.is_empty() && e.service.len() <= 63;
    let source_ok = !e.source.is_empty()
        && e.source.len() <= MAX_SOURCE_LEN
        && !e.source.chars().any(char::is_control);
    (service_ok && source_ok).then(|| (e.source.clone(), e.service.clone()))
}

impl EdgeBook {
    /// Takes one router's report, made at unix second `now`.
    pub fn report(&mut self, node: &NodeName, reported: &[EdgeTraffic], now: u64) {
        let minute = now / 60;
        let baseline = self.known.len() < MAX_BASELINES && self.known.insert(node.clone());
        for e in reported {
            let Some(key) = edge_key(e) else { continue };
            let at = (node.clone(), key.clone());
            if !self.last.contains_key(&at) && self.last.len() >= MAX_BASELINES {
                continue;
            }
            if !self.edges.contains_key(&key) && self.edges.len() >= MAX_EDGES {
                continue;
            }
            let now_counts = counters(e);
            let delta = counter_delta(self.last.get(&at).map(|p| &p[..]), &now_counts, baseline);
            self.last.insert(at, now_counts);
            self.edges.entry(key).or_default().add(minute, &delta);
        }
    }

    /// A removed router's baselines go (what it carried stays on the map until it ages out).
    pub fn forget_node(&mut self, node: &NodeName) {
        self.last.retain(|(n, _), _| n != node);
        self.known.remove(node);
    }

    /// The map over the last `window_min` minutes (1 to [`MINUTES`]) at unix second `now`,
    /// its sources named from the device book `devices`.
    pub fn map(&self, now: u64, window_min: u32, devices: &[Device]) -> DependencyMap {
        let window = window_min.clamp(1, MINUTES as u32);
        let this_minute = now / 60;
        let first = this_minute + 1 - u64::from(window);
        let mut edges = Vec::new();
        for ((source, service), series) in &self.edges {
            let sum = series.sum(first, this_minute);
            if sum.iter().all(|&c| c == 0) {
                continue;
            }
            let latency = &sum[4..];
            edges.push(Edge {
                source: source.clone(),
                service: service.clone(),
                connections: sum[0],
                connections_per_min: sum[0] as f64 / f64::from(window),
                bytes_sent: sum[1],
                bytes_received: sum[2],
                denials: sum[3],
                connect_p50_ms: quantile_ms(latency, 0.50),
                connect_p99_ms: quantile_ms(latency, 0.99),
            });
        }
        // Busiest first: what a person looks for.
        edges.sort_by(|a, b| {
            (b.connections + b.denials)
                .cmp(&(a.connections + a.denials))
                .then_with(|| (&a.source, &a.service).cmp(&(&b.source, &b.service)))
        });
        let sources: BTreeSet<&str> = edges.iter().map(|e| e.source.as_str()).collect();
        let services: BTreeSet<&str> = edges.iter().map(|e| e.service.as_str()).collect();
        DependencyMap {
            window_min: window,
            sources: sources
                .into_iter()
                .map(|s| SourceNode::named(s, devices))
                .collect(),
            services: services.into_iter().map(str::to_owned).collect(),
            edges,
        }
    }
}

/// The upper bound (ms) of the latency bucket that holds quantile `q` of `hist`
/// ([`EDGE_LATENCY_BOUNDS_MS`], then +Inf); `None` without any timed connection. A quantile
/// in the last (+Inf) bucket is reported as the last bound: "that long or more".
fn quantile_ms(hist: &[u64], q: f64) -> Option<u32> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return EDGE_LATENCY_BOUNDS_MS
                .get(i)
                .or(EDGE_LATENCY_BOUNDS_MS.last())
                .copied();
        }
    }
    EDGE_LATENCY_BOUNDS_MS.last().copied()
}

/// `?window=MIN` of `GET /v1/admin/graph` and `/api/ui/graph`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphQuery {
    #[serde(default)]
    pub window: Option<u32>,
}

impl GraphQuery {
    /// The window asked for (default [`DEFAULT_WINDOW_MIN`]), or why it cannot be.
    pub fn window(&self) -> crate::error::Result<u32> {
        match self.window {
            None => Ok(DEFAULT_WINDOW_MIN),
            Some(w) if (1..=MINUTES as u32).contains(&w) => Ok(w),
            Some(w) => Err(crate::error::HomeError::new(
                crate::error::Kind::BadRequest,
                format!("window={w}: the window is minutes of the last hour, 1 to {MINUTES}"),
            )),
        }
    }
}

/// `trellis graph --json`, `GET /v1/admin/graph`: who talks to whom over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyMap {
    pub window_min: u32,
    /// Everyone that connected or was refused, by the policy's name for them.
    pub sources: Vec<SourceNode>,
    pub services: Vec<String>,
    /// Busiest first.
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A device on a router's LAN or wifi, known by its MAC (or only its address).
    Device,
    /// A workload with its own mesh identity (SPIFFE ID).
    Workload,
    /// Every source past an agent's cap, counted together.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceNode {
    /// As the proxy's decision names it: `device:<mac>`, `device:<ip>`, a SPIFFE ID, `other`.
    pub id: String,
    /// What people call it: the device book's name, else the MAC or address.
    pub name: String,
    pub kind: SourceKind,
    /// The device book's group for it, if it is in the book.
    pub group: Option<String>,
}

impl SourceNode {
    fn named(id: &str, devices: &[Device]) -> Self {
        if let Some(rest) = id.strip_prefix("device:") {
            let known = rest
                .parse::<MacAddr>()
                .ok()
                .and_then(|mac| devices.iter().find(|d| d.mac == mac));
            return SourceNode {
                id: id.to_owned(),
                name: known.map_or_else(|| rest.to_owned(), |d| d.name.clone()),
                kind: SourceKind::Device,
                group: known.map(|d| d.group.clone()),
            };
        }
        let (kind, name) = if id.starts_with("spiffe://") {
            (SourceKind::Workload, id.to_owned())
        } else {
            (SourceKind::Other, "other sources".to_owned())
        };
        SourceNode {
            id: id.to_owned(),
            name,
            kind,
            group: None,
        }
    }
}

/// One source → service edge over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub source: String,
    pub service: String,
    /// Connections the policy allowed.
    pub connections: u64,
    pub connections_per_min: f64,
    /// Source → service.
    pub bytes_sent: u64,
    /// Service → source.
    pub bytes_received: u64,
    /// Connections refused by policy.
    pub denials: u64,
    /// Connect latency to the last hop: the bucket bound (ms) under which half / 99 % of
    /// the timed connections were; `None` when none was timed.
    pub connect_p50_ms: Option<u32>,
    pub connect_p99_ms: Option<u32>,
}

/// `trellis graph`: one line per edge, busiest first.
pub fn render_text(m: &DependencyMap) -> String {
    if m.edges.is_empty() {
        return format!(
            "no connections through the mesh in the last {} min (routers report with their telemetry, every 30 s)\n",
            m.window_min
        );
    }
    let name = |id: &str| {
        m.sources.iter().find(|s| s.id == id).map_or_else(
            || id.to_owned(),
            |s| match &s.group {
                Some(g) => format!("{} ({g})", s.name),
                None => s.name.clone(),
            },
        )
    };
    let mut out = format!(
        "{:<32} {:<20} {:>7} {:>8} {:>10} {:>10} {:>11} {:>7}\n",
        "FROM", "SERVICE", "CONN", "PER MIN", "SENT", "RECEIVED", "CONNECT", "DENIED"
    );
    for e in &m.edges {
        let latency = match (e.connect_p50_ms, e.connect_p99_ms) {
            (Some(p50), Some(p99)) => format!("≤{p50}/≤{p99}ms"),
            _ => "-".to_owned(),
        };
        out += &format!(
            "{:<32} {:<20} {:>7} {:>8.1} {:>10} {:>10} {:>11} {:>7}\n",
            name(&e.source),
            e.service,
            e.connections,
            e.connections_per_min,
            e.bytes_sent,
            e.bytes_received,
            latency,
            e.denials
        );
    }
    out + &format!(
        "(last {} min; CONNECT is the p50/p99 connect latency to the last hop; bytes count when a connection ends)\n",
        m.window_min
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeName {
        NodeName::new(n).expect("node name")
    }

    fn edge(source: &str, service: &str, connections: u64, denials: u64) -> EdgeTraffic {
        EdgeTraffic {
            source: source.into(),
            service: service.into(),
            connections,
            bytes_sent: connections * 100,
            bytes_received: connections * 1_000,
            denials,
            connect_latency: Vec::new(),
        }
    }

    const T0: u64 = 1_800_000_000 / 60 * 60;
    const LAPTOP: &str = "device:02:00:00:00:00:01";
    const PHONE: &str = "device:02:00:00:00:00:02";

    fn book() -> Vec<Device> {
        vec![Device {
            name: "laptop".into(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            ips: vec![],
            group: "trusted".into(),
        }]
    }

    #[test]
    fn differences_make_the_edges_and_the_book_names_the_sources() {
        let mut b = EdgeBook::default();
        // The first report is a baseline: what came before happened at an unknown time.
        b.report(&node("attic"), &[edge(LAPTOP, "nas", 40, 0)], T0);
        b.report(
            &node("attic"),
            &[edge(LAPTOP, "nas", 46, 0), edge(PHONE, "nas", 0, 2)],
            T0 + 30,
        );
        let m = b.map(T0 + 30, 15, &book());
        assert_eq!(m.window_min, 15);
        assert_eq!(m.edges.len(), 2);
        let laptop = &m.edges[0];
        assert_eq!(
            (laptop.source.as_str(), laptop.service.as_str()),
            (LAPTOP, "nas")
        );
        assert_eq!(laptop.connections, 6);
        assert_eq!((laptop.bytes_sent, laptop.bytes_received), (600, 6_000));
        assert!((laptop.connections_per_min - 0.4).abs() < 1e-9);
        let phone = &m.edges[1];
        assert_eq!(
            (phone.denials, phone.connections),
            (2, 0),
            "a new edge is all new"
        );
        assert_eq!(m.services, vec!["nas".to_owned()]);
        let names: Vec<(&str, Option<&str>)> = m
            .sources
            .iter()
            .map(|s| (s.name.as_str(), s.group.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![("laptop", Some("trusted")), ("02:00:00:00:00:02", None)]
        );
    }

    #[test]
    fn the_window_chooses_the_minutes_and_old_ones_age_out() {
        let mut b = EdgeBook::default();
        b.report(&node("attic"), &[], T0);
        b.report(&node("attic"), &[edge(LAPTOP, "nas", 5, 0)], T0);
        b.report(&node("attic"), &[edge(LAPTOP, "nas", 8, 0)], T0 + 10 * 60);
        assert_eq!(b.map(T0 + 10 * 60, 1, &[]).edges[0].connections, 3);
        assert_eq!(b.map(T0 + 10 * 60, 15, &[]).edges[0].connections, 8);
        // Past the hour nothing is left to draw; a window over 60 is the hour.
        assert!(b.map(T0 + 2 * 3600, 60, &[]).edges.is_empty());
        assert_eq!(b.map(T0 + 10 * 60, 600, &[]).window_min, 60);
        // A restarted agent counts from zero: its figures are all new.
        b.report(&node("attic"), &[edge(LAPTOP, "nas", 2, 0)], T0 + 11 * 60);
        assert_eq!(b.map(T0 + 11 * 60, 1, &[]).edges[0].connections, 2);
    }

    #[test]
    fn connect_latency_quantiles_come_from_the_histogram() {
        let mut hist = vec![0u64; LATENCY_BUCKETS];
        hist[2] = 90; // ≤ 5 ms
        hist[6] = 9; // ≤ 100 ms
        hist[LATENCY_BUCKETS - 1] = 1; // over 2.5 s
        assert_eq!(quantile_ms(&hist, 0.5), Some(5));
        assert_eq!(quantile_ms(&hist, 0.99), Some(100));
        assert_eq!(quantile_ms(&hist, 1.0), Some(2500));
        assert_eq!(quantile_ms(&[0; LATENCY_BUCKETS], 0.5), None);
        let mut b = EdgeBook::default();
        b.report(&node("attic"), &[], T0);
        let mut e = edge(LAPTOP, "nas", 100, 0);
        e.connect_latency = hist;
        b.report(&node("attic"), &[e], T0 + 1);
        let m = b.map(T0 + 1, 5, &[]);
        assert_eq!(
            (m.edges[0].connect_p50_ms, m.edges[0].connect_p99_ms),
            (Some(5), Some(100))
        );
    }

    #[test]
    fn the_map_is_bounded_and_refuses_what_no_proxy_sends() {
        let mut b = EdgeBook::default();
        b.report(&node("attic"), &[], T0);
        let many: Vec<EdgeTraffic> = (0..MAX_EDGES + 50)
            .map(|i| edge(&format!("device:10.0.{}.{}", i / 250, i % 250), "nas", 1, 0))
            .chain([
                edge(&"x".repeat(MAX_SOURCE_LEN + 1), "nas", 1, 0),
                edge(LAPTOP, &"s".repeat(64), 1, 0),
                edge("device:\u{7}bell", "nas", 1, 0),
            ])
            .collect();
        b.report(&node("attic"), &many, T0 + 1);
        let m = b.map(T0 + 1, 5, &[]);
        assert_eq!(m.edges.len(), MAX_EDGES);
        assert!(m
            .edges
            .iter()
            .all(|e| e.source.len() <= MAX_SOURCE_LEN && e.service == "nas"));
    }
}
