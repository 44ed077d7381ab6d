//! Bodies of the agent API (HTTPS, mutual TLS) and the admin API (root-only unix socket).
//!
//! Agent API, under `/v1/agent/`:
//! - `GET  config?after=N` — long poll: answers at once with a snapshot newer than N, else
//!   waits up to ~60 s and answers `204 No Content`.
//! - `POST config/ack` — [`ConfigAck`]: the version the agent applied.
//! - `POST renew` — [`RenewRequest`] → [`RenewResponse`]: a new certificate for the caller's
//!   own identity (the SAN comes from the enrollment record).
//! - `POST telemetry` — [`Telemetry`], kept in RAM by the controller.
//!
//! Pairing, under `/v1/pair/` (TLS, no client certificate yet): see [`crate::pairing`].
//!
//! Admin API (unix socket, file permissions are the authentication), under `/v1/admin/`:
//! `status`, `nodes`, `nodes/{name}` (DELETE revokes), `pairing-codes` (POST), `ca/backup`.

use serde::{Deserialize, Serialize};

use crate::identity::{HomeId, NodeName, SpiffeId};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigAck {
    pub version: u64,
    /// `None` when applied; otherwise what went wrong on the agent.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    pub cert_pem: String,
    /// Unix seconds.
    pub not_after: u64,
}

/// What an agent reports about itself; bounded lists, kept in RAM only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Telemetry {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub agent_version: String,
    /// Seconds until the agent's certificate expires.
    #[serde(default)]
    pub cert_expires_in_s: i64,
    /// The agent's clock (unix seconds) when it sent this, to spot clock skew.
    #[serde(default)]
    pub clock_unix: u64,
    #[serde(default)]
    pub applied_version: u64,
    /// Services this node found on its segment (mDNS, DHCP) or that host agents registered.
    #[serde(default)]
    pub services: Vec<SeenService>,
    /// This node's mesh interface MAC and its peer links, from the mesh supervisor.
    #[serde(default)]
    pub mesh: Option<MeshReport>,
}

/// What `trellis-agent mesh` last saw of this node's 802.11s links (bounded by the radio's
/// peer count; the controller keeps it in RAM for the topology).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshReport {
    /// The mesh interface's MAC: how other nodes' reports name this node.
    pub mac: String,
    pub links: Vec<MeshLink>,
}

/// One peer link as the mesh supervisor judges it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshLink {
    pub peer: String,
    #[serde(default)]
    pub signal_dbm: Option<i32>,
    #[serde(default)]
    pub expected_throughput_kbps: Option<u32>,
    #[serde(default)]
    pub airtime_metric: Option<u32>,
    /// "good", "fair", "weak", "too_close", "unstable", "blocked".
    pub verdict: String,
    #[serde(default)]
    pub advice: Vec<String>,
}

/// One link of the home's mesh topology (`GET /v1/admin/topology`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyLink {
    pub from: NodeName,
    /// The peer's node name, or its MAC when no router of the home reports that MAC.
    pub to: String,
    pub signal_dbm: Option<i32>,
    pub expected_throughput_kbps: Option<u32>,
    pub airtime_metric: Option<u32>,
    pub verdict: String,
    pub advice: Vec<String>,
}

/// A service an agent found behind its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenService {
    /// DNS label, e.g. `nas`.
    pub name: String,
    pub addr: std::net::IpAddr,
    pub ports: Vec<u16>,
    pub learned_via: crate::catalog::LearnedVia,
}

/// `POST /v1/admin/services`: a service a person adds by hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewService {
    pub name: String,
    /// The router the device sits behind.
    pub node: NodeName,
    pub addr: std::net::IpAddr,
    pub ports: Vec<u16>,
}

/// `GET /v1/admin/why?source=…&target=…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhyAnswer {
    pub allowed: bool,
    pub rule: String,
    /// The plain-language explanation.
    pub explanation: String,
}

/// `GET /v1/admin/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub home_id: HomeId,
    pub config_version: u64,
    pub nodes: usize,
    pub ca_not_after: u64,
    pub agent_api: String,
    pub controller_version: String,
}

/// One row of `GET /v1/admin/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: NodeName,
    pub identity: SpiffeId,
    pub enrolled_at: u64,
    /// Unix seconds the current certificate expires, if one was issued.
    pub cert_not_after: Option<u64>,
    pub revoked: bool,
    /// Config version this node last acknowledged (0 = none yet).
    pub acked_version: u64,
    /// Seconds since the node last talked to the controller; `None` if never since start.
    pub last_seen_s: Option<u64>,
    /// The node's clock minus the controller's at its last report (seconds); `None` before.
    #[serde(default)]
    pub clock_skew_s: Option<i64>,
    /// The name a person gave the router on the web page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `POST /v1/admin/pairing-codes` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewPairingCode {
    /// `XXXX-XXXX-XX`.
    pub code: String,
    pub expires_in_s: u64,
}

/// `GET /v1/admin/ca/backup`: the CA for a backup; handle as a secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct CaBackup {
    pub home_id: HomeId,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
}

impl std::fmt::Debug for CaBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBackup")
            .field("home_id", &self.home_id)
            .field("ca_key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemovedNode {
    pub identity: SpiffeId,
    pub config_version: u64,
}
