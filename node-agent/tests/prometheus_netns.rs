//! A real Prometheus (Debian's) scrapes the whole home: the controller and both routers'
//! agents in network namespaces, the laptop behind router A reaching a web server behind
//! router B, then refused by a deny rule. The test asks Prometheus through its HTTP API
//! (`/api/v1/query`, `/api/v1/metadata`, `/api/v1/rules`) for the laptop's connection, the
//! denial, the routers online and each router's config lag, so the metric names, labels and
//! types are proven by the real scraper and the shipped rules (docs/prometheus/) load in it.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::running::RunningHome;
use support::{
    in_ns, is_root, spawn_in, start_web_server, text, wait_until, Home, Procs, LAPTOP_MAC,
    PAGE_SECRET,
};

/// The laptop fetches `/` of family-web from the virtual IP on port 8080.
fn laptop_get(ns: &str, vip: Ipv4Addr) -> Result<String, String> {
    support::http_get_in(
        ns,
        SocketAddr::from((vip, 8080)),
        "family-web.trellis.home.arpa",
    )
}

/// `GET path` from Prometheus's HTTP API (in router A's namespace); the JSON `data`.
fn prom_api(ns: &str, path: &str) -> serde_json::Value {
    let owned = path.to_owned();
    let body = in_ns(ns, move || {
        let path = owned;
        let mut s = TcpStream::connect("127.0.0.1:9090").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    });
    let Ok(body) = body else {
        return serde_json::Value::Null;
    };
    let json = body.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    assert_ne!(v["status"], "error", "Prometheus refused {path:?}: {v}");
    v["data"].clone()
}

