//! The accept loop survives running out of file descriptors (EMFILE), without spinning, and
//! serves again once descriptors are free. Its own test binary: it lowers RLIMIT_NOFILE of
//! the whole process.

mod common;

use std::time::{Duration, Instant};

use common::{admitted, connect_from, holding_listener, Log};
use trellis_io::Limits;

fn nofile() -> libc::rlimit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r
}

fn set_nofile(r: libc::rlimit) {
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_loop_pauses_logs_little_and_serves_again() {
    let log = Log::install();
    let (addr, gate) = holding_listener(
        "emfile",
        Limits {
            total: 1000,
            per_source: 1000,
        },
    )
    .await;
    let before = nofile();
    set_nofile(libc::rlimit {
        rlim_cur: open_fds() + 8,
        rlim_max: before.rlim_max,
    });
    // Clients take descriptors until none is left; the server then cannot accept the ones
    // still queued: accept() fails with EMFILE while the listener stays readable.
    let mut clients = Vec::new();
    while let Ok(s) = connect_from(4, addr).await {
        clients.push(s);
        assert!(clients.len() < 100, "the descriptor limit did not bite");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while gate.accept_errors() == 0 {
        assert!(Instant::now() < deadline, "accept never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Watch for a second: a loop that retried at once would fail hundreds of thousands of
    // times; one that pauses 100 ms after each failure, about ten.
    let errors_then = gate.accept_errors();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let in_a_second = gate.accept_errors() - errors_then;
    assert!(
        in_a_second <= 50,
        "{in_a_second} accept errors in a second: the loop spins"
    );
    let lines = log.lines_with("accept failed");
    assert!((1..=2).contains(&lines), "{lines} log lines");
    // Descriptors back: the same loop accepts and serves again.
    drop(clients);
    set_nofile(before);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = connect_from(5, addr).await {
            if admitted(&mut s).await {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the loop did not serve again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
