//! [`Policy::validate`]: whether a policy is well-formed (named, unique rules, groups
//! defined once, every group a rule or the unknown-device default names exists), with an
//! error that names the problem.

use super::{Policy, PolicyError, SourceMatch};

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
}
