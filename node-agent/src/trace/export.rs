//! OTLP/HTTP (protobuf) export of spans to the collector a person names
//! (`trellis-agent run --otlp-endpoint http://host:4318`, UCI `option otlp_endpoint`).
//!
//! The proxy only ever pushes onto a bounded [`Queue`] (at most [`MAX_QUEUE`] spans; a full
//! queue drops the new span and counts it). One task drains it in batches of at most
//! [`MAX_BATCH`] every [`FLUSH_EVERY`] (sooner when half full) and POSTs each to
//! `<endpoint>/v1/traces`, one attempt with a [`POST_TIMEOUT`]: a batch the collector did
//! not take (down, slow, answering garbage or an error status) is dropped and counted, and
//! the reason is kept as the exporter's status. Nothing here can make a connection wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_atomic::{AtomicBool, AtomicU64, Ordering};
use trellis_proto::trace::Span;

use super::Tracer;

/// Spans waiting for the collector (~1 KiB each at most in memory: ≤ ~2 MiB).
pub const MAX_QUEUE: usize = 2048;
/// Spans per request.
pub const MAX_BATCH: usize = 512;
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans go: `http://host[:port][/path]`; the path defaults to OTLP's `/v1/traces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    /// `host:port` to connect to (and the Host header).
    pub authority: String,
    pub path: String,
}

impl Collector {
    /// Validate what a person typed; errors say what was wrong and what to write instead.
    pub fn parse(url: &str) -> Result<Self, String> {
        let example = "write it like http://192.168.1.10:4318 (an OTLP/HTTP receiver: the OpenTelemetry Collector, Jaeger)";
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("collector URL {url:?} is not a URL ({e}); {example}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "collector URL {url:?}: https is not supported by the router's exporter; use the collector's plain http OTLP receiver on the home network, {example}"
                ))
            }
            _ => return Err(format!("collector URL {url:?} has no http:// scheme; {example}")),
        }
        let Some(auth) = uri.authority() else {
            return Err(format!("collector URL {url:?} names no host; {example}"));
        };
        if auth.as_str().contains('@') {
            return Err(format!(
                "collector URL {url:?} carries credentials; the exporter sends none, {example}"
            ));
        }
        let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(4318));
        let path = match uri.path() {
            "" | "/" => "/v1/traces".to_owned(),
            p => p.to_owned(),
        };
        Ok(Self { authority, path })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// The exporter's state for people (`GET /traces`, logs).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub collector: Option<String>,
    /// Unix seconds of the last batch the collector took.
    pub last_ok_unix: Option<u64>,
    /// Why the last batch was not taken, if it was not.
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub struct Queue {
    spans: Mutex<VecDeque<Arc<Span>>>,
    cap: usize,
    pub(crate) enabled: AtomicBool,
    notify: tokio::sync::Notify,
    exported: AtomicU64,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
    status: Mutex<Status>,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Self {
            spans: Mutex::new(VecDeque::new()),
            cap,
            enabled: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
            exported: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
            status: Mutex::new(Status::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, span: Arc<Span>) {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.cap {
            drop(q);
            self.dropped_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(span);
        let half = q.len() >= self.cap / 2 || q.len() >= MAX_BATCH;
        drop(q);
        if half {
            self.notify.notify_one();
        }
    }

    pub(crate) fn take(&self, n: usize) -> Vec<Arc<Span>> {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed) + self.dropped_failed.load(Ordering::Relaxed)
    }

    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let queued = self.spans.lock().map(|q| q.len()).unwrap_or(0);
        let _ = writeln!(out, "# HELP trellis_trace_spans_exported_total Spans the OTLP collector took.\n# TYPE trellis_trace_spans_exported_total counter\ntrellis_trace_spans_exported_total {}", self.exported());
        let _ = writeln!(out, "# HELP trellis_trace_spans_dropped_total Spans meant for the collector and dropped: queue full, or the collector did not take the batch.\n# TYPE trellis_trace_spans_dropped_total counter");
        let _ = writeln!(
            out,
            "trellis_trace_spans_dropped_total{{reason=\"queue_full\"}} {}\ntrellis_trace_spans_dropped_total{{reason=\"export_failed\"}} {}",
            self.dropped_full.load(Ordering::Relaxed),
            self.dropped_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP trellis_trace_export_queue_spans Spans waiting for the collector.\n# TYPE trellis_trace_export_queue_spans gauge\ntrellis_trace_export_queue_spans {queued}");
        if self.enabled() {
            let up = u8::from(self.status().last_error.is_none());
            let _ = writeln!(out, "# HELP trellis_trace_export_up Whether the collector took the last batch (1) or not (0).\n# TYPE trellis_trace_export_up gauge\ntrellis_trace_export_up {up}");
        }
    }
}

/// Start exporting to `collector`: spans are queued from now on, and the returned task
/// sends them. Abort the task to stop.
pub fn start(
    tracer: Arc<Tracer>,
    node: String,
    collector: Collector,
) -> tokio::task::JoinHandle<()> {
    tracer
        .export
        .set_status(|s| s.collector = Some(collector.url()));
    tracer.export.enabled.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        let q = &tracer.export;
        loop {
            let _ = tokio::time::timeout(FLUSH_EVERY, q.notify.notified()).await;
            loop {
                let batch = q.take(MAX_BATCH);
                if batch.is_empty() {
                    break;
                }
                let body = super::otlp::encode_request(&node, &batch);
                match tokio::time::timeout(POST_TIMEOUT, post(&collector, body)).await {
                    Ok(Ok(())) => {
                        q.exported.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        q.set_status(|s| {
                            s.last_ok_unix = Some(crate::unix_now());
                            s.last_error = None;
                        });
                    }
                    res => {
                        let why = match res {
                            Ok(Err(e)) => e,
                            _ => format!("no answer within {} s", POST_TIMEOUT.as_secs()),
                        };
                        q.dropped_failed
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let first = q.status().last_error.is_none();
                        if first {
                            tracing::warn!(collector = %collector.url(), error = %why, "trace export failed; dropping spans until the collector takes them (trellis_trace_spans_dropped_total)");
                        }
                        q.set_status(|s| s.last_error = Some(why));
                        // Do not hammer a collector that is away.
                        break;
                    }
                }
            }
        }
    })
}

