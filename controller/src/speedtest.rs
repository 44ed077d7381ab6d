//! Speed tests between routers, like `batctl tp`: a person asks (page or `trellis speedtest`),
//! the controller queues the test, the sending router's agent picks it up with a long poll,
//! sends to the receiver's sink over mutual TLS for a few seconds and reports what the
//! receiver counted. One test runs at a time (two would share the air and halve each other);
//! the most recent [`MAX_KEPT`] stay in RAM, for the page and the CLI.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use trellis_proto::api::{SpeedTest, SpeedTestJob, SpeedTestOutcome, SpeedTestState};
use trellis_proto::{NodeName, SpiffeId};

use crate::error::{HomeError, Kind};

/// Finished tests kept for the page (RAM only).
pub const MAX_KEPT: usize = 20;
pub const DEFAULT_SECONDS: u32 = 5;
pub const MAX_SECONDS: u32 = 30;
/// A queued test the sender has not picked up by then failed (the agent polls continuously,
/// so an online router takes it within a second).
pub const PICKUP_TIMEOUT_S: u64 = 20;
/// A running test whose result has not arrived this long after its sending time failed.
pub const REPORT_GRACE_S: u64 = 20;

/// Where the sending agent is to connect: kept beside the public record.
#[derive(Debug, Clone)]
struct Entry {
    test: SpeedTest,
    to_identity: SpiffeId,
    to_addr: String,
}

#[derive(Debug, Default)]
struct Book {
    next_id: u64,
    entries: VecDeque<Entry>,
}

/// The controller's speed tests.
#[derive(Debug)]
pub struct SpeedTests {
    book: Mutex<Book>,
    /// Moves on every new test, so long-polling agents look again.
    queued: watch::Sender<u64>,
}

impl Default for SpeedTests {
    fn default() -> Self {
        Self {
            book: Mutex::default(),
            queued: watch::channel(0).0,
        }
    }
}

impl SpeedTests {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a test from `from` to `to`, whose sink listens at `to_addr`.
    pub fn start(
        &self,
        from: NodeName,
        to: NodeName,
        to_identity: SpiffeId,
        to_addr: String,
        seconds: Option<u32>,
        now: u64,
    ) -> Result<SpeedTest, HomeError> {
        let seconds = check_request(&from, &to, seconds)?;
        let mut book = self.book();
        expire(&mut book, now);
        if let Some(busy) = book.entries.iter().find(|e| is_active(&e.test)) {
            return Err(HomeError::new(
                Kind::Conflict,
                format!(
                    "the speed test from {} to {} is still {}; start the next one when it ends (at most {} s)",
                    busy.test.from,
                    busy.test.to,
                    state_word(busy.test.state),
                    u64::from(busy.test.seconds) + PICKUP_TIMEOUT_S + REPORT_GRACE_S
                ),
            ));
        }
        book.next_id += 1;
        let test = SpeedTest {
            id: book.next_id,
            from,
            to,
            seconds,
            state: SpeedTestState::Queued,
            requested_at: now,
            started_at: None,
            finished_at: None,
            bits_per_second: None,
            bytes: None,
            error: None,
        };
        if book.entries.len() >= MAX_KEPT {
            book.entries.pop_front();
        }
        book.entries.push_back(Entry {
            test: test.clone(),
            to_identity,
            to_addr,
        });
        drop(book);
        self.queued.send_modify(|n| *n += 1);
        Ok(test)
    }

