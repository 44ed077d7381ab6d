//! The controller's embedded store: SQLite through rusqlite (bundled, so no system library).
//!
//! Why SQLite rather than redb: it is the most crash-tested embedded store there is, WAL mode
//! with `synchronous=FULL` makes every acknowledged commit durable across `kill -9` and power
//! loss, it is plain C that cross-compiles to every router CPU with `zig cc`, and it needs no
//! 64-bit atomics (MIPS32 has none). Routers' flash wears, so only state changes are written:
//! telemetry and acknowledgements live in RAM.
//!
//! The schema is versioned with `PRAGMA user_version`; [`migrations`] lists every step.

mod channel;
mod migrations;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use trellis_proto::catalog::Service;
use trellis_proto::home_wifi::HomeWifi;
use trellis_proto::policy::Policy;
use trellis_proto::snapshot::MeshCredentials;
use trellis_proto::{CertSerial, HomeId, NodeName, SpiffeId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the router's storage is full, so the change was not saved: free space on the overlay (df -h /overlay) and try again")]
    DiskFull,
    #[error("the store at {path} is not a readable Trellis database ({detail}); nothing was changed: restore it from a backup or move it aside to start a new home")]
    Unreadable { path: String, detail: String },
    #[error("the store at {path} was written by a newer Trellis (schema {found}, this one knows up to {known}); upgrade trellis-controller")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("store error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull,
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What defines a home: its ID, its CA and its mesh credentials.
#[derive(Clone)]
pub struct HomeRecord {
    pub home_id: HomeId,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub mesh: MeshCredentials,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: NodeName,
    pub identity: SpiffeId,
    pub enrolled_at: u64,
    pub revoked_at: Option<u64>,
    /// Expiry of the newest certificate issued to it (unix seconds).
    pub cert_not_after: Option<u64>,
    /// Where its tunnel endpoint is reachable (`ip:port`), as it last reported.
    pub addresses: Vec<String>,
    /// The name a person gave it on the web page ("Attic"), if any.
    pub label: Option<String>,
}

/// The admin password of the web page, as stored: never the password itself.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordRecord {
    pub algorithm: String,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
    pub set_at: u64,
}

impl std::fmt::Debug for PasswordRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordRecord")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub mac: String,
    pub name: String,
    pub group: String,
}

