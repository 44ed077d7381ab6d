//! Mutual TLS 1.3 between node proxies, with SPIFFE identities checked on both sides.
//!
//! Certificates carry exactly one URI SAN, the SPIFFE ID (no DNS names), so rustls' built-in
//! server-name check cannot be used: [`SpiffeServerVerifier`] verifies the chain with webpki
//! itself and then compares the peer's SPIFFE ID with the node the snapshot says should be at
//! that address. The accepting side uses rustls' client verifier for the chain and checks the
//! ID after the handshake ([`peer_identity`]). Revoked identities and serials from the snapshot
//! are refused on both sides.
//!
//! Certificates must allow both `serverAuth` and `clientAuth` (or carry no EKU), because every
//! node both dials and accepts.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use trellis_proto::snapshot::{PeerRefusal, PeerTrust};
use trellis_proto::tls::Tls13Signatures;
use trellis_proto::{CertSerial, SpiffeId};

/// What went wrong establishing or checking a mesh TLS identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("peer certificate has no SPIFFE URI SAN (expected spiffe://<home>/node/<name>)")]
    NoSpiffeId,
    #[error("peer certificate could not be parsed: {0}")]
    BadCertificate(String),
    #[error("peer refused: {0}")]
    Refused(#[from] PeerRefusal),
    #[error("peer is {got}, expected {expected}")]
    WrongPeer { got: SpiffeId, expected: SpiffeId },
    #[error("the trust bundle has no usable CA certificate: {0}")]
    BadBundle(String),
    #[error("this node's certificate or key is not usable: {0}")]
    BadIdentity(String),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// This node's own certificate chain and key, as issued by the home CA.
#[derive(Debug)]
pub struct NodeIdentity {
    pub id: SpiffeId,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Unix seconds, for the `trellis_cert_expiry_seconds` gauge.
    pub not_after: u64,
}

impl NodeIdentity {
    /// From `identity.pem` (certificate chain then PKCS#8 key, as the agent stores it; see
    /// `crate::identity::NodeIdentity::pem`). The SPIFFE ID and expiry come from the leaf.
    pub fn from_pem(cert_and_key_pem: &str) -> Result<Self, TlsError> {
        let bad = |e: &dyn std::fmt::Display| TlsError::BadIdentity(e.to_string());
        let chain = trellis_proto::tls::certs_from_pem(cert_and_key_pem, "identity.pem")
            .map_err(|e| bad(&e))?;
        let key = trellis_proto::tls::key_from_pem(cert_and_key_pem, "identity.pem")
            .map_err(|e| bad(&e))?;
        let leaf = chain.first().ok_or_else(|| bad(&"no certificate"))?;
        let facts = trellis_proto::tls::cert_facts(leaf).map_err(|e| bad(&e))?;
        Ok(Self {
            id: facts.identity,
            chain,
            key,
            not_after: facts.not_after,
        })
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            not_after: self.not_after,
        }
    }
}

/// What this node trusts: the home CA(s), and who of the home is a peer.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    pub roots: Vec<CertificateDer<'static>>,
    /// The home's one peer rule, from the snapshot ([`PeerTrust::admit`]).
    pub peers: PeerTrust,
}

impl TrustBundle {
    /// From the snapshot's `ca_pem`, routers and revocations.
    pub fn from_snapshot(s: &trellis_proto::snapshot::ConfigSnapshot) -> Result<Self, TlsError> {
        Ok(Self {
            roots: certs_from_pem(&s.ca_pem)?,
            peers: PeerTrust::from_snapshot(s),
        })
    }

    /// The SPIFFE ID of a chain-verified certificate, if the home admits that peer (of this
    /// home, not revoked by identity or serial, an enrolled router or a service identity).
    pub fn check(&self, cert: &CertificateDer<'_>) -> Result<SpiffeId, TlsError> {
        let (id, serial) = spiffe_id_and_serial(cert)?;
        self.peers.admit(&id, &serial)?;
        Ok(id)
    }
}

/// Parse every `CERTIFICATE` block of a PEM text (the one PEM reader: `trellis_proto::tls`).
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    trellis_proto::tls::certs_from_pem(pem, "the trust bundle")
        .map_err(|e| TlsError::BadBundle(e.to_string()))
}

/// The SPIFFE ID (the one URI SAN) and the serial of a certificate; a certificate naming
/// two identities is ambiguous and refused.
pub fn spiffe_id_and_serial(cert: &CertificateDer<'_>) -> Result<(SpiffeId, CertSerial), TlsError> {
    use trellis_proto::tls::CertError;
    let facts = trellis_proto::tls::cert_facts(cert).map_err(|e| match e {
        CertError::NoSpiffeId | CertError::SeveralUris | CertError::BadId(_) => {
            TlsError::NoSpiffeId
        }
        other => TlsError::BadCertificate(other.to_string()),
    })?;
    Ok((facts.identity, facts.serial))
}

