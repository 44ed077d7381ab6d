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
use trellis_proto::api::{CaBackup, NewPairingCode, NodeInfo, RemovedNode, Status};
use trellis_proto::client::{self, ClientError};

use crate::api::admin::Device;

/// Manage the Trellis home: routers, pairing, devices.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    /// The controller's admin socket.
    #[arg(long, global = true, default_value = "/var/run/trellis/admin.sock")]
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
    Pair,
    /// Remove a router: revokes its identity on every agent.
    RemoveNode { name: String },
    /// Devices known by MAC and their groups.
    Devices,
    /// Name a device and put it in a group (trusted, iot, guest, or one you made).
    SetDevice {
        mac: String,
        name: String,
        group: String,
    },
    /// Print the CA certificate and key for a backup (keep it secret).
    CaBackup,
    /// Print the one-time token that sets the web page's admin password on first run.
    SetupToken,
    /// Forget the web page's admin password (logs everyone out) and print a new setup token.
    ResetPassword,
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
    match runtime.block_on(run(&cli)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e @ ClientError::Connection(_)) => {
            eprintln!(
                "trellis: cannot reach the controller at {}: {e}\n  Is it running? (/etc/init.d/trellis-controller status); are you root?",
                cli.socket.display()
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("trellis: {e}");
            ExitCode::from(1)
        }
    }
}

async fn call<T: serde::de::DeserializeOwned, B: Serialize>(
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

fn show<T: Serialize>(cli: &Cli, value: &T, text: impl FnOnce(&T) -> String) -> String {
    if cli.json {
        serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .unwrap_or_default()
    } else {
        text(value)
    }
}

fn ago(now: u64, t: u64) -> String {
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
                    "{:<20} {:<10} {:<14} {:<10} {}\n",
                    "NAME", "STATE", "CERT EXPIRES", "CONFIG", "LAST SEEN"
                );
                for n in nodes {
                    let state = if n.revoked { "removed" } else { "enrolled" };
                    let cert = match n.cert_not_after {
                        Some(t) if t > now => format!("in {}", ago(t, now)),
                        Some(_) => "EXPIRED".into(),
                        None => "-".into(),
                    };
                    let seen = n
                        .last_seen_s
                        .map(|s| format!("{s} s ago"))
                        .unwrap_or_else(|| "-".into());
                    out += &format!(
                        "{:<20} {:<10} {:<14} v{:<9} {}\n",
                        n.name.as_str(),
                        state,
                        cert,
                        n.acked_version,
                        seen
                    );
                }
                out
            })
        }
        Command::Pair => {
            let code: NewPairingCode =
                call(cli, Method::POST, "/v1/admin/pairing-codes", none).await?;
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
        Command::Devices => {
            let devices: Vec<Device> = call(cli, Method::GET, "/v1/admin/devices", none).await?;
            show(cli, &devices, |ds| {
                let mut out = format!("{:<18} {:<24} {}\n", "MAC", "NAME", "GROUP");
                for d in ds {
                    out += &format!("{:<18} {:<24} {}\n", d.mac, d.name, d.group);
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
