//! The running home: store, CA, pairing state, the config snapshot and what agents report.
//!
//! Both APIs call into [`Home`]; it owns the rules (who may renew, what a removal revokes,
//! when the config version moves), the APIs only translate HTTP. This file holds the state
//! and the config snapshot it publishes; each concern's methods live in a file named for it:
//! [`enrollment`] (pairing, renewal, removal), [`routers`] (reports, acks, topology,
//! liveness), [`devices`] (the device book), [`measure`] (speed tests, traces, traffic) and
//! [`admin_access`] (the page's password and setup token).

mod admin_access;
mod devices;
mod enrollment;
mod measure;
mod routers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use trellis_proto::api::{CaBackup, Telemetry};
use trellis_proto::snapshot::{ConfigSnapshot, MeshCredentials, PeerNode, Revocation};
use trellis_proto::{CertSerial, HomeId, NodeName};

use crate::ca::{unix_now, HomeCa};
use crate::error::{HomeError, Kind, Result};
use crate::pairing::Pairing;
use crate::store::{HomeRecord, Store, StoreError};

/// Settings the admin chooses (UCI / command line).
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub leaf_ttl: Duration,
    /// The agent API address agents should use (host:port), handed out at pairing.
    pub advertise: String,
    /// A router silent this long counts as gone: its services show as unreachable.
    pub node_timeout: Duration,
}

/// The tunnel endpoints a router announced that other routers could connect to, in one
/// written form, at most [`MAX_REPORTED_ADDRESSES`]: an entry that is no IP socket address,
/// or is unspecified or multicast, is dropped (and named in a debug line).
fn tunnel_addresses(reported: &[String]) -> Vec<String> {
    use std::net::{IpAddr, SocketAddr};
    let mut out = Vec::new();
    for text in reported.iter().take(MAX_REPORTED_ADDRESSES) {
        // Parsed once: the address's IP decides, its canonical text is what is kept.
        let parsed = match text.parse::<SocketAddr>() {
            Ok(a) => Some((a.ip(), a.to_string())),
            Err(_) => text.parse::<IpAddr>().ok().map(|ip| (ip, ip.to_string())),
        };
        match parsed {
            Some((ip, a)) if !ip.is_unspecified() && !ip.is_multicast() && !out.contains(&a) => {
                out.push(a)
            }
            _ => {
                tracing::debug!(address = %text.chars().take(64).collect::<String>(), "dropped an announced tunnel address that no router could use")
            }
        }
    }
    out
}

/// Agents call at least every 55 s (the config long poll) and report every 30 s.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a router certificate lives unless the admin says (`--cert-ttl-hours`).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);

