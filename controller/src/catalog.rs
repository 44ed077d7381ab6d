//! The catalog and the policy as the controller keeps them: services agents found or people
//! added, rules, device groups, and `why`. Stored in SQLite, shipped in the config snapshot.
//!
//! The store is written only when something changes: an agent reporting a service the catalog
//! already lists, at the same address and ports, writes nothing.

use std::net::IpAddr;

use trellis_proto::api::{NewService, SeenService, WhyAnswer};
use trellis_proto::catalog::{Catalog, Instance, LearnedVia, Service, ServicePort};
use trellis_proto::policy::{self, Device, Group, GroupDefault, Policy, Rule};
use trellis_proto::snapshot::PeerNode;
use trellis_proto::NodeName;

use crate::error::{HomeError, Kind, Result};
use crate::home::Home;
use crate::store::DeviceRow;

/// Services one agent report may carry (RAM and store stay bounded).
pub const MAX_REPORTED_SERVICES: usize = 64;
/// Instances one service may have.
pub const MAX_INSTANCES: usize = 8;
/// Instances a router's reports may put in the service it owns: the other half of the slots
/// stays free for the admin, so agent reports can never make the admin's own add fail.
pub const MAX_REPORTED_INSTANCES: usize = MAX_INSTANCES / 2;

/// Who may add instances to a service (and who is adding one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Added by hand on the web page or with `trellis add-service`: routers' reports cannot
    /// add to it.
    Admin,
    /// Reported by this router's agent first: only its later reports add to it.
    Router(NodeName),
}

/// The owner of a stored service: the admin once anything of it was added by hand, else the
/// router whose report created it (its first instance; instances are only ever appended).
pub fn owner(service: &Service) -> Owner {
    match (service.learned_via, service.instances.first()) {
        (LearnedVia::Manual, _) | (_, None) => Owner::Admin,
        (_, Some(first)) => Owner::Router(first.node.clone()),
    }
}

/// The snapshot's catalog: stored services, with instances behind nodes that are no longer
/// members marked unreachable (computed, not stored: no flash write on removal).
pub fn catalog_for(mut services: Vec<Service>, members: &[PeerNode]) -> Catalog {
    for s in &mut services {
        for i in &mut s.instances {
            i.reachable = members.iter().any(|n| n.name == i.node);
        }
    }
    Catalog { services }
}

/// The snapshot's device book from the store's rows (rows with a bad MAC are skipped: the
/// admin API validates MACs on the way in).
pub fn devices_for(rows: Vec<DeviceRow>) -> Vec<Device> {
    rows.into_iter()
        .filter_map(|d| {
            Some(Device {
                mac: d.mac.parse().ok()?,
                name: d.name,
                ips: Vec::new(),
                group: d.group,
            })
        })
        .collect()
}

fn bad(e: impl std::fmt::Display) -> HomeError {
    HomeError::new(Kind::BadRequest, e.to_string())
}

impl Home {
    /// The catalog as people see it: instances behind removed routers, and behind routers
    /// silent past the node timeout, are unreachable. (Agents are not told of silence: their
    /// proxies find a dead router themselves, try the next instance and open a breaker.)
    pub fn services(&self) -> Result<Vec<Service>> {
        let silent = self.silent_nodes();
        let mut services = self.snapshot().catalog.services.clone();
        for i in services.iter_mut().flat_map(|s| s.instances.iter_mut()) {
            if silent.contains(&i.node) {
                i.reachable = false;
            }
        }
        Ok(services)
    }

    /// A person adds a service by hand (a device that announces nothing). The admin may add
    /// to any service; one a router reported becomes the admin's.
    pub fn add_service(&self, new: &NewService) -> Result<Service> {
        self.put_instance(
            &new.name,
            &new.node,
            new.addr,
            &new.ports,
            LearnedVia::Manual,
            Owner::Admin,
        )
    }

    /// An agent reports a service it found behind it: it may create a service, and add to
    /// one it owns up to its share, never to another router's or the admin's.
    pub fn learn_service(&self, node: &NodeName, seen: &SeenService) -> Result<Service> {
        let via = match seen.learned_via {
            // Only a person types services in; a report saying so is still a report.
            LearnedVia::Manual => LearnedVia::Host,
            via => via,
        };
        self.put_instance(
            &seen.name,
            node,
            seen.addr,
            &seen.ports,
            via,
            Owner::Router(node.clone()),
        )
    }

