//! The home's access points on this router (the networks phones and laptops join; the
//! 802.11s backhaul is [`trellis_wifi`], which this module does not touch).
//!
//! It owns turning the home's wifi settings ([`HomeWifi`], from the config snapshot) into
//! access points on this router's radios, and talking to them afterwards:
//! - [`plan`]: which network goes on which radio under which interface name, and the one
//!   check that refuses what a radio cannot host (pure logic).
//! - [`openwrt`]: the backend for OpenWrt: the agent's own `wifi-iface` sections in
//!   `/etc/config/wireless` through `uci batch`, `wifi reload`, and ubus `hostapd.<ifname>`.
//! - [`hostapd`]: the backend without netifd (the VM lab, a plain Linux box): a generated
//!   `hostapd.conf` per radio, hostapd run and supervised.
//! - [`ctrl`]: hostapd's control socket (`/var/run/hostapd/IFACE`) and its reply parsers.
//! - [`joined`]: which network each station joined, for the proxy's policy decisions.
//! - [`runner`]: what the running agent holds: apply on change, telemetry, the
//!   controller's neighbour lists and steering requests.
//!
//! Both backends answer the same calls ([`Backend`]): apply, stations, access points, BSS
//! transition requests, neighbour lists. The agent holds one and never asks which it is.

pub mod ctrl;
pub mod hostapd;
pub mod joined;
pub mod openwrt;
pub mod plan;
pub mod runner;

use std::path::PathBuf;

use trellis_proto::home_wifi::{
    AccessPointReport, ApNeighbour, Band, HomeWifi, NetworkKind, SteerRequest,
};
use trellis_proto::policy::MacAddr;

pub use plan::{plan, PlannedAp, Radio, Radios};

/// Why the access points could not be set up or asked something: said so a person (or the
/// lead reading an ack) can act on it.
#[derive(Debug, thiserror::Error)]
pub enum ApError {
    #[error(
        "radio {radio} cannot host another access point: it allows {max} interfaces and would \
         need {needed} ({networks}); turn the {kind} network off for this radio's band or free \
         an interface on it"
    )]
    RadioFull {
        radio: String,
        max: u8,
        needed: usize,
        networks: String,
        kind: NetworkKind,
    },
    #[error(
        "the network name {0:?} holds a control character (e.g. a line break), which the \
         access point's configuration cannot carry; choose a name without one"
    )]
    SsidControlCharacter(String),
    #[error(
        "the home's fast-roaming key is not 64 hex characters; the controller makes it, so \
         this is a controller bug: re-save the wifi settings on the controller"
    )]
    FtKey,
    #[error("the home has wifi networks but no roaming settings (mobility domain, FT key) yet")]
    NoRoaming,
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },
    #[error("could not run {tool}: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hostapd: {0}")]
    Ctrl(#[from] trellis_wifi::ctrl::CtrlError),
    #[error("no access point {0:?} on this router")]
    UnknownInterface(String),
    #[error("the neighbour report {0:?} is not a valid 802.11k element (hex, at least 13 bytes)")]
    NeighbourReport(String),
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The access points already were as asked: nothing was written or reloaded.
    Unchanged,
    /// Written and reloaded: the access points now planned.
    Applied(Vec<PlannedAp>),
}

/// A client associated with one of the agent's access points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    pub mac: MacAddr,
    /// The access point's interface it is on (decides its network, hence its group).
    pub interface: String,
    pub network: NetworkKind,
    pub band: Band,
    pub signal_dbm: Option<i32>,
    pub inactive_ms: Option<u32>,
}

impl Station {
    /// As the devices report carries it.
    pub fn association(&self) -> trellis_proto::api::WifiAssociation {
        trellis_proto::api::WifiAssociation {
            interface: self.interface.clone(),
            signal_dbm: self.signal_dbm,
            inactive_ms: self.inactive_ms,
            network: Some(self.network),
            band: Some(self.band),
            // Capabilities are not read yet: unknown rather than guessed.
            dual_band: None,
        }
    }
}

/// The one backend interface. An enum rather than a trait object: two implementations,
/// async calls, and the agent never needs a third at run time.
pub enum Backend {
    OpenWrt(openwrt::OpenWrt),
    Hostapd(hostapd::Hostapd),
}

impl Backend {
    /// Makes the access points what `wifi` asks for on `radios`. Checks everything first:
    /// on an error nothing was changed.
    pub async fn apply(&mut self, wifi: &HomeWifi, radios: &Radios) -> Result<Change, ApError> {
        match self {
            Backend::OpenWrt(b) => b.apply(wifi, radios).await,
            Backend::Hostapd(b) => b.apply(wifi, radios).await,
        }
    }

    pub async fn stations(&mut self) -> Result<Vec<Station>, ApError> {
        match self {
            Backend::OpenWrt(b) => b.stations().await,
            Backend::Hostapd(b) => b.stations().await,
        }
    }

