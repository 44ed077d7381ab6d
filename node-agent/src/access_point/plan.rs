//! Which of the home's networks this router serves on which radio, under which interface
//! name: the one place both backends ask, so an interface is called the same on OpenWrt and
//! in the lab, and the one check that a radio can host them all (pure logic).

use serde::{Deserialize, Serialize};
use trellis_proto::home_wifi::{Band, HomeWifi, NetworkKind, Roaming, Security, WifiNetwork};

use super::ApError;

/// One radio of this router, as the backend found it (OpenWrt: a `wifi-device` section;
/// elsewhere: a phy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Radio {
    /// `radio0` (OpenWrt's `wifi-device`) or `phy1`.
    pub name: String,
    /// The phy (`phy0`), for `iw` and for hostapd's interface creation.
    pub phy: String,
    pub band: Band,
    pub channel: u8,
    pub freq_mhz: u32,
    /// The most interfaces the radio can run at once that include an AP (`iw phy` "valid
    /// interface combinations", the group holding `AP`).
    pub max_interfaces: u8,
    /// Interfaces on this radio that are not Trellis's access points (the person's own
    /// `wifi-iface` sections, the mesh backhaul).
    #[serde(default)]
    pub other_interfaces: u8,
}

/// This router's radios.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Radios(pub Vec<Radio>);

/// One access point to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAp {
    pub network: WifiNetwork,
    /// Index into the radios.
    pub radio: usize,
    pub radio_name: String,
    pub band: Band,
    /// `tr-home0`: the interface hostapd serves it on (OpenWrt: the `ifname` option).
    pub ifname: String,
    /// OpenWrt's section name, `trellis_home_radio0` (never one of the person's).
    pub section: String,
    /// The fingerprint of its settings the controller checks against the home's
    /// ([`trellis_proto::home_wifi::settings_fingerprint`]).
    pub settings: String,
}

/// The section-name prefix that marks the agent's own `wifi-iface` sections.
pub const SECTION_PREFIX: &str = "trellis_";

/// The interface of network `kind` on the radio at `index`: `tr-home0` (at most 15 bytes,
/// the kernel's limit, for up to 1000 radios).
pub fn ifname(kind: NetworkKind, index: usize) -> String {
    format!("tr-{kind}{index}")
}

