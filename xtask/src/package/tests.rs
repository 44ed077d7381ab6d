//! Tests of the packages and of what they ship that need only Rust and `/bin/sh`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;
use crate::package::read::EntryKind;

fn ws() -> PathBuf {
    crate::root()
}

/// A fresh scratch folder, removed when the test is done with it (a failed assertion too:
/// the panic drops it); the counter keeps tests that run in parallel apart.
fn tmp(name: &str) -> Scratch {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "trellis-pkg-test-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stand-in "binary": a valid ELF header for `arch` and some padding.
fn fake_binary(dir: &Path, name: &str, arch: &str) -> PathBuf {
    let mut bytes = elf::fake_header(elf::expected(arch).unwrap());
    bytes.resize(4096, 0xAB);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The three packages over stand-in binaries, which live as long as the returned folder.
fn packages(arch: &str, bin_arch: &str) -> (Scratch, Vec<spec::Package>) {
    let dir = tmp(&format!("bins-{arch}-{bin_arch}"));
    let pkgs = vec![
        spec::agent(arch, &fake_binary(&dir, "trellis-agent", bin_arch)),
        spec::controller(arch, &fake_binary(&dir, "trellis-controller", bin_arch)),
        spec::luci(&ws()).unwrap(),
    ];
    (dir, pkgs)
}

fn problems_of(pkg: &spec::Package) -> Vec<String> {
    let bytes = ipk::build(pkg, &ws(), 1_700_000_000).unwrap();
    verify(&bytes, &pkg.ipk_file_name()).unwrap()
}

#[test]
fn every_package_of_every_arch_passes_the_opkg_checks() {
    for t in crate::cross::targets().unwrap() {
        let (_bins, pkgs) = packages(&t.openwrt_arch, &t.openwrt_arch);
        for pkg in pkgs {
            let p = problems_of(&pkg);
            assert!(p.is_empty(), "{}: {p:#?}", pkg.ipk_file_name());
        }
    }
}

#[test]
fn packages_read_back_with_the_expected_contents() {
    let (_bins, pkgs) = packages("aarch64_cortex-a53", "aarch64_cortex-a53");
    let bytes = ipk::build(&pkgs[0], &ws(), 1).unwrap();
    let ipk = read::read(&bytes).unwrap();
    assert_eq!(
        ipk.members,
        ["debian-binary", "data.tar.gz", "control.tar.gz"]
    );
    let depends = ipk.field("Depends").unwrap();
    assert!(
        depends.contains("wpad-mesh-mbedtls | wpad-mbedtls"),
        "{depends}"
    );
    assert!(depends.contains("kmod-nft-tproxy"), "{depends}");
    // Every wpad alternative is a full build (802.11r/k/v for the access points, 802.11s
    // for the mesh): never a basic or mini one.
    let wpad = depends
        .split(", ")
        .find(|d| d.starts_with("wpad-"))
        .unwrap();
    for alt in wpad.split(" | ") {
        assert!(
            !alt.contains("basic") && !alt.contains("mini"),
            "{alt} lacks 802.11r/k/v or mesh"
        );
    }
    // The agent runs `nft`: without the nftables package it cannot intercept anything.
    assert!(depends.split(", ").any(|d| d == "nftables"), "{depends}");
    assert_eq!(ipk.conffiles(), ["/etc/config/trellis"]);
    let init = ipk.data_file("/etc/init.d/trellis-agent").unwrap();
    assert_eq!(init.mode, 0o755);
    assert_eq!(ipk.data_file("/usr/bin/trellis-agent").unwrap().mode, 0o755);
    assert_eq!(ipk.data_file("/etc/config/trellis").unwrap().mode, 0o644);
    assert!(ipk.control_file("prerm-pkg").is_some());

    let ctl = read::read(&ipk::build(&pkgs[1], &ws(), 1).unwrap()).unwrap();
    assert_eq!(
        ctl.data_file("/usr/bin/trellis").unwrap().kind,
        EntryKind::Symlink("trellis-controller".into())
    );
    // The primary's package is the agent's too: one multi-call binary behind both names,
    // the agent's config and scripts, and it stands in for trellis-agent.
    assert_eq!(
        ctl.data_file("/usr/bin/trellis-agent").unwrap().kind,
        EntryKind::Symlink("trellis-controller".into())
    );
    assert_eq!(
        ctl.data_file("/usr/bin/trellis-controller").unwrap().mode,
        0o755
    );
    assert_eq!(
        ctl.data_file("/etc/init.d/trellis-agent").unwrap().mode,
        0o755
    );
    assert_eq!(ctl.conffiles(), ["/etc/config/trellis"]);
    assert!(ctl.control_file("prerm-pkg").is_some());
    assert_eq!(ctl.field("Provides"), Some("trellis-agent"));
    assert_eq!(ctl.field("Conflicts"), Some("trellis-agent"));
    assert_eq!(ctl.field("Depends"), ipk.field("Depends"));

    let luci = read::read(&ipk::build(&pkgs[2], &ws(), 1).unwrap()).unwrap();
    assert_eq!(luci.field("Architecture"), Some("all"));
    assert_eq!(
        luci.data_file("/usr/libexec/rpcd/luci.trellis")
            .unwrap()
            .mode,
        0o755
    );
}

#[test]
fn output_is_deterministic() {
    let (_bins, pkgs) = packages("x86_64", "x86_64");
    for p in &pkgs {
        assert_eq!(
            ipk::build(p, &ws(), 42).unwrap(),
            ipk::build(p, &ws(), 42).unwrap(),
            "{}",
            p.name
        );
    }
}

#[test]
fn gnu_tar_reads_what_we_write() {
    let dir = tmp("gnu-tar");
    let (_bins, pkgs) = packages("mipsel_24kc", "mipsel_24kc");
    let pkg = &pkgs[0];
    let path = dir.join(pkg.ipk_file_name());
    std::fs::write(&path, ipk::build(pkg, &ws(), 1).unwrap()).unwrap();
    checks::gnu_tar_reads(&path).unwrap();
}

#[test]
fn a_binary_for_the_wrong_cpu_is_caught() {
    // mips big-endian binaries in a mipsel package: the classic mix-up.
    let (_bins, pkgs) = packages("mipsel_24kc", "mips_24kc");
    let pkg = &pkgs[0];
    let p = problems_of(pkg);
    assert!(
        p.iter()
            .any(|m| m.contains("/usr/bin/trellis-agent is built for mips")
                && m.contains("big-endian")),
        "{p:#?}"
    );
    let (_bins, pkgs) = packages("aarch64_cortex-a53", "x86_64");
    let pkg = &pkgs[1];
    assert!(problems_of(pkg).iter().any(|m| m.contains("e_machine 62")));
}

#[test]
fn wrong_modes_missing_files_and_bad_conffiles_are_caught() {
    let (_bins, mut pkgs) = packages("x86_64", "x86_64");
    let mut pkg = pkgs.remove(0);
    pkg.files[0].mode = 0o644; // the binary
    pkg.files[1].mode = 0o644; // the init script
    pkg.conffiles.push("/etc/trellis/nothing".into());
    pkg.files
        .retain(|f| f.dest != "/lib/upgrade/keep.d/trellis");
    let p = problems_of(&pkg);
    for want in [
        "/usr/bin/trellis-agent has mode 644, expected 755",
        "/etc/init.d/trellis-agent has mode 644, expected 755",
        "conffile /etc/trellis/nothing is not a file of the package",
        "/lib/upgrade/keep.d/trellis is missing",
    ] {
        assert!(p.iter().any(|m| m == want), "{want:?} not in {p:#?}");
    }
}

#[test]
fn a_misnamed_package_or_an_ar_archive_is_rejected() {
    let (_bins, pkgs) = packages("x86_64", "x86_64");
    let pkg = &pkgs[0];
    let bytes = ipk::build(pkg, &ws(), 1).unwrap();
    let p = verify(&bytes, "trellis-agent.ipk").unwrap();
    assert!(p.iter().any(|m| m.contains("opkg's convention")), "{p:#?}");

    let e = read::read(b"!<arch>\ndebian-binary   ").unwrap_err();
    assert!(e.to_string().contains("ar archive"), "{e}");
    let e = read::read(b"PK\x03\x04").unwrap_err();
    assert!(e.to_string().contains("not gzip"), "{e}");
}

#[test]
fn control_continuation_lines_and_duplicates() {
    let f = read::parse_control("Package: a\nDescription: one\n two\n").unwrap();
    assert_eq!(f[1].1, "one\ntwo");
    assert!(read::parse_control("Package: a\nPackage: b\n").is_err());
    assert!(read::parse_control(" x\n").is_err());
}

// ---------------------------------------------------------------------------------------
// What the packages ship: UCI defaults, init scripts, uci-defaults, the rpcd plugin.

fn default_config() -> crate::uci::UciFile {
    let text = std::fs::read_to_string(ws().join("firmware/files/trellis.config")).unwrap();
    crate::uci::parse(&text).unwrap_or_else(|e| panic!("trellis.config {e}"))
}

#[test]
fn uci_defaults_parse_and_hold_what_the_init_scripts_read() {
    let cfg = default_config();
    for s in ["main", "mesh", "controller", "agent"] {
        assert!(cfg.section(s).is_some(), "section {s} missing");
    }
    assert!(["auto", "controller", "agent"].contains(&cfg.get("main", "role").unwrap()));
    assert_eq!(
        cfg.section("main").unwrap().get_bool("enabled"),
        Ok(Some(true))
    );
    assert!(["2g", "5g", "6g"].contains(&cfg.get("mesh", "band").unwrap()));
    let v: u16 = cfg.get("controller", "port").unwrap().parse().unwrap();
    assert!(v > 0);
    for port in ["dns_port", "proxy_outbound_port", "proxy_inbound_port"] {
        let v: u16 = cfg.get("agent", port).unwrap().parse().unwrap();
        assert!(v > 0);
    }
    // Every `config_get[_bool] var section option` of the init scripts names an option that
    // the shipped defaults have, so a typo cannot silently fall back to a default.
    for script in ["trellis-agent.init", "trellis-controller.init"] {
        let text = std::fs::read_to_string(ws().join("firmware/files").join(script)).unwrap();
        let mut n = 0;
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let ["config_get" | "config_get_bool", _var, section, option, ..] = w.as_slice() {
                // A section in a variable is another file's (/etc/config/wireless).
                if section.contains('$') {
                    continue;
                }
                n += 1;
                assert!(
                    cfg.get(section, option).is_some(),
                    "{script} reads {section}.{option}, which trellis.config lacks"
                );
            }
        }
        assert!(n >= 3, "{script}: only {n} config_get calls found");
    }
}

/// Stand-ins for /lib/functions.sh (config_load/config_get from a UCI file rendered as the
/// CONFIG_<section>_<option> variables the real one sets) and /lib/functions/procd.sh, and for
/// the commands an init script runs, each recording its call as one `|`-separated line.
const PROCD_STANDIN: &str = r#"
rec() { _l=$1; shift; for _a in "$@"; do _l="$_l|$_a"; done; printf '%s\n' "$_l" >> "$CALLS"; }
config_load() { rec config_load "$@"; . "$CONFIG_VARS"; }
config_get() { eval "_v=\${CONFIG_${2}_${3}:-\$4}"; eval "$1=\$_v"; }
config_get_bool() {
	config_get "$@"
	eval "_v=\$$1"
	case "$_v" in
	1|on|true|yes|enabled) eval "$1=1" ;;
	0|off|false|no|disabled) eval "$1=0" ;;
	*) eval "$1=\${4:-0}" ;;
	esac
}
# /etc/config/wireless comes in the same file: CONFIG_SECTIONS_wifi_device lists its radios.
config_foreach() {
	_cb=$1
	_t=$(printf '%s' "$2" | tr - _)
	eval "_list=\${CONFIG_SECTIONS_${_t}:-}"
	for _s in $_list; do "$_cb" "$_s"; done
}
# `iwinfo nl80211 phyname radioN` answers phyN for the radios the test declares.
iwinfo() {
	rec iwinfo "$@"
	case " ${CONFIG_SECTIONS_wifi_device:-} " in *" $3 "*) echo "phy${3#radio}" ;; esac
}
for f in procd_open_instance procd_close_instance procd_set_param procd_append_param \
	procd_add_reload_trigger procd_add_mdns procd_add_jail procd_open_data procd_close_data \
	procd_add_interface_trigger mkdir chmod logger; do
	eval "$f() { rec $f \"\$@\"; }"
