//! The configuration snapshot: everything an agent needs, versioned as one unit.
//!
//! The controller bumps the version on every change an agent must see (a node enrolled or
//! removed, mesh settings, later the catalog and policy). Agents long-poll for a newer version,
//! apply it, acknowledge it, persist it, and keep working on it while the controller is gone
//! (fail static), like Consul's blocking queries.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::home_wifi::HomeWifi;
use crate::identity::{CertSerial, HomeId, NodeName, SpiffeId, Workload};
use crate::policy::{Device, Policy};

/// Mesh credentials handed to an enrolled node: the 802.11s mesh ID and SAE password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshCredentials {
    pub mesh_id: String,
    pub sae_password: String,
}

impl std::fmt::Debug for MeshCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCredentials")
            .field("mesh_id", &self.mesh_id)
            .field("sae_password", &"<redacted>")
            .finish()
    }
}

/// A router of the home as other agents see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: NodeName,
    pub identity: SpiffeId,
    /// Addresses the node's agent last reported (tunnel endpoints).
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl PeerNode {
    /// The node's announced addresses; a bare IP takes `default_port`, and an entry that is
    /// neither is skipped.
    pub fn socket_addrs(
        &self,
        default_port: u16,
    ) -> impl Iterator<Item = std::net::SocketAddr> + '_ {
        self.addresses.iter().filter_map(move |a| {
            a.parse::<std::net::SocketAddr>().ok().or_else(|| {
                a.parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| std::net::SocketAddr::new(ip, default_port))
            })
        })
    }
}

/// An identity every agent must refuse from this version on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub identity: SpiffeId,
    /// Unix seconds.
    pub revoked_at: u64,
}

/// The whole configuration an agent applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    pub version: u64,
    pub home_id: HomeId,
    /// The trust bundle: the home root CA, PEM.
    pub ca_pem: String,
    pub nodes: Vec<PeerNode>,
    pub revoked: Vec<Revocation>,
    /// Serials (hex) of revoked certificates not yet expired. A router removed and paired
    /// again under its old name gets a valid identity back, but its old certificates stay
    /// refused.
    #[serde(default)]
    pub revoked_serials: Vec<CertSerial>,
    pub mesh: MeshCredentials,
    /// The home's services, their mesh names and virtual IPs.
    #[serde(default)]
    pub catalog: Catalog,
    /// Who may talk to whom.
    #[serde(default)]
    pub policy: Policy,
    /// Devices people named and grouped (agents add DHCP addresses they see).
    #[serde(default)]
    pub devices: Vec<Device>,
    /// The home's wifi networks every router broadcasts (empty: none managed).
    #[serde(default)]
    pub wifi: HomeWifi,
    /// The channel every router's mesh radio uses, and when the last move happens (`None`:
    /// each router keeps the channel it was set up with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_channel: Option<crate::channel::MeshChannel>,
}

impl ConfigSnapshot {
    /// Whether this identity has been revoked in this snapshot.
    pub fn is_revoked(&self, id: &SpiffeId) -> bool {
        self.revoked.iter().any(|r| &r.identity == id)
    }

    /// Whether a peer presenting this identity and certificate serial is still one of this
    /// home: see [`PeerTrust::admit`], the one rule.
    pub fn admit(&self, id: &SpiffeId, serial: &CertSerial) -> Result<(), PeerRefusal> {
        PeerTrust::from_snapshot(self).admit(id, serial)
    }
}

/// Why a peer is refused, said so a person can act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("{id} belongs to another home (this home is {home})")]
    ForeignHome { id: SpiffeId, home: HomeId },
    #[error("{id} was removed from this home (config v{version}); pair it again to bring it back")]
    Revoked { id: SpiffeId, version: u64 },
    #[error("{id} presents a revoked certificate (serial {serial}, config v{version})")]
    RevokedSerial {
        id: SpiffeId,
        serial: CertSerial,
        version: u64,
    },
    #[error("{id} is not a router of this home in config v{version}")]
    NotEnrolled { id: SpiffeId, version: u64 },
}

