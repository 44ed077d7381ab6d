//! Reading a [`Decision`]: allowed or not, the name of the rule that decided (the metrics
//! label), the dry-run rules that would have denied it, and the plain-language paragraph
//! `trellis why` prints.

use std::fmt;

use super::{Action, Basis, Decision, GroupDefault, Verdict};

impl Decision {
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// The name of the rule that decided; defaults are named `default:<group>`,
    /// `default:undefined-group` and `default:service`. Used as a metrics label.
    pub fn rule(&self) -> String {
        match &self.basis {
            Basis::Rule { name, .. } => name.clone(),
            Basis::GroupDefault { group, .. } => format!("default:{group}"),
            Basis::UndefinedGroup { .. } => "default:undefined-group".into(),
            Basis::WorkloadDefault => "default:service".into(),
        }
    }

    /// Dry-run rules that would have denied this (what dry-run mode logs).
    pub fn would_deny(&self) -> impl Iterator<Item = &str> {
        self.dry_run
            .iter()
            .filter(|h| h.action == Action::Deny)
            .map(|h| h.rule.as_str())
    }

    /// One plain-language paragraph: what `trellis why` prints.
    pub fn explain(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Allow => "ALLOWED",
            Verdict::Deny => "DENIED",
        };
        let target = match self.port {
            Some(p) => format!("{}:{p}", self.service),
            None => self.service.clone(),
        };
        let why = match &self.basis {
            Basis::Rule {
                name,
                action: Action::Deny,
            } => format!("rule {name:?} denies it (deny rules win over allow rules)"),
            Basis::Rule {
                name,
                action: Action::Allow,
            } => format!("rule {name:?} allows it"),
            Basis::GroupDefault {
                group,
                default: GroupDefault::AllServices,
            } => format!(
                "no rule matches, so the default of group {group:?} applies: it reaches every home service"
            ),
            Basis::GroupDefault {
                group,
                default: GroupDefault::GrantedOnly,
            } => format!(
                "no rule grants it, and group {group:?} reaches only services a rule grants"
            ),
            Basis::UndefinedGroup { group } => format!(
                "the device is in group {group:?}, which the policy does not define, so it is refused"
            ),
            Basis::WorkloadDefault => {
                "no rule grants it, and service identities reach only services a rule grants".into()
            }
        };
        let mut out = format!(
            "{verdict}: {} -> {target}: {why}. [rule {}, identity {}]",
            self.source,
            self.rule(),
            self.source.identity()
        );
        for hit in &self.dry_run {
            out.push_str(&format!(
                "\nDry run: rule {:?} would {} this, but it is not enforced.",
                hit.rule, hit.action
            ));
        }
        if !self.port_limited.is_empty() {
            out.push_str(&format!(
                "\nRules limited to certain ports also name this service ({}); ask with :<port> to see them apply.",
                self.port_limited.join(", ")
            ));
        }
        out
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}
