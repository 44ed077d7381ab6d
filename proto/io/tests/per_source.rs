//! One source address cannot hold more than its cap; others still get in; refusals are
//! counted and logged in a bounded number of lines (real sockets on 127.0.0.0/8).

mod common;

use common::{admitted, connect_from, holding_listener, Log};
use trellis_io::{Limits, Refusal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_cap_and_refusals_are_counted_in_one_log_line() {
    let log = Log::install();
    let (addr, gate) = holding_listener(
        "test",
        Limits {
            total: 64,
            per_source: 4,
        },
    )
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match connect_from(2, addr).await {
            Ok(mut s) => {
                if admitted(&mut s).await {
                    held.push(s);
                } else {
                    refused += 1;
                }
            }
            Err(_) => refused += 1, // the reset came before connect() returned
        }
    }
    assert_eq!(held.len(), 4, "127.0.0.2 holds its cap of 4, no more");
    assert_eq!(refused, 36);
    // Another device still gets in.
    let mut other = connect_from(3, addr).await.unwrap();
    assert!(admitted(&mut other).await, "127.0.0.3 is not locked out");
    assert_eq!(gate.refused(Refusal::PerSourceCap), 36);
    let mut page = String::new();
    trellis_io::metrics::render(std::slice::from_ref(&gate), &mut page);
    assert!(
        page.contains(
            "trellis_listener_refused_total{listener=\"test\",reason=\"per_source_cap\"} 36"
        ),
        "{page}"
    );
    // 36 refusals, one line now (the next would come a minute later at the earliest).
    let lines = log.lines_with("connections refused");
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for 36 refusals"
    );
    // Freed places come back.
    drop(held.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // A refusal's reset can reach the client before connect() returns: either way it
        // was refused, and only an admitted connection ends the loop.
        if let Ok(mut again) = connect_from(2, addr).await {
            if admitted(&mut again).await {
                break;
            }
        }
        // The server may not have seen the close yet: that is a refusal, try once more.
        assert!(
            std::time::Instant::now() < deadline,
            "a freed place never came back"
        );
        tokio::task::yield_now().await;
    }
}
