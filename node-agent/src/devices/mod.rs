//! The devices this router sees, for the controller's map: the DHCP leases it hands out, the
//! wifi clients of its access points, and the devices on its wired LAN ports ([`fdb`]).
//!
//! On a typical home only the primary router runs DHCP, so leases alone would put every
//! phone and laptop behind the primary. A satellite's access points know better: a client
//! associated with them is behind that satellite. The agent reports both; the controller
//! places each device where it is associated (or plugged in) and names it from the lease.

pub mod fdb;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use trellis_proto::api::{SeenDevice, WifiAssociation};

use crate::control::{Agent, Trust};
use crate::discovery::{self, Lease};
use trellis_wifi::nl80211::{self, ApClient, Nl80211, WifiEvent};

/// Most devices one router reports (the controller caps it too).
pub const MAX_SEEN_DEVICES: usize = 64;
/// How often leases and wifi clients are looked at again, besides station events: signal
/// levels drift and lease files change without an event we can subscribe to.
const REFRESH_EVERY: Duration = Duration::from_secs(15);
/// A burst of station events (a client roaming between two access points) is one refresh.
const SETTLE: Duration = Duration::from_millis(500);

/// What the router sees, one entry per MAC: a lease, an association, or both (a wifi
/// client of this router that also got its address here). Leases without a MAC (DHCPv6)
/// are left out. Wifi clients come first when the cap is reached: they are what only this
/// router can tell.
pub fn seen_devices(
    leases: &[Lease],
    clients: &[ApClient],
    wired: &[fdb::WiredDevice],
) -> Vec<SeenDevice> {
    let mut by_mac: BTreeMap<String, SeenDevice> = BTreeMap::new();
    for c in clients {
        let mac = c.mac.to_string();
        by_mac.entry(mac.clone()).or_insert(SeenDevice {
            mac,
            ip: None,
            hostname: None,
            wifi: Some(WifiAssociation {
                interface: c.interface.clone(),
                signal_dbm: c.signal_dbm.map(i32::from),
                inactive_ms: c.inactive_ms,
                network: None,
                band: None,
                dual_band: None,
            }),
            port: None,
        });
    }
    for w in wired {
        if by_mac.len() >= MAX_SEEN_DEVICES {
            break;
        }
        let mac = w.mac.to_string();
        by_mac.entry(mac.clone()).or_insert(SeenDevice {
            mac,
            ip: None,
            hostname: None,
            wifi: None,
            port: Some(w.port.clone()),
        });
    }
    for l in leases {
        let Some(mac) = l.mac else { continue };
        let mac = mac.to_string();
        if let Some(d) = by_mac.get_mut(&mac) {
            d.ip = Some(l.ip);
            d.hostname = l.hostname.clone();
        } else if by_mac.len() < MAX_SEEN_DEVICES {
            by_mac.insert(
                mac.clone(),
                SeenDevice {
                    mac,
                    ip: Some(l.ip),
                    hostname: l.hostname.clone(),
                    wifi: None,
                    port: None,
                },
            );
        }
    }
    let mut out: Vec<SeenDevice> = by_mac.into_values().collect();
    // Wifi clients and wired devices first, so the cap drops lease-only devices (the
    // primary still has those).
    out.sort_by_key(|d| d.wifi.is_none() && d.port.is_none());
    out.truncate(MAX_SEEN_DEVICES);
    out
}

/// The addresses of the home's other routers, by which the bridge's backhaul ports are
/// recognised: each router's announced tunnel address and the controller's.
fn router_addresses(agent: &Agent, trust: &Trust) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = trust
        .snapshot()
        .map(|s| {
            s.nodes
                .iter()
                .flat_map(|n| n.socket_addrs(0).map(|a| a.ip()))
                .collect()
        })
        .unwrap_or_default();
    let controller = &agent.node.controller;
    out.extend(
        controller
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| controller.parse::<IpAddr>())
            .ok(),
    );
    out.retain(|ip| !ip.is_loopback());
    out
}

