//! Why no peer link comes up: the words the supervisor prints (once per outage) when the
//! mesh has had no established link for a while.

use std::time::Duration;

/// After this long with peers in sight but none established, say why.
pub(super) const DIAGNOSE_AFTER: Duration = Duration::from_secs(12);

/// What the SAE failures since the last success say
/// ([`SaeFailures`](crate::sae_failures::SaeFailures)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthFailures {
    None,
    Retrying,
    Sure,
}

/// Why no peer link came up, in words a person can act on.
pub(super) fn why_no_link(sae: bool, peers_in_range: bool, auth: AuthFailures) -> &'static str {
    match (sae, peers_in_range, auth) {
        (true, _, AuthFailures::Sure) => "SAE authentication keeps failing with every peer: the mesh password differs from the other nodes' (re-pair this node)",
        (true, _, AuthFailures::Retrying) => "SAE authentication failed and is being retried; not sure yet that the mesh password differs (wait; it is reported after repeated failures over half a minute)",
        (true, true, AuthFailures::None) => "mesh peers are in range but no link came up: authentication does not complete, most likely a wrong mesh password",
        (false, true, _) => "mesh peers are in range but no link came up: check that every node uses the same mesh settings",
        (_, false, _) => "no mesh peer in range on this channel and mesh ID: check the channel, the mesh ID and the distance",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_link_diagnosis_names_the_likely_cause() {
        use AuthFailures as A;
        assert!(why_no_link(true, true, A::Sure).contains("password differs"));
        assert!(!why_no_link(true, true, A::Retrying).contains("re-pair"));
        assert!(why_no_link(true, true, A::Retrying).contains("retried"));
        assert!(why_no_link(true, true, A::None).contains("wrong mesh password"));
        assert!(why_no_link(false, true, A::None).contains("same mesh settings"));
        assert!(why_no_link(true, false, A::None).contains("no mesh peer in range"));
    }
}
