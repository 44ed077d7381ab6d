//! Who may use the web page: the admin password, the first-run setup token, browser
//! sessions, the login throttle and the queue of password hashes.
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
//!
//! The rule for tries ([`Throttle`], [`Hasher`]), so a flood cannot be turned against the admin:
//! - A guesser's budget is its own: [`MAX_FAILURES`] wrong passwords or setup tokens a minute
//!   per source (an IPv4 address, an IPv6 /64, as the listeners count). There is no shared
//!   ceiling that other addresses could use up: wrong tries from 200 addresses do not make
//!   the admin's right password from a 201st a 429.
//! - What bounds the work of many addresses together is the [`Hasher`], by queueing: one
//!   argon2id run at a time, into one reused 12 MiB buffer (so RAM does not grow with
//!   parallel logins, whatever the allocator keeps), one try in flight per source,
//!   [`MAX_QUEUED`] waiting; past that the answer is 503 "busy, try again in a few seconds".
//! - A reserve for the admin: a source that logged in (or set the password) within
//!   [`TRUSTED_FOR`], and the router's own address, queue in a lane of their own, so a flood
//!   that fills the shared queue still does not keep them out: they wait for the one run in
//!   progress, not behind the queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng;
use ring::digest;
use tokio::sync::Semaphore;
use trellis_io::listener::source_of;

use crate::error::{HomeError, Kind};
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

/// Failed logins (or setup tokens) allowed per window from one source.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sources the throttle remembers at once (beyond, the one quiet longest is forgotten).
pub const MAX_SOURCES: usize = 1024;
/// A source that logged in keeps the admin's hashing lane this long.
pub const TRUSTED_FOR: Duration = SESSION_MAX_AGE;
/// Sources remembered as trusted (a home has one or two admins, on a few devices).
pub const MAX_TRUSTED: usize = 16;
/// Password checks waiting for a lane, beyond the one running in it.
pub const MAX_QUEUED: usize = 16;

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

/// The argon2id memory of one run ([`MEMORY_KIB`] blocks of 1 KiB), to be reused.
fn new_memory() -> Vec<Block> {
    vec![Block::default(); MEMORY_KIB as usize]
}

fn derive(password: &str, salt: &[u8], passes: u32, memory: &mut [Block]) -> Option<Vec<u8>> {
    let mut hash = vec![0u8; HASH_LEN];
    argon2id(passes)?
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut hash, memory)
        .ok()?;
    Some(hash)
}

/// Hash a new password with a fresh salt (in fresh memory: the web page goes through
/// [`Hasher`]).
pub fn hash_password(password: &str, now: u64) -> PasswordRecord {
    hash_password_in(password, now, &mut new_memory())
}

fn hash_password_in(password: &str, now: u64, memory: &mut [Block]) -> PasswordRecord {
    let salt: [u8; SALT_LEN] = rand::random();
    // The parameters are constants known to be valid, the salt is 16 bytes and the memory
    // has MEMORY_KIB blocks.
    let hash = derive(password, &salt, ITERATIONS, memory)
        .unwrap_or_else(|| unreachable!("valid argon2id parameters"));
    PasswordRecord {
        algorithm: ALGORITHM.into(),
        iterations: ITERATIONS,
        salt: salt.to_vec(),
        hash,
        set_at: now,
    }
}

/// Check a password against its record, comparing in constant time (in fresh memory: the
/// web page goes through [`Hasher`]).
pub fn verify_password(rec: &PasswordRecord, password: &str) -> bool {
    verify_password_in(rec, password, &mut new_memory())
}

