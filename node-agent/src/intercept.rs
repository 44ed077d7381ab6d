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
//! `unsafe` here: `getsockopt(SO_ORIGINAL_DST)` has no safe wrapper in std or tokio; the call
//! writes at most `len` bytes into a zeroed `sockaddr_in(6)` we own.
//!
//! Entry point for the lead: `let _nft = Interception::install(&Rules::for_proxy(port))?;`
//! keep the guard alive for the agent's lifetime.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use trellis_proto::catalog;
use trellis_proto::policy::MacAddr;

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

fn nft(script: &str) -> Result<(), InterceptError> {
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

const SO_ORIGINAL_DST: libc::c_int = 80; // linux/netfilter_ipv4.h
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80; // linux/netfilter_ipv6/ip6_tables.h

/// Where a `redirect`ed connection was going, from conntrack.
pub fn original_dst<S: AsRawFd>(s: &S) -> std::io::Result<SocketAddr> {
    let fd = s.as_raw_fd();
    // Try IPv4 first: an `inet` table redirects both families, and v4 is what VIPs use.
    // SAFETY: `addr` is a zeroed sockaddr_in owned by this frame and `len` is its size;
    // the kernel writes at most `len` bytes.
    unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::getsockopt(
            fd,
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        ) == 0
        {
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            return Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(addr.sin_port),
            )));
        }
        let mut addr6: libc::sockaddr_in6 = std::mem::zeroed();
        let mut len6 = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        if libc::getsockopt(
            fd,
            libc::SOL_IPV6,
            IP6T_SO_ORIGINAL_DST,
            (&mut addr6 as *mut libc::sockaddr_in6).cast(),
            &mut len6,
        ) == 0
        {
            let ip = Ipv6Addr::from(addr6.sin6_addr.s6_addr);
            return Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(addr6.sin6_port),
                0,
                0,
            )));
        }
    }
    Err(std::io::Error::last_os_error())
}

/// The MAC of a LAN neighbour from the kernel's ARP table (`/proc/net/arp`), so policy can
/// know a device by hardware address even when its IP changed. IPv4 only; `None` when unknown.
pub fn neighbour_mac(ip: IpAddr) -> Option<MacAddr> {
    let IpAddr::V4(v4) = ip else { return None };
    // thread-self: the table of the namespace this thread is in (/proc/net follows the main
    // thread, which differs when a thread was moved into a namespace, as tests do).
    let text = std::fs::read_to_string("/proc/thread-self/net/arp")
        .or_else(|_| std::fs::read_to_string("/proc/net/arp"))
        .ok()?;
    parse_arp(&text, v4)
}

/// Public only for the fuzz targets (node-agent/fuzz).
#[doc(hidden)]
pub fn parse_arp(text: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device; flags 0x0 = incomplete.
        if f.len() >= 4 && f[0].parse::<Ipv4Addr>().ok()? == ip && f[2] != "0x0" {
            f[3].parse().ok().filter(|m: &MacAddr| m.0 != [0; 6])
        } else {
            None
        }
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

    #[test]
    fn arp_table_lookup() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 10.1.0.2         0x1         0x2         02:00:00:00:00:01     *        br-lan\n\
                 10.1.0.3         0x1         0x0         00:00:00:00:00:00     *        br-lan\n";
        assert_eq!(
            parse_arp(t, "10.1.0.2".parse().unwrap())
                .unwrap()
                .to_string(),
            "02:00:00:00:00:01"
        );
        assert_eq!(parse_arp(t, "10.1.0.3".parse().unwrap()), None);
        assert_eq!(parse_arp(t, "10.1.0.4".parse().unwrap()), None);
    }
}