done
"#;

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Run `start_service` and `service_triggers` of an init script against the stand-ins with
/// the default config changed by `set`; returns the recorded calls and the exit status.
fn run_init(script: &str, set: &[(&str, &str, &str)]) -> (Vec<String>, bool, String) {
    run_init_with(script, set, "")
}

/// [`run_init`] with extra shell variables, e.g. the radios of /etc/config/wireless.
fn run_init_with(
    script: &str,
    set: &[(&str, &str, &str)],
    extra_vars: &str,
) -> (Vec<String>, bool, String) {
    let (calls, ok, err, _) = run_init_uci(script, set, extra_vars, "");
    (calls, ok, err)
}

/// [`run_init_with`] against a router whose UCI holds `uci_state` (the stateful `uci`
/// stand-in's format); also returns the `uci` and dnsmasq calls that changed something.
fn run_init_uci(
    script: &str,
    set: &[(&str, &str, &str)],
    extra_vars: &str,
    uci_state: &str,
) -> (Vec<String>, bool, String, Vec<String>) {
    let dir = tmp(&format!("init-{script}-{}-{}", set.len(), extra_vars.len()));
    let root = fake_root(&dir, uci_state);
    let mut cfg = default_config();
    for (sec, opt, val) in set {
        let s = cfg.sections.iter_mut().find(|s| s.name == *sec).unwrap();
        s.options.retain(|(n, _)| n != opt);
        s.options
            .push((opt.to_string(), crate::uci::Value::Single(val.to_string())));
    }
    let mut vars = String::new();
    for s in &cfg.sections {
        let name = &s.name;
        for (opt, _) in &s.options {
            let v = s.get(opt).unwrap();
            vars += &format!("CONFIG_{name}_{opt}={}\n", shell_quote(v));
        }
    }
    vars += extra_vars;
    std::fs::write(dir.join("config.sh"), vars).unwrap();
    std::fs::write(dir.join("procd.sh"), PROCD_STANDIN).unwrap();
    let calls = dir.join("calls");
    let init = ws().join("firmware/files").join(script);
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#". "$1"; . "$2"; start_service; rc=$?; service_triggers; exit $rc"#)
        .arg("sh")
        .arg(dir.join("procd.sh"))
        .arg(&init)
        .env("CALLS", &calls)
        .env("CONFIG_VARS", dir.join("config.sh"))
        .envs(root.env())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&calls).unwrap_or_default();
    (
        text.lines().map(String::from).collect(),
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        root.changes(),
    )
}

