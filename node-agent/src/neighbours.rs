//! What the kernel knows of this router's links and neighbours, in one netlink read: its
//! interfaces (name, MAC, up or down, bridge master, radio or not), their IPv4 addresses, the
//! neighbours it resolved (an address's MAC on an interface) and its bridges' forwarding
//! databases (which port each MAC was learned on).
//!
//! Three parts decide from it: the device map's wired LAN ports ([`crate::devices::fdb`]), the
//! cables to other routers ([`crate::backhaul`]) and the address this router announces
//! ([`crate::control::address`]). Every dump is capped.

use std::collections::HashMap;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;

use trellis_proto::policy::MacAddr;

/// Most entries read from one dump: a home holds tens, a busy office a few thousand.
pub const MAX_ENTRIES: usize = 4096;

/// An interface of this router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<MacAddr>,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    /// A radio (access point or mesh): what is behind it is reported by nl80211, not here.
    pub wifi: bool,
    pub bridge: bool,
    pub loopback: bool,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// A resolved neighbour: an address, its MAC, the interface it was resolved on. Failed and
/// unresolved entries are left out: that address did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub ifindex: u32,
}

/// A MAC a bridge learned on one of its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub mac: MacAddr,
    pub port: u32,
    /// The port's own address (a permanent entry), not something behind it.
    pub local: bool,
}

#[derive(Debug, Clone, Default)]
pub struct KernelView {
    pub interfaces: HashMap<u32, Interface>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<Learned>,
    /// IPv4 addresses by interface index.
    pub addresses: Vec<(u32, std::net::Ipv4Addr)>,
}

impl KernelView {
    /// The port of bridge `bridge` that `mac` was learned on.
    pub fn learned_port(&self, bridge: u32, mac: MacAddr) -> Option<u32> {
        self.fdb
            .iter()
            .find(|l| {
                l.mac == mac
                    && !l.local
                    && self.interfaces.get(&l.port).and_then(|i| i.master) == Some(bridge)
            })
            .map(|l| l.port)
    }

    /// The MACs the kernel resolved for `addresses`.
    pub fn macs_of(&self, addresses: &[IpAddr]) -> Vec<MacAddr> {
        self.neighbours
            .iter()
            .filter(|n| addresses.contains(&n.ip))
            .map(|n| n.mac)
            .collect()
    }
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
}

/// Read interfaces, neighbours and forwarding databases.
pub async fn read() -> Result<KernelView, Error> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let conn = tokio::spawn(conn);
    let result = dump(&handle).await;
    conn.abort();
    result
}

async fn dump(handle: &rtnetlink::Handle) -> Result<KernelView, Error> {
    let netlink = |what| move |source| Error::Netlink { what, source };
    let mut view = KernelView::default();
    let mut links = handle.link().get().execute();
    while let Some(l) = links.try_next().await.map_err(netlink("listing links"))? {
        if view.interfaces.len() >= MAX_ENTRIES {
            break;
        }
        let (mut name, mut mac, mut master, mut bridge) = (None, None, None, false);
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(b) => {
                    mac = <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
                }
                LinkAttribute::Controller(m) => master = Some(*m),
                LinkAttribute::LinkInfo(info) => {
                    bridge = info
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)))
                }
                _ => {}
            }
        }
        let Some(name) = name else { continue };
        // Netlink does not say "radio"; cfg80211's sysfs link does (sysfs shows the daemon's
        // own namespace, which is where the radios are).
        let wifi = std::path::Path::new("/sys/class/net")
            .join(&name)
            .join("phy80211")
            .exists();
        view.interfaces.insert(
            l.header.index,
            Interface {
                wifi,
                bridge,
                loopback: l.header.flags.contains(LinkFlags::Loopback),
                up: l.header.flags.contains(LinkFlags::Up),
                name,
                mac,
                master,
            },
        );
    }
    let mut addresses = handle.address().get().execute();
    while let Some(a) = addresses
        .try_next()
        .await
        .map_err(netlink("listing addresses"))?
    {
        if view.addresses.len() >= MAX_ENTRIES {
            break;
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
        // point-to-point link and the same as IFA_LOCAL elsewhere.
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let address = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local.or(address) {
            view.addresses.push((a.header.index, ip));
        }
    }
    let mut resolved = handle.neighbours().get().execute();
    while let Some(n) = resolved
        .try_next()
        .await
        .map_err(netlink("reading the neighbour table"))?
    {
        if view.neighbours.len() >= MAX_ENTRIES {
            break;
        }
        if matches!(
            n.header.state,
            NeighbourState::Failed | NeighbourState::Incomplete | NeighbourState::None
        ) {
            continue;
        }
        let ip = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        });
        if let (Some(ip), Some(mac)) = (ip, lladdr(&n)) {
            view.neighbours.push(Neighbour {
                ip,
                mac,
                ifindex: n.header.ifindex,
            });
        }
    }
    let mut learned = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    while let Some(n) = learned
        .try_next()
        .await
        .map_err(netlink("reading the bridges' forwarding databases"))?
    {
        if view.fdb.len() >= MAX_ENTRIES {
            break;
        }
        if let Some(mac) = lladdr(&n) {
            view.fdb.push(Learned {
                mac,
                port: n.header.ifindex,
                local: n.header.state == NeighbourState::Permanent,
            });
        }
    }
    Ok(view)
}

fn lladdr(n: &NeighbourMessage) -> Option<MacAddr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => {
            <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
        }
        _ => None,
    })
}
