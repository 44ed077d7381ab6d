//! Hands the home's mesh channel to the mesh supervisor: follows the applied snapshot and,
//! whenever its `mesh_channel` changes (and once at start, from the stored snapshot), writes it
//! to the file the supervisor reads ([`trellis_wifi::channel_file`]). The supervisor moves the
//! radio; this side only says where the home's mesh is.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use trellis_proto::channel::MeshChannel;
use trellis_proto::snapshot::ConfigSnapshot;

/// Follows `snapshots` until they end, keeping `file` in step with their mesh channel.
pub async fn follow(mut snapshots: watch::Receiver<Option<Arc<ConfigSnapshot>>>, file: PathBuf) {
    // Something the first snapshot never is, so the stored channel is written at start.
    let mut written: Option<Option<MeshChannel>> = None;
    loop {
        let channel = snapshots
            .borrow_and_update()
            .as_ref()
            .map(|s| s.mesh_channel.clone());
        if let Some(channel) = channel {
            if written.as_ref() != Some(&channel) {
                match trellis_io::runtime::blocking(|| {
                    trellis_wifi::channel_file::write(&file, channel.as_ref())
                }) {
                    Ok(()) => written = Some(channel),
                    Err(e) => tracing::warn!(
                        "could not hand the mesh channel to the mesh supervisor ({}): {e}",
                        file.display()
                    ),
                }
            }
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::channel::Width;

    fn snapshot(channel: Option<MeshChannel>) -> Option<Arc<ConfigSnapshot>> {
        let mut s: ConfigSnapshot = serde_json::from_value(serde_json::json!({
            "version": 1, "home_id": "home1", "ca_pem": "", "nodes": [], "revoked": [],
            "mesh": { "mesh_id": "m", "sae_password": "p" },
        }))
        .expect("a snapshot");
        s.mesh_channel = channel;
        Some(Arc::new(s))
    }

    #[tokio::test]
    async fn the_supervisor_file_follows_the_snapshots_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = trellis_wifi::channel_file::beside(&dir.path().join("mesh-links.json"));
        let six = MeshChannel {
            freq_mhz: 2437,
            width: Width::Mhz20,
            center_freq_mhz: 2437,
            generation: 2,
            switch_at_unix: 1_800_000_000,
            reason: "set by a person".into(),
        };
        // The stored snapshot already names a channel: it is handed over at start.
        let (tx, rx) = watch::channel(snapshot(Some(six.clone())));
        let task = tokio::spawn(follow(rx, file.clone()));
        let read = || trellis_wifi::channel_file::read(&file);
        while read().is_none() {
            tokio::task::yield_now().await;
        }
        assert_eq!(read(), Some(six));
        // The controller drops the channel: the supervisor stays on its own.
        tx.send_replace(snapshot(None));
        while read().is_some() {
            tokio::task::yield_now().await;
        }
        drop(tx);
        task.await.expect("ends with the snapshots");
    }
}
