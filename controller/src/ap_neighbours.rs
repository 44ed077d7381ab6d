//! 802.11k neighbour reports (issue 15): which of the home's other access points each router's
//! access points list (hostapd `rrm_nr_set`), composed from every router's reported access
//! points. A pure function; the controller sends the result with each telemetry answer.

use trellis_proto::home_wifi::{AccessPointReport, ApNeighbour, HomeWifi};
use trellis_proto::NodeName;

/// Most neighbours handed to one router (the home's routers × their access points).
pub const MAX_NEIGHBOURS: usize = 64;
/// Longest neighbour report element taken, in hex characters (an element is 255 bytes at most).
pub const MAX_REPORT_HEX: usize = 510;

/// Whether a reported neighbour report element is one (hex, even, bounded): an agent's text.
pub fn valid_report(hex: &str) -> bool {
    !hex.is_empty()
        && hex.len() <= MAX_REPORT_HEX
        && hex.len().is_multiple_of(2)
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The neighbours of `node`'s access points: every other router's access points of a
/// network `node` also serves, that the home still has, with a neighbour report element.
pub fn neighbours_for(
    node: &NodeName,
    wifi: &HomeWifi,
    reports: &[(NodeName, Vec<AccessPointReport>)],
) -> Vec<ApNeighbour> {
    let Some((_, mine)) = reports.iter().find(|(n, _)| n == node) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (other, aps) in reports.iter().filter(|(n, _)| n != node) {
        for ap in aps {
            if !mine.iter().any(|m| m.network == ap.network) {
                continue;
            }
            let (Some(net), Some(report)) = (wifi.network(ap.network), &ap.neighbour_report) else {
                continue;
            };
            if !valid_report(report) || out.len() >= MAX_NEIGHBOURS {
                continue;
            }
            out.push(ApNeighbour {
                node: other.clone(),
                network: ap.network,
                bssid: ap.bssid,
                ssid: net.ssid.clone(),
                neighbour_report: report.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::home_wifi::*;

    fn ap(network: NetworkKind, bssid: &str, report: Option<&str>) -> AccessPointReport {
        AccessPointReport {
            network,
            interface: "phy0-ap0".into(),
            bssid: bssid.parse().unwrap(),
            band: Band::G2,
            channel: 1,
            freq_mhz: 2412,
            neighbour_report: report.map(Into::into),
            ssid: None,
            settings: None,
        }
    }

    fn net(kind: NetworkKind, ssid: &str) -> WifiNetwork {
        WifiNetwork {
            kind,
            ssid: Ssid::new(ssid).unwrap(),
            passphrase: Passphrase::new("12345678").unwrap(),
            security: Security::default(),
            bands: Bands::Both,
        }
    }

    #[test]
    fn each_router_gets_the_other_routers_aps_of_its_networks() {
        let n = |s: &str| NodeName::new(s).unwrap();
        let wifi = HomeWifi {
            networks: vec![
                net(NetworkKind::Home, "Home"),
                net(NetworkKind::Guest, "Visitors"),
            ],
            roaming: None,
        };
        let reports = vec![
            (
                n("attic"),
                vec![ap(
                    NetworkKind::Home,
                    "02:00:00:00:01:01",
                    Some("0200000001010000"),
                )],
            ),
            (
                n("cellar"),
                vec![
                    ap(
                        NetworkKind::Home,
                        "02:00:00:00:02:01",
                        Some("0200000002010000"),
                    ),
                    ap(
                        NetworkKind::Guest,
                        "02:00:00:00:02:02",
                        Some("0200000002020000"),
                    ),
                    ap(NetworkKind::Home, "02:00:00:00:02:03", Some("not hex!")),
                    ap(NetworkKind::Home, "02:00:00:00:02:04", None),
                ],
            ),
            (
                n("garage"),
                vec![ap(NetworkKind::Iot, "02:00:00:00:03:01", Some("aa"))],
            ),
        ];
        let got = neighbours_for(&n("attic"), &wifi, &reports);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].node, n("cellar"));
        assert_eq!(got[0].ssid.as_str(), "Home");
        assert_eq!(got[0].neighbour_report, "0200000002010000");
        // cellar hears of attic's home AP, not of garage's iot one (it serves no iot).
        let got = neighbours_for(&n("cellar"), &wifi, &reports);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].node, n("attic"));
        // garage's iot network is not one the home has: nothing for it.
        assert!(neighbours_for(&n("garage"), &wifi, &reports).is_empty());
        assert!(neighbours_for(&n("nowhere"), &wifi, &reports).is_empty());
    }
}
