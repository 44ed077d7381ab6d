//! Bodies of the agent API (HTTPS, mutual TLS) and the admin API (root-only unix socket).
//!
//! Agent API, under `/v1/agent/`:
//! - `GET  config?after=N` — long poll: answers at once with a snapshot newer than N, else
//!   waits up to ~60 s and answers `204 No Content`.
//! - `POST config/ack` — [`ConfigAck`]: the version the agent applied.
//! - `POST renew` — [`RenewRequest`] → [`RenewResponse`]: a new certificate for the caller's
//!   own identity (the SAN comes from the enrollment record).
//! - `POST telemetry` — [`Telemetry`], kept in RAM by the controller; answered with a
//!   [`TelemetryAnswer`] (mesh hops to the other routers).
//! - `GET  jobs?wait=S` — long poll for work the controller hands this node: a
//!   [`SpeedTestJob`], or `204 No Content` after the wait.
//! - `POST jobs/result` — [`SpeedTestOutcome`]: how the job went.
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
    /// Where this node's speed-test sink listens (`ip:port`), if it runs one.
    #[serde(default)]
    pub speedtest_addr: Option<String>,
    /// Devices on this router's segment, from its DHCP leases (bounded), for the map.
    #[serde(default)]
    pub devices: Vec<SeenDevice>,
    /// What the node proxy carried since the agent started, per destination service
    /// (cumulative counters; the controller turns them into per-minute figures).
    #[serde(default)]
    pub traffic: Vec<ServiceTraffic>,
    /// The proxy's spans since the last report (at most 32, the newest), for
    /// `trellis traces` and the page's trace view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<crate::trace::Span>,
    /// Per (source, destination service), what the node proxy carried and refused since the
    /// agent started (cumulative; at most [`MAX_REPORTED_EDGES`]), for the dependency map.
    /// Optional: an older agent sends none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeTraffic>,
    /// The access points this router runs for the home's networks (at most
    /// [`crate::home_wifi::MAX_ACCESS_POINTS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_points: Vec<crate::home_wifi::AccessPointReport>,
    /// How many radios this router's access points may use: `Some(0)` on a router without
    /// any (it broadcasts no wifi, and that is not a fault); `None` when its agent runs no
    /// access points, or is older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radios: Option<u8>,
    /// Clients this router hears, associated here or not (at most
    /// [`crate::home_wifi::MAX_HEARD_CLIENTS`]), for steering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heard_clients: Vec<crate::home_wifi::HeardClient>,
    /// How the clients answered the steering requests this router sent since its last report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer_outcomes: Vec<crate::home_wifi::SteerOutcome>,
    /// How often this agent reports (seconds): the controller keeps the mesh links of this
    /// report on the map for three intervals, not until the node timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_every_s: Option<u32>,
    /// What this router's radios hear on each channel and may use there (at most
    /// [`crate::channel::MAX_SURVEY_RADIOS`]), for the home's mesh channel choice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub survey: Vec<crate::channel::RadioSurvey>,
    /// Radars this router's mesh radio detected lately (at most
    /// [`crate::channel::MAX_RADAR_SEEN`], the newest last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub radar: Vec<crate::channel::RadarSeen>,
}

/// The controller's answer to a telemetry report: what the home's topology says about this
/// router, for the proxy's locality (RAM only on both sides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryAnswer {
    /// Mesh hops from the reporting router to each router its peer links reach (peer-link
    /// graph of the routers' latest reports; links marked blocked are left out).
    #[serde(default)]
    pub hops: std::collections::BTreeMap<NodeName, u32>,
    /// The other access points of the home, for this router's 802.11k neighbour lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<crate::home_wifi::ApNeighbour>,
    /// Clients the controller asks this router to move (802.11v BSS transition requests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer: Vec<crate::home_wifi::SteerRequest>,
}

/// One service's cumulative counters at one node's proxy (connections it opened towards the
/// service, bytes each way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    pub service: String,
    pub connections: u64,
    /// Client → service.
    pub bytes_sent: u64,
    /// Service → client.
    pub bytes_received: u64,
}

/// Most (source, service) edges one agent reports; the proxy folds the rest into source
/// `other`.
pub const MAX_REPORTED_EDGES: usize = 256;

/// Upper bounds (milliseconds) of an edge's connect-latency buckets; a last bucket past them
/// is +Inf.
pub const EDGE_LATENCY_BOUNDS_MS: [u32; 11] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/// One (source, destination service) edge's cumulative counters at the source node's proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeTraffic {
    /// Who connected, as the proxy's policy decision names it: `device:<mac>`,
    /// `device:<ip>`, a workload's SPIFFE ID, or `other` past the cap.
    pub source: String,
    pub service: String,
    /// Connections the policy allowed.
    #[serde(default)]
    pub connections: u64,
    /// Client → service.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Service → client.
    #[serde(default)]
    pub bytes_received: u64,
    /// Connections refused by policy (at this node or at the destination).
    #[serde(default)]
    pub denials: u64,
    /// Connections per connect-latency bucket ([`EDGE_LATENCY_BOUNDS_MS`], then +Inf): not
    /// cumulative across buckets. Empty when the proxy did not time this edge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_latency: Vec<u64>,
}