fn procd_calls(calls: &[String]) -> Vec<&str> {
    calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with("procd_"))
        .collect()
}

#[test]
fn controller_init_starts_the_daemon_with_the_agreed_flags() {
    let (calls, ok, err) = run_init("trellis-controller.init", &[]);
    assert!(ok, "{err}");
    assert_eq!(
        procd_calls(&calls),
        [
            "procd_open_instance|controller",
            "procd_set_param|command|/usr/bin/trellis-controller|--data-dir|/etc/trellis/controller\
             |--agent-api|0.0.0.0:7443|--admin-socket|/var/run/trellis/admin.sock|--cert-ttl-hours|24",
            "procd_set_param|env|TRELLIS_LOG=info",
            "procd_set_param|respawn|3600|5|5",
            "procd_set_param|stdout|1",
            "procd_set_param|stderr|1",
            "procd_set_param|file|/etc/config/trellis",
            "procd_set_param|limits|nofile=4096 4096",
            "procd_set_param|term_timeout|10",
            "procd_add_mdns|trellis|tcp|7443|path=/",
            "procd_close_instance",
            "procd_add_reload_trigger|trellis",
        ]
    );
    assert!(calls.contains(&"mkdir|-p|/etc/trellis/controller|/var/run/trellis".to_owned()));
}

#[test]
fn controller_init_follows_role_port_and_enabled() {
    let (calls, ok, _) = run_init(
        "trellis-controller.init",
        &[
            ("controller", "port", "8443"),
            ("main", "role", "controller"),
        ],
    );
    assert!(ok);
    let cmd = calls
        .iter()
        .find(|c| c.starts_with("procd_set_param|command|"))
        .unwrap();
    assert!(cmd.contains("|--agent-api|0.0.0.0:8443|"), "{cmd}");
    // An IPv6 listen address gets brackets ('::' used to become :::7443, refused).
    let (calls, ok, _) = run_init("trellis-controller.init", &[("controller", "listen", "::")]);
    assert!(ok);
    let cmd = calls
        .iter()
        .find(|c| c.starts_with("procd_set_param|command|"))
        .unwrap();
    assert!(cmd.contains("|--agent-api|[::]:7443|"), "{cmd}");

    // A satellite: no instance, but the reload trigger stays so a role change applies.
    let (calls, ok, _) = run_init("trellis-controller.init", &[("main", "role", "agent")]);
    assert!(ok);
    assert_eq!(procd_calls(&calls), ["procd_add_reload_trigger|trellis"]);

    let (calls, ok, _) = run_init("trellis-controller.init", &[("main", "enabled", "0")]);
    assert!(ok);
    assert_eq!(procd_calls(&calls), ["procd_add_reload_trigger|trellis"]);

    let (calls, ok, err) = run_init("trellis-controller.init", &[("main", "role", "boss")]);
    assert!(!ok, "an unknown role must fail the start");
    assert!(err.contains("unknown role 'boss'"), "{err}");
    assert_eq!(procd_calls(&calls), ["procd_add_reload_trigger|trellis"]);
}

#[test]
fn agent_init_starts_the_daemon_with_the_agreed_flags() {
    let state = tmp("agent-state");
    let data_dir = state.to_str().unwrap();
    std::fs::create_dir_all(state.join("agent")).unwrap();
    std::fs::write(state.join("agent/node.json"), "{}").unwrap();
    std::fs::write(state.join("agent/identity.pem"), "").unwrap();
    // A dual-band router: radio0 on 2.4 GHz, radio1 on 5 GHz.
    let wireless = "CONFIG_SECTIONS_wifi_device='radio0 radio1'\n\
                    CONFIG_radio0_band='2g'\nCONFIG_radio1_band='5g'\n";
    let (calls, ok, err) = run_init_with(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir)],
        wireless,
    );
    assert!(ok, "{err}");
    let command = format!(
        "procd_set_param|command|/usr/bin/trellis-agent|run|--state-dir|{data_dir}/agent\
         |--dns-listen|127.0.0.1:5354|--proxy-outbound|0.0.0.0:15001\
         |--proxy-inbound|0.0.0.0:15008|--metrics-listen|127.0.0.1:9464\
         |--speedtest-listen|0.0.0.0:15009"
    );
    // The mesh on the 5 GHz radio, channel 36, in the LAN bridge.
    let mesh = format!(
        "procd_set_param|command|/usr/bin/trellis-agent|mesh|--state-dir|{data_dir}/agent\
         |--phy|phy1|--freq|5180|--bridge|br-lan"
    );
    assert_eq!(
        procd_calls(&calls),
        [
            "procd_open_instance|agent",
            command.as_str(),
            "procd_set_param|env|TRELLIS_LOG=info",
            "procd_set_param|respawn|3600|5|5",
            "procd_set_param|stdout|1",
            "procd_set_param|stderr|1",
            "procd_set_param|file|/etc/config/trellis",
            "procd_set_param|limits|nofile=4096 4096",
            "procd_set_param|term_timeout|10",
            "procd_close_instance",
            "procd_open_instance|mesh",
            mesh.as_str(),
            "procd_set_param|env|TRELLIS_LOG=info",
            "procd_set_param|respawn|3600|5|5",
            "procd_set_param|stdout|1",
            "procd_set_param|stderr|1",
            "procd_set_param|file|/etc/config/trellis",
            "procd_set_param|term_timeout|10",
            "procd_close_instance",
            "procd_add_reload_trigger|trellis",
        ]
    );
    assert!(calls.contains(&format!("chmod|0700|{data_dir}|{data_dir}/agent")));
    let text = std::fs::read_to_string(ws().join("firmware/files/trellis-agent.init")).unwrap();
    assert!(text.starts_with("#!/bin/sh /etc/rc.common\n") && text.contains("USE_PROCD=1"));
}

#[test]
fn agent_init_passes_ports_and_interception_from_the_config() {
    let state = tmp("agent-ports");
    let data_dir = state.to_str().unwrap();
    std::fs::create_dir_all(state.join("agent")).unwrap();
    std::fs::write(state.join("agent/node.json"), "{}").unwrap();
    std::fs::write(state.join("agent/identity.pem"), "").unwrap();
    let (calls, ok, err) = run_init(
        "trellis-agent.init",
        &[
            ("main", "data_dir", data_dir),
            ("agent", "dns_port", "5399"),
            ("agent", "intercept", "0"),
            ("agent", "metrics_listen", "off"),
            ("agent", "otlp_endpoint", "http://192.168.1.10:4318"),
            ("agent", "trace_sample", "0.25"),
        ],
    );
    assert!(ok, "{err}");
    let cmd = calls
        .iter()
        .find(|c| c.starts_with("procd_set_param|command|"))
        .unwrap();
    assert!(cmd.contains("|--dns-listen|127.0.0.1:5399|"), "{cmd}");
    assert!(cmd.contains("|--metrics-listen|off|"), "{cmd}");
    let pos = |c: &str| calls.iter().position(|x| x == c);
    let append = pos("procd_append_param|command|--no-intercept").expect("--no-intercept");
    assert!(append > pos(cmd).unwrap() && append < pos("procd_close_instance").unwrap());
    assert!(
        pos("procd_append_param|command|--otlp-endpoint|http://192.168.1.10:4318|--trace-sample|0.25")
            .is_some(),
        "{calls:?}"
    );
}

