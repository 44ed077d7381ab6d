//! Which of the home's networks each station on this router joined, for the node proxy's
//! policy decisions: a device's group comes first from the network it authenticated on
//! (issue 15), so a guest that copies a trusted laptop's MAC is still a guest.
//!
//! One table per process, written by [`super::runner::AccessPoints::annotate`] each time the
//! devices on this router are read, read by `MeshState::resolve_client`. The smallest hook
//! until the policy evaluator takes the network itself (the controller half of issue 15).

use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

use trellis_proto::home_wifi::{NetworkKind, MAX_HEARD_CLIENTS};
use trellis_proto::policy::{MacAddr, Source};

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

/// A device source's group, decided first by the network it joined here.
pub fn apply(source: &mut Source) {
    if let Source::Device {
        mac: Some(mac),
        group,
        ..
    } = source
    {
        if let Some(kind) = network_of(*mac) {
            *group = kind.group().to_string();
        }
    }
}

/// The table is one per process: tests that write it take turns.
#[cfg(test)]
pub(crate) static TEST_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_with_the_laptops_mac_is_a_guest() {
        let _turn = TEST_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let laptop: MacAddr = "02:00:00:00:0b:00".parse().unwrap();
        let mut s = Source::Device {
            name: Some("laptop".into()),
            mac: Some(laptop),
            ip: None,
            group: "trusted".into(),
        };
        set([(laptop, NetworkKind::Guest)]);
        apply(&mut s);
        assert_eq!(s.group(), Some("guest"));
        set([]);
        let mut s2 = Source::Device {
            name: Some("laptop".into()),
            mac: Some(laptop),
            ip: None,
            group: "trusted".into(),
        };
        apply(&mut s2);
        assert_eq!(
            s2.group(),
            Some("trusted"),
            "not on a home network: the book decides"
        );
    }
}
