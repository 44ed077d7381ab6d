//! Which of this router's addresses other routers reach it by.
//!
//! Normally the one it uses towards the controller. On the primary router the agent talks to
//! its own controller over 127.0.0.1, and a loopback address is useless to others: then the
//! LAN bridge's address (`br-lan` on OpenWrt) is announced, or else the first routable IPv4
//! address of an interface that is up.

use std::net::{IpAddr, Ipv4Addr};

/// The interface OpenWrt gives the LAN (and the mesh interface joins).
pub const LAN_BRIDGE: &str = "br-lan";

/// One IPv4 address of an interface that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    pub addr: Ipv4Addr,
}

/// `br-lan` first, then the first address that is neither loopback nor link-local.
pub fn choose(candidates: &[InterfaceAddress]) -> Option<IpAddr> {
    let usable = |a: &&InterfaceAddress| !a.addr.is_loopback() && !a.addr.is_link_local();
    candidates
        .iter()
        .filter(usable)
        .find(|a| a.interface == LAN_BRIDGE)
        .or_else(|| candidates.iter().find(usable))
        .map(|a| IpAddr::V4(a.addr))
}

/// The IPv4 addresses of this host's interfaces that are up, from the kernel's view
/// ([`crate::neighbours`], one netlink read); none when netlink cannot be read.
pub async fn interface_addresses() -> Vec<InterfaceAddress> {
    match crate::neighbours::read().await {
        Ok(view) => up_addresses(&view),
        Err(e) => {
            tracing::debug!(error = %e, "could not list this router's addresses");
            Vec::new()
        }
    }
}

fn up_addresses(view: &crate::neighbours::KernelView) -> Vec<InterfaceAddress> {
    view.addresses
        .iter()
        .filter_map(|(index, addr)| {
            let i = view.interfaces.get(index).filter(|i| i.up)?;
            Some(InterfaceAddress {
                interface: i.name.clone(),
                addr: *addr,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(interface: &str, addr: [u8; 4]) -> InterfaceAddress {
        InterfaceAddress {
            interface: interface.into(),
            addr: Ipv4Addr::from(addr),
        }
    }

    #[test]
    fn the_lan_bridge_wins_and_loopback_never_does() {
        let all = [
            a("lo", [127, 0, 0, 1]),
            a("wan", [203, 0, 113, 9]),
            a("br-lan", [192, 168, 1, 1]),
        ];
        assert_eq!(choose(&all), Some(IpAddr::from([192, 168, 1, 1])));
        assert_eq!(
            choose(&all[..2]),
            Some(IpAddr::from([203, 0, 113, 9])),
            "no br-lan: the first routable address"
        );
        let only_local = [a("lo", [127, 0, 0, 1]), a("eth9", [169, 254, 3, 4])];
        assert_eq!(choose(&only_local), None);
    }

    #[tokio::test]
    async fn this_host_lists_its_loopback() {
        assert!(interface_addresses()
            .await
            .iter()
            .any(|i| i.interface == "lo" && i.addr == Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn an_interface_that_is_down_announces_nothing() {
        use crate::neighbours::{Interface, KernelView};
        let iface = |name: &str, up| Interface {
            name: name.into(),
            mac: None,
            master: None,
            wifi: false,
            bridge: name == "br-lan",
            loopback: false,
            up,
        };
        let mut view = KernelView::default();
        view.interfaces.insert(2, iface("br-lan", false));
        view.interfaces.insert(3, iface("wan", true));
        view.addresses = vec![
            (2, Ipv4Addr::new(192, 168, 1, 1)),
            (3, Ipv4Addr::new(203, 0, 113, 9)),
            (9, Ipv4Addr::new(10, 9, 9, 9)),
        ];
        assert_eq!(up_addresses(&view), vec![a("wan", [203, 0, 113, 9])]);
    }
}
