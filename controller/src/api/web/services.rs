//! The Services and Policy pages: who reaches each service (asked of the one policy
//! evaluator), the rules, and `why`.

use super::*;

/// A service as the Services page lists it.
#[derive(Serialize)]
pub(super) struct ServiceView {
    name: String,
    mesh_name: String,
    identity: String,
    vip: String,
    ports: Vec<u16>,
    /// Where it runs: router, address, reachability.
    instances: Vec<serde_json::Value>,
    learned_via: String,
    /// Groups, devices and service identities that reach it, each with why ("by default",
    /// "rule NAME"), as the policy engine answers.
    reached_by: Vec<String>,
}

/// Who reaches `service`, each with why: every group (a device of it that no device rule
/// names), every device whose answer differs from its group's, and every service identity a
/// rule names. Each answer is the policy engine's own ([`Policy::evaluate`], what `trellis
/// why` asks), so the page cannot contradict it. A group refused the service as a whole but
/// granted some of its ports is listed with those ports.
///
/// [`Policy::evaluate`]: trellis_proto::policy::Policy::evaluate
pub(super) fn reached_by(
    policy: &trellis_proto::policy::Policy,
    devices: &[trellis_proto::policy::Device],
    service: &str,
    ports: &[u16],
) -> Vec<String> {
    use trellis_proto::policy::{Basis, Decision, Source, SourceMatch};
    let why = |d: &Decision| match &d.basis {
        Basis::Rule { name, .. } => format!("rule {name}"),
        Basis::GroupDefault { .. } => "by default".to_owned(),
        Basis::UndefinedGroup { .. } | Basis::WorkloadDefault => "no rule".to_owned(),
    };
    // Allowed as a whole, or on these ports (each with the deciding rule).
    let reach = |source: &Source| -> Option<String> {
        let whole = policy.evaluate(source, service, None);
        if whole.allowed() {
            return Some(why(&whole));
        }
        let open: Vec<(u16, String)> = ports
            .iter()
            .map(|p| policy.evaluate(source, service, Some(*p)))
            .filter(|d| d.allowed())
            .map(|d| (d.port.unwrap_or_default(), why(&d)))
            .collect();
        let (_, first_why) = open.first()?;
        let list: Vec<String> = open.iter().map(|(p, _)| p.to_string()).collect();
        Some(format!("{first_why}, port {}", list.join(", ")))
    };
    let member = |group: &str| Source::Device {
        name: None,
        mac: None,
        ip: None,
        group: group.to_owned(),
        joined: None,
        book_group: None,
    };
    let mut out = Vec::new();
    for g in &policy.groups {
        if let Some(w) = reach(&member(&g.name)) {
            out.push(format!("{} ({w})", g.name));
        }
    }
    for d in devices {
        let source = Source::device(devices, policy, Some(d.mac), None);
        let (mine, groups) = (reach(&source), reach(&member(&d.group)));
        match (mine, groups.is_some()) {
            (Some(w), false) => out.push(format!("{} ({w})", d.name)),
            (None, true) => {
                let refused = policy.evaluate(&source, service, None);
                out.push(format!("not {} ({})", d.name, why(&refused)));
            }
            _ => {}
        }
    }
    let mut identities: Vec<&trellis_proto::SpiffeId> = policy
        .rules
        .iter()
        .flat_map(|r| &r.sources)
        .filter_map(|m| match m {
            SourceMatch::Identity(id) => Some(id),
            _ => None,
        })
        .collect();
    identities.sort_by_key(|id| id.to_string());
    identities.dedup();
    for id in identities {
        if let Some(w) = reach(&Source::Workload(id.clone())) {
            out.push(format!("{id} ({w})"));
        }
    }
    out
}

pub(super) async fn services(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<Json<serde_json::Value>> {
    let policy = web.home.policy();
    let snapshot = web.home.snapshot();
    let items: Vec<ServiceView> = web
        .home
        .services()?
        .into_iter()
        .map(|s| ServiceView {
            mesh_name: s.mesh_name(),
            identity: s.identity.to_string(),
            vip: s.vip.to_string(),
            ports: s.ports.iter().map(|p| p.port).collect(),
            instances: s
                .instances
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "router": i.node.to_string(),
                        "addr": i.addr.to_string(),
                        "reachable": i.reachable,
                    })
                })
                .collect(),
            learned_via: s.learned_via.to_string(),
            reached_by: reached_by(
                &policy,
                &snapshot.devices,
                &s.name,
                &s.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            ),
            name: s.name,
        })
        .collect();
    Ok(Json(serde_json::json!({
        "available": true,
        "reason": "No services yet: agents add what they find on their routers (mDNS, DHCP); add one by hand with `trellis add-service`.",
        "items": items,
    })))
}

pub(super) async fn policy(State(web): State<Arc<Web>>, _: Admin) -> Json<serde_json::Value> {
    let p = web.home.policy();
    Json(serde_json::json!({
        "available": true,
        "reason": "No rules yet: trusted devices reach every service; IoT devices and guests reach nothing until a rule allows it.",
        "items": p.rules,
        "groups": p.groups,
        "unknown_device_group": p.unknown_device_group,
    }))
}

pub(super) async fn add_rule(
    State(web): State<Arc<Web>>,
    _: Admin,
    body: Result<Json<trellis_proto::policy::Rule>, JsonRejection>,
) -> WebResult<Json<serde_json::Value>> {
    let rule = json_body(body)?;
    let version = web.home.add_rule(rule)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

pub(super) async fn remove_rule(
    State(web): State<Arc<Web>>,
    _: Admin,
    Path(name): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let version = web.home.remove_rule(&name)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

#[derive(Deserialize)]
pub(super) struct WhyQuery {
    source: String,
    target: String,
}

pub(super) async fn why(
    State(web): State<Arc<Web>>,
    _: Admin,
    query: Result<crate::api::extract::Query<WhyQuery>, crate::api::extract::QueryRejection>,
) -> WebResult<Json<trellis_proto::api::WhyAnswer>> {
    let crate::api::extract::Query(q) =
        query.map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(web.home.why(q.source.trim(), q.target.trim())?))
}