/// One POST of an encoded request; the collector's answer status decides.
async fn post(c: &Collector, body: Vec<u8>) -> Result<(), String> {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(&c.authority)
        .await
        .map_err(|e| format!("cannot reach the collector at {}: {e}", c.authority))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("collector at {}: {e}", c.authority))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::post(c.path.as_str())
        .header(hyper::header::HOST, c.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = send.send_request(req).await;
    let out = match res {
        Ok(resp) if resp.status().is_success() => {
            // Read (and bound) the ExportTraceServiceResponse so the connection ends cleanly.
            let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await;
            Ok(())
        }
        Ok(resp) => Err(format!(
            "collector at {} answered {}",
            c.authority,
            resp.status()
        )),
        Err(e) => Err(format!(
            "collector at {} gave no valid answer: {e}",
            c.authority
        )),
    };
    conn.abort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_urls_are_validated_with_a_way_out() {
        let c = Collector::parse("http://192.168.1.10:4318").unwrap();
        assert_eq!(c.authority, "192.168.1.10:4318");
        assert_eq!(c.path, "/v1/traces");
        assert_eq!(
            Collector::parse("http://jaeger.lan/custom/traces")
                .unwrap()
                .url(),
            "http://jaeger.lan:4318/custom/traces"
        );
        for (bad, says) in [
            ("not a url", "is not a URL"),
            ("192.168.1.10:4318", "no http:// scheme"),
            ("https://x:4318", "https is not supported"),
            ("ftp://x", "no http:// scheme"),
            ("http://user:pw@x:4318", "credentials"),
        ] {
            let e = Collector::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(
                e.contains("http://192.168.1.10:4318"),
                "says what to write: {e}"
            );
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let q = Queue::new(2);
        let s = Arc::new(crate::trace::ring::tests::span("nas", "laptop"));
        for _ in 0..5 {
            q.push(s.clone());
        }
        assert_eq!(q.take(10).len(), 2);
        assert_eq!(q.dropped(), 3);
        let mut page = String::new();
        q.render(&mut page);
        assert!(
            page.contains("trellis_trace_spans_dropped_total{reason=\"queue_full\"} 3"),
            "{page}"
        );
    }
}
