//! Interception: nftables sends connections for virtual IPs to the proxy's outbound listener.
//!
//! The agent owns one table, `inet trellis`, and never touches fw4's tables (`inet fw4`): fw4
//! reloads flush only its own table, and ours survives them. The table holds two NAT chains
//! that `redirect` TCP to `198.18.0.0/16` (the catalog's virtual-IP range) to the outbound
//! port: `prerouting` for LAN devices, `output` for programs on the router itself. Their
//! priority is -110 (`dstnat` - 10) so the redirect happens before fw4's own DNAT rules see the packet.
//!
//! Rules go in through `nft -f -` as one transaction (create-if-missing, delete, re-create),
//! so the table is replaced atomically and a half-applied ruleset never exists. OpenWrt ships
//! `nft` with firewall4; linking libnftnl would add a C dependency per target for no gain.
//! [`Interception`] removes the table when dropped (agent exit).
//!
//! Entry point for the lead: `let _nft = Interception::install(&Rules::for_proxy(port))?;`
//! keep the guard alive for the agent's lifetime.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use trellis_proto::catalog;

pub const TABLE: &str = "trellis";

#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("could not run nft ({0}); is the nftables package installed?")]
    Spawn(std::io::Error),
    #[error("nft refused the ruleset: {0}")]
    Rejected(String),
}

/// What to intercept and where to send it.
#[derive(Debug, Clone)]
pub struct Rules {
    /// CIDR of the virtual-IP range.
    pub vip_cidr: String,
    pub outbound_port: u16,
    /// Also intercept connections made by programs on the router itself.
    pub local_output: bool,
}

impl Rules {
    pub fn for_proxy(outbound_port: u16) -> Self {
        Self {
            vip_cidr: catalog::vip_cidr(),
            outbound_port,
            local_output: true,
        }
    }

    /// The nft script: one atomic transaction that replaces our table.
    pub fn script(&self) -> String {
        let Rules {
            vip_cidr,
            outbound_port,
            local_output,
        } = self;
        let mut s = format!(
            "table inet {TABLE}\n\
             delete table inet {TABLE}\n\
             table inet {TABLE} {{\n\
             \tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority -110; policy accept;\n\
             \t\tip daddr {vip_cidr} meta l4proto tcp redirect to :{outbound_port}\n\
             \t}}\n"
        );
        if *local_output {
            s.push_str(&format!(
                "\tchain output {{\n\
                 \t\ttype nat hook output priority -110; policy accept;\n\
                 \t\tip daddr {vip_cidr} meta l4proto tcp redirect to :{outbound_port}\n\
                 \t}}\n"
            ));
        }
        s.push_str("}\n");
        s
    }
}

/// Runs `nft -f -` with `script` (off the async workers: it forks and waits).
fn nft(script: &str) -> Result<(), InterceptError> {
    trellis_io::runtime::blocking(|| nft_now(script))
}

fn nft_now(script: &str) -> Result<(), InterceptError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(InterceptError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(InterceptError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(InterceptError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(InterceptError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Installed interception; removes `table inet trellis` when dropped.
#[derive(Debug)]
pub struct Interception {
    _private: (),
}

impl Interception {
    /// Replace our table with `rules` (atomically).
    pub fn install(rules: &Rules) -> Result<Self, InterceptError> {
        nft(&rules.script())?;
        Ok(Self { _private: () })
    }

    /// Remove our table (no error if it is not there).
    pub fn remove() -> Result<(), InterceptError> {
        nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"))
    }
}

impl Drop for Interception {
    fn drop(&mut self) {
        if let Err(e) = Self::remove() {
            tracing::warn!(error = %e, "could not remove nftables table inet {TABLE}");
        }
    }
}

/// Where a `redirect`ed connection was going, from conntrack (`SO_ORIGINAL_DST`, through
/// socket2).
pub fn original_dst<S: AsFd>(s: &S) -> std::io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(s);
    // Try IPv4 first: an `inet` table redirects both families, and v4 is what VIPs use.
    let addr = sock.original_dst_v4().or_else(|_| sock.original_dst_v6())?;
    addr.as_socket().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the original destination is not an IP socket address",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_replaces_only_our_table_atomically() {
        let s = Rules::for_proxy(15001).script();
        // Create-if-missing then delete then define: one transaction, idempotent.
        assert!(
            s.starts_with("table inet trellis\ndelete table inet trellis\ntable inet trellis {"),
            "{s}"
        );
        assert!(s.contains("ip daddr 198.18.0.0/16 meta l4proto tcp redirect to :15001"));
        assert!(s.contains("type nat hook prerouting priority -110"));
        assert!(s.contains("chain output"));
        assert!(!s.contains("fw4"));
    }
}
