//! The home itself: its ID, CA and mesh credentials (created once, on first start, in one
//! transaction), and the router the controller runs on (the map's portal).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use trellis_proto::snapshot::MeshCredentials;
use trellis_proto::{HomeId, NodeName};

use super::{Result, Store, StoreError};

/// What defines a home: its ID, its CA and its mesh credentials.
#[derive(Clone)]
pub struct HomeRecord {
    pub home_id: HomeId,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub mesh: MeshCredentials,
}

impl Store {
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
