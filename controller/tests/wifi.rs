//! The home's wifi through the real processes: `trellis wifi` on the admin socket sets a
//! network, a paired router's mutual-TLS config poll (curl with its certificate) receives it,
//! bad input changes nothing, the existing wireless config is imported, and no passphrase
//! reaches the controller's log (captured at trace level) or `trellis wifi`'s output.

use std::process::Output;

mod support;

const SECRET: &str = "correct horse battery";
const IMPORTED_KEY: &str = "staple-9-imported";

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", support::text(o));
    support::text(o)
}

fn refused(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", support::text(o));
    support::text(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_set_once_reaches_a_router_over_mtls_and_no_log_line_holds_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = support::start_controller(d, "trace");
    let out = support::trellis(d, &c.socket, &["pair", "--json"]);
    let code: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = trellis_proto::pairing::PairingCode::parse(code["code"].as_str().unwrap()).unwrap();
    let state = trellis_agent::state::StateDir::new(d.join("attic"));
    trellis_agent::join::join(
        &format!("127.0.0.1:{}", c.port),
        &code,
        &trellis_proto::NodeName::new("attic").unwrap(),
        &state,
        false,
    )
    .await
    .unwrap();
    let cert = state.identity_pem().unwrap();
    let curl = support::Curl::new(d, &c);
    let snapshot = || {
        let (status, body) = curl.send(
            "127.0.0.1",
            Some(&cert),
            "GET",
            "/v1/agent/config?after=0&wait=0",
            None,
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<trellis_proto::snapshot::ConfigSnapshot>(&body).unwrap()
    };
    let trellis = |args: &[&str]| support::trellis(d, &c.socket, args);

    let shown = ok(&trellis(&["wifi"]));
    assert!(shown.contains("no wifi networks"), "{shown}");
    assert!(snapshot().wifi.networks.is_empty());

    // Set the home network, the passphrase from a file (never the command line).
    let pw = d.join("pw");
    std::fs::write(&pw, format!("{SECRET}\n")).unwrap();
    let pw_arg = pw.to_str().unwrap();
    let before = snapshot().version;
    ok(&trellis(&[
        "wifi",
        "set",
        "home",
        "--ssid",
        "Our Home",
        "--passphrase-file",
        pw_arg,
    ]));
    let s = snapshot();
    assert_eq!(s.version, before + 1, "the change bumps the config version");
    let home = s
        .wifi
        .network(trellis_proto::home_wifi::NetworkKind::Home)
        .expect("the router's snapshot carries the home network");
    assert_eq!(home.ssid.as_str(), "Our Home");
    assert_eq!(
        home.passphrase.expose(),
        SECRET,
        "sealed to the router, whole"
    );
    let roaming = s.wifi.roaming.clone().expect("roaming keys made once");
    assert_eq!(roaming.ft_key_hex.len(), 64);
    let roaming_key = roaming.ft_key_hex.clone();

    // The same again changes nothing (no flash write, same version).
    let again = ok(&trellis(&[
        "wifi",
        "set",
        "home",
        "--ssid",
        "Our Home",
        "--passphrase-file",
        pw_arg,
    ]));
    assert!(again.contains("no change"), "{again}");
    assert_eq!(snapshot().version, before + 1);

    // Bad input: a clear error and nothing changes.
    let long = "x".repeat(33);
    let err = refused(&trellis(&[
        "wifi",
        "set",
        "guest",
        "--ssid",
        &long,
        "--passphrase-file",
        pw_arg,
    ]));
    assert!(err.contains("33 bytes"), "{err}");
    let short = d.join("short");
    std::fs::write(&short, "shorty7\n").unwrap();
    let err = refused(&trellis(&[
        "wifi",
        "set",
        "home",
        "--ssid",
        "Other",
        "--passphrase-file",
        short.to_str().unwrap(),
    ]));
    assert!(err.contains("8 to 63"), "{err}");
    let (status, body) = curl.admin(
        "PUT",
        "/v1/admin/wifi/guest",
        Some(r#"{"ssid":"Visitors","passphrase":"shorty7"}"#),
    );
    assert_eq!(status, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(e["error"].as_str().unwrap().contains("8 to 63"), "{body}");
    let (status, body) = curl.admin("PUT", "/v1/admin/wifi/attic", Some(r#"{"ssid":"A"}"#));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("expected home, iot or guest"), "{body}");
    let s2 = snapshot();
    assert_eq!(s2.version, before + 1, "refused changes change nothing");
    assert_eq!(s2.wifi, s.wifi);

    // What people see: the passphrase is "set", never itself.
    let shown = ok(&trellis(&["wifi"]));
    assert!(
        shown.contains("\"Our Home\"") && shown.contains("passphrase set"),
        "{shown}"
    );
    assert!(
        shown.contains(&roaming.mobility_domain.to_string()),
        "{shown}"
    );
    let json = ok(&trellis(&["--json", "wifi", "show"]));
    assert!(!json.contains(SECRET), "{json}");

    // Import: the primary's existing SSID and key from `uci show wireless` output.
    let uci = d.join("wireless.show");
    std::fs::write(
        &uci,
        format!(
            "wireless.radio0=wifi-device\nwireless.radio0.band='2g'\n\
             wireless.default_radio0=wifi-iface\nwireless.default_radio0.device='radio0'\n\
             wireless.default_radio0.network='lan'\nwireless.default_radio0.mode='ap'\n\
             wireless.default_radio0.ssid='OpenWrt'\nwireless.default_radio0.encryption='psk2'\n\
             wireless.default_radio0.key='{IMPORTED_KEY}'\n"
        ),
    )
    .unwrap();
    let uci_arg = uci.to_str().unwrap();
    let err = refused(&trellis(&["wifi", "import", "--from", uci_arg]));
    assert!(
        err.contains("already set") && err.contains("--replace"),
        "{err}"
    );
    let said = ok(&trellis(&[
        "wifi",
        "import",
        "--from",
        uci_arg,
        "--replace",
    ]));
    assert!(
        said.contains("OpenWrt") && !said.contains(IMPORTED_KEY),
        "{said}"
    );
    let s3 = snapshot();
    let home = s3
        .wifi
        .network(trellis_proto::home_wifi::NetworkKind::Home)
        .unwrap();
    assert_eq!(home.ssid.as_str(), "OpenWrt");
    assert_eq!(home.passphrase.expose(), IMPORTED_KEY);
    assert_eq!(home.bands, trellis_proto::home_wifi::Bands::Only2g);
    assert_eq!(s3.wifi.roaming, Some(roaming), "the home keeps its keys");

    // Remove it; a second removal says there is none.
    ok(&trellis(&["wifi", "remove", "home"]));
    assert!(snapshot().wifi.networks.is_empty());
    let err = refused(&trellis(&["wifi", "remove", "home"]));
    assert!(err.contains("no home network"), "{err}");

    // The controller's log (trace level) saw every change and holds no passphrase.
    drop(c);
    let log = std::fs::read_to_string(d.join("controller.log")).unwrap();
    assert!(
        log.contains("home wifi changed"),
        "the log was captured: {log}"
    );
    for secret in [SECRET, IMPORTED_KEY, "shorty7", &roaming_key] {
        assert!(
            !log.contains(secret),
            "a passphrase is in the log: {}",
            log.lines().find(|l| l.contains(secret)).unwrap_or("")
        );
    }
}

/// Pair router `name` through the real exchange; its certificate and key (PEM).
async fn paired(d: &std::path::Path, c: &support::Controller, name: &str) -> String {
    let out = support::trellis(d, &c.socket, &["pair", "--json"]);
    let code: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = trellis_proto::pairing::PairingCode::parse(code["code"].as_str().unwrap()).unwrap();
    let state = trellis_agent::state::StateDir::new(d.join(name));
    trellis_agent::join::join(
        &format!("127.0.0.1:{}", c.port),
        &code,
        &trellis_proto::NodeName::new(name).unwrap(),
        &state,
        false,
    )
    .await
    .unwrap();
    state.identity_pem().unwrap()
}

/// A controller with two paired routers (their certificates and keys, PEM) and the home
/// network "Our Home" set.
struct TwoRouters {
    dir: tempfile::TempDir,
    controller: support::Controller,
    attic: String,
    cellar: String,
}

impl TwoRouters {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let controller = support::start_controller(d, "info");
        let attic = paired(d, &controller, "attic").await;
        let cellar = paired(d, &controller, "cellar").await;
        let pw = d.join("pw");
        std::fs::write(&pw, SECRET).unwrap();
        ok(&support::trellis(
            d,
            &controller.socket,
            &[
                "wifi",
                "set",
                "home",
                "--ssid",
                "Our Home",
                "--passphrase-file",
                pw.to_str().unwrap(),
            ],
        ));
        Self {
            dir,
            controller,
            attic,
            cellar,
        }
    }

    /// Posts a router's telemetry over its mutual TLS (`cert`: its certificate and key).
    fn report(
        &self,
        cert: &str,
        t: &trellis_proto::api::Telemetry,
    ) -> trellis_proto::api::TelemetryAnswer {
        let curl = support::Curl::new(self.dir.path(), &self.controller);
        let (status, answer) = curl.send(
            "127.0.0.1",
            Some(cert),
            "POST",
            "/v1/agent/telemetry",
            Some(&serde_json::to_string(t).unwrap()),
        );
        assert_eq!(status, 200, "{answer}");
        serde_json::from_str(&answer).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_phone_is_steered_through_its_routers_telemetry_answer_and_why_roam_says_why() {
    use trellis_proto::api::{SeenDevice, Telemetry, WifiAssociation};
    use trellis_proto::home_wifi::*;
    let h = TwoRouters::start().await;
    let (d, c, attic, cellar) = (
        h.dir.path(),
        &h.controller,
        h.attic.as_str(),
        h.cellar.as_str(),
    );
    let trellis = |args: &[&str]| support::trellis(d, &c.socket, args);
    ok(&trellis(&[
        "set-device",
        "02:00:00:00:00:0a",
        "phone",
        "trusted",
    ]));
    let phone: trellis_proto::policy::MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    let ap = |bssid: &str, report: &str| AccessPointReport {
        network: NetworkKind::Home,
        interface: "phy1-ap0".into(),
        bssid: bssid.parse().unwrap(),
        band: Band::G5,
        channel: 36,
        freq_mhz: 5180,
        neighbour_report: Some(report.into()),
        ssid: None,
        settings: None,
    };
    let report = |cert: &str, t: &Telemetry| h.report(cert, t);
    // The cellar hears the phone well on 5 GHz.
    let cellar_t = Telemetry {
        access_points: vec![ap("02:aa:00:00:02:05", "02aa00000205ff")],
        heard_clients: vec![HeardClient {
            mac: phone,
            band: Band::G5,
            signal_dbm: -58,
            age_ms: 300,
        }],
        ..Default::default()
    };
    report(cellar, &cellar_t);
    // The attic has it associated, weak.
    let mut attic_t = Telemetry {
        access_points: vec![ap("02:aa:00:00:01:05", "02aa00000105ff")],
        devices: vec![SeenDevice {
            mac: "02:00:00:00:00:0a".into(),
            ip: None,
            hostname: None,
            wifi: Some(WifiAssociation {
                interface: "phy1-ap0".into(),
                signal_dbm: Some(-79),
                inactive_ms: Some(20),
                network: Some(NetworkKind::Home),
                band: Some(Band::G5),
                dual_band: Some(true),
            }),
            port: None,
        }],
        ..Default::default()
    };
    let answer = report(attic, &attic_t);
    assert_eq!(answer.steer.len(), 1, "{answer:?}");
    let req = &answer.steer[0];
    assert_eq!(req.station, phone);
    assert_eq!(req.target_node.as_str(), "cellar");
    assert_eq!(req.target_bssid, "02:aa:00:00:02:05".parse().unwrap());
    assert_eq!(req.target_neighbour_report, "02aa00000205ff");
    // 802.11k: the attic's AP lists the cellar's, and the other way round.
    assert_eq!(answer.neighbours.len(), 1);
    assert_eq!(answer.neighbours[0].node.as_str(), "cellar");
    assert_eq!(answer.neighbours[0].ssid.as_str(), "Our Home");
    let cellar_answer = report(cellar, &cellar_t);
    assert!(
        cellar_answer.steer.is_empty(),
        "asked of the router the phone is on"
    );
    assert_eq!(cellar_answer.neighbours[0].node.as_str(), "attic");

    let why = ok(&trellis(&["why-roam", "phone"]));
    assert!(
        why.contains("steered to cellar") && why.contains("-79 dBm") && why.contains("-58 dBm"),
        "{why}"
    );
    // The phone declines; the attic's next report carries the outcome, which the device's
    // history and counts show.
    attic_t.steer_outcomes = vec![SteerOutcome {
        id: req.id,
        station: phone,
        result: SteerResult::Declined,
        status_code: Some(7),
    }];
    report(attic, &attic_t);
    let history = ok(&trellis(&["devices", "phone"]));
    assert!(history.contains("phone (02:00:00:00:00:0a)"), "{history}");
    assert!(
        history.contains("asked to move attic → cellar"),
        "{history}"
    );
    assert!(
        history.contains("answered #1: Declined (status 7)"),
        "{history}"
    );
    assert!(history.contains("1 declined"), "{history}");
    let json = ok(&trellis(&["--json", "why-roam", "02:00:00:00:00:0a"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["counts"]["declined"], 1, "{json}");
    let err = refused(&trellis(&["why-roam", "toaster"]));
    assert!(err.contains("no device \"toaster\""), "{err}");
}

/// `trellis check` (and the page) name the router whose access points differ from the
/// home's networks: another name broadcast, older settings, a network missing on a band.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_check_names_the_router_whose_wifi_differs() {
    use trellis_proto::api::Telemetry;
    use trellis_proto::home_wifi::*;
    let h = TwoRouters::start().await;
    let (d, c, attic, cellar) = (
        h.dir.path(),
        &h.controller,
        h.attic.as_str(),
        h.cellar.as_str(),
    );
    let curl = support::Curl::new(d, c);
    let trellis = |args: &[&str]| support::trellis(d, &c.socket, args);
    // What the routers were given, as their snapshot carries it.
    let (status, body) = curl.send(
        "127.0.0.1",
        Some(attic),
        "GET",
        "/v1/agent/config?after=0&wait=0",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let wifi = serde_json::from_str::<trellis_proto::snapshot::ConfigSnapshot>(&body)
        .unwrap()
        .wifi;
    let home = wifi.network(NetworkKind::Home).unwrap().clone();
    let ap = |band: Band, ssid: &str, settings: String| AccessPointReport {
        network: NetworkKind::Home,
        interface: "tr-home0".into(),
        bssid: "02:aa:00:00:01:05".parse().unwrap(),
        band,
        channel: 6,
        freq_mhz: 2437,
        neighbour_report: None,
        ssid: Some(ssid.into()),
        settings: Some(settings),
    };
    let report = |cert: &str, aps: Vec<AccessPointReport>| {
        h.report(
            cert,
            &Telemetry {
                access_points: aps,
                ..Default::default()
            },
        );
    };
    let findings = || -> Vec<(String, String)> {
        let out = trellis(&["--json", "check"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["level"].as_str().unwrap().to_owned(),
                    f["what"].as_str().unwrap().to_owned(),
                )
            })
            // The wifi findings: about a router and a network.
            .filter(|(_, w)| {
                w.contains(" network")
                    && ["router ", "routers ", "every router ("]
                        .iter()
                        .any(|p| w.starts_with(p))
            })
            .collect()
    };
    let right = settings_fingerprint(&home, wifi.roaming.as_ref());
    report(attic, vec![ap(Band::G2, "Our Home", right.clone())]);
    report(cellar, vec![ap(Band::G2, "Our Home", right.clone())]);
    let f = findings();
    assert!(
        f.iter().any(|(l, w)| l == "ok"
            && w.starts_with("every router (attic, cellar) serve the home's wifi")),
        "{f:?}"
    );

    // The cellar serves an older passphrase, and the attic another name on 5 GHz while its
    // 2.4 GHz radio lost the network.
    let older = WifiNetwork {
        passphrase: Passphrase::new("an older passphrase").unwrap(),
        ..home.clone()
    };
    report(
        cellar,
        vec![ap(
            Band::G2,
            "Our Home",
            settings_fingerprint(&older, wifi.roaming.as_ref()),
        )],
    );
    report(
        attic,
        vec![
            ap(Band::G5, "Old Name", right.clone()),
            AccessPointReport {
                network: NetworkKind::Iot,
                ..ap(Band::G2, "Our Things", right.clone())
            },
        ],
    );
    let f = findings();
    let has = |level: &str, text: &str| f.iter().any(|(l, w)| l == level && w.contains(text));
    assert!(
        has(
            "fail",
            "router cellar serves the home network with other settings"
        ),
        "{f:?}"
    );
    assert!(
        has(
            "fail",
            "router attic broadcasts \"Old Name\" for the home network"
        ),
        "{f:?}"
    );
    assert!(
        has(
            "warn",
            "router attic does not broadcast the home network on 2.4 GHz"
        ),
        "{f:?}"
    );
    assert!(
        has("warn", "router attic still broadcasts the iot network"),
        "{f:?}"
    );
    assert!(
        !f.iter().any(|(l, _)| l == "ok"),
        "no router agrees now: {f:?}"
    );
    // No finding carries a passphrase or the fingerprint's key.
    let all = String::from_utf8_lossy(&trellis(&["--json", "check"]).stdout).into_owned();
    assert!(!all.contains(SECRET) && !all.contains("an older passphrase"));
}
