//! mDNS / DNS-SD discovery across a real link: a device namespace announces `_http._tcp`,
//! the router namespace's [`MdnsBrowser`] sees it with its address and port — announced by
//! the `mdns-sd` crate, and announced by a real avahi-daemon while another avahi-daemon holds
//! UDP 5353 in the router namespace (the coexistence OpenWrt needs with umdns/avahi).
//! Needs root (network namespaces); prints why it is skipped otherwise.

use std::time::Duration;

use trellis_agent::discovery::{DiscoveryEvent, MdnsBrowser};

mod support;
use support::{enter, is_root, veth, Avahi, Namespaces};

#[test]
fn router_discovers_a_service_announced_on_its_segment() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces (CI runs as root)");
        return;
    }
    let id = std::process::id();
    let (dev, rtr) = (format!("md-{id}"), format!("mr-{id}"));
    let _ns = Namespaces::new(&[&dev, &rtr]);
    veth(&dev, "d0", "10.3.0.2/24", &rtr, "r0", "10.3.0.1/24");

    // The device: announces "Family NAS" over mDNS (its own daemon thread lives in `dev`).
    let (tx, rx) = std::sync::mpsc::channel();
    let dev2 = dev.clone();
    let announcer = std::thread::spawn(move || {
        enter(&dev2);
        let d = mdns_sd::ServiceDaemon::new().unwrap();
        let info = mdns_sd::ServiceInfo::new(
            "_http._tcp.local.",
            "Family NAS",
            "nas-box.local.",
            "10.3.0.2",
            8080,
            None,
        )
        .unwrap();
        d.register(info).unwrap();
        // Keep announcing until the router has seen it.
        let _ = rx.recv_timeout(Duration::from_secs(60));
        let _ = d.shutdown();
    });

    let rtr2 = rtr.clone();
    let seen = std::thread::spawn(move || {
        enter(&rtr2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (_browser, mut events) = MdnsBrowser::start(&["_http._tcp.local."]).unwrap();
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    if let Some(DiscoveryEvent::Up(d)) = events.recv().await {
                        return d;
                    }
                }
            })
            .await
            .expect("no mDNS announcement seen within 30 s")
        })
    })
    .join()
    .unwrap();
    let _ = tx.send(());
    announcer.join().unwrap();

    assert_eq!(seen.name, "family-nas");
    assert_eq!(seen.service_type, "_http._tcp.local.");
    assert_eq!(seen.port, 8080);
    assert!(
        seen.addrs.contains(&"10.3.0.2".parse().unwrap()),
        "{seen:?}"
    );
    assert_eq!(seen.host, "nas-box.local.");
}

#[test]
fn browser_sees_an_avahi_announcement_while_avahi_also_runs_on_the_router() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces (CI runs as root)");
        return;
    }
    let id = std::process::id();
    let (dev, rtr) = (format!("ad-{id}"), format!("ar-{id}"));
    let _ns = Namespaces::new(&[&dev, &rtr]);
    veth(&dev, "d0", "10.3.0.2/24", &rtr, "r0", "10.3.0.1/24");

    // The router's own mDNS daemon (umdns/avahi on OpenWrt) holds 5353 first.
    let mut router_avahi = Avahi::start(&rtr, "r0", None);
    // The device: a NAS announcing its web page through avahi, like a real one.
    let mut device_avahi = Avahi::start(&dev, "d0", Some(("Family NAS", 8080)));

    let rtr2 = rtr.clone();
    let seen = std::thread::spawn(move || {
        enter(&rtr2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (_browser, mut events) = MdnsBrowser::start(&["_http._tcp.local."]).unwrap();
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match events.recv().await {
                        Some(DiscoveryEvent::Up(d)) if d.name == "family-nas" => return d,
                        Some(_) => continue,
                        None => panic!("browser stopped"),
                    }
                }
            })
            .await
            .expect("avahi's announcement not seen within 30 s")
        })
    })
    .join()
    .unwrap();
    assert_eq!(seen.port, 8080);
    assert!(
        seen.addrs.contains(&"10.3.0.2".parse().unwrap()),
        "{seen:?}"
    );
    // Both daemons still up: the browser shared 5353 with the router's, it did not win it.
    for (who, a) in [("router", &mut router_avahi), ("device", &mut device_avahi)] {
        assert!(
            matches!(a.child.try_wait(), Ok(None)),
            "the {who}'s avahi-daemon exited"
        );
    }
}
