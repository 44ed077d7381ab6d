//! Pairing codes and the controller's side of the pairing exchange.
//!
//! A code is single use, valid ten minutes, and burned after five tries: each SPAKE2 run is
//! one online guess, so a try is counted when a run *starts*. Codes and sessions live in RAM
//! only (a restart forgets them, which fails closed) and both tables are bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use trellis_proto::pairing::{
    PairChallenge, PairFinish, PairStart, PairingCode, CODE_ALPHABET, CODE_SECRET_LEN,
    CODE_SLOT_LEN,
};
use trellis_proto::pake::{self, SessionKeys};
use trellis_proto::{HomeId, NodeName};

pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
pub const MAX_TRIES: u32 = 5;
/// A session must finish this soon after it starts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(120);
/// Caps on RAM: a handful of satellites are paired at once, not hundreds.
pub const MAX_CODES: usize = 8;
pub const MAX_SESSIONS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PairingError {
    #[error("no valid pairing code starts with {0:?}: it expired (codes last 10 minutes), was used, or was never issued; ask for a new code on the router page or with `trellis pair`")]
    UnknownCode(String),
    #[error(
        "this pairing code has been tried {MAX_TRIES} times and is now burned; ask for a new code"
    )]
    Burned,
    #[error("wrong pairing code (try {tries} of {MAX_TRIES}); check the code on the router page")]
    WrongCode { tries: u32 },
    #[error("the pairing session expired or is unknown; start `trellis-agent join` again")]
    UnknownSession,
    #[error("too many pairing codes are open ({MAX_CODES}); wait for some to expire")]
    TooManyCodes,
    #[error("too many pairings are in progress; try again in a minute")]
    Busy,
    #[error("the agent's pairing message is malformed: {0}")]
    BadMessage(String),
}

struct Code {
    secret: String,
    expires: Instant,
    tries: u32,
    /// Issued for the router the controller runs on (`trellis pair --this-router`): whoever
    /// redeems it becomes the home's portal on the map.
    this_router: bool,
}

struct Session {
    slot: String,
    node_name: NodeName,
    keys: SessionKeys,
    expires: Instant,
}

/// What a successful [`Pairing::finish`] hands to enrollment.
pub struct Admitted {
    pub node_name: NodeName,
    /// The code was issued for the controller's own router.
    pub this_router: bool,
    pub csr_pem: String,
    pub keys: SessionKeys,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
pub struct Pairing {
    codes: HashMap<String, Code>,
    sessions: HashMap<String, Session>,
    /// Codes used recently and by whom, so the web page can follow a pairing to its end
    /// (bounded: the last [`MAX_CODES`]).
    used: std::collections::VecDeque<(String, NodeName, Instant)>,
}

/// Where the pairing with one code stands (for the web page's progress display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Issued, nobody has tried it yet.
    Waiting { expires_in: Duration },
    /// A satellite is running the exchange (or failed tries were counted).
    Pairing {
        node: Option<NodeName>,
        tries: u32,
        expires_in: Duration,
    },
    /// A satellite proved the code and was enrolled.
    Used { node: NodeName },
    /// Expired, burned, or never issued.
    Gone,
}

impl Pairing {
    fn expire(&mut self, now: Instant) {
        self.codes.retain(|_, c| c.expires > now);
        self.sessions.retain(|_, s| s.expires > now);
    }

