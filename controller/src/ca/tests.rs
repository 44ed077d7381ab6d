use super::*;
use trellis_proto::tls::cert_facts;
use trellis_proto::NodeName;

fn home() -> HomeId {
    HomeId::new("testhome").unwrap()
}

fn csr_with_names(names: Vec<String>) -> (KeyPair, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = CertificateParams::new(names).unwrap();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

fn der(pem: &str) -> Vec<u8> {
    trellis_proto::tls::certs_from_pem(pem, "test").unwrap()[0].to_vec()
}

#[test]
fn signed_certificate_names_the_enrolled_identity_not_the_csr() {
    let ca = HomeCa::generate(&home()).unwrap();
    // The CSR asks for the controller's identity and a DNS name: both must be ignored.
    let (_, csr) = csr_with_names(vec![
        "spiffe://testhome/svc/trellis-controller".into(),
        "evil.example".into(),
    ]);
    let id = SpiffeId::node(&home(), &NodeName::new("attic").unwrap());
    let issued = ca.sign_csr(&csr, &id, DEFAULT_LEAF_TTL).unwrap();
    let facts = cert_facts(&der(&issued.cert_pem)).unwrap();
    assert_eq!(facts.identity, id);
    assert_eq!(facts.serial, issued.serial);
    assert!(!issued.cert_pem.is_empty());
    let text = String::from_utf8_lossy(&der(&issued.cert_pem)).into_owned();
    assert!(
        !text.contains("evil.example"),
        "CSR SAN leaked into the certificate"
    );
    let lifetime = facts.not_after - facts.not_before;
    assert_eq!(lifetime, DEFAULT_LEAF_TTL.as_secs() + BACKDATE.as_secs());
}

#[test]
fn leaf_lifetime_is_clamped_to_seven_days() {
    let ca = HomeCa::generate(&home()).unwrap();
    let (_, csr) = csr_with_names(vec![]);
    let id = SpiffeId::node(&home(), &NodeName::new("a").unwrap());
    let issued = ca
        .sign_csr(&csr, &id, Duration::from_secs(30 * 24 * 3600))
        .unwrap();
    let facts = cert_facts(&der(&issued.cert_pem)).unwrap();
    assert_eq!(
        facts.not_after - facts.not_before,
        MAX_LEAF_TTL.as_secs() + BACKDATE.as_secs()
    );
}

#[test]
fn the_certificate_chains_to_the_root_in_rustls() {
    use rustls::client::danger::ServerCertVerifier;
    let ca = HomeCa::generate(&home()).unwrap();
    let (issued, _key) = ca.issue_controller_cert(DEFAULT_LEAF_TTL).unwrap();
    let roots = trellis_proto::tls::root_store(ca.cert_pem()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        trellis_proto::tls::provider(),
    )
    .build()
    .unwrap();
    let name = rustls_pki_types::ServerName::try_from(CONTROLLER_SERVER_NAME).unwrap();
    let now = rustls_pki_types::UnixTime::now();
    let cert = rustls_pki_types::CertificateDer::from(der(&issued.cert_pem));
    verifier
        .verify_server_cert(&cert, &[], &name, &[], now)
        .expect("controller cert verifies against the home CA");
    // And a certificate from another home's CA does not.
    let other = HomeCa::generate(&HomeId::new("otherhome").unwrap()).unwrap();
    let (foreign, _) = other.issue_controller_cert(DEFAULT_LEAF_TTL).unwrap();
    let foreign = rustls_pki_types::CertificateDer::from(der(&foreign.cert_pem));
    assert!(verifier
        .verify_server_cert(&foreign, &[], &name, &[], now)
        .is_err());
}

#[test]
fn a_garbage_or_tampered_csr_is_refused_with_a_clear_error() {
    let ca = HomeCa::generate(&home()).unwrap();
    let id = SpiffeId::node(&home(), &NodeName::new("a").unwrap());
    let err = ca.sign_csr("not a csr", &id, DEFAULT_LEAF_TTL).unwrap_err();
    assert!(err.to_string().contains("not a valid PKCS#10"), "{err}");
    // Swap a byte inside the signed body: the signature must no longer verify.
    let (_, csr) = csr_with_names(vec!["x".into()]);
    let mut body = rustls_pki_types::pem::PemObject::from_pem_slice(csr.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer| d.as_ref().to_vec())
        .unwrap();
    let mid = body.len() / 3;
    body[mid] ^= 0x01;
    let tampered = rcgen::CertificateSigningRequestParams::from_der(&body.into());
    assert!(tampered.is_err());
}

#[test]
fn the_root_round_trips_through_pem() {
    let ca = HomeCa::generate(&home()).unwrap();
    let again = HomeCa::from_pem(home(), ca.cert_pem(), ca.key_pem()).unwrap();
    assert_eq!(again.not_after(), ca.not_after());
    let years = (ca.not_after() - unix_now()) / (365 * 24 * 3600);
    assert!(years >= 9, "root lives ten years, got {years}");
    assert!(
        !format!("{ca:?}").contains("PRIVATE"),
        "Debug must not print the key"
    );
    let err = HomeCa::from_pem(home(), ca.cert_pem(), "junk").unwrap_err();
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
}
