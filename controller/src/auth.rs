//! Who may use the web page: the admin password, the first-run setup token, browser
//! sessions and the login throttle.
//!
//! - The password is stored as argon2id (memory-hard, so a stolen store resists GPU
//!   guessing) with a random salt, never the password; the record names its algorithm and
//!   costs, so a later version can raise them.
//! - First run: before a password exists, setting one needs the setup token, a random string
//!   the controller writes to `<data-dir>/setup-token` (0600, root only). Someone on the LAN
//!   who reaches the page first cannot take the router over: they would need a root shell.
//!   The token is never logged; `trellis setup-token` prints it.
//! - Sessions live in RAM only (a restart logs everyone out, which fails closed), are few
//!   and expire. The browser holds a random token in an HttpOnly cookie; the map keys on its
//!   SHA-256 so a memory dump of the map does not hold live cookies.
//! - Wrong passwords and wrong setup tokens are throttled for the whole controller (each try
//!   also costs an argon2id run, so the throttle bounds CPU and memory as well as guessing).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use ring::digest;

use crate::home::{HomeError, Kind};
use crate::store::PasswordRecord;

/// argon2id with 12 MiB and 3 passes: one of OWASP's recommended settings, and the one
/// with the least memory, which a 128 MB router can spare for the moment of a login.
pub const ALGORITHM: &str = "argon2id-m12288-p1";
const MEMORY_KIB: u32 = 12 * 1024;
/// Stored in the record's `iterations` column.
pub const ITERATIONS: u32 = 3;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
pub const MIN_PASSWORD: usize = 8;
/// Bounds the input of one hash run on attacker-chosen input.
pub const MAX_PASSWORD: usize = 128;

/// Browser sessions: a home has one or two admins; the oldest is dropped past the cap.
pub const MAX_SESSIONS: usize = 8;
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// Failed logins (or setup tokens) allowed per window from one client address.
pub const MAX_FAILURES: usize = 5;
/// Failed tries a minute for the whole controller, whatever their addresses.
pub const MAX_FAILURES_ALL: usize = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub const SETUP_TOKEN_FILE: &str = "setup-token";

fn random_string(len: usize) -> String {
    // Crockford-like alphabet: nothing a person confuses when copying it from a terminal.
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Check the password's shape, with a message a person can act on.
pub fn check_new_password(password: &str) -> Result<(), HomeError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(HomeError::new(
            Kind::BadRequest,
            format!("the password is too short: use at least {MIN_PASSWORD} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(HomeError::new(
            Kind::BadRequest,
            format!("the password is too long: use at most {MAX_PASSWORD} bytes"),
        ));
    }
    Ok(())
}

fn argon2id(passes: u32) -> Option<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, passes, 1, Some(HASH_LEN)).ok()?;
    Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn derive(password: &str, salt: &[u8], passes: u32) -> Option<Vec<u8>> {
    let mut hash = vec![0u8; HASH_LEN];
    argon2id(passes)?
        .hash_password_into(password.as_bytes(), salt, &mut hash)
        .ok()?;
    Some(hash)
}

/// Hash a new password with a fresh salt.
pub fn hash_password(password: &str, now: u64) -> PasswordRecord {
    let salt: [u8; SALT_LEN] = rand::random();
    // The parameters are constants known to be valid, and the salt is 16 bytes.
    let hash = derive(password, &salt, ITERATIONS)
        .unwrap_or_else(|| unreachable!("valid argon2id parameters"));
    PasswordRecord {
        algorithm: ALGORITHM.into(),
        iterations: ITERATIONS,
        salt: salt.to_vec(),
        hash,
        set_at: now,
    }
}

/// Check a password against its record, comparing in constant time.
pub fn verify_password(rec: &PasswordRecord, password: &str) -> bool {
    if rec.algorithm != ALGORITHM
        || password.len() > MAX_PASSWORD
        || rec.iterations == 0
        || rec.iterations > 16
    {
        return false;
    }
    let Some(hash) = derive(password, &rec.salt, rec.iterations) else {
        return false;
    };
    hash.len() == rec.hash.len()
        && hash
            .iter()
            .zip(&rec.hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

// --- setup token ---------------------------------------------------------------------------

pub fn setup_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SETUP_TOKEN_FILE)
}

fn valid_token(t: &str) -> bool {
    t.len() == 20 && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The first-run token, creating it (0600) if it is missing or damaged. Kept across restarts
/// so a token someone already copied stays good until the password is set.
pub fn ensure_setup_token(data_dir: &Path) -> std::io::Result<String> {
    let path = setup_token_path(data_dir);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if valid_token(&t) {
            return Ok(t);
        }
    }
    let token = random_string(20);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

/// Once the password is set, the token has done its job.
pub fn remove_setup_token(data_dir: &Path) {
    let _ = std::fs::remove_file(setup_token_path(data_dir));
}

/// Compare a typed token with the real one without an early exit on the first wrong
/// character (digests of both are compared).
pub fn token_matches(real: &str, typed: &str) -> bool {
    sha256(real.trim().as_bytes()) == sha256(typed.trim().as_bytes())
}

// --- sessions ------------------------------------------------------------------------------

struct Session {
    csrf: String,
    /// The password epoch at login ([`crate::home::Home::password_epoch`]).
    epoch: u64,
    created: Instant,
    last_used: Instant,
}

/// What a valid session cookie proves.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub csrf: String,
}

