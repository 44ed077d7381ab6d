//! Tests of the proxy metrics: counters, label caps, edge traffic, the Prometheus page and the
//! access log.

use super::*;

fn labels(src: &str) -> ConnLabels {
    ConnLabels {
        direction: "outbound",
        source_identity: src.into(),
        destination_identity: "spiffe://h/svc/nas".into(),
        destination_service: "nas".into(),
    }
}

#[test]
fn service_traffic_sums_outbound_connections_per_service() {
    let m = Metrics::new();
    m.opened(labels("device:02:00:00:00:00:01"));
    m.add_bytes(&labels("device:02:00:00:00:00:01"), 100, 2000);
    m.closed(labels("device:02:00:00:00:00:01"));
    m.opened(labels("device:02:00:00:00:00:02"));
    let mut inbound = labels("device:02:00:00:00:00:03");
    inbound.direction = "inbound";
    m.opened(inbound.clone());
    m.add_bytes(&inbound, 7, 7);
    m.closed(inbound);
    let t = m.service_traffic();
    assert_eq!(
        t,
        vec![trellis_proto::api::ServiceTraffic {
            service: "nas".into(),
            connections: 2,
            bytes_sent: 100,
            bytes_received: 2000,
        }],
        "two outbound connections; the inbound side of another is not counted twice"
    );
}

#[test]
fn counters_histogram_and_denials_render_as_prometheus_text() {
    let m = Metrics::new();
    m.opened(labels("device:02:00:00:00:00:01"));
    m.add_bytes(&labels("device:02:00:00:00:00:01"), 100, 2000);
    m.closed(labels("device:02:00:00:00:00:01"));
    m.connect_latency(Duration::from_millis(3));
    m.denied("no-guests", "nas", "source");
    m.denied("no-guests", "nas", "source");
    m.dry_run_denied("maybe");
    let inbound = trellis_io::Gate::new(
        "inbound",
        trellis_io::Limits {
            total: 1,
            per_source: 1,
        },
    );
    m.add_listener(inbound.clone());
    let _held = inbound.admit("10.0.0.1".parse().unwrap()).unwrap();
    let refused = inbound.admit("10.0.0.2".parse().unwrap()).unwrap_err();
    inbound.refuse(refused, "10.0.0.2:1".parse().unwrap());
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    m.set_cert_expiry("spiffe://h/node/a", far);
    let t = m.render();
    let l = "direction=\"outbound\",source_identity=\"device:02:00:00:00:00:01\",destination_identity=\"spiffe://h/svc/nas\",destination_service=\"nas\"";
    assert!(
        t.contains(&format!("trellis_tcp_connections_opened_total{{{l}}} 1")),
        "{t}"
    );
    assert!(
        t.contains(&format!("trellis_tcp_sent_bytes_total{{{l}}} 100")),
        "{t}"
    );
    assert!(
        t.contains(&format!("trellis_tcp_received_bytes_total{{{l}}} 2000")),
        "{t}"
    );
    assert!(
        t.contains("trellis_tcp_connect_latency_seconds_bucket{le=\"0.0025\"} 0"),
        "{t}"
    );
    assert!(
        t.contains("trellis_tcp_connect_latency_seconds_bucket{le=\"0.005\"} 1"),
        "{t}"
    );
    assert!(
        t.contains("trellis_tcp_connect_latency_seconds_count 1"),
        "{t}"
    );
    assert!(t.contains("trellis_policy_denials_total{rule=\"no-guests\",destination_service=\"nas\",enforced_at=\"source\"} 2"), "{t}");
    assert!(t.contains("trellis_policy_dry_run_denials_total{rule=\"maybe\"} 1"));
    assert!(t.contains("trellis_proxy_overflow_total{direction=\"inbound\"} 1"));
    let line = t
        .lines()
        .find(|l| l.starts_with("trellis_cert_expiry_seconds{"))
        .unwrap();
    let secs: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&secs), "{line}");
}

#[test]
fn edges_count_per_source_and_service_and_are_capped() {
    let m = Metrics::new();
    let laptop = labels("device:02:00:00:00:00:01");
    m.opened(laptop.clone());
    m.add_bytes(&laptop, 10, 200);
    m.connect_latency_of(&laptop, Duration::from_millis(3));
    m.closed(laptop);
    let mut inbound = labels("device:02:00:00:00:00:09");
    inbound.direction = "inbound";
    m.opened(inbound);
    m.access(AccessRecord {
        direction: "outbound",
        src_addr: None,
        src_identity: "device:02:00:00:00:00:0f".into(),
        service: "nas".into(),
        port: 80,
        dst_identity: "spiffe://h/svc/nas".into(),
        peer_node: String::new(),
        bytes_sent: 0,
        bytes_received: 0,
        duration: Duration::ZERO,
        outcome: Outcome::Denied,
        rule: "default:guest".into(),
    });
    let edges = m.edge_traffic();
    assert_eq!(
        edges.len(),
        2,
        "{edges:?}: the inbound side is not an edge here"
    );
    let e = &edges[0];
    assert_eq!(
        (
            e.source.as_str(),
            e.connections,
            e.bytes_sent,
            e.bytes_received,
            e.denials
        ),
        ("device:02:00:00:00:00:01", 1, 10, 200, 0)
    );
    // 3 ms falls in the 5 ms bucket (third bound).
    assert_eq!(e.connect_latency.len(), EDGE_BUCKETS);
    assert_eq!(e.connect_latency[2], 1, "{:?}", e.connect_latency);
    let guest = &edges[1];
    assert_eq!((guest.denials, guest.connections), (1, 0));
    assert!(guest.connect_latency.is_empty(), "never timed");

    for i in 0..(trellis_proto::api::MAX_REPORTED_EDGES + 20) {
        m.opened(labels(&format!("device:{i}")));
    }
    let g = m.lock();
    assert!(g.edges.len() <= trellis_proto::api::MAX_REPORTED_EDGES + 1);
    assert!(g
        .edges
        .contains_key(&("other".to_string(), "nas".to_string())));
}

#[test]
fn label_sets_are_capped() {
    let m = Metrics::new();
    for i in 0..(MAX_SERIES + 50) {
        m.opened(labels(&format!("device:{i}")));
    }
    let g = m.lock();
    assert!(g.conns.len() <= MAX_SERIES + 1, "{}", g.conns.len());
    let other = g
        .conns
        .iter()
        .find(|(k, _)| k.source_identity == "other")
        .unwrap()
        .1;
    assert_eq!(other.opened, 50);
}

#[test]
fn label_values_are_escaped_and_access_lines_are_one_line() {
    assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let rec = AccessRecord {
        direction: "inbound",
        src_addr: None,
        src_identity: "device:02:00:00:00:00:03".into(),
        service: "nas".into(),
        port: 80,
        dst_identity: "spiffe://h/svc/nas".into(),
        peer_node: "spiffe://h/node/a".into(),
        bytes_sent: 1,
        bytes_received: 2,
        duration: Duration::from_millis(7),
        outcome: Outcome::Denied,
        rule: "no-guests".into(),
    };
    let line = rec.to_string();
    assert!(!line.contains('\n'));
    assert!(
        line.contains("result=\"denied\" rule=\"no-guests\""),
        "{line}"
    );
    assert!(line.contains("dst.service=nas:80"), "{line}");
}
