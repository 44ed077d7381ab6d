//! Connection traces on the real kernel, exported to a real OTLP/HTTP receiver that decodes
//! with the official OpenTelemetry protobuf classes (`support/otlp_receiver.py`; PyPI
//! `opentelemetry-proto`, installed by `cargo xtask setup`).
//!
//! The home of `mesh_netns.rs` (laptop → router A → tunnel → router B → web server); the
//! receiver listens in router A's namespace on the mesh link (10.9.0.1:4318), where both
//! routers' exporters reach it. Needs root and python3 with opentelemetry-proto; without
//! them the test says why it is skipped.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use trellis_agent::trace::export::{self, Collector};
use trellis_agent::trace::Tracer;
use trellis_proto::policy::{Action, Policy, Rule, ServiceMatch, SourceMatch};

const COLLECTOR: &str = "http://10.9.0.1:4318";

struct Receiver {
    child: Child,
    spans: mpsc::Receiver<Value>,
}

impl Receiver {
    fn start(ns: &str) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/otlp_receiver.py"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", script, "10.9.0.1:4318"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok);
        assert_eq!(
            first.as_deref(),
            Some("ready"),
            "the receiver did not start"
        );
        let (tx, spans) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).expect("receiver prints JSON");
                assert!(v.get("error").is_none(), "receiver could not decode: {v}");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Receiver { child, spans }
    }

    /// Spans until `n` arrived that `keep` accepts (the exporter flushes every 2 s).
    fn collect(&self, n: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.spans.recv_timeout(left) {
                Ok(v) if keep(&v) => out.push(v),
                Ok(_) => {}
                Err(e) => panic!("{} of {n} spans arrived ({e}): {out:?}", out.len()),
            }
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's exporter for `tracer`, running in `ns` (its sockets are that router's).
struct Exporter(Option<tokio::sync::oneshot::Sender<()>>);

impl Exporter {
    fn start(ns: &str, node: &str, tracer: Arc<Tracer>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ns, node) = (ns.to_owned(), node.to_owned());
        std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let task = export::start(tracer, node, Collector::parse(COLLECTOR).unwrap());
                let _ = stopped.await;
                task.abort();
            });
        });
        Exporter(Some(stop))
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.send(());
        }
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn python_has_otlp() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_connection_is_one_trace_across_both_routers_and_denials_name_their_rule() {
    require_root!();
    if !python_has_otlp() {
        eprintln!(
            "SKIPPED: python3 with opentelemetry-proto is missing (cargo xtask setup installs it)"
        );
        return;
    }
    let f = fixture(Policy::default());
    let rx = Receiver::start(&f.home.ra);
    let _ea = Exporter::start(&f.home.ra, "ra", f.a.metrics.traces.clone());
    let _eb = Exporter::start(&f.home.rb, "rb", f.b.metrics.traces.clone());

    // 1. The laptop's request: two spans, one trace, the server span a child of the client's.
    let page = laptop_get(&f.home.laptop, f.vip).expect("laptop gets the page");
    assert!(page.contains(PAGE_SECRET), "{page}");
    let spans = rx.collect(2, |_| true);
    let client = spans
        .iter()
        .find(|s| s["kind"] == 3)
        .expect("a CLIENT span");
    let server = spans
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("a SERVER span");
    assert_eq!(client["trace_id"], server["trace_id"], "one trace id");
    assert_eq!(
        server["parent_span_id"], client["span_id"],
        "the right parent"
    );
    assert_eq!(client["parent_span_id"], "", "the client span is the root");
    assert_eq!(client["name"], "trellis.outbound");
    assert_eq!(client["resource"]["service.instance.id"], "ra");
    assert_eq!(server["resource"]["service.instance.id"], "rb");
    for s in [client, server] {
        assert_eq!(attr(s, "network.transport"), "tcp");
        assert_eq!(attr(s, "server.address"), "web");
        assert_eq!(attr(s, "server.port"), 80);
        assert_eq!(attr(s, "client.address"), "10.1.0.2");
        assert_eq!(attr(s, "trellis.service"), "web");
        assert_eq!(attr(s, "trellis.source.device"), "laptop");
        assert_eq!(attr(s, "trellis.source.group"), "trusted");
        assert_eq!(attr(s, "trellis.outcome"), "ok");
        assert_eq!(s["status_code"], 0, "unset: nothing went wrong");
        assert!(attr(s, "trellis.policy.rule").is_string());
        assert!(attr(s, "trellis.connect_latency_us").as_i64().is_some());
        // The page went service → client through both proxies.
        assert!(attr(s, "trellis.bytes_received").as_i64().unwrap() > PAGE_SECRET.len() as i64);
        assert!(s["end"].as_u64() >= s["start"].as_u64());
    }
    assert_eq!(
        attr(server, "network.peer.address"),
        "10.2.0.2",
        "the last hop"
    );
    assert_eq!(attr(server, "network.peer.port"), 8080);
    assert_eq!(attr(client, "trellis.peer.node"), "rb");
    // The ring without any collector keeps the same spans.
    let ring = f.a.metrics.traces.recent(&Default::default(), 10);
    assert_eq!(
        ring[0].trace_id.to_string(),
        client["trace_id"].as_str().unwrap()
    );

    // 2. A deny rule at the destination (the source's policy is stale): the guest sees a
    //    refusal, and both spans name the rule.
    let deny = Rule {
        name: "no-laptop-to-web".into(),
        action: Action::Deny,
        sources: vec![SourceMatch::Device(LAPTOP_MAC.parse().unwrap())],
        to: vec![ServiceMatch {
            service: Some("web".into()),
            ports: vec![],
        }],
        dry_run: false,
    };
    f.a.metrics.traces.set_sample_rate(0.0); // denials are exported whatever the rate
    f.b.update(|s| s.policy.rules.push(deny.clone()));
    let got = laptop_get(&f.home.laptop, f.vip).unwrap_or_default();
    assert!(!got.contains(PAGE_SECRET), "denied laptop got the page");
    let denied = rx.collect(2, |s| attr(s, "trellis.outcome") == "denied");
    for s in &denied {
        assert_eq!(attr(s, "trellis.policy.rule"), "no-laptop-to-web", "{s}");
        assert_eq!(s["status_code"], 2, "ERROR");
        assert!(s["status_message"]
            .as_str()
            .unwrap()
            .contains("no-laptop-to-web"));
    }
    assert_eq!(denied[0]["trace_id"], denied[1]["trace_id"]);

    // 3. The collector goes away: connections are unaffected, the drop counter rises.
    f.b.update(|s| s.policy.rules.clear());
    f.a.metrics.traces.set_sample_rate(1.0);
    drop(rx);
    let dropped = |m: &trellis_agent::metrics::Metrics| {
        let page = m.render();
        page.lines()
            .find(|l| l.starts_with("trellis_trace_spans_dropped_total{reason=\"export_failed\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .expect("drop counter in /metrics")
    };
    // What was dropped so far (on a busy machine an export can miss its deadline while the
    // receiver is up); from here on, every span of these connections must be dropped.
    let before = dropped(&f.a.metrics);
    for _ in 0..3 {
        let page = laptop_get(&f.home.laptop, f.vip).expect("laptop still gets the page");
        assert!(page.contains(PAGE_SECRET), "{page}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped(&f.a.metrics) < before + 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        dropped(&f.a.metrics) >= before + 3,
        "{}",
        f.a.metrics.render()
    );
    assert!(f.a.metrics.render().contains("trellis_trace_export_up 0"));
    let status = f.a.metrics.traces.export.status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("10.9.0.1:4318"),
        "{status:?}"
    );
}