#[test]
fn agent_init_puts_the_mesh_where_the_config_says_or_explains_why_not() {
    let state = tmp("agent-mesh");
    let data_dir = state.to_str().unwrap();
    std::fs::create_dir_all(state.join("agent")).unwrap();
    std::fs::write(state.join("agent/node.json"), "{}").unwrap();
    std::fs::write(state.join("agent/identity.pem"), "").unwrap();
    let mesh_cmd = |calls: &[String]| {
        calls
            .iter()
            .find(|c| c.starts_with("procd_set_param|command|/usr/bin/trellis-agent|mesh|"))
            .cloned()
    };
    // 2.4 GHz on channel 6, a named radio, another bridge.
    let (calls, ok, err) = run_init_with(
        "trellis-agent.init",
        &[
            ("main", "data_dir", data_dir),
            ("mesh", "band", "2g"),
            ("mesh", "channel", "6"),
            ("mesh", "radio", "radio0"),
            ("mesh", "bridge", "br-home"),
        ],
        "CONFIG_SECTIONS_wifi_device='radio0'\nCONFIG_radio0_band='2g'\n",
    );
    assert!(ok, "{err}");
    let cmd = mesh_cmd(&calls).expect("a mesh instance");
    assert!(
        cmd.ends_with("|--phy|phy0|--freq|2437|--bridge|br-home"),
        "{cmd}"
    );
    // No radio on the chosen band: the agent still runs, and the log says what to set.
    let (calls, ok, err) = run_init_with(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir)],
        "CONFIG_SECTIONS_wifi_device='radio0'\nCONFIG_radio0_band='2g'\n",
    );
    assert!(ok, "{err}");
    assert!(mesh_cmd(&calls).is_none(), "{calls:?}");
    assert!(calls.contains(&"procd_open_instance|agent".to_string()));
    assert!(
        err.contains("no 5g radio for the mesh") && err.contains("trellis.mesh.radio"),
        "{err}"
    );
    // Mesh off (wired-only home), or a band that does not exist.
    let (calls, ok, _) = run_init(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir), ("mesh", "enabled", "0")],
    );
    assert!(ok && mesh_cmd(&calls).is_none());
    let (_, ok, err) = run_init(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir), ("mesh", "band", "60g")],
    );
    assert!(!ok, "a bad band fails the start");
    assert!(err.contains("mesh band '60g'"), "{err}");
}

#[test]
fn the_primary_routers_agent_joins_its_own_controller_at_start() {
    let state = tmp("agent-primary");
    let data_dir = state.to_str().unwrap();
    // (`mkdir` is a stand-in that only records.)
    std::fs::create_dir_all(state.join("agent")).unwrap();
    // A stand-in `trellis-agent`: records `join` and leaves what a real join leaves.
    let stub = state.join("trellis-agent-stub");
    std::fs::write(
        &stub,
        "#!/bin/sh\nl=agent; for a in \"$@\"; do l=\"$l|$a\"; done; echo \"$l\" >> \"$CALLS\"\n\
         [ \"$1\" = join ] && touch \"$3/node.json\" \"$3/identity.pem\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The controller's `trellis` command and OpenWrt's jsonfilter, as shell stand-ins.
    let controller_here = format!(
        "PROG={}\n\
         trellis() {{ rec trellis \"$@\"; echo '{{\"code\":\"K7QF-9M2X-3D\",\"expires_in_s\":600}}'; }}\n\
         jsonfilter() {{ sed -n 's/.*\"code\":\"\\([^\"]*\\)\".*/\\1/p'; }}\n\
         sleep() {{ rec sleep \"$@\"; }}\n",
        stub.display()
    );
    let (calls, ok, err) = run_init_with(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir), ("mesh", "enabled", "0")],
        &controller_here,
    );
    assert!(ok, "{err}");
    assert!(
        calls.contains(
            &"trellis|--admin-socket|/var/run/trellis/admin.sock|pair|--this-router|--json"
                .to_string()
        ),
        "{calls:?}"
    );
    let join = format!("agent|join|--state-dir|{data_dir}/agent|127.0.0.1:7443|K7QF-9M2X-3D");
    assert!(calls.contains(&join), "{calls:?}");
    assert!(
        calls.contains(&"procd_open_instance|agent".to_string()),
        "joined, the agent starts at once: {calls:?}"
    );

    // The controller on another address and admin socket: the join follows both.
    for (listen, joins) in [("127.0.0.2", "127.0.0.2:8443"), ("::", "[::1]:8443")] {
        let state = tmp("agent-primary-listen");
        let data_dir = state.to_str().unwrap();
        std::fs::create_dir_all(state.join("agent")).unwrap();
        let (calls, ok, err) = run_init_with(
            "trellis-agent.init",
            &[
                ("main", "data_dir", data_dir),
                ("mesh", "enabled", "0"),
                ("controller", "listen", listen),
                ("controller", "port", "8443"),
                ("controller", "admin_socket", "/tmp/other/admin.sock"),
            ],
            &controller_here,
        );
        assert!(ok, "{err}");
        assert!(
            calls.contains(
                &"trellis|--admin-socket|/tmp/other/admin.sock|pair|--this-router|--json"
                    .to_string()
            ),
            "{calls:?}"
        );
        let join = format!("agent|join|--state-dir|{data_dir}/agent|{joins}|K7QF-9M2X-3D");
        assert!(calls.contains(&join), "{listen}: {calls:?}");
    }

    // A satellite (role agent) never asks a controller for a code, and says how to pair.
    let state = tmp("agent-satellite");
    let data_dir = state.to_str().unwrap();
    let (calls, ok, err) = run_init_with(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir), ("main", "role", "agent")],
        &controller_here,
    );
    assert!(ok, "{err}");
    assert!(
        !calls.iter().any(|c| c.starts_with("trellis|")),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("procd_open_instance")));
    assert!(err.contains("trellis-agent join"), "{err}");

    // A controller that gives no code: ten tries a second apart, then the reason.
    let silent = controller_here.replace(
        "echo '{\"code\":\"K7QF-9M2X-3D\",\"expires_in_s\":600}'",
        "return 3",
    );
    let state = tmp("agent-no-code");
    let data_dir = state.to_str().unwrap();
    let (calls, ok, err) = run_init_with(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir)],
        &silent,
    );
    assert!(ok, "{err}");
    assert_eq!(
        calls.iter().filter(|c| *c == "sleep|1").count(),
        10,
        "{calls:?}"
    );
    assert!(
        err.contains("the local controller gave no pairing code"),
        "{err}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("procd_open_instance")));
}

