//! Which of the home's networks each station on this router joined, for the node proxy's
//! policy decisions: a device's group comes first from the network it authenticated on
//! (issue 15), so a guest that copies a trusted laptop's MAC is still a guest.
//!
//! One table per process, written by [`super::runner::AccessPoints::annotate`] each time the
//! devices on this router are read, read by `MeshState::resolve_client`, which hands the
//! network to the policy's one rule for a device's group (`Source::device_on`).

use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

use trellis_proto::home_wifi::{NetworkKind, MAX_HEARD_CLIENTS};
use trellis_proto::policy::MacAddr;

/// Most stations remembered (the router's associated clients; bounded like the report).
const MAX_STATIONS: usize = 4 * MAX_HEARD_CLIENTS;

fn table() -> &'static RwLock<BTreeMap<MacAddr, NetworkKind>> {
    static T: OnceLock<RwLock<BTreeMap<MacAddr, NetworkKind>>> = OnceLock::new();
    T.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Replaces the table with the stations associated now.
pub fn set(stations: impl IntoIterator<Item = (MacAddr, NetworkKind)>) {
    let now: BTreeMap<MacAddr, NetworkKind> = stations.into_iter().take(MAX_STATIONS).collect();
    *table().write().unwrap_or_else(|p| p.into_inner()) = now;
}

/// The network `mac` joined on this router, if it is associated with one of the home's.
pub fn network_of(mac: MacAddr) -> Option<NetworkKind> {
    table()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&mac)
        .copied()
}

/// The table is one per process: tests that write it take turns.
#[cfg(test)]
pub(crate) static TEST_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_with_the_laptops_mac_is_a_guest() {
        use trellis_proto::policy::{Device, Joined, Policy, Source};
        let _turn = TEST_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let laptop: MacAddr = "02:00:00:00:0b:00".parse().unwrap();
        let book = [Device {
            name: "laptop".into(),
            mac: laptop,
            ips: vec![],
            group: "trusted".into(),
        }];
        let source = |network: Option<NetworkKind>| {
            let joined = network.map(|network| Joined {
                network,
                router: None,
            });
            Source::device_on(&book, &Policy::default(), Some(laptop), None, joined)
        };
        set([(laptop, NetworkKind::Guest)]);
        assert_eq!(source(network_of(laptop)).group(), Some("guest"));
        set([]);
        assert_eq!(
            source(network_of(laptop)).group(),
            Some("trusted"),
            "not on a home network: the book decides"
        );
    }
}
