//! Prometheus text metrics and the per-connection access log of the node proxy.
//!
//! Names follow `istio_tcp_*` / linkerd `tcp_open_total` in spirit, under a `trellis_` prefix:
//! - `trellis_tcp_connections_opened_total`, `trellis_tcp_connections_closed_total`,
//!   `trellis_tcp_sent_bytes_total` (client → service), `trellis_tcp_received_bytes_total`
//!   (service → client), labelled `direction` (outbound|inbound), `source_identity`,
//!   `destination_identity`, `destination_service`;
//! - `trellis_tcp_connect_latency_seconds` (histogram): time to reach the service (tunnel + last
//!   hop), measured at the source node;
//! - `trellis_policy_denials_total{rule, destination_service, enforced_at}` and
//!   `trellis_policy_dry_run_denials_total{rule}`;
//! - `trellis_proxy_overflow_total{direction}`: connections refused at the cap (in all, or
//!   for one source address), from the proxy listeners' [`trellis_io::Gate`]s, whose own
//!   `trellis_listener_*` series are on the page too;
//! - `trellis_cert_expiry_seconds{identity}`: seconds until this node's certificate expires.
//!
//! For the controller's dependency map, the outbound side also keeps per (source identity,
//! destination service) edge counters ([`Metrics::edge_traffic`], reported with telemetry):
//! connections, bytes, denials and connect-latency buckets, capped at
//! [`trellis_proto::api::MAX_REPORTED_EDGES`] edges (the rest under source `other`).
//!
//! Label sets are capped at [`MAX_SERIES`]; beyond that new combinations are folded into
//! `source_identity="other"`, so a scan of many devices cannot grow memory without bound.
//!
//! Entry point for the lead: keep one `Arc<Metrics>`, give it to `proxy::Proxy::start`, serve
//! [`Metrics::render`] at `/metrics`, and call [`Metrics::set_cert_expiry`] on each renewal.
//! [`Metrics::subscribe_access_log`] streams [`AccessRecord`]s (the admin page, tests).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

/// Most label combinations kept per metric family.
pub const MAX_SERIES: usize = 512;

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnLabels {
    pub direction: &'static str,
    pub source_identity: String,
    pub destination_identity: String,
    pub destination_service: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct ConnCounters {
    opened: u64,
    closed: u64,
    sent: u64,
    received: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    conns: BTreeMap<ConnLabels, ConnCounters>,
    denials: BTreeMap<(String, String, &'static str), u64>,
    dry_run: BTreeMap<String, u64>,
    latency: Histogram,
    /// Tunnel streams refused at the inbound stream cap, by direction.
    overflow: BTreeMap<&'static str, u64>,
    /// The proxy's listeners (outbound, inbound): their refusals are overflow too.
    listeners: Vec<Arc<trellis_io::Gate>>,
    cert_not_after: BTreeMap<String, u64>,
    /// (source identity, destination service) → the edge's counters, outbound only.
    edges: BTreeMap<(String, String), EdgeCounters>,
}

#[derive(Debug, Default, Clone)]
struct EdgeCounters {
    connections: u64,
    sent: u64,
    received: u64,
    denials: u64,
    /// Per bucket of [`trellis_proto::api::EDGE_LATENCY_BOUNDS_MS`], then +Inf.
    latency: [u64; EDGE_BUCKETS],
    timed: bool,
}

const EDGE_BUCKETS: usize = trellis_proto::api::EDGE_LATENCY_BOUNDS_MS.len() + 1;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Error(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Denied => f.write_str("denied"),
            Outcome::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// One access-log line: a connection from open to close.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub direction: &'static str,
    pub src_addr: Option<std::net::SocketAddr>,
    pub src_identity: String,
    pub service: String,
    pub port: u16,
    pub dst_identity: String,
    /// The node on the other end of the tunnel (outbound: where it went; inbound: who sent it).
    pub peer_node: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration: Duration,
    pub outcome: Outcome,
    pub rule: String,
}

impl fmt::Display for AccessRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // logfmt: one line, greppable, values quoted where they can hold spaces.
        write!(
            f,
            "direction={} src={} src.identity={} dst.service={}:{} dst.identity={} peer={} bytes_sent={} bytes_received={} duration_ms={} result={:?} rule={:?}",
            self.direction,
            self.src_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            self.src_identity,
            self.service,
            self.port,
            self.dst_identity,
            if self.peer_node.is_empty() { "-" } else { &self.peer_node },
            self.bytes_sent,
            self.bytes_received,
            self.duration.as_millis(),
            self.outcome.to_string(),
            self.rule
        )
    }
}

