//! `.apk` packages (apk-tools v3, OpenWrt 25.12), made the way OpenWrt's
//! `include/package-pack.mk` makes them: a staged file tree that carries apk's own metadata
//! files (`/lib/apk/packages/<pkg>.list`, `.conffiles`, `.conffiles_static`), the three
//! maintainer scripts OpenWrt generates, and `apk mkpkg` to write the ADB container.
//!
//! apk v3's ADB format is "entangled with C struct layout" (its own docs) and no Rust writer
//! exists, so the container is left to apk itself: `--apk-tool PATH` (or `$APK_TOOL`) names an
//! apk 3 binary, e.g. `staging_dir/host/bin/apk` of a 25.12 SDK or Image Builder. No registry
//! reachable here ships one, so this path is tested against a stand-in `apk` that records its
//! arguments and the staged tree (tests.rs), not against apk itself.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::spec::{self, Content, Package};

/// apk has no `a | b` alternatives in depends; the wpad choice is left to the user (README)
/// and `trellis check` reports a wpa_supplicant without mesh support.
pub fn depends(pkg: &Package) -> Vec<String> {
    pkg.depends
        .iter()
        .filter(|d| !d.contains('|'))
        // `trellis-agent (=0.1.0-r1)` in opkg syntax is `trellis-agent=0.1.0-r1` for apk.
        .map(|d| d.replace(" (", "").replace(')', ""))
        .collect()
}

/// apk's `provides` with the package's own version: a versioned name has one provider at
/// a time, so `trellis-controller` and `trellis-agent` cannot both be installed (what opkg's
/// `Conflicts` says; apk has no such field).
pub fn provides(pkg: &Package) -> Vec<String> {
    pkg.provides
        .iter()
        .map(|p| format!("{p}={}", pkg.version))
        .collect()
}

pub fn file_name(pkg: &Package) -> String {
    format!("{}-{}.apk", pkg.name, pkg.version)
}

/// The scripts OpenWrt 25.12 generates: post-install, post-upgrade, pre-deinstall.
pub fn scripts(pkg: &Package, root: &Path) -> Result<Vec<(&'static str, String)>> {
    let body = |p: &Option<PathBuf>| -> Result<String> {
        Ok(match p {
            Some(p) => {
                let text = std::fs::read_to_string(root.join(p))
                    .with_context(|| format!("reading {}", p.display()))?;
                text.lines()
                    .filter(|l| !l.trim_start().starts_with("#!"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            }
            None => String::new(),
        })
    };
    let post_install = format!(
        "#!/bin/sh\n\
         [ \"${{IPKG_NO_SCRIPT}}\" = \"1\" ] && exit 0\n\
         [ -s ${{IPKG_INSTROOT}}/lib/functions.sh ] || exit 0\n\
         . ${{IPKG_INSTROOT}}/lib/functions.sh\n\
         export root=\"${{IPKG_INSTROOT}}\"\n\
         export pkgname=\"{}\"\n\
         add_group_and_user\n\
         default_postinst\n{}",
        pkg.name,
        body(&pkg.postinst_pkg)?
    );
    let post_upgrade = format!(
        "#!/bin/sh\nexport PKG_UPGRADE=1\n{}",
        post_install.trim_start_matches("#!/bin/sh\n")
    );
    let pre_deinstall = format!(
        "#!/bin/sh\n\
         [ -s ${{IPKG_INSTROOT}}/lib/functions.sh ] || exit 0\n\
         . ${{IPKG_INSTROOT}}/lib/functions.sh\n\
         export root=\"${{IPKG_INSTROOT}}\"\n\
         export pkgname=\"{}\"\n\
         default_prerm\n{}",
        pkg.name,
        body(&pkg.prerm_pkg)?
    );
    Ok(vec![
        ("post-install", post_install),
        ("post-upgrade", post_upgrade),
        ("pre-deinstall", pre_deinstall),
    ])
}

/// Stage the package's files plus apk's metadata files under `dir/files`.
pub fn stage(pkg: &Package, root: &Path, dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let files = dir.join("files");
    let _ = std::fs::remove_dir_all(&files);
    std::fs::create_dir_all(&files)?;
    let mut listed = Vec::new();
    for e in &pkg.files {
        let rel = e.dest.trim_start_matches('/');
        let path = files.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        match &e.content {
            Content::Repo(src) => {
                std::fs::copy(root.join(src), &path)
                    .with_context(|| format!("copying {}", src.display()))?;
            }
            Content::Built(src) => {
                std::fs::copy(src, &path).with_context(|| format!("copying {}", src.display()))?;
            }
            Content::Symlink(target) => std::os::unix::fs::symlink(target, &path)?,
        }
        if !matches!(e.content, Content::Symlink(_)) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))?;
        }
        listed.push(e.dest.clone());
    }
    let meta = files.join("lib/apk/packages");
    std::fs::create_dir_all(&meta)?;
    listed.sort();
    let list: String = listed.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(meta.join(format!("{}.list", pkg.name)), list)?;
    if !pkg.conffiles.is_empty() {
        let mut names = String::new();
        let mut sums = String::new();
        for c in &pkg.conffiles {
            names += &format!("{c}\n");
            // sysupgrade compares against these sums to find changed configs to keep.
            let bytes = std::fs::read(files.join(c.trim_start_matches('/')))
                .with_context(|| format!("conffile {c} is not in {}", pkg.name))?;
            sums += &format!("{c} {:x}\n", Sha256::digest(&bytes));
        }
        std::fs::write(meta.join(format!("{}.conffiles", pkg.name)), names)?;
        std::fs::write(meta.join(format!("{}.conffiles_static", pkg.name)), sums)?;
    }
    Ok(files)
}

