//! The node proxy on the real kernel: two routers, a laptop and a web server, each in its own
//! network namespace, joined by veth pairs.
//!
//! ```text
//!  laptop (tc-*)        router A (ra-*)                 router B (rb-*)        server (ts-*)
//!  10.1.0.2  c0 ─── a0 10.1.0.1   a1 10.9.0.1 ─── b1 10.9.0.2   b0 10.2.0.1 ─── s0 10.2.0.2:8080
//!                      nft redirect 198.18/16        inbound :15008
//!                      → outbound :15001
//! ```
//!
//! IP forwarding stays off in the routers, so the only way from the laptop to the server is
//! through the two proxies. Needs root (namespaces, nftables, raw sockets); without root each
//! test prints why it is skipped. CI runs as root, so there they really run.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use trellis_agent::metrics::Outcome;
use trellis_agent::proxy::testca::TestCa;
use trellis_proto::catalog::Instance;
use trellis_proto::policy::{Action, Policy, Rule, ServiceMatch, SourceMatch};
use trellis_proto::snapshot::PeerNode;

#[test]
fn laptop_reaches_the_service_through_an_encrypted_tunnel() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    let mut log_b = f.b.metrics.subscribe_access_log();
    let mesh = Capture::start(&f.home.ra, "a1");
    let last_hop = Capture::start(&f.home.rb, "b0");

    let vip = laptop_resolve(&f.home.laptop, "web.trellis.home.arpa").expect("mesh name resolves");
    assert_eq!(vip, f.vip);
    assert_eq!(
        laptop_resolve(&f.home.laptop, "nothing.trellis.home.arpa"),
        None
    );
    let page = laptop_get(&f.home.laptop, vip).expect("laptop gets the page");
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(page.contains(PAGE_SECRET), "{page}");

    let rec_a = next_record(&mut log_a);
    let rec_b = next_record(&mut log_b);
    let mesh = mesh.finish();
    let last_hop = last_hop.finish();

    // Between the routers: TLS application data only, never the page or the request.
    assert!(
        mesh.len() > 500,
        "capture on the mesh link saw {} bytes",
        mesh.len()
    );
    assert!(
        contains(&mesh, &[0x17, 0x03, 0x03]),
        "no TLS application-data record on the mesh link"
    );
    assert!(
        !contains(&mesh, PAGE_SECRET.as_bytes()),
        "page content crossed the mesh in clear"
    );
    assert!(
        !contains(&mesh, b"GET / HTTP"),
        "request crossed the mesh in clear"
    );
    // The same capture method does see plaintext where plaintext is expected: the last hop.
    assert!(
        contains(&last_hop, PAGE_SECRET.as_bytes()),
        "control: last-hop capture should see the page"
    );

    assert_eq!(rec_a.outcome, Outcome::Ok, "{rec_a}");
    assert_eq!(rec_a.direction, "outbound");
    assert_eq!(
        rec_a.src_identity,
        format!("device:{LAPTOP_MAC}"),
        "{rec_a}"
    );
    assert_eq!(rec_a.rule, "default:trusted");
    assert_eq!(rec_a.peer_node, "rb");
    assert!(rec_a.bytes_received > PAGE_SECRET.len() as u64, "{rec_a}");
    assert_eq!(rec_b.outcome, Outcome::Ok, "{rec_b}");
    assert_eq!(rec_b.peer_node, f.id_a.to_string());
    assert_eq!(rec_b.src_identity, format!("device:{LAPTOP_MAC}"));

    let text = f.b.metrics.render();
    assert!(
        text.contains(&format!(
            "trellis_tcp_connections_opened_total{{direction=\"inbound\",source_identity=\"device:{LAPTOP_MAC}\",destination_identity=\"spiffe://home1/svc/web\",destination_service=\"web\"}} 1"
        )),
        "{text}"
    );
    // Our table exists and only ours: fw4 is never touched.
    let out = Command::new("ip")
        .args(["netns", "exec", &f.home.ra, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "table inet trellis"
    );
}

