//! SAE-encrypted mesh through wpa_supplicant: the agent writes its mesh config (`user_mpm=1`,
//! `mode=5`, `key_mgmt=SAE`), runs and restarts it, and talks to its control socket (STATUS,
//! ATTACH for MESH-* events).
//!
//! wpa_supplicant is used, not a Rust SAE: it is what OpenWrt ships (`wpad-mesh-*`), it is
//! reviewed crypto, and it already drives JOIN_MESH with the userspace peering (AMPE) the
//! kernel expects for a secured mesh. The SAE password never reaches a log line: it lives in
//! [`SaePassword`], whose `Debug` is redacted, and in a 0600 config file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use trellis_proto::policy::MacAddr;

use crate::ctrl::{CtrlError, CtrlSocket};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mesh ID {0:?} is not usable: 1-32 printable ASCII characters without quotes")]
    BadMeshId(String),
    #[error("the SAE password is not usable: {0}")]
    BadPassword(&'static str),
    #[error("cannot write wpa_supplicant config {path}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program} (is wpa_supplicant installed? OpenWrt: wpad-mesh-mbedtls)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wpa_supplicant: {0}")]
    Ctrl(#[from] CtrlError),
}

/// The mesh SAE password. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SaePassword(String);

impl SaePassword {
    /// Checks what wpa_supplicant's quoted `sae_password="…"` can carry: printable ASCII without
    /// `"`, 8 to 128 characters (8 as WPA's floor; the controller generates long random ones).
    pub fn new(s: &str) -> Result<Self, Error> {
        let s = s.trim_end_matches(['\n', '\r']);
        if s.len() < 8 {
            return Err(Error::BadPassword("shorter than 8 characters"));
        }
        if s.len() > 128 {
            return Err(Error::BadPassword("longer than 128 characters"));
        }
        if !s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"') {
            return Err(Error::BadPassword(
                "only printable ASCII without double quotes is allowed",
            ));
        }
        Ok(Self(s.to_string()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SaePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaePassword(<redacted>)")
    }
}

/// Checks a mesh ID for the quoted `ssid="…"` of the config (and for the 32-byte IE).
pub fn check_mesh_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"')
    {
        return Err(Error::BadMeshId(id.chars().take(40).collect()));
    }
    Ok(())
}

/// wpa_supplicant's `mesh_max_inactivity` (a global option, in seconds; its default 300):
/// a mesh peer not heard from for this long is removed (it becomes the mesh BSS's
/// `ap_max_inactivity` and the kernel's `peer_link_timeout`). Five minutes kept a powered-off
/// router's links up; the link health already stops counting one after
/// [`super::health::SILENT_MS`], this removes the station so the peering can start afresh.
pub const MESH_MAX_INACTIVITY_S: u32 = 20;

/// What goes into the wpa_supplicant mesh config.
#[derive(Debug, Clone)]
pub struct SupplicantConfig {
    pub mesh_id: String,
    pub freq_mhz: u32,
    pub password: SaePassword,
    /// `mesh_fwding`: 1 on every node of a Trellis mesh; 0 only for a node whose wired
    /// backhaul must not also forward over the air (see [`super::role`]).
    pub mesh_fwding: bool,
    /// Directory of the control sockets (`ctrl_interface`).
    pub ctrl_dir: PathBuf,
}

impl SupplicantConfig {
    /// The config text. `user_mpm=1` has wpa_supplicant run peering (AMPE) itself, as the kernel
    /// requires for a secured mesh; `mode=5` is mesh. `sae_password` rather than `psk` because
    /// it has no 63-character limit.
    pub fn render(&self) -> String {
        format!(
            "ctrl_interface={ctrl}\n\
             user_mpm=1\n\
             mesh_max_inactivity={inactivity}\n\
             network={{\n\
             \tssid=\"{id}\"\n\
             \tmode=5\n\
             \tfrequency={freq}\n\
             \tkey_mgmt=SAE\n\
             \tsae_password=\"{pw}\"\n\
             \tmesh_fwding={fwd}\n\
             }}\n",
            ctrl = self.ctrl_dir.display(),
            id = self.mesh_id,
            freq = self.freq_mhz,
            pw = self.password.expose(),
            fwd = u8::from(self.mesh_fwding),
            inactivity = MESH_MAX_INACTIVITY_S,
        )
    }

    /// Writes the config with mode 0600 (it holds the password).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| Error::WriteConfig {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(self.render().as_bytes()).map_err(err)
    }
}

/// A running wpa_supplicant, owned by the agent (killed when dropped).
pub struct Supplicant {
    child: tokio::process::Child,
    pub iface: String,
    pub ctrl_dir: PathBuf,
}

