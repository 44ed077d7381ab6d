//! `trellis-agent`: the daemon on every router of the home.
use std::process::ExitCode;

fn main() -> ExitCode {
    trellis_agent::cli::main()
}
