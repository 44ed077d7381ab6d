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

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;

use crate::wifi::Mac;

/// Most entries read from one dump: a home bridge holds tens, a busy office a few thousand.
const MAX_ENTRIES: usize = 4096;

/// One learned MAC: which port of the bridge it sends from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: Mac,
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
    pub mac: Mac,
    pub port: String,
}

/// Which learned MACs are devices on this router's own wired ports: not the ports' own
/// addresses, not on a wifi port, not on a port where another router of the home is learned.
pub fn local_devices(
    entries: &[FdbEntry],
    ports: &HashMap<u32, Port>,
    router_macs: &HashSet<Mac>,
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
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: &'static str,
        source: rtnetlink::Error,
    },
    #[error("no bridge named {0}")]
    NoBridge(String),
}

/// Read the bridge's ports, its forwarding database and the ARP table, and return the
/// devices on its wired ports. `routers`: the addresses of the home's other routers.
pub async fn wired_devices(bridge: &str, routers: &[IpAddr]) -> Result<Vec<WiredDevice>, Error> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let conn = tokio::spawn(conn);
    let result = read(&handle, bridge, routers).await;
    conn.abort();
    result
}

async fn read(
    handle: &rtnetlink::Handle,
    bridge: &str,
    routers: &[IpAddr],
) -> Result<Vec<WiredDevice>, Error> {
    let netlink = |what| move |source| Error::Netlink { what, source };
    let mut links = handle.link().get().execute();
    let mut bridge_index = None;
    let mut members: Vec<(u32, String, Option<u32>)> = Vec::new();
    while let Some(l) = links.try_next().await.map_err(netlink("listing links"))? {
        let mut name = None;
        let mut master = None;
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Controller(m) => master = Some(*m),
                _ => {}
            }
        }
        let Some(name) = name else { continue };
        if name == bridge {
            bridge_index = Some(l.header.index);
        }
        if members.len() < MAX_ENTRIES {
            members.push((l.header.index, name, master));
        }
    }
    let bridge_index = bridge_index.ok_or_else(|| Error::NoBridge(bridge.to_owned()))?;
    let ports: HashMap<u32, Port> = members
        .into_iter()
        .filter(|(_, _, master)| *master == Some(bridge_index))
        .map(|(index, name, _)| {
            let wifi = std::path::Path::new("/sys/class/net")
                .join(&name)
                .join("phy80211")
                .exists();
            (index, Port { name, wifi })
        })
        .collect();

    let mut entries = Vec::new();
    let mut fdb = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    while let Some(n) = fdb
        .try_next()
        .await
        .map_err(netlink("reading the bridge's FDB"))?
    {
        if entries.len() >= MAX_ENTRIES {
            break;
        }
        if !ports.contains_key(&n.header.ifindex) {
            continue;
        }
        if let Some(mac) = lladdr(&n) {
            entries.push(FdbEntry {
                mac,
                port: n.header.ifindex,
                local: n.header.state == NeighbourState::Permanent,
            });
        }
    }

    let wanted: HashSet<IpAddr> = routers.iter().copied().collect();
    let mut router_macs = HashSet::new();
    let mut arp = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(n) = arp
        .try_next()
        .await
        .map_err(netlink("reading the ARP table"))?
    {
        let ip = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            _ => None,
        });
        if ip.is_some_and(|ip| wanted.contains(&ip)) {
            if let Some(mac) = lladdr(&n) {
                router_macs.insert(mac);
            }
        }
    }
    Ok(local_devices(&entries, &ports, &router_macs))
}

fn lladdr(n: &NeighbourMessage) -> Option<Mac> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok().map(Mac),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, last])
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
        let macs: Vec<Mac> = found.iter().map(|d| d.mac).collect();
        assert_eq!(macs, vec![mac(1), mac(10)]);
    }
}
