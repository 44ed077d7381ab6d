//! The service catalog: every home service the mesh knows, its mesh name and its virtual IP.
//!
//! The controller owns the catalog and ships it inside the config snapshot; agents only read it
//! (to answer DNS for the mesh zone, to map an intercepted virtual IP to a service, and to pick
//! an instance to send a connection to).
//!
//! **Mesh names** live under [`MESH_ZONE`] (`trellis.home.arpa`, RFC 8375's home zone), so a
//! NAS is `nas.trellis.home.arpa`.
//!
//! **Virtual IPs** come from [`VIP_NET`] = `198.18.0.0/16`, carved out of RFC 2544's benchmarking
//! block `198.18.0.0/15`. Why not the alternatives:
//! - `100.64.0.0/10` (shared address space) is where Tailscale puts its addresses and where some
//!   ISPs number their CGNAT side, both common in homes;
//! - `240.0.0.0/4` (what Istio uses for auto-allocated VIPs) is refused by Windows and some
//!   embedded stacks, which would never send the packet to the router;
//! - RFC 1918 ranges collide with somebody's LAN sooner or later.
//!
//! 198.18/15 is never routed on the Internet and never assigned to a LAN by OpenWrt, so a
//! device sends traffic for it to its default gateway, the router, where the agent intercepts
//! it. The allocator derives a service's address from its name (stable across controller
//! restarts even before the store is consulted) and probes linearly on collision.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::identity::{IdentityError, NodeName, SpiffeId};

/// The DNS zone the agents answer for.
pub const MESH_ZONE: &str = "trellis.home.arpa";

/// Network address of the virtual-IP range.
pub const VIP_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Prefix length of the virtual-IP range.
pub const VIP_PREFIX: u8 = 16;

/// `198.18.0.0/16` as text, for nftables rules and documentation.
pub fn vip_cidr() -> String {
    format!("{VIP_NET}/{VIP_PREFIX}")
}

/// Whether an address is inside the virtual-IP range.
pub fn is_virtual_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            u32::from(v4) >> (32 - VIP_PREFIX) == u32::from(VIP_NET) >> (32 - VIP_PREFIX)
        }
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .is_some_and(|v4| is_virtual_ip(IpAddr::V4(v4))),
    }
}

/// Why a catalog operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Name(#[from] IdentityError),
    #[error("the virtual-IP range {range} is full ({used} services); remove unused services")]
    VipRangeFull { range: String, used: usize },
    #[error("service {0:?} is already in the catalog")]
    Duplicate(String),
    #[error("virtual IP {vip} of service {service:?} is outside {range}")]
    VipOutsideRange {
        service: String,
        vip: Ipv4Addr,
        range: String,
    },
}

/// Where the controller learned about a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnedVia {
    /// mDNS / DNS-SD announcement seen by an agent on the device's segment.
    Mdns,
    /// A DHCP lease (dnsmasq) on a node, e.g. a device with a known hostname.
    Dhcp,
    /// A `trellis-agent` running on the host itself, registering its services (end-to-end mTLS).
    Host,
    /// Typed in by a person on the web page.
    Manual,
}

impl fmt::Display for LearnedVia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LearnedVia::Mdns => "mdns",
            LearnedVia::Dhcp => "dhcp",
            LearnedVia::Host => "host",
            LearnedVia::Manual => "manual",
        })
    }
}

/// One port a service listens on. `port` is both the port clients dial on the virtual IP and
/// (unless `target_port` says otherwise) the port on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
}

impl ServicePort {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            target_port: None,
        }
    }
    /// The port to dial on the device itself.
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }
}

/// One place a service runs: a device address behind a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The router the device sits behind (whose agent does the plaintext last hop).
    pub node: NodeName,
    /// The device's own address on that router's segment.
    pub addr: IpAddr,
    /// False when the node behind it is gone (removed, unreachable); kept so the page can show
    /// "unreachable" instead of the service silently vanishing.
    #[serde(default = "yes")]
    pub reachable: bool,
}

fn yes() -> bool {
    true
}

/// A home service in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// DNS label, e.g. `nas`; also the last segment of its SPIFFE ID.
    pub name: String,
    pub identity: SpiffeId,
    pub vip: Ipv4Addr,
    pub ports: Vec<ServicePort>,
    pub instances: Vec<Instance>,
    pub learned_via: LearnedVia,
}

impl Service {
    /// `<name>.trellis.home.arpa`.
    pub fn mesh_name(&self) -> String {
        mesh_name(&self.name)
    }

