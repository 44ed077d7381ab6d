//! Who may talk to whom: the policy model, its engine and its explanations.
//!
//! **Sources** are devices (known by MAC, with the name and addresses DHCP gave them), each in
//! one group — `trusted`, `iot`, `guest` or a group a person makes — and service identities
//! (`spiffe://<home>/svc/<name>`, e.g. Home Assistant calling a camera). **Destinations** are
//! catalog services, optionally narrowed to ports. Rules **allow** or **deny**; when both match,
//! **deny wins** (like Istio's AuthorizationPolicy and Consul intentions). A rule with
//! `dry_run` is evaluated and reported but never changes the verdict (Istio's dry-run,
//! Linkerd's `audit`).
//!
//! When no enforced rule matches, the source's group default decides. The defaults a family can
//! live with ([`Policy::default`]): `trusted` reaches every home service, `iot` only what a rule
//! grants, `guest` nothing unless a rule grants it. Service identities, like IoT, reach only
//! what is granted. A device nobody classified yet is put in [`Policy::unknown_device_group`]
//! (`guest` by default: secure until a person or the segment says otherwise).
//!
//! Every [`Decision`] names the rule that decided (a default has a name too, `default:<group>`)
//! and the identity it matched, and [`Decision::explain`] renders the sentence
//! `trellis why <source> <service>[:port]` prints. The engine is pure (no I/O): the source
//! node runs it to fail fast, the destination node runs it again, always, on its own snapshot.
//!
//! This file holds the vocabulary (the types a policy, a source and a decision are made of).
//! The rest, by concern: `mac.rs` ([`MacAddr`]), `source.rs` (how a device is resolved to its
//! group), `engine.rs` ([`Policy::evaluate`]), `explain.rs` ([`Decision::explain`]),
//! `validate.rs` ([`Policy::validate`]) and `question.rs` (reading the arguments of
//! `trellis why`: [`why`], [`parse_target`]).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::home_wifi::NetworkKind;
use crate::identity::{NodeName, SpiffeId};

mod engine;
mod explain;
mod mac;
mod question;
mod source;
mod validate;

pub use mac::MacAddr;
pub use question::{parse_target, why, why_joined};

/// Why a policy or a query is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0:?} is not a MAC address: expected six hex pairs like aa:bb:cc:dd:ee:ff")]
    BadMac(String),
    #[error("rule #{index} has an empty name: every rule needs a name so decisions can cite it")]
    UnnamedRule { index: usize },
    #[error("two rules are named {0:?}: rule names must be unique so a decision names one rule")]
    DuplicateRule(String),
    #[error("rule {rule:?} names group {group:?}, which does not exist (groups: {known})")]
    UnknownGroup {
        rule: String,
        group: String,
        known: String,
    },
    #[error("group {0:?} is defined twice")]
    DuplicateGroup(String),
    #[error("rule {0:?} has no sources: add a group, device, identity or `any`")]
    NoSources(String),
    #[error("unknown-device group {0:?} is not defined")]
    BadUnknownGroup(String),
    #[error("no device, MAC, address or identity matches {0:?}")]
    UnknownSource(String),
    #[error("{0:?} is not a destination: expected <service> or <service>:<port>")]
    BadTarget(String),
}

/// What a group reaches when no rule speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupDefault {
    /// Every home service (the `trusted` default).
    AllServices,
    /// Only what an allow rule grants (`iot`, `guest`, new groups).
    GrantedOnly,
}

/// A device group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub default: GroupDefault,
}

/// A device the home knows, by MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// What people call it (DHCP hostname or a name given on the page).
    pub name: String,
    pub mac: MacAddr,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    pub group: String,
}

/// A rule's match on the source side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceMatch {
    /// Every source.
    Any,
    /// Every device of a group.
    Group(String),
    /// One device.
    Device(MacAddr),
    /// One service identity.
    Identity(SpiffeId),
}

/// A rule's match on the destination side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMatch {
    /// `None`: every service.
    #[serde(default)]
    pub service: Option<String>,
    /// Empty: every port.
    #[serde(default)]
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// One named rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub sources: Vec<SourceMatch>,
    /// Empty: every service on every port.
    #[serde(default)]
    pub to: Vec<ServiceMatch>,
    /// Evaluate and report, never enforce.
    #[serde(default)]
    pub dry_run: bool,
}

/// The home's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub groups: Vec<Group>,
    pub rules: Vec<Rule>,
    /// The group of a device no one has classified.
    pub unknown_device_group: String,
}

impl Default for Policy {
    fn default() -> Self {
        let g = |name: &str, default| Group {
            name: name.into(),
            default,
        };
        Self {
            groups: vec![
                g("trusted", GroupDefault::AllServices),
                g("iot", GroupDefault::GrantedOnly),
                g("guest", GroupDefault::GrantedOnly),
            ],
            rules: Vec::new(),
            unknown_device_group: "guest".into(),
        }
    }
}

/// The network a device authenticated on, as the router that has it associated reports it
/// (`WifiAssociation.network`): the first word on its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub network: NetworkKind,
    /// The router whose access point it is on.
    #[serde(default)]
    pub router: Option<NodeName>,
}

/// Who is asking, as resolved by the node that sees the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Device {
        /// `None` for a device not in the device book.
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        mac: Option<MacAddr>,
        #[serde(default)]
        ip: Option<IpAddr>,
        group: String,
        /// The home network it joined, when it is on one: that decided `group`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        joined: Option<Joined>,
        /// The device book's group for this MAC when the network joined overrode it (a guest
        /// that copied the trusted laptop's MAC): rules naming the MAC do not apply then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        book_group: Option<String>,
    },
    Workload(SpiffeId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// What decided a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// An enforced rule matched.
    Rule { name: String, action: Action },
    /// No enforced rule matched; the group default applied.
    GroupDefault {
        group: String,
        default: GroupDefault,
    },
    /// The device's group is not defined in the policy: refused (fail closed).
    UndefinedGroup { group: String },
    /// No rule grants this service identity.
    WorkloadDefault,
}

/// A dry-run rule that matched: what it would have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunHit {
    pub rule: String,
    pub action: Action,
}

/// One policy decision, carrying everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub basis: Basis,
    pub source: Source,
    pub service: String,
    pub port: Option<u16>,
    /// Dry-run rules that matched (reported, not enforced).
    pub dry_run: Vec<DryRunHit>,
    /// Rules that would match only on other ports (for a question asked without a port).
    #[serde(default)]
    pub port_limited: Vec<String>,
}

#[cfg(test)]
mod tests;
