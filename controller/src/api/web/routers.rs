//! The router views: the fleet as the page's Home and Routers pages show it (state, links,
//! warnings), removing and labelling a router, and pairing codes with their progress.

use super::*;

/// A router as the page shows it.
#[derive(Debug, Serialize)]
pub struct RouterView {
    pub name: String,
    pub label: Option<String>,
    pub identity: String,
    /// "online", "connecting" (not seen yet since the controller started), "offline",
    /// "removed".
    pub state: &'static str,
    pub last_seen_s: Option<u64>,
    pub enrolled_at: u64,
    pub cert_not_after: Option<u64>,
    pub cert_expires_in_s: Option<i64>,
    /// The controller's verdict on it ([`crate::health::certificate`]).
    pub cert_health: Option<trellis_proto::api::CertHealth>,
    /// Its access points against the home's networks ([`crate::health::wifi`]).
    pub wifi: Option<trellis_proto::home_wifi::WifiHealth>,
    pub acked_version: u64,
    pub addresses: Vec<String>,
    pub agent_version: String,
    /// Devices behind this router (the wifi clients of its access points, and the DHCP
    /// leases of devices associated nowhere else) and the catalog services it fronts.
    pub devices: Vec<String>,
    pub services: Vec<String>,
    /// The router the controller runs on (the centre of the map).
    pub portal: bool,
    /// Mesh hops from the portal (0 for the portal); `None` when no path is reported.
    pub hops: Option<u32>,
    /// It said where its speed-test sink listens: a speed test can be sent to it.
    pub speedtest_sink: bool,
}

/// A backhaul link between two routers (802.11s or a cable), as the agents report them;
/// the map draws and colours whatever arrives here.
#[derive(Debug, Serialize)]
pub struct LinkView {
    pub from: String,
    pub to: String,
    pub medium: trellis_proto::api::LinkMedium,
    pub signal_dbm: Option<i32>,
    pub expected_throughput_kbps: Option<u32>,
    pub airtime_metric: Option<u32>,
    pub verdict: LinkVerdict,
    /// The newest speed test between its two routers.
    pub measured: Option<trellis_proto::api::LinkMeasurement>,
}

#[derive(Debug, Serialize)]
pub struct Warning {
    /// "warning" or "error".
    pub level: &'static str,
    pub subject: String,
    pub message: String,
}

/// The router's state on the page: the controller's one liveness rule.
pub(super) fn router_state(web: &Web, n: &NodeInfo) -> &'static str {
    web.home.liveness(&n.name, n.revoked).as_str()
}

pub(super) fn router_views(web: &Web) -> WebResult<Vec<RouterView>> {
    let now = unix_now() as i64;
    // Which catalog services run behind each router (for the map and the router cards).
    let catalog = web.home.services()?;
    // Devices are named as the device book names them, else by what they told DHCP.
    let book: std::collections::HashMap<String, String> = web
        .home
        .devices()?
        .into_iter()
        .map(|d| (d.mac, d.name))
        .collect();
    let device_name = |d: &trellis_proto::api::SeenDevice| {
        crate::home::normalise_mac(&d.mac)
            .and_then(|m| book.get(&m).cloned())
            .or_else(|| d.dhcp_name().map(str::to_owned))
            .unwrap_or_else(|| d.mac.clone())
    };
    let services_on = |node: &NodeName| -> Vec<String> {
        catalog
            .iter()
            .filter(|s| s.instances.iter().any(|i| &i.node == node))
            .map(|s| s.name.clone())
            .collect()
    };
    let placed = web.home.devices_by_router()?;
    Ok(web
        .home
        .nodes()?
        .into_iter()
        .map(|n| {
            let t = web.home.telemetry(&n.name).unwrap_or_default();
            let devices = placed.get(&n.name).map(Vec::as_slice).unwrap_or_default();
            let services = services_on(&n.name);
            RouterView {
                state: router_state(web, &n),
                name: n.name.to_string(),
                label: n.label,
                identity: n.identity.to_string(),
                last_seen_s: n.last_seen_s,
                enrolled_at: n.enrolled_at,
                cert_not_after: n.cert_not_after,
                cert_expires_in_s: n.cert_not_after.map(|t| t as i64 - now),
                cert_health: n.cert_health,
                wifi: n.wifi.clone(),
                acked_version: n.acked_version,
                speedtest_sink: t.speedtest_addr.is_some(),
                addresses: t.addresses,
                agent_version: t.agent_version,
                devices: devices.iter().map(device_name).collect(),
                services,
                portal: n.portal,
                hops: n.hops,
            }
        })
        .collect())
}

