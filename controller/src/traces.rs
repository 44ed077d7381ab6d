//! The home's recent connection traces, for `trellis traces` and the page's trace view.
//!
//! Each router's proxy records a span per connection at each end (`trellis_proto::trace`)
//! and sends the newest ones since its last report with its telemetry (at most 32 every
//! 30 s). The controller keeps the last [`MAX_SPANS`] of the whole home, text fields
//! capped, in RAM only, and joins the spans of one trace (the source router's client span,
//! the destination's server span) into a [`TraceView`]: source proxy, tunnel, destination
//! proxy, last hop.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use trellis_proto::trace::{Span, SpanKind, SpanOutcome, TraceId};
use trellis_proto::NodeName;

/// Spans kept for the whole home (~0.5 KiB each: ≤ ~1 MiB).
pub const MAX_SPANS: usize = 2000;
/// Spans taken from one report.
pub const MAX_PER_REPORT: usize = 32;
/// Traces one answer shows at most.
pub const MAX_TRACES: usize = 200;

/// A span and the router that recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterSpan {
    pub node: NodeName,
    #[serde(flatten)]
    pub span: Span,
}

/// One connection across the mesh: its spans, the source's first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceView {
    pub trace_id: TraceId,
    pub start_unix_nanos: u64,
    pub service: String,
    /// Device name, else identity, of the source.
    pub source: String,
    /// Worst outcome of its spans (denied or failed anywhere is what the person sees).
    pub outcome: SpanOutcome,
    /// The rule that decided (a denial's rule when one denied).
    pub rule: String,
    pub spans: Vec<RouterSpan>,
}

#[derive(Debug, Default)]
pub struct TraceBook {
    spans: VecDeque<RouterSpan>,
}

