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
    #[arg(long, global = true, default_value = "/etc/trellis/agent")]
    pub state_dir: PathBuf,
    /// Log filter, e.g. `info` or `trellis_agent=debug`.
    #[arg(long, global = true, env = "TRELLIS_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (what procd starts): follow the controller, renew the certificate.
    Run,
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = StateDir::new(&cli.state_dir);
    match cli.command {
        Command::Run => match Agent::load(state) {
            Ok(agent) => {
                tracing::info!(identity = %agent.node.identity, controller = %agent.node.controller, "trellis-agent running");
                runtime.block_on(async {
                    let handle = agent.start();
                    tokio::select! {
                        _ = handle.wait() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                });
                ExitCode::SUCCESS
            }
            Err(e) => {
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
                    let hours = joined.not_after.saturating_sub(crate::unix_now()) / 3600;
                    println!(
                        "joined home {} as {}; certificate valid {hours} h (renewed automatically); start the agent: /etc/init.d/trellis-agent restart",
                        joined.node.home_id, joined.node.identity
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