#[test]
fn agent_init_waits_for_the_router_to_join() {
    // Without node.json and identity.pem `trellis-agent run` exits at once; starting it
    // would only burn procd's respawn budget.
    let state = tmp("agent-unjoined");
    let data_dir = state.to_str().unwrap();
    let (calls, ok, err) = run_init("trellis-agent.init", &[("main", "data_dir", data_dir)]);
    assert!(ok, "{err}");
    assert_eq!(procd_calls(&calls), ["procd_add_reload_trigger|trellis"]);
    assert!(
        calls.contains(&format!("mkdir|-p|{data_dir}/agent")),
        "{calls:?}"
    );
    assert!(err.contains("trellis-agent join --state-dir"), "{err}");
}

/// A stateful `uci` stand-in for what the scripts use, behaving as openwrt/uci's cli.c does:
/// `get` prints a value, a list's items joined by one blank, and exits 1 when the key is
/// missing; `add_list` appends an item, `del_list` removes every equal item, `commit` is
/// recorded. The state is one `key=value` line per value (a list: one line per item), like
/// `uci show` without the quotes. Every call is recorded in $UCI_CALLS.
const UCI_STANDIN: &str = r#"#!/bin/sh
[ "$1" = -q ] && shift
printf '%s\n' "$*" >> "$UCI_CALLS"
cmd=$1
shift
case "$cmd" in
get)
	awk -v k="$1" 'index($0, k "=") == 1 { printf "%s%s", sep, substr($0, length(k) + 2); sep = " " }
		END { if (sep == "") exit 1; print "" }' "$UCI_STATE" ;;
add_list) printf '%s\n' "$1" >> "$UCI_STATE" ;;
del_list)
	grep -vxF -e "$1" "$UCI_STATE" > "$UCI_STATE.new"
	mv "$UCI_STATE.new" "$UCI_STATE" ;;
commit) ;;
*) exit 1 ;;
esac
"#;

/// A router root for the scripts: `/usr/share/trellis/trellis.sh` as the package ships it,
/// `/etc/init.d/dnsmasq` as a stand-in that is running and records `reload`, and the `uci`
/// stand-in on PATH over `state`.
struct FakeRoot {
    dir: PathBuf,
}

fn fake_root(dir: &Path, state: &str) -> FakeRoot {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/share/trellis")).unwrap();
    std::fs::copy(
        ws().join("firmware/files/trellis.sh"),
        root.join("usr/share/trellis/trellis.sh"),
    )
    .unwrap();
    write_exec(
        &root.join("etc/init.d/dnsmasq"),
        "#!/bin/sh\n[ \"$1\" = running ] && exit 0\nprintf 'dnsmasq %s\\n' \"$1\" >> \"$UCI_CALLS\"\n",
    );
    write_exec(&dir.join("bin/uci"), UCI_STANDIN);
    std::fs::write(dir.join("uci-state"), state).unwrap();
    FakeRoot {
        dir: dir.to_path_buf(),
    }
}

impl FakeRoot {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                format!(
                    "{}:{}",
                    self.dir.join("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            ),
            (
                "TRELLIS_ROOT".into(),
                self.dir.join("root").display().to_string(),
            ),
            (
                "UCI_STATE".into(),
                self.dir.join("uci-state").display().to_string(),
            ),
            (
                "UCI_CALLS".into(),
                self.dir.join("uci-calls").display().to_string(),
            ),
        ]
    }

