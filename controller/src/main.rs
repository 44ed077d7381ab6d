//! `trellis-controller`, and `trellis` when invoked through that name (multi-call binary).
//! Built with the `agent` feature (the primary router's package), it is `trellis-agent`
//! too when called by that name: the primary then ships one copy of the runtime (tokio,
//! rustls, ring, hyper) instead of two.
use std::process::ExitCode;

/// The agent's allocator (see node-agent/src/main.rs for why): this binary runs the agent's
/// data plane on the primary router.
#[cfg(all(feature = "agent", target_env = "musl"))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    match called.as_str() {
        "trellis" => trellis_controller::cli::main(),
        #[cfg(feature = "agent")]
        "trellis-agent" => trellis_agent::cli::main(),
        _ => trellis_controller::daemon::main(),
    }
}
