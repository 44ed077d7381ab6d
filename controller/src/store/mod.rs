//! The controller's embedded store: SQLite through rusqlite (bundled, so no system library).
//!
//! Why SQLite rather than redb: it is the most crash-tested embedded store there is, WAL mode
//! with `synchronous=FULL` makes every acknowledged commit durable across `kill -9` and power
//! loss, it is plain C that cross-compiles to every router CPU with `zig cc`, and it needs no
//! 64-bit atomics (MIPS32 has none). Routers' flash wears, so only state changes are written:
//! telemetry and acknowledgements live in RAM.
//!
//! The schema is versioned with `PRAGMA user_version`; [`migrations`] lists every step.
//!
//! The queries are spread by what they keep, each file an `impl Store` block: `home.rs` (the
//! home's ID, CA and mesh credentials, the portal router), `nodes.rs` (enrolled routers and
//! their certificates), `devices.rs` (the device book and its groups), `admin_password.rs`
//! (the web page's password record), `config.rs` (wifi, policy and the service catalog),
//! `channel.rs` (the mesh channel). This file holds the store itself, its errors and the
//! config version every change bumps.

mod admin_password;
mod channel;
mod config;
mod devices;
mod home;
mod migrations;
mod nodes;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

pub use admin_password::PasswordRecord;
pub use devices::DeviceRow;
pub use home::HomeRecord;
pub use nodes::NodeRow;

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

    pub fn config_version(&self) -> Result<u64> {
        self.with(|conn| config_version(conn))
    }
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

#[cfg(test)]
mod tests;
