//! The `trellis-agent` command line.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trellis_proto::pairing::PairingCode;
use trellis_proto::NodeName;

use crate::control::Agent;
use crate::join::{join, JoinError};
use crate::state::StateDir;

/// The Trellis agent: joins this router to the home and keeps it in line with the controller.
#[derive(Debug, Parser)]
#[command(name = "trellis-agent", version, about)]
pub struct Cli {
    /// Where the node's identity, pinned CA and last config live; kept across sysupgrade.
    /// Default: /etc/trellis/agent on OpenWrt, ./trellis-data/agent elsewhere.
    #[arg(long, global = true, default_value_os_t = trellis_io::paths::agent_state_dir())]
    pub state_dir: PathBuf,
    /// Log filter, e.g. `info` or `trellis_agent=debug`.
    #[arg(long, global = true, env = "TRELLIS_LOG", default_value = "info", value_parser = trellis_io::logging::check_filter)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (what procd starts): follow the controller, renew the certificate, run
    /// the service mesh proxy.
    Run(RunArgs),
    /// Pair this router with the home: `trellis-agent join 192.168.1.1 K7QF-9M2X-3D`.
    Join {
        /// The primary router's address (port 7443 unless given).
        controller: String,
        /// The pairing code shown on the router page or by `trellis pair`.
        code: String,
        /// This router's name in the home (default: the hostname).
        #[arg(long)]
        name: Option<String>,
        /// Leave the current home and join this one.
        #[arg(long)]
        force: bool,
    },
    /// Form, secure and supervise the 802.11s mesh on one radio; report links and paths as
    /// JSON lines.
    Mesh(trellis_wifi::MeshArgs),
}

/// Options of `trellis-agent run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Only the control plane: no proxy, interception, mesh DNS or discovery.
    #[arg(long)]
    pub no_service_mesh: bool,
    /// Run the proxy but do not install nftables interception.
    #[arg(long)]
    pub no_intercept: bool,
    /// Where intercepted connections arrive.
    #[arg(long, default_value = "0.0.0.0:15001")]
    pub proxy_outbound: std::net::SocketAddr,
    /// Where tunnels from other routers arrive (mutual TLS).
    #[arg(long, default_value = "0.0.0.0:15008")]
    pub proxy_inbound: std::net::SocketAddr,
    /// Mesh-zone DNS (dnsmasq forwards trellis.home.arpa here); "off" disables it.
    #[arg(long, default_value = "127.0.0.1:5354")]
    pub dns_listen: String,
    /// Prometheus /metrics; "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// dnsmasq's DHCP lease file.
    #[arg(long, default_value = "/tmp/dhcp.leases")]
    pub leases: PathBuf,
    /// Do not browse mDNS/DNS-SD.
    #[arg(long)]
    pub no_mdns: bool,
    /// The address other routers reach this one by (default: the one used towards the
    /// controller).
    #[arg(long)]
    pub advertise: Option<std::net::IpAddr>,
    /// The link report `trellis-agent mesh` writes, sent on to the controller's map.
    #[arg(long, default_value = "/var/run/trellis/mesh-links.json")]
    pub mesh_report: PathBuf,
    /// The speed-test sink other routers send to (mutual TLS, routers of the home only);
    /// "off" disables it, and this router then takes no speed-test jobs either.
    #[arg(long, default_value = "0.0.0.0:15009")]
    pub speedtest_listen: String,
    /// Seconds between two telemetry reports to the controller (health, mesh links).
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub telemetry_interval: u64,
    /// Export connection traces over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://192.168.1.10:4318 (OpenTelemetry Collector, Jaeger); without it the router
    /// keeps its last spans itself (GET /traces on the metrics listener).
    #[arg(long, value_name = "URL", value_parser = crate::trace::export::Collector::parse)]
    pub otlp_endpoint: Option<crate::trace::export::Collector>,
    /// The share of traces (0–1) exported when the connection went well; denied and failed
    /// ones always are.
    #[arg(long, value_name = "RATE", default_value_t = 1.0, value_parser = parse_rate)]
    pub trace_sample: f64,
    /// Who runs the home's access points: OpenWrt's wireless config (`openwrt`), hostapd
    /// directly (`hostapd`, no netifd: needs --wifi-radios), or nobody (`off`); `auto`
    /// picks OpenWrt when `uci` and `wifi` are there.
    #[arg(long, value_enum, default_value = "auto")]
    pub access_points: crate::access_point::runner::BackendKind,
    /// This router's radios as JSON (name, phy, band, channel, freq_mhz, max_interfaces).
    #[arg(long, value_name = "FILE")]
    pub wifi_radios: Option<PathBuf>,
    /// The home's wifi as JSON (networks, roaming), used instead of the controller's: for
    /// the lab and a box whose controller has no wifi settings yet.
    #[arg(long, value_name = "FILE")]
    pub wifi_file: Option<PathBuf>,
    /// The bridge the hostapd backend's access points join.
    #[arg(long)]
    pub wifi_bridge: Option<String>,
    /// Where the hostapd backend writes its configs (0600: they hold the passphrases).
    #[arg(long, default_value = "/var/run/trellis/hostapd")]
    pub wifi_config_dir: PathBuf,
    /// hostapd's control sockets (`ctrl_interface`) for the hostapd backend.
    #[arg(long, default_value = "/var/run/hostapd")]
    pub wifi_ctrl_dir: PathBuf,
}

