//! `trellis check`: diagnose the common failures of a home and say how to fix each.
//!
//! Each check returns findings a person can act on; the CLI prints them and sets the exit
//! code (0 all fine, 4 warnings, 5 failures, 3 controller unreachable).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Serialize;
use trellis_proto::api::{CertHealth, LinkMedium, NodeInfo, TopologyLink};
use trellis_proto::home_wifi::{WifiDrift, WifiHealth};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    /// How to fix it (empty when fine).
    pub fix: String,
}

fn finding(level: Level, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level,
        what: what.into(),
        fix: fix.into(),
    }
}

/// Clock skew agents tolerate: certificates are backdated 5 minutes.
const SKEW_WARN_S: i64 = 60;
const SKEW_FAIL_S: i64 = trellis_proto::tls::CERT_BACKDATE_S as i64;
/// 2025-01-01: a router clock before this was never set (no NTP yet).
const EARLIEST_SANE_CLOCK: u64 = 1_735_689_600;

/// Node certificates, as the controller judged them ([`crate::health::certificate`]): expired
/// ones cannot renew; late ones may be stuck.
/// The home's wifi on every router ([`NodeInfo::wifi`], judged by
/// [`crate::health::wifi`]): the routers that differ, each difference with its fix; one line
/// when all agree. Nothing when the home has no wifi networks set.
pub fn home_wifi(nodes: &[NodeInfo]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut agree = Vec::new();
    for n in nodes.iter().filter(|n| !n.revoked) {
        match &n.wifi {
            Some(WifiHealth::Consistent { .. }) => agree.push(n.name.to_string()),
            Some(WifiHealth::NoRadios) => out.push(finding(
                Level::Ok,
                format!("router {} has no radio: it broadcasts no wifi, the other routers carry the home's networks", n.name),
                "",
            )),
            Some(w) => out.extend(wifi_findings(n.name.as_str(), w)),
            None => {}
        }
    }
    if !agree.is_empty() {
        let who = if out.is_empty() {
            format!("every router ({})", agree.join(", "))
        } else {
            format!("routers {}", agree.join(", "))
        };
        out.insert(
            0,
            finding(
                Level::Ok,
                format!("{who} serve the home's wifi networks with the same names, passphrases, mobility domain and roaming keys"),
                "",
            ),
        );
    }
    out
}

/// What is wrong with one router's wifi, in words, with the fix: `trellis check` and the
/// page's warnings both say it this way.
pub fn wifi_findings(router: &str, w: &WifiHealth) -> Vec<Finding> {
    let ack = format!("`trellis nodes` shows the config version {router} last applied and any error; `logread -e trellis` on {router} says why");
    match w {
        WifiHealth::Consistent { .. } | WifiHealth::NoRadios => Vec::new(),
        WifiHealth::NoAccessPoints => vec![finding(
            Level::Warn,
            format!("router {router} broadcasts none of the home's wifi networks"),
            format!("a router without radios can ignore this; otherwise its agent runs no access point: {ack}"),
        )],
        WifiHealth::Differs { drifts } => drifts
            .iter()
            .map(|d| match d {
                WifiDrift::Missing { network, band } => finding(
                    Level::Warn,
                    format!("router {router} does not broadcast the {network} network on {band}"),
                    format!("its {band} radio may have no room for another network, or the settings were not applied: {ack}"),
                ),
                WifiDrift::OtherSsid { network, ssid } => finding(
                    Level::Fail,
                    format!("router {router} broadcasts {ssid:?} for the {network} network, not the home's name: devices do not roam to it"),
                    format!("its wireless settings were changed by hand or the home's were not applied: set the network again (`trellis wifi set {network} ...`); {ack}"),
                ),
                WifiDrift::OtherSettings { network } => finding(
                    Level::Fail,
                    format!("router {router} serves the {network} network with other settings than the home's (passphrase, security, bands or roaming keys): devices that roam to it must join again"),
                    format!("it has not applied the home's latest settings: {ack}"),
                ),
                WifiDrift::Removed { network } => finding(
                    Level::Warn,
                    format!("router {router} still broadcasts the {network} network, which the home no longer has"),
                    format!("it has not applied the home's latest settings: {ack}"),
                ),
            })
            .collect(),
    }
}

