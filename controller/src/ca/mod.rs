//! The home's certificate authority.
//!
//! One root per home: ECDSA P-256, ten years, made on the controller's first start. It signs
//! node certificates from CSRs, taking the identity (URI SAN) from the controller's own
//! enrollment record and never from the CSR: a CSR contributes only its public key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;
use trellis_proto::tls::CONTROLLER_SERVER_NAME;
use trellis_proto::{HomeId, SpiffeId};

/// Ten years, as a router CA outlives many firmware upgrades.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start a little in the past so a satellite whose clock lags still accepts them.
const BACKDATE: Duration = Duration::from_secs(trellis_proto::tls::CERT_BACKDATE_S);
/// Leaf lifetimes: the admin chooses 1 hour to 7 days (default 24 h).
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CSR is not a valid PKCS#10 request or its signature does not verify: {0}")]
    BadCsr(String),
    #[error("the CSR's key is not ECDSA P-256; Trellis agents generate P-256 keys")]
    WrongKeyType,
    #[error("stored CA material is unreadable: {0}; restore it from a backup (trellis ca-backup)")]
    BadStoredCa(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    /// Lowercase hex.
    pub serial: trellis_proto::CertSerial,
    /// Unix seconds.
    pub not_after: u64,
}

/// The root CA of one home.
pub struct HomeCa {
    home_id: HomeId,
    cert_pem: String,
    key_pem: String,
    not_after: u64,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for HomeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeCa")
            .field("home_id", &self.home_id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

pub use trellis_io::unix_now;

fn offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte: a 16-byte DER INTEGER, as RFC 5280 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

impl HomeCa {
    /// Make a new root for a new home.
    pub fn generate(home_id: &HomeId) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Trellis home");
        dn.push(DnType::CommonName, format!("Trellis root CA {home_id}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(now + ROOT_LIFETIME);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Self::from_pem(home_id.clone(), &cert.pem(), &key_pem)
    }

    /// Load a stored root.
    pub fn from_pem(home_id: HomeId, cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadStoredCa(e.to_string()))?;
        let der = trellis_proto::tls::certs_from_pem(cert_pem, "the stored CA")
            .map_err(|e| CaError::BadStoredCa(e.to_string()))?;
        let not_after = {
            use x509_parser::prelude::{FromDer, X509Certificate};
            let (_, cert) = X509Certificate::from_der(&der[0])
                .map_err(|e| CaError::BadStoredCa(e.to_string()))?;
            cert.validity().not_after.timestamp().max(0) as u64
        };
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| CaError::BadStoredCa(e.to_string()))?;
        Ok(Self {
            home_id,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            not_after,
            issuer,
        })
    }

    pub fn home_id(&self) -> &HomeId {
        &self.home_id
    }
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    /// The CA private key, PEM. A secret: only for the store and the admin's backup.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// Sign a node's CSR. The identity is `identity` (from the enrollment record); the CSR's
    /// own names and extensions are ignored.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::WrongKeyType);
        }
        // The command line keeps the admin's choice within 1 h..7 d; tests use seconds.
        let ttl = ttl.min(MAX_LEAF_TTL);
        self.issue(&csr.public_key, identity, &[], ttl)
    }

    /// The controller's own server certificate: its SPIFFE ID plus the fixed DNS name agents
    /// verify ([`CONTROLLER_SERVER_NAME`]), so its IP address may change freely.
    pub fn issue_controller_cert(&self, ttl: Duration) -> Result<(Issued, KeyPair), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let id = SpiffeId::service(&self.home_id, "trellis-controller")
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let issued = self.issue(&key, &id, &[CONTROLLER_SERVER_NAME], ttl)?;
        Ok((issued, key))
    }

    fn issue(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        identity: &SpiffeId,
        dns_names: &[&str],
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.name.clone());
        params.distinguished_name = dn;
        let uri = identity
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Generate(e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        for name in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into()?));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let not_after = now + ttl;
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(not_after);
        let serial = random_serial();
        let serial_hex = trellis_proto::CertSerial::from_bytes(&serial.to_bytes());
        params.serial_number = Some(serial);
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            serial: serial_hex,
            not_after: not_after
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests;
