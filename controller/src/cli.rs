//! The `trellis` command: manage the home from the primary router's shell.
//!
//! It talks to the controller's admin socket, so it works only as root on the router (the
//! socket's permissions are the authentication). Exit codes: 0 done, 1 the controller
//! refused (the message says why), 2 usage error, 3 controller unreachable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hyper::Method;
use serde::Serialize;
use trellis_io::client::{self, ClientError};
use trellis_proto::api::{CaBackup, CertHealth, NewPairingCode, NodeInfo, RemovedNode, Status};

use trellis_proto::api::{NewService, NewSpeedTest, SpeedTest, SpeedTestState, WhyAnswer};
use trellis_proto::catalog::Service;
use trellis_proto::policy::{Action, Policy, Rule, ServiceMatch, SourceMatch};

use crate::api::admin::Device;
use trellis_proto::api::DeviceListing;

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
        action: Option<crate::cli_wifi::WifiCommand>,
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

fn source_match(s: &str) -> Result<SourceMatch, ClientError> {
    Ok(match s.split_once(':') {
        _ if s == "any" => SourceMatch::Any,
        Some(("group", g)) => SourceMatch::Group(g.to_owned()),
        Some(("device", m)) => SourceMatch::Device(
            m.parse()
                .map_err(|e: trellis_proto::policy::PolicyError| bad(e.to_string()))?,
        ),
        Some(("id", id)) => SourceMatch::Identity(
            id.parse()
                .map_err(|e: trellis_proto::identity::IdentityError| bad(e.to_string()))?,
        ),
        _ => {
            return Err(bad(format!(
                "{s:?} is not a source: use group:NAME, device:MAC, id:SPIFFE-ID or any"
            )))
        }
    })
}

