//! What a stranger on the LAN can send in a pairing: the code as typed, the hex fields, the
//! SPAKE2 messages and MACs, the sealed secrets, and the four JSON messages. Invariants: no
//! panic; code parse -> display -> parse and hex decode -> encode are round trips; a junk
//! SPAKE2 message or MAC is an error, never a match; JSON that decodes re-encodes stably.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_proto::pairing::{
    hex, HomeSecrets, PairChallenge, PairFinish, PairStart, PairWelcome, PairingCode,
};
use trellis_proto::pake::{controller_respond, AgentPake};

const SECRET: &str = "QF9M2X3D";

fn json_round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let once = serde_json::to_string(&v).expect("a decoded message encodes");
        let again: T = serde_json::from_str(&once).expect("our own encoding decodes");
        assert_eq!(serde_json::to_string(&again).expect("encodes"), once);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(code) = PairingCode::parse(&text) {
        assert_eq!(PairingCode::parse(&code.display()), Ok(code));
    }
    if let Some(bytes) = hex::decode(&text) {
        assert_eq!(hex::encode(&bytes), text.to_ascii_lowercase());
    }

    // The controller answering a start with this as message A.
    if let Ok((msg_b, keys)) = controller_respond(SECRET, &text, "attic", "h", "CA") {
        assert_eq!(hex::decode(&msg_b).map(|b| b.len()), Some(33));
        // Without the code's key a confirmation or a sealed box cannot check out.
        assert!(keys.verify_agent_confirm("CSR", &text).is_err());
        assert!(keys.open(&text).is_err());
    }
    // The agent finishing with this as message B.
    let (agent, _msg_a) = AgentPake::start(SECRET);
    if let Ok(keys) = agent.finish(&text, "attic", "h", "CA") {
        assert!(keys.verify_controller_confirm(&text).is_err());
    }

    json_round_trip::<PairStart>(data);
    json_round_trip::<PairChallenge>(data);
    json_round_trip::<PairFinish>(data);
    json_round_trip::<PairWelcome>(data);
    json_round_trip::<HomeSecrets>(data);
});