pub fn certificates(nodes: &[NodeInfo]) -> Vec<Finding> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| !n.revoked) {
        match n.cert_health {
            Some(CertHealth::Expired { expired_s_ago }) => out.push(finding(
                Level::Fail,
                format!("router {}: its certificate expired {} min ago", n.name, expired_s_ago / 60),
                format!("it was off or cut off longer than a certificate lives; re-pair it: trellis pair, then on {0}: trellis-agent join --force <this router> <code>", n.name),
            )),
            Some(CertHealth::RenewalLate { expires_in_s }) => out.push(finding(
                Level::Warn,
                format!("router {}: its certificate expires in {} min and was not renewed", n.name, expires_in_s / 60),
                format!("check that {} reaches this router (logread -e trellis on it)", n.name),
            )),
            Some(CertHealth::Valid { .. }) => out.push(finding(Level::Ok, format!("router {}: certificate valid", n.name), "")),
            None => {}
        }
    }
    out
}

/// This router's clock, and each agent's clock against it.
pub fn clocks(nodes: &[NodeInfo], now: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    if now < EARLIEST_SANE_CLOCK {
        out.push(finding(
            Level::Fail,
            "this router's clock is not set",
            "certificates cannot be checked without the time: enable NTP (System → System → Time synchronization)",
        ));
    }
    for n in nodes.iter().filter(|n| !n.revoked) {
        let Some(skew) = n.clock_skew_s else { continue };
        let level = match skew.abs() {
            s if s >= SKEW_FAIL_S => Level::Fail,
            s if s >= SKEW_WARN_S => Level::Warn,
            _ => Level::Ok,
        };
        let what = format!(
            "router {}: clock {} s {} this router's",
            n.name,
            skew.abs(),
            if skew >= 0 { "ahead of" } else { "behind" }
        );
        let fix = if level == Level::Ok {
            ""
        } else {
            "enable NTP on both routers; past 5 minutes certificates look not yet valid or expired"
        };
        out.push(finding(level, what, fix));
    }
    out
}

/// wpa_supplicant built without mesh support cannot form an SAE mesh (OpenWrt's default
/// `wpad-basic-*` is one). A mesh-capable build knows the `mesh_fwding` option.
pub fn wpa_supplicant(path: &Path) -> Finding {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(16 * 1024 * 1024).read_to_end(&mut bytes));
    match read {
        Err(e) => finding(
            Level::Warn,
            format!("no wpa_supplicant at {} ({e})", path.display()),
            "install a wpad with mesh support: opkg install wpad-mesh-mbedtls (or apk add wpad-mesh-mbedtls)",
        ),
        Ok(_) if bytes.windows(b"mesh_fwding".len()).any(|w| w == b"mesh_fwding") => {
            finding(Level::Ok, "wpa_supplicant supports 802.11s mesh", "")
        }
        Ok(_) => finding(
            Level::Fail,
            format!("{} has no 802.11s mesh support", path.display()),
            "replace it: opkg remove wpad-basic-mbedtls && opkg install wpad-mesh-mbedtls (over a cable: wifi restarts)",
        ),
    }
}

/// Every router should have a backhaul link (802.11s or a cable) to another router of the
/// home; one with none is on another channel or mesh ID, or out of range.
pub fn mesh_links(nodes: &[NodeInfo], links: &[TopologyLink]) -> Vec<Finding> {
    let members: Vec<&NodeInfo> = nodes.iter().filter(|n| !n.revoked).collect();
    if members.len() < 2 {
        return Vec::new();
    }
    if links.is_empty() {
        return vec![finding(
            Level::Warn,
            "no router has reported mesh links yet",
            "start the mesh on each router (trellis-agent mesh, or the trellis-agent service with a radio set in /etc/config/trellis)",
        )];
    }
    members
        .iter()
        .map(|n| {
            let with: Vec<&TopologyLink> = links
                .iter()
                .filter(|l| {
                    (l.from == n.name && members.iter().any(|m| m.name.as_str() == l.to))
                        || (l.to == n.name.as_str() && members.iter().any(|m| m.name == l.from))
                })
                .collect();
            if with.is_empty() {
                finding(
                    Level::Warn,
                    format!("router {}: no mesh link to another router", n.name),
                    "check it uses the same channel and mesh ID as the others (trellis topology; logread -e trellis on it), and that it is in range",
                )
            } else if with.iter().all(|l| l.medium == LinkMedium::Cable) {
                finding(Level::Ok, format!("router {}: linked by cable", n.name), "")
            } else {
                finding(Level::Ok, format!("router {}: meshed", n.name), "")
            }
        })
        .collect()
}

