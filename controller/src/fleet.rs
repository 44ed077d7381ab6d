//! Whether a router of the home is heard from: the one liveness rule.
//!
//! The page's router cards, the services' reachability in the config snapshot and the
//! pairing progress all ask [`Liveness::of`] (through `Home::liveness`), with the
//! controller's `--node-timeout-s`, so a router never shows online while its services
//! show unreachable.
//!
//! Beside it the one rule for how long a router's reported mesh links stay on the map
//! ([`links_current`]): a link is as old as the report that carried it.

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

/// How many of its sender's report intervals a mesh link report stays on the map: one lost
/// report is not a dead link, three are.
pub const LINK_REPORTS_KEPT: u32 = 3;

/// Whether the mesh links a router reported are still on the map (and count for the hops
/// from the portal). `report_age`: since its last telemetry arrived (`None`: none since the
/// controller started). `report_every`: the interval the agent said it reports at (`None`:
/// an agent that does not say; its links last the node timeout). Never longer than the node
/// timeout: an offline router has no links.
///
/// The topology applies it to both ends of a link: a link another router reports *to* a
/// router whose own reports stopped goes too. Routers reach the controller over the same
/// mesh, so a relay whose reports stop while a neighbour still lists it is almost always
/// powered off, and the neighbour's entry is wpa_supplicant holding a dead peer until its
/// inactivity timeout; keeping it would keep the hops on the dead path.
pub fn links_current(
    report_age: Option<Duration>,
    report_every: Option<Duration>,
    timeout: Duration,
) -> bool {
    let Some(age) = report_age else {
        return false;
    };
    let kept = report_every
        .map(|every| every.saturating_mul(LINK_REPORTS_KEPT))
        .unwrap_or(timeout)
        .min(timeout);
    age <= kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_as_old_as_the_report_that_carried_them() {
        let timeout = S(90);
        // Reporting every 2 s: kept for 6 s, then off the map.
        assert!(links_current(Some(S(0)), Some(S(2)), timeout));
        assert!(links_current(Some(S(6)), Some(S(2)), timeout));
        assert!(!links_current(Some(S(7)), Some(S(2)), timeout));
        // The default 30 s: one lost report keeps them, the node timeout still caps.
        assert!(links_current(Some(S(61)), Some(S(30)), timeout));
        assert!(!links_current(Some(S(91)), Some(S(30)), timeout));
        assert!(!links_current(Some(S(91)), Some(S(3600)), timeout));
        // An agent that does not say its interval: the node timeout.
        assert!(links_current(Some(S(89)), None, timeout));
        assert!(!links_current(Some(S(91)), None, timeout));
        // No report since the controller started: no links.
        assert!(!links_current(None, Some(S(2)), timeout));
    }

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
