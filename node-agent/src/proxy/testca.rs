//! A throwaway home CA for tests, benches and the demo: issues SPIFFE URI-SAN certificates
//! the way the controller's CA does (P-256, URI SAN only, serverAuth + clientAuth).
//! The running agent gets its identity from the controller instead.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use trellis_proto::{HomeId, SpiffeId};

use super::tls::{NodeIdentity, TrustBundle};

pub struct TestCa {
    pub home: HomeId,
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    next_serial: portable_atomic::AtomicU64,
    /// Every node identity issued so far: the routers of the test home.
    nodes: std::sync::Mutex<std::collections::HashSet<SpiffeId>>,
}

impl TestCa {
    pub fn new(home: &str) -> anyhow::Result<Self> {
        let home = HomeId::new(home)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Trellis test CA {home}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Self {
            home,
            issuer: Issuer::new(params, key),
            cert,
            next_serial: 2.into(),
            nodes: Default::default(),
        })
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// A trust bundle with this CA, every router it issued so far enrolled, nothing revoked.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle {
            roots: vec![self.root()],
            peers: trellis_proto::snapshot::PeerTrust {
                home: Some(self.home.clone()),
                version: 1,
                nodes: self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                ..Default::default()
            },
        }
    }

    pub fn bundle_arc(&self) -> Arc<TrustBundle> {
        Arc::new(self.bundle())
    }

    /// Issue a certificate for `id` (any SPIFFE ID, even of another home: tests use that).
    pub fn issue(&self, id: &SpiffeId) -> anyhow::Result<NodeIdentity> {
        if id.kind == trellis_proto::identity::Workload::Node {
            self.nodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone());
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.serial_number = Some(serial.to_be_bytes().to_vec().into());
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(60)).into();
        params.not_after = (now + std::time::Duration::from_secs(24 * 3600)).into();
        let not_after = params.not_after.unix_timestamp().max(0) as u64;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeIdentity {
            id: id.clone(),
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
        })
    }

    /// Issue for `spiffe://<home>/node/<name>`.
    pub fn issue_node(&self, name: &str) -> anyhow::Result<NodeIdentity> {
        let node = trellis_proto::NodeName::new(name)?;
        self.issue(&SpiffeId::node(&self.home, &node))
    }
}