/// Keep the agent's seen devices current until the task is dropped. `bridge`: the LAN
/// bridge whose wired ports are looked at (`br-lan`).
pub fn start(
    agent: Agent,
    trust: Trust,
    leases: PathBuf,
    bridge: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // No nl80211 (a host without wifi, a container): leases only, said once.
        let wifi = match Nl80211::connect() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::info!("no wifi clients on the map from this router: {e}");
                None
            }
        };
        let mut events = match nl80211::events() {
            Ok(s) => Some(Box::pin(s)),
            Err(e) => {
                tracing::debug!("no nl80211 station events, polling only: {e}");
                None
            }
        };
        let mut last: Option<Vec<SeenDevice>> = None;
        let mut said_wifi_error = false;
        let mut said_bridge_error = false;
        loop {
            let clients = match &wifi {
                Some(w) => match w.ap_clients().await {
                    Ok(c) => c,
                    Err(e) => {
                        // A host without wifi (a NAS running the agent) lands here too.
                        if !said_wifi_error {
                            tracing::info!("no wifi clients on the map from this router: {e}");
                            said_wifi_error = true;
                        }
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            let wired = match fdb::wired_devices(&bridge, &router_addresses(&agent, &trust)).await {
                Ok(w) => w,
                Err(e) => {
                    if !said_bridge_error {
                        tracing::info!("no wired devices on the map from this router: {e}");
                        said_bridge_error = true;
                    }
                    Vec::new()
                }
            };
            let leases = discovery::read_leases(&leases).unwrap_or_default();
            let now = seen_devices(&leases, &clients, &wired);
            if last.as_ref() != Some(&now) {
                agent.published.devices.publish(now.clone());
                last = Some(now);
            }
            match &mut events {
                Some(ev) => {
                    let station_change = async {
                        while let Some(e) = ev.next().await {
                            if matches!(e, WifiEvent::PeerNew { .. } | WifiEvent::PeerDel { .. }) {
                                return true;
                            }
                        }
                        false
                    };
                    tokio::select! {
                        more = station_change => {
                            if !more {
                                events = None;
                            }
                            tokio::time::sleep(SETTLE).await;
                        }
                        _ = tokio::time::sleep(REFRESH_EVERY) => {}
                    }
                }
                None => tokio::time::sleep(REFRESH_EVERY).await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::policy::MacAddr;

    fn lease(mac: &str, ip: &str, host: &str) -> Lease {
        Lease {
            expires: 0,
            mac: Some(mac.parse().unwrap()),
            ip: ip.parse().unwrap(),
            hostname: Some(host.into()),
            client_id: None,
        }
    }

    fn client(last: u8, signal: i8) -> ApClient {
        ApClient {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            interface: "phy1-ap0".into(),
            signal_dbm: Some(signal),
            inactive_ms: Some(40),
        }
    }

    #[test]
    fn a_wifi_client_with_a_lease_here_is_one_device_with_both() {
        let seen = seen_devices(
            &[
                lease("02:00:00:00:00:07", "192.168.1.50", "phone"),
                lease("aa:bb:cc:00:11:22", "192.168.1.23", "printer"),
            ],
            &[client(7, -51)],
            &[],
        );
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].mac, "02:00:00:00:00:07");
        assert_eq!(seen[0].hostname.as_deref(), Some("phone"));
        assert_eq!(seen[0].ip, Some("192.168.1.50".parse().unwrap()));
        let wifi = seen[0].wifi.as_ref().unwrap();
        assert_eq!(
            (wifi.interface.as_str(), wifi.signal_dbm),
            ("phy1-ap0", Some(-51))
        );
        assert_eq!(seen[1].hostname.as_deref(), Some("printer"));
        assert!(
            seen[1].wifi.is_none(),
            "a lease alone says nothing about wifi"
        );
    }

    #[test]
    fn a_satellite_without_dhcp_reports_its_clients_by_mac() {
        let seen = seen_devices(&[], &[client(9, -70)], &[]);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].ip, None);
        assert_eq!(seen[0].hostname, None);
    }

    #[test]
    fn the_cap_keeps_wifi_clients_over_leases() {
        let leases: Vec<Lease> = (0..100)
            .map(|i| lease(&format!("aa:bb:cc:00:00:{i:02x}"), "192.168.1.9", "x"))
            .collect();
        let seen = seen_devices(&leases, &[client(1, -60)], &[]);
        assert_eq!(seen.len(), MAX_SEEN_DEVICES);
        assert!(seen[0].wifi.is_some());
    }
}