fn parse_rate(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{v:?} is not a share between 0 and 1 (e.g. 0.1 for one trace in ten)"
        )),
    }
}

fn optional_addr(value: &str, what: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if value == "off" {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("{what} {value:?} is not an address like 127.0.0.1:5354 (or \"off\")"))
}

impl RunArgs {
    fn service_mesh(&self) -> Result<Option<crate::service_mesh::Options>, String> {
        if self.no_service_mesh {
            return Ok(None);
        }
        Ok(Some(crate::service_mesh::Options {
            proxy: crate::proxy::ProxyConfig {
                outbound_addr: self.proxy_outbound,
                inbound_addr: self.proxy_inbound,
                inbound_port: self.proxy_inbound.port(),
                ..Default::default()
            },
            intercept: !self.no_intercept,
            dns: optional_addr(&self.dns_listen, "--dns-listen")?,
            metrics: optional_addr(&self.metrics_listen, "--metrics-listen")?,
            leases: Some(self.leases.clone()),
            mdns: !self.no_mdns,
            advertise: self.advertise,
            otlp: self.otlp_endpoint.clone(),
            trace_sample: self.trace_sample,
        }))
    }
}

fn default_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches('-').to_owned();
    if cleaned.is_empty() {
        "router".into()
    } else {
        cleaned.chars().take(63).collect()
    }
}

