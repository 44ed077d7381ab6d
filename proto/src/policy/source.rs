//! Who is asking: resolving what a node saw of a connection (MAC, source IP, the network
//! joined) against the device book into a [`Source`] with its group, why it is in that
//! group, and the identity a decision cites.

use std::fmt;
use std::net::IpAddr;

use super::{Device, Joined, MacAddr, Policy, Source};

impl Source {
    /// Resolve a device from what the node saw (MAC from the neighbour table / DHCP, source IP)
    /// against the device book. Unknown devices land in the policy's unknown-device group.
    pub fn device(
        devices: &[Device],
        policy: &Policy,
        mac: Option<MacAddr>,
        ip: Option<IpAddr>,
    ) -> Self {
        Self::device_on(devices, policy, mac, ip, None)
    }

    /// The one rule for a device's group: first the home network it authenticated on
    /// ([`NetworkKind::group`](crate::home_wifi::NetworkKind::group)), then the device book,
    /// then the policy's unknown-device group. The agent's proxy and the controller's `why`
    /// both ask this.
    pub fn device_on(
        devices: &[Device],
        policy: &Policy,
        mac: Option<MacAddr>,
        ip: Option<IpAddr>,
        joined: Option<Joined>,
    ) -> Self {
        let known = devices
            .iter()
            .find(|d| Some(d.mac) == mac)
            .or_else(|| ip.and_then(|ip| devices.iter().find(|d| d.ips.contains(&ip))));
        let (name, mac, ip, book) = match known {
            Some(d) => (
                Some(d.name.clone()),
                Some(d.mac),
                ip.or_else(|| d.ips.first().copied()),
                Some(d.group.clone()),
            ),
            None => (None, mac, ip, None),
        };
        let (group, book_group) = match (&joined, book) {
            (Some(j), book) => {
                let group = j.network.group().to_owned();
                let overridden = book.filter(|b| *b != group);
                (group, overridden)
            }
            (None, Some(book)) => (book, None),
            (None, None) => (policy.unknown_device_group.clone(), None),
        };
        Source::Device {
            name,
            mac,
            ip,
            group,
            joined,
            book_group,
        }
    }

    /// Why the device is in its group, in words: "guest: joined the guest network on attic".
    pub fn group_reason(&self) -> Option<String> {
        let Source::Device {
            name,
            group,
            joined,
            book_group,
            ..
        } = self
        else {
            return None;
        };
        Some(match (joined, name) {
            (Some(j), _) => {
                let mut s = format!("{group}: joined the {} network", j.network);
                if let Some(r) = &j.router {
                    s.push_str(&format!(" on {r}"));
                }
                if let (Some(b), Some(n)) = (book_group, name) {
                    s.push_str(&format!(
                        " (the device book has this MAC as {n:?} in {b}; the network joined decides)"
                    ));
                }
                s
            }
            (None, Some(n)) => format!("{group}: the device book has it as {n:?}"),
            (None, None) => {
                format!("{group}: not in the device book, so the group for unknown devices")
            }
        })
    }

    /// The identity a decision cites: a SPIFFE ID, or `device:<mac>` / `device:<ip>`.
    pub fn identity(&self) -> String {
        match self {
            Source::Workload(id) => id.to_string(),
            Source::Device { mac: Some(mac), .. } => format!("device:{mac}"),
            Source::Device { ip: Some(ip), .. } => format!("device:{ip}"),
            Source::Device { .. } => "device:unknown".into(),
        }
    }

    /// The group, for devices.
    pub fn group(&self) -> Option<&str> {
        match self {
            Source::Device { group, .. } => Some(group),
            Source::Workload(_) => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Workload(id) => write!(f, "service {id}"),
            Source::Device {
                name,
                mac,
                ip,
                group,
                joined,
                ..
            } => {
                match name {
                    Some(n) => write!(f, "device {n:?}")?,
                    None => write!(f, "unknown device")?,
                }
                let mut parts = Vec::new();
                if let Some(m) = mac {
                    parts.push(m.to_string());
                }
                if let Some(i) = ip {
                    parts.push(i.to_string());
                }
                match joined {
                    Some(_) => {
                        parts.push(format!("group {}", self.group_reason().unwrap_or_default()))
                    }
                    None => parts.push(format!("group {group}")),
                }
                write!(f, " ({})", parts.join(", "))
            }
        }
    }
}
