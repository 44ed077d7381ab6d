//! Who a connecting LAN client is by hardware address: this router's IPv4 neighbour table
//! (address → MAC), kept from the kernel's own through netlink.
//!
//! The node proxy asks [`NeighbourTable::mac_of`] once per connection. The answer is exact at
//! the moment of asking: the lookup first applies every neighbour event the kernel has queued
//! on the table's socket (one non-blocking read; nothing waits), so a device that took
//! another's address is known by its own MAC from its first connection, as the kernel knows
//! it. If the kernel had to drop events (the socket's buffer overflowed under a flood of
//! neighbour changes), the next lookup dumps the table again. Bounded by
//! [`crate::neighbours::MAX_ENTRIES`].
//!
//! (Before this, every connection read and parsed all of `/proc/net/arp`.)

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use trellis_proto::policy::MacAddr;

use crate::neighbours::MAX_ENTRIES;

/// `struct nlmsghdr`: length, type, flags, sequence, port.
const HEADER_LEN: usize = 16;
/// `RTNLGRP_NEIGH`: the kernel's neighbour table changes.
const NEIGHBOUR_EVENTS: u32 = 3;
/// A netlink read buffer: the kernel sizes dump datagrams to well under this.
const READ_BUFFER: usize = 64 * 1024;
/// A dump that gets no answer in this long is given up (the kernel answers in microseconds).
const DUMP_TIMEOUT: Duration = Duration::from_secs(1);

pub struct NeighbourTable {
    inner: Mutex<Table>,
}

struct Table {
    /// Subscribed to the kernel's neighbour events, non-blocking; `None` if netlink refused
    /// it (then every lookup dumps).
    events: Option<Socket>,
    macs: HashMap<Ipv4Addr, MacAddr>,
    /// Events were lost or never followed: dump before the next answer.
    stale: bool,
    buf: Vec<u8>,
}

impl Default for NeighbourTable {
    fn default() -> Self {
        Self::follow()
    }
}

impl NeighbourTable {
    /// Follows the neighbour table of the calling thread's network namespace.
    pub fn follow() -> Self {
        let events = subscribe()
            .inspect_err(|e| {
                tracing::warn!(
                    "cannot follow the kernel's neighbour table ({e}); reading it per connection"
                )
            })
            .ok();
        Self {
            inner: Mutex::new(Table {
                events,
                macs: HashMap::new(),
                stale: true,
                buf: Vec::with_capacity(READ_BUFFER),
            }),
        }
    }

    /// The MAC the kernel has for `ip` now, `None` when unknown or unresolved.
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.catch_up();
        t.macs.get(&ip).copied()
    }
}

impl Table {
    fn catch_up(&mut self) {
        if let Some(sock) = &self.events {
            loop {
                self.buf.clear();
                match sock.recv(&mut self.buf, 0) {
                    Ok(0) => break,
                    Ok(_) => {
                        for (msg, added) in neighbour_messages(&self.buf) {
                            apply(&mut self.macs, &msg, added);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ENOBUFS: the kernel dropped events; the table must be read again.
                    Err(_) => {
                        self.stale = true;
                        break;
                    }
                }
            }
        } else {
            self.stale = true;
        }
        if self.stale {
            match dump() {
                Ok(macs) => {
                    self.macs = macs;
                    // Without events the next lookup reads it again.
                    self.stale = self.events.is_none();
                }
                Err(e) => tracing::debug!("reading the neighbour table: {e}"),
            }
        }
    }
}

fn subscribe() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind(&SocketAddr::new(0, 0))?;
    s.add_membership(NEIGHBOUR_EVENTS)?;
    s.set_non_blocking(true)?;
    Ok(s)
}

/// One full read of the IPv4 neighbour table.
fn dump() -> std::io::Result<HashMap<Ipv4Addr, MacAddr>> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    socket2::SockRef::from(&s).set_read_timeout(Some(DUMP_TIMEOUT))?;
    let mut query = NeighbourMessage::default();
    query.header.family = AddressFamily::Inet;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(query));
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.header.sequence_number = 1;
    req.finalize();
    let mut out = vec![0; req.buffer_len()];
    req.serialize(&mut out);
    s.send(&out, 0)?;
    let mut macs = HashMap::new();
    let mut buf = Vec::with_capacity(READ_BUFFER);
    loop {
        buf.clear();
        s.recv(&mut buf, 0)?;
        let (messages, whole) = datagram(&buf);
        if !whole {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the kernel's neighbour dump holds a message that does not parse",
            ));
        }
        for msg in messages {
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(macs),
                NetlinkPayload::Error(e) => {
                    return Err(std::io::Error::other(format!("netlink: {e:?}")))
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => {
                    apply(&mut macs, &n, true)
                }
                _ => {}
            }
        }
    }
}

/// The netlink messages of one datagram, in order, and whether all of it parsed (reading
/// stops at the first message that does not).
fn datagram(buf: &[u8]) -> (Vec<NetlinkMessage<RouteNetlinkMessage>>, bool) {
    let mut out = Vec::new();
    let mut offset = 0;
    while buf.len() >= offset + HEADER_LEN {
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..]) else {
            return (out, false);
        };
        let len = msg.header.length as usize;
        out.push(msg);
        if len == 0 {
            break;
        }
        offset += (len + 3) & !3;
    }
    (out, true)
}

/// The neighbour messages in one datagram of events: (message, added or changed). What
/// follows a message that does not parse is left out.
fn neighbour_messages(buf: &[u8]) -> Vec<(NeighbourMessage, bool)> {
    datagram(buf)
        .0
        .into_iter()
        .filter_map(|msg| match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => Some((n, true)),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(n)) => Some((n, false)),
            _ => None,
        })
        .collect()
}