impl Supplicant {
    /// Starts `wpa_supplicant -D nl80211 -i IFACE -c CONFIG` in the foreground, as our child,
    /// so its exit is seen and it can be restarted. Its own log goes to `log` when given.
    pub fn spawn(
        program: &str,
        iface: &str,
        config: &Path,
        ctrl_dir: &Path,
        log: Option<&Path>,
    ) -> Result<Self, Error> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(["-D", "nl80211", "-i", iface, "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(log) = log {
            cmd.arg("-f").arg(log);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: program.to_string(),
            source,
        })?;
        Ok(Self {
            child,
            iface: iface.to_string(),
            ctrl_dir: ctrl_dir.to_path_buf(),
        })
    }

    /// The control socket path (`ctrl_interface` dir + interface name).
    pub fn ctrl_path(&self) -> PathBuf {
        self.ctrl_dir.join(&self.iface)
    }

    /// Whether it exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A client of the wpa_supplicant control socket ([`crate::ctrl`], as `wpa_cli` uses it).
pub struct Ctrl(CtrlSocket);

impl Ctrl {
    /// Connects to `remote` (e.g. `/run/wpa_supplicant/mesh0`). Retries for up to `patience`
    /// because wpa_supplicant creates the socket a moment after it starts.
    pub async fn connect(remote: &Path, patience: Duration) -> Result<Self, Error> {
        Ok(Self(CtrlSocket::connect(remote, patience).await?))
    }

    /// Sends a command and returns the reply.
    pub async fn request(&self, command: &str) -> Result<String, Error> {
        Ok(self.0.request(command).await?)
    }

    /// `STATUS`, as key=value pairs.
    pub async fn status(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(parse_status(&self.request("STATUS").await?))
    }

    /// `ATTACH`: from now on this socket also receives events.
    pub async fn attach(&self) -> Result<(), Error> {
        Ok(self.0.attach().await?)
    }

    /// The next event on an attached socket.
    pub async fn next_event(&self) -> Result<SupplicantEvent, Error> {
        Ok(parse_event(&self.0.next_event().await?))
    }
}

/// What the agent understands of wpa_supplicant's mesh events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupplicantEvent {
    /// `MESH-GROUP-STARTED ssid="…" id=0`: joined the mesh.
    GroupStarted,
    /// `MESH-GROUP-REMOVED`: left the mesh.
    GroupRemoved,
    /// `MESH-PEER-CONNECTED MAC`: SAE and AMPE done, link established.
    PeerConnected(MacAddr),
    /// `MESH-PEER-DISCONNECTED MAC`.
    PeerDisconnected(MacAddr),
    /// `MESH-SAE-AUTH-FAILURE addr=MAC`: SAE with that peer failed (wrong password, or a peer
    /// with other credentials).
    SaeAuthFailure(MacAddr),
    /// `MESH-SAE-AUTH-BLOCKED addr=MAC duration=S`: wpa_supplicant stops trying for S seconds.
    SaeAuthBlocked { peer: MacAddr, seconds: u32 },
    /// Anything else, kept short for the log.
    Other(String),
}

/// Parses one event message such as `<3>MESH-PEER-CONNECTED 02:00:00:00:01:00`.
pub fn parse_event(msg: &str) -> SupplicantEvent {
    let body = msg
        .trim()
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .map(|(_, b)| b)
        .unwrap_or(msg.trim());
    let mut words = body.split_whitespace();
    let name = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let mac_arg = |key: Option<&str>| -> Option<MacAddr> {
        rest.iter().find_map(|w| match key {
            Some(k) => w.strip_prefix(k).and_then(|v| v.parse().ok()),
            None => w.parse().ok(),
        })
    };
    let parsed = match name {
        "MESH-GROUP-STARTED" => Some(SupplicantEvent::GroupStarted),
        "MESH-GROUP-REMOVED" => Some(SupplicantEvent::GroupRemoved),
        "MESH-PEER-CONNECTED" => mac_arg(None).map(SupplicantEvent::PeerConnected),
        "MESH-PEER-DISCONNECTED" => mac_arg(None).map(SupplicantEvent::PeerDisconnected),
        "MESH-SAE-AUTH-FAILURE" => mac_arg(Some("addr=")).map(SupplicantEvent::SaeAuthFailure),
        "MESH-SAE-AUTH-BLOCKED" => mac_arg(Some("addr=")).map(|peer| {
            let seconds = rest
                .iter()
                .find_map(|w| w.strip_prefix("duration=").and_then(|v| v.parse().ok()))
                .unwrap_or(0);
            SupplicantEvent::SaeAuthBlocked { peer, seconds }
        }),
        _ => None,
    };
    parsed.unwrap_or_else(|| SupplicantEvent::Other(body.chars().take(160).collect()))
}

