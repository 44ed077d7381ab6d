//! The span vocabulary of Trellis's connection traces, shared by the agent (which records
//! spans at its proxy and exports them) and the controller (which shows them).
//!
//! A connection through the mesh is one trace: a [`SpanKind::Client`] span at the source
//! router's proxy and a [`SpanKind::Server`] span at the destination's, joined by the W3C
//! `traceparent` header the source puts on the tunnel's CONNECT request
//! ([`TraceParent`]). Ids are fixed-size arrays (no allocation), shown as lowercase hex.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A W3C trace id (16 bytes, never all zero).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// A W3C span id (8 bytes, never all zero).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Lowercase hex only, as W3C Trace Context requires.
fn unhex_into(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(s[2 * i])? << 4) | nib(s[2 * i + 1])?;
    }
    Some(())
}

macro_rules! hex_id {
    ($t:ident, $n:expr) => {
        impl $t {
            pub fn is_valid(&self) -> bool {
                self.0 != [0; $n]
            }

            pub fn parse_hex(s: &str) -> Option<Self> {
                let mut b = [0u8; $n];
                unhex_into(s.as_bytes(), &mut b)?;
                let id = Self(b);
                id.is_valid().then_some(id)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut out = [0u8; 2 * $n];
                hex_into(&self.0, &mut out);
                // Only ASCII hex digits were written.
                f.write_str(std::str::from_utf8(&out).unwrap_or_default())
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse_hex(&s).ok_or_else(|| {
                    serde::de::Error::custom(concat!(
                        "not a ",
                        stringify!($t),
                        " (",
                        stringify!($n),
                        " bytes of lowercase hex, not all zero)"
                    ))
                })
            }
        }
    };
}

hex_id!(TraceId, 16);
hex_id!(SpanId, 8);

/// The `traceparent` header's content (version 00): whose child a span is, and whether
/// the trace's root sampled it for export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// Parse a `traceparent` value as W3C Trace Context level 1 says: version `ff` and
    /// all-zero ids are invalid; a future version may carry more fields after a `-`, and
    /// its first four are read the same way. `None` for anything else: the caller starts a
    /// new trace.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let (v, rest) = value.split_at(2);
        let mut version = [0u8; 1];
        unhex_into(v, &mut version)?;
        match version[0] {
            0xff => return None,
            0x00 if value.len() != TRACEPARENT_LEN => return None,
            0x00 => {}
            _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
            _ => {}
        }
        if rest[0] != b'-' || rest[33] != b'-' || rest[50] != b'-' {
            return None;
        }
        let mut trace = [0u8; 16];
        unhex_into(&rest[1..33], &mut trace)?;
        let mut span = [0u8; 8];
        unhex_into(&rest[34..50], &mut span)?;
        let mut flags = [0u8; 1];
        unhex_into(&rest[51..53], &mut flags)?;
        let (trace_id, span_id) = (TraceId(trace), SpanId(span));
        (trace_id.is_valid() && span_id.is_valid()).then_some(Self {
            trace_id,
            span_id,
            sampled: flags[0] & 1 == 1,
        })
    }

    /// The header value, without allocating.
    pub fn encode(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0] = b'0';
        out[1] = b'0';
        hex_into(&self.trace_id.0, &mut out[3..35]);
        hex_into(&self.span_id.0, &mut out[36..52]);
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }
}

/// Which end of the tunnel recorded a span (OpenTelemetry's span kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// The source router's proxy (outbound).
    Client,
    /// The destination router's proxy (inbound).
    Server,
}

/// How the connection the span covers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanOutcome {
    Ok,
    /// Refused by policy; [`Span::rule`] names the rule.
    Denied,
    /// No instance reachable, or the connection broke.
    Failed,
}

impl SpanOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanOutcome::Ok => "ok",
            SpanOutcome::Denied => "denied",
            SpanOutcome::Failed => "failed",
        }
    }
}

