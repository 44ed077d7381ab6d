//! Connection traces of the node proxy: who owns what.
//!
//! - [`Tracer`] (here): the one sink the proxy records spans into. It starts traces
//!   ([`Tracer::root`], outbound) and continues them ([`Tracer::child`], inbound, from the
//!   tunnel's `traceparent`), decides sampling, and hands each finished span to the ring and,
//!   when a collector is named, to the export queue. Recording never waits: a short lock on
//!   the ring and the queue, no I/O.
//! - [`ring`]: the last spans kept on the router without any collector (bounded in count and
//!   bytes), served as JSON at `GET /traces` on the agent's metrics listener.
//! - [`otlp`]: a hand-written protobuf encoder for the few OTLP trace messages.
//! - [`export`]: the OTLP/HTTP exporter task (batched, bounded queue, drop counter, status).
//!
//! Sampling: a trace's root (the source router) samples by trace id at a rate
//! ([`Tracer::set_sample_rate`], TraceIdRatioBased-style) and says so in the `traceparent`
//! flags; the destination follows the flag. Denied and failed connections are exported
//! whatever the rate. The ring keeps every span.
//!
//! The span vocabulary itself is `trellis_proto::trace` (shared with the controller).

pub mod export;
pub mod otlp;
pub mod ring;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portable_atomic::{AtomicU32, AtomicU64, Ordering};
pub use trellis_proto::trace::{Span, SpanId, SpanKind, SpanOutcome, TraceId, TraceParent};

/// Sample rate in parts per million (1 000 000 = every trace).
const PPM: u32 = 1_000_000;

/// The proxy's span sink; one per agent, shared by every connection.
#[derive(Debug)]
pub struct Tracer {
    ring: Mutex<ring::Ring>,
    sample_ppm: AtomicU32,
    recorded: AtomicU64,
    /// The ring's sequence number the last telemetry report went up to.
    reported: AtomicU64,
    pub export: export::Queue,
}

impl Default for Tracer {
    fn default() -> Self {
        Self::new()
    }
}

/// When a span started, in both clocks: wall time for the record, monotonic for durations.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub unix_nanos: u64,
    pub at: Instant,
}

impl Started {
    pub fn now() -> Self {
        Self {
            unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// Wall time of the end, from the monotonic elapsed time (immune to clock steps).
    pub fn end_unix_nanos(&self) -> u64 {
        self.unix_nanos
            .saturating_add(self.at.elapsed().as_nanos() as u64)
    }
}

/// A span in progress: its ids, its end of the tunnel, when it began.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub tp: TraceParent,
    pub parent: Option<SpanId>,
    pub kind: SpanKind,
    pub started: Started,
}

/// Spans one telemetry report carries at most (~0.5 KiB of JSON each, inside the
/// controller's 64 KiB body limit with everything else a report holds).
pub const REPORT_SPANS: usize = 32;

/// Spans `GET /traces` answers with at most (newest first).
pub const PAGE_SPANS: usize = 200;

/// `GET /traces[?device=D&service=S]` on the metrics listener: this router's recent spans
/// and the exporter's status, as JSON (`trellis_proto::trace::SpanList`).
pub fn traces_page(tracer: &Tracer, node: &str, query: Option<&str>) -> String {
    let status = tracer.export.status();
    let list = trellis_proto::trace::SpanList {
        node: node.to_owned(),
        spans: tracer.recent(&ring::Filter::from_query(query), PAGE_SPANS),
        collector: status.collector,
        export_error: status.last_error,
        export_dropped: tracer.export.dropped(),
    };
    serde_json::to_string(&list).unwrap_or_default()
}

/// Microseconds, for `connect_latency_us`.
pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

fn random_span_id() -> SpanId {
    loop {
        let id = SpanId(rand::random());
        if id.is_valid() {
            return id;
        }
    }
}

fn random_trace_id() -> TraceId {
    loop {
        let id = TraceId(rand::random());
        if id.is_valid() {
            return id;
        }
    }
}

impl Tracer {
    pub fn new() -> Self {
        Self {
            ring: Mutex::new(ring::Ring::new(ring::MAX_SPANS, ring::MAX_BYTES)),
            sample_ppm: AtomicU32::new(PPM),
            recorded: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            export: export::Queue::new(export::MAX_QUEUE),
        }
    }

