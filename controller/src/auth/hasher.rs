//! The queue every argon2id run of the web page goes through: one run at a time into one
//! reused buffer, two bounded [`Lane`]s (the admin's and everyone else's), one try in flight
//! per source. A full queue answers [`HashBusy`] instead of waiting.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::Block;
use tokio::sync::Semaphore;

use super::key;
use super::password::{hash_password_in, new_memory, verify_password_in};
use crate::store::PasswordRecord;

/// Password checks waiting for a lane, beyond the one running in it.
pub const MAX_QUEUED: usize = 16;

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

pub(super) struct LaneSlot {
    /// One run at a time from the lane; waiters queue in order (tokio's semaphore is fair).
    pub(super) run: Arc<Semaphore>,
    pub(super) waiting: Mutex<usize>,
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
/// try in flight per source (the rule is in the module comment of [`crate::auth`]).
#[derive(Default)]
pub struct Hasher {
    admin: LaneSlot,
    pub(super) anyone: LaneSlot,
    /// Allocated by the first run, then reused by every run (one at a time: whoever holds
    /// it runs): 12 MiB that stay, instead of 12 MiB more per parallel login that glibc's
    /// per-thread arenas may never give back.
    memory: Arc<Mutex<Vec<Block>>>,
    /// Sources with a check running or waiting: at most `2 * (MAX_QUEUED + 1)` entries.
    pub(super) in_flight: Arc<Mutex<HashSet<IpAddr>>>,
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
