//! `cargo xtask package`: OpenWrt packages of Trellis, written in Rust, checked on the way out.
//!
//! Per OpenWrt arch of `cross/targets.tsv`: `trellis-agent` and `trellis-controller`; once:
//! the noarch `luci-app-trellis`. Output goes to `dist/packages/<arch>/` and
//! `dist/packages/all/`, each with an opkg `Packages`/`Packages.gz` index, so the folder can be
//! served as a feed (`src/gz trellis http://…`) or dropped into an Image Builder's `packages/`.
//!
//! `.ipk` (OpenWrt 24.10) is written in Rust. `.apk` (apk-tools v3, OpenWrt 25.12) is written
//! too when an apk 3 binary is given with `--apk-tool` (see `apk.rs`): no registry reachable
//! here ships apk-tools 3, so by default only `.ipk` files come out.
mod apk;
mod checks;
mod elf;
mod ipk;
mod read;
mod spec;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::{cross, root};

const USAGE: &str =
    "usage: cargo xtask package [--target ARCH|RUST_TARGET]... [--no-build] [--apk-tool PATH]
       cargo xtask package check    only the source checks (shellcheck, the LuCI view under node)

  --target      an OpenWrt arch (aarch64_cortex-a53) or Rust target from cross/targets.tsv;
                repeatable; default: every arch of the table
  --no-build    package the binaries already in dist/<rust-target>/ instead of building
  --apk-tool P  also write .apk packages for OpenWrt 25.12 with this apk 3 binary (e.g. a
                25.12 SDK's staging_dir/host/bin/apk); default: $APK_TOOL when set";

/// A package written to disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub name: String,
    pub arch: String,
    /// "ipk" or "apk".
    pub format: &'static str,
    pub path: PathBuf,
    pub bytes: u64,
}

