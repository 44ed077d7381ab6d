//! `trellis` commands about what the home holds: the device book, the services, the groups
//! and the policy rules, and `why` a connection is allowed or refused (the controller's
//! evaluator answers; nothing here decides).

use std::net::IpAddr;

use trellis_proto::api::{DeviceListing, NewService, WhyAnswer};
use trellis_proto::catalog::Service;
use trellis_proto::policy::{Action, Policy, Rule, ServiceMatch, SourceMatch};

use crate::api::admin::Device;
use hyper::Method;
use trellis_io::client::ClientError;

use super::{bad, call, query_value, show, Cli};

pub(super) async fn devices(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let devices: Vec<DeviceListing> = call(cli, Method::GET, "/v1/admin/devices", none).await?;
    Ok(show(cli, &devices, |ds| {
        if ds.is_empty() {
            return "no devices yet: routers report their wifi clients and DHCP leases; `trellis set-device` names one\n".into();
        }
        let mut out = format!(
            "{:<18} {:<24} {:<10} {:<16} {}\n",
            "MAC", "NAME", "GROUP", "ROUTER", "LINK"
        );
        for d in ds {
            let link = match (&d.signal_dbm, &d.port) {
                (Some(s), _) => format!("wifi {s} dBm"),
                (None, Some(p)) => format!("port {p}"),
                (None, None) => "-".into(),
            };
            out += &format!(
                "{:<18} {:<24} {:<10} {:<16} {}\n",
                d.mac,
                d.name,
                d.group.as_deref().unwrap_or("-"),
                d.router.as_deref().unwrap_or("not seen"),
                link
            );
        }
        out
    }))
}

pub(super) async fn set_device(
    cli: &Cli,
    mac: &str,
    name: &str,
    group: &str,
) -> Result<String, ClientError> {
    let body = Device {
        mac: mac.to_owned(),
        name: name.to_owned(),
        group: group.to_owned(),
    };
    let v: serde_json::Value = call(cli, Method::POST, "/v1/admin/devices", Some(&body)).await?;
    Ok(show(cli, &v, |_| {
        format!("{name} ({mac}) is now in group {group}\n")
    }))
}

pub(super) async fn services(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let services: Vec<Service> = call(cli, Method::GET, "/v1/admin/services", none).await?;
    Ok(show(cli, &services, |ss| {
        if ss.is_empty() {
            return "no services yet: agents add what they find (mDNS, DHCP); add one by hand with trellis add-service\n".into();
        }
        let mut out = format!(
            "{:<16} {:<34} {:<14} {:<12} {:<8} {}\n",
            "NAME", "MESH NAME", "VIRTUAL IP", "PORTS", "FOUND", "RUNS ON"
        );
        for s in ss {
            let ports: Vec<String> = s.ports.iter().map(|p| p.port.to_string()).collect();
            let on: Vec<String> = s
                .instances
                .iter()
                .map(|i| {
                    format!(
                        "{}@{}{}",
                        i.addr,
                        i.node,
                        if i.reachable { "" } else { " (unreachable)" }
                    )
                })
                .collect();
            out += &format!(
                "{:<16} {:<34} {:<14} {:<12} {:<8} {}\n",
                s.name,
                s.mesh_name(),
                s.vip,
                ports.join(","),
                s.learned_via,
                on.join(" ")
            );
        }
        out
    }))
}

pub(super) async fn add_service(
    cli: &Cli,
    name: &str,
    node: &str,
    addr: IpAddr,
    ports: &[u16],
) -> Result<String, ClientError> {
    let node = trellis_proto::NodeName::new(node.to_owned()).map_err(|e| bad(e.to_string()))?;
    let body = NewService {
        name: name.to_owned(),
        node,
        addr,
        ports: ports.to_vec(),
    };
    let s: Service = call(cli, Method::POST, "/v1/admin/services", Some(&body)).await?;
    Ok(show(cli, &s, |s| {
        format!("{} is {} ({})\n", s.name, s.mesh_name(), s.vip)
    }))
}

pub(super) async fn remove_service(cli: &Cli, name: &str) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let v: serde_json::Value = call(
        cli,
        Method::DELETE,
        &format!("/v1/admin/services/{name}"),
        none,
    )
    .await?;
    Ok(show(cli, &v, |_| format!("removed service {name}\n")))
}

