//! Wired devices behind this router, from the LAN bridge's forwarding database (`bridge fdb`).
//!
//! A bridge learns which port each MAC sends from. A device plugged into one of this
//! router's LAN ports is learned on that port; every device elsewhere in the home is learned
//! on a port towards the rest of the home: the mesh interface, or the cable to another
//! router. Such backhaul ports are recognised by what is behind them: another router of the
//! home (its address in the ARP table, so its MAC, learned on that port). Wifi ports are left
//! out here: the access points' station dump reports their clients with a signal, and the
//! mesh port is backhaul.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use crate::neighbours::KernelView;
use trellis_proto::policy::MacAddr;

/// One learned MAC: which port of the bridge it sends from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub port: u32,
    /// The port's own address (permanent entry), not a device.
    pub local: bool,
}

/// A port of the LAN bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    /// A wifi interface (access point or mesh): its devices come from elsewhere.
    pub wifi: bool,
}

/// A device learned on one of this router's own wired LAN ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiredDevice {
    pub mac: MacAddr,
    pub port: String,
}

/// Which learned MACs are devices on this router's own wired ports: not the ports' own
/// addresses, not on a wifi port, not on a port where another router of the home is learned.
pub fn local_devices(
    entries: &[FdbEntry],
    ports: &HashMap<u32, Port>,
    router_macs: &HashSet<MacAddr>,
) -> Vec<WiredDevice> {
    let backhaul: HashSet<u32> = entries
        .iter()
        .filter(|e| !e.local && router_macs.contains(&e.mac))
        .map(|e| e.port)
        .collect();
    let mut out = BTreeSet::new();
    for e in entries {
        if e.local || backhaul.contains(&e.port) || router_macs.contains(&e.mac) {
            continue;
        }
        let Some(port) = ports.get(&e.port) else {
            continue;
        };
        // Multicast and broadcast addresses are never devices.
        if port.wifi || e.mac.0[0] & 1 == 1 {
            continue;
        }
        out.insert((e.mac, port.name.clone()));
    }
    out.into_iter()
        .map(|(mac, port)| WiredDevice { mac, port })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] crate::neighbours::Error),
    #[error("no bridge named {0}")]
    NoBridge(String),
}

/// Read the bridge's ports, its forwarding database and the neighbour table, and return the
/// devices on its wired ports. `routers`: the addresses of the home's other routers.
pub async fn wired_devices(bridge: &str, routers: &[IpAddr]) -> Result<Vec<WiredDevice>, Error> {
    let view = crate::neighbours::read().await?;
    on_bridge(&view, bridge, routers)
}

/// The devices on `bridge`'s wired ports, from what the kernel knows.
pub fn on_bridge(
    view: &KernelView,
    bridge: &str,
    routers: &[IpAddr],
) -> Result<Vec<WiredDevice>, Error> {
    let bridge_index = view
        .interfaces
        .iter()
        .find(|(_, i)| i.name == bridge)
        .map(|(index, _)| *index)
        .ok_or_else(|| Error::NoBridge(bridge.to_owned()))?;
    let ports: HashMap<u32, Port> = view
        .interfaces
        .iter()
        .filter(|(_, i)| i.master == Some(bridge_index))
        .map(|(index, i)| {
            (
                *index,
                Port {
                    name: i.name.clone(),
                    wifi: i.wifi,
                },
            )
        })
        .collect();
    let entries: Vec<FdbEntry> = view
        .fdb
        .iter()
        .filter(|l| ports.contains_key(&l.port))
        .map(|l| FdbEntry {
            mac: l.mac,
            port: l.port,
            local: l.local,
        })
        .collect();
    let router_macs: HashSet<MacAddr> = view.macs_of(routers).into_iter().collect();
    Ok(local_devices(&entries, &ports, &router_macs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn entry(last: u8, port: u32) -> FdbEntry {
        FdbEntry {
            mac: mac(last),
            port,
            local: false,
        }
    }

    fn ports() -> HashMap<u32, Port> {
        let port = |name: &str, wifi| Port {
            name: name.into(),
            wifi,
        };
        HashMap::from([
            (2, port("lan1", false)),
            (3, port("lan2", false)),
            (4, port("phy0-mesh0", true)),
            (5, port("phy1-ap0", true)),
        ])
    }

    #[test]
    fn devices_on_lan_ports_count_and_backhaul_ports_do_not() {
        // lan2 is a cable to the primary router (mac 9): everything learned there is
        // elsewhere in the home, like everything on the mesh port.
        let entries = [
            entry(1, 2),
            FdbEntry {
                local: true,
                ..entry(2, 2)
            },
            entry(9, 3),
            entry(10, 3),
            entry(11, 4),
            entry(12, 5),
        ];
        let routers = HashSet::from([mac(9)]);
        assert_eq!(
            local_devices(&entries, &ports(), &routers),
            vec![WiredDevice {
                mac: mac(1),
                port: "lan1".into()
            }]
        );
    }

    #[test]
    fn without_a_known_router_every_wired_port_counts_but_never_multicast() {
        let mut multicast = entry(3, 3);
        multicast.mac.0[0] = 0x01;
        let found = local_devices(
            &[entry(1, 2), entry(10, 3), multicast],
            &ports(),
            &HashSet::new(),
        );
        let macs: Vec<MacAddr> = found.iter().map(|d| d.mac).collect();
        assert_eq!(macs, vec![mac(1), mac(10)]);
    }
}
