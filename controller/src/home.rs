//! The running home: store, CA, pairing state, the config snapshot and what agents report.
//!
//! Both APIs call into [`Home`]; it owns the rules (who may renew, what a removal revokes,
//! when the config version moves), the APIs only translate HTTP.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use trellis_proto::api::{
    CaBackup, DeviceListing, NewPairingCode, NewSpeedTest, NodeInfo, RemovedNode, RenewResponse,
    SeenDevice, SpeedTest, SpeedTestJob, SpeedTestOutcome, Status, Telemetry,
};
use trellis_proto::pairing::{HomeSecrets, PairChallenge, PairFinish, PairStart, PairWelcome};
use trellis_proto::snapshot::{ConfigSnapshot, MeshCredentials, PeerNode, Revocation};
use trellis_proto::{CertSerial, HomeId, NodeName, SpiffeId};

use crate::ca::{self, unix_now, HomeCa};
use crate::metrics::PairingRefusal as Refused;
use crate::pairing::Progress;
use crate::pairing::{Pairing, PairingError};
use crate::store::{DeviceRow, HomeRecord, PasswordRecord, Store, StoreError};

/// Why a request failed, in the caller's terms. The APIs map kinds to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Forbidden,
    NotFound,
    Conflict,
    TooMany,
    /// A request body over the limit.
    TooLarge,
    /// A known path asked with a method it does not take.
    MethodNotAllowed,
    StorageFull,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HomeError {
    pub kind: Kind,
    pub message: String,
}

impl HomeError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<StoreError> for HomeError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::DiskFull => Kind::StorageFull,
            StoreError::Conflict(_) => Kind::Conflict,
            StoreError::NotFound(_) => Kind::NotFound,
            _ => Kind::Internal,
        };
        HomeError::new(kind, e.to_string())
    }
}

impl From<PairingError> for HomeError {
    fn from(e: PairingError) -> Self {
        let kind = match &e {
            PairingError::WrongCode { .. } => Kind::Forbidden,
            PairingError::UnknownSession => Kind::NotFound,
            PairingError::UsedMeanwhile => Kind::Conflict,
            PairingError::TooManyCodes | PairingError::Busy | PairingError::TooFast(_) => {
                Kind::TooMany
            }
            PairingError::BadMessage(_) => Kind::BadRequest,
        };
        HomeError::new(kind, e.to_string())
    }
}

