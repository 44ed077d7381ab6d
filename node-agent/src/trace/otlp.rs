//! A protobuf encoder for the OTLP trace messages Trellis sends, by hand (no protobuf
//! runtime on a router's flash): `ExportTraceServiceRequest` → `ResourceSpans` →
//! `ScopeSpans` → `Span` with `KeyValue` attributes and a `Status`. Field numbers are those
//! of opentelemetry-proto's `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`; the namespace test decodes the output with the official
//! generated classes.

use std::sync::Arc;

use trellis_proto::trace::{Span, SpanKind, SpanOutcome};

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, WIRE_LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, WIRE_FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    tag(out, field, WIRE_FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

fn uvarint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, WIRE_VARINT);
    varint(out, v);
}

/// A length-delimited sub-message written by `f`.
fn message(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes_field(out, field, &inner);
}

/// An attribute value (`AnyValue`).
enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

/// `KeyValue` (field 9 of Span, 1 of Resource).
fn attr(out: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    message(out, field, |kv| {
        bytes_field(kv, 1, key.as_bytes());
        message(kv, 2, |v| match value {
            Value::Str(s) => bytes_field(v, 1, s.as_bytes()),
            // int64 is a two's-complement varint.
            Value::Int(i) => uvarint_field(v, 3, i as u64),
        });
    });
}

/// One span's attributes: OpenTelemetry semantic conventions where they exist, `trellis.*`
/// for the rest.
fn span(out: &mut Vec<u8>, s: &Span) {
    bytes_field(out, 1, &s.trace_id.0);
    bytes_field(out, 2, &s.span_id.0);
    if let Some(p) = s.parent_span_id {
        bytes_field(out, 4, &p.0);
    }
    bytes_field(out, 5, s.name().as_bytes());
    // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3.
    uvarint_field(
        out,
        6,
        match s.kind {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        },
    );
    fixed64(out, 7, s.start_unix_nanos);
    fixed64(out, 8, s.end_unix_nanos);
    let a = |out: &mut Vec<u8>, k: &str, v: Value<'_>| attr(out, 9, k, v);
    a(out, "network.transport", Value::Str("tcp"));
    a(out, "server.address", Value::Str(&s.service));
    a(out, "server.port", Value::Int(i64::from(s.port)));
    if let Some(ip) = s.client_ip {
        a(out, "client.address", Value::Str(&ip.to_string()));
    }
    if let Some(hop) = s.last_hop {
        a(
            out,
            "network.peer.address",
            Value::Str(&hop.ip().to_string()),
        );
        a(out, "network.peer.port", Value::Int(i64::from(hop.port())));
    }
    a(out, "trellis.service", Value::Str(&s.service));
    if let Some(d) = &s.source_device {
        a(out, "trellis.source.device", Value::Str(d));
    }
    if let Some(g) = &s.source_group {
        a(out, "trellis.source.group", Value::Str(g));
    }
    a(
        out,
        "trellis.source.identity",
        Value::Str(&s.source_identity),
    );
    a(out, "trellis.policy.rule", Value::Str(&s.rule));
    if !s.peer_node.is_empty() {
        a(out, "trellis.peer.node", Value::Str(&s.peer_node));
    }
    if let Some(us) = s.connect_latency_us {
        a(out, "trellis.connect_latency_us", Value::Int(us as i64));
    }
    a(out, "trellis.bytes_sent", Value::Int(s.bytes_sent as i64));
    a(
        out,
        "trellis.bytes_received",
        Value::Int(s.bytes_received as i64),
    );
    a(out, "trellis.outcome", Value::Str(s.outcome.as_str()));
    // Span.flags (16): bit 8 = "has remote-parent knowledge", bit 9 = "parent is remote".
    let remote = if s.parent_span_id.is_some() {
        0x300
    } else {
        0x100
    };
    fixed32(out, 16, 1 | remote);
    message(out, 15, |st| {
        match (s.outcome, &s.error) {
            (SpanOutcome::Ok, _) => uvarint_field(st, 3, 0), // STATUS_CODE_UNSET
            (SpanOutcome::Denied, _) => {
                bytes_field(st, 2, format!("denied by rule {}", s.rule).as_bytes());
                uvarint_field(st, 3, 2); // STATUS_CODE_ERROR
            }
            (SpanOutcome::Failed, e) => {
                bytes_field(st, 2, e.as_deref().unwrap_or("failed").as_bytes());
                uvarint_field(st, 3, 2);
            }
        }
    });
}

/// `ExportTraceServiceRequest` for `spans` from the router `node`.
pub fn encode_request(node: &str, spans: &[Arc<Span>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 512);
    message(&mut out, 1, |rs| {
        message(rs, 1, |res| {
            attr(res, 1, "service.name", Value::Str("trellis-agent"));
            attr(res, 1, "service.instance.id", Value::Str(node));
            attr(res, 1, "host.name", Value::Str(node));
            attr(
                res,
                1,
                "service.version",
                Value::Str(env!("CARGO_PKG_VERSION")),
            );
        });
        message(rs, 2, |ss| {
            message(ss, 1, |scope| {
                bytes_field(scope, 1, b"trellis.proxy");
                bytes_field(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for s in spans {
                message(ss, 2, |out| span(out, s));
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_match_protobuf() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        uvarint_field(&mut v, 6, 3);
        assert_eq!(v, [0x30, 0x03]);
        let mut v = Vec::new();
        attr(&mut v, 9, "k", Value::Int(-1));
        // KeyValue{key:"k", value:{int_value:-1}}: ten-byte varint for -1.
        assert_eq!(v[..5], [0x4a, 16, 0x0a, 1, b'k']);
        assert_eq!(v.len(), 18);
    }

    #[test]
    fn a_request_carries_ids_and_attributes() {
        let s = Arc::new(crate::trace::ring::tests::span("nas", "laptop"));
        let out = encode_request("router-a", &[s]);
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(has(&[1; 16]), "trace id");
        assert!(has(b"trellis.policy.rule"));
        assert!(has(b"allow-family"));
        assert!(has(b"router-a"));
        assert_eq!(out[0], 0x0a, "field 1, length-delimited");
    }
}