/// One proxy's part of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The source router's span, for a server span that came with a valid `traceparent`.
    #[serde(default)]
    pub parent_span_id: Option<SpanId>,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Catalog service name (OpenTelemetry `server.address`; `trellis.service`).
    pub service: String,
    /// Port the client dialled (`server.port`).
    pub port: u16,
    /// The client device's address as the source router saw it (`client.address`).
    #[serde(default)]
    pub client_ip: Option<IpAddr>,
    /// The device's name in the device book (`trellis.source.device`).
    #[serde(default)]
    pub source_device: Option<String>,
    /// The device's group (`trellis.source.group`).
    #[serde(default)]
    pub source_group: Option<String>,
    /// SPIFFE ID or `device:<group>` (`trellis.source.identity`).
    pub source_identity: String,
    /// The rule that decided (`trellis.policy.rule`).
    pub rule: String,
    /// The router at the other end of the tunnel (client: where it went; server: who sent
    /// it); empty when the last hop was local (`trellis.peer.node`).
    #[serde(default)]
    pub peer_node: String,
    /// The last hop's address (the device serving it), when this router connected it
    /// (`network.peer.address`/`network.peer.port`).
    #[serde(default)]
    pub last_hop: Option<SocketAddr>,
    /// Time to reach the service from this proxy: client span, tunnel plus last hop; server
    /// span, the last hop (`trellis.connect_latency_us`).
    #[serde(default)]
    pub connect_latency_us: Option<u64>,
    /// Client → service (`trellis.bytes_sent`).
    pub bytes_sent: u64,
    /// Service → client (`trellis.bytes_received`).
    pub bytes_received: u64,
    pub outcome: SpanOutcome,
    /// Why it failed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Span {
    /// `trellis.outbound` / `trellis.inbound`: the span's name.
    pub fn name(&self) -> &'static str {
        match self.kind {
            SpanKind::Client => "trellis.outbound",
            SpanKind::Server => "trellis.inbound",
        }
    }

    /// The one filter of `trellis traces --device D --service S`, the page and the agent's
    /// `/traces`: a device by name, client address or source identity; a service by name.
    pub fn matches(&self, device: Option<&str>, service: Option<&str>) -> bool {
        let device_ok = device.is_none_or(|d| {
            self.source_device.as_deref() == Some(d)
                || self.source_identity == d
                || self.client_ip.is_some_and(|ip| ip.to_string() == d)
        });
        device_ok && service.is_none_or(|s| self.service == s)
    }

    pub fn duration_us(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos) / 1000
    }
}

/// A router's recent spans (`GET /traces` on the agent's metrics listener; with telemetry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanList {
    /// The router that recorded them.
    #[serde(default)]
    pub node: String,
    pub spans: Vec<Span>,
    /// The OTLP collector this router exports to, if one is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// Why the collector did not take the last batch, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_error: Option<String>,
    /// Spans meant for the collector and dropped since the agent started.
    #[serde(default)]
    pub export_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_and_reads_the_flag() {
        let p = TraceParent::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled);
        assert_eq!(&p.encode()[..], GOOD.as_bytes());
        let q = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!q.unwrap().sampled);
    }

    #[test]
    fn reserved_flags_are_read_and_not_passed_on() {
        // W3C level 1 defines only the sampled bit; the others are reserved and set to zero
        // when propagating (the fuzz target found `-11`).
        let p =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-11").unwrap();
        assert!(p.sampled);
        assert_eq!(&p.encode()[..], GOOD.as_bytes());
        let q =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe").unwrap();
        assert!(!q.sampled);
        assert_eq!(&q.encode()[53..], b"00");
    }

    #[test]
    fn malformed_traceparents_are_none() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version may append fields after a dash.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(TraceParent::parse(future.as_bytes()).is_some());
    }

    #[test]
    fn ids_serialize_as_hex_and_refuse_zero() {
        let id = TraceId([7; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"07070707070707070707070707070707\"");
        assert_eq!(serde_json::from_str::<TraceId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SpanId>("\"0000000000000000\"").is_err());
    }
}
