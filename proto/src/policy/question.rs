//! The question `trellis why <source> <service>[:port]` asks: resolving the source (device
//! name, MAC, IP address or SPIFFE ID), parsing the target, and deciding.

use std::net::IpAddr;

use super::{Decision, Device, Joined, MacAddr, Policy, PolicyError, Source};
use crate::identity::SpiffeId;

impl Policy {
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
