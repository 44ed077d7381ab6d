//! What goes into each package: files, modes, control fields, maintainer scripts.
//!
//! The same install layout is written down once more in `firmware/feed/*/Makefile` for SDK
//! users; `tests::feed_makefiles_install_the_same_files` keeps the two in step.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The `.ipk`/`.apk` version: the workspace version plus OpenWrt's package release.
pub fn version() -> String {
    format!("{}-r1", env!("CARGO_PKG_VERSION"))
}

pub const SOURCE: &str = "feeds/trellis/trellis";
pub const LICENSE: &str = "Apache-2.0";
pub const URL: &str = "https://example.invalid/trellis";

/// The wpad builds with CONFIG_MESH (802.11s + mesh SAE) and the home's access points'
/// roaming: all are OpenWrt's "full" hostapd variants (files/hostapd-full.config:
/// CONFIG_IEEE80211R for 802.11r, CONFIG_WNM for 802.11v BSS transition, CONFIG_SAE;
/// 802.11k neighbour reports are always built) with ubus (`hostapd.<ifname>`
/// bss_transition_request / rrm_nr_set). The default image's `wpad-basic-mbedtls` has no
/// mesh support; opkg accepts `a | b` alternatives in Depends.
pub const WPAD_WITH_MESH: &str = "wpad-mesh-mbedtls | wpad-mbedtls | wpad-mesh-openssl | wpad-openssl | wpad-mesh-wolfssl | wpad-wolfssl";

/// What the data plane needs from nftables: the `nft` program the agent runs (`nftables`,
/// which nftables-json and nftables-nojson provide), TPROXY and the socket match for
/// transparent interception, NAT for REDIRECT. firewall4 images already carry kmod-nft-nat.
pub const NFT_KMODS: &[&str] = &[
    "nftables",
    "kmod-nft-tproxy",
    "kmod-nft-socket",
    "kmod-nft-nat",
];

#[derive(Debug, Clone)]
pub enum Content {
    /// A file of the repository, relative to the workspace root.
    Repo(PathBuf),
    /// A file outside the repository (a built binary).
    Built(PathBuf),
    /// A symbolic link with this target.
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute path on the router.
    pub dest: String,
    pub content: Content,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// OpenWrt package arch (`aarch64_cortex-a53`), or `all` for noarch.
    pub arch: String,
    pub depends: Vec<String>,
    pub section: String,
    pub description: String,
    pub files: Vec<Entry>,
    pub conffiles: Vec<String>,
    /// Names this package stands in for (opkg `Provides`, apk `provides`).
    pub provides: Vec<String>,
    /// Packages that cannot be installed beside this one (opkg `Conflicts`).
    pub conflicts: Vec<String>,
    /// Package-specific parts that `default_postinst` / `default_prerm` source.
    pub postinst_pkg: Option<PathBuf>,
    pub prerm_pkg: Option<PathBuf>,
}

impl Package {
    /// `name_version_arch.ipk`, the name opkg and the Image Builder expect.
    pub fn ipk_file_name(&self) -> String {
        format!("{}_{}_{}.ipk", self.name, self.version, self.arch)
    }
}

fn repo(dest: &str, src: &str, mode: u32) -> Entry {
    Entry {
        dest: dest.into(),
        content: Content::Repo(src.into()),
        mode,
    }
}

/// `trellis-agent`: every router. Owns the shared UCI file, the first-boot script, the
/// sysupgrade keep list and the dnsmasq hooks, because every router has the agent.
pub fn agent(arch: &str, binary: &Path) -> Package {
    let mut depends = vec![WPAD_WITH_MESH.to_owned()];
    depends.extend(NFT_KMODS.iter().map(|s| s.to_string()));
    Package {
        name: "trellis-agent".into(),
        version: version(),
        arch: arch.into(),
        depends,
        section: "net".into(),
        description: "Trellis agent: joins this router to the home's encrypted 802.11s mesh, \
                      keeps the mesh healthy and runs the service-mesh proxy (mutual TLS \
                      between routers). Runs on every router of the home."
            .into(),
        files: vec![
            Entry {
                dest: "/usr/bin/trellis-agent".into(),
                content: Content::Built(binary.to_path_buf()),
                mode: 0o755,
            },
            repo(
                "/etc/init.d/trellis-agent",
                "firmware/files/trellis-agent.init",
                0o755,
            ),
            repo(
                "/etc/config/trellis",
                "firmware/files/trellis.config",
                0o644,
            ),
            repo(
                "/etc/uci-defaults/90-trellis",
                "firmware/files/trellis.uci-defaults",
                0o644,
            ),
            repo(
                "/lib/upgrade/keep.d/trellis",
                "firmware/files/trellis.keep",
                0o644,
            ),
            repo(
                "/etc/hotplug.d/dhcp/90-trellis",
                "firmware/files/trellis.hotplug-dhcp",
                0o644,
            ),
            // The shell functions both init scripts, the uci-defaults and the prerm source.
            repo(
                "/usr/share/trellis/trellis.sh",
                "firmware/files/trellis.sh",
                0o644,
            ),
        ],
        conffiles: vec!["/etc/config/trellis".into()],
        provides: vec![],
        conflicts: vec![],
        postinst_pkg: None,
        prerm_pkg: Some("firmware/control/trellis-agent.prerm-pkg".into()),
    }
}