/// Build one `.apk` with `apk mkpkg` into `out_dir`.
pub fn build(
    pkg: &Package,
    root: &Path,
    apk_tool: &Path,
    out_dir: &Path,
    mtime: u64,
) -> Result<PathBuf> {
    let dir = root
        .join("target/apk-staging")
        .join(format!("{}-{}", pkg.name, pkg.arch));
    let files = stage(pkg, root, &dir)?;
    let mut cmd = if is_root() {
        Command::new(apk_tool)
    } else if crate::have("fakeroot") {
        // apk records owner names; files staged by a normal user must still belong to root.
        let mut c = Command::new("fakeroot");
        c.arg(apk_tool);
        c
    } else {
        bail!("building .apk packages needs root or fakeroot (apt-get install fakeroot)");
    };
    cmd.arg("mkpkg").env("SOURCE_DATE_EPOCH", mtime.to_string());
    let arch = if pkg.arch == "all" {
        "noarch"
    } else {
        &pkg.arch
    };
    for (k, v) in [
        ("name", pkg.name.as_str()),
        ("version", pkg.version.as_str()),
        ("description", pkg.description.as_str()),
        ("arch", arch),
        ("license", spec::LICENSE),
        ("origin", "trellis"),
        ("url", spec::URL),
        ("maintainer", "Trellis developers"),
        ("depends", &depends(pkg).join(" ")),
    ] {
        cmd.arg("--info").arg(format!("{k}:{v}"));
    }
    if !pkg.provides.is_empty() {
        cmd.arg("--info")
            .arg(format!("provides:{}", provides(pkg).join(" ")));
    }
    for (name, text) in scripts(pkg, root)? {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        cmd.arg("--script")
            .arg(format!("{name}:{}", path.display()));
    }
    std::fs::create_dir_all(out_dir)?;
    let out = out_dir.join(file_name(pkg));
    cmd.arg("--files").arg(&files).arg("--output").arg(&out);
    crate::run(&mut cmd)?;
    if !out.is_file() {
        bail!("{} did not write {}", apk_tool.display(), out.display());
    }
    Ok(out)
}

fn is_root() -> bool {
    crate::output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}
