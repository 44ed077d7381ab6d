//! Browser sessions, in RAM only: created at login, checked on every request (idle and
//! absolute limits, the password epoch), bounded to [`MAX_SESSIONS`]. The map keys on the
//! cookie's SHA-256, never the cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{random_string, sha256};

/// Browser sessions: a home has one or two admins; the oldest is dropped past the cap.
pub const MAX_SESSIONS: usize = 8;
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

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
