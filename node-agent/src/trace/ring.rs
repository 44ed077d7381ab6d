//! The last spans on this router, for people without a collector: bounded in count
//! ([`MAX_SPANS`]) and in bytes ([`MAX_BYTES`], strings counted), oldest dropped first.

use std::collections::VecDeque;
use std::sync::Arc;

use trellis_proto::trace::Span;

/// Spans kept (a few hundred connections, both ends).
pub const MAX_SPANS: usize = 512;
/// Bytes the kept spans may take, strings included.
pub const MAX_BYTES: usize = 256 << 10;

/// What `GET /traces?device=..&service=..` and `trellis traces` filter on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Device name, client address or source identity.
    pub device: Option<String>,
    pub service: Option<String>,
}

impl Filter {
    pub fn matches(&self, s: &Span) -> bool {
        s.matches(self.device.as_deref(), self.service.as_deref())
    }

    /// Read `device=` and `service=` from a URL query (percent-decoding is not needed for
    /// names the catalog allows; anything else simply matches nothing).
    pub fn from_query(query: Option<&str>) -> Self {
        let mut f = Filter::default();
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("device", v)) if !v.is_empty() => f.device = Some(v.to_owned()),
                Some(("service", v)) if !v.is_empty() => f.service = Some(v.to_owned()),
                _ => {}
            }
        }
        f
    }
}

/// What one span costs the ring.
pub fn approx_size(s: &Span) -> usize {
    std::mem::size_of::<Span>()
        + s.service.len()
        + s.source_device.as_ref().map_or(0, String::len)
        + s.source_group.as_ref().map_or(0, String::len)
        + s.source_identity.len()
        + s.rule.len()
        + s.peer_node.len()
        + s.error.as_ref().map_or(0, String::len)
}

#[derive(Debug)]
pub struct Ring {
    spans: VecDeque<(u64, Arc<Span>, usize)>,
    bytes: usize,
    next_seq: u64,
    max_spans: usize,
    max_bytes: usize,
}

impl Ring {
    pub fn new(max_spans: usize, max_bytes: usize) -> Self {
        Self {
            spans: VecDeque::with_capacity(max_spans.min(64)),
            bytes: 0,
            next_seq: 1,
            max_spans: max_spans.max(1),
            max_bytes,
        }
    }

    pub fn push(&mut self, span: Arc<Span>) {
        let size = approx_size(&span);
        while !self.spans.is_empty()
            && (self.spans.len() >= self.max_spans || self.bytes + size > self.max_bytes)
        {
            if let Some((_, _, s)) = self.spans.pop_front() {
                self.bytes -= s;
            }
        }
        self.bytes += size;
        self.spans.push_back((self.next_seq, span, size));
        self.next_seq += 1;
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn recent(&self, filter: &Filter, limit: usize) -> Vec<Span> {
        self.spans
            .iter()
            .rev()
            .filter(|(_, s, _)| filter.matches(s))
            .take(limit)
            .map(|(_, s, _)| Span::clone(s))
            .collect()
    }

    /// The newest `limit` spans recorded after sequence number `after` (oldest first) and
    /// the newest sequence number, to ask from next time: older unsent ones are skipped.
    pub fn since(&self, after: u64, limit: usize) -> (Vec<Span>, u64) {
        let newest = self
            .spans
            .back()
            .map_or(after, |(seq, _, _)| *seq)
            .max(after);
        let mut out: Vec<Span> = self
            .spans
            .iter()
            .rev()
            .take_while(|(seq, _, _)| *seq > after)
            .take(limit)
            .map(|(_, s, _)| Span::clone(s))
            .collect();
        out.reverse();
        (out, newest)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use trellis_proto::trace::{SpanId, SpanKind, SpanOutcome, TraceId};

    pub(crate) fn span(service: &str, device: &str) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: None,
            kind: SpanKind::Client,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            service: service.into(),
            port: 80,
            client_ip: Some("10.0.0.2".parse().unwrap()),
            source_device: Some(device.into()),
            source_group: Some("family".into()),
            source_identity: "device:family".into(),
            rule: "allow-family".into(),
            peer_node: String::new(),
            last_hop: None,
            connect_latency_us: Some(10),
            bytes_sent: 1,
            bytes_received: 2,
            outcome: SpanOutcome::Ok,
            error: None,
        }
    }

    #[test]
    fn keeps_the_newest_within_count_and_bytes() {
        let mut r = Ring::new(3, usize::MAX);
        for i in 0..5 {
            r.push(Arc::new(span(&format!("s{i}"), "laptop")));
        }
        let names: Vec<_> = r
            .recent(&Filter::default(), 10)
            .into_iter()
            .map(|s| s.service)
            .collect();
        assert_eq!(names, ["s4", "s3", "s2"]);

        let one = approx_size(&span("s0", "laptop"));
        let mut r = Ring::new(100, one * 2 + 1);
        for i in 0..5 {
            r.push(Arc::new(span(&format!("s{i}"), "laptop")));
        }
        assert_eq!(r.len(), 2);
        assert!(r.bytes() <= one * 2 + 1);
        // A huge error string cannot push the ring over its byte cap for long.
        let mut big = span("big", "laptop");
        big.error = Some("x".repeat(10_000));
        r.push(Arc::new(big));
        assert_eq!(r.len(), 1, "everything older made room");
    }

    #[test]
    fn filters_by_device_and_service_and_reads_since() {
        let mut r = Ring::new(10, usize::MAX);
        r.push(Arc::new(span("nas", "laptop")));
        r.push(Arc::new(span("printer", "laptop")));
        r.push(Arc::new(span("nas", "phone")));
        let f = Filter::from_query(Some("device=laptop&service=nas"));
        let got = r.recent(&f, 10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source_device.as_deref(), Some("laptop"));
        assert_eq!(
            r.recent(&Filter::from_query(Some("device=10.0.0.2")), 10)
                .len(),
            3
        );
        // The newest two, oldest first; the skipped one is not sent later.
        let (first, cursor) = r.since(0, 2);
        let names: Vec<_> = first.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["printer", "nas"]);
        assert_eq!(r.since(cursor, 10).0.len(), 0);
        r.push(Arc::new(span("tv", "phone")));
        let (rest, _) = r.since(cursor, 10);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].service, "tv");
    }
}
