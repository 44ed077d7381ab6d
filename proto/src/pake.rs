//! The pairing exchange's cryptography, shared by agent and controller so both sides compute
//! exactly the same thing.
//!
//! SPAKE2 (Ed25519 group) turns the short code into a strong shared key without letting an
//! eavesdropper, or a peer that does not know the code, test guesses offline: each protocol
//! run is worth one online guess. From the SPAKE2 key and a hash of the whole transcript
//! (both SPAKE2 messages, the node name, the home ID and the CA the controller offers),
//! HKDF-SHA256 derives three keys: one for the controller's confirmation MAC, one for the
//! agent's, and one to seal the home secrets (ChaCha20-Poly1305). Binding the CA into the
//! transcript is what lets the agent pin it: a controller that does not know the code cannot
//! produce a valid confirmation for the CA it sent.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf, hmac};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use crate::pairing::hex;

const ID_AGENT: &[u8] = b"trellis agent";
const ID_CONTROLLER: &[u8] = b"trellis controller";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PakeError {
    #[error("the peer's SPAKE2 message is malformed")]
    BadMessage,
    #[error("the confirmation does not match: the two sides do not share the pairing code")]
    Mismatch,
    #[error("the sealed secrets do not open")]
    Unseal,
}

/// The agent's half, between sending message A and receiving the challenge.
pub struct AgentPake {
    state: Spake2<Ed25519Group>,
    msg_a: Vec<u8>,
}

impl std::fmt::Debug for AgentPake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentPake { .. }")
    }
}

impl AgentPake {
    /// Start with the secret part of the pairing code; returns message A (hex).
    pub fn start(secret: &str) -> (Self, String) {
        let (state, msg_a) = Spake2::<Ed25519Group>::start_a(
            &Password::new(secret.as_bytes()),
            &Identity::new(ID_AGENT),
            &Identity::new(ID_CONTROLLER),
        );
        let shown = hex::encode(&msg_a);
        (Self { state, msg_a }, shown)
    }

    /// Finish with the controller's message B and what it offered.
    pub fn finish(
        self,
        msg_b_hex: &str,
        node_name: &str,
        home_id: &str,
        ca_pem: &str,
    ) -> Result<SessionKeys, PakeError> {
        let msg_b = hex::decode(msg_b_hex).ok_or(PakeError::BadMessage)?;
        let key = self
            .state
            .finish(&msg_b)
            .map_err(|_| PakeError::BadMessage)?;
        let t = transcript(&self.msg_a, &msg_b, node_name, home_id, ca_pem);
        Ok(SessionKeys::derive(&key, t))
    }
}

/// The controller's side: answer message A; returns message B (hex) and the session keys.
pub fn controller_respond(
    secret: &str,
    msg_a_hex: &str,
    node_name: &str,
    home_id: &str,
    ca_pem: &str,
) -> Result<(String, SessionKeys), PakeError> {
    let msg_a = hex::decode(msg_a_hex).ok_or(PakeError::BadMessage)?;
    let (state, msg_b) = Spake2::<Ed25519Group>::start_b(
        &Password::new(secret.as_bytes()),
        &Identity::new(ID_AGENT),
        &Identity::new(ID_CONTROLLER),
    );
    let key = state.finish(&msg_a).map_err(|_| PakeError::BadMessage)?;
    let t = transcript(&msg_a, &msg_b, node_name, home_id, ca_pem);
    Ok((hex::encode(&msg_b), SessionKeys::derive(&key, t)))
}

