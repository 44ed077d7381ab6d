//! The `trellis` command: manage the home from the primary router's shell.
//!
//! It talks to the controller's admin socket, so it works only as root on the router (the
//! socket's permissions are the authentication). Exit codes: 0 done, 1 the controller
//! refused (the message says why), 2 usage error, 3 controller unreachable.
//!
//! The commands live by concern: [`fleet`] the home and its routers, [`catalog`] devices,
//! services, groups and policy, [`observe`] traffic, the dependency map and traces, [`wifi`]
//! the home's networks and roams, [`check`] `trellis check`. Each asks the controller over the
//! admin API and words its answer; none decides anything itself.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hyper::Method;
use serde::Serialize;
use trellis_io::client::{self, ClientError};

mod catalog;
mod check;
mod fleet;
mod observe;
pub mod wifi;

/// Manage the Trellis home: routers, pairing, devices.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    /// The controller's admin socket.
    #[arg(long, global = true, default_value_os_t = trellis_io::paths::admin_socket())]
    pub socket: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The home at a glance: ID, config version, routers, CA expiry.
    Status,
    /// The routers of the home and their state.
    Nodes,
    /// Make a pairing code for a new satellite (single use, 10 minutes).
    Pair {
        /// The code is for the agent on this router (the one the controller runs on), which
        /// then shows as the portal: the centre of the map, hop 0. The firmware's init
        /// script uses it; a person pairing a satellite does not.
        #[arg(long)]
        this_router: bool,
    },
    /// Remove a router: revokes its identity on every agent.
    RemoveNode { name: String },
    /// Devices: the device book (names, groups) and the router each is behind now;
    /// `trellis devices NAME`: one device, with its recent wifi roams and steers.
    Devices { name: Option<String> },
    /// Why a wifi device was (or was not) asked to move, with the figures:
    /// `trellis why-roam phone`.
    WhyRoam { name: String },
    /// Name a device and put it in a group (trusted, iot, guest, or one you made).
    SetDevice {
        mac: String,
        name: String,
        group: String,
    },
    /// The home's services: mesh name, virtual IP, where they run, how they were found.
    Services,
    /// Add a service by hand: `trellis add-service printer --node attic --addr 192.168.1.40 --port 631`.
    AddService {
        name: String,
        /// The router the device sits behind.
        #[arg(long)]
        node: String,
        /// The device's address on that router's segment.
        #[arg(long)]
        addr: std::net::IpAddr,
        /// A port it listens on (repeat for several).
        #[arg(long = "port", required = true)]
        ports: Vec<u16>,
    },
    /// Remove a service from the catalog.
    RemoveService { name: String },
    /// Device groups and what each reaches when no rule speaks.
    Groups,
    /// Make a device group (it reaches only what rules grant).
    AddGroup { name: String },
    /// Policy rules; `trellis policy add …` and `trellis policy remove NAME` change them.
    Policy {
        #[command(subcommand)]
        change: Option<PolicyChange>,
    },
    /// Explain a decision: `trellis why thermostat nas:445` (source: device name, MAC, IP or
    /// SPIFFE ID).
    Why { source: String, target: String },
    /// What happened lately: pairings, removals, rule and catalog changes (newest first).
    Events,
    /// The mesh links between the routers, with signal, throughput and advice.
    Topology,
    /// The mesh channel: each router's survey, the current channel, the choice and the
    /// runner-up; `trellis channel set 36 [--width 80]`, `trellis channel pick`,
    /// `trellis channel dfs exclude|allow` move the whole mesh together.
    Channel {
        #[command(subcommand)]
        change: Option<crate::channel::cli::ChannelChange>,
    },
    /// Connections and bytes per service over the last hour, from the routers' proxies.
    Traffic,
    /// Who talks to whom: each device or workload and the services it reaches or was
    /// refused, with connections, bytes, connect latency and denials (`--json` for tools).
    Graph {
        /// Minutes of the last hour to sum (1 to 60).
        #[arg(long, default_value_t = crate::graph::DEFAULT_WINDOW_MIN)]
        window: u32,
    },
    /// Recent connections through the mesh, one trace each: source proxy, tunnel,
    /// destination proxy, last hop (newest first).
    Traces {
        /// Only this device (name, address or identity).
        #[arg(long)]
        device: Option<String>,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// At most this many traces.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Measure TCP throughput from one router to another (one mesh hop when they are
    /// neighbours): `trellis speedtest attic garage`. Waits for the result; exit 1 if it fails.
    Speedtest {
        /// The router that sends.
        from: Option<String>,
        /// The router that receives.
        to: Option<String>,
        /// How long to send (1–30 s).
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// List recent tests instead of running one.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        list: bool,
    },
    /// Diagnose common failures and say how to fix each (exit 0 fine, 4 warnings, 5 failures).
    Check {
        /// The wpa_supplicant the mesh uses.
        #[arg(long, default_value = "/usr/sbin/wpa_supplicant")]
        wpa_supplicant: PathBuf,
    },
    /// The home's wifi networks: `trellis wifi`, `wifi set home|iot|guest`, `wifi remove`,
    /// `wifi import` (this router's existing SSID and key).
    Wifi {
        #[command(subcommand)]
        action: Option<wifi::WifiCommand>,
    },
    /// Print the CA certificate and key for a backup (keep it secret).
    CaBackup,
    /// Print the one-time token that sets the web page's admin password on first run.
    SetupToken,
    /// Forget the web page's admin password (logs everyone out) and print a new setup token.
    ResetPassword,
}

