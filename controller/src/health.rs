//! What is healthy about a home's routers: the rules behind the warnings.
//!
//! One function per question, each returning a typed answer; `trellis nodes`, `trellis check`
//! and the page's warnings read the answer (carried in [`NodeInfo`]) and only choose the words.
//! Today: a router's certificate ([`certificate`]) and its access points against the home's
//! wifi networks ([`wifi`]). Whether a router is online is [`crate::fleet::Liveness`].
//!
//! [`NodeInfo`]: trellis_proto::api::NodeInfo

use std::time::Duration;

use std::collections::BTreeSet;

use trellis_proto::api::CertHealth;
use trellis_proto::home_wifi::{
    settings_fingerprint, AccessPointReport, HomeWifi, WifiDrift, WifiHealth,
};

/// A certificate that expires at `not_after` (unix s), seen at `now`, issued for `ttl`.
/// Agents renew at half of the lifetime: under a quarter left means the renewals failed.
pub fn certificate(not_after: u64, now: u64, ttl: Duration) -> CertHealth {
    if not_after <= now {
        return CertHealth::Expired {
            expired_s_ago: now - not_after,
        };
    }
    let left = not_after - now;
    if left < ttl.as_secs() / 4 {
        CertHealth::RenewalLate { expires_in_s: left }
    } else {
        CertHealth::Valid { expires_in_s: left }
    }
}

