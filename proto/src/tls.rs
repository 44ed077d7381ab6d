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

/// The one crypto provider of Trellis: ring (no cmake, cross-compiles to every router CPU),
/// its cipher suites ordered by what this CPU runs fast ([`suites_for`], [`cpu_aes`]).
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = suites_for(local_aead());
    Arc::new(p)
}

/// The AEAD a Trellis TLS connection prefers. Both ends of every tunnel are Trellis, and a
/// client offers its suites in this order, so a router without AES instructions negotiates
/// ChaCha20-Poly1305 for what it dials (issue 18: ring's constant-time software AES-GCM costs
/// several times ChaCha20's on MIPS and on ARM cores without the crypto extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    /// AES-GCM first (ring's own order): the CPU has AES and carry-less multiply instructions.
    AesGcm,
    /// ChaCha20-Poly1305 first.
    ChaCha20,
}

impl Aead {
    /// For people (the bench's figures, logs).
    pub fn name(self) -> &'static str {
        match self {
            Aead::AesGcm => "aes-gcm",
            Aead::ChaCha20 => "chacha20-poly1305",
        }
    }
}

/// The one ordering rule: ring's suites with the preferred AEAD's first, the rest after in
/// ring's order (so a peer that offers only one still connects).
pub fn suites_for(first: Aead) -> Vec<rustls::SupportedCipherSuite> {
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    let is_chacha = |s: &rustls::SupportedCipherSuite| {
        matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    };
    let (chacha, aes): (Vec<_>, Vec<_>) = all.into_iter().partition(is_chacha);
    match first {
        Aead::AesGcm => aes.into_iter().chain(chacha).collect(),
        Aead::ChaCha20 => chacha.into_iter().chain(aes).collect(),
    }
}

/// Set to `aes-gcm` or `chacha20-poly1305` to override the CPU's choice (the router-CPU
/// bench measures both suites on each CPU this way).
pub const AEAD_ENV: &str = "TRELLIS_TLS_AEAD";

/// This process's preferred AEAD: [`AEAD_ENV`] if set to a known name, else by the CPU. Decided
/// once per process.
pub fn local_aead() -> Aead {
    static CHOICE: std::sync::OnceLock<Aead> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var(AEAD_ENV).as_deref() {
        Ok("aes-gcm") => Aead::AesGcm,
        Ok("chacha20-poly1305") => Aead::ChaCha20,
        Ok(other) => {
            eprintln!(
                "{AEAD_ENV}={other:?} is not aes-gcm or chacha20-poly1305; ignored, choosing by CPU"
            );
            aead_for_cpu(cpu_aes())
        }
        Err(_) => aead_for_cpu(cpu_aes()),
    })
}

/// AES-GCM only where the CPU has the instructions ring's fast AES-GCM needs.
pub fn aead_for_cpu(has_aes: bool) -> Aead {
    if has_aes {
        Aead::AesGcm
    } else {
        Aead::ChaCha20
    }
}

/// Whether this CPU has AES and carry-less multiply instructions (what ring's fast AES-GCM
/// uses): detected at run time where std can (x86, aarch64), from `/proc/cpuinfo`'s feature
/// flags on 32-bit ARM (std's ARM detection is unstable), and never on MIPS (no such
/// instructions exist) or other CPUs.
pub fn cpu_aes() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(target_arch = "arm")]
    {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|t| arm_cpuinfo_has_aes(&t))
            .unwrap_or(false)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm"
    )))]
    {
        false
    }
}

/// A 32-bit ARM kernel's `/proc/cpuinfo` lists `aes` and `pmull` on its `Features` line when
/// the core has the ARMv8 crypto extensions (Cortex-A53 in AArch32 mode; never a Cortex-A7).
pub fn arm_cpuinfo_has_aes(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "Features")
        .any(|(_, v)| {
            let flags: Vec<&str> = v.split_whitespace().collect();
            flags.contains(&"aes") && flags.contains(&"pmull")
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite::*;

    fn tls13(first: Aead) -> Vec<rustls::CipherSuite> {
        suites_for(first)
            .iter()
            .map(|s| s.suite())
            .filter(|s| format!("{s:?}").starts_with("TLS13_"))
            .collect()
    }

    #[test]
    fn without_aes_chacha20_comes_first_and_aes_stays_offered() {
        assert_eq!(
            tls13(aead_for_cpu(false)),
            [
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256
            ]
        );
    }

    #[test]
    fn with_aes_ring_order_is_kept() {
        assert_eq!(
            tls13(aead_for_cpu(true)),
            [
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256,
                TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(
            suites_for(Aead::AesGcm).len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }

    #[test]
    fn arm_features_line_decides() {
        let a7 = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 5 (v7l)\n\
                  Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt lpae\n";
        let a53 = "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt \
                   lpae evtstrm aes pmull sha1 sha2 crc32\n";
        assert!(!arm_cpuinfo_has_aes(a7));
        assert!(arm_cpuinfo_has_aes(a53));
        assert!(!arm_cpuinfo_has_aes("model name: aes pmull\n"));
    }
}