/// Percent-encode a PromQL expression for a query string.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The instant vector Prometheus answers for `expr`.
fn query(ns: &str, expr: &str) -> Vec<serde_json::Value> {
    prom_api(ns, &format!("/api/v1/query?query={}", encode(expr)))["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn a_real_prometheus_scrapes_the_home_and_sees_the_laptop_and_the_denial() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces (CI runs as root)");
        return;
    }
    let Some(prometheus) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        panic!("prometheus is not installed: cargo xtask setup (Debian package prometheus)");
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/prometheus");
    // The shipped example config and rules pass Prometheus's own checker.
    for args in [
        vec!["check", "rules", "trellis-rules.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&shipped)
            .output()
            .expect("promtool (Debian package prometheus)");
        assert!(out.status.success(), "promtool {args:?}: {}", text(&out));
    }

    let home = Home::new();
    start_web_server(&home.server);
    // Router A runs the controller, its /metrics on the backhaul address.
    let ctl = RunningHome::start(
        &home.ra,
        "10.9.0.1:7443",
        &["--metrics-listen", "10.9.0.1:9465"],
    );
    let d = ctl.dir.path();
    for (ns, name, metrics) in [
        (&home.ra, "router-a", "10.9.0.1:9464"),
        (&home.rb, "router-b", "10.9.0.2:9464"),
    ] {
        let extra = [
            "--dns-listen",
            "off",
            "--no-mdns",
            "--metrics-listen",
            metrics,
        ];
        ctl.join_and_run(ns, name, "10.9.0.1", &extra);
    }

    // Prometheus in router A's namespace, scraping every second with the shipped rules.
    let rules = std::fs::read_to_string(shipped.join("trellis-rules.yml")).unwrap();
    std::fs::write(d.join("trellis-rules.yml"), rules).unwrap();
    std::fs::write(
        d.join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - trellis-rules.yml\nscrape_configs:\n  - job_name: trellis-controller\n    static_configs:\n      - targets: ['10.9.0.1:9465']\n  - job_name: trellis-agent\n    static_configs:\n      - targets: ['10.9.0.1:9464', '10.9.0.2:9464']\n",
    )
    .unwrap();
    let _prometheus = Procs(vec![spawn_in(
        &home.ra,
        &prometheus,
        &[
            &format!("--config.file={}", d.join("prometheus.yml").display()),
            &format!("--storage.tsdb.path={}", d.join("tsdb").display()),
            "--web.listen-address=127.0.0.1:9090",
        ],
        &d.join("prometheus.log"),
    )]);

    // The service behind router B, the laptop trusted.
    ctl.trellis(&[
        "add-service",
        "family-web",
        "--node",
        "router-b",
        "--addr",
        "10.2.0.2",
        "--port",
        "8080",
    ]);
    ctl.trellis(&["set-device", LAPTOP_MAC, "laptop", "trusted"]);
    let vip: Ipv4Addr = ctl
        .json(&["services"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "family-web")
        .and_then(|s| s["vip"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let synced = || ctl.synced(0);
    wait_until("the routers to announce their tunnel address", || {
        let logs = ctl.log("controller");
        logs.matches("tunnel address changed").count() >= 2
    });
    wait_until("every agent to apply the latest config", synced);
    let ok = || {
        laptop_get(&home.laptop, vip)
            .map(|p| p.contains(PAGE_SECRET))
            .unwrap_or(false)
    };
    wait_until("the laptop to reach the web server", ok);

    // A deny rule: the laptop is refused.
    ctl.trellis(&[
        "policy",
        "add",
        "no-laptop-web",
        "deny",
        "--from",
        &format!("device:{LAPTOP_MAC}"),
        "--to",
        "family-web",
    ]);
    wait_until("the deny rule to refuse the laptop", || !ok());
    wait_until("every agent to apply the deny rule", synced);

    // Prometheus scrapes all three targets.
    let logs = || {
        format!(
            "--- prometheus.log\n{}\n--- controller.log\n{}",
            std::fs::read_to_string(d.join("prometheus.log")).unwrap_or_default(),
            ctl.log("controller")
        )
    };
    let mut up = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while up.len() < 3 || up.iter().any(|s| value(s) != 1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus does not scrape every target: {up:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
        up = query(&home.ra, "up");
    }

    // The laptop's connection, as the real scraper parsed it: outbound at router A, from
    // the laptop's device identity to the service behind router B.
    let conn = format!(
        "trellis_tcp_connections_opened_total{{direction=\"outbound\",destination_service=\"family-web\",source_identity=\"device:{LAPTOP_MAC}\"}}"
    );
    let mut found = Vec::new();
    wait_until("Prometheus to have the laptop's connection", || {
        found = query(&home.ra, &conn);
        found.iter().any(|s| value(s) >= 1.0)
    });
    let sample = &found[0]["metric"];
    assert_eq!(sample["job"], "trellis-agent", "{sample}");
    assert_eq!(sample["instance"], "10.9.0.1:9464", "{sample}");
    // Bytes moved, counted too.
    let bytes = query(
        &home.ra,
        "sum(trellis_tcp_received_bytes_total{destination_service=\"family-web\",direction=\"outbound\"})",
    );
    assert!(
        bytes.first().map(value).unwrap_or(0.0) > PAGE_SECRET.len() as f64,
        "{bytes:?}"
    );
    // The denial, named by its rule.
    wait_until("Prometheus to have the denial", || {
        query(
            &home.ra,
            "trellis_policy_denials_total{rule=\"no-laptop-web\",destination_service=\"family-web\"}",
        )
        .iter()
        .any(|s| value(s) >= 1.0)
    });
    // The controller's page: both routers online, neither behind, pairings counted.
    wait_until("the controller's series", || {
        query(
            &home.ra,
            "trellis_routers{state=\"online\",job=\"trellis-controller\"}",
        )
        .first()
        .map(value)
            == Some(2.0)
    });
    let behind = query(&home.ra, "trellis_agent_config_versions_behind");
    assert_eq!(behind.len(), 2, "one lag series per router: {behind:?}");
    let enrolled = query(&home.ra, "trellis_pairings_enrolled_total");
    assert_eq!(enrolled.first().map(value), Some(2.0), "{enrolled:?}");
    let expiry = query(&home.ra, "min(trellis_cert_expiry_seconds)");
    assert!(
        expiry.first().map(value).unwrap_or(0.0) > 3600.0,
        "every certificate has life left: {expiry:?}"
    );
    // The changes were timed from publication to each router's ack.
    let timed = query(&home.ra, "trellis_config_propagation_seconds_count");
    assert!(timed.first().map(value).unwrap_or(0.0) >= 2.0, "{timed:?}");

    // Types as the scraper read them from # TYPE lines.
    for (metric, kind) in [
        ("trellis_tcp_connections_opened_total", "counter"),
        ("trellis_tcp_connect_latency_seconds", "histogram"),
        ("trellis_policy_denials_total", "counter"),
        ("trellis_cert_expiry_seconds", "gauge"),
        ("trellis_routers", "gauge"),
        ("trellis_config_propagation_seconds", "histogram"),
        ("trellis_pairings_refused_total", "counter"),
        ("trellis_web_logins_refused_total", "counter"),
    ] {
        let meta = prom_api(&home.ra, &format!("/api/v1/metadata?metric={metric}"));
        assert_eq!(
            meta[metric][0]["type"], kind,
            "{metric} should be a {kind}: {meta}"
        );
    }
    // The shipped rules loaded and evaluate cleanly, and a recording rule has the laptop.
    let groups = prom_api(&home.ra, "/api/v1/rules")["groups"].clone();
    let rules: Vec<&serde_json::Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(rules.len() >= 10, "{groups}");
    wait_until("every shipped rule to evaluate", || {
        prom_api(&home.ra, "/api/v1/rules")["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .all(|r| r["health"] == "ok")
    });
    wait_until("the recording rule to have the laptop", || {
        !query(
            &home.ra,
            &format!(
                "trellis:tcp_connections_opened:rate5m{{source_identity=\"device:{LAPTOP_MAC}\",destination_service=\"family-web\"}}"
            ),
        )
        .is_empty()
    });
    // No alert fires on a healthy home.
    let alerts = query(&home.ra, "ALERTS{alertstate=\"firing\"}");
    assert!(alerts.is_empty(), "{alerts:?}");
}
