//! The listeners' counters in Prometheus text, and the `/metrics` endpoint of both daemons.
//!
//! - `trellis_listener_refused_total{listener, reason}`: connections turned away, by
//!   [`Refusal`] (`total_cap`, `per_source_cap`, `budget_full`, `evicted`);
//! - `trellis_listener_accept_errors_total{listener}`: accept errors the loop backed off from;
//! - `trellis_listener_connections{listener}`: connections held now.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::listener::{serve, Gate, Limits, Refusal};

/// A scrape is one small request: few connections, a short wait for its header.
pub const METRICS_LIMITS: Limits = Limits {
    total: 8,
    per_source: 4,
};
const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Append the counters of `gates` (one family each, every listener in it).
pub fn render(gates: &[Arc<Gate>], out: &mut String) {
    let _ = writeln!(out, "# HELP trellis_listener_refused_total Connections a listener turned away, by reason.\n# TYPE trellis_listener_refused_total counter");
    for g in gates {
        for r in Refusal::ALL {
            let _ = writeln!(
                out,
                "trellis_listener_refused_total{{listener=\"{}\",reason=\"{}\"}} {}",
                g.name(),
                r.label(),
                g.refused(r)
            );
        }
    }
    let _ = writeln!(out, "# HELP trellis_listener_accept_errors_total Accept errors (e.g. out of file descriptors) a listener paused for.\n# TYPE trellis_listener_accept_errors_total counter");
    for g in gates {
        let _ = writeln!(
            out,
            "trellis_listener_accept_errors_total{{listener=\"{}\"}} {}",
            g.name(),
            g.accept_errors()
        );
    }
    let _ = writeln!(out, "# HELP trellis_listener_connections Connections a listener holds now.\n# TYPE trellis_listener_connections gauge");
    for g in gates {
        let _ = writeln!(
            out,
            "trellis_listener_connections{{listener=\"{}\"}} {}",
            g.name(),
            g.held()
        );
    }
}

/// Serve `GET /metrics` (the text `page` returns) on `listener`, under `gate`'s caps; any other
/// path is 404. Both daemons bind it to loopback by default.
pub async fn serve_metrics<P>(listener: TcpListener, gate: Arc<Gate>, page: P) -> Infallible
where
    P: Fn() -> String + Send + Sync + 'static,
{
    serve_pages(listener, gate, move |path, _query| {
        (path == "/metrics").then(|| (PROMETHEUS_TEXT, page()))
    })
    .await
}

/// The content type of Prometheus text exposition format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// Like [`serve_metrics`], for a listener with more than one page: `pages(path, query)`
/// answers `(content type, body)`, or `None` for 404 (the agent's `/metrics` and `/traces`).
pub async fn serve_pages<P>(listener: TcpListener, gate: Arc<Gate>, pages: P) -> Infallible
where
    P: Fn(&str, Option<&str>) -> Option<(&'static str, String)> + Send + Sync + 'static,
{
    let pages = Arc::new(pages);
    serve(listener, gate, move |tcp, _peer, ticket| {
        let pages = pages.clone();
        async move {
            let _ticket = ticket;
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let pages = pages.clone();
                    async move {
                        let (status, ctype, body) = match pages(req.uri().path(), req.uri().query())
                        {
                            Some((ctype, body)) => (hyper::StatusCode::OK, ctype, body),
                            None => (
                                hyper::StatusCode::NOT_FOUND,
                                PROMETHEUS_TEXT,
                                "try /metrics\n".to_owned(),
                            ),
                        };
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        }
    })
    .await
}