    /// The calls that change something (no `get`), in order.
    fn changes(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("uci-calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("get "))
            .map(String::from)
            .collect()
    }
}

fn run_uci_defaults(state: &str) -> Vec<String> {
    let dir = tmp(&format!("uci-defaults-{}", state.len()));
    let root = fake_root(&dir, state);
    let out = Command::new("sh")
        .arg(ws().join("firmware/files/trellis.uci-defaults"))
        .envs(root.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.changes()
}

/// Run the agent's prerm part the way default_prerm does (sourced in a subshell), with the
/// environment opkg gives it: `PKG_UPGRADE` (opkg-lede pkg.c pkg_run_script sets it to 1
/// when the old package's prerm runs for an upgrade, opkg_install.c prerm_upgrade_old_pkg)
/// and `IPKG_INSTROOT` (set for an image root by include/rootfs.mk).
fn run_prerm(state: &str, env: &[(&str, &str)]) -> (Vec<String>, String) {
    let dir = tmp(&format!("prerm-{}", env.len()));
    let root = fake_root(&dir, state);
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"( . "$1" ); echo "rc=$?""#)
        .arg("sh")
        .arg(ws().join("firmware/control/trellis-agent.prerm-pkg"))
        .envs(root.env())
        .env_remove("PKG_UPGRADE")
        .env_remove("IPKG_INSTROOT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        root.changes(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const DNSMASQ: &str = "dhcp.@dnsmasq[0]=dnsmasq\ndhcp.@dnsmasq[0].server=/lan/\n";

#[test]
fn uci_defaults_point_dnsmasq_at_the_mesh_zone_once() {
    let fresh = format!("{DNSMASQ}trellis.agent.dns_port=5354\n");
    assert_eq!(
        run_uci_defaults(&fresh),
        [
            "add_list dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354",
            "add_list dhcp.@dnsmasq[0].rebind_domain=trellis.home.arpa",
            "commit dhcp",
            "dnsmasq reload",
        ]
    );
    // Second run (or a user who already added it): nothing is added, committed or reloaded.
    let done = format!(
        "{fresh}dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354\n\
         dhcp.@dnsmasq[0].rebind_domain=trellis.home.arpa\n"
    );
    assert_eq!(run_uci_defaults(&done), Vec::<String>::new());
    // No dnsmasq at all (a dumb AP that removed it): nothing to do.
    assert!(run_uci_defaults("").is_empty());
}

#[test]
fn the_dnsmasq_forward_follows_the_dns_port_at_every_agent_start() {
    // A reinstall with another port left #5354 and #5355; the port is now 5399. The agent's
    // start leaves exactly one entry, for 5399, and reloads dnsmasq.
    let state = tmp("agent-dns-port");
    let data_dir = state.to_str().unwrap();
    let uci = format!(
        "{DNSMASQ}dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354\n\
         dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5355\n\
         dhcp.@dnsmasq[0].rebind_domain=trellis.home.arpa\n"
    );
    let (_, ok, err, changes) = run_init_uci(
        "trellis-agent.init",
        &[
            ("main", "data_dir", data_dir),
            ("agent", "dns_port", "5399"),
        ],
        "",
        &uci,
    );
    assert!(ok, "{err}");
    assert_eq!(
        changes,
        [
            "del_list dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354",
            "del_list dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5355",
            "add_list dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5399",
            "commit dhcp",
            "dnsmasq reload",
        ]
    );
    // The same port again: dnsmasq is left alone.
    let uci = format!(
        "{DNSMASQ}dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354\n\
         dhcp.@dnsmasq[0].rebind_domain=trellis.home.arpa\n"
    );
    let (_, ok, err, changes) = run_init_uci(
        "trellis-agent.init",
        &[("main", "data_dir", data_dir)],
        "",
        &uci,
    );
    assert!(ok, "{err}");
    assert_eq!(changes, Vec::<String>::new());
}

#[test]
fn prerm_takes_every_port_out_on_removal_but_not_on_upgrade_or_for_an_image() {
    let uci = format!(
        "{DNSMASQ}trellis.agent.dns_port=5355\n\
         dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354\n\
         dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5355\n\
         dhcp.@dnsmasq[0].rebind_domain=trellis.home.arpa\n"
    );
    let (changes, out) = run_prerm(&uci, &[]);
    assert!(out.contains("rc=0"), "{out}");
    assert_eq!(
        changes,
        [
            "del_list dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5354",
            "del_list dhcp.@dnsmasq[0].server=/trellis.home.arpa/127.0.0.1#5355",
            "del_list dhcp.@dnsmasq[0].rebind_domain=trellis.home.arpa",
            "commit dhcp",
            "dnsmasq reload",
        ]
    );
    // opkg upgrading: the old prerm runs with PKG_UPGRADE=1 and must leave dnsmasq alone.
    let (changes, out) = run_prerm(&uci, &[("PKG_UPGRADE", "1")]);
    assert!(out.contains("rc=0"), "{out}");
    assert_eq!(changes, Vec::<String>::new(), "upgrade");
    // Removed from an image root: the build host's uci and dnsmasq are not the router's.
    let (changes, _) = run_prerm(&uci, &[("IPKG_INSTROOT", "/tmp/image-root")]);
    assert_eq!(changes, Vec::<String>::new(), "image root");
}

fn plugin(args: &[&str], stdin: &str, path_prefix: Option<&Path>, root: &Path) -> (bool, String) {
    let mut cmd = Command::new("sh");
    cmd.arg(ws().join("web/luci-app-trellis/root/usr/libexec/rpcd/luci.trellis"))
        .args(args)
        .env("TRELLIS_ROOT", root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path_prefix {
        cmd.env(
            "PATH",
            format!("{}:{}", p.display(), std::env::var("PATH").unwrap()),
        );
    }
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn write_exec(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    Command::new("chmod").arg("755").arg(path).status().unwrap();
}

#[test]
fn rpcd_plugin_speaks_the_list_call_protocol() {
    let empty = tmp("rpcd-empty");
    let (ok, out) = plugin(&["list"], "", None, &empty);
    assert!(ok);
    let methods: BTreeMap<String, serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(methods.keys().collect::<Vec<_>>(), ["status"]);

    // The ACL grants exactly what the plugin offers.
    let acl: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            ws().join("web/luci-app-trellis/root/usr/share/rpcd/acl.d/luci-app-trellis.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        acl["luci-app-trellis"]["read"]["ubus"]["luci.trellis"],
        serde_json::json!(["status"])
    );

    // A satellite: nothing running, no `trellis` command.
    let (ok, out) = plugin(&["call", "status"], "{}", None, &empty);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["agent_running"], false);
    assert_eq!(v["controller_installed"], false);
    assert_eq!(v["status"], serde_json::Value::Null);

    // The primary: init scripts answer `running`, `trellis status --json` answers.
    let root = tmp("rpcd-primary");
    write_exec(&root.join("usr/bin/trellis-agent"), "#!/bin/sh\n");
    write_exec(&root.join("usr/bin/trellis-controller"), "#!/bin/sh\n");
    write_exec(
        &root.join("etc/init.d/trellis-agent"),
        "#!/bin/sh\n[ \"$1\" = running ]\n",
    );
    write_exec(
        &root.join("etc/init.d/trellis-controller"),
        "#!/bin/sh\nexit 1\n",
    );
    let bin = root.join("stub-bin");
    write_exec(
        &bin.join("trellis"),
        "#!/bin/sh\n[ \"$*\" = '--admin-socket /var/run/trellis/admin.sock status --json' ] || exit 2\nprintf '{\\n  \"home_id\": \"h1\",\\n  \"config_version\": 3,\\n  \"nodes\": 2\\n}\\n'\n",
    );
    let (ok, out) = plugin(&["call", "status"], "{}", Some(&bin), &root);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["agent_installed"], true);
    assert_eq!(v["agent_running"], true);
    assert_eq!(v["controller_running"], false);
    assert_eq!(v["status"]["home_id"], "h1");
    assert_eq!(v["status"]["nodes"], 2);
    assert_eq!(v["error"], serde_json::Value::Null);

    // The controller is down: the error text (with quotes) stays valid JSON.
    write_exec(
        &bin.join("trellis"),
        "#!/bin/sh\necho 'cannot reach \"/var/run/trellis/admin.sock\"' >&2\nexit 3\n",
    );
    let (ok, out) = plugin(&["call", "status"], "{}", Some(&bin), &root);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], serde_json::Value::Null);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("\"/var/run/trellis/admin.sock\""),
        "{v}"
    );

    let (ok, out) = plugin(&["call", "reboot"], "{}", None, &empty);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"], "unknown method: reboot");
}

#[test]
fn luci_json_files_are_valid_and_agree() {
    let base = ws().join("web/luci-app-trellis/root/usr/share");
    let read = |p: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(base.join(p)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let menu = read("luci/menu.d/luci-app-trellis.json");
    let entry = &menu["admin/services/trellis"];
    assert_eq!(entry["action"]["type"], "view");
    let view = entry["action"]["path"].as_str().unwrap();
    assert!(
        ws().join(format!(
            "web/luci-app-trellis/htdocs/luci-static/resources/view/{view}.js"
        ))
        .is_file(),
        "menu points at view {view}, which does not exist"
    );
    assert_eq!(
        entry["depends"]["acl"],
        serde_json::json!(["luci-app-trellis"])
    );
    let acl = read("rpcd/acl.d/luci-app-trellis.json");
    assert_eq!(
        acl["luci-app-trellis"]["write"]["uci"],
        serde_json::json!(["trellis"])
    );
    let track = read("ucitrack/luci-app-trellis.json");
    assert_eq!(track["config"], "trellis");
    let init = track["init"].as_str().unwrap();
    assert!(ws().join(format!("firmware/files/{init}.init")).is_file());
}

#[test]
fn sysupgrade_keeps_the_state_and_the_config() {
    let keep = std::fs::read_to_string(ws().join("firmware/files/trellis.keep")).unwrap();
    let cfg = default_config();
    let data_dir = cfg.get("main", "data_dir").unwrap();
    assert!(keep.lines().any(|l| l.trim_end_matches('/') == data_dir));
    assert!(keep.lines().any(|l| l == "/etc/config/trellis"));
}

#[test]
fn feed_makefiles_install_the_same_files() {
    // The SDK route must ship what `cargo xtask package` ships: every repository file of
    // the packages is named in the feed Makefile, with the same destination folder.
    let feed = std::fs::read_to_string(ws().join("firmware/feed/trellis/Makefile")).unwrap();
    let dir = tmp("feed-bins");
    for pkg in [
        spec::agent("x86_64", &fake_binary(&dir, "a", "x86_64")),
        spec::controller("x86_64", &fake_binary(&dir, "c", "x86_64")),
    ] {
        assert!(feed.contains(&format!("define Package/{}\n", pkg.name)));
        for f in &pkg.files {
            let dest = f.dest.clone();
            match &f.content {
                spec::Content::Repo(src) => {
                    let src = src.to_string_lossy();
                    let line = feed
                        .lines()
                        .find(|l| l.contains(src.as_ref()))
                        .unwrap_or_else(|| panic!("feed Makefile does not install {src}"));
                    assert!(
                        line.trim_end().ends_with(&format!("$(1){dest}")),
                        "feed installs {src} as {line:?}, the package as {dest}"
                    );
                }
                _ => assert!(feed.contains(&dest), "feed Makefile lacks {dest}"),
            }
        }
        for c in &pkg.conffiles {
            assert!(feed.contains(c));
        }
    }
    let luci =
        std::fs::read_to_string(ws().join("firmware/feed/luci-app-trellis/Makefile")).unwrap();
    assert!(luci.contains("web/luci-app-trellis"));
}

#[test]
fn feed_maintainer_scripts_match_the_packaged_ones() {
    // make needs `$$` for a shell `$`; otherwise each command line must be the same.
    for (makefile, control) in [
        (
            "firmware/feed/trellis/Makefile",
            "firmware/control/trellis-agent.prerm-pkg",
        ),
        (
            "firmware/feed/luci-app-trellis/Makefile",
            "firmware/control/luci-app-trellis.postinst-pkg",
        ),
    ] {
        let feed = std::fs::read_to_string(ws().join(makefile))
            .unwrap()
            .replace("$$", "$");
        let script = std::fs::read_to_string(ws().join(control)).unwrap();
        for line in script
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            assert!(
                feed.lines().any(|f| f == line),
                "{makefile} lacks the line {line:?} of {control}"
            );
        }
    }
}

/// A stand-in Image Builder: `make info` lists one profile, `make image` records what it was
/// asked to build and writes a pretend sysupgrade image.
const FAKE_IB_MAKEFILE: &str = "\
info:
\t@echo 'Available Profiles:'
\t@echo
\t@echo 'glinet_gl-mt6000:'
\t@echo '    GL.iNet GL-MT6000'
image:
\t@echo 'PROFILE=$(PROFILE)' > $(BIN_DIR)/args
\t@echo 'PACKAGES=$(PACKAGES)' >> $(BIN_DIR)/args
\t@echo 'EXTRA_IMAGE_NAME=$(EXTRA_IMAGE_NAME)' >> $(BIN_DIR)/args
\t@rm -rf $(BIN_DIR)/overlay && cp -r $(FILES) $(BIN_DIR)/overlay
\t@ls packages > $(BIN_DIR)/packages.txt
\t@touch $(BIN_DIR)/openwrt-trellis-glinet_gl-mt6000-squashfs-sysupgrade.bin
";

fn fake_ib(arch: &str, apk: bool) -> (PathBuf, Scratch) {
    let dir = tmp("ib");
    let ib = dir.join("ib");
    std::fs::create_dir_all(&ib).unwrap();
    std::fs::write(ib.join("Makefile"), FAKE_IB_MAKEFILE).unwrap();
    std::fs::write(
        ib.join(".config"),
        format!("CONFIG_TARGET_ARCH_PACKAGES=\"{arch}\"\n"),
    )
    .unwrap();
    if apk {
        std::fs::write(ib.join("repositories"), "packages/packages.adb\n").unwrap();
    } else {
        std::fs::write(
            ib.join("repositories.conf"),
            "src imagebuilder file:packages\n",
        )
        .unwrap();
    }
    let pkgs = dir.join("packages");
    for (sub, name) in [
        (
            "aarch64_cortex-a53",
            "trellis-agent_0.1.0-r1_aarch64_cortex-a53.ipk",
        ),
        (
            "aarch64_cortex-a53",
            "trellis-controller_0.1.0-r1_aarch64_cortex-a53.ipk",
        ),
        ("all", "luci-app-trellis_0.1.0-r1_all.ipk"),
    ] {
        std::fs::create_dir_all(pkgs.join(sub)).unwrap();
        std::fs::write(pkgs.join(sub).join(name), b"ipk").unwrap();
    }
    (ib, dir)
}

fn build_image(ib: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(ws().join("firmware/imagebuilder/build-image.sh"))
        .arg("--ib")
        .arg(ib)
        .arg("--packages")
        .arg(dir.join("packages"))
        .arg("--out")
        .arg(dir.join("out"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn image_builder_recipe_builds_a_primary_and_a_satellite() {
    let (ib, dir) = fake_ib("aarch64_cortex-a53", false);
    let (ok, log) = build_image(&ib, &dir, &["--profile", "glinet_gl-mt6000"]);
    assert!(ok, "{log}");
    assert!(
        log.contains("openwrt-trellis-glinet_gl-mt6000-squashfs-sysupgrade.bin"),
        "{log}"
    );
    let out = dir.join("out");
    let args = std::fs::read_to_string(out.join("args")).unwrap();
    assert!(args.contains("PROFILE=glinet_gl-mt6000"), "{args}");
    let packages = args
        .lines()
        .find_map(|l| l.strip_prefix("PACKAGES="))
        .unwrap();
    // The controller package holds the agent: asking for trellis-agent too would conflict.
    assert!(
        !packages.split_whitespace().any(|p| p == "trellis-agent"),
        "{packages}"
    );
    for want in [
        "trellis-controller",
        "luci-app-trellis",
        "wpad-mesh-mbedtls",
        "-wpad-basic-mbedtls",
        "kmod-nft-tproxy",
    ] {
        assert!(
            packages.split_whitespace().any(|p| p == want),
            "{want} not in {packages}"
        );
    }
    let copied = std::fs::read_to_string(out.join("packages.txt")).unwrap();
    assert_eq!(copied.lines().count(), 3, "{copied}");
    let role =
        std::fs::read_to_string(out.join("overlay/etc/uci-defaults/89-trellis-role")).unwrap();
    assert!(role.contains("trellis.main.role='controller'"), "{role}");

    let (ok, log) = build_image(
        &ib,
        &dir,
        &[
            "--profile",
            "glinet_gl-mt6000",
            "--role",
            "satellite",
            "--extra",
            "htop",
        ],
    );
    assert!(ok, "{log}");
    let args = std::fs::read_to_string(out.join("args")).unwrap();
    assert!(!args.contains("trellis-controller"), "{args}");
    assert!(args.contains("PACKAGES=trellis-agent "), "{args}");
    assert!(args.contains(" htop"), "{args}");
    let role =
        std::fs::read_to_string(out.join("overlay/etc/uci-defaults/89-trellis-role")).unwrap();
    assert!(role.contains("trellis.main.role='agent'"), "{role}");
}

#[test]
fn image_builder_recipe_explains_what_is_wrong() {
    let (ib, dir) = fake_ib("aarch64_cortex-a53", false);
    let (ok, log) = build_image(&ib, &dir, &["--profile", "tplink_archer-c7-v5"]);
    assert!(!ok);
    assert!(
        log.contains("profile 'tplink_archer-c7-v5' is not in this Image Builder"),
        "{log}"
    );

    let (ib, dir) = fake_ib("mipsel_24kc", false);
    let (ok, log) = build_image(&ib, &dir, &["--profile", "glinet_gl-mt6000"]);
    assert!(!ok);
    assert!(
        log.contains("cargo xtask package --target mipsel_24kc"),
        "{log}"
    );

    let (ib, dir) = fake_ib("aarch64_cortex-a53", true);
    let (ok, log) = build_image(&ib, &dir, &["--profile", "glinet_gl-mt6000"]);
    assert!(!ok);
    assert!(log.contains("needs .apk packages"), "{log}");

    let (ok, log) = build_image(
        &ib,
        &dir,
        &["--profile", "glinet_gl-mt6000", "--role", "boss"],
    );
    assert!(!ok);
    assert!(log.contains("primary or satellite"), "{log}");
}

/// A stand-in for apk 3: `mkpkg` records its arguments and the staged tree and writes the
/// infos as the "package"; `adbdump` prints it back.
const APK_STANDIN: &str = r#"#!/bin/sh
case "$1" in
mkpkg)
	shift
	printf '%s\n' "$@" > "$APK_LOG/args"
	while [ $# -gt 0 ]; do
		case "$1" in
		--info) info="$info$(printf '%s' "$2" | sed 's/:/: /')
"; shift 2 ;;
		--files) files=$2; shift 2 ;;
		--output) out=$2; shift 2 ;;
		*) shift ;;
		esac
	done
	(cd "$files" && find . \( -type f -o -type l \) | sort) > "$APK_LOG/tree"
	cp -r "$files" "$APK_LOG/files"
	printf '%s' "$info" > "$out"
	;;