/// The proxy's counters; cheap to update from many connections.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    access: broadcast::Sender<AccessRecord>,
    /// The proxy's connection traces (ring, sampler, OTLP export): `crate::trace`.
    pub traces: Arc<crate::trace::Tracer>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // A slow subscriber loses old lines (lagged) rather than holding memory.
        let (access, _) = broadcast::channel(256);
        Self {
            inner: Mutex::new(Inner::default()),
            access,
            traces: Arc::new(crate::trace::Tracer::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave counters half-updated in a harmful way.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conn_entry(inner: &mut Inner, mut labels: ConnLabels) -> &mut ConnCounters {
        if !inner.conns.contains_key(&labels) && inner.conns.len() >= MAX_SERIES {
            labels.source_identity = "other".into();
        }
        inner.conns.entry(labels).or_default()
    }

    /// The edge of an outbound connection from `source` to `service` (capped).
    fn edge_entry<'a>(inner: &'a mut Inner, source: &str, service: &str) -> &'a mut EdgeCounters {
        let mut key = (source.to_owned(), service.to_owned());
        if !inner.edges.contains_key(&key)
            && inner.edges.len() >= trellis_proto::api::MAX_REPORTED_EDGES
        {
            key.0 = "other".into();
        }
        inner.edges.entry(key).or_default()
    }

    pub fn opened(&self, labels: ConnLabels) {
        let mut g = self.lock();
        if labels.direction == "outbound" {
            Self::edge_entry(&mut g, &labels.source_identity, &labels.destination_service)
                .connections += 1;
        }
        Self::conn_entry(&mut g, labels).opened += 1;
    }

    /// A connection ended (its bytes were counted with [`Metrics::add_bytes`] as they went).
    pub fn closed(&self, labels: ConnLabels) {
        Self::conn_entry(&mut self.lock(), labels).closed += 1;
    }

    /// Bytes a connection moved since it last reported, counted while it runs so a long
    /// stream shows in the charts before it ends.
    pub fn add_bytes(&self, labels: &ConnLabels, sent: u64, received: u64) {
        if sent == 0 && received == 0 {
            return;
        }
        let mut g = self.lock();
        if labels.direction == "outbound" {
            let e = Self::edge_entry(&mut g, &labels.source_identity, &labels.destination_service);
            e.sent += sent;
            e.received += received;
        }
        let c = Self::conn_entry(&mut g, labels.clone());
        c.sent += sent;
        c.received += received;
    }

    pub fn denied(&self, rule: &str, service: &str, enforced_at: &'static str) {
        let mut g = self.lock();
        let key = (rule.to_owned(), service.to_owned(), enforced_at);
        if g.denials.contains_key(&key) || g.denials.len() < MAX_SERIES {
            *g.denials.entry(key).or_default() += 1;
        }
    }

    pub fn dry_run_denied(&self, rule: &str) {
        let mut g = self.lock();
        if g.dry_run.contains_key(rule) || g.dry_run.len() < MAX_SERIES {
            *g.dry_run.entry(rule.to_owned()).or_default() += 1;
        }
    }

    /// A stream refused at a cap inside a connection (the inbound tunnel's stream cap).
    pub fn overflow(&self, direction: &'static str) {
        *self.lock().overflow.entry(direction).or_default() += 1;
    }

    /// Count this listener's refusals as the proxy's overflow, by its name (the direction).
    pub fn add_listener(&self, gate: Arc<trellis_io::Gate>) {
        self.lock().listeners.push(gate);
    }

    /// The proxy's listeners, for the `trellis_listener_*` series.
    pub fn listeners(&self) -> Vec<Arc<trellis_io::Gate>> {
        self.lock().listeners.clone()
    }

    pub fn connect_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        let mut g = self.lock();
        let h = &mut g.latency;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *b {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    /// The time an outbound connection of `labels` took to reach its service, for its edge
    /// of the dependency map as well as the node-wide histogram.
    pub fn connect_latency_of(&self, labels: &ConnLabels, d: Duration) {
        self.connect_latency(d);
        if labels.direction != "outbound" {
            return;
        }
        let ms = d.as_secs_f64() * 1000.0;
        let i = trellis_proto::api::EDGE_LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= f64::from(*b))
            .unwrap_or(EDGE_BUCKETS - 1);
        let mut g = self.lock();
        let e = Self::edge_entry(&mut g, &labels.source_identity, &labels.destination_service);
        e.latency[i] += 1;
        e.timed = true;
    }

    /// Per (source, service) edge, what this node's clients opened, moved and were refused
    /// (cumulative since the agent started; bounded by
    /// [`trellis_proto::api::MAX_REPORTED_EDGES`] plus the `other` edges).
    pub fn edge_traffic(&self) -> Vec<trellis_proto::api::EdgeTraffic> {
        self.lock()
            .edges
            .iter()
            .map(|((source, service), e)| trellis_proto::api::EdgeTraffic {
                source: source.clone(),
                service: service.clone(),
                connections: e.connections,
                bytes_sent: e.sent,
                bytes_received: e.received,
                denials: e.denials,
                connect_latency: if e.timed {
                    e.latency.to_vec()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// Record when a certificate of this node expires (unix seconds).
    pub fn set_cert_expiry(&self, identity: &str, not_after: u64) {
        self.lock()
            .cert_not_after
            .insert(identity.to_owned(), not_after);
    }

    /// Log one access record (tracing target `trellis::access`) and hand it to subscribers.
    pub fn access(&self, rec: AccessRecord) {
        tracing::info!(target: "trellis::access", "{rec}");
        // Each refused connection ends in one outbound access record at its source node,
        // whether this node's policy or the destination's refused it.
        if rec.direction == "outbound" && rec.outcome == Outcome::Denied {
            Self::edge_entry(&mut self.lock(), &rec.src_identity, &rec.service).denials += 1;
        }
        let _ = self.access.send(rec);
    }

    pub fn subscribe_access_log(&self) -> broadcast::Receiver<AccessRecord> {
        self.access.subscribe()
    }

    /// Per destination service, what this node's clients opened through the proxy (the
    /// outbound side counts each connection once, wherever the service sits). Bytes of a
    /// running connection are counted every few seconds. Bounded by [`MAX_SERIES`].
    pub fn service_traffic(&self) -> Vec<trellis_proto::api::ServiceTraffic> {
        let g = self.lock();
        let mut by_service: BTreeMap<&str, trellis_proto::api::ServiceTraffic> = BTreeMap::new();
        for (l, c) in g.conns.iter().filter(|(l, _)| l.direction == "outbound") {
            let t = by_service
                .entry(l.destination_service.as_str())
                .or_insert_with(|| trellis_proto::api::ServiceTraffic {
                    service: l.destination_service.clone(),
                    ..Default::default()
                });
            t.connections += c.opened;
            t.bytes_sent += c.sent;
            t.bytes_received += c.received;
        }
        by_service.into_values().collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let g = self.lock();
        let mut out = String::with_capacity(4096);
        let conn = |out: &mut String, name: &str, help: &str, pick: fn(&ConnCounters) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (l, c) in &g.conns {
                let _ = writeln!(
                    out,
                    "{name}{{direction=\"{}\",source_identity=\"{}\",destination_identity=\"{}\",destination_service=\"{}\"}} {}",
                    l.direction,
                    esc(&l.source_identity),
                    esc(&l.destination_identity),
                    esc(&l.destination_service),
                    pick(c)
                );
            }
        };
        conn(
            &mut out,
            "trellis_tcp_connections_opened_total",
            "TCP connections opened through the proxy.",
            |c| c.opened,
        );
        conn(
            &mut out,
            "trellis_tcp_connections_closed_total",
            "TCP connections closed.",
            |c| c.closed,
        );
        conn(
            &mut out,
            "trellis_tcp_sent_bytes_total",
            "Bytes from client to service.",
            |c| c.sent,
        );
        conn(
            &mut out,
            "trellis_tcp_received_bytes_total",
            "Bytes from service to client.",
            |c| c.received,
        );

        let _ = writeln!(out, "# HELP trellis_tcp_connect_latency_seconds Time to reach the service (tunnel and last hop).\n# TYPE trellis_tcp_connect_latency_seconds histogram");
        for (b, n) in LATENCY_BUCKETS.iter().zip(g.latency.buckets) {
            let _ = writeln!(
                out,
                "trellis_tcp_connect_latency_seconds_bucket{{le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "trellis_tcp_connect_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            g.latency.count
        );
        let _ = writeln!(
            out,
            "trellis_tcp_connect_latency_seconds_sum {}",
            g.latency.sum
        );
        let _ = writeln!(
            out,
            "trellis_tcp_connect_latency_seconds_count {}",
            g.latency.count
        );

        let _ = writeln!(out, "# HELP trellis_policy_denials_total Connections refused by policy.\n# TYPE trellis_policy_denials_total counter");
        for ((rule, svc, at), n) in &g.denials {
            let _ = writeln!(
                out,
                "trellis_policy_denials_total{{rule=\"{}\",destination_service=\"{}\",enforced_at=\"{at}\"}} {n}",
                esc(rule),
                esc(svc)
            );
        }
        let _ = writeln!(out, "# HELP trellis_policy_dry_run_denials_total Connections a dry-run rule would have refused.\n# TYPE trellis_policy_dry_run_denials_total counter");
        for (rule, n) in &g.dry_run {
            let _ = writeln!(
                out,
                "trellis_policy_dry_run_denials_total{{rule=\"{}\"}} {n}",
                esc(rule)
            );
        }
        let _ = writeln!(out, "# HELP trellis_proxy_overflow_total Connections refused because the proxy was at its connection cap.\n# TYPE trellis_proxy_overflow_total counter");
        let mut overflow = g.overflow.clone();
        for gate in &g.listeners {
            *overflow.entry(gate.name()).or_default() += gate
                .refused(trellis_io::Refusal::TotalCap)
                + gate.refused(trellis_io::Refusal::PerSourceCap);
        }
        for (dir, n) in &overflow {
            let _ = writeln!(
                out,
                "trellis_proxy_overflow_total{{direction=\"{dir}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP trellis_cert_expiry_seconds Seconds until this node's certificate expires.\n# TYPE trellis_cert_expiry_seconds gauge");
        for (id, not_after) in &g.cert_not_after {
            let _ = writeln!(
                out,
                "trellis_cert_expiry_seconds{{identity=\"{}\"}} {}",
                esc(id),
                *not_after as i64 - now
            );
        }
        drop(g);
        self.traces.render(&mut out);
        out
    }
}

/// Escape a label value (backslash, quote, newline) per the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