impl Settings {
    /// A home kept in `data_dir` with every other setting at its default (what the daemon
    /// does with no flags; tests and tools start from it).
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            leaf_ttl: DEFAULT_LEAF_TTL,
            advertise: String::new(),
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// What the controller knows about a live node, in RAM only.
#[derive(Debug, Clone, Default)]
struct Live {
    acked_version: u64,
    last_seen: Option<Instant>,
    telemetry: Telemetry,
    /// When its last telemetry arrived: its mesh links are as old as that.
    reported_at: Option<Instant>,
    /// The node's clock minus ours when its last report arrived.
    clock_skew_s: Option<i64>,
    /// The newest of its certificates the node has presented: older ones are replaced.
    newest_serial: Option<CertSerial>,
}

/// Most entries an agent's telemetry lists may carry (RAM stays bounded).
const MAX_REPORTED_ADDRESSES: usize = 16;
const MAX_REPORTED_LINKS: usize = 32;
const MAX_REPORTED_DEVICES: usize = 64;

/// Longest free text an agent may send (an ack's error, a link's advice, a version string):
/// what a person reads in one line, far below the 64 KiB body limit.
pub const MAX_AGENT_TEXT: usize = 300;

/// `s` cut to at most `max` bytes on a character boundary, for agent text kept or logged.
/// Logged agent text always goes in a field with `?` (escaped), never in the message.
pub fn capped(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cut `s` to at most `max` bytes on a character boundary (`String::truncate` panics inside
/// a multi-byte character, and these strings come from agents).
pub(crate) fn truncate_to(s: &mut String, max: usize) {
    truncate_chars(s, max)
}

fn truncate_chars(s: &mut String, max: usize) {
    let end = capped(s, max).len();
    s.truncate(end);
}

/// `aa:bb:cc:dd:ee:ff` from `AA-BB-CC-DD-EE-FF` and friends; `None` if it is not a MAC. The
/// rule is [`trellis_proto::policy::MacAddr`]'s; blanks around text from people and agents
/// are allowed.
pub fn normalise_mac(mac: &str) -> Option<String> {
    mac.trim()
        .parse::<trellis_proto::policy::MacAddr>()
        .ok()
        .map(|m| m.to_string())
}

pub struct Home {
    settings: Settings,
    pub(crate) store: Store,
    ca: HomeCa,
    mesh: MeshCredentials,
    pairing: Mutex<Pairing>,
    live: Mutex<HashMap<NodeName, Live>>,
    config: watch::Sender<Arc<ConfigSnapshot>>,
    /// Moves when the admin password is reset, so every web session made before ends.
    /// 32 bits: MIPS32 routers have no 64-bit atomics, and nobody resets 4 billion times.
    password_epoch: std::sync::atomic::AtomicU32,
    /// What happened lately, for people: bounded, RAM only.
    events: Mutex<std::collections::VecDeque<Event>>,
    /// Speed tests between routers (RAM only).
    speedtests: crate::speedtest::SpeedTests,
    /// When this controller started (a router not heard from since then may still be booting).
    started: Instant,
    /// Per-service traffic of the last hour, from the agents' counters (RAM only).
    traffic: Mutex<crate::traffic::TrafficBook>,
    /// Who talks to whom over the last hour, from the agents' edge counters (RAM only).
    graph: Mutex<crate::graph::EdgeBook>,
    /// The routers' recent connection spans (RAM only, bounded): `crate::traces`.
    traces: Mutex<crate::traces::TraceBook>,
    /// Services a router reported and the catalog refused: logged once per interval.
    catalog_refusals: trellis_io::ratelog::RateLog,
    /// Pairing refusals and decoy runs (a LAN client causes them at will): once per interval.
    pairing_refusals: trellis_io::ratelog::RateLog,
    /// The controller's Prometheus counters (pairings, logins, config propagation).
    pub counters: crate::metrics::Counters,
    /// Wifi client steering (RAM only): see [`crate::steering`] and [`crate::wifi`].
    pub(crate) steering: Mutex<crate::steering::Steering>,
}

/// Most recent events kept in RAM.
pub const MAX_EVENTS: usize = 200;

/// Something that happened in the home, in words a person understands.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Unix seconds.
    pub at: u64,
    /// Short machine-readable kind: `pairing`, `enrolled`, `removed`, `policy`, `catalog`,
    /// `renewal`, `speedtest`.
    pub kind: String,
    pub message: String,
}

fn random_label(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Create the data directory readable by root only (it holds the CA key).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

impl Home {
    /// Open the home in `settings.data_dir`, creating a new one (home ID, CA, mesh
    /// credentials) on first start.
    pub fn open(settings: Settings) -> Result<Arc<Self>> {
        private_dir(&settings.data_dir).map_err(|e| {
            HomeError::new(
                Kind::Internal,
                format!(
                    "cannot create the data directory {}: {e}",
                    settings.data_dir.display()
                ),
            )
        })?;
        let path = settings.data_dir.join("store.db");
        let store = Store::open(&path)?;
        let record = store.home_or_create(|| {
            let home_id =
                HomeId::new(random_label(8)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let ca = HomeCa::generate(&home_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tracing::info!(%home_id, "created a new home and its root CA");
            Ok(HomeRecord {
                mesh: MeshCredentials {
                    mesh_id: format!("trellis-{home_id}"),
                    sae_password: random_label(24),
                },
                home_id,
                ca_cert_pem: ca.cert_pem().to_owned(),
                ca_key_pem: ca.key_pem().to_owned(),
            })
        })?;
        // The store file holds the CA key: root only, whatever the umask was.
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
        let ca = HomeCa::from_pem(
            record.home_id.clone(),
            &record.ca_cert_pem,
            &record.ca_key_pem,
        )?;
        let placeholder = ConfigSnapshot {
            version: 0,
            home_id: record.home_id.clone(),
            ca_pem: String::new(),
            nodes: vec![],
            revoked: vec![],
            revoked_serials: vec![],
            mesh: record.mesh.clone(),
            catalog: Default::default(),
            policy: Default::default(),
            devices: vec![],
            wifi: Default::default(),
            mesh_channel: None,
        };
        let (config, _) = watch::channel(Arc::new(placeholder));
        let home = Arc::new(Self {
            settings,
            store,
            ca,
            mesh: record.mesh,
            pairing: Mutex::default(),
            live: Mutex::default(),
            config,
            password_epoch: Default::default(),
            events: Mutex::default(),
            speedtests: Default::default(),
            started: Instant::now(),
            traffic: Mutex::default(),
            graph: Mutex::default(),
            traces: Mutex::default(),
            catalog_refusals: Default::default(),
            pairing_refusals: Default::default(),
            counters: Default::default(),
            steering: Mutex::default(),
        });
        home.publish()?;
        Ok(home)
    }

    pub fn home_id(&self) -> &HomeId {
        self.ca.home_id()
    }

    /// How long this controller has run (a monotonic clock).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn ca(&self) -> &HomeCa {
        &self.ca
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Rebuild the snapshot from the store and wake every long poll.
    pub(crate) fn publish(&self) -> Result<()> {
        let now = unix_now();
        let version = self.store.config_version()?;
        let mut nodes = Vec::new();
        let mut revoked = Vec::new();
        for row in self.store.nodes()? {
            match row.revoked_at {
                None => nodes.push(PeerNode {
                    addresses: row.addresses,
                    name: row.name,
                    identity: row.identity,
                }),
                Some(at) => revoked.push(Revocation {
                    identity: row.identity,
                    revoked_at: at,
                }),
            }
        }
        let catalog = crate::catalog::catalog_for(self.store.services()?, &nodes);
        let snapshot = ConfigSnapshot {
            version,
            home_id: self.home_id().clone(),
            ca_pem: self.ca.cert_pem().to_owned(),
            nodes,
            revoked,
            revoked_serials: self.store.revoked_serials(now)?,
            mesh: self.mesh.clone(),
            catalog,
            policy: self.store.policy()?.unwrap_or_default(),
            devices: crate::catalog::devices_for(self.store.devices()?),
            wifi: self.store.wifi()?,
            mesh_channel: self.store.channel_state()?.channel,
        };
        self.config.send_replace(Arc::new(snapshot));
        self.counters.published(version);
        Ok(())
    }

    pub fn snapshot(&self) -> Arc<ConfigSnapshot> {
        self.config.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigSnapshot>> {
        self.config.subscribe()
    }

    /// Remember an event for the page and `trellis events` (the oldest goes past the cap).
    pub(crate) fn record(&self, kind: &str, message: String) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(Event {
            at: unix_now(),
            kind: kind.to_owned(),
            message,
        });
    }

    /// Recent events, newest first.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    pub fn ca_backup(&self) -> CaBackup {
        tracing::info!("CA backup exported through the admin socket");
        CaBackup {
            home_id: self.home_id().clone(),
            ca_cert_pem: self.ca.cert_pem().to_owned(),
            ca_key_pem: self.ca.key_pem().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_usable_socket_addresses_reach_the_store() {
        let got = super::tunnel_addresses(&[
            "192.168.1.2:15008".into(),
            "not an address".into(),
            "0.0.0.0:15008".into(),
            "[fe80::1]:15008".into(),
            "192.168.1.2:15008".into(),
            "224.0.0.1:1".into(),
            "10.0.0.9".into(),
            "192.168.1.2:99999".into(),
        ]);
        assert_eq!(
            got,
            vec!["192.168.1.2:15008", "[fe80::1]:15008", "10.0.0.9"]
        );
    }
}