/// The table one datagram of events makes from nothing. Public only for the fuzz target
/// (node-agent/fuzz).
#[doc(hidden)]
pub fn apply_events(datagram: &[u8]) -> HashMap<Ipv4Addr, MacAddr> {
    let mut macs = HashMap::new();
    for (msg, added) in neighbour_messages(datagram) {
        apply(&mut macs, &msg, added);
    }
    macs
}

/// Applies one kernel message: a resolved entry is known, a failed, unresolved or deleted
/// one is not (that address stopped answering).
fn apply(macs: &mut HashMap<Ipv4Addr, MacAddr>, n: &NeighbourMessage, added: bool) {
    if n.header.family != AddressFamily::Inet {
        return;
    }
    let Some(ip) = n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        _ => None,
    }) else {
        return;
    };
    let mac = n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice())
            .ok()
            .map(MacAddr)
            .filter(|m| m.0 != [0; 6]),
        _ => None,
    });
    let resolved = !matches!(
        n.header.state,
        NeighbourState::Failed | NeighbourState::Incomplete | NeighbourState::None
    );
    match mac {
        Some(mac) if added && resolved => {
            if macs.len() < MAX_ENTRIES || macs.contains_key(&ip) {
                macs.insert(ip, mac);
            }
        }
        _ => {
            macs.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: [u8; 4], mac: [u8; 6], state: NeighbourState) -> NeighbourMessage {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.state = state;
        n.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::from(ip))),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        n
    }

    #[test]
    fn resolved_entries_are_known_and_failed_or_deleted_ones_are_not() {
        let mut macs = HashMap::new();
        let ip = Ipv4Addr::new(10, 1, 0, 2);
        apply(
            &mut macs,
            &entry([10, 1, 0, 2], [2, 0, 0, 0, 0, 1], NeighbourState::Stale),
            true,
        );
        assert_eq!(macs.get(&ip), Some(&MacAddr([2, 0, 0, 0, 0, 1])));
        // Another device took the address: the kernel's newest answer wins.
        apply(
            &mut macs,
            &entry([10, 1, 0, 2], [2, 0, 0, 0, 0, 9], NeighbourState::Reachable),
            true,
        );
        assert_eq!(macs.get(&ip), Some(&MacAddr([2, 0, 0, 0, 0, 9])));
        apply(
            &mut macs,
            &entry([10, 1, 0, 2], [0; 6], NeighbourState::Failed),
            true,
        );
        assert_eq!(macs.get(&ip), None);
        apply(
            &mut macs,
            &entry([10, 1, 0, 2], [2, 0, 0, 0, 0, 1], NeighbourState::Stale),
            true,
        );
        apply(
            &mut macs,
            &entry([10, 1, 0, 2], [2, 0, 0, 0, 0, 1], NeighbourState::Stale),
            false,
        );
        assert_eq!(macs.get(&ip), None);
        // Other families are not this table's.
        let mut v6 = entry([10, 1, 0, 3], [2, 0, 0, 0, 0, 3], NeighbourState::Stale);
        v6.header.family = AddressFamily::Inet6;
        apply(&mut macs, &v6, true);
        assert!(macs.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut macs = HashMap::new();
        for i in 0..(MAX_ENTRIES + 10) as u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i).octets();
            apply(
                &mut macs,
                &entry(ip, [2, 0, 0, 0, 0, 1], NeighbourState::Stale),
                true,
            );
        }
        assert_eq!(macs.len(), MAX_ENTRIES);
    }

    /// The fuzz target's seeds are the kernel's own layout (byte for byte as `ip monitor
    /// neigh` receives them): they parse into the entries they were written for.
    #[test]
    fn the_fuzz_seeds_are_real_neighbour_messages() {
        let seed = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fuzz/corpus/neighbour_events")
                    .join(name),
            )
            .expect("seed")
        };
        let ip = |d: u8| Ipv4Addr::new(10, 1, 0, d);
        assert_eq!(
            apply_events(&seed("new-stale")).get(&ip(2)),
            Some(&MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert!(apply_events(&seed("new-then-del")).is_empty());
        assert!(apply_events(&seed("failed")).is_empty());
        assert!(apply_events(&seed("ipv6-family")).is_empty());
        assert_eq!(apply_events(&seed("truncated")).len(), 1);
    }

    #[test]
    fn a_datagram_of_events_is_read_message_by_message() {
        let mut buf = Vec::new();
        for (n, added) in [
            (
                entry([10, 1, 0, 2], [2, 0, 0, 0, 0, 1], NeighbourState::Stale),
                true,
            ),
            (
                entry([10, 1, 0, 3], [2, 0, 0, 0, 0, 2], NeighbourState::Stale),
                false,
            ),
        ] {
            let inner = if added {
                RouteNetlinkMessage::NewNeighbour(n)
            } else {
                RouteNetlinkMessage::DelNeighbour(n)
            };
            let mut m = NetlinkMessage::from(inner);
            m.finalize();
            let mut b = vec![0; m.buffer_len()];
            m.serialize(&mut b);
            buf.extend_from_slice(&b);
        }
        let got = neighbour_messages(&buf);
        assert_eq!(got.len(), 2);
        assert!(got[0].1 && !got[1].1);
        // A truncated datagram yields what it holds whole, never a panic.
        assert_eq!(neighbour_messages(&buf[..buf.len() - 3]).len(), 1);
    }
}
