//! `trellis` commands that show the home's traffic: the per-service charts, the dependency
//! map and the recent traces.

use hyper::Method;
use trellis_io::client::ClientError;

use super::{call, query_value, show, Cli};

pub(super) async fn traces(
    cli: &Cli,
    device: Option<&str>,
    service: Option<&str>,
    limit: usize,
) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let mut path = format!("/v1/admin/traces?limit={limit}");
    if let Some(d) = device {
        path += &format!("&device={}", query_value(d));
    }
    if let Some(s) = service {
        path += &format!("&service={}", query_value(s));
    }
    let traces: Vec<crate::traces::TraceView> = call(cli, Method::GET, &path, none).await?;
    Ok(show(cli, &traces, |ts| crate::traces::render_text(ts)))
}

pub(super) async fn graph(cli: &Cli, window: u32) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let map: crate::graph::DependencyMap = call(
        cli,
        Method::GET,
        &format!("/v1/admin/graph?window={window}"),
        none,
    )
    .await?;
    Ok(show(cli, &map, crate::graph::render_text))
}

pub(super) async fn traffic(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let charts: Vec<crate::traffic::ServiceChart> =
        call(cli, Method::GET, "/v1/admin/traffic", none).await?;
    Ok(show(cli, &charts, |cs| {
        if cs.is_empty() {
            return "no traffic reported yet (routers report with their telemetry, every 30 s)\n"
                .into();
        }
        let mut out = format!("{:<24} {:>12} {:>14}\n", "SERVICE", "CONNECTIONS", "BYTES");
        for c in cs {
            out += &format!(
                "{:<24} {:>12} {:>14}\n",
                c.service, c.connections_total, c.bytes_total
            );
        }
        out + "(last hour; bytes count when a connection ends)\n"
    }))
}
