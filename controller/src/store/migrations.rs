//! Schema migrations, applied in order inside one transaction each. Never edit a shipped
//! step: add a new one (a router may be upgraded across many versions at once).
use rusqlite::Connection;

use super::{Result, StoreError};

const STEPS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('config_version', '1');
     CREATE TABLE ca (id INTEGER PRIMARY KEY CHECK (id = 1), cert_pem TEXT NOT NULL, key_pem TEXT NOT NULL);
     CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        identity TEXT NOT NULL UNIQUE,
        enrolled_at INTEGER NOT NULL,
        revoked_at INTEGER
     );
     CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        node TEXT NOT NULL REFERENCES nodes(name),
        issued_at INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX certificates_by_node ON certificates(node);
     CREATE TABLE groups (name TEXT PRIMARY KEY, builtin INTEGER NOT NULL DEFAULT 0);
     INSERT INTO groups (name, builtin) VALUES ('trusted', 1), ('iot', 1), ('guest', 1);
     CREATE TABLE devices (
        mac TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        grp TEXT NOT NULL REFERENCES groups(name),
        updated_at INTEGER NOT NULL
     );
     CREATE TABLE services (name TEXT PRIMARY KEY, record TEXT NOT NULL);
     CREATE TABLE policies (id INTEGER PRIMARY KEY, record TEXT NOT NULL);",
    // 2: where each node's tunnel endpoint is reachable (JSON list of ip:port), so peers
    // still know after a controller restart.
    "ALTER TABLE nodes ADD COLUMN addresses TEXT NOT NULL DEFAULT '[]';",
    // 3: the web page: the admin password (argon2id record, one row) and a label a person gives
    // each router (the node name stays the identity; a label can change without new
    // certificates).
    "CREATE TABLE admin_password (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        algorithm TEXT NOT NULL,
        iterations INTEGER NOT NULL,
        salt BLOB NOT NULL,
        hash BLOB NOT NULL,
        set_at INTEGER NOT NULL
     );
     ALTER TABLE nodes ADD COLUMN label TEXT;",
    // 4: the home's wifi networks and roaming keys (issue 15): one JSON record of
    // `trellis_proto::home_wifi::HomeWifi`, validated by its types when read and written.
    "CREATE TABLE wifi (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);",
];

/// The schema version this build writes.
pub const CURRENT: i64 = STEPS.len() as i64;

pub fn apply(conn: &mut Connection, path: &str) -> Result<()> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::Unreadable {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if found > CURRENT {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: CURRENT,
        });
    }
    for (i, step) in STEPS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
