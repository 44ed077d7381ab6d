//! The controller's Prometheus page over a real home on loopback: agents pairing (one with a
//! wrong code), following a config change and acking it; the page counts what happened.

use std::sync::Arc;
use std::time::Duration;

use trellis_agent::control::Agent;
use trellis_agent::join::join;
use trellis_agent::state::StateDir;
use trellis_controller::home::{Home, Settings};
use trellis_proto::pairing::PairingCode;
use trellis_proto::NodeName;

fn line_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find(|l| l.rsplit_once(' ').map(|(s, _)| s) == Some(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} on the page:\n{page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_counts_pairings_routers_lag_and_propagation() {
    let dir = tempfile::tempdir().unwrap();
    let home: Arc<Home> = Home::open(Settings {
        data_dir: dir.path().join("controller"),
        leaf_ttl: Duration::from_secs(24 * 3600),
        advertise: String::new(),
        node_timeout: trellis_controller::home::DEFAULT_NODE_TIMEOUT,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(trellis_controller::api::port::serve(home.clone(), listener));

    // One wrong code, then the right one.
    let real = PairingCode::parse(&home.new_pairing_code(false).unwrap().code).unwrap();
    let wrong = PairingCode {
        slot: real.slot.clone(),
        secret: "ZZZZZZZZ".into(),
    };
    let attic = StateDir::new(dir.path().join("attic"));
    let name = NodeName::new("attic").unwrap();
    assert!(join(&addr, &wrong, &name, &attic, false).await.is_err());
    join(&addr, &real, &name, &attic, false).await.unwrap();

    // The agent follows the config; an admin's change reaches it and it acks.
    let agent = Agent::load(attic.clone()).unwrap().start();
    let v = home.add_group("printers").unwrap();
    let mut trust = agent.trust.clone();
    tokio::time::timeout(Duration::from_secs(10), trust.wait_for_version(v))
        .await
        .unwrap()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while home.nodes().unwrap()[0].acked_version < v {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never acked {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let page = trellis_controller::metrics::page(&home, &[]);
    assert_eq!(line_value(&page, "trellis_routers{state=\"online\"}"), 1.0);
    assert_eq!(line_value(&page, "trellis_config_version"), v as f64);
    assert_eq!(
        line_value(
            &page,
            "trellis_agent_config_versions_behind{node=\"attic\"}"
        ),
        0.0
    );
    assert_eq!(line_value(&page, "trellis_pairings_enrolled_total"), 1.0);
    assert_eq!(
        line_value(
            &page,
            "trellis_pairings_refused_total{reason=\"wrong_code\"}"
        ),
        1.0
    );
    assert!(line_value(&page, "trellis_pairings_started_total") >= 2.0);
    // The change was timed from its publication to the agent's ack.
    assert!(line_value(&page, "trellis_config_propagation_seconds_count") >= 1.0);
    let identity = format!("spiffe://{}/node/attic", home.home_id());
    let left = line_value(
        &page,
        &format!("trellis_cert_expiry_seconds{{identity=\"{identity}\",node=\"attic\"}}"),
    );
    assert!(left > 23.0 * 3600.0 && left <= 24.0 * 3600.0, "{left}");
    server.abort();
}
