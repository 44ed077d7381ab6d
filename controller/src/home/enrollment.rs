//! Who belongs to the home: pairing codes and the PAKE exchange that enrolls a router,
//! the check that a peer is still enrolled, certificate renewal, and removal (which revokes).

use crate::ca::unix_now;
use crate::error::{HomeError, Kind, Result};
use crate::metrics::PairingRefusal as Refused;
use crate::pairing::PairingError;
use crate::pairing::Progress;
use std::time::Instant;
use trellis_proto::api::{NewPairingCode, RemovedNode, RenewResponse};
use trellis_proto::pairing::{HomeSecrets, PairChallenge, PairFinish, PairStart, PairWelcome};
use trellis_proto::{CertSerial, NodeName, SpiffeId};

use super::Home;

impl Home {
    /// A pairing code for a satellite, or (`this_router`) for the agent on the router the
    /// controller itself runs on, which then shows as the portal.
    pub fn new_pairing_code(&self, this_router: bool) -> Result<NewPairingCode> {
        let code = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .new_code(Instant::now(), this_router)?;
        tracing::info!(slot = %code.slot, this_router, "pairing code issued, valid 10 minutes");
        Ok(NewPairingCode {
            code: code.display(),
            expires_in_s: crate::pairing::CODE_LIFETIME.as_secs(),
        })
    }

    /// Step 2 of a pairing, for an agent at `peer` (`None`: not known, one shared budget).
    /// What the agent learns is the same whether its slot has an open code or not; the log
    /// says which, and lines a LAN client can cause at will are written once per interval.
    pub fn pair_start(
        &self,
        req: &PairStart,
        peer: Option<std::net::IpAddr>,
    ) -> Result<PairChallenge> {
        let peer = peer.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        self.counters.pairing_started();
        let admitted = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(peer, now);
        if let Err(e) = admitted {
            self.counters.pairing_refused(Refused::RateLimited);
            if let Some(times) = self.pairing_refusals.hit(now) {
                tracing::warn!(node = %req.node_name, %peer, times, error = %e, "pairing refused");
            }
            return Err(e.into());
        }
        if self.is_enrolled(&req.node_name)? {
            self.counters.pairing_refused(Refused::NameTaken);
            return Err(HomeError::new(
                Kind::Conflict,
                format!(
                    "a router named {} is already in this home: pick another name (trellis-agent join --name …) or remove it first (trellis remove-node {})",
                    req.node_name,
                    req.node_name
                ),
            ));
        }
        let started = self.pairing.lock().unwrap_or_else(|p| p.into_inner()).run(
            req,
            self.home_id(),
            self.ca.cert_pem(),
            now,
        );
        match started {
            Ok((challenge, crate::pairing::Started::Code { tries })) => {
                tracing::info!(node = %req.node_name, slot = %req.slot, tries, "pairing started");
                Ok(challenge)
            }
            Ok((challenge, crate::pairing::Started::Decoy)) => {
                if let Some(times) = self.pairing_refusals.hit(now) {
                    tracing::warn!(node = %req.node_name, %peer, times, "pairing tried with codes that are not open (expired, used, burned or never issued)");
                }
                Ok(challenge)
            }
            Err(e) => {
                self.counters.pairing_refused(Refused::Invalid);
                if let Some(times) = self.pairing_refusals.hit(now) {
                    tracing::warn!(node = %req.node_name, %peer, times, error = %e, "pairing refused");
                }
                Err(e.into())
            }
        }
    }

    pub fn pair_finish(&self, req: &PairFinish) -> Result<PairWelcome> {
        let admitted = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish(req, Instant::now());
        let admitted = match admitted {
            Ok(a) => a,
            // A run against an open code: bounded by its tries, worth a line and an event.
            Err(PairingError::WrongCode { tries: Some(tries) }) => {
                self.counters.pairing_refused(Refused::WrongCode);
                tracing::warn!(
                    tries,
                    "pairing failed: wrong code (try {tries} of {})",
                    crate::pairing::MAX_TRIES
                );
                self.record(
                    "pairing",
                    format!(
                        "a pairing attempt failed: wrong code (try {tries} of {})",
                        crate::pairing::MAX_TRIES
                    ),
                );
                return Err(PairingError::WrongCode { tries: Some(tries) }.into());
            }
            Err(e) => {
                self.counters.pairing_refused(match e {
                    PairingError::WrongCode { tries: None } => Refused::CodeNotOpen,
                    _ => Refused::Invalid,
                });
                if let Some(times) = self.pairing_refusals.hit(Instant::now()) {
                    tracing::warn!(times, error = %e, "pairing failed");
                }
                return Err(e.into());
            }
        };
        let identity = SpiffeId::node(self.home_id(), &admitted.node_name);
        let issued = self
            .ca
            .sign_csr(&admitted.csr_pem, &identity, self.settings.leaf_ttl)?;
        self.store
            .enroll_node(&identity, &issued.serial, issued.not_after, unix_now())?;
        if admitted.this_router {
            self.store.set_portal_node(&admitted.node_name)?;
        }
        self.publish()?;
        self.counters.pairing_enrolled();
        tracing::info!(%identity, "router enrolled");
        self.record(
            "enrolled",
            format!("router {} joined the home", admitted.node_name),
        );
        let secrets = HomeSecrets {
            mesh: self.mesh.clone(),
            controller_api: self.settings.advertise.clone(),
        };
        let json = serde_json::to_vec(&secrets)
            .map_err(|e| HomeError::new(Kind::Internal, e.to_string()))?;
        Ok(PairWelcome {
            identity,
            cert_pem: issued.cert_pem,
            sealed: admitted.keys.seal(&json),
        })
    }

