//! What the agent keeps on flash, in its state directory (0700):
//!
//! - `node.json`: who this node is, its home, where the controller is;
//! - `ca.pem`: the home root CA pinned at pairing;
//! - `identity.pem`: the node's certificate and private key in one file (0600), so a renewal
//!   replaces both in one atomic rename;
//! - `mesh.json` (0600): the mesh credentials handed over at pairing;
//! - `snapshot.json` (0600): the last config snapshot applied, so the agent keeps working
//!   when the controller is gone (fail static).
//!
//! Every write goes through [`trellis_io::files::replace`] on [`Medium::Flash`]: a `kill -9`
//! or power cut leaves the old file or the new one, never half of one, and files are written
//! only when their content changes (flash wears).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trellis_io::files::Medium;
use trellis_proto::snapshot::{ConfigSnapshot, MeshCredentials};
use trellis_proto::{HomeId, SpiffeId};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("this router has not joined a home yet ({0} is missing): run `trellis-agent join <controller-address> <code>`")]
    NotJoined(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({detail}); re-pair this router: `trellis-agent join --force <controller> <code>`")]
    Damaged { path: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, StateError>;

/// Who this node is and where its controller lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub identity: SpiffeId,
    pub home_id: HomeId,
    /// host:port of the controller's agent API.
    pub controller: String,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn create(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|_| fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)))
            .map_err(|source| StateError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    pub fn is_joined(&self) -> bool {
        self.file("node.json").exists() && self.file("identity.pem").exists()
    }

    /// Write a file atomically with the given mode, unless it already holds `content`.
    pub fn write(&self, name: &str, content: &[u8], mode: u32) -> Result<bool> {
        let path = self.file(name);
        trellis_io::files::replace(&path, content, mode, Medium::Flash)
            .map_err(|source| StateError::Io { path, source })
    }

    pub fn read(&self, name: &str) -> Result<String> {
        let path = self.file(name);
        fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StateError::NotJoined(path)
            } else {
                StateError::Io { path, source }
            }
        })
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let text = self.read(name)?;
        serde_json::from_str(&text).map_err(|e| StateError::Damaged {
            path: self.file(name),
            detail: e.to_string(),
        })
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T, mode: u32) -> Result<bool> {
        let text = serde_json::to_vec_pretty(value).map_err(|e| StateError::Damaged {
            path: self.file(name),
            detail: e.to_string(),
        })?;
        self.write(name, &text, mode)
    }

    pub fn node(&self) -> Result<NodeRecord> {
        self.read_json("node.json")
    }
    pub fn save_node(&self, node: &NodeRecord) -> Result<bool> {
        self.write_json("node.json", node, 0o644)
    }

    pub fn ca_pem(&self) -> Result<String> {
        self.read("ca.pem")
    }
    pub fn save_ca_pem(&self, pem: &str) -> Result<bool> {
        self.write("ca.pem", pem.as_bytes(), 0o644)
    }

    pub fn identity_pem(&self) -> Result<String> {
        self.read("identity.pem")
    }
    pub fn save_identity_pem(&self, cert_and_key: &str) -> Result<bool> {
        self.write("identity.pem", cert_and_key.as_bytes(), 0o600)
    }

    pub fn mesh(&self) -> Result<MeshCredentials> {
        self.read_json("mesh.json")
    }
    pub fn save_mesh(&self, mesh: &MeshCredentials) -> Result<bool> {
        self.write_json("mesh.json", mesh, 0o600)
    }

    /// The last applied snapshot, if any.
    pub fn snapshot(&self) -> Result<Option<ConfigSnapshot>> {
        match self.read_json("snapshot.json") {
            Ok(s) => Ok(Some(s)),
            Err(StateError::NotJoined(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
    pub fn save_snapshot(&self, snapshot: &ConfigSnapshot) -> Result<bool> {
        self.write_json("snapshot.json", snapshot, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_private_and_skipped_when_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        state.create().unwrap();
        let mode = fs::metadata(state.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(state.save_identity_pem("CERT\nKEY\n").unwrap());
        assert!(
            !state.save_identity_pem("CERT\nKEY\n").unwrap(),
            "unchanged content is not rewritten"
        );
        let mode = fs::metadata(state.path().join("identity.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(state.identity_pem().unwrap(), "CERT\nKEY\n");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn missing_and_damaged_state_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let err = state.node().unwrap_err().to_string();
        assert!(err.contains("trellis-agent join"), "{err}");
        fs::write(dir.path().join("node.json"), "{ half a fi").unwrap();
        let err = state.node().unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("re-pair"), "{err}");
        assert!(state.snapshot().unwrap().is_none());
    }
}
