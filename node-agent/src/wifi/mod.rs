//! The wifi half of the agent: it creates the 802.11s mesh interface, has it joined (SAE
//! through wpa_supplicant, or an open mesh for tests only), chooses the node's HWMP role, watches
//! every peer link and mesh path, damps flapping links and reports the mesh as JSON lines.
//!
//! - [`raw_nla`]: the nl80211 attributes `wl-nl80211` does not type (mesh config, mesh paths).
//! - [`nl80211`]: requests and events over nl80211.
//! - [`sae`]: wpa_supplicant config, process supervision and control socket.
//! - [`sae_failures`]: SAE failures per peer over time: retrying, or surely a wrong password.
//! - [`role`]: portal or relay, wired backhaul, the mesh parameters that follow (pure logic).
//! - [`channel`]: a coordinated channel move: announce or rejoin, and when (pure logic).
//! - [`health`]: per-link health, flap damping, advice (pure logic).
//! - [`link`]: rtnetlink for the mesh interface (up, address, bridge).
//! - [`settings`]: the command's flags and the controller-credentials hook.
//! - [`survey`]: what the radios hear on each channel and may use there (for the channel choice).
//! - [`radar`]: radar sightings handed from the supervisor to the telemetry.
//! - [`report`]: JSON lines out.
//! - [`mesh`]: the `trellis-agent mesh` command that ties them together.
//!
//! It does not own bridging policy of the LAN or the controller protocol: the caller hands in the
//! mesh credentials (from the controller's snapshot at pairing, or a file for the lab).

pub mod channel;
pub mod health;
pub mod link;
pub mod mesh;
pub mod nl80211;
pub mod radar;
pub mod raw_nla;
pub mod report;
pub mod role;
pub mod sae;
pub mod sae_failures;
pub mod settings;
pub mod survey;

pub use mesh::MeshArgs;

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address, printed `02:00:00:00:01:00` as `iw` does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex bytes like 02:00:00:00:01:00)")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;

    /// The one MAC rule of the project ([`trellis_proto::policy::MacAddr`]), blanks around
    /// it allowed as `iw` and wpa_supplicant output has them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<trellis_proto::policy::MacAddr>()
            .map(|m| Mac(m.0))
            .map_err(|_| BadMac(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips() {
        let m: Mac = "02:00:00:00:0A:ff".parse().expect("valid");
        assert_eq!(m.to_string(), "02:00:00:00:0a:ff");
        assert_eq!(
            serde_json::to_string(&m).expect("ser"),
            "\"02:00:00:00:0a:ff\""
        );
    }

    #[test]
    fn bad_macs_are_rejected() {
        for s in [
            "",
            "02:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
            "02:00:00:00:00:+1",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s}");
        }
    }
}
