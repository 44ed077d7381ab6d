//! At most one log line per interval for events a client can cause at will.
//!
//! A refused connection used to log a line each: 203,337 lines (28 MB) in one afternoon on a
//! router whose log buffer is a few hundred KiB, wiping everything else. [`RateLog::hit`] says
//! when it is time to write one line, and how many events that line stands for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a client-triggered event may write a log line.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Counts events and lets one through per interval.
#[derive(Debug)]
pub struct RateLog {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    /// Events since the last line written (this one included once it is written).
    pending: u64,
}

impl RateLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Note one event at `now`. `Some(n)`: write a line now, for `n` events (this one and the
    /// ones held back since the last line); `None`: stay quiet.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.pending += 1;
        let due = s
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.pending))
    }
}

impl Default for RateLog {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_standing_for_every_event_held_back() {
        let log = RateLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(log.hit(t0), Some(1), "the first event is told at once");
        for s in 1..60 {
            assert_eq!(log.hit(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            log.hit(t0 + Duration::from_secs(60)),
            Some(60),
            "the next line counts the 59 held back and itself"
        );
        assert_eq!(log.hit(t0 + Duration::from_secs(61)), None);
    }
}
