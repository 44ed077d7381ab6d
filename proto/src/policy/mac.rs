//! [`MacAddr`], the project's one hardware-address type: its single parsing rule, its
//! printing (lower case, `:`-separated, in `Debug` too) and its JSON form (a string).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::PolicyError;

/// A 48-bit hardware address: the one MAC type of the project (devices in the policy, mesh
/// peers and stations in the agent, BSSIDs). Printed `02:00:00:00:01:00`, lower case, as `iw`
/// does, in logs (`Debug`) too; parsed by the one rule below (`:` or `-` between six two-digit
/// hex bytes, nothing around them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Quoted short: the text comes from devices and agents and ends up in logs.
        let bad = || PolicyError::BadMac(s.chars().take(40).collect());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            // Digits only: from_str_radix alone also takes a sign (`+7`).
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl TryFrom<String> for MacAddr {
    type Error = PolicyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<MacAddr> for String {
    fn from(value: MacAddr) -> String {
        value.to_string()
    }
}
