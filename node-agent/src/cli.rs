//! The `trellis-agent` command line.
use std::process::ExitCode;

use clap::Parser;

/// The Trellis agent: joins this router to the home and keeps it in line with the controller.
#[derive(Debug, Parser)]
#[command(name = "trellis-agent", version, about)]
pub struct Cli {}

pub fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