/// The store. One connection behind a mutex: the control plane's write rate is tiny. Every
/// call runs through [`trellis_io::runtime::blocking`], because a commit waits for the flash.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Open (or create) the store and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let unreadable = |e: rusqlite::Error| StoreError::Unreadable {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(unreadable)?;
        // WAL + FULL: a commit is on flash before we acknowledge it.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unreadable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unreadable)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(unreadable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unreadable)?;
        migrations::apply(&mut conn, &shown)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's transaction
        // rolled back, so the connection is still consistent.
        // A commit waits for the flash: off the async workers, as every caller needs.
        trellis_io::runtime::blocking(|| {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
    }

    /// The home, creating it with `make` on first start (in one transaction).
    pub fn home_or_create(&self, make: impl FnOnce() -> Result<HomeRecord>) -> Result<HomeRecord> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(home) = read_home(&tx)? {
                return Ok(home);
            }
            let home = make()?;
            tx.execute(
                "INSERT INTO ca (id, cert_pem, key_pem) VALUES (1, ?1, ?2)",
                params![home.ca_cert_pem, home.ca_key_pem],
            )?;
            for (k, v) in [
                ("home_id", home.home_id.as_str()),
                ("mesh_id", &home.mesh.mesh_id),
                ("sae_password", &home.mesh.sae_password),
            ] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![k, v],
                )?;
            }
            tx.commit()?;
            Ok(home)
        })
    }

    /// The router the controller runs on, once its own agent has joined (the map's portal).
    pub fn portal_node(&self) -> Result<Option<NodeName>> {
        self.with(|conn| {
            let name: Option<String> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'portal_node'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            name.map(|n| NodeName::new(n).map_err(|e| StoreError::Corrupt(e.to_string())))
                .transpose()
        })
    }

    pub fn set_portal_node(&self, name: &NodeName) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('portal_node', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [name.as_str()],
            )?;
            Ok(())
        })
    }

    pub fn config_version(&self) -> Result<u64> {
        self.with(|conn| config_version(conn))
    }

    /// Record a newly enrolled node and its first certificate; bumps the config version.
    pub fn enroll_node(
        &self,
        identity: &SpiffeId,
        serial: &CertSerial,
        not_after: u64,
        now: u64,
    ) -> Result<u64> {
        let name = identity
            .node_name()
            .ok_or_else(|| StoreError::Conflict(format!("{identity} is not a node identity")))?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<Option<u64>> = tx
                .query_row(
                    "SELECT revoked_at FROM nodes WHERE name = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            match existing {
                Some(None) => {
                    return Err(StoreError::Conflict(format!(
                        "a router named {name} is already in this home: pick another name (trellis-agent join --name …) or remove it first (trellis remove-node {name})"
                    )))
                }
                // Re-pairing a removed router under its old name: the old certificates stay
                // revoked by serial; the identity becomes valid again.
                Some(Some(_)) => {
                    tx.execute(
                        "UPDATE nodes SET revoked_at = NULL, enrolled_at = ?2 WHERE name = ?1",
                        params![name.as_str(), now],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO nodes (name, identity, enrolled_at) VALUES (?1, ?2, ?3)",
                        params![name.as_str(), identity.to_string(), now],
                    )?;
                }
            }
            insert_cert(&tx, name.as_str(), serial.as_str(), not_after, now)?;
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(version)
        })
    }

    /// Record a renewed certificate (not a config change: agents need not hear of it).
    pub fn record_certificate(
        &self,
        node: &NodeName,
        serial: &CertSerial,
        not_after: u64,
        now: u64,
    ) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            insert_cert(&tx, node.as_str(), serial.as_str(), not_after, now)?;
            // Forget certificates that expired long ago: the table stays bounded.
            tx.execute(
                "DELETE FROM certificates WHERE not_after < ?1",
                [now.saturating_sub(7 * 24 * 3600)],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Revoke a node: it can no longer renew, and the next config version tells every agent.
    pub fn revoke_node(&self, name: &NodeName, now: u64) -> Result<(SpiffeId, u64)> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(String, Option<u64>)> = tx
                .query_row(
                    "SELECT identity, revoked_at FROM nodes WHERE name = ?1",
                    [name.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((identity, revoked)) = row else {
                return Err(StoreError::NotFound(format!(
                    "no router named {name} in this home (trellis nodes lists them)"
                )));
            };
            if revoked.is_some() {
                return Err(StoreError::Conflict(format!(
                    "router {name} was already removed"
                )));
            }
            tx.execute(
                "UPDATE nodes SET revoked_at = ?2 WHERE name = ?1",
                params![name.as_str(), now],
            )?;
            tx.execute(
                "UPDATE certificates SET revoked = 1 WHERE node = ?1",
                [name.as_str()],
            )?;
            let version = bump(&tx)?;
            tx.commit()?;
            let identity = identity
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("node {name}: {e}")))?;
            Ok((identity, version))
        })
    }

    pub fn nodes(&self) -> Result<Vec<NodeRow>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT n.name, n.identity, n.enrolled_at, n.revoked_at,
                        (SELECT MAX(c.not_after) FROM certificates c WHERE c.node = n.name AND c.revoked = 0),
                        n.addresses,
                        n.label
                 FROM nodes n ORDER BY n.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u64>(2)?,
                    r.get::<_, Option<u64>>(3)?,
                    r.get::<_, Option<u64>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, identity, enrolled_at, revoked_at, cert_not_after, addresses, label) = row?;
                let addresses = serde_json::from_str(&addresses).map_err(|e| StoreError::Corrupt(format!("addresses of {name}: {e}")))?;
                out.push(NodeRow {
                    name: NodeName::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    identity: identity.parse().map_err(|e: trellis_proto::identity::IdentityError| StoreError::Corrupt(e.to_string()))?,
                    enrolled_at,
                    revoked_at,
                    cert_not_after,
                    addresses,
                    label,
                });
            }
            Ok(out)
        })
    }

    /// Record where a node's tunnel endpoint is; bumps the config version only when it moved.
    pub fn set_node_addresses(&self, name: &NodeName, addresses: &[String]) -> Result<Option<u64>> {
        let json =
            serde_json::to_string(addresses).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE nodes SET addresses = ?2 WHERE name = ?1 AND addresses != ?2",
                params![name.as_str(), json],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(Some(version))
        })
    }

    /// Serials of the certificates issued to `node` that are neither revoked nor expired,
    /// newest first (renewals are few: at most 16 are looked at).
    pub fn valid_serials(&self, node: &NodeName, now: u64) -> Result<Vec<CertSerial>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT serial FROM certificates WHERE node = ?1 AND revoked = 0 AND not_after > ?2 ORDER BY issued_at DESC, rowid DESC LIMIT 16",
            )?;
            let rows = stmt.query_map(params![node.as_str(), now], |r| {
                r.get::<_, String>(0).map(CertSerial::from)
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Serials of revoked certificates that have not expired yet.
    pub fn revoked_serials(&self, now: u64) -> Result<Vec<CertSerial>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT serial FROM certificates WHERE revoked = 1 AND not_after > ?1 ORDER BY serial",
            )?;
            let rows = stmt.query_map([now], |r| r.get::<_, String>(0).map(CertSerial::from))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Name a device (by MAC) and put it in a group; bumps the config version.
    pub fn put_device(&self, device: &DeviceRow, now: u64) -> Result<u64> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let group_exists: bool = tx
                .query_row("SELECT 1 FROM groups WHERE name = ?1", [&device.group], |_| Ok(()))
                .optional()?
                .is_some();
            if !group_exists {
                return Err(StoreError::NotFound(format!(
                    "no device group {:?}: the groups are trusted, iot, guest and those you made",
                    device.group
                )));
            }
            tx.execute(
                "INSERT INTO devices (mac, name, grp, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(mac) DO UPDATE SET name = excluded.name, grp = excluded.grp, updated_at = excluded.updated_at",
                params![device.mac, device.name, device.group, now],
            )?;
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(version)
        })
    }

    /// Give a router a label for people (not a config change: agents never see it).
    pub fn set_node_label(&self, name: &NodeName, label: Option<&str>) -> Result<()> {
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE nodes SET label = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name.as_str(), label],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!(
                    "no router named {name} in this home (it may have been removed)"
                )));
            }
            Ok(())
        })
    }

    /// The device groups, built-in ones first.
    pub fn groups(&self) -> Result<Vec<(String, bool)>> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare("SELECT name, builtin FROM groups ORDER BY builtin DESC, name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn admin_password(&self) -> Result<Option<PasswordRecord>> {
        self.with(|conn| {
            Ok(conn
                .query_row(
                    "SELECT algorithm, iterations, salt, hash, set_at FROM admin_password WHERE id = 1",
                    [],
                    |r| {
                        Ok(PasswordRecord {
                            algorithm: r.get(0)?,
                            iterations: r.get(1)?,
                            salt: r.get(2)?,
                            hash: r.get(3)?,
                            set_at: r.get(4)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// Set the admin password only if none is set yet (first run); `Conflict` otherwise, so
    /// two browsers racing through first run cannot overwrite each other.
    pub fn set_first_admin_password(&self, rec: &PasswordRecord) -> Result<()> {
        self.with(|conn| {
            let inserted = conn.execute(
                "INSERT INTO admin_password (id, algorithm, iterations, salt, hash, set_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO NOTHING",
                params![
                    rec.algorithm,
                    rec.iterations,
                    rec.salt,
                    rec.hash,
                    rec.set_at
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(
                    "the admin password is already set: log in with it".into(),
                ));
            }
            Ok(())
        })
    }

    /// Forget the admin password (reset from the router's shell); `true` if one was set.
    pub fn clear_admin_password(&self) -> Result<bool> {
        self.with(|conn| Ok(conn.execute("DELETE FROM admin_password", [])? > 0))
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT mac, name, grp FROM devices ORDER BY mac")?;
            let rows = stmt.query_map([], |r| {
                Ok(DeviceRow {
                    mac: r.get(0)?,
                    name: r.get(1)?,
                    group: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

impl Store {
    /// The home's wifi networks (none until someone sets one).
    pub fn wifi(&self) -> Result<HomeWifi> {
        self.with(|conn| {
            let json: Option<String> = conn
                .query_row("SELECT record FROM wifi WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            json.map(|j| {
                serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("wifi: {e}")))
            })
            .transpose()
            .map(Option::unwrap_or_default)
        })
    }

    /// Replace the home's wifi (validated by the caller). Flash is written and the config
    /// version bumped only when it differs from what is stored: `None` when it was the same.
    pub fn put_wifi(&self, wifi: &HomeWifi) -> Result<Option<u64>> {
        let json = serde_json::to_string(wifi).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let old: Option<String> = tx
                .query_row("SELECT record FROM wifi WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            if old.as_deref() == Some(json.as_str())
                || (old.is_none() && *wifi == HomeWifi::default())
            {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO wifi (id, record) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                [&json],
            )?;
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(Some(version))
        })
    }

    /// The policy people wrote, or `None` before anyone changed the defaults.
    pub fn policy(&self) -> Result<Option<Policy>> {
        self.with(|conn| {
            let json: Option<String> = conn
                .query_row("SELECT record FROM policies WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            json.map(|j| {
                serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))
            })
            .transpose()
        })
    }

    /// Replace the policy (validated by the caller); its groups become valid device groups.
    pub fn put_policy(&self, policy: &Policy) -> Result<u64> {
        let json = serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO policies (id, record) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                [&json],
            )?;
            for g in &policy.groups {
                tx.execute(
                    "INSERT OR IGNORE INTO groups (name, builtin) VALUES (?1, 0)",
                    [&g.name],
                )?;
            }
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(version)
        })
    }

    pub fn services(&self) -> Result<Vec<Service>> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT name, record FROM services ORDER BY name")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, json) = row?;
                out.push(
                    serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("service {name}: {e}")))?,
                );
            }
            Ok(out)
        })
    }

    /// Insert or replace a catalog entry; bumps the config version.
    pub fn put_service(&self, service: &Service) -> Result<u64> {
        let json =
            serde_json::to_string(service).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO services (name, record) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET record = excluded.record",
                params![service.name, json],
            )?;
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(version)
        })
    }

    pub fn remove_service(&self, name: &str) -> Result<u64> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if tx.execute("DELETE FROM services WHERE name = ?1", [name])? == 0 {
                return Err(StoreError::NotFound(format!(
                    "no service named {name:?} (trellis services lists them)"
                )));
            }
            let version = bump(&tx)?;
            tx.commit()?;
            Ok(version)
        })
    }
}

