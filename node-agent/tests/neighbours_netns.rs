//! Who a LAN client is by MAC, from the real kernel's neighbour table
//! (`neighbour_table.rs`): an entry added, another device taking the address, an entry
//! deleted, and a real client's first packets are all seen at the very next lookup, through
//! the kernel's neighbour events (no re-read of the table, no waiting). Needs root.

use std::net::Ipv4Addr;

use trellis_agent::neighbour_table::NeighbourTable;
use trellis_proto::policy::MacAddr;

mod support;
use support::{in_ns, run, veth, Namespaces};

fn mac(s: &str) -> Option<MacAddr> {
    Some(s.parse().expect("a MAC"))
}

fn link_mac(ns: &str, ifname: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-br", "link", "show", ifname])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_table_follows_the_kernel_at_every_lookup() {
    require_root!();
    let _ns = Namespaces::new(&["tn-router", "tn-lan"]);
    veth(
        "tn-router",
        "lan0",
        "10.77.0.1/24",
        "tn-lan",
        "dev0",
        "10.77.0.2/24",
    );
    let device_mac = link_mac("tn-lan", "dev0");
    in_ns("tn-router", move || {
        let table = NeighbourTable::follow();
        let ip = Ipv4Addr::new(10, 77, 0, 9);
        assert_eq!(table.mac_of(ip), None, "nothing is known of 10.77.0.9 yet");
        let neigh = |args: &[&str]| {
            let mut cmd = vec!["ip", "-n", "tn-router", "neigh"];
            cmd.extend_from_slice(args);
            run(&cmd);
        };
        neigh(&[
            "add",
            "10.77.0.9",
            "lladdr",
            "02:00:00:00:77:09",
            "dev",
            "lan0",
            "nud",
            "stale",
        ]);
        assert_eq!(table.mac_of(ip), mac("02:00:00:00:77:09"));
        // Another device took the address: known by its own MAC at once.
        neigh(&[
            "replace",
            "10.77.0.9",
            "lladdr",
            "02:00:00:00:77:0a",
            "dev",
            "lan0",
            "nud",
            "reachable",
        ]);
        assert_eq!(table.mac_of(ip), mac("02:00:00:00:77:0a"));
        neigh(&["del", "10.77.0.9", "dev", "lan0"]);
        assert_eq!(table.mac_of(ip), None, "a deleted entry is forgotten");
        // A real device's first connection, as the proxy sees one: by the time the
        // router accepts it, its kernel has resolved the device (ARP), and the table knows.
        let listener = std::net::TcpListener::bind("10.77.0.1:0").expect("listen");
        let port = listener.local_addr().expect("bound").port();
        let client = std::thread::spawn(move || {
            support::enter("tn-lan");
            std::net::TcpStream::connect(("10.77.0.1", port)).expect("connect")
        });
        let (_conn, from) = listener.accept().expect("accept");
        let std::net::IpAddr::V4(from) = from.ip() else {
            panic!("an IPv4 client")
        };
        assert_eq!(from, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(
            table.mac_of(from).map(|m| m.to_string()),
            Some(device_mac.clone()),
            "the connecting device is known by its MAC"
        );
        drop(client.join());
    });
}