/// Turns the home's networks into access points on `radios`, or says why it cannot; every
/// check happens here, before a backend changes anything.
pub fn plan(wifi: &HomeWifi, radios: &Radios) -> Result<Vec<PlannedAp>, ApError> {
    if wifi.networks.is_empty() {
        return Ok(Vec::new());
    }
    let roaming = wifi.roaming.as_ref().ok_or(ApError::NoRoaming)?;
    ft_key(roaming)?;
    for n in &wifi.networks {
        if n.ssid.as_str().chars().any(char::is_control) {
            return Err(ApError::SsidControlCharacter(
                n.ssid
                    .as_str()
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect(),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, radio) in radios.0.iter().enumerate() {
        // Home first, then iot, then guest: when a radio is full, the guest is what is refused.
        let mut on_radio: Vec<&WifiNetwork> = wifi
            .networks
            .iter()
            .filter(|n| n.bands.includes(radio.band))
            .collect();
        on_radio.sort_by_key(|n| n.kind);
        let needed = on_radio.len() + radio.other_interfaces as usize;
        if needed > radio.max_interfaces as usize {
            let kind = on_radio.last().map(|n| n.kind).unwrap_or(NetworkKind::Home);
            let names: Vec<String> = on_radio.iter().map(|n| n.kind.to_string()).collect();
            let mut networks = names.join(", ");
            if radio.other_interfaces > 0 {
                networks.push_str(&format!(" and {} of its own", radio.other_interfaces));
            }
            return Err(ApError::RadioFull {
                radio: radio.name.clone(),
                max: radio.max_interfaces,
                needed,
                networks,
                kind,
            });
        }
        for n in on_radio {
            out.push(PlannedAp {
                network: n.clone(),
                radio: i,
                radio_name: radio.name.clone(),
                band: radio.band,
                ifname: ifname(n.kind, i),
                section: format!("{SECTION_PREFIX}{}_{}", n.kind, uci_name(&radio.name)),
                settings: trellis_proto::home_wifi::settings_fingerprint(n, Some(roaming)),
            });
        }
    }
    Ok(out)
}

/// A uci section name may hold only letters, digits and `_`.
fn uci_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The home's FT key, checked: 64 hex characters (a 256-bit key, what hostapd's
/// `r0kh`/`r1kh` lines take).
pub fn ft_key(roaming: &Roaming) -> Result<&str, ApError> {
    let k = roaming.ft_key_hex.as_str();
    if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApError::FtKey);
    }
    Ok(k)
}

/// The 802.11r key holders every access point of the home shares: a wildcard R0KH (any
/// access point of the mobility domain) and a wildcard R1KH, both with the home's key. The
/// same form OpenWrt 25.12 derives when `r0kh`/`r1kh` are unset (wifi/ap.uc,
/// `iface_roaming`: `ff:ff:ff:ff:ff:ff,*,KEY` and `00:00:00:00:00:00,00:00:00:00:00:00,KEY`).
pub fn key_holders(roaming: &Roaming) -> Result<(String, String), ApError> {
    let k = ft_key(roaming)?;
    Ok((
        format!("ff:ff:ff:ff:ff:ff,*,{k}"),
        format!("00:00:00:00:00:00,00:00:00:00:00:00,{k}"),
    ))
}

/// hostapd's `wpa_key_mgmt` for a network with FT: the transition mode offers PSK and SAE,
/// each also over FT (the same list OpenWrt's hostapd.sh builds for `psk-sae` with
/// `ieee80211r 1` and no `ieee80211w` forcing SHA256, hostapd_append_wpa_key_mgmt).
pub fn key_mgmt(security: Security) -> &'static str {
    match security {
        Security::Wpa2Wpa3 => "WPA-PSK FT-PSK SAE FT-SAE",
        Security::Wpa3 => "SAE FT-SAE",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use trellis_proto::home_wifi::{Bands, MobilityDomain, Passphrase, Ssid};

    pub fn network(kind: NetworkKind, ssid: &str) -> WifiNetwork {
        WifiNetwork {
            kind,
            ssid: Ssid::new(ssid).unwrap(),
            passphrase: Passphrase::new("correct horse battery").unwrap(),
            security: Security::Wpa2Wpa3,
            bands: WifiNetwork::default_bands(kind),
        }
    }

    pub fn home_wifi(kinds: &[NetworkKind]) -> HomeWifi {
        HomeWifi {
            networks: kinds
                .iter()
                .map(|k| network(*k, &format!("Example {k}")))
                .collect(),
            roaming: Some(Roaming {
                mobility_domain: MobilityDomain([0xa1, 0xb2]),
                ft_key_hex: "0f".repeat(32),
            }),
        }
    }

    pub fn radios(max: u8) -> Radios {
        Radios(vec![
            Radio {
                name: "radio0".into(),
                phy: "phy0".into(),
                band: Band::G2,
                channel: 6,
                freq_mhz: 2437,
                max_interfaces: max,
                other_interfaces: 0,
            },
            Radio {
                name: "radio1".into(),
                phy: "phy1".into(),
                band: Band::G5,
                channel: 36,
                freq_mhz: 5180,
                max_interfaces: max,
                other_interfaces: 1,
            },
        ])
    }

    #[test]
    fn every_network_goes_on_every_radio_of_its_bands() {
        let w = home_wifi(&[NetworkKind::Home, NetworkKind::Iot, NetworkKind::Guest]);
        let p = plan(&w, &radios(8)).unwrap();
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|a| (a.ifname.as_str(), a.section.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("tr-home0", "trellis_home_radio0"),
                ("tr-iot0", "trellis_iot_radio0"),
                ("tr-guest0", "trellis_guest_radio0"),
                // iot is 2.4 GHz only by default.
                ("tr-home1", "trellis_home_radio1"),
                ("tr-guest1", "trellis_guest_radio1"),
            ]
        );
    }

    #[test]
    fn a_guest_network_on_a_full_radio_is_refused_by_name() {
        let w = home_wifi(&[NetworkKind::Home, NetworkKind::Guest]);
        // radio1 already runs the mesh: home + guest + mesh = 3 > 2.
        let err = plan(&w, &radios(2)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("radio radio1 cannot host another access point"),
            "{text}"
        );
        assert!(text.contains("guest network"), "{text}");
        assert!(text.contains("home, guest and 1 of its own"), "{text}");
    }

    #[test]
    fn bad_settings_are_refused_before_anything() {
        let mut w = home_wifi(&[NetworkKind::Home]);
        w.roaming.as_mut().unwrap().ft_key_hex = "abc".into();
        assert!(matches!(plan(&w, &radios(8)), Err(ApError::FtKey)));
        let mut w = home_wifi(&[NetworkKind::Home]);
        w.networks[0].ssid = Ssid::new("Home\nwpa=0").unwrap();
        assert!(matches!(
            plan(&w, &radios(8)),
            Err(ApError::SsidControlCharacter(_))
        ));
        let mut w = home_wifi(&[NetworkKind::Home]);
        w.roaming = None;
        assert!(matches!(plan(&w, &radios(8)), Err(ApError::NoRoaming)));
        // No networks: nothing to run, whatever the radios.
        assert_eq!(plan(&HomeWifi::default(), &radios(0)).unwrap(), vec![]);
        let _ = Bands::Both;
    }
}
