//! The home's wifi networks as the controller keeps them (issue 15): setting and removing a
//! network, the roaming keys made once per home, and what the admin API and the page show.
//!
//! Validity is the proto's ([`Ssid`], [`Passphrase`], [`HomeWifi::validate`]); the store
//! keeps the record ([`crate::store::Store::put_wifi`], flash written only on change); every
//! change is published in the config snapshot (`snapshot.wifi`), which reaches the agents
//! only over their mutual TLS. Passphrases are never shown back and never logged.

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use trellis_proto::home_wifi::{
    Bands, HomeWifi, MobilityDomain, NetworkKind, Passphrase, Roaming, Security, Ssid, WifiNetwork,
};

use std::collections::HashMap;

use trellis_proto::api::Telemetry;
use trellis_proto::home_wifi::{
    AccessPointReport, ApNeighbour, SteerOutcome, SteerRequest, MAX_ACCESS_POINTS,
    MAX_HEARD_CLIENTS, MAX_STEER_OUTCOMES,
};
use trellis_proto::policy::{Joined, MacAddr};
use trellis_proto::NodeName;

use crate::steering::{Associated, DeviceSteering, Now, RouterView};

use crate::error::{HomeError, Kind, Result};
use crate::home::Home;

/// `PUT /v1/admin/wifi/{kind}`: a network to set. The passphrase may be left out when the
/// network already exists (a new name, same password).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct NetworkChange {
    pub ssid: String,
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub security: Option<Security>,
    #[serde(default)]
    pub bands: Option<Bands>,
}

impl std::fmt::Debug for NetworkChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkChange")
            .field("ssid", &self.ssid)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("security", &self.security)
            .field("bands", &self.bands)
            .finish()
    }
}

/// A network as shown: the passphrase only as whether it is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkShown {
    pub kind: NetworkKind,
    pub ssid: String,
    /// Always `"set"`: a passphrase is write-only.
    pub passphrase: String,
    pub security: Security,
    pub bands: Bands,
}

/// `GET /v1/admin/wifi`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiShown {
    pub networks: Vec<NetworkShown>,
    /// The home's 802.11r mobility domain (4 hex digits), once a network is set.
    #[serde(default)]
    pub mobility_domain: Option<String>,
    pub config_version: u64,
}

/// What the first setup offers to take from the primary router's own wireless config (its
/// access point on the LAN): the name, security and bands, never the key. Only while the
/// home has no home network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiOffer {
    pub ssid: String,
    pub security: Security,
    pub bands: Bands,
    /// The `wifi-iface` section it comes from, e.g. `default_radio0`.
    pub section: String,
}

/// The answer to a change: the new config version, or the same one when nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiChanged {
    pub config_version: u64,
    pub changed: bool,
}