impl From<ca::CaError> for HomeError {
    fn from(e: ca::CaError) -> Self {
        let kind = match &e {
            ca::CaError::BadCsr(_) | ca::CaError::WrongKeyType => Kind::BadRequest,
            _ => Kind::Internal,
        };
        HomeError::new(kind, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, HomeError>;

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

/// `aa:bb:cc:dd:ee:ff` from `AA-BB-CC-DD-EE-FF` and friends; `None` if it is not a MAC.
pub fn normalise_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.trim().split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
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

    // --- pairing -------------------------------------------------------------------------

    /// A pairing code for a satellite, or (`this_router`) for the agent on the router the
    /// controller itself runs on, which then shows as the portal.
    pub fn new_pairing_code(&self, this_router: bool) -> Result<NewPairingCode> {
        let code = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .new_code(Instant::now(), this_router)?;
        tracing::info!(slot = %code.slot, this_router, "pairing code issued, valid 10 minutes");
        Ok(NewPairingCode {
            code: code.display(),
            expires_in_s: crate::pairing::CODE_LIFETIME.as_secs(),
        })
    }

    /// Step 2 of a pairing, for an agent at `peer` (`None`: not known, one shared budget).
    /// What the agent learns is the same whether its slot has an open code or not; the log
    /// says which, and lines a LAN client can cause at will are written once per interval.
    pub fn pair_start(
        &self,
        req: &PairStart,
        peer: Option<std::net::IpAddr>,
    ) -> Result<PairChallenge> {
        let peer = peer.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        self.counters.pairing_started();
        let admitted = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(peer, now);
        if let Err(e) = admitted {
            self.counters.pairing_refused(Refused::RateLimited);
            if let Some(times) = self.pairing_refusals.hit(now) {
                tracing::warn!(node = %req.node_name, %peer, times, error = %e, "pairing refused");
            }
            return Err(e.into());
        }
        if self.is_enrolled(&req.node_name)? {
            self.counters.pairing_refused(Refused::NameTaken);
            return Err(HomeError::new(
                Kind::Conflict,
                format!(
                    "a router named {} is already in this home: pick another name (trellis-agent join --name …) or remove it first (trellis remove-node {})",
                    req.node_name,
                    req.node_name
                ),
            ));
        }
        let started = self.pairing.lock().unwrap_or_else(|p| p.into_inner()).run(
            req,
            self.home_id(),
            self.ca.cert_pem(),
            now,
        );
        match started {
            Ok((challenge, crate::pairing::Started::Code { tries })) => {
                tracing::info!(node = %req.node_name, slot = %req.slot, tries, "pairing started");
                Ok(challenge)
            }
            Ok((challenge, crate::pairing::Started::Decoy)) => {
                if let Some(times) = self.pairing_refusals.hit(now) {
                    tracing::warn!(node = %req.node_name, %peer, times, "pairing tried with codes that are not open (expired, used, burned or never issued)");
                }
                Ok(challenge)
            }
            Err(e) => {
                self.counters.pairing_refused(Refused::Invalid);
                if let Some(times) = self.pairing_refusals.hit(now) {
                    tracing::warn!(node = %req.node_name, %peer, times, error = %e, "pairing refused");
                }
                Err(e.into())
            }
        }
    }

    pub fn pair_finish(&self, req: &PairFinish) -> Result<PairWelcome> {
        let admitted = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish(req, Instant::now());
        let admitted = match admitted {
            Ok(a) => a,
            // A run against an open code: bounded by its tries, worth a line and an event.
            Err(PairingError::WrongCode { tries: Some(tries) }) => {
                self.counters.pairing_refused(Refused::WrongCode);
                tracing::warn!(
                    tries,
                    "pairing failed: wrong code (try {tries} of {})",
                    crate::pairing::MAX_TRIES
                );
                self.record(
                    "pairing",
                    format!(
                        "a pairing attempt failed: wrong code (try {tries} of {})",
                        crate::pairing::MAX_TRIES
                    ),
                );
                return Err(PairingError::WrongCode { tries: Some(tries) }.into());
            }
            Err(e) => {
                self.counters.pairing_refused(match e {
                    PairingError::WrongCode { tries: None } => Refused::CodeNotOpen,
                    _ => Refused::Invalid,
                });
                if let Some(times) = self.pairing_refusals.hit(Instant::now()) {
                    tracing::warn!(times, error = %e, "pairing failed");
                }
                return Err(e.into());
            }
        };
        let identity = SpiffeId::node(self.home_id(), &admitted.node_name);
        let issued = self
            .ca
            .sign_csr(&admitted.csr_pem, &identity, self.settings.leaf_ttl)?;
        self.store
            .enroll_node(&identity, &issued.serial, issued.not_after, unix_now())?;
        if admitted.this_router {
            self.store.set_portal_node(&admitted.node_name)?;
        }
        self.publish()?;
        self.counters.pairing_enrolled();
        tracing::info!(%identity, "router enrolled");
        self.record(
            "enrolled",
            format!("router {} joined the home", admitted.node_name),
        );
        let secrets = HomeSecrets {
            mesh: self.mesh.clone(),
            controller_api: self.settings.advertise.clone(),
        };
        let json = serde_json::to_vec(&secrets)
            .map_err(|e| HomeError::new(Kind::Internal, e.to_string()))?;
        Ok(PairWelcome {
            identity,
            cert_pem: issued.cert_pem,
            sealed: admitted.keys.seal(&json),
        })
    }

    pub fn pair_abort(&self, session: &str) -> Result<()> {
        let (node, tries) = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort(session)
            .ok_or(PairingError::UnknownSession)?;
        match tries {
            Some(tries) => {
                self.counters.pairing_refused(Refused::WrongCode);
                tracing::warn!(%node, tries, "pairing failed: the agent was given a wrong code (try {tries} of {})", crate::pairing::MAX_TRIES);
                self.record(
                    "pairing",
                    format!(
                        "router {node} was given a wrong pairing code (try {tries} of {})",
                        crate::pairing::MAX_TRIES
                    ),
                );
            }
            // A code that is not open: anyone on the LAN can cause this at will.
            None => {
                self.counters.pairing_refused(Refused::CodeNotOpen);
                if let Some(times) = self.pairing_refusals.hit(Instant::now()) {
                    tracing::warn!(%node, times, "pairing failed: the agent's code is not open (expired, used, burned or never issued)");
                }
            }
        }
        Ok(())
    }

    fn is_enrolled(&self, name: &NodeName) -> Result<bool> {
        Ok(self
            .store
            .nodes()?
            .iter()
            .any(|n| &n.name == name && n.revoked_at.is_none()))
    }

    // --- agents ----------------------------------------------------------------------------

    /// The node behind a verified client certificate, if it is still a member of the home.
    pub fn authorize(&self, identity: &SpiffeId, serial: &CertSerial) -> Result<NodeName> {
        let refuse = |why: &str| HomeError::new(Kind::Forbidden, format!("{identity} {why}"));
        // The home's one peer rule first (the agents' data plane asks the same), then what
        // only the controller knows: which serials it issued.
        self.snapshot()
            .admit(identity, serial)
            .map_err(|e| HomeError::new(Kind::Forbidden, e.to_string()))?;
        let name = identity
            .node_name()
            .ok_or_else(|| refuse("is not a router identity"))?;
        // Pinned serials: the CA signing it is not enough, this controller must have issued
        // it to this router, and the router must not have moved on to a renewed one since.
        let issued = self.store.valid_serials(&name, unix_now())?;
        let Some(age) = issued.iter().position(|s| s == serial) else {
            return Err(refuse(
                "presents a certificate this controller did not issue to it (or one that expired); pair the router again",
            ));
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(name.clone()).or_default();
        let newest_used = entry
            .newest_serial
            .as_ref()
            .and_then(|used| issued.iter().position(|s| s == used));
        match newest_used {
            Some(used) if age > used => {
                return Err(refuse(
                    "presents a certificate that a renewed one has replaced; restart trellis-agent so it uses the newest",
                ))
            }
            Some(used) if age == used => {}
            _ => entry.newest_serial = Some(serial.clone()),
        }
        entry.last_seen = Some(Instant::now());
        Ok(name)
    }

    pub fn renew(&self, node: &NodeName, csr_pem: &str) -> Result<RenewResponse> {
        let identity = SpiffeId::node(self.home_id(), node);
        let issued = self
            .ca
            .sign_csr(csr_pem, &identity, self.settings.leaf_ttl)?;
        self.store
            .record_certificate(node, &issued.serial, issued.not_after, unix_now())?;
        tracing::info!(%identity, not_after = issued.not_after, "certificate renewed");
        Ok(RenewResponse {
            cert_pem: issued.cert_pem,
            not_after: issued.not_after,
        })
    }

    /// An agent says which config version it applied, or why it could not. A version the
    /// controller never published is refused: kept, it would show a router that is behind as
    /// up to date (the highest ack wins).
    pub fn ack(&self, node: &NodeName, version: u64, error: Option<&str>) -> Result<()> {
        let published = self.snapshot().version;
        if version > published {
            return Err(HomeError::new(
                Kind::BadRequest,
                format!(
                    "config version {version} was never published (the newest is {published}); acknowledge a version received from GET /v1/agent/config"
                ),
            ));
        }
        if let Some(err) = error {
            // Agent text: capped, and a field (escaped), so it cannot forge log lines.
            let err = capped(err, MAX_AGENT_TEXT);
            tracing::warn!(%node, version, error = ?err, "agent could not apply config");
            return Ok(());
        }
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(node.clone()).or_default();
        if version > entry.acked_version {
            self.counters.first_ack(version);
        }
        entry.acked_version = entry.acked_version.max(version);
        Ok(())
    }

    pub fn report(&self, node: &NodeName, mut telemetry: Telemetry) -> Result<()> {
        let outcomes = crate::wifi::cap_wifi_reports(&mut telemetry);
        self.report_inner(node, telemetry)?;
        self.steer_round(node, &outcomes);
        Ok(())
    }

    fn report_inner(&self, node: &NodeName, mut telemetry: Telemetry) -> Result<()> {
        // Tunnel endpoints reach flash and every router's snapshot: only real socket
        // addresses (`ip:port`, or a bare IP for the default port) are kept, written in one form.
        telemetry.addresses = tunnel_addresses(&telemetry.addresses);
        truncate_chars(&mut telemetry.agent_version, 40);
        if let Some(a) = &mut telemetry.speedtest_addr {
            truncate_chars(a, 64);
        }
        telemetry.devices.truncate(MAX_REPORTED_DEVICES);
        for d in &mut telemetry.devices {
            if let Some(h) = &mut d.hostname {
                truncate_chars(h, 63);
            }
            // Interface names are at most 15 bytes (IFNAMSIZ); anything longer is not one.
            if let Some(w) = &mut d.wifi {
                truncate_chars(&mut w.interface, 15);
            }
            if let Some(p) = &mut d.port {
                truncate_chars(p, 15);
            }
        }
        telemetry
            .services
            .truncate(crate::catalog::MAX_REPORTED_SERVICES);
        if let Some(mesh) = &mut telemetry.mesh {
            truncate_chars(&mut mesh.mac, 32);
            mesh.links.truncate(MAX_REPORTED_LINKS);
            mesh.macs.truncate(trellis_proto::api::MAX_NODE_MACS);
            for m in &mut mesh.macs {
                truncate_chars(m, 32);
            }
            for link in &mut mesh.links {
                truncate_chars(&mut link.peer, 32);
                link.advice.truncate(8);
                for a in &mut link.advice {
                    truncate_chars(a, MAX_AGENT_TEXT);
                }
            }
        }
        // Service names are DNS labels; anything else is not from a proxy of ours.
        telemetry
            .traffic
            .retain(|t| t.service.len() <= 63 && !t.service.is_empty());
        telemetry.traffic.truncate(crate::traffic::MAX_SERVICES);
        crate::channel::home::bound_survey(&mut telemetry.survey);
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(node, &std::mem::take(&mut telemetry.traffic), unix_now());
        self.traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(node, std::mem::take(&mut telemetry.traces));
        for seen in std::mem::take(&mut telemetry.services) {
            if let Err(e) = self.learn_service(node, &seen) {
                // A router repeats its report every 30 s: one line per interval, not per report.
                if let Some(times) = self.catalog_refusals.hit(Instant::now()) {
                    tracing::warn!(%node, service = ?capped(&seen.name, 63), error = %e, times, "service not added to the catalog");
                }
            }
        }
        // Peers need to know where a node can be reached: a move is a config change (stored,
        // so it survives a controller restart); the same addresses again write nothing.
        if let Some(version) = self.store.set_node_addresses(node, &telemetry.addresses)? {
            tracing::info!(%node, addresses = ?telemetry.addresses, version, "router's tunnel address changed");
            self.publish()?;
        }
        self.radar_reports(node.as_str(), &telemetry.radar);
        let skew =
            (telemetry.clock_unix > 0).then(|| telemetry.clock_unix as i64 - unix_now() as i64);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(node.clone()).or_default();
        entry.telemetry = telemetry;
        entry.reported_at = Some(Instant::now());
        entry.clock_skew_s = skew;
        Ok(())
    }

    // --- admin -----------------------------------------------------------------------------

    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            home_id: self.home_id().clone(),
            config_version: self.snapshot().version,
            nodes: self.snapshot().nodes.len(),
            ca_not_after: self.ca.not_after(),
            agent_api: self.settings.advertise.clone(),
            controller_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// The routers of the home now (the published snapshot's nodes: removed ones are gone).
    fn members(&self) -> std::collections::HashSet<NodeName> {
        self.snapshot()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The mesh as the routers last reported it: one entry per peer link, the peer named by
    /// the router whose mesh MAC it is (RAM only, from telemetry).
    pub fn topology(&self) -> Vec<trellis_proto::api::TopologyLink> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let members = self.members();
        // A router is named by its mesh interface's MAC and its other interfaces' (the far
        // end of a cable sees one of those).
        let by_mac: HashMap<String, NodeName> = live
            .iter()
            .filter(|(name, _)| members.contains(*name))
            .filter_map(|(name, l)| Some((name, l.telemetry.mesh.as_ref()?)))
            .flat_map(|(name, mesh)| {
                std::iter::once(&mesh.mac)
                    .filter(|m| !m.is_empty())
                    .chain(mesh.macs.iter().take(trellis_proto::api::MAX_NODE_MACS))
                    .map(move |mac| (mac.to_ascii_lowercase(), name.clone()))
            })
            .collect();
        // Links are as old as the report that carried them ([`crate::fleet::links_current`]),
        // at both ends: a silent router's links go, and so do the links others report to it.
        let now = Instant::now();
        let current: std::collections::HashSet<&NodeName> = live
            .iter()
            .filter(|(name, l)| {
                members.contains(*name)
                    && crate::fleet::links_current(
                        l.reported_at.map(|t| now.saturating_duration_since(t)),
                        l.telemetry
                            .report_every_s
                            .map(|s| Duration::from_secs(u64::from(s))),
                        self.settings.node_timeout,
                    )
            })
            .map(|(name, _)| name)
            .collect();
        let mut out = Vec::new();
        for (name, l) in live.iter().filter(|(name, _)| current.contains(name)) {
            let Some(mesh) = &l.telemetry.mesh else {
                continue;
            };
            for link in &mesh.links {
                let peer = link.peer.to_ascii_lowercase();
                let to = by_mac.get(&peer);
                if to.is_some_and(|n| !current.contains(n)) {
                    continue;
                }
                out.push(trellis_proto::api::TopologyLink {
                    from: name.clone(),
                    to: to.map(|n| n.to_string()).unwrap_or(peer),
                    medium: link.medium,
                    signal_dbm: link.signal_dbm,
                    expected_throughput_kbps: link.expected_throughput_kbps,
                    airtime_metric: link.airtime_metric,
                    verdict: link.verdict,
                    advice: link.advice.clone(),
                });
            }
        }
        out.sort_by(|a, b| (a.from.as_str(), a.to.as_str()).cmp(&(b.from.as_str(), b.to.as_str())));
        out
    }

    /// Mesh hops from `from` to every router reachable over the reported peer links (a
    /// breadth-first walk; blocked links and peers that are not routers of the home are left
    /// out). For the proxies' locality: prefer the instance fewest hops away.
    pub fn hops_from(&self, from: &NodeName) -> std::collections::BTreeMap<NodeName, u32> {
        let members = self.members();
        let mut next: HashMap<NodeName, Vec<NodeName>> = HashMap::new();
        for link in self.topology() {
            if !link.verdict.carries_traffic() {
                continue;
            }
            let Ok(to) = NodeName::new(link.to.clone()) else {
                continue;
            };
            if !members.contains(&to) {
                continue;
            }
            // A peer link carries traffic both ways, whichever side reported it.
            next.entry(link.from.clone()).or_default().push(to.clone());
            next.entry(to).or_default().push(link.from);
        }
        let mut hops = std::collections::BTreeMap::new();
        hops.insert(from.clone(), 0u32);
        let mut queue = std::collections::VecDeque::from([from.clone()]);
        while let Some(n) = queue.pop_front() {
            let d = hops[&n];
            for m in next.get(&n).into_iter().flatten() {
                if !hops.contains_key(m) {
                    hops.insert(m.clone(), d + 1);
                    queue.push_back(m.clone());
                }
            }
        }
        hops.remove(from);
        hops
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let portal = self.store.portal_node()?;
        let hops = portal
            .as_ref()
            .map(|p| {
                let mut hops = self.hops_from(p);
                hops.insert(p.clone(), 0);
                hops
            })
            .unwrap_or_default();
        Ok(self
            .store
            .nodes()?
            .into_iter()
            .map(|row| {
                let l = live.get(&row.name).cloned().unwrap_or_default();
                NodeInfo {
                    portal: portal.as_ref() == Some(&row.name),
                    hops: hops.get(&row.name).copied(),
                    name: row.name,
                    identity: row.identity,
                    enrolled_at: row.enrolled_at,
                    cert_health: row
                        .cert_not_after
                        .map(|t| crate::health::certificate(t, unix_now(), self.settings.leaf_ttl)),
                    cert_not_after: row.cert_not_after,
                    revoked: row.revoked_at.is_some(),
                    acked_version: l.acked_version,
                    last_seen_s: l.last_seen.map(|t| t.elapsed().as_secs()),
                    clock_skew_s: l.clock_skew_s,
                    label: row.label,
                }
            })
            .collect())
    }

    pub fn remove_node(&self, name: &NodeName) -> Result<RemovedNode> {
        let (identity, config_version) = self.store.revoke_node(name, unix_now())?;
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.publish()?;
        self.speedtests.forget_node(name, unix_now());
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_node(name);
        tracing::info!(%identity, config_version, "router removed and its identity revoked");
        self.record(
            "removed",
            format!("router {name} was removed; its identity is revoked"),
        );
        Ok(RemovedNode {
            identity,
            config_version,
        })
    }

    /// Name a device (by MAC) and put it in a group. Checks the input here so the admin
    /// socket and the web page share one set of rules.
    pub fn set_device(&self, mac: &str, name: &str, group: &str) -> Result<u64> {
        let mac = normalise_mac(mac).ok_or_else(|| {
            HomeError::new(
                Kind::BadRequest,
                format!("{mac:?} is not a MAC address like aa:bb:cc:dd:ee:ff"),
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(HomeError::new(
                Kind::BadRequest,
                "a device name has 1 to 64 characters",
            ));
        }
        self.put_device(&DeviceRow {
            mac,
            name: name.to_owned(),
            group: group.to_owned(),
        })
    }

    pub fn put_device(&self, device: &DeviceRow) -> Result<u64> {
        let version = self.store.put_device(device, unix_now())?;
        self.publish()?;
        Ok(version)
    }

    /// Device groups and whether each is built in.
    pub fn groups(&self) -> Result<Vec<(String, bool)>> {
        Ok(self.store.groups()?)
    }

    /// Give a router a label for people; an empty label clears it.
    pub fn set_label(&self, name: &NodeName, label: &str) -> Result<()> {
        let label = label.trim();
        if label.chars().count() > 40 || label.chars().any(char::is_control) {
            return Err(HomeError::new(
                Kind::BadRequest,
                "a router label has at most 40 characters and no control characters",
            ));
        }
        self.store
            .set_node_label(name, (!label.is_empty()).then_some(label))?;
        tracing::info!(node = %name, "router label changed");
        Ok(())
    }

    // --- speed tests ---------------------------------------------------------------------

    /// Queue a speed test between two routers of this home.
    pub fn start_speedtest(&self, req: &NewSpeedTest) -> Result<SpeedTest> {
        // A request that cannot be a test is refused before the routers are looked up.
        crate::speedtest::check_request(&req.from, &req.to, req.seconds)?;
        let snapshot = self.snapshot();
        let member = |name: &NodeName| {
            snapshot
                .nodes
                .iter()
                .find(|n| &n.name == name)
                .ok_or_else(|| {
                    HomeError::new(
                        Kind::NotFound,
                        format!("{name} is not a router of this home (see `trellis nodes`)"),
                    )
                })
        };
        member(&req.from)?;
        let to = member(&req.to)?;
        let to_addr = self
            .telemetry(&req.to)
            .and_then(|t| t.speedtest_addr)
            .ok_or_else(|| {
                HomeError::new(
                    Kind::Conflict,
                    format!(
                        "{} has not said where its speed-test sink listens: is it online, with trellis-agent run (and not --speedtest-listen off)?",
                        req.to
                    ),
                )
            })?;
        let test = self.speedtests.start(
            req.from.clone(),
            req.to.clone(),
            to.identity.clone(),
            to_addr,
            req.seconds,
            unix_now(),
        )?;
        tracing::info!(id = test.id, from = %test.from, to = %test.to, "speed test queued");
        Ok(test)
    }

    /// The next speed test `node` is to send (long poll).
    pub async fn next_job(&self, node: &NodeName, wait: Duration) -> Option<SpeedTestJob> {
        self.speedtests.next_job(node, wait).await
    }

    /// A sending router's report.
    pub fn finish_speedtest(&self, node: &NodeName, outcome: &SpeedTestOutcome) -> Result<()> {
        let test = self.speedtests.finish(node, outcome, unix_now())?;
        let message = match (test.bits_per_second, &test.error) {
            (Some(bps), _) => format!(
                "speed test {} → {}: {:.1} Mbit/s",
                test.from,
                test.to,
                bps as f64 / 1e6
            ),
            (None, Some(e)) => format!("speed test {} → {} failed: {e}", test.from, test.to),
            (None, None) => format!("speed test {} → {} failed", test.from, test.to),
        };
        // The message holds the agent's error text: a field, escaped, never the log line.
        tracing::info!(id = test.id, outcome = ?message, "speed test finished");
        self.record("speedtest", message);
        Ok(())
    }

    /// Speed tests, newest first.
    pub fn speedtests(&self) -> Vec<SpeedTest> {
        self.speedtests.list(unix_now())
    }

    pub fn speedtest(&self, id: u64) -> Result<SpeedTest> {
        self.speedtests.get(id, unix_now()).ok_or_else(|| {
            HomeError::new(
                Kind::NotFound,
                format!(
                    "no speed test {id} (the controller keeps the last {})",
                    crate::speedtest::MAX_KEPT
                ),
            )
        })
    }

    /// The newest connection traces of the home, joined across routers (`trellis traces`).
    pub fn traces(
        &self,
        device: Option<&str>,
        service: Option<&str>,
        limit: usize,
    ) -> Vec<crate::traces::TraceView> {
        self.traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .traces(device, service, limit)
    }

    /// Per-service connections and bytes of the last hour, busiest first.
    pub fn traffic(&self) -> Vec<crate::traffic::ServiceChart> {
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .charts(unix_now())
    }

    /// Routers of the home not heard from within the node timeout (or never, once the
    /// controller has run that long): what they announced cannot be reached now.
    pub fn silent_nodes(&self) -> std::collections::HashSet<NodeName> {
        self.snapshot()
            .nodes
            .iter()
            .filter(|n| !self.liveness(&n.name, false).reachable())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Whether router `name` is heard from ([`crate::fleet`], with `--node-timeout-s`).
    pub fn liveness(&self, name: &NodeName, revoked: bool) -> crate::fleet::Liveness {
        let silent_for = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .and_then(|l| l.last_seen)
            .map(|t| t.elapsed());
        crate::fleet::Liveness::of(
            revoked,
            silent_for,
            self.started.elapsed(),
            self.settings.node_timeout,
        )
    }

    /// What a node last reported about itself (RAM only).
    /// Every device of the book and every device a router sees, once each, with where it is.
    pub fn device_listing(&self) -> Result<Vec<DeviceListing>> {
        let mut out: BTreeMap<String, DeviceListing> = self
            .devices()?
            .into_iter()
            .map(|d| {
                let listing = DeviceListing {
                    mac: d.mac.clone(),
                    name: d.name,
                    group: Some(d.group),
                    router: None,
                    ip: None,
                    signal_dbm: None,
                    port: None,
                };
                (d.mac, listing)
            })
            .collect();
        for (router, seen) in self.devices_by_router()? {
            for d in seen {
                let Some(mac) = normalise_mac(&d.mac) else {
                    continue;
                };
                let entry = out.entry(mac.clone()).or_insert_with(|| DeviceListing {
                    name: d.dhcp_name().unwrap_or(&mac).to_owned(),
                    mac,
                    group: None,
                    router: None,
                    ip: None,
                    signal_dbm: None,
                    port: None,
                });
                entry.router = Some(router.to_string());
                entry.ip = d.ip;
                entry.signal_dbm = d.wifi.and_then(|w| w.signal_dbm);
                entry.port = d.port;
            }
        }
        Ok(out.into_values().collect())
    }

    /// What keeps an enrolled router out of the mesh, if anything: a router that runs the wifi
    /// mesh (its agent reports links) needs a mesh path to the portal, or with no portal known
    /// any usable link. One that reports no wifi mesh is on a wired backhaul.
    pub fn waiting_for_mesh_link(&self, node: &NodeInfo) -> Option<&'static str> {
        let runs_wifi_mesh = self
            .telemetry(&node.name)
            .is_some_and(|t| t.mesh.as_ref().is_some_and(|m| m.runs_wifi_mesh()));
        if !runs_wifi_mesh || node.portal || node.hops.is_some() {
            return None;
        }
        let portal_known = self.store.portal_node().ok().flatten().is_some();
        let linked = self
            .topology()
            .iter()
            .any(|l| l.from == node.name && l.verdict.carries_traffic());
        if !portal_known && linked {
            return None;
        }
        Some("it follows this router; waiting for its wifi mesh link (if it is still on the setup cable, place it and unplug the cable)")
    }

    /// The devices behind each router of the home, each once (see [`crate::placement`]).
    pub fn devices_by_router(&self) -> Result<BTreeMap<NodeName, Vec<SeenDevice>>> {
        let portal = self.store.portal_node()?;
        let members = self.members();
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        Ok(crate::placement::place_devices(
            live.iter()
                .filter(|(n, _)| members.contains(*n))
                .map(|(n, l)| (n, l.telemetry.devices.as_slice())),
            portal.as_ref(),
        ))
    }

    pub fn telemetry(&self, name: &NodeName) -> Option<Telemetry> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| l.telemetry.clone())
    }

    /// How far the pairing with the code whose slot is `slot` got.
    pub fn pairing_progress(&self, slot: &str) -> Progress {
        self.pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .progress(slot, Instant::now())
    }

    // --- web page admin ------------------------------------------------------------------

    pub fn admin_password(&self) -> Result<Option<PasswordRecord>> {
        Ok(self.store.admin_password()?)
    }

    /// First run only: set the admin password and retire the setup token.
    pub fn set_first_admin_password(&self, rec: &PasswordRecord) -> Result<()> {
        self.store.set_first_admin_password(rec)?;
        crate::auth::remove_setup_token(&self.settings.data_dir);
        tracing::info!("the web page's admin password was set");
        Ok(())
    }

    /// Forget the admin password (from the router's shell, when it is lost): every web
    /// session ends and a new setup token is written for the next first run.
    pub fn reset_admin_password(&self) -> Result<String> {
        let had = self.store.clear_admin_password()?;
        self.password_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::auth::remove_setup_token(&self.settings.data_dir);
        tracing::info!(
            had_password = had,
            "the web page's admin password was reset"
        );
        self.setup_token()
    }

    /// Sessions remember this at login; a reset moves it.
    pub fn password_epoch(&self) -> u64 {
        u64::from(
            self.password_epoch
                .load(std::sync::atomic::Ordering::SeqCst),
        )
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

    /// The first-run token for the web page, or `Conflict` once a password is set.
    pub fn setup_token(&self) -> Result<String> {
        if self.admin_password()?.is_some() {
            return Err(HomeError::new(
                Kind::Conflict,
                "the admin password is already set, so there is no setup token: log in on the router page with the password",
            ));
        }
        crate::auth::ensure_setup_token(&self.settings.data_dir).map_err(|e| {
            HomeError::new(
                Kind::Internal,
                format!(
                    "cannot write the setup token in {}: {e}",
                    self.settings.data_dir.display()
                ),
            )
        })
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>> {
        Ok(self.store.devices()?)
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
