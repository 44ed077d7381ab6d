//! Pairing codes and the controller's side of the pairing exchange.
//!
//! A code is single use, valid ten minutes, and burned after five tries: each SPAKE2 run is
//! one online guess, so a try is counted when a well-formed run *starts* (a message that is
//! not a SPAKE2 element is refused as malformed and costs the code nothing). Codes and
//! sessions live in RAM only (a restart forgets them, which fails closed) and every table is
//! bounded.
//!
//! The answer to a start reveals nothing about which codes exist: a slot with no open code
//! (never issued, expired, used or burned) gets a decoy run under a random password, which
//! fails at the confirmation exactly like a wrong secret for an open code. Starts are limited
//! per source address ([`StartLimit`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
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
/// Pairing starts one source (an IPv4 address, an IPv6 /64) may make per [`START_WINDOW`]:
/// a satellite makes one, a person retyping a code a few.
pub const STARTS_PER_SOURCE: usize = 10;
pub const START_WINDOW: Duration = Duration::from_secs(60);
/// Sources whose recent starts are remembered; when that many are pairing at once, a new
/// source waits (fails closed: the table never grows).
pub const MAX_SOURCES: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PairingError {
    #[error("the pairing code was used meanwhile by another router; ask for a new code on the router page or with `trellis pair`")]
    UsedMeanwhile,
    /// The same answer whether the slot has an open code or not; `tries` (for the admin's
    /// log only) is `None` for a slot without one.
    #[error("wrong pairing code, or it expired (10 minutes), was used, or was tried {MAX_TRIES} times; check the code on the router page or ask for a new one")]
    WrongCode { tries: Option<u32> },
    #[error("the pairing session expired or is unknown; start `trellis-agent join` again")]
    UnknownSession,
    #[error("too many pairing codes are open ({MAX_CODES}); wait for some to expire")]
    TooManyCodes,
    #[error("too many devices are pairing at once; try again in a minute")]
    Busy,
    #[error("too many pairing attempts from this address; wait {0} s and try again")]
    TooFast(u64),
    #[error("the agent's pairing message is malformed: {0}")]
    BadMessage(String),
}

/// Recent pairing starts per source address, bounded in sources and in starts per source.
#[derive(Default)]
pub struct StartLimit {
    by_source: HashMap<IpAddr, VecDeque<Instant>>,
}

impl StartLimit {
    /// Count a start from `peer`, or say why it must wait.
    pub fn admit(&mut self, peer: IpAddr, now: Instant) -> Result<(), PairingError> {
        let source = trellis_io::listener::source_of(peer);
        let recent = |t: &Instant| now.saturating_duration_since(*t) < START_WINDOW;
        self.by_source.retain(|_, starts| {
            starts.retain(recent);
            !starts.is_empty()
        });
        if !self.by_source.contains_key(&source) && self.by_source.len() >= MAX_SOURCES {
            return Err(PairingError::Busy);
        }
        let starts = self.by_source.entry(source).or_default();
        if starts.len() >= STARTS_PER_SOURCE {
            let oldest = starts.front().copied().unwrap_or(now);
            let wait = START_WINDOW.saturating_sub(now.saturating_duration_since(oldest));
            return Err(PairingError::TooFast(wait.as_secs().max(1)));
        }
        starts.push_back(now);
        Ok(())
    }
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
    /// The open code this run is for; `None` for a decoy (the slot had none).
    slot: Option<String>,
    started: Instant,
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
    used: VecDeque<(String, NodeName, Instant)>,
    starts: StartLimit,
}

/// What a start turned out to be, for the controller's log (never for the agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A run against an open code: its try number.
    Code { tries: u32 },
    /// A decoy run: the slot had no open code.
    Decoy,
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

