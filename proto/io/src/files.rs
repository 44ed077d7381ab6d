//! Replacing a file so that a reader, a `kill -9` or a power cut never sees half of it.
//!
//! Every file either daemon writes goes through [`replace`]: the new content goes to a
//! temporary file beside it, created with its final mode (a secret is never readable by
//! others, not even for a moment), and is renamed over the old one. Where the file lives
//! decides the rest ([`Medium`]): on flash it is written only when its content changes (flash
//! wears) and synced before and after the rename; in RAM it is rewritten every time, because
//! its readers take its age as a sign of life. The work runs through
//! [`crate::runtime::blocking`], off the async workers.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// On the router's flash (`/etc`): kept across reboots, written only on a change, synced.
    Flash,
    /// In RAM (`/var/run`, a tmpfs): gone at reboot, rewritten every time (its mtime is a
    /// heartbeat), nothing to sync.
    Ram,
}

/// Replaces `path` with `content`, created with `mode`. Returns whether it wrote (on
/// [`Medium::Flash`], an unchanged file is left alone).
pub fn replace(path: &Path, content: &[u8], mode: u32, medium: Medium) -> io::Result<bool> {
    crate::runtime::blocking(|| {
        if medium == Medium::Flash && fs::read(path).is_ok_and(|old| old == content) {
            return Ok(false);
        }
        let tmp = temporary(path);
        let written = write_new(&tmp, content, mode, medium).and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if medium == Medium::Flash {
            // The rename itself is only durable once the directory is.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(true)
    })
}

fn write_new(tmp: &Path, content: &[u8], mode: u32, medium: Medium) -> io::Result<()> {
    // Left over from a writer that was killed: never ours to trust.
    let _ = fs::remove_file(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have taken bits the file needs (a group-readable config).
    f.set_permissions(Permissions::from_mode(mode))?;
    f.write_all(content)?;
    if medium == Medium::Flash {
        f.sync_all()?;
    }
    Ok(())
}

/// `.name.tmp` beside `path`: hidden, and on the same file system, so the rename is atomic.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("trellis-io-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn flash_files_are_written_only_on_a_change_with_their_mode() {
        let dir = scratch("flash");
        let path = dir.join("identity.pem");
        assert!(replace(&path, b"one", 0o600, Medium::Flash).expect("first write"));
        assert!(!replace(&path, b"one", 0o600, Medium::Flash).expect("same content"));
        assert!(replace(&path, b"two", 0o600, Medium::Flash).expect("changed"));
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["identity.pem"], "no temporary file is left behind");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn ram_files_are_rewritten_every_time_and_a_stale_temporary_is_replaced() {
        let dir = scratch("ram");
        let path = dir.join("mesh-links.json");
        // A writer killed mid-write left its temporary, even a read-only one.
        let stale = temporary(&path);
        fs::write(&stale, b"half").expect("stale");
        fs::set_permissions(&stale, Permissions::from_mode(0o400)).expect("chmod");
        assert!(replace(&path, b"{}", 0o644, Medium::Ram).expect("write"));
        assert!(replace(&path, b"{}", 0o644, Medium::Ram).expect("rewrite"));
        assert_eq!(fs::read(&path).expect("read"), b"{}");
        assert!(!stale.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("node.json");
        replace(&path, b"old", 0o644, Medium::Flash).expect("first");
        // A directory where the temporary should go: the write fails, the old file stays.
        fs::create_dir(temporary(&path)).expect("block the temporary");
        assert!(replace(&path, b"new", 0o644, Medium::Flash).is_err());
        assert_eq!(fs::read(&path).expect("read"), b"old");
        let _ = fs::remove_dir_all(&dir);
    }
}
