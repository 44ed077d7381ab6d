//! The `trellis-controller` process.
use std::process::ExitCode;

use clap::Parser;

/// The Trellis controller: certificate authority, pairing, store and APIs of the home.
#[derive(Debug, Parser)]
#[command(name = "trellis-controller", version, about)]
pub struct Options {}

pub fn main() -> ExitCode {
    let _opts = Options::parse();
    ExitCode::SUCCESS
}
