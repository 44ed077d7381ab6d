//! What people set for the whole home, each change bumping the config version: the wifi
//! networks, the policy (whose groups become device groups) and the service catalog.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use trellis_proto::catalog::Service;
use trellis_proto::home_wifi::HomeWifi;
use trellis_proto::policy::Policy;

use super::{bump, Result, Store, StoreError};

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