/// A new session: the cookie value and the CSRF token the page sends back in a header.
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn create(&self, now: Instant, epoch: u64) -> NewSession {
        let cookie = random_string(40);
        let csrf = random_string(32);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| alive(s, now));
        while map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
        map.insert(
            sha256(cookie.as_bytes()),
            Session {
                csrf: csrf.clone(),
                epoch,
                created: now,
                last_used: now,
            },
        );
        NewSession { cookie, csrf }
    }

    /// The session behind a cookie, refreshing its idle timer. Sessions from before a
    /// password reset (another `epoch`) are over.
    pub fn check(&self, cookie: &str, now: Instant, epoch: u64) -> Option<SessionInfo> {
        let key = sha256(cookie.as_bytes());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.get_mut(&key)?;
        if !alive(s, now) || s.epoch != epoch {
            map.remove(&key);
            return None;
        }
        s.last_used = now;
        Some(SessionInfo {
            csrf: s.csrf.clone(),
        })
    }

    pub fn end(&self, cookie: &str) {
        let key = sha256(cookie.as_bytes());
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) < SESSION_IDLE
        && now.saturating_duration_since(s.created) < SESSION_MAX_AGE
}

// --- throttle ------------------------------------------------------------------------------

/// Counts recent tries that did not succeed, per client address ([`MAX_FAILURES`] a minute
/// each) and for the whole controller ([`MAX_FAILURES_ALL`] a minute).
///
/// Per address, so someone on the LAN guessing cannot lock the admin out from another
/// device; overall, so the argon2id work a flood of addresses can cause stays bounded (and
/// with it the table of addresses: only addresses with a failure in the last minute are
/// kept, at most [`MAX_FAILURES_ALL`] of them). A try is counted when it *starts* and
/// forgiven when it succeeds, so a burst of parallel guesses cannot all slip past the check
/// while their argon2id runs are still going.
#[derive(Default)]
pub struct Throttle {
    book: Mutex<ThrottleBook>,
}

#[derive(Default)]
struct ThrottleBook {
    by_source: std::collections::HashMap<std::net::IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

/// Drop tries older than the window from the front; `Err(seconds)` if `max` remain.
fn window(tries: &mut VecDeque<Instant>, max: usize, now: Instant) -> Result<(), u64> {
    while tries
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
    {
        tries.pop_front();
    }
    if tries.len() >= max {
        let oldest = tries.front().copied().unwrap_or(now);
        let wait = FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(oldest));
        return Err(wait.as_secs().max(1));
    }
    Ok(())
}

impl Throttle {
    /// Count a try from `source` (`None`: not known, one shared bucket), or `Err(seconds to
    /// wait)` while too many recent tries failed from there or overall.
    pub fn begin(&self, source: Option<std::net::IpAddr>, now: Instant) -> Result<(), u64> {
        let source = source.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let ThrottleBook { by_source, all } = &mut *book;
        by_source.retain(|_, tries| {
            let _ = window(tries, usize::MAX, now);
            !tries.is_empty()
        });
        window(all, MAX_FAILURES_ALL, now)?;
        let mine = by_source.entry(source).or_default();
        window(mine, MAX_FAILURES, now)?;
        mine.push_back(now);
        all.push_back(now);
        Ok(())
    }

    /// The try from `source` succeeded: it does not count against anyone.
    pub fn succeeded(&self, source: Option<std::net::IpAddr>) {
        let source = source.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = book.by_source.get_mut(&source).and_then(VecDeque::pop_back) {
            if let Some(i) = book.all.iter().rposition(|t| *t == at) {
                book.all.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
            th.succeeded(guesser);
        }
        for _ in 0..MAX_FAILURES {
            assert!(th.begin(guesser, t0).is_ok());
        }
        let wait = th.begin(guesser, t0).unwrap_err();
        assert!(wait >= 59, "{wait}");
        // The admin, on another device, still gets in.
        assert!(th.begin(admin, t0).is_ok());
        th.succeeded(admin);
        assert!(th.begin(guesser, t0 + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn many_addresses_together_hit_the_overall_ceiling_and_the_book_stays_small() {
        let th = Throttle::default();
        let t0 = Instant::now();
        let addr = |i: u8| Some(std::net::IpAddr::from([10, 0, 0, i]));
        let mut refused = 0;
        for i in 0..200u8 {
            if th.begin(addr(i), t0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 200 - MAX_FAILURES_ALL);
        let book = th.book.lock().unwrap();
        assert_eq!(
            book.by_source.len(),
            MAX_FAILURES_ALL,
            "refused addresses are not kept"
        );
        drop(book);
        // A minute later everything has expired and the book is pruned on the next try.
        th.begin(addr(1), t0 + FAILURE_WINDOW).unwrap();
        assert_eq!(th.book.lock().unwrap().by_source.len(), 1);
    }
}