/// How the access points a router last reported (`aps`) match the home's networks: each
/// network on every band the router's access points are on (that the network is broadcast
/// on), under the home's name, with the home's settings ([`settings_fingerprint`]).
/// `None` when the home has no networks and the router runs none. An access point whose
/// agent does not say its SSID or settings (an older agent) is not judged on them.
/// `radios` is what the router said it has ([`trellis_proto::api::Telemetry::radios`]): one
/// without radios is not expected to broadcast anything.
pub fn wifi(home: &HomeWifi, aps: &[AccessPointReport], radios: Option<u8>) -> Option<WifiHealth> {
    if aps.is_empty() {
        if home.networks.is_empty() {
            return None;
        }
        return Some(if radios == Some(0) {
            WifiHealth::NoRadios
        } else {
            WifiHealth::NoAccessPoints
        });
    }
    let bands: BTreeSet<_> = aps.iter().map(|a| a.band).collect();
    let mut drifts = Vec::new();
    for n in &home.networks {
        let of_network = || aps.iter().filter(|a| a.network == n.kind);
        for &band in bands.iter().filter(|&&b| n.bands.includes(b)) {
            if !of_network().any(|a| a.band == band) {
                drifts.push(WifiDrift::Missing {
                    network: n.kind,
                    band,
                });
            }
        }
        let expected = settings_fingerprint(n, home.roaming.as_ref());
        if let Some(ssid) = of_network()
            .filter_map(|a| a.ssid.as_deref())
            .find(|s| *s != n.ssid.as_str())
        {
            drifts.push(WifiDrift::OtherSsid {
                network: n.kind,
                ssid: ssid.to_owned(),
            });
        } else if of_network().any(|a| a.settings.as_deref().is_some_and(|s| s != expected)) {
            drifts.push(WifiDrift::OtherSettings { network: n.kind });
        }
    }
    let removed: BTreeSet<_> = aps
        .iter()
        .map(|a| a.network)
        .filter(|k| home.network(*k).is_none())
        .collect();
    drifts.extend(
        removed
            .into_iter()
            .map(|network| WifiDrift::Removed { network }),
    );
    Some(if drifts.is_empty() {
        let served: BTreeSet<_> = aps.iter().map(|a| a.network).collect();
        WifiHealth::Consistent {
            networks: served.into_iter().collect(),
        }
    } else {
        WifiHealth::Differs { drifts }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::home_wifi::{
        Band, Bands, MobilityDomain, NetworkKind, Passphrase, Roaming, Security, Ssid, WifiNetwork,
    };

    fn home() -> HomeWifi {
        let net = |kind, ssid: &str, bands| WifiNetwork {
            kind,
            ssid: Ssid::new(ssid).unwrap(),
            passphrase: Passphrase::new("correct horse battery").unwrap(),
            security: Security::Wpa2Wpa3,
            bands,
        };
        HomeWifi {
            networks: vec![
                net(NetworkKind::Home, "Our Home", Bands::Both),
                net(NetworkKind::Iot, "Our Things", Bands::Only2g),
            ],
            roaming: Some(Roaming {
                mobility_domain: MobilityDomain([0xab, 0xcd]),
                ft_key_hex: "11".repeat(32),
            }),
        }
    }

    /// The access point an up-to-date agent reports for `kind` on `band`.
    fn ap(w: &HomeWifi, kind: NetworkKind, band: Band) -> AccessPointReport {
        let n = w.network(kind).unwrap();
        AccessPointReport {
            network: kind,
            interface: format!("tr-{kind}0"),
            bssid: "02:aa:00:00:00:01".parse().unwrap(),
            band,
            channel: 1,
            freq_mhz: 2412,
            neighbour_report: None,
            ssid: Some(n.ssid.as_str().to_owned()),
            settings: Some(settings_fingerprint(n, w.roaming.as_ref())),
        }
    }

    #[test]
    fn a_router_serving_the_homes_networks_as_set_is_consistent() {
        let w = home();
        let aps = [
            ap(&w, NetworkKind::Home, Band::G2),
            ap(&w, NetworkKind::Iot, Band::G2),
            ap(&w, NetworkKind::Home, Band::G5),
        ];
        assert_eq!(
            wifi(&w, &aps, Some(2)),
            Some(WifiHealth::Consistent {
                networks: vec![NetworkKind::Home, NetworkKind::Iot]
            })
        );
        // A 5 GHz-only router is not expected to carry the 2.4 GHz-only iot network.
        assert!(matches!(
            wifi(&w, &[ap(&w, NetworkKind::Home, Band::G5)], Some(1)),
            Some(WifiHealth::Consistent { .. })
        ));
        // No access points: said, unless the home has no networks either.
        assert_eq!(wifi(&w, &[], None), Some(WifiHealth::NoAccessPoints));
        assert_eq!(wifi(&HomeWifi::default(), &[], None), None);
        // A router without radios broadcasts nothing, and that is not a fault…
        assert_eq!(wifi(&w, &[], Some(0)), Some(WifiHealth::NoRadios));
        // …but one whose radios carry nothing of the home's is.
        assert_eq!(wifi(&w, &[], Some(2)), Some(WifiHealth::NoAccessPoints));
    }

    #[test]
    fn each_difference_is_named() {
        let w = home();
        let mut renamed = ap(&w, NetworkKind::Home, Band::G2);
        renamed.ssid = Some("Old Name".into());
        let mut stale = ap(&w, NetworkKind::Iot, Band::G2);
        stale.settings = Some("0000000000000000".into());
        let guest = AccessPointReport {
            network: NetworkKind::Guest,
            ..ap(&w, NetworkKind::Home, Band::G5)
        };
        let Some(WifiHealth::Differs { drifts }) = wifi(&w, &[renamed, stale, guest], Some(1))
        else {
            panic!("differences not seen")
        };
        assert_eq!(
            drifts,
            vec![
                // Home is on 2.4 only here although the router has a 5 GHz access point.
                WifiDrift::Missing {
                    network: NetworkKind::Home,
                    band: Band::G5
                },
                WifiDrift::OtherSsid {
                    network: NetworkKind::Home,
                    ssid: "Old Name".into()
                },
                WifiDrift::OtherSettings {
                    network: NetworkKind::Iot
                },
                WifiDrift::Removed {
                    network: NetworkKind::Guest
                },
            ]
        );
        // An older agent that says neither SSID nor settings is judged on what it says.
        let mut old = ap(&w, NetworkKind::Home, Band::G5);
        (old.ssid, old.settings) = (None, None);
        assert!(matches!(
            wifi(&w, &[old], None),
            Some(WifiHealth::Consistent { .. })
        ));
    }

    #[test]
    fn a_quarter_of_the_lifetime_left_is_the_line() {
        let day = Duration::from_secs(86_400);
        let now = 1_800_000_000;
        assert_eq!(
            certificate(now + 7 * 3600, now, day),
            CertHealth::Valid {
                expires_in_s: 7 * 3600
            }
        );
        // 5 h left of 24: the page used to warn (under 6 h) while `trellis check` did not
        // (under 2 h) and `trellis nodes` never did.
        assert_eq!(
            certificate(now + 5 * 3600, now, day),
            CertHealth::RenewalLate {
                expires_in_s: 5 * 3600
            }
        );
        assert_eq!(
            certificate(now - 60, now, day),
            CertHealth::Expired { expired_s_ago: 60 }
        );
        assert_eq!(
            certificate(now, now, day),
            CertHealth::Expired { expired_s_ago: 0 }
        );
    }
}
