//! The routers of the home: enrolling, renaming for people, where their tunnels are,
//! removing them, and the certificates issued to them (valid and revoked serials).

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use trellis_proto::{CertSerial, NodeName, SpiffeId};

use super::{bump, Result, Store, StoreError};

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

impl Store {
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