pub(super) fn warnings(web: &Web, routers: &[RouterView]) -> Vec<Warning> {
    let mut out = Vec::new();
    for r in routers.iter().filter(|r| r.state != "removed") {
        let who = r.label.clone().unwrap_or_else(|| r.name.clone());
        if r.state == "offline" {
            out.push(Warning {
                level: "error",
                subject: who.clone(),
                message: format!(
                    "{who} is offline: it has not called the controller {}. Check that it has power and a link to the mesh.",
                    r.last_seen_s
                        .map(|s| format!("for {} min", s / 60))
                        .unwrap_or_else(|| "since the controller started".into())
                ),
            });
        }
        match r.cert_health {
            Some(CertHealth::Expired { .. }) => out.push(Warning {
                level: "error",
                subject: who.clone(),
                message: format!("{who}'s certificate has expired: the router cannot join the service mesh until it renews. Check that it is online and its clock is right."),
            }),
            Some(CertHealth::RenewalLate { expires_in_s }) => out.push(Warning {
                level: "warning",
                subject: who.clone(),
                message: format!("{who}'s certificate expires in {} min and was not renewed yet. Check that it is online.", expires_in_s / 60),
            }),
            _ => {}
        }
        if let Some(w) = &r.wifi {
            for f in crate::check::wifi_findings(&who, w) {
                out.push(Warning {
                    level: if f.level == crate::check::Level::Fail {
                        "error"
                    } else {
                        "warning"
                    },
                    subject: who.clone(),
                    message: format!("{}. {}", f.what, sentence(&f.fix)),
                });
            }
        }
    }
    out.extend(link_warnings(routers, &web.home.topology()));
    let ca_left = web.home.ca().not_after().saturating_sub(unix_now());
    if ca_left < CA_WARN_S {
        out.push(Warning {
            level: if ca_left == 0 { "error" } else { "warning" },
            subject: "Home CA".into(),
            message: format!(
                "the home's root certificate expires in {} days; back it up and plan a new home CA",
                ca_left / 86400
            ),
        });
    }
    out
}