/// `trellis-controller`: the primary router, all of it. Its binary is multi-call (the
/// controller, `trellis-agent` and `trellis` by the name it is called with), so the primary
/// carries one copy of the runtime: the package holds every file of `trellis-agent` (the
/// agent's binary as a link) and stands in for it (`Provides`, `Conflicts`: the same files),
/// as OpenWrt's wpad and dnsmasq variants do.
pub fn controller(arch: &str, binary: &Path) -> Package {
    let agent = agent(arch, binary);
    let mut files: Vec<Entry> = agent
        .files
        .into_iter()
        .map(|f| match f.content {
            Content::Built(_) => Entry {
                dest: f.dest,
                content: Content::Symlink("trellis-controller".into()),
                mode: 0o777,
            },
            _ => f,
        })
        .collect();
    files.extend([
        Entry {
            dest: "/usr/bin/trellis-controller".into(),
            content: Content::Built(binary.to_path_buf()),
            mode: 0o755,
        },
        Entry {
            dest: "/usr/bin/trellis".into(),
            content: Content::Symlink("trellis-controller".into()),
            mode: 0o777,
        },
        repo(
            "/etc/init.d/trellis-controller",
            "firmware/files/trellis-controller.init",
            0o755,
        ),
    ]);
    Package {
        name: "trellis-controller".into(),
        version: version(),
        arch: arch.into(),
        depends: agent.depends,
        section: "net".into(),
        description: "Trellis for the primary router: the home's certificate authority, \
                      pairing of satellites with a short code, service catalog, policy and \
                      the Trellis web page, and the Trellis agent (this package replaces \
                      trellis-agent on the primary: one binary for both). Also provides the \
                      `trellis` command."
            .into(),
        files,
        conffiles: agent.conffiles,
        provides: vec![agent.name.clone()],
        conflicts: vec![agent.name],
        postinst_pkg: agent.postinst_pkg,
        prerm_pkg: agent.prerm_pkg,
    }
}

/// What a primary router installs (`cargo xtask package` prints its size as a goal): the
/// controller package stands in for the agent's.
pub const PRIMARY_PACKAGES: &[&str] = &["trellis-controller", "luci-app-trellis"];
/// What a satellite installs (the LuCI app is optional there).
pub const SATELLITE_PACKAGES: &[&str] = &["trellis-agent"];

pub const LUCI_DIR: &str = "web/luci-app-trellis";

/// `luci-app-trellis` (noarch): `htdocs/` goes to `/www/`, `root/` to `/`, as luci.mk does.
pub fn luci(root: &Path) -> Result<Package> {
    let mut files = Vec::new();
    for (sub, prefix) in [("htdocs", "/www"), ("root", "")] {
        let base = root.join(LUCI_DIR).join(sub);
        for rel in walk(&base)? {
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            let dest = format!("{prefix}/{rel_str}");
            // rpcd runs its exec plugins; everything else is data.
            let mode = if dest.starts_with("/usr/libexec/rpcd/") {
                0o755
            } else {
                0o644
            };
            files.push(Entry {
                dest,
                content: Content::Repo(Path::new(LUCI_DIR).join(sub).join(&rel)),
                mode,
            });
        }
    }
    if files.is_empty() {
        bail!("{LUCI_DIR} holds no files");
    }
    Ok(Package {
        name: "luci-app-trellis".into(),
        version: version(),
        arch: "all".into(),
        depends: vec!["luci-base".into(), "rpcd".into(), "trellis-agent".into()],
        section: "luci".into(),
        description: "LuCI support for Trellis: Services > Trellis shows the state of Trellis \
                      on this router, opens the Trellis page and edits /etc/config/trellis."
            .into(),
        files,
        conffiles: vec![],
        provides: vec![],
        conflicts: vec![],
        postinst_pkg: Some("firmware/control/luci-app-trellis.postinst-pkg".into()),
        prerm_pkg: None,
    })
}

/// Regular files under `base`, relative to it, sorted (deterministic packages).
fn walk(base: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = base.join(&rel);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path);
            } else {
                bail!(
                    "{} is neither a file nor a directory",
                    base.join(&path).display()
                );
            }
        }
    }
    out.sort();
    Ok(out)
}
