//! The home's wifi networks (the access points phones and laptops join, not the 802.11s
//! backhaul), as the controller keeps them and every agent applies them.
//!
//! This module owns the vocabulary both sides share: which networks a home has
//! ([`NetworkKind`]), what makes an SSID or a passphrase valid ([`Ssid`], [`Passphrase`]: the
//! one place that decides), the roaming keys of the home ([`Roaming`]: one 802.11r mobility
//! domain), what an agent reports of its access points and clients ([`AccessPointReport`],
//! [`HeardClient`]) and what the controller asks of them ([`SteerRequest`], [`SteerOutcome`]).
//!
//! Where each part travels:
//! - [`HomeWifi`] (what a person set) is part of the config snapshot: versioned, acked, kept
//!   by the agent across a controller outage, sent only over the agents' mutual TLS.
//! - What the air composes changes without a person: the neighbour reports of all the home's
//!   access points ([`ApNeighbour`]) and steering requests ride on the telemetry answer;
//!   access points, heard clients and steering outcomes ride on the agent's telemetry.
//!
//! Secrets ([`Passphrase`], the FT key) print as `<redacted>` in `Debug`, so a `tracing`
//! field of any of these types never puts one in a log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::NodeName;
use crate::policy::MacAddr;

/// Why a wifi setting was refused: said so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WifiError {
    #[error("a network name (SSID) must be 1 to 32 bytes; {0:?} is {1} bytes")]
    SsidLength(String, usize),
    #[error(
        "a wifi password must be 8 to 63 printable ASCII characters (letters, digits, \
         punctuation, spaces); this one is {0} characters"
    )]
    PassphraseLength(usize),
    #[error(
        "a wifi password may hold only printable ASCII characters (letters, digits, \
         punctuation, spaces); character {0} is not one"
    )]
    PassphraseCharacter(usize),
    #[error("{0:?} is not a mobility domain: expected 4 hex digits, e.g. a1b2")]
    MobilityDomain(String),
    #[error("the home has two {0} networks; it has at most one of each kind")]
    DuplicateNetwork(NetworkKind),
    #[error("two networks are both called {0:?}; give each its own name")]
    DuplicateSsid(String),
}

/// The networks a home can have. The kind decides the policy group of a device that joins
/// it (see [`NetworkKind::group`]), so a guest that copies a trusted laptop's MAC stays a
/// guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// The trusted network: phones, laptops.
    Home,
    /// Thermostats, plugs, cameras: 2.4 GHz only by default, never steered.
    Iot,
    /// Visitors: client isolation; the internet and what the policy grants guests.
    Guest,
}

impl NetworkKind {
    pub const ALL: [NetworkKind; 3] = [NetworkKind::Home, NetworkKind::Iot, NetworkKind::Guest];

    /// The policy group a device on this network belongs to (the built-in groups of
    /// [`crate::policy`]).
    pub fn group(self) -> &'static str {
        match self {
            NetworkKind::Home => "trusted",
            NetworkKind::Iot => "iot",
            NetworkKind::Guest => "guest",
        }
    }

    /// Whether the controller may ask a client of this network to move (iot devices are
    /// known to drop off when pushed, so never).
    pub fn steerable(self) -> bool {
        !matches!(self, NetworkKind::Iot)
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkKind::Home => "home",
            NetworkKind::Iot => "iot",
            NetworkKind::Guest => "guest",
        })
    }
}

