//! `trellis-agent join`: enroll this router in a home with a pairing code.
//!
//! See `trellis_proto::pairing` for the exchange. The agent trusts nothing the controller
//! says until the controller's SPAKE2 confirmation checks out; only then does it pin the CA.

use std::sync::Arc;

use hyper::Method;
use rustls::server::WebPkiClientVerifier;
use trellis_proto::pairing::{
    HomeSecrets, PairChallenge, PairFinish, PairStart, PairWelcome, PairingCode,
};
use trellis_proto::pake::AgentPake;
use trellis_proto::tls::{certs_from_pem, provider, root_store};
use trellis_proto::{NodeName, SpiffeId};

use crate::control::{tls, Controller};
use crate::identity::{self, NodeIdentity};
use crate::state::{NodeRecord, StateDir};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("this router already belongs to home {0}; to move it to another home run join again with --force")]
    AlreadyJoined(String),
    #[error("the controller at {0} did not prove it knows this pairing code. Check the code (single use, valid 10 minutes, void after 5 wrong tries) and ask for a new one if needed. If the code is right, the device at {0} is not your Trellis controller: nothing was saved")]
    ControllerNotProven(String),
    #[error("the controller refused the pairing: {0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

impl From<crate::control::CallError> for JoinError {
    fn from(e: crate::control::CallError) -> Self {
        match e {
            crate::control::CallError::Api { source, .. } => JoinError::Refused(source.to_string()),
            other => JoinError::Other(other.to_string()),
        }
    }
}

fn other(e: impl std::fmt::Display) -> JoinError {
    JoinError::Other(e.to_string())
}

/// What joining produced.
#[derive(Debug, Clone)]
pub struct Joined {
    pub node: NodeRecord,
    pub not_after: u64,
}

pub async fn join(
    controller_addr: &str,
    code: &PairingCode,
    name: &NodeName,
    state: &StateDir,
    force: bool,
) -> Result<Joined, JoinError> {
    if state.is_joined() && !force {
        let home = state
            .node()
            .map(|n| n.home_id.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(JoinError::AlreadyJoined(home));
    }
    let controller = Controller::new(controller_addr, tls::pairing_config().map_err(other)?);
    let kc = identity::new_key_and_csr(name.as_str()).map_err(other)?;

    let (pake, spake_a) = AgentPake::start(&code.secret);
    let start = PairStart {
        slot: code.slot.clone(),
        node_name: name.clone(),
        spake_a,
    };
    let challenge: PairChallenge = controller
        .json(Method::POST, "/v1/pair/start", Some(&start))
        .await?;
    let keys = pake
        .finish(
            &challenge.spake_b,
            name.as_str(),
            challenge.home_id.as_str(),
            &challenge.ca_pem,
        )
        .map_err(|_| JoinError::ControllerNotProven(controller.addr.clone()));
    let keys = match keys {
        Ok(k) if k.verify_controller_confirm(&challenge.confirm).is_ok() => k,
        _ => {
            // Tell the controller, so its log says a wrong code was typed.
            let abort = serde_json::json!({ "session": challenge.session });
            let _ = controller
                .call(Method::POST, "/v1/pair/abort", Some(&abort))
                .await;
            return Err(JoinError::ControllerNotProven(controller.addr.clone()));
        }
    };
    // From here the CA is authentic: its PEM is bound into the confirmed transcript.
    root_store(&challenge.ca_pem).map_err(other)?;

    let finish = PairFinish {
        session: challenge.session.clone(),
        confirm: keys.agent_confirm(&kc.csr_pem),
        csr_pem: kc.csr_pem,
    };
    let welcome: PairWelcome = controller
        .json(Method::POST, "/v1/pair/finish", Some(&finish))
        .await?;
    let expected = SpiffeId::node(&challenge.home_id, name);
    let node_identity = NodeIdentity::from_parts(&welcome.cert_pem, &kc.key_pem).map_err(other)?;
    if node_identity.facts.identity != expected || welcome.identity != expected {
        return Err(other(format!(
            "the controller issued {} but this router is {expected}",
            node_identity.facts.identity
        )));
    }
    verify_chain(&challenge.ca_pem, &welcome.cert_pem)?;
    let secrets: HomeSecrets = keys
        .open(&welcome.sealed)
        .ok()
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .ok_or_else(|| other("the home secrets from the controller do not open; pair again"))?;

    let node = NodeRecord {
        identity: expected,
        home_id: challenge.home_id.clone(),
        controller: if secrets.controller_api.is_empty() {
            controller.addr.clone()
        } else {
            secrets.controller_api.clone()
        },
    };
    state.create().map_err(other)?;
    state.save_ca_pem(&challenge.ca_pem).map_err(other)?;
    state.save_identity_pem(&node_identity.pem).map_err(other)?;
    state.save_mesh(&secrets.mesh).map_err(other)?;
    // node.json last: its presence is what makes the router count as joined.
    state.save_node(&node).map_err(other)?;
    Ok(Joined {
        node,
        not_after: node_identity.facts.not_after,
    })
}

/// The issued certificate must chain to the CA the confirmed transcript named.
fn verify_chain(ca_pem: &str, cert_pem: &str) -> Result<(), JoinError> {
    let roots = Arc::new(root_store(ca_pem).map_err(other)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(other)?;
    let certs = certs_from_pem(cert_pem, "the issued certificate").map_err(other)?;
    verifier
        .verify_client_cert(&certs[0], &certs[1..], rustls_pki_types::UnixTime::now())
        .map_err(|e| {
            other(format!(
                "the issued certificate does not chain to the home CA: {e}"
            ))
        })?;
    Ok(())
}
