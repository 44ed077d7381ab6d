//! Cables between routers, for the map: another router of the home that the kernel reaches
//! through a wired interface of this one.
//!
//! The wifi half of the backhaul reports itself (`trellis-agent mesh` judges its 802.11s
//! peer links). A cable says nothing, so it is recognised by what is behind it: the kernel's
//! neighbour entry for another router's address names the interface it was resolved on, and
//! when that interface is a bridge, the bridge's forwarding database names the port. If that
//! interface or port is not a radio, the router is behind a cable. The agent also names
//! itself by its interfaces' MACs, so the router at the other end can be told from a device.
//!
//! Routers that never talk to each other have no neighbour entry; a datagram to each one's
//! discard port (UDP 9) every round makes the kernel resolve it, so every cable shows.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use trellis_proto::api::{LinkMedium, LinkVerdict, MeshLink, MAX_NODE_MACS};

use crate::control::telemetry::Cables;
use crate::control::{Agent, Trust};
use crate::neighbours::{Interface, KernelView};
use trellis_proto::policy::MacAddr;

/// How often cables are looked for again (a cable plugged in shows within this).
const EVERY: Duration = Duration::from_secs(15);
/// Another router seen through a wired interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cable {
    /// The far end's MAC, as the far router names itself.
    pub peer: MacAddr,
    /// This router's interface (or bridge port) the cable is on.
    pub port: String,
}

/// Which of what the kernel knows is a cable to one of `routers`.
pub fn cables(view: &KernelView, routers: &[IpAddr]) -> Vec<Cable> {
    let mut out = BTreeSet::new();
    for n in view.neighbours.iter().filter(|n| routers.contains(&n.ip)) {
        let Some(on) = view.interfaces.get(&n.ifindex) else {
            continue;
        };
        let port = if on.bridge {
            match view
                .learned_port(n.ifindex, n.mac)
                .and_then(|p| view.interfaces.get(&p))
            {
                Some(port) => port,
                // Not learned yet: which port is unknown, so whether it is a cable too.
                None => continue,
            }
        } else {
            on
        };
        if port.wifi || port.loopback {
            continue;
        }
        out.insert(Cable {
            peer: n.mac,
            port: port.name.clone(),
        });
    }
    out.into_iter().collect()
}

/// The MACs this router is known by at the far end of a cable: its interfaces' own.
pub fn own_macs(interfaces: &HashMap<u32, Interface>) -> Vec<String> {
    let macs: BTreeSet<String> = interfaces
        .values()
        .filter(|i| !i.loopback)
        .filter_map(|i| i.mac)
        .filter(|m| m.0 != [0; 6])
        .map(|m| m.to_string())
        .collect();
    macs.into_iter().take(MAX_NODE_MACS).collect()
}

/// A cable as a link of the map. A cable that carries traffic is good; whether it is the
/// path traffic takes is the routing's business, not the map's.
pub fn link(c: &Cable) -> MeshLink {
    MeshLink {
        peer: c.peer.to_string(),
        medium: LinkMedium::Cable,
        signal_dbm: None,
        expected_throughput_kbps: None,
        airtime_metric: None,
        verdict: LinkVerdict::Good,
        advice: Vec::new(),
    }
}

/// The cables and this router's own MACs, from one read of the kernel's tables.
pub async fn read(
    routers: &[IpAddr],
) -> Result<(Vec<Cable>, Vec<String>), crate::neighbours::Error> {
    let view = crate::neighbours::read().await?;
    Ok((cables(&view, routers), own_macs(&view.interfaces)))
}

/// The addresses of the home's other routers: their announced tunnel addresses.
fn router_addresses(agent: &Agent, trust: &Trust) -> Vec<IpAddr> {
    let me = &agent.node.identity;
    let mut out: Vec<IpAddr> = trust
        .snapshot()
        .map(|s| {
            s.nodes
                .iter()
                .filter(|n| &n.identity != me)
                .flat_map(|n| n.socket_addrs(0).map(|a| a.ip()))
                .collect()
        })
        .unwrap_or_default();
    out.retain(|ip| !ip.is_loopback() && !ip.is_unspecified());
    out.sort();
    out.dedup();
    out
}

