//! The device book: devices by MAC, the name people gave them and their group, and the
//! device groups themselves.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{bump, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub mac: String,
    pub name: String,
    pub group: String,
}

impl Store {
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

    /// The device groups, built-in ones first.
    pub fn groups(&self) -> Result<Vec<(String, bool)>> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare("SELECT name, builtin FROM groups ORDER BY builtin DESC, name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
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
