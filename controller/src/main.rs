//! `trellis-controller`, and `trellis` when invoked through that name (multi-call binary).
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if called == "trellis" {
        trellis_controller::cli::main()
    } else {
        trellis_controller::daemon::main()
    }
}
