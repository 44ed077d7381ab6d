//! The `trellis-controller` process: options, logging, and the two API servers.
//!
//! The admin API and the agent API run on one small tokio runtime (two worker threads): the
//! controller's load is a handful of routers long-polling, not a data plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::api;
use crate::home::{Home, Settings};

/// The Trellis controller: certificate authority, pairing, store and APIs of the home.
///
/// Runs on the primary router. The `trellis` command (this same binary, called by that
/// name) manages it through the admin socket.
#[derive(Debug, Parser)]
#[command(name = "trellis-controller", version, about, long_about)]
pub struct Options {
    /// Where the store (CA, nodes, config versions) lives; kept across sysupgrade. Default:
    /// /etc/trellis/controller on OpenWrt, ./trellis-data/controller elsewhere.
    #[arg(long, default_value_os_t = trellis_io::paths::controller_data_dir())]
    pub data_dir: PathBuf,
    /// Address of the agent API (HTTPS, TLS 1.3, client certificates).
    #[arg(long, visible_alias = "listen", default_value = "0.0.0.0:7443")]
    pub agent_api: SocketAddr,
    /// The agent API address handed to satellites at pairing (host:port); by default they
    /// keep using the address they paired with.
    #[arg(long, default_value = "")]
    pub advertise: String,
    /// The admin socket the `trellis` command talks to (root only).
    #[arg(long, default_value_os_t = trellis_io::paths::admin_socket())]
    pub admin_socket: PathBuf,
    /// Lifetime of node certificates in hours (1 to 168); agents renew at half of it.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=168))]
    pub cert_ttl_hours: u64,
    /// A router not heard from for this many seconds counts as gone: its services show as
    /// unreachable (agents call at least every 55 s; 1 to 3600).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub node_timeout_s: u64,
    /// Prometheus /metrics (routers, config propagation, refusals; no secrets, no control):
    /// loopback by default, like the agents'; a LAN address lets a Prometheus elsewhere scrape
    /// it; "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9465", value_parser = metrics_addr)]
    pub metrics_listen: MetricsListen,
    /// Log filter, e.g. `info` or `trellis_controller=debug`.
    #[arg(long, env = "TRELLIS_LOG", default_value = "info", value_parser = trellis_io::logging::check_filter)]
    pub log: String,
}

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsListen(pub Option<SocketAddr>);

fn metrics_addr(value: &str) -> Result<MetricsListen, String> {
    if value == "off" {
        return Ok(MetricsListen(None));
    }
    value
        .parse()
        .map(|a| MetricsListen(Some(a)))
        .map_err(|_| format!("{value:?} is not an address like 127.0.0.1:9465 (or \"off\")"))
}

pub fn main() -> ExitCode {
    let opts = Options::parse();
    init_logging(&opts.log);
    let runtime = match trellis_io::runtime::daemon() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis-controller: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("trellis-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `TRELLIS_LOG` / `--log`: see [`trellis_io::logging`].
pub fn init_logging(filter: &str) {
    trellis_io::logging::init(filter);
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let home = Home::open(Settings {
        data_dir: opts.data_dir.clone(),
        leaf_ttl: Duration::from_secs(opts.cert_ttl_hours * 3600),
        advertise: opts.advertise.clone(),
        node_timeout: Duration::from_secs(opts.node_timeout_s),
    })?;
    if home.admin_password()?.is_none() {
        // Log where the token is, never the token: logs leave the router (logread, syslog).
        match home.setup_token() {
            Ok(_) => tracing::info!(
                path = %crate::auth::setup_token_path(&opts.data_dir).display(),
                "no admin password yet: the web page asks for the setup token in this file (or run `trellis setup-token`)"
            ),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    let admin = api::admin::bind(&opts.admin_socket).with_context(|| {
        format!(
            "cannot open the admin socket {}",
            opts.admin_socket.display()
        )
    })?;
    let agents = tokio::net::TcpListener::bind(opts.agent_api)
        .await
        .with_context(|| format!("cannot listen on {} for the agent API", opts.agent_api))?;
    tracing::info!(
        home_id = %home.home_id(),
        agent_api = %agents.local_addr()?,
        admin_socket = %opts.admin_socket.display(),
        "trellis-controller ready"
    );
    let gate = api::port::gate();
    let mut gates = vec![gate.clone()];
    let metrics = match opts.metrics_listen.0 {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "cannot listen on {addr} for /metrics (--metrics-listen; \"off\" disables it)"
                )
            })?;
            tracing::info!(%addr, "serving /metrics");
            let metrics_gate =
                trellis_io::Gate::new("metrics", trellis_io::metrics::METRICS_LIMITS);
            gates.push(metrics_gate.clone());
            Some((listener, metrics_gate))
        }
        None => None,
    };
    let listeners = api::admin::Listeners(gates.clone());
    let metrics = async {
        match metrics {
            Some((listener, metrics_gate)) => {
                let home = home.clone();
                trellis_io::metrics::serve_metrics(listener, metrics_gate, move || {
                    crate::metrics::page(&home, &gates)
                })
                .await;
            }
            None => std::future::pending().await,
        }
    };
    let agent_api = api::admin::AgentApiAddr(agents.local_addr()?);
    let result = tokio::select! {
        r = api::port::serve_with(home.clone(), agents, gate) => r.context("agent API stopped"),
        r = api::admin::serve(home.clone(), admin, listeners, agent_api) => r.context("admin API stopped"),
        _ = metrics => Ok(()),
        _ = trellis_io::signal::shutdown() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&opts.admin_socket);
    result
}
