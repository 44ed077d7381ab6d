//! The commands a person types on the routers: `trellis` on the primary (the controller
//! binary called by that name) and `trellis-agent join` on a satellite, as real processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use support::{agent_binary, pair, pair_and_run, start_controller, text, trellis, Controller};

fn start(dir: &Path) -> Controller {
    start_controller(dir, "warn")
}

/// `trellis-agent join` on the satellite "attic" with `code`.
fn join_attic(dir: &Path, c: &Controller, code: &str) -> Output {
    support::join(dir, c, code, "attic")
}

fn pair_attic(dir: &Path, c: &Controller) {
    pair(dir, c, "attic");
}

#[test]
fn pair_a_satellite_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());

    let out = trellis(dir.path(), &c.socket, &["nodes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no routers yet"));

    let out = trellis(dir.path(), &c.socket, &["pair", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let code: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = code["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 12, "{code}");

    // A wrong code on the satellite: refused, exit 1, says what to check.
    let wrong = format!("{}ZZZZ-ZZZZ", &code[..2]);
    let out = join_attic(dir.path(), &c, &wrong);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("did not prove it knows this pairing code"),
        "{}",
        text(&out)
    );

    // The right code: joined.
    let out = join_attic(dir.path(), &c, &code.to_lowercase());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("/node/attic"), "{}", text(&out));

    let out = trellis(dir.path(), &c.socket, &["nodes"]);
    assert!(
        text(&out).contains("attic") && text(&out).contains("enrolled"),
        "{}",
        text(&out)
    );
    let out = trellis(dir.path(), &c.socket, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["nodes"], 1);
    // Without --advertise, status names the address the API listens on (LuCI showed "").
    assert_eq!(
        status["agent_api"],
        format!("127.0.0.1:{}", c.port),
        "{status}"
    );

    // The primary router's own agent joins with a code for this router (the firmware's
    // init script does this) and becomes the portal; a satellite's code does not.
    let out = trellis(dir.path(), &c.socket, &["pair", "--this-router", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let own: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = support::join(dir.path(), &c, own["code"].as_str().unwrap(), "home");
    assert!(out.status.success(), "{}", text(&out));
    let out = trellis(dir.path(), &c.socket, &["nodes", "--json"]);
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let portal = |n: &str| {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .map(|x| (x["portal"].clone(), x["hops"].clone()))
    };
    assert_eq!(portal("home"), Some((true.into(), 0.into())), "{nodes}");
    assert_eq!(
        portal("attic"),
        Some((false.into(), serde_json::Value::Null))
    );
    let table = text(&trellis(dir.path(), &c.socket, &["nodes"]));
    let home_row = table
        .lines()
        .find(|l| l.starts_with("home "))
        .expect(&table);
    assert!(home_row.contains("portal"), "{table}");

    let out = trellis(dir.path(), &c.socket, &["remove-node", "attic"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    let out = trellis(dir.path(), &c.socket, &["remove-node", "attic"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already removed"), "{}", text(&out));

    // The events tell the story, newest first.
    let out = trellis(dir.path(), &c.socket, &["events"]);
    let story = text(&out);
    let removed = story.find("router attic was removed").expect(&story);
    let joined = story.find("router attic joined the home").expect(&story);
    let wrong = story.find("wrong pairing code").expect(&story);
    assert!(removed < joined && joined < wrong, "{story}");
}

#[test]
fn errors_have_meaningful_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // No controller: exit 3 and a hint.
    let out = trellis(dir.path(), &dir.path().join("nothing.sock"), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("cannot reach the controller"));
    // Usage errors: exit 2.
    let out = trellis(
        dir.path(),
        &dir.path().join("nothing.sock"),
        &["frobnicate"],
    );
    assert_eq!(out.status.code(), Some(2));
    // A code that is not a code: exit 2 before any network.
    let out = Command::new(agent_binary())
        .arg("--state-dir")
        .arg(dir.path().join("sat"))
        .args(["join", "127.0.0.1", "not-a-code"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("K7QF-9M2X-3D"), "{}", text(&out));
    // Bad input to the admin API is refused with the reason.
    let c = start(dir.path());
    let out = trellis(
        dir.path(),
        &c.socket,
        &["set-device", "not-a-mac", "tv", "iot"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not a MAC address"), "{}", text(&out));
    let out = trellis(
        dir.path(),
        &c.socket,
        &["set-device", "aa:bb:cc:dd:ee:ff", "tv", "robots"],
    );
    assert!(text(&out).contains("no device group"), "{}", text(&out));
}

#[test]
fn every_binary_answers_help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    for (bin, args) in [
        (
            PathBuf::from(env!("CARGO_BIN_EXE_trellis-controller")),
            vec![],
        ),
        (agent_binary(), vec![]),
        (
            PathBuf::from(env!("CARGO_BIN_EXE_trellis-controller")),
            vec!["trellis"],
        ),
    ] {
        let program = if args.is_empty() {
            bin.clone()
        } else {
            let link = dir.path().join("trellis");
            let _ = std::os::unix::fs::symlink(&bin, &link);
            link
        };
        let out = Command::new(&program).arg("--version").output().unwrap();
        assert!(out.status.success());
        assert!(
            text(&out).contains(env!("CARGO_PKG_VERSION")),
            "{}",
            text(&out)
        );
        let out = Command::new(&program).arg("--help").output().unwrap();
        assert!(out.status.success());
        assert!(text(&out).contains("Usage"), "{}", text(&out));
    }
}

#[test]
fn setup_token_and_password_reset_from_the_shell() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let file = dir.path().join("data/setup-token");
    let out = trellis(dir.path(), &c.socket, &["setup-token"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 20);
    assert!(text(&out).starts_with(&token), "{}", text(&out));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the token file is root only");

    let out = trellis(dir.path(), &c.socket, &["reset-password", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fresh = v["setup_token"].as_str().unwrap();
    assert_ne!(fresh, token, "a reset writes a new token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), fresh);
}

#[test]
fn services_groups_rules_and_why_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let run = |args: &[&str]| {
        let out = trellis(dir.path(), &c.socket, args);
        (out.status.code(), text(&out))
    };
    // A service needs a router to sit behind.
    let (code, out) = run(&[
        "add-service",
        "nas",
        "--node",
        "attic",
        "--addr",
        "192.168.1.20",
        "--port",
        "445",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no router named"), "{out}");
    pair_attic(dir.path(), &c);

    let (code, out) = run(&[
        "add-service",
        "nas",
        "--node",
        "attic",
        "--addr",
        "192.168.1.20",
        "--port",
        "445",
        "--port",
        "80",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("nas.trellis.home.arpa") && out.contains("198.18."),
        "{out}"
    );
    let (_, out) = run(&["services"]);
    assert!(
        out.contains("nas.trellis.home.arpa") && out.contains("445") && out.contains("manual"),
        "{out}"
    );

    run(&["set-device", "02:00:00:00:00:02", "thermostat", "iot"]);
    run(&["set-device", "02:00:00:00:00:01", "laptop", "trusted"]);
    // Defaults: trusted reaches everything, iot nothing.
    let (_, out) = run(&["why", "laptop", "nas:445"]);
    assert!(
        out.starts_with("ALLOWED") && out.contains("default:trusted"),
        "{out}"
    );
    let (_, out) = run(&["why", "thermostat", "nas:445"]);
    assert!(
        out.starts_with("DENIED") && out.contains("default:iot"),
        "{out}"
    );
    let why: serde_json::Value = serde_json::from_slice(
        &trellis(
            dir.path(),
            &c.socket,
            &["why", "thermostat", "nas:445", "--json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(why["allowed"], false);

    // Grant iot the NAS on 445; the decision names the rule.
    let (code, out) = run(&[
        "policy",
        "add",
        "iot-backup",
        "allow",
        "--from",
        "group:iot",
        "--to",
        "nas:445",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let why: serde_json::Value = serde_json::from_slice(
        &trellis(
            dir.path(),
            &c.socket,
            &["why", "thermostat", "nas:445", "--json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(why["allowed"], true, "{why}");
    assert_eq!(why["rule"], "iot-backup", "{why}");
    // Deny wins over allow.
    run(&[
        "policy",
        "add",
        "no-thermostat",
        "deny",
        "--from",
        "device:02:00:00:00:00:02",
    ]);
    let why: serde_json::Value = serde_json::from_slice(
        &trellis(
            dir.path(),
            &c.socket,
            &["why", "02:00:00:00:00:02", "nas", "--json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(why["allowed"], false, "{why}");
    assert_eq!(why["rule"], "no-thermostat", "{why}");

    // Bad input is refused with the reason and changes nothing.
    let (code, out) = run(&["policy", "add", "x", "allow", "--from", "group:robots"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("robots"), "{out}");
    let (_, out) = run(&["policy"]);
    assert!(
        out.contains("iot-backup") && out.contains("no-thermostat") && !out.contains("x:"),
        "{out}"
    );
    let (code, _) = run(&["add-group", "cameras"]);
    assert_eq!(code, Some(0));
    let (_, out) = run(&["groups"]);
    assert!(
        out.contains("cameras") && out.contains("only what rules grant"),
        "{out}"
    );

    // Removing the router leaves the service, marked unreachable.
    run(&["remove-node", "attic"]);
    let (_, out) = run(&["services"]);
    assert!(out.contains("(unreachable)"), "{out}");
}

#[test]
fn trellis_check_names_each_problem_and_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mesh_wpa = dir.path().join("wpa-mesh");
    std::fs::write(&mesh_wpa, b"\x7fELF ... mesh_fwding ... sae_password").unwrap();
    let basic_wpa = dir.path().join("wpa-basic");
    std::fs::write(&basic_wpa, b"\x7fELF ... wpa_passphrase").unwrap();
    let check = |socket: &Path, wpa: &Path| {
        let out = trellis(
            dir.path(),
            socket,
            &["check", "--wpa-supplicant", wpa.to_str().unwrap()],
        );
        (out.status.code(), text(&out))
    };

    // No controller: exit 3, and the fix says how to start it: the service on a router
    // where it is installed as one, else the command with this socket.
    let (code, out) = check(&dir.path().join("nothing.sock"), &mesh_wpa);
    assert_eq!(code, Some(3), "{out}");
    let start_it = if Path::new("/etc/init.d/trellis-controller").exists() {
        "/etc/init.d/trellis-controller start".to_owned()
    } else {
        format!(
            "start it: trellis-controller --admin-socket {}",
            dir.path().join("nothing.sock").display()
        )
    };
    assert!(
        out.contains("FAIL the controller does not answer") && out.contains(&start_it),
        "{out}"
    );

    let c = start(dir.path());
    pair_attic(dir.path(), &c);

    let (code, out) = check(&c.socket, &mesh_wpa);
    assert!(out.contains("ok   controller answers"), "{out}");
    assert!(
        out.contains("ok   router attic: certificate valid"),
        "{out}"
    );
    assert!(
        out.contains("ok   wpa_supplicant supports 802.11s mesh"),
        "{out}"
    );
    assert!(
        matches!(code, Some(0) | Some(4)),
        "only warnings at most: {out}"
    );

    // A wpad without mesh support: a failure that names the package to install.
    let (code, out) = check(&c.socket, &basic_wpa);
    assert_eq!(code, Some(5), "{out}");
    assert!(
        out.contains("FAIL")
            && out.contains("no 802.11s mesh support")
            && out.contains("wpad-mesh-mbedtls"),
        "{out}"
    );

    let out = trellis(
        dir.path(),
        &c.socket,
        &[
            "check",
            "--json",
            "--wpa-supplicant",
            basic_wpa.to_str().unwrap(),
        ],
    );
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(findings
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["level"] == "fail" && f["fix"].as_str().unwrap().contains("wpad-mesh")));
}

#[test]
fn speedtest_between_two_routers_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let attic = pair_and_run(dir.path(), &c, "attic");
    let mut garage = pair_and_run(dir.path(), &c, "garage");

    // The receiver announces its sink with its first report; until then the controller
    // says why it cannot start the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = trellis(
            dir.path(),
            &c.socket,
            &["speedtest", "attic", "garage", "--seconds", "1", "--json"],
        );
        if out.status.success() || !text(&out).contains("has not said where its speed-test sink") {
            break out;
        }
        assert!(Instant::now() < deadline, "garage never announced its sink");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "{}", text(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["bytes"].as_u64().unwrap() > 0, "{done}");
    assert!(done["bits_per_second"].as_u64().unwrap() > 0, "{done}");

    // The other way, in words.
    let out = trellis(
        dir.path(),
        &c.socket,
        &["speedtest", "garage", "attic", "--seconds", "1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("speed test garage → attic: ") && text(&out).contains("Mbit/s"),
        "{}",
        text(&out)
    );
    let listed = trellis(dir.path(), &c.socket, &["speedtest", "--list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // Bad requests say what to do, before anything runs.
    let out = trellis(dir.path(), &c.socket, &["speedtest", "attic", "attic"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("two different routers"),
        "{}",
        text(&out)
    );
    let out = trellis(dir.path(), &c.socket, &["speedtest", "attic", "cellar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("cellar is not a router of this home"),
        "{}",
        text(&out)
    );

    // The receiver's agent dies: the sender cannot reach its sink, and the test says so.
    let _ = garage.0.kill();
    let _ = garage.0.wait();
    let out = trellis(
        dir.path(),
        &c.socket,
        &["speedtest", "attic", "garage", "--seconds", "1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("speed test attic → garage failed: could not reach"),
        "{}",
        text(&out)
    );
    drop(attic);
}