adbdump) cat "$2" ;;
*) exit 2 ;;
esac
"#;

#[test]
fn apk_packages_are_staged_the_way_openwrt_25_12_expects() {
    let dir = tmp("apk");
    let tool = dir.join("apk");
    write_exec(&tool, APK_STANDIN);
    let (_bins, pkgs) = packages("x86_64", "x86_64");
    for pkg in &pkgs {
        let log = dir.join(format!("log-{}", pkg.name));
        std::fs::create_dir_all(&log).unwrap();
        std::env::set_var("APK_LOG", &log);
        let out = dir.join("out");
        let w = write_apk(pkg, &ws(), &tool, &out, 1).unwrap();
        assert_eq!(
            w.path.file_name().unwrap().to_string_lossy(),
            format!("{}-0.1.0-r1.apk", pkg.name)
        );
        let args = std::fs::read_to_string(log.join("args")).unwrap();
        let arch = if pkg.arch == "all" {
            "noarch"
        } else {
            "x86_64"
        };
        assert!(args.lines().any(|l| l == format!("arch:{arch}")), "{args}");
        let depends = args.lines().find(|l| l.starts_with("depends:")).unwrap();
        assert!(!depends.contains('|'), "apk has no alternatives: {depends}");
        for s in ["post-install:", "post-upgrade:", "pre-deinstall:"] {
            assert!(
                args.lines().any(|l| l.starts_with(s)),
                "{s} missing: {args}"
            );
        }

        let tree = std::fs::read_to_string(log.join("tree")).unwrap();
        let list_name = format!("./lib/apk/packages/{}.list", pkg.name);
        assert!(tree.lines().any(|l| l == list_name), "{tree}");
        let list = std::fs::read_to_string(log.join("files").join(&list_name)).unwrap();
        let mut want: Vec<String> = pkg.files.iter().map(|f| f.dest.clone()).collect();
        want.sort();
        assert_eq!(list.lines().collect::<Vec<_>>(), want);
        for f in &pkg.files {
            assert!(
                tree.lines().any(|l| l == format!(".{}", f.dest)),
                "{} missing",
                f.dest
            );
        }
    }

    // The agent: conffile sums for sysupgrade, the prerm part, no wpad alternatives.
    let log = dir.join("log-trellis-agent");
    let args = std::fs::read_to_string(log.join("args")).unwrap();
    assert!(args
        .lines()
        .any(|l| l == "depends:nftables kmod-nft-tproxy kmod-nft-socket kmod-nft-nat"));
    let stat =
        std::fs::read_to_string(log.join("files/lib/apk/packages/trellis-agent.conffiles_static"))
            .unwrap();
    let config = std::fs::read(ws().join("firmware/files/trellis.config")).unwrap();
    assert_eq!(
        stat,
        format!(
            "/etc/config/trellis {:x}\n",
            <sha2::Sha256 as sha2::Digest>::digest(&config)
        )
    );
    let scripts = apk::scripts(&pkgs[0], &ws()).unwrap();
    let (_, deinstall) = scripts.iter().find(|(n, _)| *n == "pre-deinstall").unwrap();
    assert!(
        deinstall.contains("default_prerm\n") && deinstall.contains("trellis_dnsmasq_follow \"\"")
    );
    assert_eq!(deinstall.matches("#!/bin/sh").count(), 1, "{deinstall}");
    let (_, upgrade) = scripts.iter().find(|(n, _)| *n == "post-upgrade").unwrap();
    assert!(upgrade.starts_with("#!/bin/sh\nexport PKG_UPGRADE=1\n"));
    assert!(upgrade.contains("export pkgname=\"trellis-agent\"\n"));

    // The controller stands in for the agent at this version, in apk's syntax (a versioned
    // name has one provider at a time: the two cannot both be installed).
    let args = std::fs::read_to_string(dir.join("log-trellis-controller/args")).unwrap();
    assert!(
        args.lines().any(|l| l == "provides:trellis-agent=0.1.0-r1"),
        "{args}"
    );
    // A lost symlink would leave `trellis` (or the primary's agent) missing on 25.12.
    for name in ["trellis", "trellis-agent"] {
        let link = dir.join("log-trellis-controller/files/usr/bin").join(name);
        assert_eq!(
            std::fs::read_link(link).unwrap().to_string_lossy(),
            "trellis-controller"
        );
    }
}