/// The home's roaming keys, made once: a random mobility domain and a 32-byte FT key.
pub fn new_roaming() -> Result<Roaming> {
    let rng = SystemRandom::new();
    let mut md = [0u8; 2];
    let mut key = [0u8; 32];
    rng.fill(&mut md)
        .and_then(|()| rng.fill(&mut key))
        .map_err(|_| HomeError::new(Kind::Internal, "the system random source failed"))?;
    Ok(Roaming {
        mobility_domain: MobilityDomain(md),
        ft_key_hex: key.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

fn bad(e: impl std::fmt::Display) -> HomeError {
    HomeError::new(Kind::BadRequest, e.to_string())
}

/// `wifi` with `kind` set as `change` asks, validated; `wifi` is left as it was on error.
pub fn apply_change(
    wifi: &HomeWifi,
    kind: NetworkKind,
    change: &NetworkChange,
) -> Result<HomeWifi> {
    let ssid = Ssid::new(change.ssid.clone()).map_err(bad)?;
    let old = wifi.network(kind);
    let passphrase = match (&change.passphrase, old) {
        (Some(p), _) => Passphrase::new(p.clone()).map_err(bad)?,
        (None, Some(old)) => old.passphrase.clone(),
        (None, None) => {
            return Err(bad(format!(
                "the {kind} network is new: give it a passphrase (8 to 63 characters)"
            )))
        }
    };
    let network = WifiNetwork {
        kind,
        ssid,
        passphrase,
        security: change
            .security
            .or(old.map(|o| o.security))
            .unwrap_or_default(),
        bands: change
            .bands
            .or(old.map(|o| o.bands))
            .unwrap_or(WifiNetwork::default_bands(kind)),
    };
    let mut next = wifi.clone();
    next.networks.retain(|n| n.kind != kind);
    next.networks.push(network);
    next.networks.sort_by_key(|n| n.kind);
    if next.roaming.is_none() {
        next.roaming = Some(new_roaming()?);
    }
    next.validate().map_err(bad)?;
    Ok(next)
}

/// Cap what an agent says of its access points and clients (RAM stays bounded, kept text is
/// short); the steering outcomes are taken out for [`Home::steer_round`].
pub fn cap_wifi_reports(t: &mut Telemetry) -> Vec<SteerOutcome> {
    t.access_points.truncate(MAX_ACCESS_POINTS);
    for ap in &mut t.access_points {
        crate::home::truncate_to(&mut ap.interface, 15);
        // An SSID is at most 32 bytes (hostapd may print escapes); a fingerprint is hex.
        if let Some(ssid) = &mut ap.ssid {
            crate::home::truncate_to(ssid, 4 * 32);
        }
        if ap.settings.as_deref().is_some_and(|f| {
            f.len() != trellis_proto::home_wifi::FINGERPRINT_HEX
                || !f.bytes().all(|b| b.is_ascii_hexdigit())
        }) {
            ap.settings = None;
        }
        if ap
            .neighbour_report
            .as_deref()
            .is_some_and(|r| !crate::ap_neighbours::valid_report(r))
        {
            ap.neighbour_report = None;
        }
    }
    t.heard_clients.truncate(MAX_HEARD_CLIENTS);
    let mut outcomes = std::mem::take(&mut t.steer_outcomes);
    outcomes.truncate(MAX_STEER_OUTCOMES);
    outcomes
}

/// A router's report as the steering rules read it.
fn router_view(node: &NodeName, t: &Telemetry) -> RouterView {
    RouterView {
        node: node.clone(),
        associated: t
            .devices
            .iter()
            .filter_map(|d| {
                let w = d.wifi.as_ref()?;
                Some(Associated {
                    mac: d.mac.parse().ok()?,
                    interface: w.interface.clone(),
                    network: w.network?,
                    band: w.band?,
                    signal_dbm: w.signal_dbm?,
                    dual_band: w.dual_band,
                })
            })
            .collect(),
        heard: t.heard_clients.clone(),
        access_points: t.access_points.clone(),
    }
}

impl Home {
    /// Monotonic milliseconds since start and unix seconds: the steering rules' clock.
    fn steering_now(&self) -> Now {
        Now {
            ms: self.uptime().as_millis() as u64,
            unix: crate::ca::unix_now(),
        }
    }

    /// After `node`'s report: its steering outcomes, then one round over every router's
    /// latest report. Requests wait for their router's telemetry answer.
    pub(crate) fn steer_round(&self, node: &NodeName, outcomes: &[SteerOutcome]) {
        let now = self.steering_now();
        let views: Vec<RouterView> = self
            .snapshot()
            .nodes
            .iter()
            .filter_map(|n| self.telemetry(&n.name).map(|t| router_view(&n.name, &t)))
            .collect();
        let mut steering = self.steering.lock().unwrap_or_else(|p| p.into_inner());
        for o in outcomes {
            steering.outcome(now, node, o);
        }
        for (router, req) in steering.decide(now, &views) {
            tracing::info!(%router, station = %req.station, target = %req.target_node, id = req.id, "asking a wifi client to move (BSS transition request)");
        }
    }

    /// The steering requests for `node`'s telemetry answer.
    pub fn steer_for(&self, node: &NodeName) -> Vec<SteerRequest> {
        self.steering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_for(node)
    }

    /// The 802.11k neighbours for `node`'s access points (see [`crate::ap_neighbours`]).
    pub fn neighbours_for(&self, node: &NodeName) -> Vec<ApNeighbour> {
        let snapshot = self.snapshot();
        let reports: Vec<(NodeName, Vec<AccessPointReport>)> = snapshot
            .nodes
            .iter()
            .filter_map(|n| {
                self.telemetry(&n.name)
                    .map(|t| (n.name.clone(), t.access_points))
            })
            .collect();
        crate::ap_neighbours::neighbours_for(node, &snapshot.wifi, &reports)
    }

    /// A device's steering history: `device` is a MAC or a device-book name.
    pub fn device_steering(&self, device: &str) -> Result<DeviceSteering> {
        let mac = match device.parse::<MacAddr>() {
            Ok(mac) => mac,
            Err(_) => self
                .snapshot()
                .devices
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(device))
                .map(|d| d.mac)
                .ok_or_else(|| {
                    HomeError::new(
                        Kind::NotFound,
                        format!(
                            "no device {:?}: give its MAC or its name from `trellis devices`",
                            crate::home::capped(device, 64)
                        ),
                    )
                })?,
        };
        self.steering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .device(&mac)
            .ok_or_else(|| {
                HomeError::new(
                    Kind::NotFound,
                    format!("no steering decision for {mac} yet: it is not on one of the home's networks, or its router has not reported it"),
                )
            })
    }

    /// The home network each associated client joined, by MAC, from the router that has it
    /// associated (its latest report): the first word on the client's policy group
    /// ([`trellis_proto::policy::Source::device_on`]).
    pub fn joined_networks(&self) -> HashMap<MacAddr, Joined> {
        let mut out = HashMap::new();
        let Ok(by_router) = self.devices_by_router() else {
            return out;
        };
        for (router, seen) in by_router {
            for d in seen {
                let (Some(w), Ok(mac)) = (&d.wifi, d.mac.parse::<MacAddr>()) else {
                    continue;
                };
                if let Some(network) = w.network {
                    out.insert(
                        mac,
                        Joined {
                            network,
                            router: Some(router.clone()),
                        },
                    );
                }
            }
        }
        out
    }

    /// The home's wifi as stored.
    pub fn wifi(&self) -> Result<HomeWifi> {
        Ok(self.store.wifi()?)
    }

    pub fn wifi_shown(&self) -> Result<WifiShown> {
        let wifi = self.wifi()?;
        Ok(WifiShown {
            networks: wifi
                .networks
                .iter()
                .map(|n| NetworkShown {
                    kind: n.kind,
                    ssid: n.ssid.to_string(),
                    passphrase: "set".into(),
                    security: n.security,
                    bands: n.bands,
                })
                .collect(),
            mobility_domain: wifi.roaming.map(|r| r.mobility_domain.to_string()),
            config_version: self.snapshot().version,
        })
    }

    fn put_wifi(&self, next: &HomeWifi, what: &str) -> Result<WifiChanged> {
        match self.store.put_wifi(next)? {
            Some(version) => {
                // The SSID only: never the passphrase or the FT key.
                tracing::info!(version, change = what, "home wifi changed");
                self.record("wifi", format!("Wifi: {what}"));
                self.publish()?;
                Ok(WifiChanged {
                    config_version: version,
                    changed: true,
                })
            }
            None => Ok(WifiChanged {
                config_version: self.snapshot().version,
                changed: false,
            }),
        }
    }

    /// Set one network (new or changed). Bad input changes nothing.
    pub fn set_wifi_network(
        &self,
        kind: NetworkKind,
        change: &NetworkChange,
    ) -> Result<WifiChanged> {
        let next = apply_change(&self.wifi()?, kind, change)?;
        let ssid = next
            .network(kind)
            .map(|n| n.ssid.to_string())
            .unwrap_or_default();
        self.put_wifi(&next, &format!("the {kind} network is {ssid:?}"))
    }

    /// The first-setup offer ([`WifiOffer`]): `None` once the home network is set, or when
    /// this router has no access point that could be taken (no OpenWrt, none enabled, an
    /// encryption Trellis does not serve). Runs `uci`: call it off the async workers.
    pub fn wifi_offer(&self) -> Result<Option<WifiOffer>> {
        if self.wifi()?.network(NetworkKind::Home).is_some() {
            return Ok(None);
        }
        let found = crate::uci_wireless::show_wireless()
            .map_err(|e| e.to_string())
            .and_then(|text| crate::uci_wireless::import_home(&text).map_err(|e| e.to_string()));
        Ok(match found {
            Ok(f) => Some(WifiOffer {
                ssid: f.ssid.to_string(),
                security: f.security,
                bands: f.bands,
                section: f.section,
            }),
            Err(why) => {
                tracing::debug!(%why, "no wifi to offer from this router's wireless config");
                None
            }
        })
    }

    /// Takes the offer: this router's access point's name and key become the home network,
    /// so no device has to join again. Refused once the home network is set. Runs `uci`.
    pub fn take_wifi_offer(&self) -> Result<WifiChanged> {
        if let Some(home) = self.wifi()?.network(NetworkKind::Home) {
            return Err(HomeError::new(
                Kind::Conflict,
                format!(
                    "the home network is already set ({:?}); change it instead",
                    home.ssid.as_str()
                ),
            ));
        }
        let text =
            crate::uci_wireless::show_wireless().map_err(|e| HomeError::new(Kind::Conflict, e))?;
        let found = crate::uci_wireless::import_home(&text)
            .map_err(|e| HomeError::new(Kind::Conflict, e.to_string()))?;
        let change = NetworkChange {
            ssid: found.ssid.to_string(),
            passphrase: Some(found.passphrase.expose().to_owned()),
            security: Some(found.security),
            bands: Some(found.bands),
        };
        self.set_wifi_network(NetworkKind::Home, &change)
    }

    /// Stop serving one network (the roaming keys stay: the home keeps its mobility domain).
    pub fn remove_wifi_network(&self, kind: NetworkKind) -> Result<WifiChanged> {
        let mut next = self.wifi()?;
        if next.network(kind).is_none() {
            return Err(HomeError::new(
                Kind::NotFound,
                format!("the home has no {kind} network (see `trellis wifi`)"),
            ));
        }
        next.networks.retain(|n| n.kind != kind);
        self.put_wifi(&next, &format!("the {kind} network was removed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_agent_says_of_its_access_points_is_bounded() {
        use trellis_proto::home_wifi::Band;
        let ap = |ssid: &str, settings: &str| AccessPointReport {
            network: NetworkKind::Home,
            interface: "tr-home0-and-far-too-long".into(),
            bssid: "02:00:00:00:00:01".parse().unwrap(),
            band: Band::G2,
            channel: 1,
            freq_mhz: 2412,
            neighbour_report: None,
            ssid: Some(ssid.into()),
            settings: Some(settings.into()),
        };
        let mut t = Telemetry {
            access_points: vec![
                ap(&"x".repeat(10_000), "0123456789abcdef"),
                ap("Our Home", "not a fingerprint"),
            ],
            ..Default::default()
        };
        cap_wifi_reports(&mut t);
        let [a, b] = &t.access_points[..] else {
            panic!("both kept")
        };
        assert_eq!(a.interface.len(), 15);
        assert_eq!(a.ssid.as_ref().map(String::len), Some(128));
        assert_eq!(a.settings.as_deref(), Some("0123456789abcdef"));
        assert_eq!(b.settings, None, "not hex of the right length");
    }

    fn change(ssid: &str, pass: Option<&str>) -> NetworkChange {
        NetworkChange {
            ssid: ssid.into(),
            passphrase: pass.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_network_makes_the_roaming_keys_once() {
        let w = apply_change(
            &HomeWifi::default(),
            NetworkKind::Home,
            &change("Home", Some("correct horse")),
        )
        .unwrap();
        let r = w.roaming.clone().unwrap();
        assert_eq!(r.ft_key_hex.len(), 64);
        let w2 = apply_change(&w, NetworkKind::Iot, &change("Things", Some("12345678"))).unwrap();
        assert_eq!(w2.roaming, Some(r), "the keys are made once per home");
        assert_eq!(
            w2.network(NetworkKind::Iot).unwrap().bands,
            Bands::Only2g,
            "iot is 2.4 GHz by default"
        );
        // A rename keeps the passphrase.
        let w3 = apply_change(&w2, NetworkKind::Home, &change("Casa", None)).unwrap();
        assert_eq!(
            w3.network(NetworkKind::Home).unwrap().passphrase.expose(),
            "correct horse"
        );
    }

    #[test]
    fn bad_networks_are_refused_with_what_to_fix() {
        let w = HomeWifi::default();
        let long = "x".repeat(33);
        let err =
            apply_change(&w, NetworkKind::Home, &change(&long, Some("12345678"))).unwrap_err();
        assert!(err.message.contains("33 bytes"), "{}", err.message);
        let err = apply_change(&w, NetworkKind::Home, &change("Home", Some("short"))).unwrap_err();
        assert!(err.message.contains("8 to 63"), "{}", err.message);
        let err = apply_change(&w, NetworkKind::Home, &change("Home", None)).unwrap_err();
        assert!(err.message.contains("passphrase"), "{}", err.message);
        let w = apply_change(&w, NetworkKind::Home, &change("Home", Some("12345678"))).unwrap();
        let err =
            apply_change(&w, NetworkKind::Guest, &change("Home", Some("12345678"))).unwrap_err();
        assert!(err.message.contains("own name"), "{}", err.message);
    }

    /// A home with router `attic` enrolled (straight in the store, as pairing leaves it).
    pub(crate) fn home_with(dir: &std::path::Path, routers: &[&str]) -> std::sync::Arc<Home> {
        let home = Home::open(crate::home::Settings {
            data_dir: dir.join("c"),
            leaf_ttl: std::time::Duration::from_secs(3600),
            advertise: String::new(),
            node_timeout: crate::home::DEFAULT_NODE_TIMEOUT,
        })
        .unwrap();
        for (i, r) in routers.iter().enumerate() {
            let name = trellis_proto::NodeName::new(*r).unwrap();
            let id = trellis_proto::SpiffeId::node(home.home_id(), &name);
            home.store
                .enroll_node(
                    &id,
                    &trellis_proto::CertSerial::from_hex(&format!("{i:02x}")),
                    u64::MAX / 2,
                    0,
                )
                .unwrap();
        }
        home.publish().unwrap();
        home
    }

    #[test]
    fn why_names_the_network_a_device_joined_over_the_device_book() {
        let dir = tempfile::tempdir().unwrap();
        let home = home_with(dir.path(), &["attic"]);
        home.set_device("02:00:00:00:00:01", "laptop", "trusted")
            .unwrap();
        let attic = trellis_proto::NodeName::new("attic").unwrap();
        let telemetry = trellis_proto::api::Telemetry {
            devices: vec![trellis_proto::api::SeenDevice {
                mac: "02:00:00:00:00:01".into(),
                ip: None,
                hostname: None,
                wifi: Some(trellis_proto::api::WifiAssociation {
                    interface: "phy0-ap1".into(),
                    signal_dbm: Some(-50),
                    inactive_ms: Some(10),
                    network: Some(NetworkKind::Guest),
                    band: None,
                    dual_band: None,
                }),
                port: None,
            }],
            ..Default::default()
        };
        let before = home.why("laptop", "nas").unwrap();
        assert!(before.allowed, "{}", before.explanation);
        home.report(&attic, telemetry).unwrap();
        let after = home.why("laptop", "nas").unwrap();
        assert!(!after.allowed, "{}", after.explanation);
        assert!(
            after
                .explanation
                .contains("guest: joined the guest network on attic"),
            "{}",
            after.explanation
        );
    }

    #[test]
    fn a_change_prints_no_passphrase() {
        let c = change("Home", Some("correct horse"));
        assert!(!format!("{c:?}").contains("horse"));
    }
}