/// On a paired router the mesh ID and SAE password come from the controller (the state
/// directory's mesh.json): whenever the command line names neither a mesh ID, a password file
/// nor the open test mesh.
fn paired_mesh(
    args: &trellis_wifi::MeshArgs,
    state: &StateDir,
) -> crate::state::Result<Option<trellis_proto::snapshot::MeshCredentials>> {
    (!args.list && args.mesh_id.is_none() && args.password_file.is_none() && !args.open_test_mesh)
        .then(|| state.mesh())
        .transpose()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::init_logging(&cli.log);
    if let Command::Mesh(args) = cli.command {
        let paired = match paired_mesh(&args, &StateDir::new(&cli.state_dir)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("trellis-agent: no mesh credentials: {e}");
                return ExitCode::from(2);
            }
        };
        // The mesh supervisor runs on its own single-threaded runtime.
        return trellis_wifi::mesh::main(args, paired);
    }
    let runtime = match trellis_io::runtime::daemon() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = StateDir::new(&cli.state_dir);
    match cli.command {
        Command::Mesh(_) => unreachable!("handled above"),
        Command::Run(args) => match (Agent::load(state), args.service_mesh()) {
            (_, Err(e)) => {
                eprintln!("trellis-agent: {e}");
                ExitCode::from(2)
            }
            (Ok(agent), Ok(mesh)) => {
                let agent = agent.with_telemetry_interval(std::time::Duration::from_secs(
                    args.telemetry_interval,
                ));
                tracing::info!(identity = %agent.node.identity, controller = %agent.node.controller, "trellis-agent running");
                agent
                    .published
                    .mesh_report_file
                    .publish(Some(args.mesh_report.clone()));
                let speedtest = match optional_addr(&args.speedtest_listen, "--speedtest-listen") {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("trellis-agent: {e}");
                        return ExitCode::from(2);
                    }
                };
                runtime.block_on(async {
                    let handle = agent.start();
                    let channel_handover = tokio::spawn(crate::mesh_channel::follow(
                        handle.agent.snapshots(),
                        trellis_wifi::channel_file::beside(&args.mesh_report),
                    ));
                    if let Err(e) = crate::access_point::runner::start(&handle.agent, &args).await {
                        tracing::error!("access points not started: {e:#}");
                    }
                    let cables = crate::backhaul::start(handle.agent.clone(), handle.trust.clone());
                    let devices = crate::devices::start(
                        handle.agent.clone(),
                        handle.trust.clone(),
                        args.leases.clone(),
                        crate::control::address::LAN_BRIDGE.to_owned(),
                    );
                    let _speedtest = match speedtest {
                        Some(listen) => crate::speedtest::start(
                            listen,
                            args.advertise,
                            &handle.agent,
                            &handle.trust,
                        )
                        .await
                        .map_err(|e| {
                            tracing::error!("speed-test sink not started on {listen}: {e}")
                        })
                        .unwrap_or_default(),
                        None => Vec::new(),
                    };
                    // The data plane starts once a config is known (stored or fresh); a stop
                    // request may come before that.
                    let start_mesh = async {
                        let opts = mesh?;
                        crate::service_mesh::start(&handle, opts)
                            .await
                            .map_err(|e| tracing::error!("service mesh not started: {e:#}"))
                            .ok()
                    };
                    let (mesh, stop_requested) = tokio::select! {
                        m = start_mesh => (m, false),
                        _ = trellis_io::signal::shutdown() => (None, true),
                    };
                    if !stop_requested {
                        trellis_io::signal::shutdown().await;
                    }
                    tracing::info!("shutting down");
                    // Dropping the data plane removes nftables interception.
                    drop(mesh);
                    devices.abort();
                    cables.abort();
                    channel_handover.abort();
                    handle.stop();
                });
                ExitCode::SUCCESS
            }
            (Err(e), _) => {
                eprintln!("trellis-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Join {
            controller,
            code,
            name,
            force,
        } => {
            let code = match PairingCode::parse(&code) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("trellis-agent: {e}");
                    return ExitCode::from(2);
                }
            };
            let name = match NodeName::new(name.unwrap_or_else(default_name)) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("trellis-agent: {e}");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(join(&controller, &code, &name, &state, force)) {
                Ok(joined) => {
                    let hours = (joined.not_after.saturating_sub(crate::unix_now()) + 1800) / 3600;
                    println!(
                        "joined home {} as {}; certificate valid {hours} h (renewed automatically); start the agent: {}",
                        joined.node.home_id,
                        joined.node.identity,
                        start_advice(&cli.state_dir)
                    );
                    ExitCode::SUCCESS
                }
                Err(e @ JoinError::AlreadyJoined(_)) => {
                    eprintln!("trellis-agent: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("trellis-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// How to start the agent after a join: the service where it is installed as one (OpenWrt),
/// else the command itself.
fn start_advice(state_dir: &std::path::Path) -> String {
    if std::path::Path::new("/etc/init.d/trellis-agent").exists() {
        "/etc/init.d/trellis-agent restart".into()
    } else {
        format!("trellis-agent --state-dir {} run", state_dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["trellis-agent", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run(a) => Ok(a),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn a_collector_that_is_not_a_url_or_a_rate_out_of_range_is_refused_at_start() {
        let e = run_args(&["--otlp-endpoint", "jaeger"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no http:// scheme") && e.contains("http://192.168.1.10:4318"),
            "{e}"
        );
        let e = run_args(&["--trace-sample", "5"]).unwrap_err().to_string();
        assert!(e.contains("not a share between 0 and 1"), "{e}");
        let ok = run_args(&[
            "--otlp-endpoint",
            "http://10.0.0.5:4318",
            "--trace-sample",
            "0.1",
        ])
        .unwrap();
        let mesh = ok.service_mesh().unwrap().unwrap();
        assert_eq!(mesh.otlp.unwrap().url(), "http://10.0.0.5:4318/v1/traces");
        assert_eq!(mesh.trace_sample, 0.1);
        let none = run_args(&[]).unwrap().service_mesh().unwrap().unwrap();
        assert!(none.otlp.is_none(), "no collector unless one is named");
    }

    #[test]
    fn a_log_filter_that_is_not_one_is_refused_saying_what_to_write() {
        let e = Cli::try_parse_from(["trellis-agent", "--log", "garbage", "run"]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("\"garbage\" is not a log filter") && e.contains("e.g. info"),
            "{e}"
        );
        let cli = Cli::try_parse_from(["trellis-agent", "--log", "trellis_agent=debug", "run"]);
        assert_eq!(cli.unwrap().log, "trellis_agent=debug");
    }

    #[test]
    fn telemetry_goes_out_every_30_s_unless_told_otherwise() {
        assert_eq!(run_args(&[]).unwrap().telemetry_interval, 30);
        assert_eq!(
            run_args(&["--telemetry-interval", "2"])
                .unwrap()
                .telemetry_interval,
            2
        );
        // At least a second; at most an hour.
        assert!(run_args(&["--telemetry-interval", "0"]).is_err());
        assert!(run_args(&["--telemetry-interval", "3601"]).is_err());
        assert!(run_args(&["--telemetry-interval", "2s"]).is_err());
    }

    fn mesh_args(args: &[&str]) -> trellis_wifi::MeshArgs {
        let cli = Cli::try_parse_from(["trellis-agent", "mesh"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Mesh(a) => a,
            other => panic!("not mesh: {other:?}"),
        }
    }

    #[test]
    fn mesh_without_flags_takes_the_paired_credentials_from_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let bare = mesh_args(&["--phy", "phy1", "--bridge", "br-lan"]);
        // Not paired: say so (main prints it and exits 2).
        let err = paired_mesh(&bare, &state).unwrap_err().to_string();
        assert!(err.contains("trellis-agent join"), "{err}");
        let creds = trellis_proto::snapshot::MeshCredentials {
            mesh_id: "trellis-h0me".into(),
            sae_password: "a-long-random-mesh-password".into(),
        };
        state.create().unwrap();
        state.save_mesh(&creds).unwrap();
        let paired = paired_mesh(&bare, &state)
            .unwrap()
            .expect("paired credentials");
        assert_eq!(paired, creds);
        let s = trellis_wifi::mesh::MeshSettings::from_paired(&bare, &paired).unwrap();
        assert_eq!(s.mesh_id, "trellis-h0me");
        assert!(matches!(
            s.security,
            trellis_wifi::mesh::MeshSecurity::Sae(_)
        ));
        // Explicit flags win over pairing; --list needs no credentials at all.
        for flags in [
            &["--mesh-id", "lab", "--open-test-mesh"][..],
            &["--mesh-id", "lab", "--password-file", "/tmp/pw"],
            &["--list"],
        ] {
            assert!(
                paired_mesh(&mesh_args(flags), &state).unwrap().is_none(),
                "{flags:?}"
            );
        }
    }
}
