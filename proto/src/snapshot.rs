//! The configuration snapshot: everything an agent needs, versioned as one unit.
//!
//! The controller bumps the version on every change an agent must see (a node enrolled or
//! removed, mesh settings, later the catalog and policy). Agents long-poll for a newer version,
//! apply it, acknowledge it, persist it, and keep working on it while the controller is gone
//! (fail static), like Consul's blocking queries.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::home_wifi::HomeWifi;
use crate::identity::{HomeId, NodeName, SpiffeId};
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
    pub revoked_serials: Vec<String>,
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

    /// Whether a peer presenting this identity and certificate serial must be refused.
    pub fn refuses(&self, id: &SpiffeId, serial: &str) -> bool {
        id.home != self.home_id
            || self.is_revoked(id)
            || self.revoked_serials.iter().any(|s| s == serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