    /// What the access points are, as telemetry (at most `MAX_ACCESS_POINTS`).
    pub async fn access_points(&mut self) -> Result<Vec<AccessPointReport>, ApError> {
        match self {
            Backend::OpenWrt(b) => b.access_points().await,
            Backend::Hostapd(b) => b.access_points().await,
        }
    }

    pub async fn send_bss_transition(&mut self, req: &SteerRequest) -> Result<(), ApError> {
        match self {
            Backend::OpenWrt(b) => b.send_bss_transition(req).await,
            Backend::Hostapd(b) => b.send_bss_transition(req).await,
        }
    }

    /// Gives every access point of a network the other access points of that network as
    /// its 802.11k neighbour list.
    pub async fn set_neighbours(&mut self, neighbours: &[ApNeighbour]) -> Result<(), ApError> {
        match self {
            Backend::OpenWrt(b) => b.set_neighbours(neighbours).await,
            Backend::Hostapd(b) => b.set_neighbours(neighbours).await,
        }
    }
}

/// The neighbours of one network, bounded (an AP's list is short; 802.11k lists are read by
/// clients within one frame).
pub(crate) const MAX_NEIGHBOURS: usize = 16;

pub(crate) fn neighbours_of(neighbours: &[ApNeighbour], network: NetworkKind) -> Vec<&ApNeighbour> {
    neighbours
        .iter()
        .filter(|n| n.network == network)
        .take(MAX_NEIGHBOURS)
        .collect()
}

/// Hex of bytes, lower case (SSIDs in hostapd's config and control commands).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fields of an 802.11k neighbour report element body (as `rrm_nr_get_own` and
/// hostapd's neighbour database give it, hex): BSSID, BSSID information, operating class,
/// channel, PHY type (IEEE 802.11-2020 9.4.2.36), and any optional subelements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourReport {
    pub bssid: MacAddr,
    pub bssid_info: u32,
    pub op_class: u8,
    pub channel: u8,
    pub phy_type: u8,
    pub subelements: Vec<u8>,
}

/// Longest neighbour report element accepted (an element is at most 255 bytes).
const MAX_NR_BYTES: usize = 255;

impl NeighbourReport {
    pub fn parse_hex(s: &str) -> Result<Self, ApError> {
        let bad = || ApError::NeighbourReport(s.chars().take(40).collect());
        let s = s.trim();
        if !s.len().is_multiple_of(2) || s.len() > 2 * MAX_NR_BYTES || !s.is_ascii() {
            return Err(bad());
        }
        let mut bytes = Vec::with_capacity(s.len() / 2);
        for i in (0..s.len()).step_by(2) {
            bytes.push(u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad())?);
        }
        if bytes.len() < 13 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&bytes[..6]);
        Ok(Self {
            bssid: MacAddr(mac),
            bssid_info: u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
            op_class: bytes[10],
            channel: bytes[11],
            phy_type: bytes[12],
            subelements: bytes[13..].to_vec(),
        })
    }

    /// As hostapd's `BSS_TM_REQ ... neighbor=` takes it:
    /// `<BSSID>,<BSSID Info>,<Operating Class>,<Channel>,<PHY Type>[,<subelements hex>]`
    /// (hostapd/ctrl_iface.c, hostapd_ctrl_iface_bss_tm_req → ieee802_11_parse_candidate_list).
    pub fn to_bss_tm_candidate(&self) -> String {
        let mut s = format!(
            "{},0x{:08x},{},{},{}",
            self.bssid, self.bssid_info, self.op_class, self.channel, self.phy_type
        );
        if !self.subelements.is_empty() {
            s.push(',');
            s.push_str(&hex(&self.subelements));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbour_report_reads_as_hostapd_writes_it() {
        // The `rrm_nr_get_own` value of an OpenWrt AP (bssid aa:5a:f1:12:00:63, channel 157).
        let nr = NeighbourReport::parse_hex("aa5af1120063ef190000809d090603029b00").unwrap();
        assert_eq!(nr.bssid.to_string(), "aa:5a:f1:12:00:63");
        assert_eq!(nr.bssid_info, 0x19ef);
        assert_eq!(nr.op_class, 0x80);
        assert_eq!(nr.channel, 0x9d);
        assert_eq!(nr.phy_type, 9);
        assert_eq!(
            nr.to_bss_tm_candidate(),
            "aa:5a:f1:12:00:63,0x000019ef,128,157,9,0603029b00"
        );
        assert!(NeighbourReport::parse_hex("aa5a").is_err());
        assert!(NeighbourReport::parse_hex("zz5af1120063ef190000809d09").is_err());
        assert!(NeighbourReport::parse_hex("é5af1120063ef190000809d09").is_err());
    }
}