pub fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("check") {
        return ci_checks(true);
    }
    let mut targets = Vec::new();
    let mut no_build = false;
    let mut apk_tool = std::env::var_os("APK_TOOL").map(PathBuf::from);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => match it.next() {
                Some(t) => targets.push(t.clone()),
                None => bail!("--target needs a value\n\n{USAGE}"),
            },
            "--no-build" => no_build = true,
            "--apk-tool" => match it.next() {
                Some(t) => apk_tool = Some(PathBuf::from(t)),
                None => bail!("--apk-tool needs a path\n\n{USAGE}"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if let Some(t) = &apk_tool {
        if !t.is_file() {
            bail!("--apk-tool {}: no such file", t.display());
        }
    }
    let written = build(&targets, no_build, apk_tool.as_deref())?;
    print_sizes(&written);
    Ok(())
}

/// Build (unless `no_build`), package and check; every package is read back before this
/// returns, and a package that fails a check is an error.
pub fn build(targets: &[String], no_build: bool, apk_tool: Option<&Path>) -> Result<Vec<Written>> {
    let root = root();
    let all = cross::targets()?;
    for t in targets {
        if !all
            .iter()
            .any(|r| &r.openwrt_arch == t || &r.rust_target == t)
        {
            bail!("unknown target {t:?}; cross/targets.tsv lists the known ones");
        }
    }
    let rows: Vec<cross::Target> = all
        .into_iter()
        .filter(|r| {
            targets.is_empty()
                || targets
                    .iter()
                    .any(|t| t == &r.openwrt_arch || t == &r.rust_target)
        })
        .collect();
    let mut rust_targets: Vec<String> = rows.iter().map(|r| r.rust_target.clone()).collect();
    rust_targets.dedup();
    if !no_build {
        cross::run(&rust_targets)?;
    }

    let mtime = source_date_epoch(&root);
    let out = root.join("dist/packages");
    let mut written = Vec::new();
    for row in &rows {
        let bin_dir = root.join("dist").join(&row.rust_target);
        let bin = |name: &str| -> Result<PathBuf> {
            let p = bin_dir.join(name);
            if !p.is_file() {
                bail!(
                    "{} is missing: run `cargo xtask cross {}` first, or drop --no-build",
                    p.display(),
                    row.rust_target
                );
            }
            Ok(p)
        };
        let dir = out.join(&row.openwrt_arch);
        remove_old(&dir)?;
        let pkgs = [
            spec::agent(&row.openwrt_arch, &bin("trellis-agent")?),
            spec::controller(&row.openwrt_arch, &bin("trellis-controller")?),
        ];
        for pkg in &pkgs {
            written.push(write_checked(pkg, &root, &dir, mtime)?);
            if let Some(tool) = apk_tool {
                written.push(write_apk(pkg, &root, tool, &dir, mtime)?);
            }
        }
        write_index(&dir)?;
    }
    let luci = spec::luci(&root)?;
    let dir = out.join("all");
    remove_old(&dir)?;
    written.push(write_checked(&luci, &root, &dir, mtime)?);
    if let Some(tool) = apk_tool {
        written.push(write_apk(&luci, &root, tool, &dir, mtime)?);
    }
    write_index(&dir)?;
    Ok(written)
}

/// Build an `.apk` with apk itself, then have apk dump it back and check name and version.
fn write_apk(
    pkg: &spec::Package,
    root: &Path,
    tool: &Path,
    dir: &Path,
    mtime: u64,
) -> Result<Written> {
    let path = apk::build(pkg, root, tool, dir, mtime)?;
    let dump = crate::output(Command::new(tool).arg("adbdump").arg(&path))?;
    for want in [
        format!("name: {}", pkg.name),
        format!("version: {}", pkg.version),
    ] {
        if !dump.contains(&want) {
            bail!("`apk adbdump {}` lacks {want:?}", path.display());
        }
    }
    Ok(Written {
        name: pkg.name.clone(),
        arch: pkg.arch.clone(),
        format: "apk",
        bytes: std::fs::metadata(&path)?.len(),
        path,
    })
}

/// Packages of an older version would sit next to the new ones in the feed index.
fn remove_old(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let ours = name.starts_with("trellis-") || name.starts_with("luci-app-trellis");
        if ours && (name.ends_with(".ipk") || name.ends_with(".apk")) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Write one package, then read it back and refuse to keep it if a check fails.
fn write_checked(pkg: &spec::Package, root: &Path, dir: &Path, mtime: u64) -> Result<Written> {
    std::fs::create_dir_all(dir)?;
    let bytes = ipk::build(pkg, root, mtime).with_context(|| format!("packaging {}", pkg.name))?;
    let file_name = pkg.ipk_file_name();
    let path = dir.join(&file_name);
    let problems = verify(&bytes, &file_name)?;
    if !problems.is_empty() {
        bail!("{file_name} fails its checks:\n  {}", problems.join("\n  "));
    }
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(Written {
        name: pkg.name.clone(),
        arch: pkg.arch.clone(),
        format: "ipk",
        path,
        bytes: bytes.len() as u64,
    })
}

/// The files each package must hold, written down independently of `spec` so a file dropped
/// from the spec by mistake is caught.
pub fn required_paths(name: &str) -> &'static [&'static str] {
    match name {
        "trellis-agent" => &[
            "/usr/bin/trellis-agent",
            "/etc/init.d/trellis-agent",
            "/etc/config/trellis",
            "/etc/uci-defaults/90-trellis",
            "/lib/upgrade/keep.d/trellis",
            "/etc/hotplug.d/dhcp/90-trellis",
            "/usr/share/trellis/trellis.sh",
        ],
        // The primary's package: the agent's files too (it stands in for trellis-agent).
        "trellis-controller" => &[
            "/usr/bin/trellis-controller",
            "/usr/bin/trellis",
            "/etc/init.d/trellis-controller",
            "/usr/bin/trellis-agent",
            "/etc/init.d/trellis-agent",
            "/etc/config/trellis",
            "/etc/uci-defaults/90-trellis",
            "/lib/upgrade/keep.d/trellis",
            "/etc/hotplug.d/dhcp/90-trellis",
            "/usr/share/trellis/trellis.sh",
        ],
        "luci-app-trellis" => &[
            "/www/luci-static/resources/view/trellis/overview.js",
            "/usr/share/luci/menu.d/luci-app-trellis.json",
            "/usr/share/rpcd/acl.d/luci-app-trellis.json",
            "/usr/share/ucitrack/luci-app-trellis.json",
            "/usr/libexec/rpcd/luci.trellis",
        ],
        _ => &[],
    }
}

/// Read `.ipk` bytes back like opkg and list every problem.
pub fn verify(bytes: &[u8], file_name: &str) -> Result<Vec<String>> {
    let ipk = read::read(bytes).with_context(|| format!("reading {file_name} back"))?;
    let name = ipk.field("Package").unwrap_or_default().to_owned();
    let arch = ipk.field("Architecture").unwrap_or_default().to_owned();
    let mut problems = read::check(
        &ipk,
        &read::Expect {
            file_name,
            name: &name,
            arch: &arch,
            paths: required_paths(&name),
        },
    );
    if required_paths(&name).is_empty() {
        problems.push(format!("{name:?} is not a Trellis package"));
    }
    let owns_config = name == "trellis-agent" || name == "trellis-controller";
    if owns_config && !ipk.conffiles().contains(&"/etc/config/trellis".to_owned()) {
        problems.push("/etc/config/trellis is not a conffile: upgrades would overwrite it".into());
    }
    if name == "trellis-controller" {
        // One multi-call binary: both names must reach it, or the primary has no agent.
        for link in ["/usr/bin/trellis", "/usr/bin/trellis-agent"] {
            match ipk.data_file(link).map(|e| &e.kind) {
                Some(read::EntryKind::Symlink(t)) if t == "trellis-controller" => {}
                other => problems.push(format!(
                    "{link} must link to trellis-controller, found {other:?}"
                )),
            }
        }
        for (field, want) in [
            ("Provides", "trellis-agent"),
            ("Conflicts", "trellis-agent"),
        ] {
            if !ipk
                .field(field)
                .is_some_and(|v| v.split(", ").any(|p| p == want))
            {
                problems.push(format!(
                    "{field} lacks {want}: the primary would install the agent twice"
                ));
            }
        }
    }
    Ok(problems)
}

/// The time stamped on every entry: $SOURCE_DATE_EPOCH, else the last commit's time, so two
/// builds of one commit give the same bytes.
fn source_date_epoch(root: &Path) -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return t;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// An opkg feed index (`Packages` and `Packages.gz`) of every `.ipk` in `dir`, as
/// `scripts/ipkg-make-index.sh` writes it: the control fields plus Filename, Size, SHA256sum.
fn write_index(dir: &Path) -> Result<()> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ipk"))
        .collect();
    names.sort();
    let mut index = String::new();
    for path in names {
        let bytes = std::fs::read(&path)?;
        let ipk = read::read(&bytes)?;
        for (k, v) in &ipk.fields {
            if k == "Description" {
                continue;
            }
            index += &format!("{k}: {v}\n");
        }
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        index += &format!(
            "Filename: {file}\nSize: {}\nSHA256sum: {:x}\n",
            bytes.len(),
            Sha256::digest(&bytes)
        );
        if let Some(d) = ipk.field("Description") {
            index += &format!("Description: {}\n", d.replace('\n', "\n "));
        }
        index += "\n";
    }
    std::fs::write(dir.join("Packages"), &index)?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, index.as_bytes())?;
    std::fs::write(dir.join("Packages.gz"), gz.finish()?)?;
    Ok(())
}

