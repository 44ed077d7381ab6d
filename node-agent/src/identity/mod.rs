//! The node's identity: a P-256 key made on this router, a certificate from the home CA, and
//! the renewal schedule.
//!
//! Renewal follows the brief: at 50 % of the certificate's life with ±10 % jitter (so a home
//! of routers paired together does not renew in lockstep), exponential backoff from 0.5 s to
//! 150 s on failure, and the old certificate keeps being served until it expires.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use trellis_proto::tls::{cert_facts, certs_from_pem, key_from_pem, provider, CertFacts};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("could not generate a key or CSR: {0}")]
    Generate(String),
    #[error("the node certificate is unusable: {0}")]
    BadCert(String),
}

/// A fresh key and the CSR to send for it. The CSR carries no names: the controller decides
/// the identity from its enrollment record.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

pub fn new_key_and_csr(node_name: &str) -> Result<KeyAndCsr, IdentityError> {
    let err = |e: rcgen::Error| IdentityError::Generate(e.to_string());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(err)?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(err)?,
    })
}

/// The node's current certificate and key, ready for rustls.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub facts: CertFacts,
    pub certified: Arc<CertifiedKey>,
    /// `identity.pem`: certificate then key, as stored.
    pub pem: String,
}

impl NodeIdentity {
    pub fn from_pem(cert_and_key_pem: &str) -> Result<Self, IdentityError> {
        let bad = |e: &dyn std::fmt::Display| IdentityError::BadCert(e.to_string());
        let certs = certs_from_pem(cert_and_key_pem, "identity.pem").map_err(|e| bad(&e))?;
        let key = key_from_pem(cert_and_key_pem, "identity.pem").map_err(|e| bad(&e))?;
        let facts = cert_facts(&certs[0]).map_err(|e| bad(&e))?;
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| bad(&e))?;
        Ok(Self {
            facts,
            certified: Arc::new(CertifiedKey::new(certs, signing)),
            pem: cert_and_key_pem.to_owned(),
        })
    }

    pub fn from_parts(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        Self::from_pem(&format!("{}\n{}", cert_pem.trim_end(), key_pem))
    }
}

/// Hands rustls the current certificate; renewal swaps it in place, so connections opened
/// later use the new one while the old one stays valid for those already open.
#[derive(Debug)]
pub struct CurrentIdentity(RwLock<NodeIdentity>);

impl CurrentIdentity {
    pub fn new(identity: NodeIdentity) -> Arc<Self> {
        Arc::new(Self(RwLock::new(identity)))
    }
    pub fn get(&self) -> NodeIdentity {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn replace(&self, identity: NodeIdentity) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = identity;
    }
}

impl ResolvesClientCert for CurrentIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get().certified)
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// When to renew a certificate valid from `not_before` to `not_after` (unix seconds):
/// at half its life, moved by up to ±10 % of that half. Life counts from issuance, not from
/// the backdated `not_before`, or short-lived certificates would renew at once.
pub fn renewal_at(not_before: u64, not_after: u64, rng: &mut impl Rng) -> u64 {
    let issued = (not_before + trellis_proto::tls::CERT_BACKDATE_S).min(not_after);
    let half = not_after.saturating_sub(issued) / 2;
    let spread = half / 10;
    let jitter = if spread == 0 {
        0
    } else {
        rng.gen_range(0..=2 * spread)
    };
    issued + half - spread + jitter
}

/// Exponential backoff after failed renewals: 0.5 s, 1 s, 2 s … capped at 150 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(150);

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        d
    }
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_lands_at_half_life_give_or_take_a_tenth() {
        let mut rng = rand::thread_rng();
        let start = 1_000_000u64 + trellis_proto::tls::CERT_BACKDATE_S;
        let end = start + 24 * 3600;
        let not_before = start - trellis_proto::tls::CERT_BACKDATE_S;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let at = renewal_at(not_before, end, &mut rng);
            let frac = (at - start) as f64 / (end - start) as f64;
            assert!((0.45..=0.55).contains(&frac), "renewal at {frac}");
            seen.insert(at);
        }
        assert!(
            seen.len() > 100,
            "jitter must spread renewals, saw {} distinct times",
            seen.len()
        );
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_150_seconds() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..12).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(&delays[..4], &[500, 1000, 2000, 4000]);
        assert_eq!(*delays.last().unwrap(), 150_000);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_START);
    }

    #[test]
    fn the_csr_names_nothing_but_the_common_name() {
        let kc = new_key_and_csr("attic").unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&kc.csr_pem).unwrap();
        assert!(parsed.params.subject_alt_names.is_empty());
        assert!(kc.key_pem.contains("PRIVATE KEY"));
    }
}