fn cap(s: &mut String, n: usize) {
    if s.len() > n {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl TraceBook {
    /// Keep what a router reported, text capped (a router's report is outside input).
    pub fn report(&mut self, node: &NodeName, spans: Vec<Span>) {
        for mut span in spans.into_iter().take(MAX_PER_REPORT) {
            cap(&mut span.service, 63);
            cap(&mut span.source_identity, 128);
            cap(&mut span.rule, 128);
            cap(&mut span.peer_node, 128);
            if let Some(d) = &mut span.source_device {
                cap(d, 64);
            }
            if let Some(g) = &mut span.source_group {
                cap(g, 64);
            }
            if let Some(e) = &mut span.error {
                cap(e, 256);
            }
            if self.spans.len() >= MAX_SPANS {
                self.spans.pop_front();
            }
            self.spans.push_back(RouterSpan {
                node: node.clone(),
                span,
            });
        }
    }

    /// The newest traces first (at most `limit`), spans joined by trace id; a trace is
    /// shown when any of its spans matches the filter.
    pub fn traces(
        &self,
        device: Option<&str>,
        service: Option<&str>,
        limit: usize,
    ) -> Vec<TraceView> {
        let mut out: Vec<TraceView> = Vec::new();
        let mut ids: Vec<TraceId> = Vec::new();
        for rs in self.spans.iter().rev() {
            if !ids.contains(&rs.span.trace_id) {
                if !rs.span.matches(device, service) || ids.len() >= limit.min(MAX_TRACES) {
                    continue;
                }
                ids.push(rs.span.trace_id);
            }
        }
        for id in ids {
            let mut spans: Vec<RouterSpan> = self
                .spans
                .iter()
                .filter(|rs| rs.span.trace_id == id)
                .cloned()
                .collect();
            // Source (client) first, then by start time.
            spans.sort_by_key(|rs| (rs.span.kind != SpanKind::Client, rs.span.start_unix_nanos));
            let first = &spans[0].span;
            let worst = spans
                .iter()
                .map(|s| &s.span)
                .find(|s| s.outcome == SpanOutcome::Denied)
                .or_else(|| {
                    spans
                        .iter()
                        .map(|s| &s.span)
                        .find(|s| s.outcome == SpanOutcome::Failed)
                })
                .unwrap_or(first);
            out.push(TraceView {
                trace_id: id,
                start_unix_nanos: first.start_unix_nanos,
                service: first.service.clone(),
                source: first
                    .source_device
                    .clone()
                    .unwrap_or_else(|| first.source_identity.clone()),
                outcome: worst.outcome,
                rule: worst.rule.clone(),
                spans,
            });
        }
        out
    }
}

/// `trellis traces` as text: one block per trace, a line per hop.
pub fn render_text(traces: &[TraceView]) -> String {
    if traces.is_empty() {
        return "no traces yet (routers send their newest spans with their telemetry, every 30 s)\n"
            .into();
    }
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let mut out = String::new();
    for t in traces {
        out += &format!(
            "trace {}  {} -> {}  {}  rule {}\n",
            t.trace_id,
            t.source,
            t.service,
            t.outcome.as_str().to_uppercase(),
            t.rule
        );
        let t0 = t.start_unix_nanos;
        for rs in &t.spans {
            let s = &rs.span;
            let at = ms(s.start_unix_nanos.saturating_sub(t0) / 1000);
            let (what, hop) = match s.kind {
                SpanKind::Client if s.peer_node.is_empty() => ("source proxy, last hop local", ""),
                SpanKind::Client => ("source proxy, tunnel to", s.peer_node.as_str()),
                SpanKind::Server => ("destination proxy", ""),
            };
            out += &format!(
                "  +{at:<9} {:<12} {what} {hop}  took {}  connect {}  bytes {}/{}{}{}\n",
                rs.node.as_str(),
                ms(s.duration_us()),
                s.connect_latency_us.map_or_else(|| "-".into(), ms),
                s.bytes_sent,
                s.bytes_received,
                s.last_hop
                    .map(|h| format!("  last hop {h}"))
                    .unwrap_or_default(),
                s.error
                    .as_ref()
                    .map(|e| format!("  error: {e}"))
                    .unwrap_or_default(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::trace::SpanId;

    fn span(trace: u8, kind: SpanKind, device: &str, service: &str, outcome: SpanOutcome) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([trace ^ kind as u8 ^ 0x55; 8]),
            parent_span_id: None,
            kind,
            start_unix_nanos: 1_000_000 * u64::from(trace)
                + if kind == SpanKind::Server { 500_000 } else { 0 },
            end_unix_nanos: 1_000_000 * u64::from(trace) + 900_000,
            service: service.into(),
            port: 80,
            client_ip: None,
            source_device: Some(device.into()),
            source_group: Some("g".into()),
            source_identity: "device:g".into(),
            rule: if outcome == SpanOutcome::Denied {
                "no-guests".into()
            } else {
                "default".into()
            },
            peer_node: "rb".into(),
            last_hop: None,
            connect_latency_us: Some(1200),
            bytes_sent: 10,
            bytes_received: 20,
            outcome,
            error: None,
        }
    }

    #[test]
    fn joins_both_routers_spans_and_filters_and_stays_bounded() {
        let mut b = TraceBook::default();
        let (ra, rb) = (NodeName::new("ra").unwrap(), NodeName::new("rb").unwrap());
        b.report(
            &rb,
            vec![span(1, SpanKind::Server, "laptop", "nas", SpanOutcome::Ok)],
        );
        b.report(
            &ra,
            vec![span(1, SpanKind::Client, "laptop", "nas", SpanOutcome::Ok)],
        );
        b.report(
            &ra,
            vec![span(
                2,
                SpanKind::Client,
                "guest",
                "nas",
                SpanOutcome::Denied,
            )],
        );
        b.report(
            &rb,
            vec![span(
                2,
                SpanKind::Server,
                "guest",
                "nas",
                SpanOutcome::Denied,
            )],
        );
        let all = b.traces(None, None, 10);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].outcome, SpanOutcome::Denied, "newest first");
        assert_eq!(all[0].rule, "no-guests");
        let laptop = b.traces(Some("laptop"), Some("nas"), 10);
        assert_eq!(laptop.len(), 1);
        let nodes: Vec<_> = laptop[0].spans.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(nodes, ["ra", "rb"], "source proxy first");
        assert!(b.traces(Some("laptop"), Some("printer"), 10).is_empty());
        let text = render_text(&laptop);
        assert!(text.contains("laptop -> nas  OK"), "{text}");
        assert!(
            text.contains("+0.5 ms") && text.contains("destination proxy"),
            "{text}"
        );

        let mut big = span(3, SpanKind::Client, "x", "nas", SpanOutcome::Failed);
        big.error = Some("é".repeat(1000));
        for _ in 0..(MAX_SPANS / MAX_PER_REPORT + 2) {
            b.report(&ra, vec![big.clone(); MAX_PER_REPORT + 5]);
        }
        assert_eq!(b.spans.len(), MAX_SPANS);
        assert!(b.spans.back().unwrap().span.error.as_ref().unwrap().len() <= 256);
    }
}