    /// The share of traces (0.0–1.0) exported when all went well; denied and failed ones
    /// always are.
    pub fn set_sample_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * f64::from(PPM)).round() as u32;
        self.sample_ppm.store(ppm, Ordering::Relaxed);
    }

    pub fn sample_rate(&self) -> f64 {
        f64::from(self.sample_ppm.load(Ordering::Relaxed)) / f64::from(PPM)
    }

    fn sampled(&self, id: &TraceId) -> bool {
        let ppm = self.sample_ppm.load(Ordering::Relaxed);
        if ppm >= PPM {
            return true;
        }
        // The trace id's low 8 bytes are random (W3C level 2): compare them with the rate.
        let mut low = [0u8; 8];
        low.copy_from_slice(&id.0[8..]);
        let threshold = (u128::from(ppm) * u128::from(u64::MAX) / u128::from(PPM)) as u64;
        u64::from_be_bytes(low) < threshold
    }

    /// A new trace for a connection entering the mesh here (the outbound span's context).
    pub fn root(&self) -> TraceParent {
        let trace_id = random_trace_id();
        TraceParent {
            trace_id,
            span_id: random_span_id(),
            sampled: self.sampled(&trace_id),
        }
    }

    /// The inbound span's context: a child of the tunnel's `traceparent` when it parses,
    /// otherwise a new trace (a malformed header never fails the connection). Returns the
    /// context and the parent span id.
    pub fn child(&self, traceparent: Option<&[u8]>) -> (TraceParent, Option<SpanId>) {
        match traceparent.and_then(TraceParent::parse) {
            Some(p) => (
                TraceParent {
                    trace_id: p.trace_id,
                    span_id: random_span_id(),
                    sampled: p.sampled,
                },
                Some(p.span_id),
            ),
            None => (self.root(), None),
        }
    }

    /// Finish the span of a connection from its access record (what both ends already log)
    /// plus what only a trace carries: the deciding source, the last hop and its latency.
    pub fn finish(
        &self,
        cx: &Context,
        rec: &crate::metrics::AccessRecord,
        source: &trellis_proto::policy::Source,
        last_hop: Option<std::net::SocketAddr>,
        connect: Option<Duration>,
    ) {
        use crate::metrics::Outcome;
        use trellis_proto::policy::Source;
        let (device, group) = match source {
            Source::Device { name, group, .. } => (name.clone(), Some(group.clone())),
            Source::Workload(_) => (None, None),
        };
        let (outcome, error) = match &rec.outcome {
            Outcome::Ok => (SpanOutcome::Ok, None),
            Outcome::Denied => (SpanOutcome::Denied, None),
            Outcome::Error(e) => (SpanOutcome::Failed, Some(e.clone())),
        };
        let span = Span {
            trace_id: cx.tp.trace_id,
            span_id: cx.tp.span_id,
            parent_span_id: cx.parent,
            kind: cx.kind,
            start_unix_nanos: cx.started.unix_nanos,
            end_unix_nanos: cx.started.end_unix_nanos(),
            service: rec.service.clone(),
            port: rec.port,
            client_ip: rec.src_addr.map(|a| a.ip()),
            source_device: device,
            source_group: group,
            source_identity: rec.src_identity.clone(),
            rule: rec.rule.clone(),
            peer_node: rec.peer_node.clone(),
            last_hop,
            connect_latency_us: connect.map(micros),
            bytes_sent: rec.bytes_sent,
            bytes_received: rec.bytes_received,
            outcome,
            error,
        };
        self.record(span, cx.tp.sampled);
    }

    /// Keep a finished span: always in the ring; in the export queue when a collector is
    /// named and the trace is sampled or the connection was denied or failed. Never waits.
    pub fn record(&self, span: Span, sampled: bool) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        let export = self.export.enabled() && (sampled || span.outcome != SpanOutcome::Ok);
        let span = Arc::new(span);
        if export {
            self.export.push(span.clone());
        }
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(span);
    }

    /// The newest spans first, at most `limit`, matching `filter`.
    pub fn recent(&self, filter: &ring::Filter, limit: usize) -> Vec<Span> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recent(filter, limit)
    }

    /// Spans recorded after sequence number `after` (oldest first, at most `limit`) and the
    /// sequence number to ask from next time: what the telemetry report carries.
    pub fn since(&self, after: u64, limit: usize) -> (Vec<Span>, u64) {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since(after, limit)
    }

    /// The spans for the next telemetry report: the newest [`REPORT_SPANS`] recorded since
    /// the last report (best effort: a report that does not arrive loses its spans; the
    /// ring still has them).
    pub fn for_report(&self) -> Vec<Span> {
        let after = self.reported.load(Ordering::Relaxed);
        let (spans, newest) = self.since(after, REPORT_SPANS);
        self.reported.store(newest, Ordering::Relaxed);
        spans
    }

    /// Prometheus text for the tracing counters (appended to the agent's `/metrics`).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP trellis_trace_spans_recorded_total Spans the proxy recorded (every connection, both ends).\n# TYPE trellis_trace_spans_recorded_total counter\ntrellis_trace_spans_recorded_total {}", self.recorded.load(Ordering::Relaxed));
        self.export.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_makes_a_child_and_a_malformed_one_a_new_trace() {
        let t = Tracer::new();
        let root = t.root();
        let header = root.encode();
        let (child, parent) = t.child(Some(&header));
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(parent, Some(root.span_id));
        assert_ne!(child.span_id, root.span_id);
        for bad in [&b"garbage"[..], b"", &header[..54]] {
            let (fresh, parent) = t.child(Some(bad));
            assert_eq!(parent, None);
            assert_ne!(fresh.trace_id, root.trace_id);
            assert!(fresh.trace_id.is_valid() && fresh.span_id.is_valid());
        }
    }

    #[test]
    fn sampling_follows_the_rate_and_keeps_denials() {
        let t = Tracer::new();
        t.set_sample_rate(0.0);
        assert!((0..100).all(|_| !t.root().sampled));
        t.set_sample_rate(1.0);
        assert!((0..100).all(|_| t.root().sampled));
        t.set_sample_rate(0.5);
        let n = (0..4000).filter(|_| t.root().sampled).count();
        assert!((1600..2400).contains(&n), "{n} of 4000 at 0.5");

        // With export on and rate 0: an ok span is kept in the ring only, a denied one is
        // queued for the collector too.
        t.set_sample_rate(0.0);
        t.export.enabled.store(true, Ordering::Relaxed);
        let mut s = ring::tests::span("nas", "guest-phone");
        t.record(s.clone(), false);
        s.outcome = SpanOutcome::Denied;
        t.record(s, false);
        assert_eq!(t.recent(&ring::Filter::default(), 10).len(), 2);
        assert_eq!(t.export.take(10).len(), 1);
    }

    /// The memory tracing can hold at its caps, from the span sizes the proxy makes: the
    /// ring at its byte cap and a full export queue. A printed figure (goal ≤ 1 MB of RSS
    /// with tracing on); the bound itself is what the asserts check.
    #[test]
    fn memory_at_the_caps_is_bounded() {
        let t = Tracer::new();
        t.export.enabled.store(true, Ordering::Relaxed);
        let s = ring::tests::span("family-web", "laptop");
        let per_span = ring::approx_size(&s);
        for _ in 0..(export::MAX_QUEUE + ring::MAX_SPANS) {
            t.record(s.clone(), true);
        }
        let ring_bytes = t.ring.lock().unwrap().bytes();
        assert!(ring_bytes <= ring::MAX_BYTES);
        assert_eq!(t.export.take(usize::MAX).len(), export::MAX_QUEUE);
        // Queued spans are shared with the ring (Arc) where both hold them.
        let queue_bytes = export::MAX_QUEUE * (per_span + 16);
        let total = ring_bytes + queue_bytes;
        println!(
            "GOAL trace_memory_at_caps {:.2} MB 1.00 MB {} (span {per_span} B, ring {ring_bytes} B, queue {queue_bytes} B)",
            total as f64 / 1e6,
            if total <= 1_000_000 { "MET" } else { "MISSED" }
        );
    }
}