    fn put_instance(
        &self,
        name: &str,
        node: &NodeName,
        addr: IpAddr,
        ports: &[u16],
        via: LearnedVia,
        by: Owner,
    ) -> Result<Service> {
        if ports.is_empty() || ports.len() > 16 || ports.contains(&0) {
            return Err(bad("a service needs 1 to 16 ports, each 1-65535"));
        }
        if !self.snapshot().nodes.iter().any(|n| &n.name == node) {
            return Err(HomeError::new(
                Kind::NotFound,
                format!("no router named {node} in this home (trellis nodes lists them)"),
            ));
        }
        let mut catalog = Catalog {
            services: self.store.services()?,
        };
        let instance = Instance {
            node: node.clone(),
            addr,
            reachable: true,
        };
        let mut ports: Vec<ServicePort> = ports.iter().map(|p| ServicePort::new(*p)).collect();
        ports.sort_by_key(|p| p.port);
        ports.dedup();
        let service = match catalog.services.iter_mut().find(|s| s.name == name) {
            Some(existing) => {
                let new_instance = !existing
                    .instances
                    .iter()
                    .any(|i| i.node == instance.node && i.addr == instance.addr);
                let new_ports: Vec<ServicePort> = ports
                    .into_iter()
                    .filter(|p| !existing.ports.contains(p))
                    .collect();
                // The same thing again changes nothing, whoever says it (a router may see
                // the admin's device too).
                if !new_instance && new_ports.is_empty() {
                    return Ok(existing.clone());
                }
                let mut owner = owner(existing);
                // A removed router owns nothing: the next router that reports its service
                // takes it over, and the removed one's instances (unreachable) go.
                if let (Owner::Router(r), Owner::Router(_)) = (&owner, &by) {
                    if r != node && !self.snapshot().nodes.iter().any(|n| &n.name == r) {
                        let gone = r.clone();
                        existing.instances.retain(|i| i.node != gone);
                        tracing::info!(service = %name, from = %gone, to = %node, "a removed router's service passes to the router that reports it now");
                        owner = by.clone();
                        if existing.instances.is_empty() {
                            existing.learned_via = via;
                        }
                    }
                }
                match &by {
                    Owner::Router(_) if owner != by => {
                        let whose = match &owner {
                            Owner::Admin => "the admin's (added by hand)".to_owned(),
                            Owner::Router(r) => format!("router {r}'s, which reported it first"),
                        };
                        return Err(HomeError::new(
                            Kind::Forbidden,
                            format!("service {name:?} is {whose}: router {node} cannot add to it"),
                        ));
                    }
                    Owner::Router(_)
                        if new_instance && existing.instances.len() >= MAX_REPORTED_INSTANCES =>
                    {
                        return Err(HomeError::new(
                            Kind::Forbidden,
                            format!("router {node} already reports {MAX_REPORTED_INSTANCES} instances of service {name:?}, its share; the admin can add more"),
                        ));
                    }
                    Owner::Router(_) => {}
                    Owner::Admin => {
                        if let Owner::Router(r) = &owner {
                            tracing::info!(service = %name, router = %r, "the admin takes over a service a router reported");
                            existing.learned_via = LearnedVia::Manual;
                            // Stored before routers had a share: a router's instance gives
                            // way to the admin's.
                            if new_instance && existing.instances.len() >= MAX_INSTANCES {
                                existing.instances.remove(0);
                            }
                        }
                        if new_instance && existing.instances.len() >= MAX_INSTANCES {
                            return Err(bad(format!(
                                "service {name:?} already has {MAX_INSTANCES} instances (trellis remove-service, then add the ones you want)"
                            )));
                        }
                    }
                }
                if new_instance {
                    existing.instances.push(instance);
                }
                existing.ports.extend(new_ports);
                existing.clone()
            }
            None => catalog
                .add(self.home_id(), name, ports, vec![instance], via)
                .map_err(bad)?
                .clone(),
        };
        self.store.put_service(&service)?;
        self.publish()?;
        tracing::info!(service = %service.name, vip = %service.vip, via = %via, "catalog updated");
        self.record(
            "catalog",
            format!(
                "service {} ({}) at {addr} behind {node}, found by {via}",
                service.name,
                service.mesh_name()
            ),
        );
        Ok(service)
    }

    pub fn remove_service(&self, name: &str) -> Result<u64> {
        let version = self.store.remove_service(name)?;
        self.publish()?;
        Ok(version)
    }

    pub fn policy(&self) -> Policy {
        self.snapshot().policy.clone()
    }

    fn change_policy(&self, change: impl FnOnce(&mut Policy) -> Result<()>) -> Result<u64> {
        let mut policy = self.policy();
        change(&mut policy)?;
        policy.validate().map_err(bad)?;
        let version = self.store.put_policy(&policy)?;
        self.publish()?;
        Ok(version)
    }

    pub fn add_rule(&self, rule: Rule) -> Result<u64> {
        let name = rule.name.clone();
        let version = self.change_policy(|p| {
            p.rules.push(rule);
            Ok(())
        })?;
        tracing::info!(rule = %name, version, "policy rule added");
        self.record("policy", format!("policy rule {name} added"));
        Ok(version)
    }

    pub fn remove_rule(&self, name: &str) -> Result<u64> {
        self.change_policy(|p| {
            let before = p.rules.len();
            p.rules.retain(|r| r.name != name);
            if p.rules.len() == before {
                return Err(HomeError::new(
                    Kind::NotFound,
                    format!("no rule named {name:?} (trellis policy lists them)"),
                ));
            }
            Ok(())
        })
    }

    /// A group people make: reaches only what rules grant, like `iot`.
    pub fn add_group(&self, name: &str) -> Result<u64> {
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("a group name has 1-32 characters a-z, 0-9 and '-'"));
        }
        self.change_policy(|p| {
            p.groups.push(Group {
                name: name.to_owned(),
                default: GroupDefault::GrantedOnly,
            });
            Ok(())
        })
    }

    /// `trellis why <source> <service>[:port]`.
    pub fn why(&self, source: &str, target: &str) -> Result<WhyAnswer> {
        let snapshot = self.snapshot();
        let joined = self.joined_networks();
        let decision =
            policy::why_joined(&snapshot.policy, &snapshot.devices, source, target, |mac| {
                joined.get(&mac).cloned()
            })
            .map_err(|e| HomeError::new(Kind::NotFound, e.to_string()))?;
        Ok(WhyAnswer {
            allowed: decision.allowed(),
            rule: decision.rule(),
            explanation: decision.explain(),
        })
    }
}
