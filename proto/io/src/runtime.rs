//! The daemons' async runtime, and the one way their code waits on flash or a child process.
//!
//! Both daemons run two async workers: a router has one to four cores, and everything they do
//! is small. A SQLite commit (`synchronous=FULL` waits for the flash) or an `nft` run can take
//! tens of milliseconds on a router; done on a worker, every other connection of that worker
//! waits behind it. [`blocking`] is the rule for such calls: it tells the runtime that this
//! thread is about to block, so the other tasks move to a fresh worker in the meantime. The
//! blocking pool is bounded, so a burst of such calls cannot start hundreds of threads.

use std::io;

use tokio::runtime::{Builder, Handle, Runtime, RuntimeFlavor};

/// Async workers of a daemon.
pub const WORKERS: usize = 2;

/// Threads the runtime may start for blocking work (each maps a stack; a router has 128 MB).
pub const MAX_BLOCKING_THREADS: usize = 16;

/// The runtime both daemons run on.
pub fn daemon() -> io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
}

/// Runs `f`, which may block on flash or a child process, without stalling the async tasks
/// that share this thread. On a daemon's runtime the worker hands its other tasks to a fresh
/// one first; outside a runtime, on a blocking-pool thread, or on a single-threaded runtime
/// (the CLIs, the tests), `f` simply runs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocking_call_does_not_stall_the_other_tasks_of_its_worker() {
        // One worker: without the hand-over, the second task could not run until the first
        // stopped blocking.
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let stuck = rt.spawn(async move {
            blocking(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
        });
        started.recv().expect("the blocking call started");
        let (ran_tx, ran) = mpsc::channel();
        rt.spawn(async move {
            tokio::task::yield_now().await;
            let _ = ran_tx.send(());
        });
        // The bound only turns a hang into a failure; a pass does not wait for it.
        let other_ran = ran.recv_timeout(Duration::from_secs(60)).is_ok();
        let _ = release.send(());
        rt.block_on(stuck).expect("the blocking task ends");
        assert!(
            other_ran,
            "another task could not run while one blocked in `blocking`"
        );
    }

    #[test]
    fn outside_a_multi_threaded_runtime_it_just_runs() {
        assert_eq!(blocking(|| 7), 7);
        let rt = Builder::new_current_thread().build().expect("runtime");
        assert_eq!(rt.block_on(async { blocking(|| 8) }), 8);
    }
}