fn provider() -> Arc<CryptoProvider> {
    trellis_proto::tls::provider()
}

/// Checks the server's chain against the home CA and its SPIFFE ID against the expected node.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: Arc<TrustBundle>,
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    expected: SpiffeId,
    signatures: Tls13Signatures,
}

impl SpiffeServerVerifier {
    pub fn new(bundle: Arc<TrustBundle>, expected: SpiffeId) -> Result<Self, TlsError> {
        let anchors = bundle
            .roots
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| TlsError::BadBundle(format!("{e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            bundle,
            anchors,
            expected,
            signatures: Tls13Signatures::default(),
        })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("bad peer certificate: {e:?}")))?;
        ee.verify_for_usage(
            self.signatures.algorithms(),
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            rustls::Error::General(format!(
                "peer certificate not issued by this home's CA: {e:?}"
            ))
        })?;
        let id = self
            .bundle
            .check(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if id != self.expected {
            return Err(rustls::Error::General(
                TlsError::WrongPeer {
                    got: id,
                    expected: self.expected.clone(),
                }
                .to_string(),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Client side of the tunnel to one peer node.
pub fn client_config(
    me: &NodeIdentity,
    bundle: Arc<TrustBundle>,
    expected_peer: SpiffeId,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = SpiffeServerVerifier::new(bundle, expected_peer)?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous() // "dangerous" only in name: the verifier above checks chain and identity.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(me.chain.clone(), me.key.clone_key())
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Server side of the tunnel: client certificates are required and chain to the home CA.
pub fn server_config(
    me: &NodeIdentity,
    bundle: &TrustBundle,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for r in &bundle.roots {
        roots
            .add(r.clone())
            .map_err(|e| TlsError::BadBundle(e.to_string()))?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::BadBundle(e.to_string()))?;
    let verifier = Arc::new(SpiffeClientVerifier {
        inner,
        bundle: bundle.clone(),
    });
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(me.chain.clone(), me.key.clone_key())
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    // Tunnels are long-lived HTTP/2 connections, so resumption would save little, and a
    // resumed session would let a peer back in without showing its certificate again.
    cfg.send_tls13_tickets = 0;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// webpki's chain check, then the SPIFFE checks (home, revocation) inside the handshake, so a
/// revoked node gets a TLS alert instead of a connection that dies later.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    bundle: TrustBundle,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.bundle
            .check(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The verified SPIFFE ID of the client of an accepted TLS connection, refusing revoked and
/// foreign identities.
pub fn peer_identity(
    conn: &rustls::ServerConnection,
    bundle: &TrustBundle,
) -> Result<SpiffeId, TlsError> {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(TlsError::NoSpiffeId)?;
    bundle.check(cert)
}

/// The server name sent in the ClientHello. The value does not matter for verification (the
/// SPIFFE ID does); it is fixed so nothing about the destination leaks in clear text beyond
/// what the IP already says.
pub fn sni() -> ServerName<'static> {
    ServerName::try_from("trellis.mesh").expect("static name is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testca::TestCa;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Handshake a client expecting `expected` with a server holding `server_id`; returns the
    /// client's error text, or the SPIFFE ID the server saw.
    async fn handshake(
        client: &NodeIdentity,
        client_bundle: TrustBundle,
        server: &NodeIdentity,
        server_bundle: TrustBundle,
        expected: SpiffeId,
    ) -> Result<SpiffeId, String> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let scfg = server_config(server, &server_bundle).unwrap();
        let sb = server_bundle.clone();
        let srv = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut t = tokio_rustls::TlsAcceptor::from(scfg)
                .accept(tcp)
                .await
                .map_err(|e| e.to_string())?;
            let id = peer_identity(t.get_ref().1, &sb).map_err(|e| e.to_string())?;
            t.write_all(b"ok").await.map_err(|e| e.to_string())?;
            Ok::<_, String>(id)
        });
        let ccfg = client_config(client, Arc::new(client_bundle), expected).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let res = async {
            let mut t = tokio_rustls::TlsConnector::from(ccfg)
                .connect(sni(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 2];
            t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        let server_side = srv.await.unwrap();
        res?;
        server_side
    }

    #[tokio::test]
    async fn mutual_tls_checks_identity_on_both_sides() {
        let ca = TestCa::new("home1").unwrap();
        let a = ca.issue_node("a").unwrap();
        let b = ca.issue_node("b").unwrap();
        // The right peer: both sides learn each other's SPIFFE ID.
        let seen = handshake(&a, ca.bundle(), &b, ca.bundle(), b.id.clone())
            .await
            .unwrap();
        assert_eq!(seen.to_string(), "spiffe://home1/node/a");
        // A valid certificate of the home, but not the node the snapshot lists at that address.
        let c = ca.issue_node("c").unwrap();
        let err = handshake(&a, ca.bundle(), &c, ca.bundle(), b.id.clone())
            .await
            .unwrap_err();
        assert!(
            err.contains("peer is spiffe://home1/node/c, expected spiffe://home1/node/b"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn revoked_foreign_ca_and_foreign_home_peers_are_refused() {
        let ca = TestCa::new("home1").unwrap();
        let a = ca.issue_node("a").unwrap();
        let b = ca.issue_node("b").unwrap();
        // The server has revoked a: the client gets an alert instead of data.
        let mut revoked = ca.bundle();
        revoked.peers.revoked.insert(a.id.clone());
        assert!(handshake(&a, ca.bundle(), &b, revoked, b.id.clone())
            .await
            .is_err());
        // The client has revoked b (by serial this time).
        let serial = spiffe_id_and_serial(&b.chain[0]).unwrap().1;
        let mut by_serial = ca.bundle();
        by_serial.peers.revoked_serials.insert(serial);
        let err = handshake(&a, by_serial, &b, ca.bundle(), b.id.clone())
            .await
            .unwrap_err();
        assert!(err.contains("presents a revoked certificate"), "{err}");
        // A router the snapshot does not list (never enrolled, or removed before its
        // revocation reached us) is refused in the handshake too.
        let mut unlisted = ca.bundle();
        unlisted.peers.nodes.remove(&b.id);
        let err = handshake(&a, unlisted, &b, ca.bundle(), b.id.clone())
            .await
            .unwrap_err();
        assert!(err.contains("is not a router of this home"), "{err}");
        // Another CA issuing the same name is not this home's CA.
        let rogue = TestCa::new("home1").unwrap().issue_node("b").unwrap();
        let err = handshake(&a, ca.bundle(), &rogue, ca.bundle(), b.id.clone())
            .await
            .unwrap_err();
        assert!(err.contains("not issued by this home's CA"), "{err}");
        // Our CA, another home's ID: refused by name.
        let other = ca.issue(&"spiffe://home2/node/b".parse().unwrap()).unwrap();
        let err = handshake(&a, ca.bundle(), &other, ca.bundle(), b.id.clone())
            .await
            .unwrap_err();
        assert!(
            err.contains("home2/node/b belongs to another home"),
            "{err}"
        );
    }

    #[test]
    fn bundle_from_pem_and_serial_normalisation() {
        let ca = TestCa::new("home1").unwrap();
        let text = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            b64(&ca.root())
        );
        assert_eq!(certs_from_pem(&text).unwrap().len(), 1);
        assert!(certs_from_pem("nothing here").is_err());
    }

    #[test]
    fn node_identity_from_the_agents_identity_pem() {
        let ca = TestCa::new("home1").unwrap();
        let issued = ca.issue_node("attic").unwrap();
        let pem = |label: &str, der: &[u8]| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                b64(der)
            )
        };
        let PrivateKeyDer::Pkcs8(k) = &issued.key else {
            panic!("pkcs8")
        };
        let text = pem("CERTIFICATE", &issued.chain[0]) + &pem("PRIVATE KEY", k.secret_pkcs8_der());
        let id = NodeIdentity::from_pem(&text).unwrap();
        assert_eq!(id.id.to_string(), "spiffe://home1/node/attic");
        assert_eq!(id.not_after, issued.not_after);
        assert!(server_config(&id, &ca.bundle()).is_ok(), "usable for TLS");
        let err = NodeIdentity::from_pem(&pem("CERTIFICATE", &issued.chain[0])).unwrap_err();
        assert!(err.to_string().contains("not usable"), "{err}");
    }

    #[test]
    fn bundle_from_the_snapshot_keeps_revocations() {
        use trellis_proto::snapshot::{ConfigSnapshot, MeshCredentials, Revocation};
        let ca = TestCa::new("home1").unwrap();
        let gone = ca.issue_node("gone").unwrap();
        let snap = ConfigSnapshot {
            version: 3,
            home_id: ca.home.clone(),
            ca_pem: format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                b64(&ca.root())
            ),
            nodes: vec![],
            revoked: vec![Revocation {
                identity: gone.id.clone(),
                revoked_at: 1,
            }],
            revoked_serials: vec![CertSerial::from_hex("000A")],
            mesh: MeshCredentials {
                mesh_id: "m".into(),
                sae_password: "p".into(),
            },
            catalog: Default::default(),
            policy: Default::default(),
            devices: vec![],
            wifi: Default::default(),
            mesh_channel: None,
        };
        let b = TrustBundle::from_snapshot(&snap).unwrap();
        assert_eq!(b.roots, vec![ca.root()]);
        assert!(b.peers.revoked.contains(&gone.id));
        assert!(
            b.peers.revoked_serials.contains(&CertSerial::from_hex("a")),
            "{:?}",
            b.peers.revoked_serials
        );
        let err = b.check(&gone.chain[0]).unwrap_err().to_string();
        assert!(
            err.contains("spiffe://home1/node/gone was removed from this home"),
            "{err}"
        );
    }

    fn b64(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
