//! The evaluator: [`Policy::evaluate`] decides whether a source may reach a service (and
//! port). Deny rules win over allow rules, dry-run rules are only reported, and with no
//! enforced rule the group default (or the service-identity default) decides. Pure: no I/O.

use super::{
    Action, Basis, Decision, DryRunHit, GroupDefault, Policy, Rule, ServiceMatch, Source,
    SourceMatch, Verdict,
};

fn source_matches(m: &SourceMatch, src: &Source) -> bool {
    match (m, src) {
        (SourceMatch::Any, _) => true,
        (SourceMatch::Group(g), Source::Device { group, .. }) => g == group,
        (
            SourceMatch::Device(mac),
            Source::Device {
                mac: Some(m2),
                book_group,
                ..
            },
        ) => mac == m2 && book_group.is_none(),
        (SourceMatch::Identity(id), Source::Workload(w)) => id == w,
        _ => false,
    }
}

/// How a rule's destinations relate to a request.
enum DestMatch {
    Yes,
    /// Same service, but the rule is limited to ports and the request has none.
    PortLimited,
    No,
}

fn dest_matches(to: &[ServiceMatch], service: &str, port: Option<u16>) -> DestMatch {
    if to.is_empty() {
        return DestMatch::Yes;
    }
    let mut limited = false;
    for m in to {
        if m.service.as_deref().is_some_and(|s| s != service) {
            continue;
        }
        match port {
            _ if m.ports.is_empty() => return DestMatch::Yes,
            Some(p) if m.ports.contains(&p) => return DestMatch::Yes,
            None => limited = true,
            Some(_) => {}
        }
    }
    if limited {
        DestMatch::PortLimited
    } else {
        DestMatch::No
    }
}

impl Policy {
    /// Decide whether `source` may reach `service` on `port` (`None`: the question asked
    /// without a port, as `trellis why laptop nas` does).
    pub fn evaluate(&self, source: &Source, service: &str, port: Option<u16>) -> Decision {
        let mut deny: Option<&Rule> = None;
        let mut allow: Option<&Rule> = None;
        let mut dry_run = Vec::new();
        let mut port_limited = Vec::new();
        for rule in &self.rules {
            if !rule.sources.iter().any(|m| source_matches(m, source)) {
                continue;
            }
            match dest_matches(&rule.to, service, port) {
                DestMatch::No => continue,
                DestMatch::PortLimited => {
                    port_limited.push(rule.name.clone());
                    continue;
                }
                DestMatch::Yes => {}
            }
            if rule.dry_run {
                dry_run.push(DryRunHit {
                    rule: rule.name.clone(),
                    action: rule.action,
                });
                continue;
            }
            let slot = match rule.action {
                Action::Deny => &mut deny,
                Action::Allow => &mut allow,
            };
            slot.get_or_insert(rule);
        }
        let (verdict, basis) = if let Some(r) = deny.or(allow) {
            let verdict = match r.action {
                Action::Allow => Verdict::Allow,
                Action::Deny => Verdict::Deny,
            };
            (
                verdict,
                Basis::Rule {
                    name: r.name.clone(),
                    action: r.action,
                },
            )
        } else {
            match source {
                Source::Workload(_) => (Verdict::Deny, Basis::WorkloadDefault),
                Source::Device { group, .. } => match self.groups.iter().find(|g| &g.name == group)
                {
                    Some(g) => (
                        match g.default {
                            GroupDefault::AllServices => Verdict::Allow,
                            GroupDefault::GrantedOnly => Verdict::Deny,
                        },
                        Basis::GroupDefault {
                            group: g.name.clone(),
                            default: g.default,
                        },
                    ),
                    None => (
                        Verdict::Deny,
                        Basis::UndefinedGroup {
                            group: group.clone(),
                        },
                    ),
                },
            }
        };
        Decision {
            verdict,
            basis,
            source: source.clone(),
            service: service.to_owned(),
            port,
            dry_run,
            port_limited,
        }
    }
}