    /// The catalog port entry for a port dialled on the virtual IP.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// `<name>.trellis.home.arpa`.
pub fn mesh_name(service: &str) -> String {
    format!("{service}.{MESH_ZONE}")
}

/// The service label of a mesh name (case-insensitive, trailing dot allowed), if the name is
/// exactly one label under the mesh zone.
pub fn service_label(fqdn: &str) -> Option<String> {
    let lower = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let label = lower.strip_suffix(MESH_ZONE)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then(|| label.to_owned())
}

/// Every service the home knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub services: Vec<Service>,
}

impl Catalog {
    pub fn by_name(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn by_vip(&self, vip: Ipv4Addr) -> Option<&Service> {
        self.services.iter().find(|s| s.vip == vip)
    }

    /// The service a DNS name (`nas.trellis.home.arpa.`) names.
    pub fn by_mesh_name(&self, fqdn: &str) -> Option<&Service> {
        self.by_name(&service_label(fqdn)?)
    }

    /// The service with an instance at this device address, if any: lets the source node say
    /// "this connection comes from Home Assistant" rather than "from 192.168.1.20".
    pub fn by_instance_addr(&self, addr: IpAddr) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.instances.iter().any(|i| i.addr == addr))
    }

    /// Add a service, giving it a stable virtual IP. The identity is
    /// `spiffe://<home>/svc/<name>` from `home`.
    pub fn add(
        &mut self,
        home: &crate::identity::HomeId,
        name: &str,
        ports: Vec<ServicePort>,
        instances: Vec<Instance>,
        learned_via: LearnedVia,
    ) -> Result<&Service, CatalogError> {
        let identity = SpiffeId::service(home, name)?;
        if self.by_name(name).is_some() {
            return Err(CatalogError::Duplicate(name.to_owned()));
        }
        let used: BTreeSet<Ipv4Addr> = self.services.iter().map(|s| s.vip).collect();
        let vip = allocate_vip(name, &used)?;
        self.services.push(Service {
            name: name.to_owned(),
            identity,
            vip,
            ports,
            instances,
            learned_via,
        });
        Ok(self.services.last().expect("just pushed"))
    }

    /// Mark every instance behind `node` unreachable (the node was removed or went silent).
    /// Returns how many instances changed.
    pub fn mark_node_unreachable(&mut self, node: &NodeName) -> usize {
        let mut changed = 0;
        for inst in self
            .services
            .iter_mut()
            .flat_map(|s| s.instances.iter_mut())
            .filter(|i| &i.node == node && i.reachable)
        {
            inst.reachable = false;
            changed += 1;
        }
        changed
    }

    /// Check invariants of a catalog received from elsewhere (a snapshot): names valid, unique,
    /// VIPs inside the range and unique.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let mut names = BTreeSet::new();
        let mut vips = BTreeSet::new();
        for s in &self.services {
            SpiffeId::service(&s.identity.home, &s.name)?;
            if !names.insert(&s.name) {
                return Err(CatalogError::Duplicate(s.name.clone()));
            }
            if !is_virtual_ip(IpAddr::V4(s.vip)) || !vips.insert(s.vip) {
                return Err(CatalogError::VipOutsideRange {
                    service: s.name.clone(),
                    vip: s.vip,
                    range: vip_cidr(),
                });
            }
        }
        Ok(())
    }
}