fn verify_password_in(rec: &PasswordRecord, password: &str, memory: &mut [Block]) -> bool {
    if rec.algorithm != ALGORITHM
        || password.len() > MAX_PASSWORD
        || rec.iterations == 0
        || rec.iterations > 16
    {
        return false;
    }
    let Some(hash) = derive(password, &rec.salt, rec.iterations, memory) else {
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
    trellis_io::files::replace(
        &path,
        format!("{token}\n").as_bytes(),
        0o600,
        trellis_io::files::Medium::Flash,
    )?;
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

/// Counts recent tries that did not succeed, per source ([`MAX_FAILURES`] a minute each), and
/// remembers the sources the admin logged in from (the rule is in the module comment).
///
/// A try is counted when it *starts* and forgiven when it succeeds (or was never checked), so
/// a burst of parallel guesses cannot all slip past the check while their argon2id runs are
/// still going. The book is bounded: only sources with a try in the last minute are kept, at
/// most [`MAX_SOURCES`] of them.
#[derive(Default)]
pub struct Throttle {
    book: Mutex<ThrottleBook>,
}

#[derive(Default)]
struct ThrottleBook {
    by_source: HashMap<IpAddr, VecDeque<Instant>>,
    /// Sources with a recent good login, and when.
    trusted: HashMap<IpAddr, Instant>,
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

/// The key of a client address (`None`: not known, one shared bucket).
fn key(source: Option<IpAddr>) -> IpAddr {
    source.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), source_of)
}

impl Throttle {
    /// Count a try from `source`, or `Err(seconds to wait)` while [`MAX_FAILURES`] recent
    /// tries from there failed. Other sources' failures never count here.
    pub fn begin(&self, source: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let source = key(source);
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let by_source = &mut book.by_source;
        by_source.retain(|_, tries| {
            let _ = window(tries, usize::MAX, now);
            !tries.is_empty()
        });
        if !by_source.contains_key(&source) && by_source.len() >= MAX_SOURCES {
            // Forget the source whose latest try is oldest: memory stays bounded, and a
            // guesser that rotates through this many sources is still held by the Hasher.
            let quietest = by_source
                .iter()
                .min_by_key(|(_, t)| t.back().copied())
                .map(|(k, _)| *k);
            if let Some(k) = quietest {
                by_source.remove(&k);
            }
        }
        let mine = by_source.entry(source).or_default();
        window(mine, MAX_FAILURES, now)?;
        mine.push_back(now);
        Ok(())
    }

    /// The try from `source` was not checked (the hasher was busy): it does not count.
    pub fn forgive(&self, source: Option<IpAddr>) {
        let source = key(source);
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tries) = book.by_source.get_mut(&source) {
            tries.pop_back();
        }
    }

    /// The try from `source` succeeded: it does not count, and the source hashes in the
    /// admin's lane for [`TRUSTED_FOR`].
    pub fn succeeded(&self, source: Option<IpAddr>, now: Instant) {
        self.forgive(source);
        let source = key(source);
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let trusted = &mut book.trusted;
        trusted.retain(|_, at| now.saturating_duration_since(*at) < TRUSTED_FOR);
        if !trusted.contains_key(&source) && trusted.len() >= MAX_TRUSTED {
            let oldest = trusted.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k);
            if let Some(k) = oldest {
                trusted.remove(&k);
            }
        }
        trusted.insert(source, now);
    }

    /// Which hashing lane a try from `source` uses: the admin's own for a source with a
    /// recent good login, or for the router itself (`own`: the client's address is the
    /// controller's); the shared one for everyone else.
    pub fn lane(&self, source: Option<IpAddr>, own: bool, now: Instant) -> Lane {
        if own {
            return Lane::Admin;
        }
        let source = key(source);
        let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        match book.trusted.get(&source) {
            Some(at) if now.saturating_duration_since(*at) < TRUSTED_FOR => Lane::Admin,
            _ => Lane::Anyone,
        }
    }
}

// --- hasher --------------------------------------------------------------------------------

/// Where a password check waits for its argon2id run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Sources with a recent good login and the router itself.
    Admin,
    /// Everyone else.
    Anyone,
}

/// Why a check was not run; each says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashBusy {
    /// [`MAX_QUEUED`] checks are already waiting in the lane.
    QueueFull,
    /// A check from the same source is still running or waiting.
    SourceBusy,
}

