//! The login throttle: each source's own budget of failed tries ([`MAX_FAILURES`] a
//! minute), and the sources the admin logged in from, which hash in the admin's
//! [`Lane`] for [`TRUSTED_FOR`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{key, Lane, SESSION_MAX_AGE};

/// Failed logins (or setup tokens) allowed per window from one source.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sources the throttle remembers at once (beyond, the one quiet longest is forgotten).
pub const MAX_SOURCES: usize = 1024;
/// A source that logged in keeps the admin's hashing lane this long.
pub const TRUSTED_FOR: Duration = SESSION_MAX_AGE;
/// Sources remembered as trusted (a home has one or two admins, on a few devices).
pub const MAX_TRUSTED: usize = 16;

/// Counts recent tries that did not succeed, per source ([`MAX_FAILURES`] a minute each), and
/// remembers the sources the admin logged in from (the rule is in the module comment of
/// [`crate::auth`]).
///
/// A try is counted when it *starts* and forgiven when it succeeds (or was never checked), so
/// a burst of parallel guesses cannot all slip past the check while their argon2id runs are
/// still going. The book is bounded: only sources with a try in the last minute are kept, at
/// most [`MAX_SOURCES`] of them.
#[derive(Default)]
pub struct Throttle {
    pub(super) book: Mutex<ThrottleBook>,
}

#[derive(Default)]
pub(super) struct ThrottleBook {
    pub(super) by_source: HashMap<IpAddr, VecDeque<Instant>>,
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
