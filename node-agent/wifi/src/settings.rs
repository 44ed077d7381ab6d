//! The settings of `trellis-agent mesh`: command-line flags, their validation, and the hook
//! that takes the mesh credentials from the controller's snapshot instead.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::link::Cidr;
use super::sae::{self, SaePassword};

/// Flags of `trellis-agent mesh`.
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// Radio to put the mesh on, as `iw phy` names it.
    #[arg(long, default_value = "phy0")]
    pub phy: String,
    /// Name of the mesh-point interface to create.
    #[arg(long, default_value = "mesh0")]
    pub iface: String,
    /// The 802.11s mesh ID. Leave it and --password-file out on a paired router: the
    /// controller's credentials (kept in the state directory) are used.
    #[arg(long)]
    pub mesh_id: Option<String>,
    /// Channel frequency in MHz (2412 = channel 1).
    #[arg(long, default_value_t = 2412)]
    pub freq: u32,
    /// File holding the mesh SAE password (one line). The password is never logged.
    #[arg(long, conflicts_with = "open_test_mesh")]
    pub password_file: Option<PathBuf>,
    /// TESTS ONLY: an unencrypted mesh, joined by the kernel's own peering.
    #[arg(long)]
    pub open_test_mesh: bool,
    /// Role: auto (portal when a default route leaves through another interface), portal, relay.
    #[arg(long, value_enum, default_value_t = RoleArg::Auto)]
    pub role: RoleArg,
    /// This node also has a cable to the home LAN (wired backhaul wins over the air).
    #[arg(long)]
    pub wired_backhaul: bool,
    /// Address to give the mesh interface, e.g. 10.99.0.1/24 (normally the LAN bridge has it).
    #[arg(long)]
    pub addr: Option<String>,
    /// Put the mesh interface into this LAN bridge.
    #[arg(long)]
    pub bridge: Option<String>,
    /// Node name printed in every JSON line.
    #[arg(long, default_value = "")]
    pub node: String,
    /// Refresh of station and mesh-path figures, in ms (events trigger extra refreshes).
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// Print a full `links`/`paths` report every this many ms (changes are printed at once).
    #[arg(long, default_value_t = 10_000)]
    pub report_ms: u64,
    /// wpa_supplicant program.
    #[arg(long, default_value = "wpa_supplicant")]
    pub wpa_supplicant: String,
    /// Directory for the wpa_supplicant config and control socket.
    #[arg(long, default_value = "/var/run/trellis")]
    pub run_dir: PathBuf,
    /// Let wpa_supplicant write its own debug log here (no secrets at its default level).
    #[arg(long)]
    pub wpa_log: Option<PathBuf>,
    /// Only list radios and wifi interfaces as JSON, then exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Auto,
    Portal,
    Relay,
}

/// How the mesh is secured.
#[derive(Debug, Clone)]
pub enum MeshSecurity {
    Sae(SaePassword),
    /// Unencrypted: only ever from the explicit `--open-test-mesh` flag.
    OpenTestMesh,
}