/// Parses a `STATUS` reply (`key=value` lines).
pub fn parse_status(reply: &str) -> BTreeMap<String, String> {
    reply
        .lines()
        .filter_map(|l| l.split_once('='))
        .take(64)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixDatagram;

    fn config() -> SupplicantConfig {
        SupplicantConfig {
            mesh_id: "trellis-home".into(),
            freq_mhz: 2437,
            password: SaePassword::new("correct horse battery").expect("valid"),
            mesh_fwding: true,
            ctrl_dir: "/run/trellis/wpa".into(),
        }
    }

    #[test]
    fn config_has_the_mesh_sae_settings() {
        let text = config().render();
        for want in [
            "ctrl_interface=/run/trellis/wpa\n",
            "user_mpm=1\n",
            // A powered-off peer goes after 20 s, not wpa_supplicant's default 300 s.
            "mesh_max_inactivity=20\n",
            "\tssid=\"trellis-home\"\n",
            "\tmode=5\n",
            "\tfrequency=2437\n",
            "\tkey_mgmt=SAE\n",
            "\tsae_password=\"correct horse battery\"\n",
            "\tmesh_fwding=1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn password_is_never_in_debug_output() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn config_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/wpa.conf");
        config().write(&path).expect("written");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn passwords_that_would_break_the_quoting_are_refused() {
        assert!(SaePassword::new("short").is_err());
        assert!(SaePassword::new("has\"quote-inside").is_err());
        assert!(SaePassword::new("new\nline-inside").is_err());
        assert!(SaePassword::new(&"x".repeat(129)).is_err());
        // a trailing newline from a password file is not part of it
        assert!(SaePassword::new("from-a-file-123\n").is_ok());
    }

    #[test]
    fn mesh_ids_are_checked() {
        assert!(check_mesh_id("trellis-home").is_ok());
        assert!(check_mesh_id("").is_err());
        assert!(check_mesh_id(&"m".repeat(33)).is_err());
        assert!(check_mesh_id("a\"b").is_err());
    }

    #[test]
    fn mesh_events_are_parsed() {
        let a: MacAddr = "02:00:00:00:01:00".parse().expect("mac");
        assert_eq!(
            parse_event("<3>MESH-PEER-CONNECTED 02:00:00:00:01:00"),
            SupplicantEvent::PeerConnected(a)
        );
        assert_eq!(
            parse_event("<3>MESH-PEER-DISCONNECTED 02:00:00:00:01:00"),
            SupplicantEvent::PeerDisconnected(a)
        );
        assert_eq!(
            parse_event("<3>MESH-SAE-AUTH-FAILURE addr=02:00:00:00:01:00"),
            SupplicantEvent::SaeAuthFailure(a)
        );
        assert_eq!(
            parse_event("<3>MESH-SAE-AUTH-BLOCKED addr=02:00:00:00:01:00 duration=60"),
            SupplicantEvent::SaeAuthBlocked {
                peer: a,
                seconds: 60
            }
        );
        assert_eq!(
            parse_event("<3>MESH-GROUP-STARTED ssid=\"trellis\" id=0"),
            SupplicantEvent::GroupStarted
        );
        assert!(matches!(
            parse_event("<3>MESH-PEER-CONNECTED not-a-mac"),
            SupplicantEvent::Other(_)
        ));
        assert!(matches!(parse_event(""), SupplicantEvent::Other(_)));
    }

    #[test]
    fn status_is_parsed() {
        let s = parse_status("wpa_state=COMPLETED\nmode=mesh\nssid=trellis\nbad line\n");
        assert_eq!(s.get("wpa_state").map(String::as_str), Some("COMPLETED"));
        assert_eq!(s.get("mode").map(String::as_str), Some("mesh"));
        assert_eq!(s.len(), 3);
    }

    #[tokio::test]
    async fn talks_to_a_control_socket() {
        // A fake wpa_supplicant: answers STATUS and ATTACH, then sends one event.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mesh0");
        let server = UnixDatagram::bind(&path).expect("bind");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                let from = from.as_pathname().expect("named client").to_path_buf();
                let reply: &[u8] = match &buf[..n] {
                    b"STATUS" => b"wpa_state=COMPLETED\nmode=mesh\n",
                    b"ATTACH" => b"OK\n",
                    _ => b"UNKNOWN COMMAND\n",
                };
                server.send_to(reply, &from).await.expect("send");
                if &buf[..n] == b"ATTACH" {
                    server
                        .send_to(b"<3>MESH-PEER-CONNECTED 02:00:00:00:02:00", &from)
                        .await
                        .expect("event");
                }
            }
        });
        let ctrl = Ctrl::connect(&path, Duration::from_secs(1))
            .await
            .expect("connect");
        let status = ctrl.status().await.expect("status");
        assert_eq!(status.get("mode").map(String::as_str), Some("mesh"));
        ctrl.attach().await.expect("attach");
        let ev = ctrl.next_event().await.expect("event");
        assert_eq!(
            ev,
            SupplicantEvent::PeerConnected("02:00:00:00:02:00".parse().expect("mac"))
        );
        task.await.expect("server");
    }
}
