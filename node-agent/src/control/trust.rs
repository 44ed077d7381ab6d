//! Which peers this node accepts, from the last applied config snapshot.

use std::sync::Arc;

use tokio::sync::watch;
use trellis_proto::snapshot::ConfigSnapshot;
use trellis_proto::{CertSerial, SpiffeId};

/// The trust view the data plane consults: enrolled nodes of this home, minus revocations.
/// Cheap to clone; always reflects the newest applied snapshot.
#[derive(Clone, Debug)]
pub struct Trust {
    rx: watch::Receiver<Option<Arc<ConfigSnapshot>>>,
}

impl Trust {
    pub fn new(rx: watch::Receiver<Option<Arc<ConfigSnapshot>>>) -> Self {
        Self { rx }
    }

    pub fn snapshot(&self) -> Option<Arc<ConfigSnapshot>> {
        self.rx.borrow().clone()
    }

    pub fn version(&self) -> u64 {
        self.snapshot().map(|s| s.version).unwrap_or(0)
    }

    /// Whether a peer presenting `identity` with certificate `serial` is accepted, and if
    /// not, why (for the access log).
    pub fn check(&self, identity: &SpiffeId, serial: &CertSerial) -> Result<(), String> {
        let Some(snapshot) = self.snapshot() else {
            return Err("no configuration from the controller yet".into());
        };
        snapshot
            .admit(identity, serial)
            .map_err(|refused| refused.to_string())
    }

    /// Wait for the next applied snapshot (waits for ever once the agent has stopped).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Wait until a snapshot at least `version` is applied.
    pub async fn wait_for_version(&mut self, version: u64) -> Option<Arc<ConfigSnapshot>> {
        self.rx
            .wait_for(|s| s.as_ref().is_some_and(|s| s.version >= version))
            .await
            .ok()
            .and_then(|s| s.clone())
    }
}