    /// Issue a new code; `this_router` marks a code for the controller's own router.
    pub fn new_code(
        &mut self,
        now: Instant,
        this_router: bool,
    ) -> Result<PairingCode, PairingError> {
        self.expire(now);
        if self.codes.len() >= MAX_CODES {
            return Err(PairingError::TooManyCodes);
        }
        let mut rng = rand::thread_rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
                .collect()
        };
        let slot = loop {
            let slot = pick(CODE_SLOT_LEN);
            if !self.codes.contains_key(&slot) {
                break slot;
            }
        };
        let secret = pick(CODE_SECRET_LEN);
        self.codes.insert(
            slot.clone(),
            Code {
                secret: secret.clone(),
                expires: now + CODE_LIFETIME,
                tries: 0,
                this_router,
            },
        );
        Ok(PairingCode { slot, secret })
    }

    /// Step 2: answer an agent's start. Counts one try against the code.
    pub fn start(
        &mut self,
        req: &PairStart,
        home_id: &HomeId,
        ca_pem: &str,
        now: Instant,
    ) -> Result<PairChallenge, PairingError> {
        self.expire(now);
        let code = self
            .codes
            .get_mut(&req.slot)
            .ok_or_else(|| PairingError::UnknownCode(req.slot.clone()))?;
        if code.tries >= MAX_TRIES {
            self.codes.remove(&req.slot);
            return Err(PairingError::Burned);
        }
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(PairingError::Busy);
        }
        code.tries += 1;
        let (spake_b, keys) = pake::controller_respond(
            &code.secret,
            &req.spake_a,
            req.node_name.as_str(),
            home_id.as_str(),
            ca_pem,
        )
        .map_err(|e| PairingError::BadMessage(e.to_string()))?;
        let session = trellis_proto::pairing::hex::encode(&rand::random::<[u8; 16]>());
        let confirm = keys.controller_confirm();
        self.sessions.insert(
            session.clone(),
            Session {
                slot: req.slot.clone(),
                node_name: req.node_name.clone(),
                keys,
                expires: now + SESSION_LIFETIME,
            },
        );
        Ok(PairChallenge {
            session,
            home_id: home_id.clone(),
            spake_b,
            ca_pem: ca_pem.to_owned(),
            confirm,
        })
    }

    /// Step 3: check the agent's confirmation. On success the code is used up.
    pub fn finish(&mut self, req: &PairFinish, now: Instant) -> Result<Admitted, PairingError> {
        self.expire(now);
        let session = self
            .sessions
            .remove(&req.session)
            .ok_or(PairingError::UnknownSession)?;
        if session
            .keys
            .verify_agent_confirm(&req.csr_pem, &req.confirm)
            .is_err()
        {
            let tries = self
                .codes
                .get(&session.slot)
                .map(|c| c.tries)
                .unwrap_or(MAX_TRIES);
            return Err(PairingError::WrongCode { tries });
        }
        // Single use: whoever proved the code first consumed it.
        let Some(code) = self.codes.remove(&session.slot) else {
            return Err(PairingError::UnknownCode(session.slot));
        };
        if self.used.len() >= MAX_CODES {
            self.used.pop_front();
        }
        self.used
            .push_back((session.slot.clone(), session.node_name.clone(), now));
        Ok(Admitted {
            node_name: session.node_name,
            this_router: code.this_router,
            csr_pem: req.csr_pem.clone(),
            keys: session.keys,
        })
    }

    /// The agent reports that the controller's confirmation did not check out (wrong code on
    /// its side). Returns the tries used, for the log.
    pub fn abort(&mut self, session: &str) -> Option<(NodeName, u32)> {
        let s = self.sessions.remove(session)?;
        let tries = self
            .codes
            .get(&s.slot)
            .map(|c| c.tries)
            .unwrap_or(MAX_TRIES);
        Some((s.node_name, tries))
    }

    /// How far the pairing with the code in `slot` got.
    pub fn progress(&mut self, slot: &str, now: Instant) -> Progress {
        self.expire(now);
        if let Some((_, node, _)) = self.used.iter().rev().find(|(s, _, _)| s == slot) {
            return Progress::Used { node: node.clone() };
        }
        let Some(code) = self.codes.get(slot) else {
            return Progress::Gone;
        };
        let expires_in = code.expires.saturating_duration_since(now);
        let node = self
            .sessions
            .values()
            .find(|s| s.slot == slot)
            .map(|s| s.node_name.clone());
        if node.is_none() && code.tries == 0 {
            return Progress::Waiting { expires_in };
        }
        Progress::Pairing {
            node,
            tries: code.tries,
            expires_in,
        }
    }

    /// Codes currently valid (for status displays).
    pub fn open_codes(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.codes.len()
    }
}

#[cfg(test)]
mod tests;
