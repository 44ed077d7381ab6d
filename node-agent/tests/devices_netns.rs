//! Wired devices behind the right router, from a real Linux bridge's forwarding database.
//!
//! Two routers with a `br-lan` bridge each, joined by a cable (a veth that is a port of both
//! bridges: a wired backhaul). A laptop is plugged into the satellite's LAN port, a TV into
//! the primary's. Each router's agent code reads its own bridge and reports only the device
//! on its own LAN port: the port towards the other router is recognised as backhaul because
//! the other router is learned behind it, and the same cable is reported as a backhaul link
//! (`backhaul.rs`). Needs root (network namespaces).

use std::net::IpAddr;
use std::process::Command;

use trellis_agent::devices::fdb::{wired_devices, WiredDevice};

mod support;
use support::{in_ns, is_root, run, Namespaces};

fn mac_of(ns: &str, ifname: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-br", "link", "show", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned()
}

/// A bridge `br-lan` with `addr`, up.
fn bridge(ns: &str, addr: &str) {
    run(&["ip", "-n", ns, "link", "add", "br-lan", "type", "bridge"]);
    run(&["ip", "-n", ns, "addr", "add", addr, "dev", "br-lan"]);
    run(&["ip", "-n", ns, "link", "set", "br-lan", "up"]);
}

/// A cable (veth) from `a_ns`'s `a` to `b_ns`'s `b`, both ends up.
fn cable(a_ns: &str, a: &str, b_ns: &str, b: &str) {
    run(&[
        "ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
    ]);
    run(&["ip", "-n", a_ns, "link", "set", a, "up"]);
    run(&["ip", "-n", b_ns, "link", "set", b, "up"]);
}

fn port(ns: &str, ifname: &str) {
    run(&["ip", "-n", ns, "link", "set", ifname, "master", "br-lan"]);
}

/// One UDP datagram from `ns` to `to`: the ARP exchange before it teaches the bridges on
/// the way where both ends are, and leaves `to` in `ns`'s ARP table.
fn poke(ns: &str, to: &str) {
    let to: IpAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"hello", (to, 9)).unwrap();
    });
}

fn read(ns: &str, routers: Vec<IpAddr>) -> Vec<WiredDevice> {
    in_ns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(wired_devices("br-lan", &routers))
            .unwrap()
    })
}

/// `read` until `done` holds (the kernel learns within milliseconds; 5 s is a broken setup).
fn read_until(
    ns: &str,
    routers: &[IpAddr],
    done: impl Fn(&[WiredDevice]) -> bool,
) -> Vec<WiredDevice> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = read(ns, routers.to_vec());
        if done(&got) || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn shown(devices: &[WiredDevice]) -> Vec<(String, String)> {
    devices
        .iter()
        .map(|d| (d.mac.to_string(), d.port.clone()))
        .collect()
}

#[test]
fn each_router_reports_the_devices_on_its_own_lan_ports_only() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces (CI runs as root)");
        return;
    }
    let id = std::process::id();
    let (primary, sat, laptop, tv) = (
        format!("dp-{id}"),
        format!("ds-{id}"),
        format!("dl-{id}"),
        format!("dt-{id}"),
    );
    let _ns = Namespaces::new(&[&primary, &sat, &laptop, &tv]);
    bridge(&primary, "10.78.0.1/24");
    bridge(&sat, "10.78.0.2/24");
    // The wired backhaul: a port of both bridges.
    cable(&primary, "bh1", &sat, "bh0");
    port(&primary, "bh1");
    port(&sat, "bh0");
    // The laptop on the satellite's lan1, the TV on the primary's lan3.
    cable(&sat, "lan1", &laptop, "eth0");
    port(&sat, "lan1");
    run(&[
        "ip",
        "-n",
        &laptop,
        "addr",
        "add",
        "10.78.0.50/24",
        "dev",
        "eth0",
    ]);
    cable(&primary, "lan3", &tv, "eth0");
    port(&primary, "lan3");
    run(&[
        "ip",
        "-n",
        &tv,
        "addr",
        "add",
        "10.78.0.60/24",
        "dev",
        "eth0",
    ]);
    // Traffic teaches both bridges who is where; the routers talk to each other (ARP).
    poke(&laptop, "10.78.0.1");
    poke(&tv, "10.78.0.2");
    poke(&sat, "10.78.0.1");
    poke(&primary, "10.78.0.2");
    let laptop_mac = mac_of(&laptop, "eth0");
    let tv_mac = mac_of(&tv, "eth0");
    let has = |mac: &str, port: &str| {
        let want = (mac.to_owned(), port.to_owned());
        move |d: &[WiredDevice]| shown(d).contains(&want)
    };

    // Control first: told of no other router, the satellite takes its backhaul port for a
    // LAN port and claims the TV behind it too. The router addresses keep it honest below.
    let naive = read_until(&sat, &[], has(&tv_mac, "bh0"));
    assert!(
        shown(&naive).contains(&(tv_mac.clone(), "bh0".into())),
        "{naive:?}"
    );

    let primary_ip: IpAddr = "10.78.0.1".parse().unwrap();
    let at_sat = read_until(&sat, &[primary_ip], has(&laptop_mac, "lan1"));
    assert_eq!(
        shown(&at_sat),
        vec![(laptop_mac.clone(), "lan1".to_string())],
        "the satellite sees only the laptop, on lan1 (not the TV or the primary behind bh0)"
    );
    let sat_ip: IpAddr = "10.78.0.2".parse().unwrap();
    let at_primary = read_until(&primary, &[sat_ip], has(&tv_mac, "lan3"));
    assert_eq!(shown(&at_primary), vec![(tv_mac, "lan3".to_string())]);

    // The same cable is a backhaul link on the map: each router finds the other behind its
    // bridge port bh* (not behind br-lan, not on a LAN port), named by the far bridge's MAC,
    // which the far router counts among its own.
    let cables_at = |ns: &str, router: IpAddr| {
        in_ns(ns, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(trellis_agent::backhaul::read(&[router]))
                .unwrap()
        })
    };
    let (at_sat, sat_macs) = cables_at(&sat, primary_ip);
    let (at_primary, primary_macs) = cables_at(&primary, sat_ip);
    let primary_bridge = mac_of(&primary, "br-lan");
    let sat_bridge = mac_of(&sat, "br-lan");
    let seen = |c: &[trellis_agent::backhaul::Cable]| {
        c.iter()
            .map(|c| (c.peer.to_string(), c.port.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen(&at_sat),
        vec![(primary_bridge.clone(), "bh0".to_string())]
    );
    assert_eq!(
        seen(&at_primary),
        vec![(sat_bridge.clone(), "bh1".to_string())]
    );
    assert!(primary_macs.contains(&primary_bridge), "{primary_macs:?}");
    assert!(sat_macs.contains(&sat_bridge), "{sat_macs:?}");
}
