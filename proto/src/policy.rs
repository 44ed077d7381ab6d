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

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::home_wifi::NetworkKind;
use crate::identity::{NodeName, SpiffeId};

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

/// A 48-bit hardware address: the one MAC type of the project (devices in the policy, mesh
/// peers and stations in the agent, BSSIDs). Printed `02:00:00:00:01:00`, lower case, as `iw`
/// does, in logs (`Debug`) too; parsed by the one rule below (`:` or `-` between six two-digit
/// hex bytes, nothing around them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Quoted short: the text comes from devices and agents and ends up in logs.
        let bad = || PolicyError::BadMac(s.chars().take(40).collect());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            // Digits only: from_str_radix alone also takes a sign (`+7`).
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl TryFrom<String> for MacAddr {
    type Error = PolicyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<MacAddr> for String {
    fn from(value: MacAddr) -> String {
        value.to_string()
    }
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

impl Source {
    /// Resolve a device from what the node saw (MAC from the neighbour table / DHCP, source IP)
    /// against the device book. Unknown devices land in the policy's unknown-device group.
    pub fn device(
        devices: &[Device],
        policy: &Policy,
        mac: Option<MacAddr>,
        ip: Option<IpAddr>,
    ) -> Self {
        Self::device_on(devices, policy, mac, ip, None)
    }

    /// The one rule for a device's group: first the home network it authenticated on
    /// ([`NetworkKind::group`]), then the device book, then the policy's unknown-device
    /// group. The agent's proxy and the controller's `why` both ask this.
    pub fn device_on(
        devices: &[Device],
        policy: &Policy,
        mac: Option<MacAddr>,
        ip: Option<IpAddr>,
        joined: Option<Joined>,
    ) -> Self {
        let known = devices
            .iter()
            .find(|d| Some(d.mac) == mac)
            .or_else(|| ip.and_then(|ip| devices.iter().find(|d| d.ips.contains(&ip))));
        let (name, mac, ip, book) = match known {
            Some(d) => (
                Some(d.name.clone()),
                Some(d.mac),
                ip.or_else(|| d.ips.first().copied()),
                Some(d.group.clone()),
            ),
            None => (None, mac, ip, None),
        };
        let (group, book_group) = match (&joined, book) {
            (Some(j), book) => {
                let group = j.network.group().to_owned();
                let overridden = book.filter(|b| *b != group);
                (group, overridden)
            }
            (None, Some(book)) => (book, None),
            (None, None) => (policy.unknown_device_group.clone(), None),
        };
        Source::Device {
            name,
            mac,
            ip,
            group,
            joined,
            book_group,
        }
    }

    /// Why the device is in its group, in words: "guest: joined the guest network on attic".
    pub fn group_reason(&self) -> Option<String> {
        let Source::Device {
            name,
            group,
            joined,
            book_group,
            ..
        } = self
        else {
            return None;
        };
        Some(match (joined, name) {
            (Some(j), _) => {
                let mut s = format!("{group}: joined the {} network", j.network);
                if let Some(r) = &j.router {
                    s.push_str(&format!(" on {r}"));
                }
                if let (Some(b), Some(n)) = (book_group, name) {
                    s.push_str(&format!(
                        " (the device book has this MAC as {n:?} in {b}; the network joined decides)"
                    ));
                }
                s
            }
            (None, Some(n)) => format!("{group}: the device book has it as {n:?}"),
            (None, None) => {
                format!("{group}: not in the device book, so the group for unknown devices")
            }
        })
    }

    /// The identity a decision cites: a SPIFFE ID, or `device:<mac>` / `device:<ip>`.
    pub fn identity(&self) -> String {
        match self {
            Source::Workload(id) => id.to_string(),
            Source::Device { mac: Some(mac), .. } => format!("device:{mac}"),
            Source::Device { ip: Some(ip), .. } => format!("device:{ip}"),
            Source::Device { .. } => "device:unknown".into(),
        }
    }

    /// The group, for devices.
    pub fn group(&self) -> Option<&str> {
        match self {
            Source::Device { group, .. } => Some(group),
            Source::Workload(_) => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Workload(id) => write!(f, "service {id}"),
            Source::Device {
                name,
                mac,
                ip,
                group,
                joined,
                ..
            } => {
                match name {
                    Some(n) => write!(f, "device {n:?}")?,
                    None => write!(f, "unknown device")?,
                }
                let mut parts = Vec::new();
                if let Some(m) = mac {
                    parts.push(m.to_string());
                }
                if let Some(i) = ip {
                    parts.push(i.to_string());
                }
                match joined {
                    Some(_) => {
                        parts.push(format!("group {}", self.group_reason().unwrap_or_default()))
                    }
                    None => parts.push(format!("group {group}")),
                }
                write!(f, " ({})", parts.join(", "))
            }
        }
    }
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
    /// Check the policy is well-formed: named, unique rules; referenced groups exist.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let known = || {
            self.groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, g) in self.groups.iter().enumerate() {
            if self.groups[..i].iter().any(|o| o.name == g.name) {
                return Err(PolicyError::DuplicateGroup(g.name.clone()));
            }
        }
        if !self
            .groups
            .iter()
            .any(|g| g.name == self.unknown_device_group)
        {
            return Err(PolicyError::BadUnknownGroup(
                self.unknown_device_group.clone(),
            ));
        }
        for (index, r) in self.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(PolicyError::UnnamedRule { index });
            }
            if self.rules[..index].iter().any(|o| o.name == r.name) {
                return Err(PolicyError::DuplicateRule(r.name.clone()));
            }
            if r.sources.is_empty() {
                return Err(PolicyError::NoSources(r.name.clone()));
            }
            for s in &r.sources {
                if let SourceMatch::Group(g) = s {
                    if !self.groups.iter().any(|x| &x.name == g) {
                        return Err(PolicyError::UnknownGroup {
                            rule: r.name.clone(),
                            group: g.clone(),
                            known: known(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

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

    /// Resolve the `<source>` of `trellis why`: a device name, MAC, IP address or SPIFFE ID.
    pub fn resolve_source(&self, query: &str, devices: &[Device]) -> Result<Source, PolicyError> {
        if let Ok(id) = query.parse::<SpiffeId>() {
            return Ok(Source::Workload(id));
        }
        if let Ok(mac) = query.parse::<MacAddr>() {
            return Ok(Source::device(devices, self, Some(mac), None));
        }
        if let Ok(ip) = query.parse::<IpAddr>() {
            return Ok(Source::device(devices, self, None, Some(ip)));
        }
        devices
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(query))
            .map(|d| Source::device(devices, self, Some(d.mac), None))
            .ok_or_else(|| PolicyError::UnknownSource(query.to_owned()))
    }
}

/// `trellis why <source> <service>[:port]`: resolve both arguments and decide. The CLI prints
/// [`Decision::explain`] of the result.
pub fn why(
    policy: &Policy,
    devices: &[Device],
    source: &str,
    target: &str,
) -> Result<Decision, PolicyError> {
    why_joined(policy, devices, source, target, |_| None)
}

/// [`why`] for a home that knows which network each associated device joined (`joined` of
/// its MAC: from the router that has it associated).
pub fn why_joined(
    policy: &Policy,
    devices: &[Device],
    source: &str,
    target: &str,
    joined: impl Fn(MacAddr) -> Option<Joined>,
) -> Result<Decision, PolicyError> {
    let mut src = policy.resolve_source(source, devices)?;
    if let Source::Device {
        mac: Some(mac), ip, ..
    } = &src
    {
        if let Some(j) = joined(*mac) {
            src = Source::device_on(devices, policy, Some(*mac), *ip, Some(j));
        }
    }
    let (service, port) = parse_target(target)?;
    Ok(policy.evaluate(&src, &service, port))
}

/// Parse the `<service>[:port]` of `trellis why`.
pub fn parse_target(s: &str) -> Result<(String, Option<u16>), PolicyError> {
    let bad = || PolicyError::BadTarget(s.to_owned());
    let (svc, port) = match s.split_once(':') {
        Some((svc, p)) => (svc, Some(p.parse::<u16>().map_err(|_| bad())?)),
        None => (s, None),
    };
    let svc = crate::catalog::service_label(svc).unwrap_or_else(|| svc.to_owned());
    if svc.is_empty() {
        return Err(bad());
    }
    Ok((svc, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HomeId;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn devices() -> Vec<Device> {
        let d = |name: &str, m: &str, ip: &str, group: &str| Device {
            name: name.into(),
            mac: mac(m),
            ips: vec![ip.parse().unwrap()],
            group: group.into(),
        };
        vec![
            d("laptop", "02:00:00:00:00:01", "192.168.1.10", "trusted"),
            d("thermostat", "02:00:00:00:00:02", "192.168.1.11", "iot"),
            d("visitor", "02:00:00:00:00:03", "192.168.1.12", "guest"),
            d("tv", "02:00:00:00:00:04", "192.168.1.13", "media"),
        ]
    }

    fn src(p: &Policy, q: &str) -> Source {
        p.resolve_source(q, &devices()).unwrap()
    }

    fn rule(
        name: &str,
        action: Action,
        sources: Vec<SourceMatch>,
        svc: Option<&str>,
        ports: &[u16],
    ) -> Rule {
        Rule {
            name: name.into(),
            action,
            sources,
            to: vec![ServiceMatch {
                service: svc.map(Into::into),
                ports: ports.to_vec(),
            }],
            dry_run: false,
        }
    }

    /// Found by the `identity_text` fuzz target: `u8::from_str_radix` takes a leading `+`,
    /// so `10:37:17:00:37:+7` was read as a MAC.
    #[test]
    fn a_mac_is_six_pairs_of_hex_digits_and_nothing_else() {
        for bad in [
            "10:37:17:00:37:+7",
            "+1:02:03:04:05:06",
            "-1:02:03:04:05:06",
            " 1:02:03:04:05:06",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} is not a MAC");
        }
        for bad in [
            "",
            "02:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} is not a MAC");
        }
        assert_eq!(mac("0A-0b-0C-0d-0E-0f").to_string(), "0a:0b:0c:0d:0e:0f");
        // Logs, JSON and the page print it one way.
        let m = mac("02:00:00:00:0A:ff");
        assert_eq!(format!("{m:?}"), "02:00:00:00:0a:ff");
        let json = serde_json::to_string(&m).expect("serialises");
        assert_eq!(json, "\"02:00:00:00:0a:ff\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).expect("parses"), m);
    }

    #[test]
    fn a_refused_mac_is_quoted_short() {
        let long = "x".repeat(10_000);
        let err = long.parse::<MacAddr>().unwrap_err().to_string();
        assert!(err.len() < 200, "{} bytes", err.len());
    }

    #[test]
    fn family_defaults_trusted_reach_everything_iot_and_guests_nothing() {
        let p = Policy::default();
        p.validate().unwrap();
        let d = p.evaluate(&src(&p, "laptop"), "nas", Some(445));
        assert!(d.allowed());
        assert_eq!(d.rule(), "default:trusted");
        assert!(
            d.explain().contains("reaches every home service"),
            "{}",
            d.explain()
        );

        let d = p.evaluate(&src(&p, "thermostat"), "nas", Some(445));
        assert!(!d.allowed());
        assert_eq!(d.rule(), "default:iot");
        let d = p.evaluate(&src(&p, "visitor"), "nas", Some(445));
        assert!(!d.allowed());
        assert_eq!(d.rule(), "default:guest");
        let text = d.explain();
        assert!(text.starts_with("DENIED: device \"visitor\" (02:00:00:00:00:03, 192.168.1.12, group guest) -> nas:445"), "{text}");
        assert!(
            text.contains("[rule default:guest, identity device:02:00:00:00:00:03]"),
            "{text}"
        );
    }

    #[test]
    fn unknown_devices_are_guests_and_undefined_groups_fail_closed() {
        let p = Policy::default();
        let s = src(&p, "192.168.1.99");
        assert_eq!(s.group(), Some("guest"));
        let d = p.evaluate(&s, "nas", Some(80));
        assert_eq!(d.rule(), "default:guest");
        assert!(
            d.explain()
                .contains("unknown device (192.168.1.99, group guest)"),
            "{}",
            d.explain()
        );

        let d = p.evaluate(&src(&p, "tv"), "nas", Some(80));
        assert!(!d.allowed());
        assert_eq!(d.rule(), "default:undefined-group");
        assert!(d.explain().contains("does not define"));
    }

    #[test]
    fn grants_open_a_service_and_port_for_iot() {
        let mut p = Policy::default();
        p.rules.push(rule(
            "thermostat-to-ha",
            Action::Allow,
            vec![SourceMatch::Group("iot".into())],
            Some("home-assistant"),
            &[8123],
        ));
        let s = src(&p, "02:00:00:00:00:02");
        let d = p.evaluate(&s, "home-assistant", Some(8123));
        assert!(d.allowed());
        assert_eq!(d.rule(), "thermostat-to-ha");
        assert!(d.explain().contains("rule \"thermostat-to-ha\" allows it"));
        // Other port, other service: still the default.
        assert_eq!(
            p.evaluate(&s, "home-assistant", Some(22)).rule(),
            "default:iot"
        );
        assert_eq!(p.evaluate(&s, "nas", Some(8123)).rule(), "default:iot");
        // Asked without a port: not granted, and the explanation says a port-limited rule exists.
        let d = p.evaluate(&s, "home-assistant", None);
        assert!(!d.allowed());
        assert_eq!(d.port_limited, vec!["thermostat-to-ha".to_string()]);
        assert!(d.explain().contains("ask with :<port>"));
    }

    #[test]
    fn deny_wins_over_allow_and_over_the_trusted_default() {
        let mut p = Policy::default();
        let laptop = mac("02:00:00:00:00:01");
        p.rules.push(rule(
            "laptop-everything",
            Action::Allow,
            vec![SourceMatch::Device(laptop)],
            None,
            &[],
        ));
        p.rules.push(rule(
            "no-ssh-to-nas",
            Action::Deny,
            vec![SourceMatch::Any],
            Some("nas"),
            &[22],
        ));
        let s = src(&p, "laptop");
        let d = p.evaluate(&s, "nas", Some(22));
        assert!(!d.allowed());
        assert_eq!(d.rule(), "no-ssh-to-nas");
        assert!(d.explain().contains("deny rules win over allow rules"));
        let d = p.evaluate(&s, "nas", Some(445));
        assert!(d.allowed());
        assert_eq!(d.rule(), "laptop-everything");
    }

    #[test]
    fn a_guest_device_with_the_trusted_laptops_mac_is_a_guest() {
        let mut p = Policy::default();
        let laptop = mac("02:00:00:00:00:01");
        p.rules.push(rule(
            "laptop-everything",
            Action::Allow,
            vec![SourceMatch::Device(laptop)],
            None,
            &[],
        ));
        let attic = NodeName::new("attic").unwrap();
        let on = |network| Joined {
            network,
            router: Some(attic.clone()),
        };
        // Associated on the guest network: a guest, whatever the device book says of the
        // MAC, and the rule naming the laptop's MAC does not apply.
        let guest = |m: MacAddr| (m == laptop).then(|| on(NetworkKind::Guest));
        let d = why_joined(&p, &devices(), "02:00:00:00:00:01", "nas:445", guest).unwrap();
        assert!(!d.allowed(), "{}", d.explain());
        assert_eq!(d.source.group(), Some("guest"));
        assert_eq!(d.rule(), "default:guest");
        let text = d.explain();
        assert!(
            text.contains("guest: joined the guest network on attic"),
            "{text}"
        );
        assert!(text.contains("the network joined decides"), "{text}");
        // Asked by name, the same.
        let d = why_joined(&p, &devices(), "laptop", "nas", guest).unwrap();
        assert!(!d.allowed());
        // On the home network it is the trusted laptop, and says why.
        let home = |_| Some(on(NetworkKind::Home));
        let d = why_joined(&p, &devices(), "laptop", "nas", home).unwrap();
        assert!(d.allowed());
        assert_eq!(d.rule(), "laptop-everything");
        assert!(d
            .explain()
            .contains("trusted: joined the home network on attic"));
        // Not associated anywhere: the device book, then the default.
        let d = why_joined(&p, &devices(), "laptop", "nas", |_| None).unwrap();
        assert_eq!(d.source.group(), Some("trusted"));
        let s = Source::device_on(&devices(), &p, Some(mac("02:00:00:00:00:99")), None, None);
        assert_eq!(s.group(), Some(p.unknown_device_group.as_str()));
        assert!(s.group_reason().unwrap().contains("not in the device book"));
        // An unknown device on the iot network is iot.
        let s = Source::device_on(
            &devices(),
            &p,
            Some(mac("02:00:00:00:00:99")),
            None,
            Some(on(NetworkKind::Iot)),
        );
        assert_eq!(s.group(), Some("iot"));
    }

    #[test]
    fn dry_run_rules_report_but_never_change_the_verdict() {
        let mut p = Policy::default();
        let mut r = rule(
            "maybe-block-nas",
            Action::Deny,
            vec![SourceMatch::Group("trusted".into())],
            Some("nas"),
            &[],
        );
        r.dry_run = true;
        p.rules.push(r);
        let mut g = rule(
            "maybe-grant-guest",
            Action::Allow,
            vec![SourceMatch::Group("guest".into())],
            Some("printer"),
            &[],
        );
        g.dry_run = true;
        p.rules.push(g);

        let d = p.evaluate(&src(&p, "laptop"), "nas", Some(445));
        assert!(d.allowed());
        assert_eq!(d.rule(), "default:trusted");
        assert_eq!(d.would_deny().collect::<Vec<_>>(), vec!["maybe-block-nas"]);
        assert!(
            d.explain().contains(
                "Dry run: rule \"maybe-block-nas\" would deny this, but it is not enforced."
            ),
            "{}",
            d.explain()
        );

        let d = p.evaluate(&src(&p, "visitor"), "printer", Some(631));
        assert!(!d.allowed());
        assert_eq!(d.dry_run[0].action, Action::Allow);
    }

    #[test]
    fn service_identities_reach_only_what_is_granted() {
        let mut p = Policy::default();
        let home = HomeId::new("h1").unwrap();
        let ha = SpiffeId::service(&home, "home-assistant").unwrap();
        p.rules.push(rule(
            "ha-to-camera",
            Action::Allow,
            vec![SourceMatch::Identity(ha.clone())],
            Some("camera"),
            &[554],
        ));
        let s = src(&p, "spiffe://h1/svc/home-assistant");
        assert_eq!(s, Source::Workload(ha));
        let d = p.evaluate(&s, "camera", Some(554));
        assert!(d.allowed());
        assert!(d
            .explain()
            .contains("identity spiffe://h1/svc/home-assistant"));
        let d = p.evaluate(&s, "nas", Some(445));
        assert_eq!(d.rule(), "default:service");
        assert!(!d.allowed());
        // Group rules never match a service identity.
        p.rules.push(rule(
            "trusted-all",
            Action::Allow,
            vec![SourceMatch::Group("trusted".into())],
            None,
            &[],
        ));
        assert!(!p.evaluate(&s, "nas", Some(445)).allowed());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut p = Policy::default();
        p.rules
            .push(rule("", Action::Allow, vec![SourceMatch::Any], None, &[]));
        assert_eq!(
            p.validate().unwrap_err(),
            PolicyError::UnnamedRule { index: 0 }
        );
        p.rules[0].name = "a".into();
        p.rules
            .push(rule("a", Action::Deny, vec![SourceMatch::Any], None, &[]));
        assert_eq!(
            p.validate().unwrap_err(),
            PolicyError::DuplicateRule("a".into())
        );
        p.rules[1].name = "b".into();
        p.rules[1].sources = vec![SourceMatch::Group("kids".into())];
        let err = p.validate().unwrap_err().to_string();
        assert!(
            err.contains("\"kids\", which does not exist (groups: trusted, iot, guest)"),
            "{err}"
        );
        p.rules[1].sources.clear();
        assert_eq!(
            p.validate().unwrap_err(),
            PolicyError::NoSources("b".into())
        );
        p.rules.clear();
        p.unknown_device_group = "nobody".into();
        assert!(p.validate().is_err());
    }

    #[test]
    fn custom_groups_work_like_builtin_ones() {
        let mut p = Policy::default();
        p.groups.push(Group {
            name: "media".into(),
            default: GroupDefault::GrantedOnly,
        });
        p.rules.push(rule(
            "tv-to-nas-media",
            Action::Allow,
            vec![SourceMatch::Group("media".into())],
            Some("nas"),
            &[2049],
        ));
        p.validate().unwrap();
        let tv = src(&p, "TV");
        assert!(p.evaluate(&tv, "nas", Some(2049)).allowed());
        assert_eq!(p.evaluate(&tv, "nas", Some(445)).rule(), "default:media");
    }

    #[test]
    fn why_arguments_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_target("nas").unwrap(), ("nas".into(), None));
        assert_eq!(parse_target("nas:445").unwrap(), ("nas".into(), Some(445)));
        assert_eq!(
            parse_target("nas.trellis.home.arpa:80").unwrap(),
            ("nas".into(), Some(80))
        );
        assert!(parse_target("nas:http")
            .unwrap_err()
            .to_string()
            .contains("<service>:<port>"));
        assert!(parse_target(":80").is_err());
        let p = Policy::default();
        let err = p
            .resolve_source("fridge", &devices())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"fridge\""), "{err}");
        assert!("aa:bb:cc:dd:ee".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:ff:00".parse::<MacAddr>().is_err());
        assert_eq!(
            "AA-BB-CC-DD-EE-FF".parse::<MacAddr>().unwrap().to_string(),
            "aa:bb:cc:dd:ee:ff"
        );
    }

    #[test]
    fn why_resolves_names_macs_ips_and_mesh_names() {
        let mut p = Policy::default();
        p.rules.push(rule(
            "guests-print",
            Action::Allow,
            vec![SourceMatch::Group("guest".into())],
            Some("printer"),
            &[631],
        ));
        let d = why(&p, &devices(), "visitor", "printer.trellis.home.arpa:631").unwrap();
        assert!(d.allowed());
        assert!(
            d.explain().contains("rule \"guests-print\" allows it"),
            "{}",
            d.explain()
        );
        let d = why(&p, &devices(), "192.168.1.12", "nas").unwrap();
        assert_eq!(d.rule(), "default:guest");
        assert!(why(&p, &devices(), "nobody", "nas").is_err());
        assert!(why(&p, &devices(), "laptop", "nas:x").is_err());
    }

    #[test]
    fn policy_round_trips_through_json() {
        let mut p = Policy::default();
        p.rules.push(rule(
            "x",
            Action::Deny,
            vec![SourceMatch::Device(mac("02:00:00:00:00:01"))],
            Some("nas"),
            &[22],
        ));
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"device\":\"02:00:00:00:00:01\""), "{json}");
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
    }
}