    /// The next test `node` is to send, marked running; waits up to `wait` for one.
    pub async fn next_job(&self, node: &NodeName, wait: Duration) -> Option<SpeedTestJob> {
        let mut rx = self.queued.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(job) = self.take_job(node, crate::ca::unix_now()) {
                return Some(job);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    fn take_job(&self, node: &NodeName, now: u64) -> Option<SpeedTestJob> {
        let mut book = self.book();
        expire(&mut book, now);
        let entry = book
            .entries
            .iter_mut()
            .find(|e| e.test.state == SpeedTestState::Queued && &e.test.from == node)?;
        entry.test.state = SpeedTestState::Running;
        entry.test.started_at = Some(now);
        Some(SpeedTestJob {
            id: entry.test.id,
            to: entry.test.to.clone(),
            to_identity: entry.to_identity.clone(),
            to_addr: entry.to_addr.clone(),
            seconds: entry.test.seconds,
        })
    }

    /// The sender's report. Only the router that runs test `id` may report it, once.
    pub fn finish(
        &self,
        node: &NodeName,
        outcome: &SpeedTestOutcome,
        now: u64,
    ) -> Result<SpeedTest, HomeError> {
        let mut book = self.book();
        let entry = book
            .entries
            .iter_mut()
            .find(|e| e.test.id == outcome.id && &e.test.from == node)
            .ok_or_else(|| {
                HomeError::new(
                    Kind::NotFound,
                    format!(
                        "no speed test {} is waiting for {node}'s result",
                        outcome.id
                    ),
                )
            })?;
        if entry.test.state != SpeedTestState::Running {
            return Err(HomeError::new(
                Kind::Conflict,
                format!(
                    "speed test {} is already {}",
                    outcome.id,
                    state_word(entry.test.state)
                ),
            ));
        }
        let test = &mut entry.test;
        test.finished_at = Some(now);
        match (&outcome.error, outcome.bytes, outcome.millis) {
            (None, Some(bytes), Some(millis)) if millis > 0 => {
                test.state = SpeedTestState::Done;
                test.bytes = Some(bytes);
                test.bits_per_second =
                    Some((u128::from(bytes) * 8 * 1000 / u128::from(millis)) as u64);
            }
            (Some(err), _, _) => {
                test.state = SpeedTestState::Failed;
                // The agent's words, bounded: a lying agent cannot grow the book.
                test.error = Some(err.chars().take(300).collect());
            }
            _ => {
                test.state = SpeedTestState::Failed;
                test.error = Some(format!(
                    "{node} reported no byte count; is its trellis-agent as new as the controller?"
                ));
            }
        }
        Ok(test.clone())
    }

    /// The tests, newest first.
    pub fn list(&self, now: u64) -> Vec<SpeedTest> {
        let mut book = self.book();
        expire(&mut book, now);
        book.entries.iter().rev().map(|e| e.test.clone()).collect()
    }

    pub fn get(&self, id: u64, now: u64) -> Option<SpeedTest> {
        self.list(now).into_iter().find(|t| t.id == id)
    }

    /// A removed router's tests end at once.
    pub fn forget_node(&self, node: &NodeName, now: u64) {
        let mut book = self.book();
        for e in book.entries.iter_mut().filter(|e| is_active(&e.test)) {
            if &e.test.from == node || &e.test.to == node {
                fail(
                    &mut e.test,
                    now,
                    format!("{node} was removed from the home"),
                );
            }
        }
    }
}

/// What makes a request a test at all, whatever the home looks like: two different routers
/// and 1 to [`MAX_SECONDS`] seconds. The seconds to run.
pub fn check_request(
    from: &NodeName,
    to: &NodeName,
    seconds: Option<u32>,
) -> Result<u32, HomeError> {
    let seconds = seconds.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(HomeError::new(
            Kind::BadRequest,
            format!("seconds must be 1 to {MAX_SECONDS}, not {seconds}"),
        ));
    }
    if from == to {
        return Err(HomeError::new(
            Kind::BadRequest,
            "a speed test needs two different routers",
        ));
    }
    Ok(seconds)
}

fn is_active(t: &SpeedTest) -> bool {
    matches!(t.state, SpeedTestState::Queued | SpeedTestState::Running)
}

fn state_word(s: SpeedTestState) -> &'static str {
    match s {
        SpeedTestState::Queued => "queued",
        SpeedTestState::Running => "running",
        SpeedTestState::Done => "done",
        SpeedTestState::Failed => "failed",
    }
}

fn fail(t: &mut SpeedTest, now: u64, why: String) {
    t.state = SpeedTestState::Failed;
    t.finished_at = Some(now);
    t.error = Some(why);
}

