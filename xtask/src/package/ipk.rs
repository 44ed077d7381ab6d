//! Writes `.ipk` packages the way OpenWrt's `scripts/ipkg-build` does.
//!
//! An OpenWrt `.ipk` is a gzip'ed tar (not the Debian `ar` archive: opkg-lede's
//! `deb_extract` gunzips the outer layer and walks tar headers) holding, in this order,
//! `./debian-binary` ("2.0\n"), `./data.tar.gz` and `./control.tar.gz`. Every entry is owned by
//! 0:0 with numeric owners, every mtime is one fixed time, entries are sorted and gzip carries
//! no name or time: the same inputs give the same bytes (ipkg-build: `--numeric-owner
//! --sort=name --mtime=$SOURCE_DATE_EPOCH`, `gzip -n`).
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};

use super::spec::{Content, Package};

/// The postinst OpenWrt generates for every package (include/package-pack.mk): enable and
/// start the init scripts, run the package's uci-defaults, then the `postinst-pkg` part.
pub const POSTINST: &str = "#!/bin/sh\n\
[ \"${IPKG_NO_SCRIPT}\" = \"1\" ] && exit 0\n\
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n\
. ${IPKG_INSTROOT}/lib/functions.sh\n\
default_postinst $0 $@\n";

/// The prerm OpenWrt generates: the `prerm-pkg` part, then stop and disable the init scripts.
pub const PRERM: &str = "#!/bin/sh\n\
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n\
. ${IPKG_INSTROOT}/lib/functions.sh\n\
default_prerm $0 $@\n";

/// One file of a tar archive, before it is written.
struct Item {
    path: String,
    kind: Kind,
    mode: u32,
}

enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// The `.ipk` bytes of `pkg`; `root` is the workspace root (for repository files), `mtime`
/// the time stamped on every entry.
pub fn build(pkg: &Package, root: &Path, mtime: u64) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut installed_size = 0u64;
    for e in &pkg.files {
        let Some(rel) = e.dest.strip_prefix('/') else {
            bail!("{}: install path {:?} is not absolute", pkg.name, e.dest);
        };
        // Every parent directory gets its own entry, as a tar of the staging tree has.
        let mut parent = Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(format!("./{}/", p.display()));
            parent = p.parent();
        }
        let kind = match &e.content {
            Content::Repo(src) => read(&root.join(src))?,
            Content::Built(src) => read(src)?,
            Content::Symlink(target) => Kind::Symlink(target.clone()),
        };
        if let Kind::File(bytes) = &kind {
            installed_size += bytes.len() as u64;
        }
        data.push(Item {
            path: format!("./{rel}"),
            kind,
            mode: e.mode,
        });
    }
    data.extend(
        std::iter::once("./".to_owned())
            .chain(dirs)
            .map(|path| Item {
                path,
                kind: Kind::Dir,
                mode: 0o755,
            }),
    );
    data.sort_by(|a, b| a.path.cmp(&b.path));
    let names: BTreeSet<&str> = data.iter().map(|i| i.path.as_str()).collect();
    if names.len() != data.len() {
        bail!("{}: two files install to the same path", pkg.name);
    }

    let mut control = vec![
        Item {
            path: "./control".into(),
            kind: Kind::File(control_text(pkg, installed_size).into_bytes()),
            mode: 0o644,
        },
        Item {
            path: "./postinst".into(),
            kind: Kind::File(POSTINST.into()),
            mode: 0o755,
        },
        Item {
            path: "./prerm".into(),
            kind: Kind::File(PRERM.into()),
            mode: 0o755,
        },
    ];
    if !pkg.conffiles.is_empty() {
        let text: String = pkg.conffiles.iter().map(|c| format!("{c}\n")).collect();
        control.push(Item {
            path: "./conffiles".into(),
            kind: Kind::File(text.into_bytes()),
            mode: 0o644,
        });
    }
    for (name, src) in [
        ("./postinst-pkg", &pkg.postinst_pkg),
        ("./prerm-pkg", &pkg.prerm_pkg),
    ] {
        if let Some(src) = src {
            control.push(Item {
                path: name.into(),
                kind: read(&root.join(src))?,
                mode: 0o755,
            });
        }
    }
    control.sort_by(|a, b| a.path.cmp(&b.path));

    let outer = vec![
        Item {
            path: "./debian-binary".into(),
            kind: Kind::File(b"2.0\n".to_vec()),
            mode: 0o644,
        },
        Item {
            path: "./data.tar.gz".into(),
            kind: Kind::File(tar_gz(&data, mtime)?),
            mode: 0o644,
        },
        Item {
            path: "./control.tar.gz".into(),
            kind: Kind::File(tar_gz(&control, mtime)?),
            mode: 0o644,
        },
    ];
    tar_gz(&outer, mtime)
}

/// The `control` file: the fields opkg reads, in the order package-pack.mk writes them.
pub fn control_text(pkg: &Package, installed_size: u64) -> String {
    let mut s = format!("Package: {}\nVersion: {}\n", pkg.name, pkg.version);
    if !pkg.depends.is_empty() {
        s += &format!("Depends: {}\n", pkg.depends.join(", "));
    }
    if !pkg.provides.is_empty() {
        s += &format!("Provides: {}\n", pkg.provides.join(", "));
    }
    if !pkg.conflicts.is_empty() {
        s += &format!("Conflicts: {}\n", pkg.conflicts.join(", "));
    }
    s += &format!(
        "Source: {}\nSourceName: trellis\nLicense: {}\nSection: {}\nURL: {}\n\
         Architecture: {}\nInstalled-Size: {installed_size}\nDescription: {}\n",
        super::spec::SOURCE,
        super::spec::LICENSE,
        pkg.section,
        super::spec::URL,
        pkg.arch,
        pkg.description,
    );
    s
}

fn read(path: &Path) -> Result<Kind> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Kind::File(bytes))
}

fn tar_gz(items: &[Item], mtime: u64) -> Result<Vec<u8>> {
    let gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gz);
    for item in items {
        let mut h = tar::Header::new_gnu();
        // The tar crate's set_path drops `.` components; ipkg-build's archives name every
        // member `./…`, so the name is written into the header as is.
        let name = item.path.as_bytes();
        if name.len() >= 100 {
            bail!("{}: path longer than a tar header holds", item.path);
        }
        h.as_gnu_mut().expect("a GNU header").name[..name.len()].copy_from_slice(name);
        h.set_mode(item.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        let body: &[u8] = match &item.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                &[]
            }
            Kind::File(bytes) => {
                h.set_entry_type(tar::EntryType::Regular);
                bytes
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(target)?;
                &[]
            }
        };
        h.set_size(body.len() as u64);
        h.set_cksum();
        tar.append(&h, body)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    Ok(gz.finish()?)
}
