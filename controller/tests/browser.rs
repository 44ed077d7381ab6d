//! The router web page in a real headless Chromium, against the real controller binary and a
//! real satellite (`trellis-agent join` + `trellis-agent run`): first run with the setup
//! token, a refused wrong password, login, pairing a satellite from the page and watching it
//! appear on the map, renaming it, assigning a device to a group, removing the router.
//!
//! Screenshots of every page land in `target/screenshots/` (a CI artifact; look at them).
//! Without chromium this test fails under CI and skips loudly elsewhere; `cargo xtask test`
//! installs chromium and chromium-driver.

mod support;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use webdriver::{Browser, Driver};

use support::{agent_binary, start_controller_env, text, trellis, Proc};

fn screenshots_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: put the artifacts beside it, in target/screenshots.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page's files gzipped together with `gzip -9`, as a router would serve them.
fn gzip_size() -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/ui");
    let mut all = Vec::new();
    for (path, body) in trellis_controller::api::web::asset_files() {
        assert!(root.join(path).exists(), "{path} listed but not in web/ui");
        all.extend_from_slice(body);
    }
    let mut child = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&all).unwrap();
    }
    child.wait_with_output().unwrap().stdout.len()
}

#[test]
fn the_page_stays_within_150_kb_gzip() {
    let size = gzip_size();
    println!("web page: {size} bytes gzip");
    assert!(
        size <= 150 * 1024,
        "{size} bytes gzip is over the 150 KB budget"
    );
}

