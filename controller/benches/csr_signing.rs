//! CSR signings per second on one core: parse and verify a P-256 CSR, issue a certificate
//! with the SPIFFE ID from the enrollment record. Goal ≥ 1000/s. Prints figures; never fails
//! on timing.
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use trellis_controller::ca::{HomeCa, DEFAULT_LEAF_TTL};
use trellis_proto::{HomeId, NodeName, SpiffeId};

fn main() {
    let home = HomeId::new("benchhome").expect("valid home id");
    let ca = HomeCa::generate(&home).expect("CA");
    let id = SpiffeId::node(&home, &NodeName::new("bench").expect("valid name"));
    // A pool of distinct CSRs, made before timing starts.
    let csrs: Vec<String> = (0..64)
        .map(|_| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
            CertificateParams::default()
                .serialize_request(&key)
                .expect("csr")
                .pem()
                .expect("pem")
        })
        .collect();
    // Warm up, then run for about two seconds on this one thread.
    for csr in csrs.iter().take(16) {
        ca.sign_csr(csr, &id, DEFAULT_LEAF_TTL).expect("sign");
    }
    let budget = Duration::from_secs(2);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < budget {
        let csr = &csrs[(n as usize) % csrs.len()];
        std::hint::black_box(ca.sign_csr(csr, &id, DEFAULT_LEAF_TTL).expect("sign"));
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "csr_signing: {n} signings in {secs:.2} s on one core = {:.0} signings/s ({:.0} µs each; goal >= 1000/s)",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}
