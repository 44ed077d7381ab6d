//! Reads an `.ipk` back the way opkg does and checks what opkg and a router rely on.
//!
//! This is deliberately a second implementation, not the writer run backwards: it gunzips the
//! outer layer and looks members up by name with or without `./` (opkg-lede
//! `libbb/unarchive.c`), parses `control` as opkg's `pkg_parse` does (fields, continuation
//! lines), and applies rules about paths and modes that hold for any Trellis package.
use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::GzDecoder;

use super::elf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Path with `./` removed and no trailing `/`: `etc/init.d/trellis-agent`.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Ipk {
    /// Outer member names in archive order.
    pub members: Vec<String>,
    /// control fields, in file order.
    pub fields: Vec<(String, String)>,
    pub control: Vec<Entry>,
    pub data: Vec<Entry>,
}

impl Ipk {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn control_file(&self, name: &str) -> Option<&Entry> {
        self.control.iter().find(|e| e.path == name)
    }

    pub fn data_file(&self, path: &str) -> Option<&Entry> {
        let path = path.trim_start_matches('/');
        self.data.iter().find(|e| e.path == path)
    }

    pub fn conffiles(&self) -> Vec<String> {
        self.control_file("conffiles")
            .map(|e| {
                String::from_utf8_lossy(&e.bytes)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parse an `.ipk` file.
pub fn read(bytes: &[u8]) -> Result<Ipk> {
    if bytes.starts_with(b"!<arch>\n") {
        bail!("this is a Debian ar archive; OpenWrt's opkg only reads gzip'ed tar .ipk files");
    }
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        bail!("not gzip data (an .ipk is a gzip'ed tar)");
    }
    let outer = untar(bytes).context("outer archive")?;
    let members: Vec<String> = outer.iter().map(|e| e.path.clone()).collect();
    let member = |name: &str| {
        outer
            .iter()
            .find(|e| e.path == name && e.kind == EntryKind::File)
            .ok_or_else(|| anyhow!("member ./{name} is missing (members: {members:?})"))
    };
    let debian_binary = member("debian-binary")?;
    if debian_binary.bytes != b"2.0\n" {
        bail!(
            "debian-binary holds {:?}, not \"2.0\\n\"",
            String::from_utf8_lossy(&debian_binary.bytes)
        );
    }
    let control = untar(&member("control.tar.gz")?.bytes).context("control.tar.gz")?;
    let data = untar(&member("data.tar.gz")?.bytes).context("data.tar.gz")?;
    let control_text = control
        .iter()
        .find(|e| e.path == "control")
        .ok_or_else(|| anyhow!("control.tar.gz has no ./control"))?;
    let fields = parse_control(&String::from_utf8(control_text.bytes.clone())?)?;
    Ok(Ipk {
        members,
        fields,
        control,
        data,
    })
}

/// `Field: value` lines; a line starting with a space continues the previous value.
pub fn parse_control(text: &str) -> Result<Vec<(String, String)>> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, v)) = fields.last_mut() else {
                bail!("control line {}: continuation before any field", n + 1);
            };
            v.push('\n');
            v.push_str(line.trim());
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            bail!("control line {}: {line:?} is not `Field: value`", n + 1);
        };
        if fields.iter().any(|(f, _)| f == k) {
            bail!("control line {}: field {k} appears twice", n + 1);
        }
        fields.push((k.to_owned(), v.trim().to_owned()));
    }
    Ok(fields)
}

fn untar(gz: &[u8]) -> Result<Vec<Entry>> {
    let mut raw = Vec::new();
    GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .context("gunzip failed")?;
    let mut archive = tar::Archive::new(raw.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular => EntryKind::File,
            tar::EntryType::Symlink => EntryKind::Symlink(
                entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            other => bail!("{name}: unexpected tar entry type {other:?}"),
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        out.push(Entry {
            path,
            kind,
            mode: header.mode()? & 0o7777,
            uid: header.uid()?,
            gid: header.gid()?,
            bytes,
        });
    }
    Ok(out)
}

/// What the caller knows about the package it asked for.
pub struct Expect<'a> {
    pub file_name: &'a str,
    pub name: &'a str,
    pub arch: &'a str,
    /// Paths that must be in the package (with their kind checked by the mode rules).
    pub paths: &'a [&'a str],
}

