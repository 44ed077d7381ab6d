//! Radar sightings handed from the mesh supervisor (`trellis-agent mesh`, which hears the
//! radio's RADAR_DETECT events) to `trellis-agent run` (which reports them to the controller
//! with the telemetry): a small JSON file next to the link report, on tmpfs, written only when
//! a radar is detected and holding the last [`MAX_RADAR_SEEN`].

use std::path::{Path, PathBuf};

use trellis_proto::channel::{RadarSeen, MAX_RADAR_SEEN};

/// Beside [`super::mesh::LINK_REPORT_FILE`] in the supervisor's run directory.
pub const RADAR_FILE: &str = "mesh-radar.json";

/// Sightings older than this are no longer news (the controller closed the channel for the
/// 30-minute non-occupancy period when it first heard of them).
const KEEP_S: u64 = 30 * 60;

/// The radar file beside a link report file.
pub fn beside(link_report: &Path) -> PathBuf {
    link_report.with_file_name(RADAR_FILE)
}

/// The recent sightings in `path` (none when it is missing or damaged; read bounded).
pub fn read(path: &Path, now_unix: u64) -> Vec<RadarSeen> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut text = Vec::new();
    if file.take(4096).read_to_end(&mut text).is_err() {
        return Vec::new();
    }
    let mut seen: Vec<RadarSeen> = serde_json::from_slice(&text).unwrap_or_default();
    seen.retain(|r| r.at_unix + KEEP_S > now_unix);
    let extra = seen.len().saturating_sub(MAX_RADAR_SEEN);
    seen.drain(..extra);
    seen
}

/// Adds a sighting to the file in `run_dir` (replaced atomically).
pub fn record(run_dir: &Path, freq_mhz: u32, now_unix: u64) -> std::io::Result<()> {
    let path = run_dir.join(RADAR_FILE);
    let mut seen = read(&path, now_unix);
    seen.push(RadarSeen {
        freq_mhz,
        at_unix: now_unix,
    });
    let extra = seen.len().saturating_sub(MAX_RADAR_SEEN);
    seen.drain(..extra);
    let json = serde_json::to_vec(&seen).map_err(std::io::Error::other)?;
    trellis_io::files::replace(&path, &json, 0o644, trellis_io::files::Medium::Ram)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings_are_kept_bounded_and_age_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..12u32 {
            record(dir.path(), 5260 + 20 * (i % 4), 1_000 + u64::from(i)).expect("written");
        }
        let file = beside(&dir.path().join(crate::mesh::LINK_REPORT_FILE));
        let seen = read(&file, 1_020);
        assert_eq!(seen.len(), MAX_RADAR_SEEN);
        assert_eq!(seen.last().map(|r| r.at_unix), Some(1_011));
        assert!(read(&file, 1_011 + KEEP_S).is_empty());
        std::fs::write(&file, b"{damaged").expect("written");
        assert!(read(&file, 1_020).is_empty());
    }
}