/// One warning per mesh link in trouble (weak, unstable, paused, too close), with the advice
/// of the router that reported it. Both ends report a link: the pair is named once.
pub(super) fn link_warnings(
    routers: &[RouterView],
    links: &[trellis_proto::api::TopologyLink],
) -> Vec<Warning> {
    let name = |n: &str| {
        routers
            .iter()
            .find(|r| r.name == n)
            .map(|r| r.label.clone().unwrap_or_else(|| r.name.clone()))
            .unwrap_or_else(|| n.to_owned())
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for l in links {
        let (what, level) = match l.verdict {
            LinkVerdict::Unstable => ("unstable", "warning"),
            LinkVerdict::Blocked => ("paused: it kept dropping", "warning"),
            LinkVerdict::Weak => ("weak", "warning"),
            LinkVerdict::TooClose => ("too strong (the routers are very close)", "warning"),
            LinkVerdict::Good | LinkVerdict::Fair | LinkVerdict::Unknown => continue,
        };
        let (a, b) = (l.from.to_string(), l.to.clone());
        let pair = if a < b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        if !seen.insert(pair) {
            continue;
        }
        let advice = if l.advice.is_empty() {
            String::new()
        } else {
            format!(": {}", l.advice.join("; "))
        };
        out.push(Warning {
            level,
            subject: format!("{} ↔ {}", name(&a), name(&b)),
            message: format!(
                "The link between {} and {} is {what}{advice}.",
                name(&a),
                name(&b)
            ),
        });
    }
    out
}

#[derive(Serialize)]
pub(super) struct Overview {
    home_id: String,
    /// The router the controller runs on, once its agent joined (`trellis pair --this-router`).
    portal: Option<String>,
    config_version: u64,
    controller_version: String,
    routers: Vec<RouterView>,
    links: Vec<LinkView>,
    warnings: Vec<Warning>,
}

pub(super) async fn overview(State(web): State<Arc<Web>>, _: Admin) -> WebResult<Json<Overview>> {
    let status = web.home.status()?;
    let routers = router_views(&web)?;
    let warnings = warnings(&web, &routers);
    Ok(Json(Overview {
        home_id: status.home_id.to_string(),
        portal: routers
            .iter()
            .find(|r| r.portal && r.state != "removed")
            .map(|r| r.name.clone()),
        config_version: status.config_version,
        controller_version: status.controller_version,
        routers,
        links: web
            .home
            .topology()
            .into_iter()
            .map(|l| LinkView {
                from: l.from.to_string(),
                to: l.to,
                medium: l.medium,
                signal_dbm: l.signal_dbm,
                expected_throughput_kbps: l.expected_throughput_kbps,
                airtime_metric: l.airtime_metric,
                verdict: l.verdict,
                measured: l.measured,
            })
            .collect(),
        warnings,
    }))
}

pub(super) async fn routers(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<Json<Vec<RouterView>>> {
    router_views(&web).map(Json)
}

pub(super) fn node_name(name: String) -> WebResult<NodeName> {
    NodeName::new(name).map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

pub(super) async fn remove_router(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(name): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let removed = web.home.remove_node(&node_name(name)?)?;
    Ok(Json(serde_json::json!({
        "identity": removed.identity.to_string(),
        "config_version": removed.config_version,
    })))
}

#[derive(Deserialize)]
pub(super) struct LabelBody {
    label: String,
}

pub(super) async fn set_label(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(name): Path<String>,
    body: Result<Json<LabelBody>, JsonRejection>,
) -> WebResult<StatusCode> {
    let body = json_body(body)?;
    web.home.set_label(&node_name(name)?, &body.label)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub(super) struct CodeView {
    code: String,
    slot: String,
    expires_in_s: u64,
}

pub(super) async fn new_code(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<(StatusCode, Json<CodeView>)> {
    let c = web.home.new_pairing_code(false)?;
    let slot = c
        .code
        .get(..trellis_proto::pairing::CODE_SLOT_LEN)
        .unwrap_or_default()
        .to_owned();
    Ok((
        StatusCode::CREATED,
        Json(CodeView {
            code: c.code,
            slot,
            expires_in_s: c.expires_in_s,
        }),
    ))
}

#[derive(Serialize)]
pub(super) struct ProgressView {
    /// "waiting" → "pairing" → "enrolled" → "meshed"; or "expired".
    stage: &'static str,
    node: Option<String>,
    tries: u32,
    expires_in_s: u64,
    /// What an enrolled router still waits for, in words for the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

/// Whether an enrolled router is in the mesh: it follows the controller's config over its
/// own certificate, is heard from, and has its wifi mesh link if it runs one.
pub(super) fn in_the_mesh(web: &Web, n: &NodeInfo) -> (bool, Option<&'static str>) {
    if n.revoked || n.acked_version == 0 || router_state(web, n) != "online" {
        return (false, None);
    }
    match web.home.waiting_for_mesh_link(n) {
        Some(why) => (false, Some(why)),
        None => (true, None),
    }
}

pub(super) async fn pairing_progress(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(slot): Path<String>,
) -> WebResult<Json<ProgressView>> {
    let view = |stage, node: Option<String>, tries, left: Duration| ProgressView {
        stage,
        node,
        tries,
        expires_in_s: left.as_secs(),
        detail: None,
    };
    Ok(Json(match web.home.pairing_progress(&slot) {
        Progress::Waiting { expires_in } => view("waiting", None, 0, expires_in),
        Progress::Pairing {
            node,
            tries,
            expires_in,
        } => view("pairing", node.map(|n| n.to_string()), tries, expires_in),
        Progress::Used { node } => {
            // Enrolled; "meshed" once the new router is in the mesh (see in_the_mesh).
            let info = web.home.nodes()?.into_iter().find(|n| n.name == node);
            let (meshed, detail) = info.map(|n| in_the_mesh(&web, &n)).unwrap_or_default();
            let stage = if meshed { "meshed" } else { "enrolled" };
            ProgressView {
                detail,
                ..view(stage, Some(node.to_string()), 0, Duration::ZERO)
            }
        }
        Progress::Gone => view("expired", None, 0, Duration::ZERO),
    }))
}

/// `text` with its first letter capitalised: a finding's fix as a sentence of its own.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
