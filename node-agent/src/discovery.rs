//! Local discovery: what lives on this router's segment, reported to the controller's catalog.
//!
//! Two sources, both passive (nobody types anything):
//! - **DHCP leases**: dnsmasq's lease file (`/tmp/dhcp.leases` on OpenWrt) gives each device's
//!   MAC, address and hostname: the device book that policy needs ([`read_leases`],
//!   [`devices_from_leases`]). Re-read it on dnsmasq's hotplug events (`dhcp-script`) or when
//!   its mtime changes.
//! - **mDNS / DNS-SD**: services announcing themselves (`_http._tcp`, `_ipp._tcp`, `_smb._tcp`,
//!   `_hap._tcp` …) via the `mdns-sd` crate ([`MdnsBrowser`]). Its socket sets `SO_REUSEADDR`
//!   and `SO_REUSEPORT` on UDP 5353, so it coexists with umdns or avahi on the same router.
//!
//! Both parsers bound what they accept (file size, number of leases, name lengths): the
//! lease file and mDNS packets come from devices we do not control.
//!
//! Entry points for the lead: `read_leases(Path::new(DNSMASQ_LEASES))` then
//! `devices_from_leases(&leases, &known, "guest")`; `MdnsBrowser::start(DEFAULT_SERVICE_TYPES)`
//! → a `tokio::sync::mpsc::Receiver<DiscoveryEvent>` to forward to the controller.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use trellis_proto::policy::{Device, MacAddr};

/// Where OpenWrt's dnsmasq keeps its leases.
pub const DNSMASQ_LEASES: &str = "/tmp/dhcp.leases";
/// A lease file larger than this is not read (a /22 of leases is ~100 KB).
pub const MAX_LEASE_FILE: u64 = 1 << 20;
pub const MAX_LEASES: usize = 4096;

/// Service types browsed by default: the things a home has.
pub const DEFAULT_SERVICE_TYPES: &[&str] = &[
    "_http._tcp.local.",
    "_https._tcp.local.",
    "_ipp._tcp.local.",
    "_smb._tcp.local.",
    "_hap._tcp.local.",
    "_home-assistant._tcp.local.",
    "_rtsp._tcp.local.",
];

/// One dnsmasq lease line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Unix seconds; 0 = infinite.
    pub expires: u64,
    /// `None` for DHCPv6 leases (they carry an IAID instead).
    pub mac: Option<MacAddr>,
    pub ip: IpAddr,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
}

/// Parse dnsmasq's lease file: `<expiry> <mac|iaid> <ip> <hostname|*> <client-id|*>` per line,
/// plus a `duid ...` line when DHCPv6 is on. Malformed lines are skipped, not fatal.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[0] == "duid" {
                return None;
            }
            let opt = |s: &str| {
                (s != "*" && !s.is_empty()).then(|| s.chars().take(253).collect::<String>())
            };
            Some(Lease {
                expires: f[0].parse().ok()?,
                mac: f[1].parse().ok(),
                ip: f[2].trim_matches(['[', ']']).parse().ok()?,
                hostname: opt(f[3]),
                client_id: f.get(4).and_then(|s| opt(s)),
            })
        })
        .take(MAX_LEASES)
        .collect()
}

/// Read and parse a lease file, refusing absurd sizes.
pub fn read_leases(path: &Path) -> std::io::Result<Vec<Lease>> {
    let f = std::fs::File::open(path)?;
    let mut text = String::new();
    f.take(MAX_LEASE_FILE).read_to_string(&mut text)?;
    Ok(parse_leases(&text))
}

/// Make a DNS-label-like name (a-z, 0-9, '-') from what a device calls itself.
pub fn label_from(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 63 {
            break;
        }
    }
    let out = out.trim_matches('-').to_owned();
    (!out.is_empty()).then_some(out)
}

/// Merge leases into the device book: known devices keep their name and group (a person set
/// them) and gain the lease's address; new devices get their DHCP hostname (or `device-<mac>`)
/// and `default_group`.
pub fn devices_from_leases(leases: &[Lease], known: &[Device], default_group: &str) -> Vec<Device> {
    let mut out: Vec<Device> = known.to_vec();
    for l in leases {
        let Some(mac) = l.mac else { continue };
        match out.iter_mut().find(|d| d.mac == mac) {
            Some(d) => {
                if !d.ips.contains(&l.ip) {
                    d.ips.push(l.ip);
                }
            }
            None => {
                let name = l
                    .hostname
                    .as_deref()
                    .and_then(label_from)
                    .unwrap_or_else(|| format!("device-{}", mac.to_string().replace(':', "")));
                out.push(Device {
                    name,
                    mac,
                    ips: vec![l.ip],
                    group: default_group.to_owned(),
                });
            }
        }
    }
    out
}

