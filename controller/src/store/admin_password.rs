//! The web page's admin password record (algorithm, costs, salt and hash, never the
//! password): read, set once on first run, cleared from the router's shell.

use rusqlite::{params, OptionalExtension};

use super::{Result, Store, StoreError};

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

impl Store {
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
}