/// Make the kernel resolve each router's address: one datagram to its discard port.
async fn probe(routers: &[IpAddr]) {
    for ip in routers {
        let bind: SocketAddr = if ip.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(socket) = tokio::net::UdpSocket::bind(bind).await {
            let _ = socket.send_to(&[], SocketAddr::new(*ip, 9)).await;
        }
    }
}

/// Keep the agent's cable links current until the task is dropped.
pub fn start(agent: Agent, trust: Trust) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut said_error = false;
        let mut last = None;
        loop {
            let routers = router_addresses(&agent, &trust);
            probe(&routers).await;
            match read(&routers).await {
                Ok((cables, macs)) => {
                    let now = (cables.iter().map(link).collect::<Vec<_>>(), macs);
                    if last.as_ref() != Some(&now) {
                        for c in &cables {
                            tracing::debug!(peer = %c.peer, port = %c.port, "another router is behind a cable");
                        }
                        agent.published.cables.publish(Cables {
                            links: now.0.clone(),
                            macs: now.1.clone(),
                        });
                        last = Some(now);
                    }
                }
                Err(e) if !said_error => {
                    tracing::info!("no cables on the map from this router: {e}");
                    said_error = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbours::{Learned, Neighbour};

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn iface(name: &str, wifi: bool, bridge: bool) -> Interface {
        Interface {
            name: name.into(),
            mac: Some(mac(100 + name.len() as u8)),
            // lan1 and the mesh port are ports of br-lan (index 2).
            master: (name == "lan1" || name == "phy0-mesh0").then_some(2),
            wifi,
            bridge,
            loopback: name == "lo",
            up: true,
        }
    }

    fn view(neighbours: Vec<Neighbour>, fdb: Vec<Learned>) -> KernelView {
        KernelView {
            interfaces: home(),
            neighbours,
            fdb,
            addresses: vec![],
        }
    }

    fn learned(last: u8, port: u32) -> Learned {
        Learned {
            mac: mac(last),
            port,
            local: false,
        }
    }

    fn home() -> HashMap<u32, Interface> {
        HashMap::from([
            (1, iface("lo", false, false)),
            (2, iface("br-lan", false, true)),
            (3, iface("lan1", false, false)),
            (4, iface("phy0-mesh0", true, false)),
            (5, iface("wan", false, false)),
        ])
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn neighbour(last: u8, ifindex: u32) -> Neighbour {
        Neighbour {
            ip: ip(last),
            mac: mac(last),
            ifindex,
        }
    }

    #[test]
    fn a_router_on_a_bridge_port_is_a_cable_on_that_port() {
        // Learned on lan1 (a cable) and on the mesh port (wifi): only the first is a cable.
        let got = cables(
            &view(
                vec![neighbour(7, 2), neighbour(8, 2)],
                vec![learned(7, 3), learned(8, 4)],
            ),
            &[ip(7), ip(8)],
        );
        assert_eq!(
            got,
            vec![Cable {
                peer: mac(7),
                port: "lan1".into()
            }]
        );
    }

    #[test]
    fn a_router_on_a_plain_wired_interface_is_a_cable() {
        let got = cables(&view(vec![neighbour(9, 5)], vec![]), &[ip(9)]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].port, "wan");
    }

    #[test]
    fn devices_radios_and_unlearned_ports_are_not_cables() {
        let neighbours = vec![
            neighbour(20, 5), // a device, not a router
            neighbour(8, 4),  // a router over the mesh interface itself
            neighbour(7, 2),  // a router on the bridge, port not learned yet
        ];
        let got = cables(&view(neighbours, vec![]), &[ip(7), ip(8)]);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn own_macs_leave_out_loopback_and_zero_and_are_capped() {
        let mut ifs = home();
        ifs.insert(
            6,
            Interface {
                mac: Some(MacAddr([0; 6])),
                ..iface("tun0", false, false)
            },
        );
        let macs = own_macs(&ifs);
        assert_eq!(macs.len(), 4, "{macs:?}");
        let many: HashMap<u32, Interface> = (0..40)
            .map(|i| {
                (
                    i,
                    Interface {
                        mac: Some(MacAddr([2, 1, 0, 0, 0, i as u8])),
                        ..iface("eth", false, false)
                    },
                )
            })
            .collect();
        assert_eq!(own_macs(&many).len(), MAX_NODE_MACS);
    }
}