/// Tests whose router went quiet fail with a reason a person can act on.
fn expire(book: &mut Book, now: u64) {
    for e in book.entries.iter_mut() {
        let t = &mut e.test;
        match t.state {
            SpeedTestState::Queued if now >= t.requested_at + PICKUP_TIMEOUT_S => {
                let why = format!(
                    "{} did not pick the test up within {PICKUP_TIMEOUT_S} s: is it online, and is trellis-agent running there?",
                    t.from
                );
                fail(t, now, why);
            }
            SpeedTestState::Running
                if now
                    >= t.started_at.unwrap_or(t.requested_at)
                        + u64::from(t.seconds)
                        + REPORT_GRACE_S =>
            {
                let why = format!(
                    "{} started the test but sent no result: it may have lost its way to the controller; try again",
                    t.from
                );
                fail(t, now, why);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::HomeId;

    fn node(n: &str) -> NodeName {
        NodeName::new(n).expect("test node name")
    }

    fn start(book: &SpeedTests, from: &str, to: &str, now: u64) -> Result<SpeedTest, HomeError> {
        let home = HomeId::new("testhome").expect("home id");
        book.start(
            node(from),
            node(to),
            SpiffeId::node(&home, &node(to)),
            "10.0.0.2:15009".into(),
            None,
            now,
        )
    }

    #[test]
    fn a_test_goes_queued_running_done_and_reports_bits_per_second() {
        let book = SpeedTests::default();
        let t = start(&book, "attic", "garage", 100).expect("queued");
        assert_eq!(t.state, SpeedTestState::Queued);
        assert!(
            book.take_job(&node("garage"), 101).is_none(),
            "only the sender gets the job"
        );
        let job = book
            .take_job(&node("attic"), 101)
            .expect("the sender's job");
        assert_eq!(job.to, node("garage"));
        assert_eq!(job.seconds, DEFAULT_SECONDS);
        assert!(
            book.take_job(&node("attic"), 101).is_none(),
            "a job is handed out once"
        );
        let done = book
            .finish(
                &node("attic"),
                &SpeedTestOutcome {
                    id: job.id,
                    bytes: Some(62_500_000),
                    millis: Some(5_000),
                    error: None,
                },
                107,
            )
            .expect("finished");
        assert_eq!(done.state, SpeedTestState::Done);
        assert_eq!(done.bits_per_second, Some(100_000_000));
        assert_eq!(book.list(108)[0].state, SpeedTestState::Done);
    }

    #[test]
    fn one_test_at_a_time_and_bad_requests_say_why() {
        let book = SpeedTests::default();
        start(&book, "attic", "garage", 100).expect("first");
        let busy = start(&book, "garage", "attic", 101).expect_err("second refused");
        assert_eq!(busy.kind, Kind::Conflict);
        assert!(busy.message.contains("still queued"), "{}", busy.message);
        let same = start(&book, "attic", "attic", 200).expect_err("same router");
        assert_eq!(same.kind, Kind::BadRequest);
        let home = HomeId::new("testhome").expect("home id");
        let long = book
            .start(
                node("a"),
                node("b"),
                SpiffeId::node(&home, &node("b")),
                "x:1".into(),
                Some(MAX_SECONDS + 1),
                300,
            )
            .expect_err("too long");
        assert!(long.message.contains("1 to 30"), "{}", long.message);
    }

    #[test]
    fn a_quiet_sender_fails_the_test_with_advice() {
        let book = SpeedTests::default();
        start(&book, "attic", "garage", 100).expect("queued");
        let t = &book.list(100 + PICKUP_TIMEOUT_S)[0];
        assert_eq!(t.state, SpeedTestState::Failed);
        assert!(t
            .error
            .as_deref()
            .unwrap_or("")
            .contains("did not pick the test up"));
        // The next one may start now.
        start(&book, "attic", "garage", 200).expect("queued");
        book.take_job(&node("attic"), 200).expect("running");
        let t = &book.list(200 + u64::from(DEFAULT_SECONDS) + REPORT_GRACE_S)[0];
        assert_eq!(t.state, SpeedTestState::Failed);
        assert!(t.error.as_deref().unwrap_or("").contains("sent no result"));
    }

    #[test]
    fn only_the_sender_reports_once_and_the_book_stays_bounded() {
        let book = SpeedTests::default();
        let t = start(&book, "attic", "garage", 100).expect("queued");
        book.take_job(&node("attic"), 100).expect("running");
        let outcome = SpeedTestOutcome {
            id: t.id,
            bytes: None,
            millis: None,
            error: Some("x".repeat(10_000)),
        };
        assert_eq!(
            book.finish(&node("garage"), &outcome, 101)
                .expect_err("not the sender")
                .kind,
            Kind::NotFound
        );
        let failed = book.finish(&node("attic"), &outcome, 101).expect("failed");
        assert_eq!(failed.error.map(|e| e.len()), Some(300));
        assert_eq!(
            book.finish(&node("attic"), &outcome, 102)
                .expect_err("twice")
                .kind,
            Kind::Conflict
        );
        for i in 0..(MAX_KEPT as u64 + 5) {
            let now = 1_000 + i * 100;
            start(&book, "attic", "garage", now).expect("queued");
        }
        assert_eq!(book.list(10_000).len(), MAX_KEPT);
    }

    #[test]
    fn removing_a_router_ends_its_test() {
        let book = SpeedTests::default();
        start(&book, "attic", "garage", 100).expect("queued");
        book.forget_node(&node("garage"), 101);
        let t = &book.list(101)[0];
        assert_eq!(t.state, SpeedTestState::Failed);
        assert!(t.error.as_deref().unwrap_or("").contains("removed"));
    }
}