#[test]
fn dhcp_hotplug_forwards_lease_events_to_ubus() {
    let dir = tmp("hotplug");
    let bin = dir.join("bin");
    write_exec(
        &bin.join("ubus"),
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$UBUS_LOG\"\n",
    );
    // Enough of jshn.sh for the script: a flat object of strings.
    let jshn = dir.join("jshn.sh");
    std::fs::write(
        &jshn,
        "json_init() { J=''; }\n\
         json_add_string() { J=\"$J${J:+,}\\\"$1\\\":\\\"$2\\\"\"; }\n\
         json_dump() { printf '{%s}\\n' \"$J\"; }\n",
    )
    .unwrap();
    let run = |mac: &str| {
        let log = dir.join("ubus.log");
        let _ = std::fs::remove_file(&log);
        let out = Command::new("sh")
            .arg(ws().join("firmware/files/trellis.hotplug-dhcp"))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("TRELLIS_JSHN", &jshn)
            .env("UBUS_LOG", &log)
            .env("ACTION", "add")
            .env("MACADDR", mac)
            .env("IPADDR", "192.168.1.23")
            .env("HOSTNAME", "printer")
            .env("DNSMASQ_INTERFACE", "br-lan")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&log).ok()
    };
    let sent = run("aa:bb:cc:dd:ee:ff").expect("ubus was not called");
    let lines: Vec<&str> = sent.lines().collect();
    assert_eq!(lines[..2], ["send", "trellis.dhcp"]);
    let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(v["action"], "add");
    assert_eq!(v["mac"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(v["ip"], "192.168.1.23");
    assert_eq!(v["name"], "printer");
    assert_eq!(v["interface"], "br-lan");
    // A tftp or neigh event without a MAC address is not a lease: nothing is sent.
    assert_eq!(run(""), None);
}
