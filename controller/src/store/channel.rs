//! The home's channel state ([`crate::channel::ChannelState`]) as one JSON record in `meta`
//! (key `mesh_channel`): no table of its own, written only when it changes.

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::{bump, Result, Store, StoreError};
use crate::channel::ChannelState;

const KEY: &str = "mesh_channel";

impl Store {
    /// The stored channel state (the default before anyone chose a channel).
    pub fn channel_state(&self) -> Result<ChannelState> {
        self.with(|conn| {
            let json: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [KEY], |r| r.get(0))
                .optional()?;
            json.map(|j| {
                serde_json::from_str(&j)
                    .map_err(|e| StoreError::Corrupt(format!("mesh channel: {e}")))
            })
            .transpose()
            .map(Option::unwrap_or_default)
        })
    }

    /// Replaces the channel state; returns the new config version when the snapshot's part
    /// of it (the channel) changed, `None` when only controller-side rules did (or nothing).
    pub fn put_channel_state(&self, state: &ChannelState) -> Result<Option<u64>> {
        let old = self.channel_state()?;
        if &old == state {
            return Ok(None);
        }
        let json = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [KEY, json.as_str()],
            )?;
            let version = if old.channel != state.channel {
                Some(bump(&tx)?)
            } else {
                None
            };
            tx.commit()?;
            Ok(version)
        })
    }
}
