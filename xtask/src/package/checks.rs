//! Checks of the packaging sources that need outside tools (shellcheck, node, GNU tar).
//! The checks that need only `/bin/sh` and Rust are cargo tests in `tests.rs`.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::have;

/// Folders whose shell scripts this module owns.
const SHELL_DIRS: &[&str] = &["firmware", "web/luci-app-trellis"];

pub type Outcome = (String, Result<()>);

pub fn source_checks(root: &Path) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for file in shell_files(root)? {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        out.push((format!("shellcheck {rel}"), shellcheck(&file)));
    }
    ensure_node()?;
    for file in luci_views(root)? {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        out.push((format!("node --check {rel}"), node_check(&file)));
        out.push((
            format!("{rel} renders with stub LuCI and uses only UCI options that exist"),
            view_smoke(root, &file),
        ));
    }
    Ok(out)
}

/// Every shell script under the folders this module owns, found by its `#!` line.
pub fn shell_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in SHELL_DIRS {
        for f in walk(&root.join(d))? {
            if shell_dialect(&f)?.is_some() {
                out.push(f);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no shell scripts found under {SHELL_DIRS:?}");
    }
    Ok(out)
}

/// `Some("bash")` or `Some("dash")` for a shell script. OpenWrt's `/bin/sh` is busybox ash,
/// which like dash has `local`, so `#!/bin/sh` scripts are checked as dash.
pub fn shell_dialect(path: &Path) -> Result<Option<&'static str>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    Ok(if !first.starts_with("#!") {
        None
    } else if first.contains("bash") {
        Some("bash")
    } else if first.contains("sh") {
        Some("dash")
    } else {
        None
    })
}

fn shellcheck(file: &Path) -> Result<()> {
    if !have("shellcheck") {
        bail!("shellcheck is not installed (cargo xtask setup installs it)");
    }
    let dialect = shell_dialect(file)?.unwrap_or("dash");
    let out = Command::new("shellcheck")
        .args(["-s", dialect])
        .arg(file)
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stdout).trim());
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let ty = e.file_type()?;
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn luci_views(root: &Path) -> Result<Vec<PathBuf>> {
    let views: Vec<PathBuf> = walk(&root.join("web/luci-app-trellis/htdocs"))?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    if views.is_empty() {
        bail!("no LuCI views under web/luci-app-trellis/htdocs");
    }
    Ok(views)
}