fn read_home(conn: &Connection) -> Result<Option<HomeRecord>> {
    let ca: Option<(String, String)> = conn
        .query_row("SELECT cert_pem, key_pem FROM ca WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((ca_cert_pem, ca_key_pem)) = ca else {
        return Ok(None);
    };
    let meta = |key: &str| -> Result<String> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("meta key {key} missing")))
    };
    Ok(Some(HomeRecord {
        home_id: HomeId::new(meta("home_id")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        ca_cert_pem,
        ca_key_pem,
        mesh: MeshCredentials {
            mesh_id: meta("mesh_id")?,
            sae_password: meta("sae_password")?,
        },
    }))
}

fn config_version(conn: &Connection) -> Result<u64> {
    let v: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'config_version'",
        [],
        |r| r.get(0),
    )?;
    v.parse()
        .map_err(|_| StoreError::Corrupt(format!("config_version {v:?} is not a number")))
}

fn bump(tx: &rusqlite::Transaction<'_>) -> Result<u64> {
    let next = config_version(tx)? + 1;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'config_version'",
        [next.to_string()],
    )?;
    Ok(next)
}

fn insert_cert(
    tx: &rusqlite::Transaction<'_>,
    node: &str,
    serial: &str,
    not_after: u64,
    now: u64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO certificates (serial, node, issued_at, not_after, revoked) VALUES (?1, ?2, ?3, ?4, 0)",
        params![serial, node, now, not_after],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
