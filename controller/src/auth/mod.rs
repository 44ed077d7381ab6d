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
//!
//! Where each part lives: `password.rs` (the password's rules and its argon2id hash),
//! `setup_token.rs` (the first-run token), `sessions.rs` (browser sessions), `throttle.rs`
//! (the per-source budget of tries and the admin's trusted sources), `hasher.rs` (the queue
//! every hash of the web page goes through). Everything is re-exported here: callers name
//! `crate::auth::…`.

use std::net::IpAddr;

use rand::Rng;
use ring::digest;
use trellis_io::listener::source_of;

mod hasher;
mod password;
mod sessions;
mod setup_token;
mod throttle;

pub use hasher::{HashBusy, Hasher, Lane, MAX_QUEUED};
pub use password::{
    check_new_password, hash_password, verify_password, ALGORITHM, ITERATIONS, MAX_PASSWORD,
    MIN_PASSWORD,
};
pub use sessions::{
    NewSession, SessionInfo, Sessions, MAX_SESSIONS, SESSION_IDLE, SESSION_MAX_AGE,
};
pub use setup_token::{
    ensure_setup_token, remove_setup_token, setup_token_path, token_matches, SETUP_TOKEN_FILE,
};
pub use throttle::{Throttle, FAILURE_WINDOW, MAX_FAILURES, MAX_SOURCES, MAX_TRUSTED, TRUSTED_FOR};

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

/// The key of a client address (`None`: not known, one shared bucket).
fn key(source: Option<IpAddr>) -> IpAddr {
    source.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), source_of)
}

#[cfg(test)]
mod tests;