/// Flash budget of a primary router's install (`spec::PRIMARY_PACKAGES`: the controller
/// package, which holds the agent too, and the LuCI app; compressed packages) and of a
/// satellite's (the agent), in bytes (MB = 10^6).
pub const PRIMARY_GOAL_BYTES: u64 = 3_500_000;
pub const SATELLITE_GOAL_BYTES: u64 = 2_500_000;

fn print_sizes(written: &[Written]) {
    println!();
    println!("{:<20} {:<26} {:>10}  file", "package", "arch", "bytes");
    for w in written {
        let rel = w.path.strip_prefix(root()).unwrap_or(&w.path);
        println!(
            "{:<20} {:<26} {:>10}  {}",
            w.name,
            w.arch,
            w.bytes,
            rel.display()
        );
    }
    println!();
    for line in size_goals(written) {
        println!("{line}");
    }
}

/// One `GOAL` line per arch and role: figures for every arch, met or missed, so a size over
/// budget shows in the run's summary instead of passing silently. `.apk` lines carry `_apk`.
pub fn size_goals(written: &[Written]) -> Vec<String> {
    let mut lines = Vec::new();
    for format in ["ipk", "apk"] {
        let of_format: Vec<&Written> = written.iter().filter(|w| w.format == format).collect();
        let luci = of_format
            .iter()
            .find(|w| w.name == "luci-app-trellis")
            .map(|w| w.bytes);
        let mut arches: Vec<&str> = of_format
            .iter()
            .filter(|w| w.arch != "all")
            .map(|w| w.arch.as_str())
            .collect();
        arches.dedup();
        let suffix = if format == "ipk" { "" } else { "_apk" };
        for arch in arches {
            let size = |name: &str| {
                of_format
                    .iter()
                    .find(|w| w.arch == arch && w.name == name)
                    .map(|w| w.bytes)
            };
            // None when a package of the set is missing: a missed goal, not a smaller sum.
            let total = |names: &[&str]| -> Option<u64> {
                names
                    .iter()
                    .map(|n| {
                        if *n == "luci-app-trellis" {
                            luci
                        } else {
                            size(n)
                        }
                    })
                    .sum()
            };
            lines.push(goal_line(
                &format!("primary_install{suffix}_{arch}"),
                total(spec::PRIMARY_PACKAGES),
                PRIMARY_GOAL_BYTES,
            ));
            lines.push(goal_line(
                &format!("satellite_install{suffix}_{arch}"),
                total(spec::SATELLITE_PACKAGES),
                SATELLITE_GOAL_BYTES,
            ));
        }
    }
    lines
}

