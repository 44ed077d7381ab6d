//! TLS client settings towards the controller.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use trellis_proto::tls::{
    provider, root_store, Tls13Signatures, CONTROLLER_SERVER_NAME, PROTOCOL_VERSIONS,
};

use crate::identity::CurrentIdentity;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the controller at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("TLS with the controller at {addr} failed: {detail}")]
    Tls { addr: String, detail: String },
    #[error("TLS settings: {0}")]
    Config(String),
}

/// Before pairing the agent knows no CA: it accepts any server certificate for the pairing
/// connection only. That is safe because nothing is trusted until the SPAKE2 confirmation
/// proves the controller knows the code; the TLS layer here only hides the exchange.
#[derive(Debug, Default)]
struct PairingOnly(Tls13Signatures);

impl ServerCertVerifier for PairingOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12()
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

pub fn pairing_config() -> Result<Arc<ClientConfig>, ConnectError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| ConnectError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PairingOnly::default()))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// After pairing: the controller must chain to the pinned home CA and name itself
/// [`CONTROLLER_SERVER_NAME`]; the agent presents its node certificate.
pub fn member_config(
    ca_pem: &str,
    identity: Arc<CurrentIdentity>,
) -> Result<Arc<ClientConfig>, ConnectError> {
    let roots = root_store(ca_pem).map_err(|e| ConnectError::Config(e.to_string()))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| ConnectError::Config(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_client_cert_resolver(identity);
    Ok(Arc::new(config))
}

/// Open a TLS connection to the controller's agent API.
pub async fn connect(
    addr: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Unreachable {
            addr: addr.to_owned(),
            detail: "timed out after 10 s".into(),
        })?
        .map_err(|e| ConnectError::Unreachable {
            addr: addr.to_owned(),
            detail: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(CONTROLLER_SERVER_NAME)
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectError::Tls {
            addr: addr.to_owned(),
            detail: e.to_string(),
        })
}
