//! Trust rules both sides share (feature `tls`): certificates carry exactly one SPIFFE ID as a
//! URI SAN; every Trellis TLS connection is TLS 1.3 with the ring provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::SpiffeId;

/// Certificates start this long before they are issued, so a router whose clock lags a
/// little still accepts them. Agents subtract it to know when a certificate was really
/// issued (renewal is timed from that).
pub const CERT_BACKDATE_S: u64 = 300;

/// The name agents use to verify the controller's server certificate, whatever address they
/// reach it by (the controller's IP may change; its certificate names this).
pub const CONTROLLER_SERVER_NAME: &str = "controller.trellis.home.arpa";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate is not valid DER X.509: {0}")]
    Parse(String),
    #[error("certificate carries no SPIFFE ID (URI SAN)")]
    NoSpiffeId,
    #[error("certificate carries more than one URI SAN; Trellis certificates carry exactly one")]
    SeveralUris,
    #[error(transparent)]
    BadId(#[from] crate::identity::IdentityError),
    #[error("no PEM {what} found in {source_name}")]
    NoPem {
        what: &'static str,
        source_name: String,
    },
}

/// What Trellis needs from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub identity: SpiffeId,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Serial number, lowercase hex.
    pub serial: crate::identity::CertSerial,
}

/// Parse a certificate's SPIFFE ID, lifetime and serial.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push(*uri);
            }
        }
    }
    let identity = match uris.as_slice() {
        [] => return Err(CertError::NoSpiffeId),
        [one] => one.parse::<SpiffeId>()?,
        _ => return Err(CertError::SeveralUris),
    };
    let validity = cert.validity();
    Ok(CertFacts {
        identity,
        not_before: validity.not_before.timestamp().max(0) as u64,
        not_after: validity.not_after.timestamp().max(0) as u64,
        serial: crate::identity::CertSerial::from_bytes(cert.raw_serial()),
    })
}

/// All certificates in a PEM text, in order.
pub fn certs_from_pem(
    pem: &str,
    source_name: &str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CertError::NoPem {
            what: "certificate",
            source_name: source_name.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM text (PKCS#8, SEC1 or PKCS#1).
pub fn key_from_pem(pem: &str, source_name: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| CertError::NoPem {
        what: "private key",
        source_name: source_name.to_owned(),
    })
}

/// The one crypto provider of Trellis: ring (no cmake, cross-compiles to every router CPU).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 only: every Trellis connection, control and data plane.
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The handshake-signature half of a custom rustls certificate verifier, the same for every
/// verifier of Trellis: TLS 1.3 signatures checked with the provider's algorithms, TLS 1.2
/// refused (it is never offered). Verifiers differ only in how they judge the certificate.
#[derive(Debug, Clone)]
pub struct Tls13Signatures(Arc<CryptoProvider>);

impl Default for Tls13Signatures {
    fn default() -> Self {
        Self(provider())
    }
}

impl Tls13Signatures {
    pub fn tls12(&self) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub fn schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }

    /// The provider's signature algorithms, for checking a chain by hand.
    pub fn algorithms(
        &self,
    ) -> &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm] {
        self.0.signature_verification_algorithms.all
    }
}

/// A root store holding the home CA(s) from a PEM bundle.
pub fn root_store(ca_pem: &str) -> Result<rustls::RootCertStore, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(ca_pem, "the home CA bundle")? {
        roots
            .add(cert)
            .map_err(|e| CertError::Parse(format!("home CA: {e}")))?;
    }
    Ok(roots)
}
