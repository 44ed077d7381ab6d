//! Whether a router of the home is heard from: the one liveness rule.
//!
//! The page's router cards, the services' reachability in the config snapshot and the
//! pairing progress all ask [`Liveness::of`] (through `Home::liveness`), with the
//! controller's `--node-timeout-s`, so a router never shows online while its services
//! show unreachable.

use std::time::Duration;

/// A router's state as people see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from within the node timeout.
    Online,
    /// Not heard from yet, and the controller itself started less than a timeout ago (its
    /// routers are still calling in after a restart).
    Connecting,
    /// Silent for longer than the timeout: what it announced is unreachable.
    Offline,
    /// Removed from the home (its certificate revoked).
    Removed,
}

impl Liveness {
    /// `silent_for`: since the router last called the controller (`None`: not since the
    /// controller started). `up_for`: since the controller started.
    pub fn of(
        revoked: bool,
        silent_for: Option<Duration>,
        up_for: Duration,
        timeout: Duration,
    ) -> Self {
        if revoked {
            return Liveness::Removed;
        }
        match silent_for {
            Some(s) if s <= timeout => Liveness::Online,
            Some(_) => Liveness::Offline,
            None if up_for <= timeout => Liveness::Connecting,
            None => Liveness::Offline,
        }
    }

    /// The word the page and its JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Online => "online",
            Liveness::Connecting => "connecting",
            Liveness::Offline => "offline",
            Liveness::Removed => "removed",
        }
    }

    /// What it announced can be reached (or may be, while it is still calling in).
    pub fn reachable(self) -> bool {
        matches!(self, Liveness::Online | Liveness::Connecting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_node_timeout_decides_online_for_every_caller() {
        // Between 90 and 180 s the page used to say online while services said unreachable.
        let timeout = S(90);
        assert_eq!(
            Liveness::of(false, Some(S(89)), S(1000), timeout),
            Liveness::Online
        );
        assert_eq!(
            Liveness::of(false, Some(S(90)), S(1000), timeout),
            Liveness::Online
        );
        assert_eq!(
            Liveness::of(false, Some(S(120)), S(1000), timeout),
            Liveness::Offline
        );
        assert!(!Liveness::of(false, Some(S(120)), S(1000), timeout).reachable());
        // A shorter --node-timeout-s moves the card too.
        assert_eq!(
            Liveness::of(false, Some(S(20)), S(1000), S(10)),
            Liveness::Offline
        );
    }

    #[test]
    fn a_router_not_heard_since_a_restart_is_connecting_for_one_timeout() {
        let timeout = S(90);
        assert_eq!(
            Liveness::of(false, None, S(30), timeout),
            Liveness::Connecting
        );
        assert!(Liveness::of(false, None, S(30), timeout).reachable());
        assert_eq!(Liveness::of(false, None, S(91), timeout), Liveness::Offline);
        assert_eq!(
            Liveness::of(true, Some(S(1)), S(30), timeout),
            Liveness::Removed
        );
    }
}