/// A fresh Debian has no node; it is a Debian package away.
fn ensure_node() -> Result<()> {
    if have("node") {
        return Ok(());
    }
    let root_user = crate::output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false);
    if !root_user {
        bail!("node is needed to check the LuCI views: sudo apt-get install nodejs");
    }
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "nodejs"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = crate::root().join("target/package-checks").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// LuCI compiles a view as the body of a function (`new Function(...)`), which is why the
/// file may `return` at top level; node checks it the same way.
fn node_check(view: &Path) -> Result<()> {
    let src = std::fs::read_to_string(view)?;
    let dir = scratch("node-check")?;
    let wrapped = dir.join("view.js");
    std::fs::write(&wrapped, format!("(function() {{\n{src}\n}});\n"))?;
    let out = Command::new("node").arg("--check").arg(&wrapped).output()?;
    if !out.status.success() {
        bail!(
            "{} (line numbers are one more than in the file)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Stand-ins for the LuCI modules a view requires: they record the rpc declarations and form
/// options the view makes, then the view's `load` and `render` run as LuCI would call them.
const VIEW_HARNESS: &str = r#"
const fs = require('fs');
const src = fs.readFileSync(process.argv[2], 'utf8');
const declared = [], options = [], maps = [];
global.window = { location: { hostname: 'router.lan' } };
String.prototype.format = function() { return String(this); };
const E = (tag, attrs, children) => ({ tag, attrs, children });
const _ = (s) => s;
const form = {
  Map: function(config) {
    maps.push(config);
    this.section = (type, name) => ({
      option: (kind, opt) => { options.push({ section: name, option: opt }); return { value() {} }; }
    });
    this.render = () => Promise.resolve(E('div', {}, []));
  },
  NamedSection: 'NamedSection', TypedSection: 'TypedSection',
  Flag: 'Flag', ListValue: 'ListValue', Value: 'Value', DynamicList: 'DynamicList'
};
const rpc = { declare: (d) => { declared.push(d.object + '.' + d.method);
  return () => Promise.resolve({ agent_installed: true, agent_running: true,
    controller_installed: true, controller_running: false, status: { home_id: 'h', config_version: 3, nodes: 2, ca_not_after: 1900000000,
    agent_api: '0.0.0.0:7443', controller_version: '0.1.0' }, error: null }); } };
const view = { extend: (o) => o };
const poll = { add: () => {} };
const uci = { load: () => Promise.resolve(), get: () => null };
const dom = { content: () => {} };
const v = new Function('view', 'form', 'rpc', 'poll', 'uci', 'dom', 'E', '_', src)(view, form, rpc, poll, uci, dom, E, _);
if (typeof v.load !== 'function' || typeof v.render !== 'function') throw new Error('the view has no load/render');
Promise.resolve(v.load()).then((data) => v.render(data)).then((node) => {
  if (!node || !node.tag) throw new Error('render returned no element');
  console.log(JSON.stringify({ declared, options, maps }));
}).catch((e) => { console.error(e.stack || e); process.exit(1); });
"#;

fn view_smoke(root: &Path, view: &Path) -> Result<()> {
    let dir = scratch("view-smoke")?;
    let harness = dir.join("harness.js");
    std::fs::write(&harness, VIEW_HARNESS)?;
    let out = Command::new("node").arg(&harness).arg(view).output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let config = std::fs::read_to_string(root.join("firmware/files/trellis.config"))?;
    let uci =
        crate::uci::parse(&config).map_err(|e| anyhow!("firmware/files/trellis.config {e}"))?;
    if seen["maps"] != serde_json::json!(["trellis"]) {
        bail!("the view edits {:?}, expected only trellis", seen["maps"]);
    }
    let mut missing = Vec::new();
    for o in seen["options"].as_array().into_iter().flatten() {
        let (sec, opt) = (
            o["section"].as_str().unwrap_or(""),
            o["option"].as_str().unwrap_or(""),
        );
        if uci.section(sec).and_then(|s| s.value(opt)).is_none() {
            missing.push(format!("{sec}.{opt}"));
        }
    }
    if !missing.is_empty() {
        bail!("the view edits options the default config lacks: {missing:?}");
    }
    let acl: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("web/luci-app-trellis/root/usr/share/rpcd/acl.d/luci-app-trellis.json"),
    )?)?;
    for d in seen["declared"].as_array().into_iter().flatten() {
        let d = d.as_str().unwrap_or("");
        let (object, method) = d.rsplit_once('.').unwrap_or((d, ""));
        let granted = acl["luci-app-trellis"]["read"]["ubus"][object]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == method));
        if !granted {
            bail!("the view calls {object} {method}, which the ACL does not grant");
        }
    }
    Ok(())
}

/// An independent reader: GNU tar must list the outer archive and both inner ones.
pub fn gnu_tar_reads(ipk: &Path) -> Result<()> {
    let dir = scratch("gnu-tar")?;
    let run = |args: &[&str]| -> Result<String> {
        crate::output(Command::new("tar").args(args).current_dir(&dir))
    };
    let ipk = ipk.to_str().context("non-UTF-8 path")?;
    let members = run(&["-tzf", ipk])?;
    if members.lines().collect::<Vec<_>>()
        != ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    {
        bail!("GNU tar lists {members:?}");
    }
    run(&["-xzf", ipk])?;
    let control = run(&["-xzOf", "control.tar.gz", "./control"])?;
    if !control.starts_with("Package: ") {
        bail!("GNU tar extracts a control file starting {:?}", &control);
    }
    let data = run(&["-tvzf", "data.tar.gz"])?;
    if !data.contains(" root/root ") && !data.contains(" 0/0 ") {
        bail!("data.tar.gz entries are not owned by root: {data}");
    }
    Ok(())
}