#[test]
fn the_router_page_in_a_real_browser() {
    let Some(browser) = Browser::find() else {
        let msg = "chromium and chromedriver are not installed, so the browser test cannot run; `cargo xtask test` installs them (apt-get install chromium chromium-driver)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!!!! SKIPPED the_router_page_in_a_real_browser: {msg} !!!!!!!!!!\n");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shots = screenshots_dir();
    let shot = |d: &Driver, name: &str| {
        let path = shots.join(format!("{name}.png"));
        d.screenshot_full(&path);
        println!("screenshot: {}", path.display());
    };

    // The controller, as procd would start it, on a router whose own wireless config has a
    // network: a stand-in `uci` first on its PATH prints what OpenWrt 24.10's `uci -q show
    // wireless` printed for such a router (the import parser is checked against real uci
    // output in uci_wireless.rs).
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("wireless.show"),
        "wireless.radio0=wifi-device\nwireless.radio0.type='mac80211'\nwireless.radio0.band='2g'\n\
         wireless.default_radio0=wifi-iface\nwireless.default_radio0.device='radio0'\n\
         wireless.default_radio0.network='lan'\nwireless.default_radio0.mode='ap'\n\
         wireless.default_radio0.ssid='Our Home'\nwireless.default_radio0.encryption='sae-mixed'\n\
         wireless.default_radio0.key='the-routers-own-key-42'\n",
    )
    .unwrap();
    std::fs::write(
        bin.join("uci"),
        "#!/bin/sh\n[ \"$1\" = -q ] && shift\n[ \"$1 $2\" = \"show wireless\" ] || exit 1\n\
         cat \"$(dirname \"$0\")/wireless.show\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("uci"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let controller = start_controller_env(dir.path(), "info", &[("PATH", path)]);
    let (socket, port) = (controller.socket.clone(), controller.port);
    let token = {
        let out = trellis(dir.path(), &socket, &["setup-token", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["setup_token"].as_str().unwrap().to_owned()
    };
    // The log says where the token is, never the token itself.
    let logged = std::fs::read_to_string(dir.path().join("controller.log")).unwrap();
    assert!(logged.contains("setup-token"), "{logged}");
    assert!(
        !logged.contains(&token),
        "the setup token leaked into the log"
    );

    let d = Driver::start(
        &browser,
        &dir.path().join("chromium-profile"),
        &dir.path().join("chromedriver.log"),
    );
    let base = format!("https://127.0.0.1:{port}");
    // Every form control has a label a screen reader can read.
    let labelled = |d: &Driver, page: &str| {
        let unlabelled = d.script(
            "return [...document.querySelectorAll('input, select, button')]
               .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
               .map((el) => el.outerHTML)",
            serde_json::json!([]),
        );
        assert_eq!(
            unlabelled,
            serde_json::json!([]),
            "unlabelled controls on {page}"
        );
    };

    // --- first run: a wrong token is refused, the right one sets the password ---------------
    d.goto(&format!("{base}/"));
    let token_input = d.wait("#setup-token");
    shot(&d, "01-first-run");
    labelled(&d, "first run");
    d.type_into(&token_input, "not-the-token-at-all");
    d.type_into(&d.wait("#setup-password"), "kitchen table 42");
    d.type_into(&d.wait("#setup-password2"), "kitchen table 42");
    d.click(&d.wait("#setup-submit"));
    d.wait_text("#setup-result", "not the setup token");
    d.type_into(&token_input, &token);
    d.click(&d.wait("#setup-submit"));
    d.wait("#topology");
    d.wait_text("main h1", "Home");
    assert!(!dir.path().join("data/setup-token").exists());
    shot(&d, "02-home-empty");

    // --- log out; a wrong password is refused; the right one logs in ----------------------
    d.click(&d.wait("#logout"));
    let pw = d.wait("#login-password");
    labelled(&d, "login");
    d.type_into(&pw, "wrong password");
    d.click(&d.wait("#login-submit"));
    d.wait_text("#login-result", "Wrong password");
    assert!(
        !d.exists("#topology"),
        "a wrong password must not open the page"
    );
    shot(&d, "03-login-wrong-password");
    d.type_into(&d.wait("#login-password"), "kitchen table 42");
    d.click(&d.wait("#login-submit"));
    d.wait("#topology");

    // --- pair a satellite from the page ---------------------------------------------------
    d.goto(&format!("{base}/#/routers"));
    d.wait_text("#router-list", "No satellites yet");
    // A page change moves focus to its heading, so screen readers announce the new page.
    let focused = d.script(
        "return document.activeElement && document.activeElement.textContent",
        serde_json::json!([]),
    );
    assert_eq!(focused, serde_json::json!("Routers"));
    d.click(&d.wait("#pair-button"));
    let code = d.text(&d.wait("#pair-code"));
    assert_eq!(code.len(), 12, "pairing code {code:?}");
    d.wait_text("#pair-countdown", "Valid for");
    d.wait_text("#pair-result", "Waiting");
    let command = d.text(&d.wait("#pair-command"));
    assert!(command.contains(&code), "{command}");
    shot(&d, "04-pairing-code");

    let sat = dir.path().join("sat");
    let out = Command::new(agent_binary())
        .arg("--state-dir")
        .arg(&sat)
        .args([
            "join",
            &format!("127.0.0.1:{port}"),
            &code,
            "--name",
            "attic",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "join failed: {}", text(&out));
    d.wait_text("#pair-result", "enrolled");
    // The satellite hands out DHCP: a thermostat has a lease behind it (dnsmasq's format).
    let leases = dir.path().join("dhcp.leases");
    std::fs::write(
        &leases,
        "0 aa:bb:cc:00:11:22 192.168.1.23 thermostat-esp 01:aa:bb:cc:00:11:22\n",
    )
    .unwrap();
    let _agent = Proc(
        Command::new(agent_binary())
            .arg("--state-dir")
            .arg(&sat)
            // No interception: this test runs in the machine's own network namespace.
            .args([
                "--log",
                "warn",
                "run",
                "--no-intercept",
                "--no-mdns",
                // Any free port: other tests may run agents beside this one.
                "--proxy-outbound",
                "127.0.0.1:0",
                "--proxy-inbound",
                "127.0.0.1:0",
                "--dns-listen",
                "off",
                "--metrics-listen",
                "off",
                "--speedtest-listen",
                "127.0.0.1:0",
                "--telemetry-interval",
                "2",
                "--mesh-report",
            ])
            .arg(dir.path().join("attic-mesh.json"))
            .arg("--leases")
            .arg(&leases)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    d.wait_text_for("#pair-result", "joined the home", Duration::from_secs(60));
    d.wait("#pair-steps li[data-stage=meshed].done");
    d.wait_text("#router-list [data-router=attic]", "Online");
    shot(&d, "05-paired");

    // A home service behind the new router (agents report them; here added by hand).
    let out = trellis(
        dir.path(),
        &socket,
        &[
            "add-service",
            "nas",
            "--node",
            "attic",
            "--addr",
            "192.168.1.40",
            "--port",
            "445",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // --- rename it ------------------------------------------------------------------------
    d.click(&d.wait("[data-router=attic] button[aria-label='Rename attic']"));
    d.type_into(&d.wait("#label-attic"), "Attic");
    labelled(&d, "routers (renaming)");
    d.click(&d.wait("[data-router=attic] form.inline button[type=submit]"));
    d.wait_text("#router-list [data-router=attic] h3", "Attic");

    // --- the map shows it, online, with details on focus -----------------------------------
    d.goto(&format!("{base}/#/"));
    let node = d.wait("#topology [data-router=attic]");
    let label = d.attr(&node, "aria-label").unwrap_or_default();
    assert!(
        label.contains("Attic") && label.contains("Online"),
        "{label}"
    );
    d.script(
        "document.querySelector('#topology [data-router=attic]').focus()",
        serde_json::json!([]),
    );
    d.wait_text("#map-details", "Attic: Online");
    d.wait_text("#summary", "1 of 1 online");
    // The thermostat's lease shows behind the satellite, by the name it gave DHCP.
    let details = d.wait_text("#map-details", "1 device");
    assert!(details.contains("devices thermostat-esp"), "{details}");
    assert!(d.exists("#topology [data-router=attic]"));
    shot(&d, "06-home-map");

    // --- link colours and warnings, with the telemetry the wifi half will report -------------
    // The controller has no link data yet (no wifi here), so feed the page's own map and
    // warning code a home with links of each quality and check what a person would see.
    let drawn = d.script_async(
        r#"const done = arguments[arguments.length - 1];
        Promise.all([import('/ui/map.js'), import('/ui/pages/home.js')]).then(([map, home]) => {
          const r = (name, label, state, devices, services, hops) => ({ name, label, state, identity: 'spiffe://demo/node/' + name,
            last_seen_s: state === 'online' ? 3 : 900, addresses: ['192.168.1.' + name.length], devices, services,
            cert_expires_in_s: 40000, enrolled_at: 0, acked_version: 3, agent_version: '0.1.0', portal: hops === 0, hops });
          // The primary router's own agent ("home") is the portal: the centre of the map.
          const overview = { home_id: 'demo', config_version: 7, controller_version: '0.1.0', portal: 'home',
            routers: [r('home', null, 'online', ['printer'], []), r('attic', 'Attic', 'online', ['tv', 'laptop'], ['nas'], 1),
                      r('garage', null, 'online', ['camera'], [], 2), r('shed', 'Shed', 'offline', [], [], null)],
            links: [
              { from: 'home', to: 'attic', signal_dbm: -52, expected_throughput_kbps: 286000, airtime_metric: 120, verdict: 'good' },
              { from: 'attic', to: 'garage', signal_dbm: -68, expected_throughput_kbps: 54000, airtime_metric: 410, verdict: 'fair' },
              { from: 'home', to: 'shed', signal_dbm: -84, expected_throughput_kbps: 4000, airtime_metric: 2900, verdict: 'unstable' },
            ],
            warnings: [
              { level: 'error', subject: 'Shed', message: 'Shed is offline: it has not called the controller for 15 min. Check that it has power and a link to the mesh.' },
              { level: 'warning', subject: 'Shed', message: 'The link to Shed is unstable (3 drops in 10 min): move it closer or add a cable.' },
            ] };
          const page = document.querySelector('main .page');
          const warn = document.createElement('div');
          const holder = document.createElement('div');
          holder.id = 'preview';
          page.replaceChildren(warn, holder);
          home.drawWarnings(warn, overview.warnings);
          map.drawMap(holder, overview);
          done(document.querySelectorAll('#preview line.link').length);
        }).catch((e) => done('error: ' + e));"#,
        serde_json::json!([]),
    );
    assert_eq!(drawn, serde_json::json!(3), "{drawn}");
    for q in ["q-good", "q-fair", "q-bad"] {
        d.wait(&format!("#preview line.{q}"));
    }
    d.script(
        "document.querySelector('#preview line.q-fair').focus()",
        serde_json::json!([]),
    );
    let details = d.wait_text("#preview .map-details", "-68 dBm");
    assert!(
        details.contains("54.0 Mbit/s") && details.contains("fair"),
        "{details}"
    );
    d.wait_text("main .warnings", "2 things need attention");
    // The portal is drawn once, in the centre, as this router with its own devices; each
    // satellite says how many mesh hops away it is.
    assert!(!d.exists("#preview [data-router=controller]"));
    let portal = d.wait("#preview .node.portal[data-router=home]");
    let label = d.attr(&portal, "aria-label").unwrap_or_default();
    assert!(
        label.starts_with("This router") && label.contains("printer"),
        "{label}"
    );
    let garage = d.wait("#preview .node.router[data-router=garage]");
    let label = d.attr(&garage, "aria-label").unwrap_or_default();
    assert!(label.contains("2 mesh hops from this router"), "{label}");
    let subs = d.script(
        "return ['attic', 'garage'].map((n) => document.querySelector(`#preview [data-router=${n}] .sub`).textContent)",
        serde_json::json!([]),
    );
    assert_eq!(
        subs,
        serde_json::json!([
            "Online · 1 hop · 2 dev · 1 svc",
            "Online · 2 hops · 1 dev · 0 svc"
        ])
    );
    shot(&d, "06b-map-link-quality-preview");

    // --- certificates -----------------------------------------------------------------------
    d.goto(&format!("{base}/#/certificates"));
    d.wait_text("#ca", "Fingerprint");
    d.wait_text("#identities tr[data-router=attic]", "spiffe://");
    shot(&d, "07-certificates");

    // --- policy: put a device in the IoT group -------------------------------------------
    d.goto(&format!("{base}/#/policy"));
    d.wait("#device-group option[value=iot]");
    // The thermostat is offered by name and router (from attic's lease) before anyone types
    // its MAC.
    d.wait_text(
        "#device-mac-hint",
        "Pick one of the 1 device your routers see",
    );
    // (A datalist's options are never displayed, so read them rather than wait for them.)
    let offered = d.script(
        "return [...document.querySelectorAll('#seen-devices option')].map((o) => [o.value, o.label])",
        serde_json::json!([]),
    );
    assert_eq!(
        offered,
        serde_json::json!([["aa:bb:cc:00:11:22", "thermostat-esp (on attic)"]])
    );
    d.type_into(&d.wait("#device-mac"), "AA-BB-CC-00-11-22");
    d.type_into(&d.wait("#device-name"), "Thermostat");
    d.script(
        "const s = document.querySelector('#device-group'); s.value = 'iot'; s.dispatchEvent(new Event('change'))",
        serde_json::json!([]),
    );
    d.click(&d.wait("#device-submit"));
    d.wait_text("#device-result", "Thermostat is in the iot group");
    let row = d.wait_text(
        "[data-group=iot] [data-mac='aa:bb:cc:00:11:22']",
        "Thermostat",
    );
    assert!(row.contains("on attic"), "{row}");
    // A deny rule from the page, then "why" explains it by name.
    d.type_into(&d.wait("#rule-name"), "no-iot-nas");
    d.script(
        "const f = document.querySelector('#rule-form');
         f.querySelector('#rule-action').value = 'deny';
         f.querySelector('#rule-from').value = 'iot';",
        serde_json::json!([]),
    );
    d.type_into(&d.wait("#rule-to"), "nas");
    d.click(&d.wait("#rule-submit"));
    d.wait_text("#rule-result", "Rule no-iot-nas is in force");
    d.wait_text("#rule-list [data-rule=no-iot-nas]", "Deny");
    d.type_into(&d.wait("#why-source"), "Thermostat");
    d.type_into(&d.wait("#why-target"), "nas:445");
    d.click(&d.wait("#why-submit"));
    let verdict = d.wait_text("#why-result", "Denied");
    assert!(verdict.contains("no-iot-nas"), "{verdict}");
    shot(&d, "08-policy");
    labelled(&d, "policy");
    let out = trellis(dir.path(), &socket, &["devices", "--json"]);
    let devices: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let thermostat = devices
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["mac"] == "aa:bb:cc:00:11:22"))
        .unwrap_or_else(|| panic!("no thermostat in {devices}"));
    // In the book as an IoT device, and seen behind the router that leased its address.
    assert_eq!(thermostat["group"], "iot", "{devices}");
    assert_eq!(thermostat["router"], "attic", "{devices}");
    assert_eq!(thermostat["ip"], "192.168.1.23", "{devices}");
    // Named in the device book, the thermostat is "Thermostat" behind its router too.
    d.goto(&format!("{base}/#/routers"));
    d.wait_text("#router-list [data-router=attic] .devices", "Thermostat");

    // --- services: the catalog, and who may reach each service -----------------------------
    d.goto(&format!("{base}/#/services"));
    let row = d.wait_text("#services [data-service=nas]", "nas.");
    assert!(row.contains("192.168.1.40 behind attic"), "{row}");
    assert!(row.contains("trusted (by default)"), "{row}");
    assert!(!row.contains("iot"), "the deny rule keeps iot out: {row}");
    shot(&d, "09-services");
    d.goto(&format!("{base}/#/traffic"));
    d.wait_text("main", "No traffic yet");
    shot(&d, "10-traffic");
    // With traffic (no proxy carries any here: the namespace e2e test checks the real
    // counters reach /v1/admin/traffic), the page's own code draws what the API would give.
    d.script(
        r#"const real = window.fetch;
        const points = (f) => Array.from({ length: 60 }, (_, i) => f(i));
        window.fetch = (url, opts) => String(url).endsWith('/api/ui/traffic')
          ? Promise.resolve(new Response(JSON.stringify({ available: true,
              note: 'Per minute, from the routers’ proxies.',
              items: [{ service: 'nas', connections_per_min: points((i) => (i * 7) % 11),
                        bytes_per_min: points((i) => (i % 13) * 90000), connections_total: 42,
                        bytes_total: 5400000 }] }),
              { headers: { 'content-type': 'application/json' } }))
          : real(url, opts);
        location.hash = '#/home'; location.hash = '#/traffic';"#,
        serde_json::json!([]),
    );
    let card = d.wait_text("#traffic-list [data-service=nas]", "42 connections");
    assert!(card.contains("5.4 MB"), "{card}");
    assert_eq!(
        d.script(
            "return document.querySelectorAll('#traffic-list svg.spark path').length",
            serde_json::json!([])
        ),
        serde_json::json!(2),
        "two charts: connections and bytes"
    );
    shot(&d, "10b-traffic-charts");

    // --- the service map: who reaches which service (the namespace e2e test checks the
    // real edges reach /v1/admin/graph); empty first, then what the API would give.
    d.goto(&format!("{base}/#/graph"));
    d.wait_text("main", "No connections yet");
    d.script(
        r#"const real = window.fetch;
        window.fetch = (url, opts) => String(url).includes('/api/ui/graph')
          ? Promise.resolve(new Response(JSON.stringify({ window_min: 15,
              sources: [{ id: 'device:02:00:00:00:00:01', name: 'laptop', kind: 'device', group: 'trusted' },
                        { id: 'device:02:00:00:00:00:09', name: 'guest-phone', kind: 'device', group: 'guest' }],
              services: ['nas'],
              edges: [{ source: 'device:02:00:00:00:00:01', service: 'nas', connections: 30,
                        connections_per_min: 2, bytes_sent: 1200, bytes_received: 4500000,
                        denials: 0, connect_p50_ms: 5, connect_p99_ms: 25 },
                      { source: 'device:02:00:00:00:00:09', service: 'nas', connections: 0,
                        connections_per_min: 0, bytes_sent: 0, bytes_received: 0,
                        denials: 3, connect_p50_ms: null, connect_p99_ms: null }] }),
              { headers: { 'content-type': 'application/json' } }))
          : real(url, opts);
        location.hash = '#/home'; location.hash = '#/graph';"#,
        serde_json::json!([]),
    );
    let row = d.wait_text(
        "#graph-edges tr[data-source='device:02:00:00:00:00:01']",
        "laptop (trusted)",
    );
    assert!(
        row.contains("4.5 MB") && row.contains("≤ 5 / ≤ 25 ms"),
        "{row}"
    );
    let refused = d.wait_text(
        "#graph-edges tr[data-source='device:02:00:00:00:00:09']",
        "guest-phone",
    );
    assert!(refused.ends_with('3'), "three refusals: {refused}");
    assert_eq!(
        d.script(
            "return [document.querySelectorAll('svg.service-map path.edge').length,
                     document.querySelectorAll('svg.service-map path.edge.refused').length]",
            serde_json::json!([])
        ),
        serde_json::json!([2, 1]),
        "one line per edge, the refused one marked"
    );
    labelled(&d, "service map");
    shot(&d, "10c-service-map");

    // --- wifi: the first setup offers the router's own network; a key is never shown --------
    d.goto(&format!("{base}/#/wifi"));
    let offer = d.wait_text("#wifi-offer", "Our Home");
    assert!(offer.contains("no device has to join again"), "{offer}");
    labelled(&d, "wifi");
    shot(&d, "13-wifi-offer");
    d.click(&d.wait("#wifi-take-offer"));
    d.wait_text("#wifi-networks [data-network=home] h3", "Our Home");
    d.wait_gone("#wifi-offer");
    d.wait_text("#wifi-said", "is the home network now");
    let shown = text(&trellis(dir.path(), &socket, &["wifi"]));
    assert!(
        shown.contains("Our Home"),
        "the CLI sees what the page set: {shown}"
    );
    let html = d.script(
        "return document.documentElement.outerHTML",
        serde_json::json!([]),
    );
    assert!(
        !html.to_string().contains("the-routers-own-key-42"),
        "the key is never shown back"
    );
    // 11 euro signs are 11 characters but 33 bytes: the controller refuses it, and says why.
    d.script(
        "document.querySelector('#wifi-guest-ssid').value = '€€€€€€€€€€€';
         document.querySelector('#wifi-guest-pass').value = 'guests-welcome-1';",
        serde_json::json!([]),
    );
    d.click(&d.wait("#wifi-guest-save"));
    let refused = d.wait_text("#wifi-guest-result", "33 bytes");
    assert!(d.exists("#wifi-guest-result.error"), "{refused}");
    d.script(
        "document.querySelector('#wifi-guest-ssid').value = 'Our Guests';
         document.querySelector('#wifi-guest-pass').value = 'guests-welcome-1';",
        serde_json::json!([]),
    );
    d.click(&d.wait("#wifi-guest-save"));
    d.wait_text("#wifi-networks [data-network=guest] h3", "Our Guests");
    // What the save did stays on the page after the cards are redrawn.
    let said = d.wait_text("#wifi-said", "Saved");
    assert!(said.contains("Our Guests"), "{said}");
    let shown = text(&trellis(dir.path(), &socket, &["wifi"]));
    assert!(shown.contains("Our Guests"), "{shown}");
    shot(&d, "13b-wifi-networks");

    // --- a speed test between two routers -------------------------------------------------
    // Their mesh supervisors see each other (the link reports `trellis-agent mesh` writes).
    let write_link_reports = || {
        for (name, mac, peer) in [
            ("attic", "02:00:00:00:0a:01", "02:00:00:00:0a:02"),
            ("garage", "02:00:00:00:0a:02", "02:00:00:00:0a:01"),
        ] {
            let report = serde_json::json!({ "mac": mac, "links": [{ "peer": peer, "medium": "wifi",
                "signal_dbm": -52, "expected_throughput_kbps": 180000, "verdict": "good", "advice": [] }] });
            std::fs::write(
                dir.path().join(format!("{name}-mesh.json")),
                report.to_string(),
            )
            .unwrap();
        }
    };
    write_link_reports();
    let _garage = support::pair_and_run(dir.path(), &controller, "garage");
    d.goto(&format!("{base}/#/routers"));
    d.wait_text("#router-list [data-router=garage]", "Online");
    d.wait("#speed-to option[value=garage]");
    d.script(
        "const f = document.querySelector('#speed-form');
         f.querySelector('#speed-from').value = 'attic';
         f.querySelector('#speed-to').value = 'garage';",
        serde_json::json!([]),
    );
    labelled(&d, "routers (speed test)");
    d.click(&d.wait("#speed-start"));
    let result = d.wait_text_for("#speed-result", "Mbit/s", Duration::from_secs(30));
    assert!(result.contains("attic → garage"), "{result}");
    d.wait_text("#speed-recent", "attic → garage");
    shot(&d, "12c-speed-test");
    // Asking for a test from a router to itself gets a clear error on the page.
    d.script(
        "document.querySelector('#speed-to').value = 'attic'",
        serde_json::json!([]),
    );
    d.click(&d.wait("#speed-start"));
    d.wait_text("#speed-result", "two different routers");
    // The map labels the link with what the test measured, and `trellis topology` says it.
    // (The supervisors rewrite their reports every 10 s; an agent drops one older than 60 s.)
    write_link_reports();
    d.goto(&format!("{base}/#/"));
    let label = d.wait_text_for(
        "#topology .link-label[data-link='attic|garage']",
        "Mbit/s",
        Duration::from_secs(30),
    );
    assert!(label.starts_with("wifi · "), "{label}");
    let topo = text(&trellis(dir.path(), &socket, &["topology"]));
    assert!(
        topo.lines()
            .any(|l| l.starts_with("attic") && l.contains("garage") && l.contains(" ago")),
        "{topo}"
    );
    shot(&d, "12d-map-measured-link");

    // --- a phone screen ----------------------------------------------------------------------
    d.set_window(390, 844);
    d.goto(&format!("{base}/#/"));
    d.wait("#topology [data-router=attic]");
    shot(&d, "11-phone-home");
    d.goto(&format!("{base}/#/routers"));
    d.wait("#router-list [data-router=attic]");
    let overflow = d.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        serde_json::json!([]),
    );
    assert!(
        overflow.as_i64().unwrap_or(0) <= 0,
        "the page scrolls sideways on a phone by {overflow}px"
    );
    shot(&d, "12-phone-routers");
    d.set_window(1280, 900);

    // --- dark mode -----------------------------------------------------------------------
    d.color_scheme("dark");
    d.goto(&format!("{base}/#/"));
    d.wait("#topology [data-router=attic]");
    let bg = d.script(
        "return getComputedStyle(document.body).backgroundColor",
        serde_json::json!([]),
    );
    assert_eq!(
        bg,
        serde_json::json!("rgb(16, 22, 20)"),
        "dark colours apply"
    );
    shot(&d, "12b-home-dark");
    d.color_scheme("light");

    // --- remove the router (with confirmation) ------------------------------------------
    d.goto(&format!("{base}/#/routers"));
    d.click(&d.wait("[data-router=attic] button[aria-label='Remove Attic']"));
    d.wait_text("dialog[open]", "Remove Attic?");
    // The safe choice has the focus: Enter or Escape does not remove anything.
    let focused = d.script(
        "return document.activeElement && document.activeElement.value",
        serde_json::json!([]),
    );
    assert_eq!(focused, serde_json::json!("cancel"));
    shot(&d, "13-remove-confirm");
    d.click(&d.wait("dialog[open] button[value=ok]"));
    d.wait_text("#routers-result", "its identity is revoked");
    d.wait_gone("#router-list [data-router=attic]");
    d.wait_text("#router-list .removed-note", "Attic");
    shot(&d, "14-removed");
    let out = trellis(dir.path(), &socket, &["nodes", "--json"]);
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes[0]["name"], "attic");
    assert_eq!(nodes[0]["revoked"], true, "removal on the page must revoke");
    d.goto(&format!("{base}/#/"));
    d.wait("#topology [data-router=controller]");
    assert!(!d.exists("#topology [data-router=attic]"));

    // --- a lost password is reset from the router's shell; the page asks for a new one -----
    let out = trellis(dir.path(), &socket, &["reset-password", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_token = v["setup_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    // The home page polls: its next call finds the session over and shows first run.
    d.wait("#setup-token");
    assert!(!d.exists("#topology"));
    d.type_into(&d.wait("#setup-token"), &new_token);
    d.type_into(&d.wait("#setup-password"), "a new password");
    d.type_into(&d.wait("#setup-password2"), "a new password");
    d.click(&d.wait("#setup-submit"));
    d.wait("#topology");

    println!("web page: {} bytes gzip", gzip_size());
}
