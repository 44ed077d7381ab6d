//! Seats for one class of connections inside a listener, where stalling costs the staller.
//!
//! A cap alone lets whoever holds the seats keep them: 64 connections that each sent half a
//! request locked the controller's agents and admin out. A [`Budget`] knows which of its
//! connections are busy with a request and which are still *waiting* for one (in the TLS
//! handshake, trickling headers or a body, idle between keep-alive requests). When it is full,
//! a newcomer takes the seat of the oldest waiting connection, which is told to close
//! ([`Seat::evicted`]); only when every seat is busy answering a request is the newcomer
//! refused. A request that is being answered is never cut off for a newcomer.
//!
//! Evictions and refusals are counted and logged by the listener's [`Gate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::listener::{Gate, Refusal};

/// The seats of one class of connections (e.g. the controller's "web page and pairing").
#[derive(Debug)]
pub struct Budget {
    class: &'static str,
    cap: usize,
    gate: Arc<Gate>,
    seats: Mutex<Seats>,
}

#[derive(Debug, Default)]
struct Seats {
    next: u64,
    /// By age: the smallest id is the oldest seat. At most `cap` entries.
    held: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    waiting: bool,
    peer: SocketAddr,
    evict: Arc<Notify>,
}

/// One connection's seat; dropping it frees the seat.
#[derive(Debug)]
pub struct Seat {
    budget: Arc<Budget>,
    id: u64,
    evict: Arc<Notify>,
}

/// While held, the seat's connection is busy answering a request and cannot be evicted.
#[derive(Debug)]
pub struct Busy(Arc<Seat>);

impl Budget {
    pub fn new(class: &'static str, cap: usize, gate: Arc<Gate>) -> Arc<Self> {
        Arc::new(Self {
            class,
            cap,
            gate,
            seats: Mutex::new(Seats::default()),
        })
    }

    pub fn class(&self) -> &'static str {
        self.class
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seats> {
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A seat for a connection from `peer`, waiting for its request. When the budget is full
    /// the oldest waiting connection is evicted for it; when none is waiting, it is refused
    /// (counted as [`Refusal::BudgetFull`]).
    pub fn take(self: &Arc<Self>, peer: SocketAddr) -> Result<Seat, Refusal> {
        let mut seats = self.lock();
        if seats.held.len() >= self.cap {
            let oldest_waiting = seats
                .held
                .iter()
                .find(|(_, e)| e.waiting)
                .map(|(id, _)| *id);
            let Some(victim) = oldest_waiting.and_then(|id| seats.held.remove(&id)) else {
                drop(seats);
                self.gate.refuse(Refusal::BudgetFull, peer);
                return Err(Refusal::BudgetFull);
            };
            victim.evict.notify_one();
            self.gate.refuse(Refusal::Evicted, victim.peer);
        }
        let id = seats.next;
        seats.next += 1;
        let evict = Arc::new(Notify::new());
        seats.held.insert(
            id,
            Entry {
                waiting: true,
                peer,
                evict: evict.clone(),
            },
        );
        Ok(Seat {
            budget: self.clone(),
            id,
            evict,
        })
    }

    /// Seats taken now.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }
}

impl Seat {
    fn set_waiting(&self, waiting: bool) {
        if let Some(e) = self.budget.lock().held.get_mut(&self.id) {
            e.waiting = waiting;
        }
    }

    /// Mark the connection busy with a request until the guard drops (keep the guard until
    /// the response is sent, e.g. inside the response body).
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.set_waiting(false);
        Busy(self.clone())
    }

    /// Completes once a newer connection took this seat: the connection is to close now.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set_waiting(true);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.budget.lock().held.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use std::time::Duration;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 1000))
    }

    fn budget(cap: usize) -> (Arc<Gate>, Arc<Budget>) {
        let gate = Gate::new(
            "t",
            Limits {
                total: 100,
                per_source: 100,
            },
        );
        (gate.clone(), Budget::new("guests", cap, gate))
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_seat_of_the_oldest_waiting_connection_never_a_busy_one() {
        let (gate, b) = budget(2);
        let first = Arc::new(b.take(addr(1)).unwrap());
        let second = Arc::new(b.take(addr(2)).unwrap());
        let _answering = first.busy();
        let third = b.take(addr(3)).expect("second was only waiting");
        tokio::time::timeout(Duration::from_secs(5), second.evicted())
            .await
            .expect("the waiting one is told to close");
        assert_eq!(gate.refused(Refusal::Evicted), 1);
        assert_eq!(b.held(), 2);
        // first is busy, third is waiting: the fourth evicts third.
        let _fourth = b.take(addr(4)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), third.evicted())
            .await
            .expect("third evicted");
        drop(second);
        assert_eq!(b.held(), 2, "an evicted seat is not freed twice");
    }

    #[test]
    fn when_every_seat_is_busy_the_newcomer_is_refused_and_counted() {
        let (gate, b) = budget(1);
        let only = Arc::new(b.take(addr(1)).unwrap());
        let busy = only.busy();
        assert_eq!(b.take(addr(2)).unwrap_err(), Refusal::BudgetFull);
        assert_eq!(gate.refused(Refusal::BudgetFull), 1);
        drop(busy);
        assert!(b.take(addr(2)).is_ok(), "waiting again once answered");
    }
}
