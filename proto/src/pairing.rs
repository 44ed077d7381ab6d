//! The pairing exchange: how a satellite enrolls with one short code.
//!
//! The admin reads a code such as `K7QF-9M2X-3D` off the router page and types it on the
//! satellite. Its first two characters name the pairing slot (sent in clear so the controller
//! knows which secret to use); the rest is the password of a SPAKE2 exchange, which never
//! crosses the network in any form an eavesdropper could test offline. Both sides prove they
//! derived the same key before anything is trusted:
//!
//! 1. agent → [`PairStart`]: slot, node name, SPAKE2 message A.
//! 2. controller → [`PairChallenge`]: SPAKE2 message B, the home CA, and a confirmation MAC
//!    over the transcript. The agent checks it, so a rogue controller that lacks the code is
//!    refused *before* the agent trusts its CA.
//! 3. agent → [`PairFinish`]: a CSR and the agent's confirmation MAC.
//! 4. controller → [`PairWelcome`]: the signed certificate and the home secrets (mesh
//!    credentials) sealed with an AEAD key derived from the SPAKE2 key.

use serde::{Deserialize, Serialize};

use crate::identity::{HomeId, NodeName, SpiffeId};
use crate::snapshot::MeshCredentials;

/// Characters of a pairing code: Crockford base32 without I, L, O, U, so a code read aloud
/// or copied by hand cannot be confused.
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters naming the slot (sent in clear).
pub const CODE_SLOT_LEN: usize = 2;
/// Characters of the secret part: 8 × 5 = 40 bits, plenty against 5 online guesses.
pub const CODE_SECRET_LEN: usize = 8;

/// A pairing code split into its public slot and its secret password.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode {
    pub slot: String,
    pub secret: String,
}

impl std::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret part, even in debug logs.
        write!(
            f,
            "PairingCode {{ slot: {:?}, secret: <redacted> }}",
            self.slot
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a pairing code: it has 10 letters and digits, shown like K7QF-9M2X-3D (dashes and case do not matter)")]
pub struct BadPairingCode(pub String);

impl PairingCode {
    /// Parse what a person typed: case, spaces and dashes are ignored, and the look-alikes
    /// O→0, I/L→1 are mapped as Crockford base32 does.
    pub fn parse(typed: &str) -> Result<Self, BadPairingCode> {
        let mut clean = String::with_capacity(CODE_SLOT_LEN + CODE_SECRET_LEN);
        for c in typed.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
                return Err(BadPairingCode(typed.to_owned()));
            }
            clean.push(c);
        }
        if clean.len() != CODE_SLOT_LEN + CODE_SECRET_LEN {
            return Err(BadPairingCode(typed.to_owned()));
        }
        let (slot, secret) = clean.split_at(CODE_SLOT_LEN);
        Ok(Self {
            slot: slot.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The form shown to people: `XXXX-XXXX-XX`.
    pub fn display(&self) -> String {
        let all = format!("{}{}", self.slot, self.secret);
        format!("{}-{}-{}", &all[..4], &all[4..8], &all[8..])
    }
}

/// Step 1, agent → controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairStart {
    pub slot: String,
    pub node_name: NodeName,
    /// SPAKE2 message A, hex.
    pub spake_a: String,
}

/// Step 2, controller → agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairChallenge {
    pub session: String,
    pub home_id: HomeId,
    /// SPAKE2 message B, hex.
    pub spake_b: String,
    /// The home root CA, PEM. Trusted by the agent only once `confirm` checks out.
    pub ca_pem: String,
    /// HMAC-SHA256 under the controller's confirmation key over the transcript, hex.
    pub confirm: String,
}

/// Step 3, agent → controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairFinish {
    pub session: String,
    pub csr_pem: String,
    /// HMAC-SHA256 under the agent's confirmation key over the transcript and the CSR, hex.
    pub confirm: String,
}

/// Step 4, controller → agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairWelcome {
    pub identity: SpiffeId,
    pub cert_pem: String,
    /// [`HomeSecrets`] as JSON, sealed with ChaCha20-Poly1305 under the session's sealing key:
    /// 12-byte nonce followed by ciphertext, hex.
    pub sealed: String,
}

/// What only an enrolled node may learn.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HomeSecrets {
    pub mesh: MeshCredentials,
    /// Where the agent API listens (host:port), as the controller sees itself.
    pub controller_api: String,
}

/// Error body of every Trellis API: what went wrong and what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Lowercase hex, the encoding of every binary field in these messages.
pub mod hex {
    pub fn encode(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(DIGITS[(b >> 4) as usize] as char);
            out.push(DIGITS[(b & 15) as usize] as char);
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        text.as_bytes()
            .chunks(2)
            .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_the_way_people_type_them() {
        let code = PairingCode::parse("k7qf-9m2x-3d").unwrap();
        assert_eq!(code.slot, "K7");
        assert_eq!(code.secret, "QF9M2X3D");
        assert_eq!(code.display(), "K7QF-9M2X-3D");
        // Look-alikes map to digits; spaces are fine.
        let code = PairingCode::parse("KO QF 9M2X IL").unwrap();
        assert_eq!(code.display(), "K0QF-9M2X-11");
    }

    #[test]
    fn wrong_length_or_letters_are_refused_with_the_expected_shape() {
        for bad in [
            "",
            "K7QF-9M2X",
            "K7QF-9M2X-3D4",
            "K7QF-9M2X-3U",
            "K7QF-9M2X-3é",
        ] {
            let err = PairingCode::parse(bad).unwrap_err().to_string();
            assert!(err.contains("K7QF-9M2X-3D"), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let code = PairingCode::parse("K7QF-9M2X-3D").unwrap();
        assert!(!format!("{code:?}").contains("QF9M2X3D"));
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex::encode(&bytes), "0001abff");
        assert_eq!(hex::decode("0001ABff").unwrap(), bytes);
        assert!(hex::decode("abc").is_none());
        assert!(hex::decode("zz").is_none());
    }
}