    pub fn pair_abort(&self, session: &str) -> Result<()> {
        let (node, tries) = self
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort(session)
            .ok_or(PairingError::UnknownSession)?;
        match tries {
            Some(tries) => {
                self.counters.pairing_refused(Refused::WrongCode);
                tracing::warn!(%node, tries, "pairing failed: the agent was given a wrong code (try {tries} of {})", crate::pairing::MAX_TRIES);
                self.record(
                    "pairing",
                    format!(
                        "router {node} was given a wrong pairing code (try {tries} of {})",
                        crate::pairing::MAX_TRIES
                    ),
                );
            }
            // A code that is not open: anyone on the LAN can cause this at will.
            None => {
                self.counters.pairing_refused(Refused::CodeNotOpen);
                if let Some(times) = self.pairing_refusals.hit(Instant::now()) {
                    tracing::warn!(%node, times, "pairing failed: the agent's code is not open (expired, used, burned or never issued)");
                }
            }
        }
        Ok(())
    }

    pub(super) fn is_enrolled(&self, name: &NodeName) -> Result<bool> {
        Ok(self
            .store
            .nodes()?
            .iter()
            .any(|n| &n.name == name && n.revoked_at.is_none()))
    }

    /// The node behind a verified client certificate, if it is still a member of the home.
    pub fn authorize(&self, identity: &SpiffeId, serial: &CertSerial) -> Result<NodeName> {
        let refuse = |why: &str| HomeError::new(Kind::Forbidden, format!("{identity} {why}"));
        // The home's one peer rule first (the agents' data plane asks the same), then what
        // only the controller knows: which serials it issued.
        self.snapshot()
            .admit(identity, serial)
            .map_err(|e| HomeError::new(Kind::Forbidden, e.to_string()))?;
        let name = identity
            .node_name()
            .ok_or_else(|| refuse("is not a router identity"))?;
        // Pinned serials: the CA signing it is not enough, this controller must have issued
        // it to this router, and the router must not have moved on to a renewed one since.
        let issued = self.store.valid_serials(&name, unix_now())?;
        let Some(age) = issued.iter().position(|s| s == serial) else {
            return Err(refuse(
                "presents a certificate this controller did not issue to it (or one that expired); pair the router again",
            ));
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(name.clone()).or_default();
        let newest_used = entry
            .newest_serial
            .as_ref()
            .and_then(|used| issued.iter().position(|s| s == used));
        match newest_used {
            Some(used) if age > used => {
                return Err(refuse(
                    "presents a certificate that a renewed one has replaced; restart trellis-agent so it uses the newest",
                ))
            }
            Some(used) if age == used => {}
            _ => entry.newest_serial = Some(serial.clone()),
        }
        entry.last_seen = Some(Instant::now());
        Ok(name)
    }

    pub fn renew(&self, node: &NodeName, csr_pem: &str) -> Result<RenewResponse> {
        let identity = SpiffeId::node(self.home_id(), node);
        let issued = self
            .ca
            .sign_csr(csr_pem, &identity, self.settings.leaf_ttl)?;
        self.store
            .record_certificate(node, &issued.serial, issued.not_after, unix_now())?;
        tracing::info!(%identity, not_after = issued.not_after, "certificate renewed");
        Ok(RenewResponse {
            cert_pem: issued.cert_pem,
            not_after: issued.not_after,
        })
    }

    pub fn remove_node(&self, name: &NodeName) -> Result<RemovedNode> {
        let (identity, config_version) = self.store.revoke_node(name, unix_now())?;
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.publish()?;
        self.speedtests.forget_node(name, unix_now());
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_node(name);
        self.graph
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_node(name);
        tracing::info!(%identity, config_version, "router removed and its identity revoked");
        self.record(
            "removed",
            format!("router {name} was removed; its identity is revoked"),
        );
        Ok(RemovedNode {
            identity,
            config_version,
        })
    }

    /// How far the pairing with the code whose slot is `slot` got.
    pub fn pairing_progress(&self, slot: &str) -> Progress {
        self.pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .progress(slot, Instant::now())
    }
}