/// Pick a free virtual IP for `name`: start at a hash of the name (so the same name gets the
/// same address in every fresh catalog) and probe upwards. Skips `.0.0`, `.255.255` and any
/// host part ending in `.0`/`.255`, which some stacks treat as special.
pub fn allocate_vip(name: &str, used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, CatalogError> {
    let size: u32 = 1 << (32 - VIP_PREFIX);
    // FNV-1a: tiny, stable across versions and platforms (std's hasher is neither promised).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let base = u32::from(VIP_NET);
    for i in 0..size {
        let host = (h.wrapping_add(i)) % size;
        let low = host & 0xff;
        if low == 0 || low == 0xff {
            continue;
        }
        let ip = Ipv4Addr::from(base | host);
        if !used.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(CatalogError::VipRangeFull {
        range: vip_cidr(),
        used: used.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HomeId;

    fn home() -> HomeId {
        HomeId::new("h1").unwrap()
    }

    fn inst(node: &str, ip: &str) -> Instance {
        Instance {
            node: NodeName::new(node).unwrap(),
            addr: ip.parse().unwrap(),
            reachable: true,
        }
    }

    #[test]
    fn services_get_mesh_names_identities_and_stable_vips_in_range() {
        let mut c = Catalog::default();
        let nas = c
            .add(
                &home(),
                "nas",
                vec![ServicePort::new(445)],
                vec![inst("attic", "192.168.1.20")],
                LearnedVia::Mdns,
            )
            .unwrap()
            .clone();
        assert_eq!(nas.mesh_name(), "nas.trellis.home.arpa");
        assert_eq!(nas.identity.to_string(), "spiffe://h1/svc/nas");
        assert!(is_virtual_ip(IpAddr::V4(nas.vip)), "{}", nas.vip);
        // Same name in a fresh catalog → same address.
        let mut again = Catalog::default();
        let vip2 = again
            .add(&home(), "nas", vec![], vec![], LearnedVia::Manual)
            .unwrap()
            .vip;
        assert_eq!(nas.vip, vip2);
        assert_eq!(c.by_vip(nas.vip).unwrap().name, "nas");
        assert_eq!(
            c.by_mesh_name("NAS.Trellis.Home.Arpa.").unwrap().name,
            "nas"
        );
        assert_eq!(
            c.by_instance_addr("192.168.1.20".parse().unwrap())
                .unwrap()
                .name,
            "nas"
        );
        c.validate().unwrap();
    }

    #[test]
    fn vip_collisions_probe_to_a_free_address_and_skip_special_hosts() {
        let first = allocate_vip("printer", &BTreeSet::new()).unwrap();
        let used: BTreeSet<_> = [first].into_iter().collect();
        let second = allocate_vip("printer", &used).unwrap();
        assert_ne!(first, second);
        assert!(is_virtual_ip(IpAddr::V4(second)));
        for name in ["a", "b", "nas", "home-assistant", "camera-1", "x"] {
            let ip = allocate_vip(name, &BTreeSet::new()).unwrap();
            let last = ip.octets()[3];
            assert!(last != 0 && last != 255, "{name} got {ip}");
        }
    }

    #[test]
    fn full_range_is_reported_not_looped_forever() {
        // Fill the whole /16 (65 536 entries is cheap) and ask for one more.
        let used: BTreeSet<Ipv4Addr> = (0..(1u32 << 16))
            .map(|h| Ipv4Addr::from(u32::from(VIP_NET) | h))
            .collect();
        let err = allocate_vip("one-more", &used).unwrap_err();
        assert!(err.to_string().contains("198.18.0.0/16 is full"), "{err}");
    }

    #[test]
    fn duplicates_and_bad_names_are_refused() {
        let mut c = Catalog::default();
        c.add(&home(), "nas", vec![], vec![], LearnedVia::Manual)
            .unwrap();
        assert_eq!(
            c.add(&home(), "nas", vec![], vec![], LearnedVia::Manual)
                .unwrap_err(),
            CatalogError::Duplicate("nas".into())
        );
        let err = c
            .add(&home(), "My NAS", vec![], vec![], LearnedVia::Manual)
            .unwrap_err();
        assert!(err.to_string().contains("a-z, 0-9"), "{err}");
    }

    #[test]
    fn mesh_name_parsing_accepts_only_one_label_in_the_zone() {
        assert_eq!(service_label("nas.trellis.home.arpa"), Some("nas".into()));
        assert_eq!(service_label("nas.trellis.home.arpa."), Some("nas".into()));
        assert_eq!(service_label("a.nas.trellis.home.arpa"), None);
        assert_eq!(service_label("trellis.home.arpa"), None);
        assert_eq!(service_label("nastrellis.home.arpa"), None);
        assert_eq!(service_label("nas.example.com"), None);
    }

    #[test]
    fn removed_node_marks_its_instances_unreachable() {
        let mut c = Catalog::default();
        c.add(
            &home(),
            "nas",
            vec![],
            vec![inst("attic", "10.0.0.2"), inst("hall", "10.0.1.2")],
            LearnedVia::Mdns,
        )
        .unwrap();
        assert_eq!(c.mark_node_unreachable(&NodeName::new("attic").unwrap()), 1);
        let nas = c.by_name("nas").unwrap();
        assert!(!nas.instances[0].reachable);
        assert!(nas.instances[1].reachable);
        assert_eq!(c.mark_node_unreachable(&NodeName::new("attic").unwrap()), 0);
    }

    #[test]
    fn validate_rejects_a_vip_outside_the_range() {
        let mut c = Catalog::default();
        c.add(&home(), "nas", vec![], vec![], LearnedVia::Manual)
            .unwrap();
        c.services[0].vip = Ipv4Addr::new(10, 0, 0, 1);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("outside 198.18.0.0/16"), "{err}");
    }

    #[test]
    fn serde_round_trip_keeps_everything() {
        let mut c = Catalog::default();
        c.add(
            &home(),
            "nas",
            vec![ServicePort {
                port: 80,
                target_port: Some(8080),
            }],
            vec![inst("attic", "10.0.0.2")],
            LearnedVia::Host,
        )
        .unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"learned_via\":\"host\""), "{json}");
        let back: Catalog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.services[0].port(80).unwrap().target(), 8080);
    }
}
