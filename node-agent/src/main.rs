//! `trellis-agent`: the daemon on every router of the home.
use std::process::ExitCode;

/// On the router build (static musl) the agent brings its own allocator: musl's malloc
/// serves large requests with a fresh mmap and gives them back at once, and a tunnel under
/// bulk load reallocates its read buffers while h2 still holds the previous chunk, so every
/// read cost an mmap and a munmap (strace: ~4300 of each in 3 s of iperf3). dlmalloc keeps
/// freed memory for reuse, up to its trim threshold.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    trellis_agent::cli::main()
}
