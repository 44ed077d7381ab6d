//! The `trellis` command: talks to the controller's admin socket.
use std::process::ExitCode;

use clap::Parser;

/// Manage the Trellis home from the primary router.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {}

pub fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