/// Who this home accepts as a peer, from one snapshot: built once per snapshot by the data
/// plane (the agents' TLS verifiers, the tunnel and the speed-test sink), per request by the
/// controller. The controller adds its own pinning of issued serials on top.
#[derive(Debug, Clone, Default)]
pub struct PeerTrust {
    pub home: Option<HomeId>,
    pub version: u64,
    pub nodes: std::collections::HashSet<SpiffeId>,
    pub revoked: std::collections::HashSet<SpiffeId>,
    pub revoked_serials: std::collections::HashSet<CertSerial>,
}

impl PeerTrust {
    pub fn from_snapshot(s: &ConfigSnapshot) -> Self {
        Self {
            home: Some(s.home_id.clone()),
            version: s.version,
            nodes: s.nodes.iter().map(|n| n.identity.clone()).collect(),
            revoked: s.revoked.iter().map(|r| r.identity.clone()).collect(),
            revoked_serials: s.revoked_serials.iter().cloned().collect(),
        }
    }

    /// The one rule for "is this peer still of this home": its identity is of this home,
    /// neither it nor this certificate is revoked, and a router identity is an enrolled
    /// router (a service identity — a host agent speaking for itself — needs no enrollment).
    pub fn admit(&self, id: &SpiffeId, serial: &CertSerial) -> Result<(), PeerRefusal> {
        let version = self.version;
        match &self.home {
            Some(home) if &id.home == home => {}
            home => {
                return Err(PeerRefusal::ForeignHome {
                    id: id.clone(),
                    home: home.clone().unwrap_or_else(|| id.home.clone()),
                })
            }
        }
        if self.revoked.contains(id) {
            return Err(PeerRefusal::Revoked {
                id: id.clone(),
                version,
            });
        }
        if self.revoked_serials.contains(serial) {
            return Err(PeerRefusal::RevokedSerial {
                id: id.clone(),
                serial: serial.clone(),
                version,
            });
        }
        if id.kind == Workload::Node && !self.nodes.contains(id) {
            return Err(PeerRefusal::NotEnrolled {
                id: id.clone(),
                version,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_admits_a_peer_of_this_home() {
        let home = HomeId::new("h").unwrap();
        let node = |n: &str| SpiffeId::node(&home, &NodeName::new(n).unwrap());
        let trust = PeerTrust {
            home: Some(home.clone()),
            version: 7,
            nodes: [node("attic"), node("gone")].into_iter().collect(),
            revoked: [node("gone")].into_iter().collect(),
            revoked_serials: [CertSerial::from_hex("0bad")].into_iter().collect(),
        };
        let ok = CertSerial::from_hex("01");
        assert_eq!(trust.admit(&node("attic"), &ok), Ok(()));
        // A service identity (a host agent) needs no enrollment.
        let svc = SpiffeId::service(&home, "nas").unwrap();
        assert_eq!(trust.admit(&svc, &ok), Ok(()));
        let refused = |id: &SpiffeId, serial: &str| {
            trust
                .admit(id, &CertSerial::from_hex(serial))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&node("gone"), "01").contains("was removed from this home (config v7)"));
        // The serial in another spelling is the same serial.
        assert!(refused(&node("attic"), "0B:AD").contains("revoked certificate"));
        assert!(refused(&node("shed"), "01").contains("not a router of this home"));
        let other = HomeId::new("other").unwrap();
        let foreign = SpiffeId::node(&other, &NodeName::new("attic").unwrap());
        assert!(refused(&foreign, "01").contains("belongs to another home"));
    }

    #[test]
    fn mesh_password_never_appears_in_debug_output() {
        let creds = MeshCredentials {
            mesh_id: "trellis-abc".into(),
            sae_password: "hunter2-but-longer".into(),
        };
        let shown = format!("{creds:?}");
        assert!(shown.contains("trellis-abc"));
        assert!(!shown.contains("hunter2"));
    }
}
