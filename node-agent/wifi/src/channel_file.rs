//! The home's mesh channel, handed from `trellis-agent run` (which applies the controller's
//! snapshots) to the mesh supervisor (`trellis-agent mesh`, which moves the radio): a small
//! JSON file beside the link report, on tmpfs. The agent writes it whenever the channel in its
//! applied snapshot changes, and at start from the stored one, so a supervisor restarted or
//! started late finds it; the supervisor reads it on every poll. Each file has one writer,
//! and the data goes one way through it, as with the link report in the other direction.

use std::path::{Path, PathBuf};

use trellis_io::files::{replace, Medium};
use trellis_proto::channel::MeshChannel;

/// Beside [`crate::mesh::LINK_REPORT_FILE`] in the supervisor's run directory.
pub const CHANNEL_FILE: &str = "mesh-channel.json";

/// The longest file read: one [`MeshChannel`] is a few hundred bytes.
const MAX_BYTES: u64 = 4096;

/// The channel file beside a link report file.
pub fn beside(link_report: &Path) -> PathBuf {
    link_report.with_file_name(CHANNEL_FILE)
}

/// Writes the channel the home's mesh is on (`None`: the controller named none, so the
/// supervisor stays on its configured channel; the file goes).
pub fn write(path: &Path, channel: Option<&MeshChannel>) -> std::io::Result<()> {
    match channel {
        Some(c) => {
            let json = serde_json::to_vec(c).map_err(std::io::Error::other)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            replace(path, &json, 0o644, Medium::Ram).map(|_| ())
        }
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The channel in `path`, if there is one and it reads (bounded; a damaged file is none).
pub fn read(path: &Path) -> Option<MeshChannel> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = Vec::new();
    file.take(MAX_BYTES).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::channel::Width;

    #[test]
    fn the_channel_goes_through_and_none_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = beside(&dir.path().join(crate::mesh::LINK_REPORT_FILE));
        assert_eq!(read(&path), None);
        let c = MeshChannel {
            freq_mhz: 2437,
            width: Width::Mhz20,
            center_freq_mhz: 2437,
            generation: 3,
            switch_at_unix: 1_800_000_000,
            reason: "set by a person".into(),
        };
        write(&path, Some(&c)).expect("write");
        assert_eq!(read(&path), Some(c));
        write(&path, None).expect("remove");
        assert_eq!(read(&path), None);
        write(&path, None).expect("removing nothing is fine");
        std::fs::write(&path, b"{\"freq_mhz\": 24").expect("damaged");
        assert_eq!(read(&path), None, "a damaged file is no channel");
    }
}