/// Everything [`run`] needs, validated.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub phy: String,
    pub iface: String,
    pub mesh_id: String,
    pub freq_mhz: u32,
    pub security: MeshSecurity,
    pub role: RoleArg,
    pub wired_backhaul: bool,
    pub addr: Option<Cidr>,
    pub bridge: Option<String>,
    pub node: String,
    pub poll: Duration,
    pub report_every: Duration,
    pub wpa_supplicant: String,
    pub run_dir: PathBuf,
    pub wpa_log: Option<PathBuf>,
    /// Follow the home's channel ([`crate::channel_file`]): only a mesh with the home's own
    /// credentials does; a mesh named on the command line (a lab's open mesh, a second
    /// mesh) stays on `--freq`.
    pub follow_home_channel: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--mesh-id is required")]
    NoMeshId,
    #[error("give --password-file (SAE) or, for tests only, --open-test-mesh")]
    NoSecurity,
    #[error("cannot read the password file {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sae(#[from] sae::Error),
    #[error(transparent)]
    Nl80211(#[from] super::nl80211::Error),
    #[error(transparent)]
    Link(#[from] super::link::Error),
}

impl MeshSettings {
    /// Validates the flags; reads the password file.
    pub fn from_args(a: &MeshArgs) -> Result<Self, Error> {
        let mesh_id = a.mesh_id.clone().ok_or(Error::NoMeshId)?;
        sae::check_mesh_id(&mesh_id)?;
        let security = match (&a.password_file, a.open_test_mesh) {
            (Some(path), false) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
                MeshSecurity::Sae(SaePassword::new(text.lines().next().unwrap_or(""))?)
            }
            (None, true) => MeshSecurity::OpenTestMesh,
            _ => return Err(Error::NoSecurity),
        };
        let addr = a.addr.as_deref().map(str::parse).transpose()?;
        Ok(Self {
            phy: a.phy.clone(),
            iface: a.iface.clone(),
            mesh_id,
            freq_mhz: a.freq,
            security,
            role: a.role,
            wired_backhaul: a.wired_backhaul,
            addr,
            bridge: a.bridge.clone(),
            node: a.node.clone(),
            poll: Duration::from_millis(a.poll_ms.clamp(100, 60_000)),
            report_every: Duration::from_millis(a.report_ms.clamp(500, 3_600_000)),
            wpa_supplicant: a.wpa_supplicant.clone(),
            run_dir: a.run_dir.clone(),
            wpa_log: a.wpa_log.clone(),
            follow_home_channel: false,
        })
    }

    /// Pairing hook: the mesh ID and SAE password from the controller's snapshot replace the
    /// command-line ones.
    /// Settings for a paired router: everything from the command line, the mesh ID and SAE
    /// password from the controller.
    pub fn from_paired(
        a: &MeshArgs,
        creds: &trellis_proto::snapshot::MeshCredentials,
    ) -> Result<Self, Error> {
        // Build the rest from the arguments with a placeholder security, replaced at once.
        let mut base = a.clone();
        base.mesh_id = Some(creds.mesh_id.clone());
        base.password_file = None;
        base.open_test_mesh = true;
        Self::from_args(&base)?.with_credentials(creds)
    }

    pub fn with_credentials(
        mut self,
        creds: &trellis_proto::snapshot::MeshCredentials,
    ) -> Result<Self, Error> {
        sae::check_mesh_id(&creds.mesh_id)?;
        self.mesh_id = creds.mesh_id.clone();
        self.security = MeshSecurity::Sae(SaePassword::new(&creds.sae_password)?);
        self.follow_home_channel = true;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        mesh: MeshArgs,
    }

    #[test]
    fn a_paired_router_meshes_with_the_controllers_credentials_over_sae() {
        let args = parse(&["--phy", "phy1", "--bridge", "br-lan"]).unwrap();
        let creds = trellis_proto::snapshot::MeshCredentials {
            mesh_id: "trellis-h0me".into(),
            sae_password: "a-long-random-mesh-password".into(),
        };
        let s = MeshSettings::from_paired(&args, &creds).unwrap();
        assert_eq!(s.mesh_id, "trellis-h0me");
        assert_eq!(s.phy, "phy1");
        assert_eq!(s.bridge.as_deref(), Some("br-lan"));
        assert!(
            matches!(s.security, MeshSecurity::Sae(_)),
            "never an open mesh from pairing"
        );
        assert!(s.follow_home_channel, "the home's mesh moves with the home");
        // Without pairing and without flags there is no mesh to form.
        assert!(matches!(
            MeshSettings::from_args(&args),
            Err(Error::NoMeshId)
        ));
    }

    fn parse(args: &[&str]) -> Result<MeshArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("mesh").chain(args.iter().copied())).map(|c| c.mesh)
    }

    #[test]
    fn an_open_mesh_needs_the_explicit_test_flag() {
        let a = parse(&["--mesh-id", "home"]).expect("parses");
        assert!(matches!(
            MeshSettings::from_args(&a),
            Err(Error::NoSecurity)
        ));
        let a = parse(&["--mesh-id", "home", "--open-test-mesh"]).expect("parses");
        let s = MeshSettings::from_args(&a).expect("valid");
        assert!(matches!(s.security, MeshSecurity::OpenTestMesh));
        assert!(
            !s.follow_home_channel,
            "a mesh named on the command line stays on --freq"
        );
    }

    #[test]
    fn password_file_and_open_mesh_exclude_each_other() {
        assert!(parse(&[
            "--mesh-id",
            "m",
            "--password-file",
            "/x",
            "--open-test-mesh"
        ])
        .is_err());
        // Without a mesh ID (and without pairing) there is nothing to join.
        let bare = parse(&[]).unwrap();
        assert!(matches!(
            MeshSettings::from_args(&bare),
            Err(Error::NoMeshId)
        ));
        assert!(parse(&["--list"]).is_ok());
    }

    #[test]
    fn the_password_comes_from_the_file_and_is_not_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "sekrit-mesh-password\n").expect("write");
        let a = parse(&[
            "--mesh-id",
            "home",
            "--password-file",
            pw.to_str().expect("utf-8 path"),
            "--addr",
            "10.99.0.1/24",
        ])
        .expect("parses");
        let s = MeshSettings::from_args(&a).expect("valid");
        assert!(matches!(s.security, MeshSecurity::Sae(_)));
        assert!(!format!("{s:?}").contains("sekrit"));
    }

    #[test]
    fn controller_credentials_replace_the_command_line_ones() {
        let a = parse(&["--mesh-id", "lab", "--open-test-mesh"]).expect("parses");
        let creds = trellis_proto::snapshot::MeshCredentials {
            mesh_id: "trellis-home".into(),
            sae_password: "from-the-controller-123".into(),
        };
        let s = MeshSettings::from_args(&a)
            .expect("valid")
            .with_credentials(&creds)
            .expect("valid credentials");
        assert_eq!(s.mesh_id, "trellis-home");
        assert!(matches!(s.security, MeshSecurity::Sae(_)));
    }

    #[test]
    fn bad_values_are_refused() {
        let a = parse(&["--mesh-id", "a\"b", "--open-test-mesh"]).expect("parses");
        assert!(MeshSettings::from_args(&a).is_err());
        let a =
            parse(&["--mesh-id", "m", "--open-test-mesh", "--addr", "10.0.0.1"]).expect("parses");
        assert!(MeshSettings::from_args(&a).is_err());
    }
}
