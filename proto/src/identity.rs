//! SPIFFE-style identities of a Trellis home.
//!
//! The trust domain is the home ID, a random lowercase label made by the controller on first
//! start. A node (router) is `spiffe://<home-id>/node/<name>`; a home service is
//! `spiffe://<home-id>/svc/<name>`. Names are DNS-label-like so they can also become mesh names
//! under `home.arpa`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid Trellis name or identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{what} {value:?} is not valid: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'")]
    BadLabel { what: &'static str, value: String },
    #[error("{0:?} is not a Trellis SPIFFE ID: expected spiffe://<home-id>/node/<name> or spiffe://<home-id>/svc/<name>")]
    BadSpiffeId(String),
}

fn check_label(what: &'static str, value: &str) -> Result<(), IdentityError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadLabel {
            what,
            value: value.to_owned(),
        })
    }
}

macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdentityError> {
                let value = value.into();
                check_label($what, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdentityError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

label_type!(
    /// The home's trust domain: a random label chosen once by the controller.
    HomeId,
    "home ID"
);
label_type!(
    /// A router's (node's) name inside the home, e.g. `living-room`.
    NodeName,
    "node name"
);

/// What a SPIFFE ID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// A router running `trellis-agent`.
    Node,
    /// A home service (NAS, printer, Home Assistant …).
    Svc,
}

/// `spiffe://<home-id>/<node|svc>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    pub home: HomeId,
    pub kind: Workload,
    pub name: String,
}

impl SpiffeId {
    pub fn node(home: &HomeId, node: &NodeName) -> Self {
        Self {
            home: home.clone(),
            kind: Workload::Node,
            name: node.as_str().to_owned(),
        }
    }

    pub fn service(home: &HomeId, name: &str) -> Result<Self, IdentityError> {
        check_label("service name", name)?;
        Ok(Self {
            home: home.clone(),
            kind: Workload::Svc,
            name: name.to_owned(),
        })
    }

    /// The node name, when this ID names a node.
    pub fn node_name(&self) -> Option<NodeName> {
        match self.kind {
            Workload::Node => NodeName::new(self.name.clone()).ok(),
            Workload::Svc => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Workload::Node => "node",
            Workload::Svc => "svc",
        };
        write!(f, "spiffe://{}/{}/{}", self.home, kind, self.name)
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::BadSpiffeId(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(home), Some(kind), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let home = HomeId::new(home).map_err(|_| bad())?;
        let kind = match kind {
            "node" => Workload::Node,
            "svc" => Workload::Svc,
            _ => return Err(bad()),
        };
        check_label("name", name).map_err(|_| bad())?;
        Ok(Self {
            home,
            kind,
            name: name.to_owned(),
        })
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SpiffeId> for String {
    fn from(value: SpiffeId) -> String {
        value.to_string()
    }
}

/// A certificate's serial number in its one written form: lowercase hex, no separators, no
/// leading zeros (so DER's sign byte, `00` before a serial whose top bit is set, and a
/// colon-separated or upper-case copy all name the same serial). Everything that stores,
/// revokes, pins or compares serials holds this type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct CertSerial(String);

impl CertSerial {
    /// From hex text in any of the usual spellings; characters that are not hex digits
    /// (colons, spaces) are separators.
    pub fn from_hex(text: &str) -> Self {
        let digits: String = text
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let trimmed = digits.trim_start_matches('0');
        Self(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
    }

    /// From the integer's big-endian bytes (DER content or a CA's serial).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::from_hex(&crate::pairing::hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CertSerial {
    fn from(value: String) -> Self {
        Self::from_hex(&value)
    }
}

impl From<CertSerial> for String {
    fn from(value: CertSerial) -> String {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_has_one_spelling() {
        let a = CertSerial::from_bytes(&[0x00, 0x8a, 0x01]);
        assert_eq!(a.as_str(), "8a01");
        assert_eq!(CertSerial::from_hex("8A:01"), a);
        assert_eq!(CertSerial::from_hex("008a01"), a);
        assert_eq!(CertSerial::from_hex("000"), CertSerial::from_hex("0"));
        let json: CertSerial = serde_json::from_str(r#""00:8A:01""#).unwrap();
        assert_eq!(json, a);
    }

    #[test]
    fn node_and_service_ids_round_trip() {
        let home = HomeId::new("h3k9x2").unwrap();
        let node = SpiffeId::node(&home, &NodeName::new("living-room").unwrap());
        assert_eq!(node.to_string(), "spiffe://h3k9x2/node/living-room");
        assert_eq!(node.to_string().parse::<SpiffeId>().unwrap(), node);
        let svc = SpiffeId::service(&home, "nas").unwrap();
        assert_eq!(svc.to_string(), "spiffe://h3k9x2/svc/nas");
        assert_eq!(node.node_name().unwrap().as_str(), "living-room");
        assert!(svc.node_name().is_none());
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_expected_shape() {
        for bad in [
            "http://h/node/a",
            "spiffe://h/node",
            "spiffe://h/node/a/b",
            "spiffe://h/user/a",
            "spiffe://H/node/a",
            "spiffe://h/node/-a",
            "spiffe:///node/a",
        ] {
            let err = bad.parse::<SpiffeId>().unwrap_err();
            assert!(
                err.to_string().contains("spiffe://<home-id>/node/<name>"),
                "{bad}"
            );
        }
    }

    #[test]
    fn labels_follow_dns_rules() {
        assert!(NodeName::new("attic-2").is_ok());
        assert!(NodeName::new("").is_err());
        assert!(NodeName::new("Attic").is_err());
        assert!(NodeName::new("a".repeat(64)).is_err());
        assert!(NodeName::new("under_score").is_err());
        let err = NodeName::new("bad name").unwrap_err().to_string();
        assert!(
            err.contains("node name") && err.contains("a-z, 0-9"),
            "{err}"
        );
    }
}