/// `n` random characters of the code alphabet.
fn random_chars(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
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
        let slot = loop {
            let slot = random_chars(CODE_SLOT_LEN);
            if !self.codes.contains_key(&slot) {
                break slot;
            }
        };
        let secret = random_chars(CODE_SECRET_LEN);
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

    /// Step 2: answer an agent's start from `peer`. Counts one try against an open code once
    /// the agent's message is well formed; a slot without one gets a decoy run.
    pub fn start(
        &mut self,
        req: &PairStart,
        peer: IpAddr,
        home_id: &HomeId,
        ca_pem: &str,
        now: Instant,
    ) -> Result<(PairChallenge, Started), PairingError> {
        self.admit(peer, now)?;
        self.run(req, home_id, ca_pem, now)
    }

    /// Count a start from `peer` against its rate ([`StartLimit`]): before anything else is
    /// looked at, so no answer comes cheaper than the limit allows.
    pub fn admit(&mut self, peer: IpAddr, now: Instant) -> Result<(), PairingError> {
        self.starts.admit(peer, now)
    }

    /// [`Pairing::start`] for a start already admitted.
    pub fn run(
        &mut self,
        req: &PairStart,
        home_id: &HomeId,
        ca_pem: &str,
        now: Instant,
    ) -> Result<(PairChallenge, Started), PairingError> {
        self.expire(now);
        if req.slot.len() != CODE_SLOT_LEN || !req.slot.bytes().all(|b| CODE_ALPHABET.contains(&b))
        {
            return Err(PairingError::BadMessage(format!(
                "the slot is the first {CODE_SLOT_LEN} characters of the code"
            )));
        }
        // A burned code is forgotten: from here on its slot is like any other without one.
        if self
            .codes
            .get(&req.slot)
            .is_some_and(|c| c.tries >= MAX_TRIES)
        {
            self.codes.remove(&req.slot);
        }
        let decoy_secret;
        let secret = match self.codes.get(&req.slot) {
            Some(code) => code.secret.as_str(),
            None => {
                decoy_secret = random_chars(CODE_SECRET_LEN);
                decoy_secret.as_str()
            }
        };
        let (spake_b, keys) = pake::controller_respond(
            secret,
            &req.spake_a,
            req.node_name.as_str(),
            home_id.as_str(),
            ca_pem,
        )
        .map_err(|e| PairingError::BadMessage(e.to_string()))?;
        let started = match self.codes.get_mut(&req.slot) {
            Some(code) => {
                code.tries += 1;
                Started::Code { tries: code.tries }
            }
            None => Started::Decoy,
        };
        // Full: the oldest run gives way. A real run lasts well under a second, so a flood
        // (limited per source) cannot hold every place the way unfinished decoys would.
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(id, _)| id.clone())
            {
                self.sessions.remove(&oldest);
            }
        }
        let session = trellis_proto::pairing::hex::encode(&rand::random::<[u8; 16]>());
        let confirm = keys.controller_confirm();
        self.sessions.insert(
            session.clone(),
            Session {
                slot: (started != Started::Decoy).then(|| req.slot.clone()),
                started: now,
                node_name: req.node_name.clone(),
                keys,
                expires: now + SESSION_LIFETIME,
            },
        );
        let challenge = PairChallenge {
            session,
            home_id: home_id.clone(),
            spake_b,
            ca_pem: ca_pem.to_owned(),
            confirm,
        };
        Ok((challenge, started))
    }

    /// Step 3: check the agent's confirmation. On success the code is used up.
    pub fn finish(&mut self, req: &PairFinish, now: Instant) -> Result<Admitted, PairingError> {
        self.expire(now);
        let session = self
            .sessions
            .remove(&req.session)
            .ok_or(PairingError::UnknownSession)?;
        // A decoy never admits, whatever the agent sends.
        let slot = match session.slot {
            Some(slot)
                if session
                    .keys
                    .verify_agent_confirm(&req.csr_pem, &req.confirm)
                    .is_ok() =>
            {
                slot
            }
            slot => {
                let tries = slot.and_then(|s| self.codes.get(&s).map(|c| c.tries));
                return Err(PairingError::WrongCode { tries });
            }
        };
        // Single use: whoever proved the code first consumed it.
        let Some(code) = self.codes.remove(&slot) else {
            return Err(PairingError::UsedMeanwhile);
        };
        if self.used.len() >= MAX_CODES {
            self.used.pop_front();
        }
        self.used.push_back((slot, session.node_name.clone(), now));
        Ok(Admitted {
            node_name: session.node_name,
            this_router: code.this_router,
            csr_pem: req.csr_pem.clone(),
            keys: session.keys,
        })
    }

    /// The agent reports that the controller's confirmation did not check out (wrong code on
    /// its side). Returns the node and, for an open code, the tries used (for the log).
    pub fn abort(&mut self, session: &str) -> Option<(NodeName, Option<u32>)> {
        let s = self.sessions.remove(session)?;
        let tries = s
            .slot
            .and_then(|slot| self.codes.get(&slot).map(|c| c.tries));
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
            .find(|s| s.slot.as_deref() == Some(slot))
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