impl std::str::FromStr for NetworkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "home" => Ok(NetworkKind::Home),
            "iot" => Ok(NetworkKind::Iot),
            "guest" => Ok(NetworkKind::Guest),
            other => Err(format!(
                "{:?} is not a network: expected home, iot or guest",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// A network name: 1 to 32 bytes (IEEE 802.11's limit), any bytes of valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ssid(String);

impl Ssid {
    pub fn new(s: impl Into<String>) -> Result<Self, WifiError> {
        let s = s.into();
        if s.is_empty() || s.len() > 32 {
            let n = s.len();
            return Err(WifiError::SsidLength(s.chars().take(40).collect(), n));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ssid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Ssid {
    type Error = WifiError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Ssid> for String {
    fn from(value: Ssid) -> String {
        value.0
    }
}

/// A WPA passphrase: 8 to 63 printable ASCII characters (what WPA2-PSK accepts, so the
/// transition mode's two halves share it). Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(s: impl Into<String>) -> Result<Self, WifiError> {
        let s = s.into();
        let n = s.chars().count();
        if !(8..=63).contains(&n) {
            return Err(WifiError::PassphraseLength(n));
        }
        if let Some(i) = s.chars().position(|c| !(' '..='~').contains(&c)) {
            return Err(WifiError::PassphraseCharacter(i + 1));
        }
        Ok(Self(s))
    }
    /// The secret itself: only for the file or call that hands it to hostapd.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl TryFrom<String> for Passphrase {
    type Error = WifiError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Passphrase> for String {
    fn from(value: Passphrase) -> String {
        value.0
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// WPA2-PSK and WPA3-SAE on one network (OpenWrt `encryption sae-mixed`): old devices
    /// keep working, new ones use SAE.
    #[default]
    Wpa2Wpa3,
    /// WPA3-SAE only (OpenWrt `encryption sae`).
    Wpa3,
}

/// Which bands a network is broadcast on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bands {
    Both,
    Only2g,
    Only5g,
}

impl Bands {
    pub fn includes(self, band: Band) -> bool {
        matches!(
            (self, band),
            (Bands::Both, _) | (Bands::Only2g, Band::G2) | (Bands::Only5g, Band::G5)
        )
    }
}

/// A radio band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Band {
    #[serde(rename = "2g")]
    G2,
    #[serde(rename = "5g")]
    G5,
}

impl Band {
    /// The band of a channel centre frequency, if it is one Trellis serves.
    pub fn of_mhz(freq: u32) -> Option<Band> {
        match freq {
            2400..=2500 => Some(Band::G2),
            4900..=5925 => Some(Band::G5),
            _ => None,
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Band::G2 => "2.4 GHz",
            Band::G5 => "5 GHz",
        })
    }
}

/// One of the home's networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiNetwork {
    pub kind: NetworkKind,
    pub ssid: Ssid,
    pub passphrase: Passphrase,
    #[serde(default)]
    pub security: Security,
    pub bands: Bands,
}

impl WifiNetwork {
    /// The bands a network of this kind is on unless a person chooses.
    pub fn default_bands(kind: NetworkKind) -> Bands {
        match kind {
            NetworkKind::Iot => Bands::Only2g,
            NetworkKind::Home | NetworkKind::Guest => Bands::Both,
        }
    }
}

/// An 802.11r mobility domain: two octets, written as 4 hex digits as hostapd takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MobilityDomain(pub [u8; 2]);

impl std::str::FromStr for MobilityDomain {
    type Err = WifiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WifiError::MobilityDomain(s.chars().take(40).collect());
        if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let v = u16::from_str_radix(s, 16).map_err(|_| bad())?;
        Ok(Self(v.to_be_bytes()))
    }
}

impl fmt::Display for MobilityDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}{:02x}", self.0[0], self.0[1])
    }
}

impl TryFrom<String> for MobilityDomain {
    type Error = WifiError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<MobilityDomain> for String {
    fn from(value: MobilityDomain) -> String {
        value.to_string()
    }
}

/// The home's fast-roaming settings: one mobility domain for every access point, and the key
/// the access points derive their R0KH/R1KH key-holder keys from (64 hex characters, made
/// by the controller once). Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roaming {
    pub mobility_domain: MobilityDomain,
    pub ft_key_hex: String,
}

impl fmt::Debug for Roaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roaming")
            .field("mobility_domain", &self.mobility_domain)
            .field("ft_key_hex", &"<redacted>")
            .finish()
    }
}

/// What a person set for the home's wifi: part of the config snapshot. An empty list means
/// Trellis manages no access points (the routers' own wireless config is left alone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeWifi {
    #[serde(default)]
    pub networks: Vec<WifiNetwork>,
    /// `None` until the first network is set.
    #[serde(default)]
    pub roaming: Option<Roaming>,
}

impl HomeWifi {
    /// The one check of a whole set of networks: at most one of each kind, distinct names.
    pub fn validate(&self) -> Result<(), WifiError> {
        for (i, n) in self.networks.iter().enumerate() {
            for m in &self.networks[..i] {
                if m.kind == n.kind {
                    return Err(WifiError::DuplicateNetwork(n.kind));
                }
                if m.ssid == n.ssid {
                    return Err(WifiError::DuplicateSsid(n.ssid.to_string()));
                }
            }
        }
        Ok(())
    }

    pub fn network(&self, kind: NetworkKind) -> Option<&WifiNetwork> {
        self.networks.iter().find(|n| n.kind == kind)
    }
}

/// Most access points one router reports (a router has at most a few radios × 3 networks).
pub const MAX_ACCESS_POINTS: usize = 12;
/// Most clients one router reports hearing (associated ones come as devices).
pub const MAX_HEARD_CLIENTS: usize = 128;
/// Most steering outcomes one telemetry report carries.
pub const MAX_STEER_OUTCOMES: usize = 32;

/// One access point (BSS) a router runs for one of the home's networks: telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPointReport {
    pub network: NetworkKind,
    /// The interface hostapd serves it on, e.g. `phy1-ap0`.
    pub interface: String,
    pub bssid: MacAddr,
    pub band: Band,
    /// Primary channel and its centre frequency (MHz).
    pub channel: u8,
    pub freq_mhz: u32,
    /// The 802.11k neighbour report element of this BSS as hostapd gives it
    /// (`rrm_nr_get_own`: hex), for the other access points' lists.
    #[serde(default)]
    pub neighbour_report: Option<String>,
    /// The SSID hostapd broadcasts on it (its `STATUS`, or ubus `rrm_nr_get_own`).
    #[serde(default)]
    pub ssid: Option<String>,
    /// [`settings_fingerprint`] of the settings the agent gave this access point.
    #[serde(default)]
    pub settings: Option<String>,
}