pub(super) async fn groups(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let p: Policy = call(cli, Method::GET, "/v1/admin/policy", none).await?;
    Ok(show(cli, &p.groups, |gs| {
        let mut out = format!("{:<16} {}\n", "GROUP", "WITHOUT A RULE");
        for g in gs {
            let d = match g.default {
                trellis_proto::policy::GroupDefault::AllServices => "reaches every home service",
                trellis_proto::policy::GroupDefault::GrantedOnly => "reaches only what rules grant",
            };
            out += &format!("{:<16} {d}\n", g.name);
        }
        out
    }))
}

pub(super) async fn add_group(cli: &Cli, name: &str) -> Result<String, ClientError> {
    let v: serde_json::Value = call(
        cli,
        Method::POST,
        "/v1/admin/groups",
        Some(&serde_json::json!({ "name": name })),
    )
    .await?;
    Ok(show(cli, &v, |_| {
        format!("group {name} made; it reaches only what rules grant\n")
    }))
}

pub(super) async fn policy(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let p: Policy = call(cli, Method::GET, "/v1/admin/policy", none).await?;
    Ok(show(cli, &p.rules, |rules| {
        if rules.is_empty() {
            return "no rules: trusted devices reach every service, iot and guest reach nothing\n"
                .into();
        }
        let mut out = String::new();
        for r in rules {
            out += &format!(
                "{}: {} from {:?} to {:?}{}\n",
                r.name,
                r.action,
                r.sources,
                r.to,
                if r.dry_run { " (dry run)" } else { "" }
            );
        }
        out
    }))
}

pub(super) async fn add_rule(
    cli: &Cli,
    name: &str,
    action: &str,
    from: &[String],
    to: &[String],
    dry_run: bool,
) -> Result<String, ClientError> {
    let action = match action {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        other => {
            return Err(bad(format!(
                "{other:?} is not an action: use allow or deny"
            )))
        }
    };
    let rule = Rule {
        name: name.to_owned(),
        action,
        sources: from
            .iter()
            .map(|s| source_match(s))
            .collect::<Result<_, _>>()?,
        to: to
            .iter()
            .map(|s| service_match(s))
            .collect::<Result<_, _>>()?,
        dry_run,
    };
    let v: serde_json::Value =
        call(cli, Method::POST, "/v1/admin/policy/rules", Some(&rule)).await?;
    Ok(show(cli, &v, |v| {
        format!(
            "rule {name} added (config version {})\n",
            v["config_version"]
        )
    }))
}

pub(super) async fn remove_rule(cli: &Cli, name: &str) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let v: serde_json::Value = call(
        cli,
        Method::DELETE,
        &format!("/v1/admin/policy/rules/{name}"),
        none,
    )
    .await?;
    Ok(show(cli, &v, |_| format!("rule {name} removed\n")))
}

pub(super) async fn why(cli: &Cli, source: &str, target: &str) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let path = format!(
        "/v1/admin/why?source={}&target={}",
        query_value(source),
        query_value(target)
    );
    let w: WhyAnswer = call(cli, Method::GET, &path, none).await?;
    Ok(show(cli, &w, |w| format!("{}\n", w.explanation)))
}

fn source_match(s: &str) -> Result<SourceMatch, ClientError> {
    Ok(match s.split_once(':') {
        _ if s == "any" => SourceMatch::Any,
        Some(("group", g)) => SourceMatch::Group(g.to_owned()),
        Some(("device", m)) => SourceMatch::Device(
            m.parse()
                .map_err(|e: trellis_proto::policy::PolicyError| bad(e.to_string()))?,
        ),
        Some(("id", id)) => SourceMatch::Identity(
            id.parse()
                .map_err(|e: trellis_proto::identity::IdentityError| bad(e.to_string()))?,
        ),
        _ => {
            return Err(bad(format!(
                "{s:?} is not a source: use group:NAME, device:MAC, id:SPIFFE-ID or any"
            )))
        }
    })
}

fn service_match(s: &str) -> Result<ServiceMatch, ClientError> {
    let (service, port) = trellis_proto::policy::parse_target(s).map_err(|e| bad(e.to_string()))?;
    Ok(ServiceMatch {
        service: Some(service),
        ports: port.into_iter().collect(),
    })
}