/// Everything wrong with the package, one line each; empty when it is fine.
pub fn check(ipk: &Ipk, want: &Expect) -> Vec<String> {
    let mut bad = Vec::new();
    let order = ["debian-binary", "data.tar.gz", "control.tar.gz"];
    if ipk.members != order {
        bad.push(format!(
            "outer members are {:?}, expected {order:?}",
            ipk.members
        ));
    }
    for f in [
        "Package",
        "Version",
        "Depends",
        "Source",
        "Section",
        "Architecture",
        "Installed-Size",
        "Description",
    ] {
        if ipk.field(f).is_none_or(str::is_empty) {
            bad.push(format!("control field {f} is missing or empty"));
        }
    }
    if ipk.field("Package") != Some(want.name) {
        bad.push(format!(
            "Package is {:?}, expected {:?}",
            ipk.field("Package"),
            want.name
        ));
    }
    if ipk.field("Architecture") != Some(want.arch) {
        bad.push(format!(
            "Architecture is {:?}, expected {:?}",
            ipk.field("Architecture"),
            want.arch
        ));
    }
    let expected_name = format!(
        "{}_{}_{}.ipk",
        ipk.field("Package").unwrap_or("?"),
        ipk.field("Version").unwrap_or("?"),
        ipk.field("Architecture").unwrap_or("?")
    );
    if want.file_name != expected_name {
        bad.push(format!(
            "file is named {}, opkg's convention gives {expected_name}",
            want.file_name
        ));
    }
    let size: usize = ipk
        .data
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.bytes.len())
        .sum();
    if ipk.field("Installed-Size") != Some(size.to_string().as_str()) {
        bad.push(format!(
            "Installed-Size is {:?} but the files hold {size} bytes",
            ipk.field("Installed-Size")
        ));
    }

    for (script, call) in [("postinst", "default_postinst"), ("prerm", "default_prerm")] {
        match ipk.control_file(script) {
            None => bad.push(format!("control.tar.gz has no {script}")),
            Some(e) => {
                if e.mode != 0o755 {
                    bad.push(format!("{script} has mode {:o}, expected 755", e.mode));
                }
                let text = String::from_utf8_lossy(&e.bytes);
                if !text.starts_with("#!/bin/sh") || !text.contains(call) {
                    bad.push(format!("{script} does not run {call}"));
                }
            }
        }
    }
    for c in ipk.conffiles() {
        match ipk.data_file(&c) {
            Some(e) if e.kind == EntryKind::File => {}
            _ => bad.push(format!("conffile {c} is not a file of the package")),
        }
    }
    for p in want.paths {
        if ipk.data_file(p).is_none() {
            bad.push(format!("{p} is missing"));
        }
    }

    let want_cpu = if want.arch == "all" {
        None
    } else {
        match elf::expected(want.arch) {
            Ok(m) => Some(m),
            Err(e) => {
                bad.push(e.to_string());
                None
            }
        }
    };
    for e in ipk.control.iter().chain(&ipk.data) {
        if e.uid != 0 || e.gid != 0 {
            bad.push(format!(
                "{} is owned by {}:{}, not root (0:0)",
                e.path, e.uid, e.gid
            ));
        }
    }
    for e in &ipk.data {
        let path = format!("/{}", e.path);
        // Programs and init scripts must be executable; everything else is data that a
        // stray execute bit would only make confusing.
        let executable = path.starts_with("/usr/bin/")
            || path.starts_with("/usr/sbin/")
            || path.starts_with("/etc/init.d/")
            || path.starts_with("/usr/libexec/");
        match &e.kind {
            EntryKind::Dir if e.mode != 0o755 => {
                bad.push(format!("directory {path} has mode {:o}, not 755", e.mode))
            }
            EntryKind::Dir | EntryKind::Symlink(_) => {}
            EntryKind::File => {
                let want_mode = if executable { 0o755 } else { 0o644 };
                if e.mode != want_mode {
                    bad.push(format!(
                        "{path} has mode {:o}, expected {want_mode:o}",
                        e.mode
                    ));
                }
                if path.starts_with("/etc/init.d/")
                    && !e.bytes.starts_with(b"#!/bin/sh /etc/rc.common\n")
                {
                    bad.push(format!(
                        "{path} does not start with #!/bin/sh /etc/rc.common"
                    ));
                }
                match (elf::machine(&e.bytes), want_cpu) {
                    (Err(err), _) => bad.push(format!("{path}: {err}")),
                    (Ok(Some(m)), None) => {
                        bad.push(format!("{path} is a {m} binary in a noarch package"))
                    }
                    (Ok(Some(m)), Some(w)) if m != w => bad.push(format!(
                        "{path} is built for {m}, but {} needs {w}",
                        want.arch
                    )),
                    (Ok(None), Some(_)) if executable && path.starts_with("/usr/bin/") => {
                        bad.push(format!("{path} is not an ELF binary"))
                    }
                    _ => {}
                }
            }
        }
        if let EntryKind::Symlink(target) = &e.kind {
            let resolved = if target.starts_with('/') {
                target.trim_start_matches('/').to_owned()
            } else {
                let dir = e.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                format!("{dir}/{target}")
            };
            if ipk.data_file(&resolved).is_none() {
                bad.push(format!(
                    "{path} links to {target}, which the package does not hold"
                ));
            }
        }
    }
    bad
}