#[test]
fn deny_rules_and_revocations_are_enforced_and_named() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    let mut log_b = f.b.metrics.subscribe_access_log();

    // 1. A deny rule on both nodes: refused at the source, and the decision names the rule.
    let deny = Rule {
        name: "no-laptop-to-web".into(),
        action: Action::Deny,
        sources: vec![SourceMatch::Device(LAPTOP_MAC.parse().unwrap())],
        to: vec![ServiceMatch {
            service: Some("web".into()),
            ports: vec![],
        }],
        dry_run: false,
    };
    f.a.update(|s| s.policy.rules.push(deny.clone()));
    f.b.update(|s| s.policy.rules.push(deny.clone()));
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "denied laptop got the page: {got:?}"
    );
    // What the person at the laptop reads: the router's refusal page, naming the rule.
    let page = got.expect("the source router answers the refused request");
    assert!(
        page.starts_with("HTTP/1.1 403") && page.contains("Rule: no-laptop-to-web"),
        "{page}"
    );
    let rec = next_record(&mut log_a);
    assert_eq!(
        (rec.outcome.clone(), rec.rule.as_str()),
        (Outcome::Denied, "no-laptop-to-web"),
        "{rec}"
    );
    assert!(f.a.metrics.render().contains("trellis_policy_denials_total{rule=\"no-laptop-to-web\",destination_service=\"web\",enforced_at=\"source\"} 1"));
    // What `trellis why laptop web:80` prints on either node.
    let state = f.a.state.borrow().clone();
    let src = state
        .policy
        .resolve_source("laptop", &state.devices)
        .unwrap();
    let why = state.policy.evaluate(&src, "web", Some(80)).explain();
    assert!(why.starts_with("DENIED: device \"laptop\""), "{why}");
    assert!(why.contains("rule \"no-laptop-to-web\" denies it"), "{why}");

    // 2. The source node's policy is stale (allows): the destination still refuses, by name.
    f.a.update(|s| s.policy.rules.clear());
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "destination did not enforce: {got:?}"
    );
    let page = got.expect("the refusal page, with the destination's rule");
    assert!(
        page.starts_with("HTTP/1.1 403") && page.contains("Rule: no-laptop-to-web"),
        "{page}"
    );
    let rec = next_record(&mut log_b);
    assert_eq!(
        (rec.outcome.clone(), rec.rule.as_str()),
        (Outcome::Denied, "no-laptop-to-web"),
        "{rec}"
    );
    let rec = next_record(&mut log_a);
    assert_eq!(rec.outcome, Outcome::Denied, "{rec}");
    assert!(f.a.metrics.render().contains("trellis_policy_denials_total{rule=\"no-laptop-to-web\",destination_service=\"web\",enforced_at=\"destination\"} 1"));

    // 3. Rule removed: the page flows again (proves 1 and 2 failed for the policy's reason).
    f.b.update(|s| s.policy.rules.clear());
    let page = laptop_get(&f.home.laptop, f.vip).expect("allowed again");
    assert!(page.contains(PAGE_SECRET), "{page}");
    let _ = next_record(&mut log_a);
    let _ = next_record(&mut log_b);

    // 4. Router A's identity revoked at B: B refuses the tunnel in the TLS handshake.
    let id_a = f.id_a.clone();
    f.b.update(|s| {
        let mut b = (*s.bundle).clone();
        b.peers.revoked.insert(id_a.clone());
        s.bundle = Arc::new(b);
    });
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "revoked node got through: {got:?}"
    );
    let rec = next_record(&mut log_a);
    assert!(matches!(rec.outcome, Outcome::Error(_)), "{rec}");

    // 5. A node with a certificate from another CA (same home ID) claims to be router B: A
    //    refuses it. Point A at a rogue inbound by giving B a foreign identity.
    f.b.update(|s| {
        s.bundle = f.ca.bundle_arc();
        let rogue = TestCa::new("home1").unwrap();
        s.identity = rogue.issue_node("rb").unwrap();
    });
    // A new snapshot at A too (resets its breaker, which step 4 may have opened).
    f.a.update(|_| {});
    let got = laptop_get(&f.home.laptop, f.vip);
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "rogue node accepted: {got:?}"
    );
    let rec = next_record(&mut log_a);
    match &rec.outcome {
        Outcome::Error(e) => assert!(e.contains("not issued by this home's CA"), "{rec}"),
        other => panic!("expected an error, got {other}"),
    }
}