fn service_match(s: &str) -> Result<ServiceMatch, ClientError> {
    let (service, port) = trellis_proto::policy::parse_target(s).map_err(|e| bad(e.to_string()))?;
    Ok(ServiceMatch {
        service: Some(service),
        ports: port.into_iter().collect(),
    })
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
    if let Command::Check { wpa_supplicant } = &cli.command {
        return check(&cli, wpa_supplicant);
    }
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

/// One line per speed test, in words.
fn speedtest_line(t: &SpeedTest) -> String {
    let what = format!("speed test {} → {}", t.from, t.to);
    match (t.state, t.bits_per_second, &t.error) {
        (SpeedTestState::Done, Some(bps), _) => format!(
            "{what}: {:.1} Mbit/s ({} MB in {} s, timed by {})",
            bps as f64 / 1e6,
            t.bytes.unwrap_or(0) / 1_000_000,
            t.seconds,
            t.to
        ),
        (SpeedTestState::Failed, _, Some(e)) => format!("{what} failed: {e}"),
        (SpeedTestState::Queued, ..) => format!("{what}: waiting for {}", t.from),
        (SpeedTestState::Running, ..) => format!("{what}: running"),
        _ => format!("{what}: {:?}", t.state),
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
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    Ok(match &cli.command {
        Command::Status => {
            let s: Status = call(cli, Method::GET, "/v1/admin/status", none).await?;
            show(cli, &s, |s| {
                format!(
                    "home:            {}\nconfig version:  {}\nrouters:         {}\nagent API:       {}\nroot CA expires: in {} days\ncontroller:      {}\n",
                    s.home_id,
                    s.config_version,
                    s.nodes,
                    if s.agent_api.is_empty() { "(the address satellites paired with)" } else { &s.agent_api },
                    s.ca_not_after.saturating_sub(now) / 86400,
                    s.controller_version
                )
            })
        }
        Command::Nodes => {
            let nodes: Vec<NodeInfo> = call(cli, Method::GET, "/v1/admin/nodes", none).await?;
            show(cli, &nodes, |nodes| {
                if nodes.is_empty() {
                    return "no routers yet: run `trellis pair` and then `trellis-agent join` on the satellite\n".into();
                }
                let mut out = format!(
                    "{:<20} {:<10} {:<14} {:<10} {:<10} {}\n",
                    "NAME", "STATE", "CERT EXPIRES", "CONFIG", "MESH HOPS", "LAST SEEN"
                );
                for n in nodes {
                    let state = if n.revoked { "removed" } else { "enrolled" };
                    let hops = match (n.portal, n.hops) {
                        (true, _) => "portal".to_owned(),
                        (false, Some(h)) => h.to_string(),
                        (false, None) => "-".to_owned(),
                    };
                    let cert = match (n.cert_health, n.cert_not_after) {
                        (Some(CertHealth::Expired { .. }), _) => "EXPIRED".into(),
                        (Some(CertHealth::RenewalLate { .. }), Some(t)) => {
                            format!("in {} LATE", ago(t, now))
                        }
                        (_, Some(t)) => format!("in {}", ago(t, now)),
                        (_, None) => "-".into(),
                    };
                    let seen = n
                        .last_seen_s
                        .map(|s| format!("{s} s ago"))
                        .unwrap_or_else(|| "-".into());
                    out += &format!(
                        "{:<20} {:<10} {:<14} v{:<9} {:<10} {}\n",
                        n.name.as_str(),
                        state,
                        cert,
                        n.acked_version,
                        hops,
                        seen
                    );
                }
                out
            })
        }
        Command::Pair { this_router } => {
            let req = trellis_proto::api::NewPairingCodeRequest {
                this_router: *this_router,
            };
            let code: NewPairingCode =
                call(cli, Method::POST, "/v1/admin/pairing-codes", Some(&req)).await?;
            show(cli, &code, |c| {
                format!(
                    "pairing code: {}\nvalid for {} minutes, single use. On the satellite run:\n  trellis-agent join <this router's address> {}\n",
                    c.code,
                    c.expires_in_s / 60,
                    c.code
                )
            })
        }
        Command::RemoveNode { name } => {
            let removed: RemovedNode = call(
                cli,
                Method::DELETE,
                &format!("/v1/admin/nodes/{name}"),
                none,
            )
            .await?;
            show(cli, &removed, |r| {
                format!(
                    "removed {}: its identity is revoked from config version {} on\n",
                    r.identity, r.config_version
                )
            })
        }
        Command::Devices { name: Some(name) } => crate::cli_wifi::device(cli, name).await?,
        Command::WhyRoam { name } => crate::cli_wifi::why_roam(cli, name).await?,
        Command::Devices { name: None } => {
            let devices: Vec<DeviceListing> =
                call(cli, Method::GET, "/v1/admin/devices", none).await?;
            show(cli, &devices, |ds| {
                if ds.is_empty() {
                    return "no devices yet: routers report their wifi clients and DHCP leases; `trellis set-device` names one\n".into();
                }
                let mut out = format!(
                    "{:<18} {:<24} {:<10} {:<16} {}\n",
                    "MAC", "NAME", "GROUP", "ROUTER", "LINK"
                );
                for d in ds {
                    let link = match (&d.signal_dbm, &d.port) {
                        (Some(s), _) => format!("wifi {s} dBm"),
                        (None, Some(p)) => format!("port {p}"),
                        (None, None) => "-".into(),
                    };
                    out += &format!(
                        "{:<18} {:<24} {:<10} {:<16} {}\n",
                        d.mac,
                        d.name,
                        d.group.as_deref().unwrap_or("-"),
                        d.router.as_deref().unwrap_or("not seen"),
                        link
                    );
                }
                out
            })
        }
        Command::SetDevice { mac, name, group } => {
            let body = Device {
                mac: mac.clone(),
                name: name.clone(),
                group: group.clone(),
            };
            let v: serde_json::Value =
                call(cli, Method::POST, "/v1/admin/devices", Some(&body)).await?;
            show(cli, &v, |_| {
                format!("{name} ({mac}) is now in group {group}\n")
            })
        }
        Command::SetupToken => {
            let v: serde_json::Value =
                call(cli, Method::GET, "/v1/admin/setup-token", none).await?;
            show(cli, &v, |v| {
                format!(
                    "{}\nType it on the router page (https://<this router>:7443/) to set the admin password.\n",
                    v["setup_token"].as_str().unwrap_or_default()
                )
            })
        }
        Command::ResetPassword => {
            let v: serde_json::Value =
                call(cli, Method::DELETE, "/v1/admin/web-password", none).await?;
            show(cli, &v, |v| {
                format!(
                    "The web page's password was reset and everyone was logged out.\nSetup token: {}\nOpen the router page to set a new password with it.\n",
                    v["setup_token"].as_str().unwrap_or_default()
                )
            })
        }
        Command::Services => {
            let services: Vec<Service> = call(cli, Method::GET, "/v1/admin/services", none).await?;
            show(cli, &services, |ss| {
                if ss.is_empty() {
                    return "no services yet: agents add what they find (mDNS, DHCP); add one by hand with trellis add-service\n".into();
                }
                let mut out = format!(
                    "{:<16} {:<34} {:<14} {:<12} {:<8} {}\n",
                    "NAME", "MESH NAME", "VIRTUAL IP", "PORTS", "FOUND", "RUNS ON"
                );
                for s in ss {
                    let ports: Vec<String> = s.ports.iter().map(|p| p.port.to_string()).collect();
                    let on: Vec<String> = s
                        .instances
                        .iter()
                        .map(|i| {
                            format!(
                                "{}@{}{}",
                                i.addr,
                                i.node,
                                if i.reachable { "" } else { " (unreachable)" }
                            )
                        })
                        .collect();
                    out += &format!(
                        "{:<16} {:<34} {:<14} {:<12} {:<8} {}\n",
                        s.name,
                        s.mesh_name(),
                        s.vip,
                        ports.join(","),
                        s.learned_via,
                        on.join(" ")
                    );
                }
                out
            })
        }
        Command::AddService {
            name,
            node,
            addr,
            ports,
        } => {
            let node =
                trellis_proto::NodeName::new(node.clone()).map_err(|e| bad(e.to_string()))?;
            let body = NewService {
                name: name.clone(),
                node,
                addr: *addr,
                ports: ports.clone(),
            };
            let s: Service = call(cli, Method::POST, "/v1/admin/services", Some(&body)).await?;
            show(cli, &s, |s| {
                format!("{} is {} ({})\n", s.name, s.mesh_name(), s.vip)
            })
        }
        Command::RemoveService { name } => {
            let v: serde_json::Value = call(
                cli,
                Method::DELETE,
                &format!("/v1/admin/services/{name}"),
                none,
            )
            .await?;
            show(cli, &v, |_| format!("removed service {name}\n"))
        }
        Command::Groups => {
            let p: Policy = call(cli, Method::GET, "/v1/admin/policy", none).await?;
            show(cli, &p.groups, |gs| {
                let mut out = format!("{:<16} {}\n", "GROUP", "WITHOUT A RULE");
                for g in gs {
                    let d = match g.default {
                        trellis_proto::policy::GroupDefault::AllServices => {
                            "reaches every home service"
                        }
                        trellis_proto::policy::GroupDefault::GrantedOnly => {
                            "reaches only what rules grant"
                        }
                    };
                    out += &format!("{:<16} {d}\n", g.name);
                }
                out
            })
        }
        Command::AddGroup { name } => {
            let v: serde_json::Value = call(
                cli,
                Method::POST,
                "/v1/admin/groups",
                Some(&serde_json::json!({ "name": name })),
            )
            .await?;
            show(cli, &v, |_| {
                format!("group {name} made; it reaches only what rules grant\n")
            })
        }
        Command::Policy { change: None } => {
            let p: Policy = call(cli, Method::GET, "/v1/admin/policy", none).await?;
            show(cli, &p.rules, |rules| {
                if rules.is_empty() {
                    return "no rules: trusted devices reach every service, iot and guest reach nothing\n".into();
                }
                let mut out = String::new();
                for r in rules {
                    out += &format!(
                        "{}: {} from {:?} to {:?}{}\n",
                        r.name,
                        r.action,
                        r.sources,
                        r.to,
                        if r.dry_run { " (dry run)" } else { "" }
                    );
                }
                out
            })
        }
        Command::Policy {
            change:
                Some(PolicyChange::Add {
                    name,
                    action,
                    from,
                    to,
                    dry_run,
                }),
        } => {
            let action = match action.as_str() {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                other => {
                    return Err(bad(format!(
                        "{other:?} is not an action: use allow or deny"
                    )))
                }
            };
            let rule = Rule {
                name: name.clone(),
                action,
                sources: from
                    .iter()
                    .map(|s| source_match(s))
                    .collect::<Result<_, _>>()?,
                to: to
                    .iter()
                    .map(|s| service_match(s))
                    .collect::<Result<_, _>>()?,
                dry_run: *dry_run,
            };
            let v: serde_json::Value =
                call(cli, Method::POST, "/v1/admin/policy/rules", Some(&rule)).await?;
            show(cli, &v, |v| {
                format!(
                    "rule {name} added (config version {})\n",
                    v["config_version"]
                )
            })
        }
        Command::Policy {
            change: Some(PolicyChange::Remove { name }),
        } => {
            let v: serde_json::Value = call(
                cli,
                Method::DELETE,
                &format!("/v1/admin/policy/rules/{name}"),
                none,
            )
            .await?;
            show(cli, &v, |_| format!("rule {name} removed\n"))
        }
        Command::Why { source, target } => {
            let path = format!(
                "/v1/admin/why?source={}&target={}",
                query_value(source),
                query_value(target)
            );
            let w: WhyAnswer = call(cli, Method::GET, &path, none).await?;
            show(cli, &w, |w| format!("{}\n", w.explanation))
        }
        Command::Check { .. } => unreachable!("handled in main"),
        Command::Channel { change } => {
            let view = match crate::channel::cli::request(change.as_ref()) {
                None => call(cli, Method::GET, "/v1/admin/channel", none).await?,
                Some(req) => call(cli, Method::POST, "/v1/admin/channel", Some(&req)).await?,
            };
            show(cli, &view, |v| {
                crate::channel::cli::render(v, change.as_ref(), now)
            })
        }
        Command::Topology => {
            let links: Vec<trellis_proto::api::TopologyLink> =
                call(cli, Method::GET, "/v1/admin/topology", none).await?;
            show(cli, &links, |ls| {
                if ls.is_empty() {
                    return "no mesh links reported yet (routers report every 30 s once trellis-agent mesh runs)\n".into();
                }
                let mut out = format!(
                    "{:<16} {:<18} {:<5} {:>8} {:>10} {:>17} {:>7} {:<9} {}\n",
                    "FROM",
                    "TO",
                    "VIA",
                    "SIGNAL",
                    "THROUGHPUT",
                    "MEASURED",
                    "METRIC",
                    "QUALITY",
                    "ADVICE"
                );
                for l in ls {
                    let dash = || "-".to_string();
                    out += &format!(
                        "{:<16} {:<18} {:<5} {:>8} {:>10} {:>17} {:>7} {:<9} {}\n",
                        l.from.as_str(),
                        l.to,
                        l.medium.as_str(),
                        l.signal_dbm
                            .map(|s| format!("{s} dBm"))
                            .unwrap_or_else(dash),
                        l.expected_throughput_kbps
                            .map(|t| format!("{} Mb/s", t / 1000))
                            .unwrap_or_else(dash),
                        l.measured
                            .as_ref()
                            .map(|m| format!(
                                "{} Mb/s {} ago",
                                m.bits_per_second / 1_000_000,
                                ago(now, m.at)
                            ))
                            .unwrap_or_else(dash),
                        l.airtime_metric.map(|m| m.to_string()).unwrap_or_else(dash),
                        l.verdict.as_str(),
                        l.advice.join("; ")
                    );
                }
                out
            })
        }
        Command::Traces {
            device,
            service,
            limit,
        } => {
            let mut path = format!("/v1/admin/traces?limit={limit}");
            if let Some(d) = device {
                path += &format!("&device={}", query_value(d));
            }
            if let Some(s) = service {
                path += &format!("&service={}", query_value(s));
            }
            let traces: Vec<crate::traces::TraceView> = call(cli, Method::GET, &path, none).await?;
            show(cli, &traces, |ts| crate::traces::render_text(ts))
        }
        Command::Graph { window } => {
            let map: crate::graph::DependencyMap = call(
                cli,
                Method::GET,
                &format!("/v1/admin/graph?window={window}"),
                none,
            )
            .await?;
            show(cli, &map, crate::graph::render_text)
        }
        Command::Traffic => {
            let charts: Vec<crate::traffic::ServiceChart> =
                call(cli, Method::GET, "/v1/admin/traffic", none).await?;
            show(cli, &charts, |cs| {
                if cs.is_empty() {
                    return "no traffic reported yet (routers report with their telemetry, every 30 s)\n".into();
                }
                let mut out = format!("{:<24} {:>12} {:>14}\n", "SERVICE", "CONNECTIONS", "BYTES");
                for c in cs {
                    out += &format!(
                        "{:<24} {:>12} {:>14}\n",
                        c.service, c.connections_total, c.bytes_total
                    );
                }
                out + "(last hour; bytes count when a connection ends)\n"
            })
        }
        Command::Speedtest {
            from,
            to,
            seconds,
            list,
        } => {
            if *list {
                let tests: Vec<SpeedTest> =
                    call(cli, Method::GET, "/v1/admin/speedtests", none).await?;
                return Ok(show(cli, &tests, |ts| {
                    if ts.is_empty() {
                        return "no speed tests since the controller started\n".into();
                    }
                    ts.iter()
                        .map(|t| {
                            format!(
                                "{:>8} ago  {}\n",
                                ago(now, t.requested_at),
                                speedtest_line(t)
                            )
                        })
                        .collect()
                }));
            }
            let (Some(from), Some(to)) = (from, to) else {
                return Err(bad(
                    "name the sending and the receiving router: trellis speedtest FROM TO (see trellis nodes)",
                ));
            };
            let req = NewSpeedTest {
                from: from
                    .parse()
                    .map_err(|e: trellis_proto::identity::IdentityError| bad(e.to_string()))?,
                to: to
                    .parse()
                    .map_err(|e: trellis_proto::identity::IdentityError| bad(e.to_string()))?,
                seconds: Some(*seconds),
            };
            let mut test: SpeedTest =
                call(cli, Method::POST, "/v1/admin/speedtests", Some(&req)).await?;
            if !cli.json {
                eprintln!(
                    "speed test {} → {} queued ({} s)…",
                    test.from, test.to, test.seconds
                );
            }
            let mut said_running = false;
            while matches!(test.state, SpeedTestState::Queued | SpeedTestState::Running) {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                test = call(
                    cli,
                    Method::GET,
                    &format!("/v1/admin/speedtests/{}", test.id),
                    none,
                )
                .await?;
                if test.state == SpeedTestState::Running && !said_running && !cli.json {
                    eprintln!("{} is sending…", test.from);
                    said_running = true;
                }
            }
            if test.state == SpeedTestState::Failed {
                return Err(ClientError::Status {
                    status: hyper::StatusCode::BAD_GATEWAY,
                    message: speedtest_line(&test),
                });
            }
            show(cli, &test, |t| format!("{}\n", speedtest_line(t)))
        }
        Command::Events => {
            let events: Vec<crate::home::Event> =
                call(cli, Method::GET, "/v1/admin/events", none).await?;
            show(cli, &events, |es| {
                if es.is_empty() {
                    return "nothing has happened since the controller started\n".into();
                }
                es.iter()
                    .map(|e| format!("{:>8} ago  {:<9} {}\n", ago(now, e.at), e.kind, e.message))
                    .collect()
            })
        }
        Command::Wifi { action } => crate::cli_wifi::run(cli, action.as_ref()).await?,
        Command::CaBackup => {
            let b: CaBackup = call(cli, Method::GET, "/v1/admin/ca/backup", none).await?;
            show(cli, &b, |b| {
                format!(
                    "# Trellis home {} — keep this file secret\n{}{}",
                    b.home_id, b.ca_cert_pem, b.ca_key_pem
                )
            })
        }
    })
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

/// `trellis check`: every finding with its fix; the exit code says the worst.
fn check(cli: &Cli, wpa: &std::path::Path) -> ExitCode {
    use crate::check::{self as diag, Finding, Level};
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
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let fetched = runtime.block_on(async {
        let nodes: Vec<NodeInfo> = call(cli, Method::GET, "/v1/admin/nodes", none).await?;
        let links: Vec<trellis_proto::api::TopologyLink> =
            call(cli, Method::GET, "/v1/admin/topology", none).await?;
        Ok::<_, ClientError>((nodes, links))
    });
    let mut findings: Vec<Finding> = Vec::new();
    let mut unreachable = false;
    let mut wifi_mesh = true;
    match fetched {
        Ok((nodes, links)) => {
            findings.push(Finding {
                level: Level::Ok,
                what: format!("controller answers on {}", cli.socket.display()),
                fix: String::new(),
            });
            findings.extend(diag::certificates(&nodes));
            findings.extend(diag::clocks(&nodes, now));
            findings.extend(diag::mesh_links(&nodes, &links));
            findings.extend(diag::home_wifi(&nodes));
            wifi_mesh = diag::wifi_mesh_needed(&nodes, &links);
        }
        Err(e) => {
            unreachable = true;
            findings.push(Finding {
                level: Level::Fail,
                what: format!("the controller does not answer on {}: {e}", cli.socket.display()),
                fix: if installed_as_service() {
                    "start it: /etc/init.d/trellis-controller start; logread -e trellis says why it stopped".into()
                } else {
                    format!("start it: trellis-controller --admin-socket {} (its log says why it stopped)", cli.socket.display())
                },
            });
        }
    }
    findings.push(if wifi_mesh {
        diag::wpa_supplicant(wpa)
    } else {
        Finding {
            level: Level::Ok,
            what: "every router is linked by cable: no wifi mesh, wpa_supplicant not needed".into(),
            fix: String::new(),
        }
    });
    findings.push(diag::mdns_port());
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        );
    } else {
        for f in &findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag} {}", f.what);
            if !f.fix.is_empty() {
                println!("     fix: {}", f.fix);
            }
        }
    }
    let worst = findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok);
    match (unreachable, worst) {
        (true, _) => ExitCode::from(3),
        (_, Level::Fail) => ExitCode::from(5),
        (_, Level::Warn) => ExitCode::from(4),
        _ => ExitCode::SUCCESS,
    }
}