/// `GOAL name 3.41MB <=3.5MB MET`: two decimals, since budgets are a few tenths apart.
fn goal_line(name: &str, bytes: Option<u64>, goal: u64) -> String {
    let target = format!("<={}MB", goal as f64 / 1e6);
    match bytes {
        Some(b) => format!(
            "GOAL {name} {:.2}MB {target} {}",
            b as f64 / 1e6,
            if b <= goal { "MET" } else { "MISSED" }
        ),
        None => format!("GOAL {name} n/a {target} MISSED"),
    }
}

/// What `cargo xtask test` runs: the source checks (shellcheck, the LuCI JS under node), and
/// unless `quick`, the aarch64 and noarch packages built and read back.
pub fn ci_checks(quick: bool) -> Result<()> {
    let mut results = checks::source_checks(&root())?;
    if !quick {
        let r = build(&["aarch64_cortex-a53".to_owned()], false, None).inspect(|w| print_sizes(w));
        match r {
            Ok(written) => {
                results.push(("packages build and pass their checks".into(), Ok(())));
                for w in &written {
                    results.push((
                        format!("GNU tar reads {}", w.path.display()),
                        checks::gnu_tar_reads(&w.path),
                    ));
                }
            }
            Err(e) => results.push(("packages build and pass their checks".into(), Err(e))),
        }
    }
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (name, r) in &results {
        match r {
            Ok(()) => println!("ok   {name}"),
            Err(e) => println!("FAIL {name}: {e:#}"),
        }
    }
    println!(
        "packages: {} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("{} package checks failed", failed.len());
    }
    Ok(())
}

#[cfg(test)]
mod size_tests {
    use super::*;

    fn w(name: &str, arch: &str, format: &'static str, bytes: u64) -> Written {
        Written {
            name: name.into(),
            arch: arch.into(),
            format,
            path: PathBuf::from(format!("{name}.{format}")),
            bytes,
        }
    }

    #[test]
    fn every_arch_gets_a_primary_and_a_satellite_goal_line_met_or_missed() {
        let written = [
            w("trellis-agent", "mips_24kc", "ipk", 1_878_721),
            w("trellis-controller", "mips_24kc", "ipk", 3_600_000),
            w("trellis-agent", "x86_64", "ipk", 1_200_000),
            w("trellis-controller", "x86_64", "ipk", 2_000_000),
            w("luci-app-trellis", "all", "ipk", 10_000),
        ];
        assert_eq!(
            size_goals(&written),
            [
                "GOAL primary_install_mips_24kc 3.61MB <=3.5MB MISSED",
                "GOAL satellite_install_mips_24kc 1.88MB <=2.5MB MET",
                "GOAL primary_install_x86_64 2.01MB <=3.5MB MET",
                "GOAL satellite_install_x86_64 1.20MB <=2.5MB MET",
            ]
        );
    }

    #[test]
    fn a_missing_package_is_a_missed_goal_not_a_smaller_sum() {
        let written = [
            w("trellis-agent", "x86_64", "apk", 1_000_000),
            w("luci-app-trellis", "all", "apk", 10_000),
        ];
        assert_eq!(
            size_goals(&written),
            [
                "GOAL primary_install_apk_x86_64 n/a <=3.5MB MISSED",
                "GOAL satellite_install_apk_x86_64 1.00MB <=2.5MB MET",
            ]
        );
    }
}

#[cfg(test)]
mod primary_package_tests {
    use super::*;

    fn controller_package(dir: &Path) -> spec::Package {
        let bin = dir.join("trellis-controller");
        let mut bytes = elf::fake_header(elf::expected("x86_64").unwrap());
        bytes.resize(4096, 0);
        std::fs::write(&bin, bytes).unwrap();
        spec::controller("x86_64", &bin)
    }

    #[test]
    fn a_primary_package_without_the_agent_inside_is_refused() {
        let dir = std::env::temp_dir().join(format!("trellis-primary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pkg = controller_package(&dir);
        let bytes = ipk::build(&pkg, &root(), 1).unwrap();
        assert_eq!(
            verify(&bytes, &pkg.ipk_file_name()).unwrap(),
            Vec::<String>::new()
        );

        // The agent's name must reach the multi-call binary, and the package must stand in
        // for trellis-agent, or a primary gets no agent or two.
        let mut broken = controller_package(&dir);
        broken.files.retain(|f| f.dest != "/usr/bin/trellis-agent");
        broken.provides.clear();
        let bytes = ipk::build(&broken, &root(), 1).unwrap();
        let problems = verify(&bytes, &broken.ipk_file_name()).unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/usr/bin/trellis-agent must link to trellis-controller")),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("Provides lacks trellis-agent")),
            "{problems:#?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
