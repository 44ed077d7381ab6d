//! Which router each device is behind, from what the routers report.
//!
//! A router reports the DHCP leases it hands out and the wifi clients of its access points.
//! Usually only the primary hands out addresses, so a lease says little about where a device
//! is; an association does, and so does a wired LAN port. A device is placed at the router
//! it is associated with (the one that heard it last, if it shows on two while roaming),
//! else at the router whose LAN port it is plugged into, else at the router that leased it
//! its address (the portal first, if several say so), and it is named from whichever report
//! carries its DHCP hostname.

use std::collections::BTreeMap;

use trellis_proto::api::SeenDevice;
use trellis_proto::NodeName;

/// `reports`: each router with the devices it reported. Returns the devices behind each
/// router; every MAC appears once.
pub fn place_devices<'a>(
    reports: impl IntoIterator<Item = (&'a NodeName, &'a [SeenDevice])>,
    portal: Option<&NodeName>,
) -> BTreeMap<NodeName, Vec<SeenDevice>> {
    let mut by_mac: BTreeMap<String, Vec<(&NodeName, &SeenDevice)>> = BTreeMap::new();
    for (node, devices) in reports {
        for d in devices {
            by_mac
                .entry(d.mac.to_ascii_lowercase())
                .or_default()
                .push((node, d));
        }
    }
    let mut out: BTreeMap<NodeName, Vec<SeenDevice>> = BTreeMap::new();
    for (mac, seen) in by_mac {
        let associated = seen
            .iter()
            .filter_map(|(n, d)| d.wifi.as_ref().map(|w| (*n, *d, w)))
            .min_by_key(|(n, _, w)| {
                (
                    w.inactive_ms.unwrap_or(u32::MAX),
                    std::cmp::Reverse(w.signal_dbm.unwrap_or(i32::MIN)),
                    n.as_str(),
                )
            });
        // Several routers with a claim of the same kind: the portal first, then by name.
        let first = |claim: &dyn Fn(&SeenDevice) -> bool| {
            seen.iter()
                .filter(|(_, d)| claim(d))
                .min_by_key(|(n, _)| (Some(*n) != portal, n.as_str()))
                .map(|(n, d)| (*n, *d))
        };
        let Some((node, base)) = associated
            .map(|(n, d, _)| (n, d))
            .or_else(|| first(&|d| d.port.is_some()))
            .or_else(|| first(&|_| true))
        else {
            continue;
        };
        let mut device = base.clone();
        device.mac = mac;
        if device.hostname.is_none() {
            device.hostname = seen.iter().find_map(|(_, d)| d.hostname.clone());
        }
        if device.ip.is_none() {
            device.ip = seen.iter().find_map(|(_, d)| d.ip);
        }
        out.entry(node.clone()).or_default().push(device);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::api::WifiAssociation;

    fn name(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    fn lease(mac: &str, host: &str) -> SeenDevice {
        SeenDevice {
            mac: mac.into(),
            ip: Some("192.168.1.50".parse().unwrap()),
            hostname: Some(host.into()),
            wifi: None,
            port: None,
        }
    }

    fn plugged(mac: &str, port: &str) -> SeenDevice {
        SeenDevice {
            mac: mac.into(),
            ip: None,
            hostname: None,
            wifi: None,
            port: Some(port.into()),
        }
    }

    #[test]
    fn a_printer_on_a_satellite_lan_port_is_behind_it() {
        let (home, attic) = (name("home"), name("attic"));
        let home_sees = [lease("aa:bb:cc:00:11:22", "printer")];
        let attic_sees = [plugged("aa:bb:cc:00:11:22", "lan2")];
        let placed = place_devices(
            [(&home, &home_sees[..]), (&attic, &attic_sees[..])],
            Some(&home),
        );
        assert!(!placed.contains_key(&home));
        let printer = &placed[&attic][0];
        assert_eq!(printer.port.as_deref(), Some("lan2"));
        assert_eq!(printer.hostname.as_deref(), Some("printer"));
    }

    fn client(mac: &str, inactive_ms: u32, signal: i32) -> SeenDevice {
        SeenDevice {
            mac: mac.into(),
            ip: None,
            hostname: None,
            wifi: Some(WifiAssociation {
                interface: "phy1-ap0".into(),
                signal_dbm: Some(signal),
                inactive_ms: Some(inactive_ms),
                network: None,
                band: None,
                dual_band: None,
            }),
            port: None,
        }
    }

    #[test]
    fn a_phone_on_a_satellite_is_behind_it_named_from_the_primary_lease() {
        let (home, attic) = (name("home"), name("attic"));
        let home_sees = [
            lease("02:00:00:00:00:07", "phone"),
            lease("aa:bb:cc:00:11:22", "nas"),
        ];
        let attic_sees = [client("02:00:00:00:00:07", 20, -55)];
        let placed = place_devices(
            [(&home, &home_sees[..]), (&attic, &attic_sees[..])],
            Some(&home),
        );
        let phone = &placed[&attic][0];
        assert_eq!(phone.hostname.as_deref(), Some("phone"));
        assert_eq!(phone.ip, Some("192.168.1.50".parse().unwrap()));
        assert!(phone.wifi.is_some());
        let at_home: Vec<&str> = placed[&home].iter().map(|d| d.mac.as_str()).collect();
        assert_eq!(
            at_home,
            ["aa:bb:cc:00:11:22"],
            "the phone is not also at home"
        );
    }

    #[test]
    fn a_roaming_client_is_where_it_was_heard_last() {
        let (a, b) = (name("attic"), name("garage"));
        let old = [client("02:00:00:00:00:07", 9000, -40)];
        let new = [client("02:00:00:00:00:07", 30, -70)];
        let placed = place_devices([(&a, &old[..]), (&b, &new[..])], None);
        assert!(!placed.contains_key(&a));
        assert_eq!(placed[&b].len(), 1);
    }

    #[test]
    fn a_lease_several_routers_report_counts_once_at_the_portal() {
        let (a, home) = (name("attic"), name("home"));
        let same = [lease("AA:BB:CC:00:11:22", "nas")];
        let placed = place_devices([(&a, &same[..]), (&home, &same[..])], Some(&home));
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[&home][0].mac, "aa:bb:cc:00:11:22");
    }
}
