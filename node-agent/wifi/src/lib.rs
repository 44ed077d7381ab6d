//! The wifi half of the agent: it creates the 802.11s mesh interface, has it joined (SAE
//! through wpa_supplicant, or an open mesh for tests only), chooses the node's HWMP role, watches
//! every peer link and mesh path, damps flapping links and reports the mesh as JSON lines.
//!
//! - [`raw_nla`]: the nl80211 attributes `wl-nl80211` does not type (mesh config, mesh paths;
//!   tests in `raw_nla_tests.rs`).
//! - [`nl80211`]: requests and events over nl80211 (a directory: the connection and raw
//!   requests; radios, interfaces and the mesh point; stations and mesh paths; channels, the
//!   survey and the channel switch; events).
//! - [`ctrl`]: the control socket wpa_supplicant and hostapd share (`wpa_ctrl`).
//! - [`sae`]: wpa_supplicant config, process supervision and its control socket.
//! - [`sae_failures`]: SAE failures per peer over time: retrying, or surely a wrong password.
//! - [`role`]: portal or relay, wired backhaul, the mesh parameters that follow (pure logic).
//! - [`channel`]: a coordinated channel move: announce or rejoin, and when (pure logic).
//! - [`channel_file`]: the home's mesh channel, handed from `trellis-agent run` to the supervisor.
//! - [`health`]: per-link health, flap damping, advice (pure logic; tests in `health_tests.rs`).
//! - [`link`]: rtnetlink for the mesh interface (up, address, bridge).
//! - [`settings`]: the command's flags and the controller-credentials hook.
//! - [`survey`]: what the radios hear on each channel and may use there (for the channel choice).
//! - [`radar`]: radar sightings handed from the supervisor to the telemetry.
//! - [`report`]: JSON lines out.
//! - [`mesh`]: the `trellis-agent mesh` command that ties them together (a directory: the
//!   command and its loop; wpa_supplicant supervision; applying the role; the poll and event
//!   handling with damping; the no-link diagnosis; the link report for `run`).
//!
//! It does not own bridging policy of the LAN or the controller protocol: the caller hands in the
//! mesh credentials (from the controller's snapshot at pairing, or a file for the lab).

pub mod channel;
pub mod channel_file;
pub mod ctrl;
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