/// `POST /v1/admin/speedtests`: measure TCP throughput from one router to another, over the
/// path between them (one mesh hop when they are neighbours), like `batctl tp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewSpeedTest {
    /// The router that sends.
    pub from: NodeName,
    /// The router that receives.
    pub to: NodeName,
    /// How long to send (1–30 s; default 5).
    #[serde(default)]
    pub seconds: Option<u32>,
}

/// Where a speed test stands: `queued` (waiting for the sender to pick it up), `running`,
/// `done` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeedTestState {
    Queued,
    Running,
    Done,
    Failed,
}

/// A speed test as the controller keeps it (RAM, the most recent few).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeedTest {
    pub id: u64,
    pub from: NodeName,
    pub to: NodeName,
    pub seconds: u32,
    pub state: SpeedTestState,
    /// Unix seconds the test was asked for, and when the sender started sending.
    pub requested_at: u64,
    #[serde(default)]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// Throughput the receiver counted, bits per second.
    #[serde(default)]
    pub bits_per_second: Option<u64>,
    /// Bytes the receiver counted.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Why it failed, with what to do.
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET /v1/agent/jobs`: a speed test this node is to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedTestJob {
    pub id: u64,
    /// The receiving router, whose node identity the sink's certificate must carry.
    pub to: NodeName,
    pub to_identity: SpiffeId,
    /// The receiver's speed-test sink (`ip:port`), as it reported it.
    pub to_addr: String,
    pub seconds: u32,
}

/// `POST /v1/agent/jobs/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedTestOutcome {
    pub id: u64,
    /// What the receiver counted, on success.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// The receiver's time from first to last byte, milliseconds.
    #[serde(default)]
    pub millis: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// This node's backhaul links to the other routers: what `trellis-agent mesh` last saw of
/// its 802.11s links (bounded by the radio's peer count), and the cables the agent sees
/// other routers over. The controller keeps it in RAM for the topology.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshReport {
    /// The mesh interface's MAC: how other nodes' reports name this node. Empty when the
    /// node runs no wifi mesh (its backhaul is cables only).
    pub mac: String,
    /// This node's other interface MACs (a cable's far end sees one of these), at most
    /// [`MAX_NODE_MACS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
    pub links: Vec<MeshLink>,
}

impl MeshReport {
    /// Whether the node runs the 802.11s mesh (the mesh supervisor wrote this report), as
    /// opposed to reporting only cables.
    pub fn runs_wifi_mesh(&self) -> bool {
        !self.mac.is_empty()
    }
}

/// Most interface MACs one node names itself by.
pub const MAX_NODE_MACS: usize = 16;

/// What carries a backhaul link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMedium {
    /// An 802.11s peer link (reports before cables existed are all wifi).
    #[default]
    Wifi,
    /// Another router seen through a wired interface.
    Cable,
}

impl LinkMedium {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMedium::Wifi => "wifi",
            LinkMedium::Cable => "cable",
        }
    }
}

/// How a backhaul link is judged: the mesh supervisor's link health (node-agent
/// `wifi/health.rs`) decides it; the map, the page's warnings and the hop walk read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkVerdict {
    #[default]
    Good,
    /// Works; a little closer would be faster.
    Fair,
    Weak,
    /// So strong the radios are probably too close.
    TooClose,
    /// Dropping or re-routing often.
    Unstable,
    /// Paused by flap damping: traffic does not use it until it is retried.
    Blocked,
    /// A verdict this controller does not know (a newer agent): shown, never acted on.
    #[serde(other)]
    Unknown,
}

impl LinkVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkVerdict::Good => "good",
            LinkVerdict::Fair => "fair",
            LinkVerdict::Weak => "weak",
            LinkVerdict::TooClose => "too_close",
            LinkVerdict::Unstable => "unstable",
            LinkVerdict::Blocked => "blocked",
            LinkVerdict::Unknown => "unknown",
        }
    }

    /// Whether traffic may be routed over the link (the hop walk, pairing progress).
    pub fn carries_traffic(self) -> bool {
        self != LinkVerdict::Blocked
    }
}

/// One peer link as the mesh supervisor (or, for a cable, the agent) judges it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshLink {
    pub peer: String,
    #[serde(default)]
    pub medium: LinkMedium,
    #[serde(default)]
    pub signal_dbm: Option<i32>,
    #[serde(default)]
    pub expected_throughput_kbps: Option<u32>,
    #[serde(default)]
    pub airtime_metric: Option<u32>,
    pub verdict: LinkVerdict,
    #[serde(default)]
    pub advice: Vec<String>,
}

