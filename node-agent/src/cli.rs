//! The `trellis-agent` command line.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Trellis agent: joins this router to the home and keeps it in line with the controller.
#[derive(Debug, Parser)]
#[command(name = "trellis-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Form, secure and supervise the 802.11s mesh on one radio; report links and paths as JSON lines.
    Mesh(crate::wifi::MeshArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Mesh(args)) => crate::wifi::mesh::main(args),
        None => ExitCode::SUCCESS,
    }
}