#[derive(Debug, Subcommand)]
pub enum PolicyChange {
    /// Add a rule: `trellis policy add iot-printing allow --from group:iot --to printer:631`.
    Add {
        name: String,
        /// allow or deny (deny wins when both match).
        action: String,
        /// Sources: `group:NAME`, `device:MAC`, `id:SPIFFE-ID` or `any` (repeatable).
        #[arg(long = "from", required = true)]
        from: Vec<String>,
        /// Destinations: `SERVICE` or `SERVICE:PORT` (repeatable; none = every service).
        #[arg(long = "to")]
        to: Vec<String>,
        /// Log what the rule would deny instead of enforcing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a rule by name.
    Remove { name: String },
}

/// What the person typed is not valid: exit 1 with the reason, before any request.
pub(crate) fn bad(message: impl Into<String>) -> ClientError {
    ClientError::Status {
        status: hyper::StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

/// Percent-encode a query value (SPIFFE IDs carry ':' and '/').
pub(crate) fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Check { wpa_supplicant } = &cli.command {
        return check::check(&cli, wpa_supplicant, &runtime);
    }
    match runtime.block_on(run(&cli)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e @ ClientError::Connection(_)) => {
            eprintln!(
                "trellis: cannot reach the controller at {}: {e}\n  Is it running? ({}); are you root?",
                cli.socket.display(),
                how_to_see_the_service()
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("trellis: {e}");
            ExitCode::from(1)
        }
    }
}

pub(crate) async fn call<T: serde::de::DeserializeOwned, B: Serialize>(
    cli: &Cli,
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<T, ClientError> {
    let io = tokio::net::UnixStream::connect(&cli.socket)
        .await
        .map_err(|e| ClientError::Connection(e.to_string()))?;
    client::request(io, method, path, body).await?.json()
}

pub(crate) fn show<T: Serialize>(cli: &Cli, value: &T, text: impl FnOnce(&T) -> String) -> String {
    if cli.json {
        serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .unwrap_or_default()
    } else {
        text(value)
    }
}

pub(crate) fn ago(now: u64, t: u64) -> String {
    let s = now.saturating_sub(t);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// Run one command and return what to print.
pub async fn run(cli: &Cli) -> Result<String, ClientError> {
    match &cli.command {
        Command::Status => fleet::status(cli).await,
        Command::Nodes => fleet::nodes(cli).await,
        Command::Pair { this_router } => fleet::pair(cli, *this_router).await,
        Command::RemoveNode { name } => fleet::remove_node(cli, name).await,
        Command::Devices { name: Some(name) } => wifi::device(cli, name).await,
        Command::WhyRoam { name } => wifi::why_roam(cli, name).await,
        Command::Devices { name: None } => catalog::devices(cli).await,
        Command::SetDevice { mac, name, group } => catalog::set_device(cli, mac, name, group).await,
        Command::SetupToken => fleet::setup_token(cli).await,
        Command::ResetPassword => fleet::reset_password(cli).await,
        Command::Services => catalog::services(cli).await,
        Command::AddService {
            name,
            node,
            addr,
            ports,
        } => catalog::add_service(cli, name, node, *addr, ports).await,
        Command::RemoveService { name } => catalog::remove_service(cli, name).await,
        Command::Groups => catalog::groups(cli).await,
        Command::AddGroup { name } => catalog::add_group(cli, name).await,
        Command::Policy { change: None } => catalog::policy(cli).await,
        Command::Policy {
            change:
                Some(PolicyChange::Add {
                    name,
                    action,
                    from,
                    to,
                    dry_run,
                }),
        } => catalog::add_rule(cli, name, action, from, to, *dry_run).await,
        Command::Policy {
            change: Some(PolicyChange::Remove { name }),
        } => catalog::remove_rule(cli, name).await,
        Command::Why { source, target } => catalog::why(cli, source, target).await,
        Command::Check { .. } => unreachable!("handled in main"),
        Command::Channel { change } => fleet::channel(cli, change.as_ref()).await,
        Command::Topology => fleet::topology(cli).await,
        Command::Traces {
            device,
            service,
            limit,
        } => observe::traces(cli, device.as_deref(), service.as_deref(), *limit).await,
        Command::Graph { window } => observe::graph(cli, *window).await,
        Command::Traffic => observe::traffic(cli).await,
        Command::Speedtest {
            from,
            to,
            seconds,
            list,
        } => fleet::speedtest(cli, from.as_deref(), to.as_deref(), *seconds, *list).await,
        Command::Events => fleet::events(cli).await,
        Command::Wifi { action } => wifi::run(cli, action.as_ref()).await,
        Command::CaBackup => fleet::ca_backup(cli).await,
    }
}

/// Whether the controller is installed as an OpenWrt service here (else advice names the
/// command, not an init script that is not there).
fn installed_as_service() -> bool {
    std::path::Path::new("/etc/init.d/trellis-controller").exists()
}

fn how_to_see_the_service() -> &'static str {
    if installed_as_service() {
        "/etc/init.d/trellis-controller status"
    } else {
        "is a trellis-controller process running with this --admin-socket?"
    }
}
