//! Tests of the web page's authentication: password hashing and rules, the setup token,
//! sessions, the per-source throttle and the hasher's lanes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::setup_token::valid_token;
use super::*;

#[test]
fn passwords_hash_with_salt_and_verify() {
    let a = hash_password("correct horse", 1);
    let b = hash_password("correct horse", 1);
    assert_ne!(a.salt, b.salt, "each hash gets its own salt");
    assert_ne!(a.hash, b.hash);
    assert_eq!(a.iterations, ITERATIONS);
    assert_eq!(a.algorithm, "argon2id-m12288-p1");
    assert!(verify_password(&a, "correct horse"));
    assert!(!verify_password(&a, "correct horse "));
    assert!(!verify_password(&a, ""));
    let mut other = a.clone();
    other.algorithm = "md5".into();
    assert!(!verify_password(&other, "correct horse"));
    assert!(!format!("{a:?}").contains("hash"), "Debug hides the hash");
}

#[test]
fn password_rules_explain_themselves() {
    assert!(check_new_password("short")
        .unwrap_err()
        .message
        .contains("at least 8"));
    assert!(check_new_password(&"x".repeat(200)).is_err());
    assert!(check_new_password("long enough").is_ok());
}

#[test]
fn setup_token_is_private_stable_and_removable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let t = ensure_setup_token(dir.path()).unwrap();
    assert!(valid_token(&t));
    let mode = std::fs::metadata(setup_token_path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        ensure_setup_token(dir.path()).unwrap(),
        t,
        "kept across restarts"
    );
    assert!(token_matches(&t, &format!(" {t}\n")));
    assert!(!token_matches(&t, "nope"));
    remove_setup_token(dir.path());
    assert_ne!(ensure_setup_token(dir.path()).unwrap(), t);
}

#[test]
fn sessions_expire_and_stay_bounded() {
    let s = Sessions::default();
    let t0 = Instant::now();
    let a = s.create(t0, 0);
    assert!(s.check(&a.cookie, t0, 0).is_some());
    assert!(s.check("forged", t0, 0).is_none());
    // Idle too long.
    assert!(s.check(&a.cookie, t0 + SESSION_IDLE, 0).is_none());
    // A password reset ends older sessions.
    let r = s.create(t0, 0);
    assert!(s.check(&r.cookie, t0, 1).is_none());
    // Used regularly, still ends at the absolute limit.
    let b = s.create(t0, 0);
    let mut t = t0;
    while t + Duration::from_secs(600) < t0 + SESSION_MAX_AGE {
        t += Duration::from_secs(600);
        assert!(s.check(&b.cookie, t, 0).is_some());
    }
    assert!(s.check(&b.cookie, t0 + SESSION_MAX_AGE, 0).is_none());
    for _ in 0..3 * MAX_SESSIONS {
        s.create(t0, 0);
    }
    assert!(s.len() <= MAX_SESSIONS);
    let c = s.create(t0, 0);
    s.end(&c.cookie);
    assert!(s.check(&c.cookie, t0, 0).is_none());
}

#[test]
fn throttle_blocks_after_repeated_failures_then_recovers() {
    let th = Throttle::default();
    let t0 = Instant::now();
    let guesser = Some("192.168.1.66".parse().unwrap());
    let admin = Some("192.168.1.20".parse().unwrap());
    // Successes never add up.
    for _ in 0..3 * MAX_FAILURES {
        th.begin(guesser, t0).unwrap();
        th.succeeded(guesser, t0);
    }
    for _ in 0..MAX_FAILURES {
        assert!(th.begin(guesser, t0).is_ok());
    }
    let wait = th.begin(guesser, t0).unwrap_err();
    assert!(wait >= 59, "{wait}");
    // The admin, on another device, still gets in.
    assert!(th.begin(admin, t0).is_ok());
    th.succeeded(admin, t0);
    assert!(th.begin(guesser, t0 + FAILURE_WINDOW).is_ok());
}

#[test]
fn wrong_tries_from_many_addresses_leave_a_fresh_one_alone_and_the_book_stays_small() {
    let th = Throttle::default();
    let t0 = Instant::now();
    let addr = |i: u16| Some(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
    for i in 0..(MAX_SOURCES as u16 + 200) {
        for _ in 0..MAX_FAILURES {
            th.begin(addr(i), t0).unwrap();
        }
        assert!(
            th.begin(addr(i), t0).is_err(),
            "each source has its own budget"
        );
    }
    assert!(
        th.begin(Some("192.168.1.20".parse().unwrap()), t0).is_ok(),
        "no shared ceiling: a fresh address is not refused"
    );
    assert!(th.book.lock().unwrap().by_source.len() <= MAX_SOURCES);
    // One IPv6 /64 is one source.
    let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    for i in 0..MAX_FAILURES {
        th.begin(v6(&format!("fd00:1:2:3::{i:x}")), t0).unwrap();
    }
    assert!(th.begin(v6("fd00:1:2:3::ffff"), t0).is_err());
}

#[test]
fn a_good_login_gives_its_source_the_admin_lane() {
    let th = Throttle::default();
    let t0 = Instant::now();
    let admin = Some("192.168.1.20".parse().unwrap());
    assert_eq!(th.lane(admin, false, t0), Lane::Anyone);
    assert_eq!(th.lane(admin, true, t0), Lane::Admin, "the router itself");
    th.begin(admin, t0).unwrap();
    th.succeeded(admin, t0);
    assert_eq!(th.lane(admin, false, t0), Lane::Admin);
    assert_eq!(th.lane(admin, false, t0 + TRUSTED_FOR), Lane::Anyone);
}

#[tokio::test]
async fn the_hasher_queues_boundedly_one_per_source_and_keeps_the_admin_lane_free() {
    let h = Arc::new(Hasher::default());
    let rec = hash_password("correct horse", 1);
    // Hold the shared lane as a long run would.
    let held = h.anyone.run.clone().acquire_owned().await.unwrap();
    let addr = |i: u8| Some(IpAddr::from([10, 0, 0, i]));
    let mut queued = Vec::new();
    for i in 0..MAX_QUEUED as u8 {
        let (h, rec) = (h.clone(), rec.clone());
        queued.push(tokio::spawn(async move {
            h.verify(addr(i), Lane::Anyone, rec, "wrong".into()).await
        }));
    }
    // Let the queued checks reach the semaphore.
    while *h.anyone.waiting.lock().unwrap() < MAX_QUEUED {
        tokio::task::yield_now().await;
    }
    let full = h
        .verify(addr(200), Lane::Anyone, rec.clone(), "x".into())
        .await;
    assert_eq!(full, Err(HashBusy::QueueFull));
    assert!(full.unwrap_err().message().contains("try again"));
    let again = h
        .verify(addr(0), Lane::Anyone, rec.clone(), "x".into())
        .await;
    assert_eq!(again, Err(HashBusy::SourceBusy));
    // The admin lane is not behind the queue.
    let admin = h
        .verify(addr(201), Lane::Admin, rec.clone(), "correct horse".into())
        .await;
    assert_eq!(admin, Ok(true));
    drop(held);
    for q in queued {
        assert_eq!(q.await.unwrap(), Ok(false));
    }
    assert!(h.in_flight.lock().unwrap().is_empty());
}