/// One link of the home's mesh topology (`GET /v1/admin/topology`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyLink {
    pub from: NodeName,
    /// The peer's node name, or its MAC when no router of the home reports that MAC.
    pub to: String,
    #[serde(default)]
    pub medium: LinkMedium,
    pub signal_dbm: Option<i32>,
    pub expected_throughput_kbps: Option<u32>,
    pub airtime_metric: Option<u32>,
    pub verdict: LinkVerdict,
    pub advice: Vec<String>,
    /// The newest speed test between its two routers (either way), if one finished: what the
    /// link carried, not what the radio estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<LinkMeasurement>,
}

/// A speed test's result on a link of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMeasurement {
    /// The router that sent and the one that received.
    pub from: NodeName,
    pub to: NodeName,
    pub bits_per_second: u64,
    /// Unix seconds the test finished.
    pub at: u64,
}

/// A device an agent sees: a DHCP lease it handed out, a wifi client of one of its access
/// points, a device on one of its wired LAN ports, or several of these. A satellite usually hands out no addresses (the primary does), so its
/// wifi clients are how the map knows which router a phone is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenDevice {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// From the lease; a wifi client of a router that runs no DHCP has none here.
    #[serde(default)]
    pub ip: Option<std::net::IpAddr>,
    /// The name the device gave in its DHCP request, if any.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Associated with one of this router's access points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi: Option<WifiAssociation>,
    /// Learned on this wired LAN port of the router's bridge (not a port towards another
    /// router), e.g. `lan2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

impl SeenDevice {
    /// The name the device gave DHCP, if it gave one (dnsmasq writes `*` for none).
    pub fn dhcp_name(&self) -> Option<&str> {
        self.hostname
            .as_deref()
            .filter(|h| !h.is_empty() && *h != "*")
    }
}

/// A device as `GET /v1/admin/devices` (and the page's device list) shows it: from the
/// device book, from what the routers see, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceListing {
    pub mac: String,
    /// The book's name, else the DHCP hostname, else the MAC.
    pub name: String,
    /// `None`: not in the device book (the policy's default for unknown devices applies).
    pub group: Option<String>,
    /// The router it is behind now (wifi association, else DHCP lease); `None` if no router
    /// sees it.
    pub router: Option<String>,
    pub ip: Option<std::net::IpAddr>,
    /// Signal at the router's access point, for a wifi client.
    pub signal_dbm: Option<i32>,
    /// The router's wired LAN port it is plugged into, for a wired device.
    #[serde(default)]
    pub port: Option<String>,
}

/// A wifi client's association with a router's access point (`iw dev X station dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiAssociation {
    /// The access point's interface, e.g. `phy1-ap0`.
    pub interface: String,
    pub signal_dbm: Option<i32>,
    /// Milliseconds since the router last heard the client.
    pub inactive_ms: Option<u32>,
    /// The home network that access point serves, when it is one Trellis runs: the network
    /// the client authenticated on, which decides its policy group first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::home_wifi::NetworkKind>,
    /// The band it is associated on, and whether it said (in its capabilities) that it can
    /// do 5 GHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<crate::home_wifi::Band>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_band: Option<bool>,
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
    /// What that expiry means (the controller's one rule: `controller/src/health.rs`), so
    /// `trellis nodes`, `trellis check` and the page never judge it differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_health: Option<CertHealth>,
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
    /// The router the controller runs on: the portal to the internet.
    #[serde(default)]
    pub portal: bool,
    /// Mesh hops from the portal over the reported peer links (0 for the portal itself);
    /// `None` when no path is known (no portal yet, no link reported, or a wired router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hops: Option<u32>,
    /// How its access points match the home's wifi networks (the controller's one rule:
    /// `controller/src/health.rs`); `None` when the home has no networks set or the router
    /// has not reported since the controller started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi: Option<crate::home_wifi::WifiHealth>,
}

/// A router certificate's state. Agents renew at half of a certificate's lifetime, so one
/// with under a quarter left has missed its renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum CertHealth {
    Valid {
        expires_in_s: u64,
    },
    /// Under a quarter of its lifetime left and not renewed: the router is probably cut off.
    RenewalLate {
        expires_in_s: u64,
    },
    /// The router cannot join the service mesh until it is paired again.
    Expired {
        expired_s_ago: u64,
    },
}

/// `POST /v1/admin/pairing-codes` request body (optional: no body is a satellite's code).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPairingCodeRequest {
    /// The code is for the agent on the router the controller runs on: that router becomes
    /// the home's portal (the centre of the map, hop 0).
    #[serde(default)]
    pub this_router: bool,
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