fn transcript(
    msg_a: &[u8],
    msg_b: &[u8],
    node_name: &str,
    home_id: &str,
    ca_pem: &str,
) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"trellis-pairing-v1");
    for part in [
        msg_a,
        msg_b,
        node_name.as_bytes(),
        home_id.as_bytes(),
        ca_pem.as_bytes(),
    ] {
        // Length-prefixed, so no two different transcripts hash the same bytes.
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Keys of one pairing session.
pub struct SessionKeys {
    transcript: [u8; 32],
    controller_confirm: hmac::Key,
    agent_confirm: hmac::Key,
    seal: LessSafeKey,
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn expand(prk: &hkdf::Prk, label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let info = [label];
    // Expanding 32 bytes from SHA-256 HKDF cannot fail (limit is 255 × 32).
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl SessionKeys {
    fn derive(spake_key: &[u8], transcript: [u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &transcript).extract(spake_key);
        let controller = expand(&prk, b"trellis controller confirm");
        let agent = expand(&prk, b"trellis agent confirm");
        let seal = expand(&prk, b"trellis seal");
        let seal = UnboundKey::new(&CHACHA20_POLY1305, &seal).map(LessSafeKey::new);
        Self {
            transcript,
            controller_confirm: hmac::Key::new(hmac::HMAC_SHA256, &controller),
            agent_confirm: hmac::Key::new(hmac::HMAC_SHA256, &agent),
            // 32 bytes is ChaCha20-Poly1305's key length, so this cannot fail.
            seal: seal.unwrap_or_else(|_| unreachable!("32-byte key")),
        }
    }

    /// The controller's confirmation MAC (hex).
    pub fn controller_confirm(&self) -> String {
        hex::encode(hmac::sign(&self.controller_confirm, &self.transcript).as_ref())
    }

    pub fn verify_controller_confirm(&self, mac_hex: &str) -> Result<(), PakeError> {
        let mac = hex::decode(mac_hex).ok_or(PakeError::Mismatch)?;
        hmac::verify(&self.controller_confirm, &self.transcript, &mac)
            .map_err(|_| PakeError::Mismatch)
    }

    fn agent_message(&self, csr_pem: &str) -> Vec<u8> {
        let mut msg = self.transcript.to_vec();
        msg.extend_from_slice(digest::digest(&digest::SHA256, csr_pem.as_bytes()).as_ref());
        msg
    }

    /// The agent's confirmation MAC over the transcript and its CSR (hex).
    pub fn agent_confirm(&self, csr_pem: &str) -> String {
        hex::encode(hmac::sign(&self.agent_confirm, &self.agent_message(csr_pem)).as_ref())
    }

    pub fn verify_agent_confirm(&self, csr_pem: &str, mac_hex: &str) -> Result<(), PakeError> {
        let mac = hex::decode(mac_hex).ok_or(PakeError::Mismatch)?;
        hmac::verify(&self.agent_confirm, &self.agent_message(csr_pem), &mac)
            .map_err(|_| PakeError::Mismatch)
    }

    /// Seal secrets for the agent: nonce ‖ ciphertext, hex.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing is not recoverable in any meaningful way here.
        SystemRandom::new()
            .fill(&mut nonce)
            .unwrap_or_else(|_| panic!("system random number generator failed"));
        let mut buf = plaintext.to_vec();
        let sealed = self.seal.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&self.transcript),
            &mut buf,
        );
        if sealed.is_err() {
            unreachable!("ChaCha20-Poly1305 sealing only fails for messages over 256 GiB");
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        hex::encode(&out)
    }

    pub fn open(&self, sealed_hex: &str) -> Result<Vec<u8>, PakeError> {
        let bytes = hex::decode(sealed_hex).ok_or(PakeError::Unseal)?;
        if bytes.len() < NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return Err(PakeError::Unseal);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PakeError::Unseal)?;
        let mut body = body.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(&self.transcript), &mut body)
            .map_err(|_| PakeError::Unseal)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(agent_secret: &str, controller_secret: &str) -> (SessionKeys, SessionKeys) {
        let (agent, a) = AgentPake::start(agent_secret);
        let (b, ctrl) = controller_respond(controller_secret, &a, "attic", "home1", "CA").unwrap();
        let agent = agent.finish(&b, "attic", "home1", "CA").unwrap();
        (agent, ctrl)
    }

    #[test]
    fn same_code_confirms_both_ways_and_secrets_open() {
        let (agent, ctrl) = run("QF9M2X3D", "QF9M2X3D");
        agent
            .verify_controller_confirm(&ctrl.controller_confirm())
            .unwrap();
        ctrl.verify_agent_confirm("CSR", &agent.agent_confirm("CSR"))
            .unwrap();
        let sealed = ctrl.seal(b"mesh password");
        assert!(!sealed.contains(&hex::encode(b"mesh password")));
        assert_eq!(agent.open(&sealed).unwrap(), b"mesh password");
    }

    #[test]
    fn a_different_code_fails_confirmation_on_both_sides() {
        let (agent, ctrl) = run("QF9M2X3D", "QF9M2X3E");
        assert_eq!(
            agent.verify_controller_confirm(&ctrl.controller_confirm()),
            Err(PakeError::Mismatch)
        );
        assert_eq!(
            ctrl.verify_agent_confirm("CSR", &agent.agent_confirm("CSR")),
            Err(PakeError::Mismatch)
        );
        assert_eq!(agent.open(&ctrl.seal(b"x")), Err(PakeError::Unseal));
    }

    #[test]
    fn a_swapped_ca_or_csr_breaks_the_confirmation() {
        let (agent, a) = AgentPake::start("QF9M2X3D");
        let (b, ctrl) = controller_respond("QF9M2X3D", &a, "attic", "home1", "REAL CA").unwrap();
        // A man in the middle swaps the CA the agent sees.
        let agent = agent.finish(&b, "attic", "home1", "ROGUE CA").unwrap();
        assert_eq!(
            agent.verify_controller_confirm(&ctrl.controller_confirm()),
            Err(PakeError::Mismatch)
        );
        let (agent, ctrl) = run("QF9M2X3D", "QF9M2X3D");
        let mac = agent.agent_confirm("CSR with agent key");
        assert_eq!(
            ctrl.verify_agent_confirm("CSR with rogue key", &mac),
            Err(PakeError::Mismatch)
        );
    }

    #[test]
    fn junk_messages_are_errors_not_panics() {
        assert!(controller_respond("x", "zz", "a", "h", "c").is_err());
        assert!(controller_respond("x", "00ff", "a", "h", "c").is_err());
        let (agent, _) = AgentPake::start("x");
        assert!(agent.finish("0102", "a", "h", "c").is_err());
        let (k, _) = run("a", "a");
        assert_eq!(k.open("00"), Err(PakeError::Unseal));
        assert_eq!(
            k.verify_controller_confirm("nothex"),
            Err(PakeError::Mismatch)
        );
    }
}