impl HashBusy {
    pub fn message(self) -> String {
        match self {
            HashBusy::QueueFull => format!(
                "the router is busy checking {MAX_QUEUED} other logins: try again in a few seconds"
            ),
            HashBusy::SourceBusy => {
                "a login from this address is still being checked: wait for its answer".into()
            }
        }
    }
}

struct LaneSlot {
    /// One run at a time from the lane; waiters queue in order (tokio's semaphore is fair).
    run: Arc<Semaphore>,
    waiting: Mutex<usize>,
}

impl Default for LaneSlot {
    fn default() -> Self {
        Self {
            run: Arc::new(Semaphore::new(1)),
            waiting: Mutex::new(0),
        }
    }
}

/// Runs every argon2id hash of the web page: one at a time, into one buffer; each [`Lane`]
/// queues on its own (bounded), so the admin's waits for at most the run in progress; one
/// try in flight per source (the rule is in the module comment).
#[derive(Default)]
pub struct Hasher {
    admin: LaneSlot,
    anyone: LaneSlot,
    /// Allocated by the first run, then reused by every run (one at a time: whoever holds
    /// it runs): 12 MiB that stay, instead of 12 MiB more per parallel login that glibc's
    /// per-thread arenas may never give back.
    memory: Arc<Mutex<Vec<Block>>>,
    /// Sources with a check running or waiting: at most `2 * (MAX_QUEUED + 1)` entries.
    in_flight: Arc<Mutex<HashSet<IpAddr>>>,
}

/// Frees its source's place in [`Hasher::in_flight`] when the run ends (or is cancelled).
struct InFlight {
    set: Arc<Mutex<HashSet<IpAddr>>>,
    source: IpAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.source);
    }
}

/// Counts one waiter in a lane while alive.
struct Waiting<'a>(&'a Mutex<usize>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut n = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
    }
}

impl Hasher {
    /// Check `password` against `rec`: `Ok(true)` if it is right.
    pub async fn verify(
        &self,
        source: Option<IpAddr>,
        lane: Lane,
        rec: PasswordRecord,
        password: String,
    ) -> Result<bool, HashBusy> {
        self.run(source, lane, move |mem| {
            verify_password_in(&rec, &password, mem)
        })
        .await
    }

    /// Hash a new password.
    pub async fn hash(
        &self,
        source: Option<IpAddr>,
        lane: Lane,
        password: String,
        now: u64,
    ) -> Result<PasswordRecord, HashBusy> {
        self.run(source, lane, move |mem| {
            hash_password_in(&password, now, mem)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        source: Option<IpAddr>,
        lane: Lane,
        job: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashBusy> {
        let source = key(source);
        let in_flight = {
            let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(source) {
                return Err(HashBusy::SourceBusy);
            }
            InFlight {
                set: self.in_flight.clone(),
                source,
            }
        };
        let slot = match lane {
            Lane::Admin => &self.admin,
            Lane::Anyone => &self.anyone,
        };
        let permit = {
            let waiting = {
                let mut n = slot.waiting.lock().unwrap_or_else(|p| p.into_inner());
                if *n >= MAX_QUEUED {
                    return Err(HashBusy::QueueFull);
                }
                *n += 1;
                Waiting(&slot.waiting)
            };
            let permit = slot.run.clone().acquire_owned().await;
            drop(waiting);
            // The semaphore is never closed.
            permit.unwrap_or_else(|_| unreachable!("the hasher's semaphore is never closed"))
        };
        let memory = self.memory.clone();
        // The permit and the source's place go with the run: a client that hangs up does
        // not free them while its hash is still using the lane's memory.
        let done = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _in_flight = in_flight;
            let mut mem = memory.lock().unwrap_or_else(|p| p.into_inner());
            if mem.is_empty() {
                *mem = new_memory();
            }
            job(&mut mem)
        })
        .await;
        match done {
            Ok(v) => Ok(v),
            // The job panicked (it does not: valid constants); resume it here.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Err(HashBusy::QueueFull),
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
}