#[test]
fn a_dead_node_is_skipped_for_the_next_instance_and_then_not_hammered() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    // A second instance of `web` behind router C, which is "closer" (1 hop vs 2) but gone:
    // its address does not answer ARP, so every dial costs the full connect timeout.
    let ident_c = f.ca.issue_node("rc").unwrap();
    f.a.update(|s| {
        s.nodes.push(PeerNode {
            name: node("rc"),
            identity: ident_c.id.clone(),
            addresses: vec!["10.9.0.77".into()],
        });
        s.catalog.services[0].instances.insert(
            0,
            Instance {
                node: node("rc"),
                addr: "10.4.0.2".parse().unwrap(),
                reachable: true,
            },
        );
        s.hops = [(node("rc"), 1), (node("rb"), 2)].into_iter().collect();
    });
    let timed = || {
        let t0 = std::time::Instant::now();
        let page = laptop_get(&f.home.laptop, f.vip);
        (page, t0.elapsed())
    };
    // First connection: C is tried first, fails, B serves it.
    let (page, took) = timed();
    assert!(page
        .expect("served by the next instance")
        .contains(PAGE_SECRET));
    assert!(
        took >= Duration::from_millis(900),
        "C should have cost a connect timeout, took {took:?}"
    );
    let rec = next_record(&mut log_a);
    assert_eq!(
        (rec.outcome.clone(), rec.peer_node.as_str()),
        (Outcome::Ok, "rb"),
        "{rec}"
    );
    // The breaker opens after a few failures (the pool's background dials count too); from
    // then on C is skipped and a connection costs milliseconds again.
    let mut fast = None;
    for i in 0..4 {
        let (page, took) = timed();
        assert!(page.expect("still served").contains(PAGE_SECRET));
        let _ = next_record(&mut log_a);
        if took < Duration::from_millis(500) {
            fast = Some(i);
            break;
        }
    }
    assert!(
        fast.is_some(),
        "breaker never opened: every connection still waited for node C"
    );
    assert!(
        f.a.metrics
            .render()
            .contains("trellis_tcp_connect_latency_seconds_count"),
        "latency recorded"
    );
}

#[test]
fn a_router_that_vanishes_silently_costs_bounded_time_and_recovers() {
    require_root!();
    let f = fixture(Policy::default());
    let mut log_a = f.a.metrics.subscribe_access_log();
    // A pooled tunnel A → B exists after the first page.
    let first = laptop_get(&f.home.laptop, f.vip);
    let rec = next_record(&mut log_a);
    assert!(
        first.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "{first:?} {rec}"
    );
    // B's mesh link goes dark without a FIN or RST: the pooled connection looks alive.
    run(&["ip", "-n", &f.home.rb, "link", "set", "b1", "down"]);
    let t0 = std::time::Instant::now();
    let got = laptop_get(&f.home.laptop, f.vip);
    let took = t0.elapsed();
    assert!(
        !got.as_deref().unwrap_or("").contains(PAGE_SECRET),
        "{got:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the laptop waited {took:?} for a vanished router"
    );
    let rec = next_record(&mut log_a);
    assert!(matches!(rec.outcome, Outcome::Error(_)), "{rec}");
    // B comes back: the next connection dials afresh and gets the page.
    run(&["ip", "-n", &f.home.rb, "link", "set", "b1", "up"]);
    // The kernel reports carrier asynchronously (linkwatch, up to a second later); until
    // both ends say LOWER_UP and A's route is no longer `linkdown`, packets are dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let up = |ns: &str, args: &[&str], want: &str, not: &str| {
        let out = Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(want) && !text.contains(not)
    };
    while !(up(
        &f.home.rb,
        &["-o", "link", "show", "b1"],
        "LOWER_UP",
        "NO-CARRIER",
    ) && up(
        &f.home.ra,
        &["-o", "link", "show", "a1"],
        "LOWER_UP",
        "NO-CARRIER",
    ) && up(
        &f.home.ra,
        &["route", "show", "10.9.0.0/24"],
        "10.9.0.0/24",
        "linkdown",
    )) {
        assert!(
            std::time::Instant::now() < deadline,
            "the link did not come back up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The vanish may have opened A's breaker for B (3 failed dials: 1 s, then doubling), so
    // a connection in that second is refused at once; the first one after it is the probe
    // and gets the page. Bounded well above the backoff a single outage can reach.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut tries = Vec::new();
    loop {
        let got = laptop_get(&f.home.laptop, f.vip);
        if got.as_deref().is_ok_and(|p| p.contains(PAGE_SECRET)) {
            break;
        }
        tries.push(format!("{got:?}"));
        assert!(
            std::time::Instant::now() < deadline,
            "no page within 15 s of the router being back: {tries:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