/// Whether this home needs wifi mesh support at all: not when every router is linked, and
/// only by cable (a wired home, or the demo). Then the local wpa_supplicant is not checked.
pub fn wifi_mesh_needed(nodes: &[NodeInfo], links: &[TopologyLink]) -> bool {
    let all_cabled = !links.is_empty()
        && links.iter().all(|l| l.medium == LinkMedium::Cable)
        && mesh_links(nodes, links)
            .iter()
            .all(|f| f.level == Level::Ok);
    !all_cabled
}

/// mDNS discovery shares UDP 5353 with umdns/avahi; a program holding it exclusively
/// blocks discovery.
pub fn mdns_port() -> Finding {
    use socket2::{Domain, Protocol, Socket, Type};
    let bound = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5353)).into())
    });
    match bound {
        Ok(()) => finding(Level::Ok, "UDP 5353 can be shared for mDNS discovery", ""),
        Err(e) => finding(
            Level::Warn,
            format!("UDP 5353 is held exclusively by another program ({e})"),
            "mDNS discovery cannot run: find it with netstat -lunp | grep 5353 and use umdns or avahi, which share the port",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::{HomeId, NodeName, SpiffeId};

    const NOW: u64 = 2_000_000_000;

    fn node(name: &str, cert: Option<u64>, skew: Option<i64>) -> NodeInfo {
        let home = HomeId::new("h").unwrap();
        let name = NodeName::new(name).unwrap();
        NodeInfo {
            wifi: None,
            identity: SpiffeId::node(&home, &name),
            name,
            enrolled_at: 0,
            cert_not_after: cert,
            cert_health: cert.map(|t| {
                crate::health::certificate(t, NOW, std::time::Duration::from_secs(86_400))
            }),
            revoked: false,
            acked_version: 0,
            last_seen_s: None,
            clock_skew_s: skew,
            label: None,
            portal: false,
            hops: None,
        }
    }

    #[test]
    fn expired_and_expiring_certificates_are_named_with_the_fix() {
        let now = NOW;
        let f = certificates(&[
            node("attic", Some(now - 600), None),
            // 5 h of a 24 h certificate: late by the one rule (under a quarter left).
            node("garage", Some(now + 5 * 3600), None),
            node("den", Some(now + 86_400), None),
        ]);
        assert_eq!(f[0].level, Level::Fail);
        assert!(
            f[0].what.contains("attic") && f[0].fix.contains("re-pair"),
            "{f:?}"
        );
        assert_eq!(f[1].level, Level::Warn);
        assert_eq!(f[2].level, Level::Ok);
    }

    #[test]
    fn a_router_without_radios_is_said_and_not_warned_about() {
        let mut cellar = node("cellar", None, None);
        cellar.wifi = Some(WifiHealth::NoRadios);
        let mut attic = node("attic", None, None);
        attic.wifi = Some(WifiHealth::Consistent { networks: vec![] });
        let mut den = node("den", None, None);
        den.wifi = Some(WifiHealth::NoAccessPoints);
        let f = home_wifi(&[cellar.clone(), attic, den]);
        let cellar_said = f.iter().find(|f| f.what.contains("cellar")).expect("named");
        assert_eq!(cellar_said.level, Level::Ok, "{f:?}");
        assert!(cellar_said.what.contains("no radio"), "{f:?}");
        // The router that could broadcast and does not is still a warning.
        assert!(
            f.iter()
                .any(|f| f.level == Level::Warn && f.what.contains("den")),
            "{f:?}"
        );
        // The page's warnings come from the same words: none for the router without radios.
        assert!(wifi_findings("cellar", &WifiHealth::NoRadios).is_empty());
    }

    #[test]
    fn clock_skew_past_five_minutes_fails_and_an_unset_clock_is_caught() {
        let now = 2_000_000_000;
        let f = clocks(
            &[
                node("a", None, Some(5)),
                node("b", None, Some(-120)),
                node("c", None, Some(400)),
            ],
            now,
        );
        let levels: Vec<Level> = f.iter().map(|f| f.level).collect();
        assert_eq!(levels, vec![Level::Ok, Level::Warn, Level::Fail]);
        assert!(f[1].what.contains("120 s behind"), "{f:?}");
        let f = clocks(&[], 1_000);
        assert!(f[0].level == Level::Fail && f[0].fix.contains("NTP"));
    }

    #[test]
    fn wpa_supplicant_without_mesh_support_is_told_which_package_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with");
        std::fs::write(&with, b"\x7fELF...mesh_fwding...sae_password").unwrap();
        let without = dir.path().join("without");
        std::fs::write(&without, b"\x7fELF...wpa_passphrase...").unwrap();
        assert_eq!(wpa_supplicant(&with).level, Level::Ok);
        let f = wpa_supplicant(&without);
        assert_eq!(f.level, Level::Fail);
        assert!(f.fix.contains("wpad-mesh-mbedtls"), "{f:?}");
        assert_eq!(
            wpa_supplicant(&dir.path().join("missing")).level,
            Level::Warn
        );
    }

    #[test]
    fn a_router_without_a_mesh_link_points_at_channel_and_mesh_id() {
        let nodes = [
            node("a", None, None),
            node("b", None, None),
            node("c", None, None),
        ];
        let link = |from: &str, to: &str| TopologyLink {
            from: NodeName::new(from).unwrap(),
            to: to.into(),
            medium: LinkMedium::Wifi,
            signal_dbm: None,
            expected_throughput_kbps: None,
            airtime_metric: None,
            verdict: trellis_proto::api::LinkVerdict::Good,
            advice: vec![],
            measured: None,
        };
        let f = mesh_links(
            &nodes,
            &[
                link("a", "b"),
                link("b", "a"),
                link("c", "02:99:99:99:99:99"),
            ],
        );
        assert_eq!(
            f.iter().map(|f| f.level).collect::<Vec<_>>(),
            vec![Level::Ok, Level::Ok, Level::Warn]
        );
        assert!(f[2].fix.contains("channel and mesh ID"), "{f:?}");
        assert_eq!(mesh_links(&nodes, &[])[0].level, Level::Warn);
    }

    #[test]
    fn a_home_linked_only_by_cable_needs_no_wifi_mesh() {
        let nodes = [node("a", None, None), node("b", None, None)];
        let link = |from: &str, to: &str, medium| TopologyLink {
            from: NodeName::new(from).unwrap(),
            to: to.into(),
            medium,
            signal_dbm: None,
            expected_throughput_kbps: None,
            airtime_metric: None,
            verdict: trellis_proto::api::LinkVerdict::Good,
            advice: vec![],
            measured: None,
        };
        let cabled = [
            link("a", "b", LinkMedium::Cable),
            link("b", "a", LinkMedium::Cable),
        ];
        let f = mesh_links(&nodes, &cabled);
        assert!(
            f.iter().all(|f| f.what.ends_with("linked by cable")),
            "{f:?}"
        );
        assert!(!wifi_mesh_needed(&nodes, &cabled));
        // One wifi link, no links at all, or a router left out: the mesh is (still) needed.
        let mixed = [
            link("a", "b", LinkMedium::Wifi),
            link("b", "a", LinkMedium::Cable),
        ];
        assert!(wifi_mesh_needed(&nodes, &mixed));
        assert!(wifi_mesh_needed(&nodes, &[]));
        let three = [
            node("a", None, None),
            node("b", None, None),
            node("c", None, None),
        ];
        assert!(wifi_mesh_needed(&three, &cabled));
    }

    #[test]
    fn the_mdns_port_is_shareable_alongside_another_sharing_listener() {
        use socket2::{Domain, Protocol, Socket, Type};
        // Another well-behaved mDNS daemon (reuse on) does not count as a conflict.
        let other = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        other.set_reuse_address(true).unwrap();
        other.set_reuse_port(true).unwrap();
        let held = other
            .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5353)).into())
            .is_ok();
        if held {
            assert_eq!(mdns_port().level, Level::Ok);
        }
    }
}