/// A service seen on the segment via DNS-SD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Suggested catalog name (DNS label from the instance name).
    pub name: String,
    /// Full DNS-SD instance name, e.g. `Family NAS._smb._tcp.local.`.
    pub fullname: String,
    pub service_type: String,
    pub host: String,
    pub addrs: BTreeSet<IpAddr>,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    Up(Discovered),
    Down { fullname: String },
}

fn discovered(info: &mdns_sd::ServiceInfo) -> Option<Discovered> {
    let ty = info.get_type();
    let fullname = info.get_fullname();
    let instance = fullname.strip_suffix(ty)?.trim_end_matches('.');
    Some(Discovered {
        name: label_from(instance)?,
        fullname: fullname.chars().take(255).collect(),
        service_type: ty.to_owned(),
        host: info.get_hostname().chars().take(255).collect(),
        // A device may claim many addresses; a handful is plenty.
        addrs: info.get_addresses().iter().copied().take(8).collect(),
        port: info.get_port(),
    })
}

/// Browses DNS-SD service types on every interface; stops when dropped.
pub struct MdnsBrowser {
    daemon: mdns_sd::ServiceDaemon,
}

impl MdnsBrowser {
    /// Start browsing; events arrive on the returned channel (bounded: if nobody reads,
    /// the oldest news is not kept, the browser just waits).
    pub fn start(
        types: &[&str],
    ) -> Result<(Self, tokio::sync::mpsc::Receiver<DiscoveryEvent>), mdns_sd::Error> {
        let daemon = mdns_sd::ServiceDaemon::new()?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        for ty in types {
            let events = daemon.browse(ty)?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Ok(ev) = events.recv_async().await {
                    let out = match ev {
                        mdns_sd::ServiceEvent::ServiceResolved(info) => match discovered(&info) {
                            Some(d) => DiscoveryEvent::Up(d),
                            None => continue,
                        },
                        mdns_sd::ServiceEvent::ServiceRemoved(_, fullname) => {
                            DiscoveryEvent::Down { fullname }
                        }
                        _ => continue,
                    };
                    if tx.send(out).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok((Self { daemon }, rx))
    }
}

impl Drop for MdnsBrowser {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASES: &str = "\
1764115200 02:00:00:00:00:01 192.168.1.10 laptop 01:02:00:00:00:00:01
0 02:00:00:00:00:02 192.168.1.11 * *
1764115200 02:00:00:00:00:03 192.168.1.12 Kitchen_Thermostat!! *
duid 00:01:00:01:2c:7b:2a:10:02:00:00:00:00:09
1764115200 1234567 fd00::12 nas-v6 00:01:00:01
garbage line
1764115200 02:00:00:00:00:04 not-an-ip x *
";

    #[test]
    fn dnsmasq_leases_parse_and_junk_is_skipped() {
        let l = parse_leases(LEASES);
        assert_eq!(l.len(), 4, "{l:?}");
        assert_eq!(l[0].mac.unwrap().to_string(), "02:00:00:00:00:01");
        assert_eq!(l[0].hostname.as_deref(), Some("laptop"));
        assert_eq!(l[1].hostname, None);
        assert_eq!(l[1].expires, 0);
        assert_eq!(l[3].mac, None, "DHCPv6 lease has an IAID, not a MAC");
        assert_eq!(l[3].ip, "fd00::12".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn leases_become_devices_without_overriding_what_a_person_set() {
        let known = vec![Device {
            name: "dads-laptop".into(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            ips: vec![],
            group: "trusted".into(),
        }];
        let d = devices_from_leases(&parse_leases(LEASES), &known, "guest");
        assert_eq!(d.len(), 3);
        assert_eq!(
            (d[0].name.as_str(), d[0].group.as_str()),
            ("dads-laptop", "trusted")
        );
        assert_eq!(d[0].ips, vec!["192.168.1.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            (d[1].name.as_str(), d[1].group.as_str()),
            ("device-020000000002", "guest")
        );
        assert_eq!(d[2].name, "kitchen-thermostat");
    }

    #[test]
    fn labels_are_dns_safe_and_bounded() {
        assert_eq!(
            label_from("Family NAS (2)").as_deref(),
            Some("family-nas-2")
        );
        assert_eq!(label_from("---").as_deref(), None);
        assert_eq!(label_from(&"x".repeat(500)).unwrap().len(), 63);
        assert_eq!(
            label_from("Ünïcode Printer").as_deref(),
            Some("n-code-printer")
        );
    }

    #[test]
    fn lease_file_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leases");
        let line = "0 02:00:00:00:00:02 192.168.1.11 * *\n";
        std::fs::write(
            &p,
            line.repeat((MAX_LEASE_FILE as usize / line.len()) + 1000),
        )
        .unwrap();
        let l = read_leases(&p).unwrap();
        assert_eq!(l.len(), MAX_LEASES);
        assert!(read_leases(&dir.path().join("missing")).is_err());
    }
}