/// Hex characters of a [`settings_fingerprint`].
pub const FINGERPRINT_HEX: usize = 16;

/// A fingerprint of every setting an access point of `network` runs with (kind, SSID,
/// passphrase, security, bands, mobility domain): HMAC-SHA256 under the home's FT key, the
/// first 8 bytes in hex. The agent reports it for each access point and the controller
/// computes it over what it set, so `trellis check` sees a router serving other settings
/// (an older passphrase, other roaming keys) without any secret leaving the router. Keyed,
/// so the fingerprint is no way to test guesses of the passphrase.
#[cfg(feature = "tls")]
pub fn settings_fingerprint(network: &WifiNetwork, roaming: Option<&Roaming>) -> String {
    use ring::hmac;
    let key = hmac::Key::new(
        hmac::HMAC_SHA256,
        roaming.map_or(&[][..], |r| r.ft_key_hex.as_bytes()),
    );
    // Wire names (serde's), one per line: stable across versions of either side.
    let message = serde_json::json!([
        network.kind,
        network.ssid.as_str(),
        network.passphrase.expose(),
        network.security,
        network.bands,
        roaming.map(|r| r.mobility_domain),
    ])
    .to_string();
    hmac::sign(&key, message.as_bytes())
        .as_ref()
        .iter()
        .take(FINGERPRINT_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a router's access points match the home's networks: the controller's one rule
/// (`controller/src/health.rs`), carried in the router's state for `trellis check`,
/// `trellis nodes` and the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum WifiHealth {
    /// It serves each of the home's networks its radios' bands carry, as set.
    Consistent { networks: Vec<NetworkKind> },
    /// It runs no access point of the home's, though it may (its agent runs none, or they
    /// failed to start).
    NoAccessPoints,
    /// It has no radio for access points: nothing to broadcast, and nothing wrong (the
    /// home's other routers carry its wifi; this one serves by cable).
    NoRadios,
    /// It differs from the home's networks; each difference named.
    Differs { drifts: Vec<WifiDrift> },
}

/// One way a router's access points differ from the home's networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "drift")]
pub enum WifiDrift {
    /// A network the router's radios carry (by band) is not broadcast there.
    Missing { network: NetworkKind, band: Band },
    /// It broadcasts another name for the network.
    OtherSsid { network: NetworkKind, ssid: String },
    /// Same name, other settings (passphrase, security, bands or roaming keys): it runs
    /// settings the home no longer has.
    OtherSettings { network: NetworkKind },
    /// It broadcasts a network the home no longer has.
    Removed { network: NetworkKind },
}

/// A client a router hears (a probe request or a beacon report), whether or not it is
/// associated there: telemetry, for steering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeardClient {
    pub mac: MacAddr,
    pub band: Band,
    pub signal_dbm: i32,
    /// Milliseconds since the router last heard it.
    pub age_ms: u32,
}

/// Another access point of the home, for an access point's 802.11k neighbour list
/// (hostapd `rrm_nr_set`): sent with the telemetry answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApNeighbour {
    pub node: NodeName,
    pub network: NetworkKind,
    pub bssid: MacAddr,
    pub ssid: Ssid,
    /// The neighbour report element, hex, as its own router reported it.
    pub neighbour_report: String,
}

/// The controller asks a router to move one of its clients: an 802.11v BSS transition
/// management request naming the target, with disassociation imminent and a timer (never a
/// forced deauthentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteerRequest {
    /// Names this request in the outcome.
    pub id: u64,
    pub station: MacAddr,
    /// The access point's interface the client is on, on the router asked.
    pub interface: String,
    pub target_bssid: MacAddr,
    pub target_node: NodeName,
    /// The target's neighbour report element (hex), for the request's candidate list.
    pub target_neighbour_report: String,
    /// Beacon intervals until the AP would disassociate (hostapd `disassoc_timer`).
    pub disassoc_timer_tbtt: u16,
}

/// How a client answered a [`SteerRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerResult {
    /// BSS transition response status 0 (accept), or it reassociated to the target.
    Accepted,
    /// A BSS transition response with a reject status.
    Declined,
    /// No response and no roam before the timer ran out.
    Ignored,
    /// The router could not send the request (e.g. the client had already left).
    Failed,
}

/// A steering outcome, reported by the router that sent the request: telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteerOutcome {
    pub id: u64,
    pub station: MacAddr,
    pub result: SteerResult,
    /// The BTM response status code when there was one (IEEE 802.11 Table 9-428).
    #[serde(default)]
    pub status_code: Option<u8>,
}

#[cfg(test)]
#[path = "home_wifi_tests.rs"]
mod tests;
