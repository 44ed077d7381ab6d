//! What an enrolled (possibly compromised) router sends the controller, decoded and checked
//! as the agent API does it: telemetry, config acks, speed-test results and renewal CSRs,
//! each a JSON body handed to `Home`. Invariants: no panic; after any report the admin's
//! views (nodes, topology, devices, traffic, catalog) still answer, and the home still has
//! exactly the routers it enrolled.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use trellis_controller::home::{Home, Settings, DEFAULT_NODE_TIMEOUT};
use trellis_proto::api::{ConfigAck, RenewRequest, SpeedTestOutcome, Telemetry};
use trellis_proto::pairing::{PairFinish, PairStart, PairingCode};
use trellis_proto::pake::AgentPake;
use trellis_proto::NodeName;

const ROUTERS: [&str; 2] = ["attic", "cellar"];

struct Fixture {
    _dir: tempfile::TempDir,
    home: Arc<Home>,
}

/// Pairs a router the way `trellis-agent join` does, through the real exchange.
fn enroll(home: &Home, name: &str) {
    let code = home.new_pairing_code(false).expect("a pairing code");
    let code = PairingCode::parse(&code.code).expect("our own code parses");
    let (agent, spake_a) = AgentPake::start(&code.secret);
    let node_name = NodeName::new(name).expect("a valid name");
    let challenge = home
        .pair_start(
            &PairStart {
                slot: code.slot.clone(),
                node_name,
                spake_a,
            },
            Some(std::net::Ipv4Addr::LOCALHOST.into()),
        )
        .expect("pairing starts");
    let keys = agent
        .finish(
            &challenge.spake_b,
            name,
            challenge.home_id.as_str(),
            &challenge.ca_pem,
        )
        .expect("the exchange completes");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a key");
    let csr_pem = CertificateParams::default()
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .expect("a CSR");
    home.pair_finish(&PairFinish {
        session: challenge.session,
        confirm: keys.agent_confirm(&csr_pem),
        csr_pem,
    })
    .expect("the router is enrolled");
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = Home::open(Settings {
            data_dir: dir.path().join("data"),
            leaf_ttl: Duration::from_secs(24 * 3600),
            advertise: "127.0.0.1:7443".into(),
            node_timeout: DEFAULT_NODE_TIMEOUT,
        })
        .expect("a new home");
        for name in ROUTERS {
            enroll(&home, name);
        }
        Fixture { _dir: dir, home }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let node = NodeName::new(ROUTERS[usize::from(op & 1)]).expect("a valid name");
    // Refusals are fine (they become 4xx answers); panics and broken views are not.
    match (op >> 1) % 4 {
        0 => {
            if let Ok(t) = serde_json::from_slice::<Telemetry>(body) {
                let _ = f.home.report(&node, t);
            }
        }
        1 => {
            if let Ok(ack) = serde_json::from_slice::<ConfigAck>(body) {
                // An ack above the published version is refused; either answer is fine here.
                let _ = f.home.ack(&node, ack.version, ack.error.as_deref());
            }
        }
        2 => {
            if let Ok(outcome) = serde_json::from_slice::<SpeedTestOutcome>(body) {
                let _ = f.home.finish_speedtest(&node, &outcome);
            }
        }
        _ => {
            if let Ok(req) = serde_json::from_slice::<RenewRequest>(body) {
                let _ = f.home.renew(&node, &req.csr_pem);
            }
        }
    }
    let nodes = f.home.nodes().expect("the router list still answers");
    assert_eq!(
        nodes.len(),
        ROUTERS.len(),
        "reports never add or drop routers"
    );
    let _ = f.home.topology();
    let _ = f.home.traffic();
    f.home.devices().expect("the device list still answers");
    f.home
        .devices_by_router()
        .expect("the map's devices still answer");
    f.home.status().expect("the status still answers");
});
