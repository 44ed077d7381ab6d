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

/// The IPv4 addresses of this host's interfaces that are up (getifaddrs).
pub fn interface_addresses() -> Vec<InterfaceAddress> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read and then free with
    // freeifaddrs; every pointer is checked for null before use, and ifa_addr is read as a
    // sockaddr_in only when its family says AF_INET.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            if !up || ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            if i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            out.push(InterfaceAddress {
                interface: std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned(),
                addr: Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            });
        }
        libc::freeifaddrs(list);
    }
    out
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

    #[test]
    fn this_host_lists_its_loopback() {
        assert!(interface_addresses()
            .iter()
            .any(|i| i.addr == Ipv4Addr::LOCALHOST));
    }
}
