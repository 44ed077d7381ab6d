//! rtnetlink for the mesh interface: bring it up, give it an address, put it into the LAN
//! bridge with the mesh port's STP path cost (see [`super::role`]). `ip link` / `ip addr`
//! equivalents; nothing here shells out.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::{LinkBridgePort, LinkUnspec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open an rtnetlink socket")]
    Socket(#[source] std::io::Error),
    #[error("no network interface named {0:?}")]
    NoSuchLink(String),
    #[error("{what} on {link}: {source}")]
    Netlink {
        what: &'static str,
        link: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{0:?} is not an address with prefix (expected e.g. 10.99.0.1/24)")]
    BadCidr(String),
}

/// An address with prefix length, `10.99.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadCidr(s.chars().take(60).collect());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

#[derive(Clone)]
pub struct Links {
    handle: rtnetlink::Handle,
}

impl Links {
    pub fn connect() -> Result<Self, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    async fn index(&self, name: &str) -> Result<u32, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            _ => Err(Error::NoSuchLink(name.to_string())),
        }
    }

    /// `ip link set NAME up`.
    pub async fn set_up(&self, name: &str) -> Result<(), Error> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|source| Error::Netlink {
                what: "setting the link up",
                link: name.to_string(),
                source,
            })
    }

    /// `ip addr add CIDR dev NAME`; an address already there is fine.
    pub async fn add_address(&self, name: &str, cidr: Cidr) -> Result<(), Error> {
        let index = self.index(name).await?;
        match self
            .handle
            .address()
            .add(index, cidr.addr, cidr.prefix)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_eexist() => Ok(()),
            Err(source) => Err(Error::Netlink {
                what: "adding an address",
                link: name.to_string(),
                source,
            }),
        }
    }

    /// `ip link set NAME master BRIDGE`: the mesh joins the LAN bridge. The STP cost of the port
    /// is set by the LAN bridge owner (the role decision carries it); see [`super::role`].
    pub async fn enslave(&self, name: &str, bridge: &str) -> Result<(), Error> {
        let index = self.index(name).await?;
        let bridge_index = self.index(bridge).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge_index)
                    .build(),
            )
            .execute()
            .await
            .map_err(|source| Error::Netlink {
                what: "adding the mesh to the bridge",
                link: name.to_string(),
                source,
            })
    }
}

impl Links {
    /// `ip link set NAME type bridge_slave cost COST`: the STP path cost of the mesh port, so a
    /// cable wins over the air (see [`super::role`]). STP itself is switched on for the LAN
    /// bridge by the firmware's defaults, not by the agent at run time (Trellis does not rewrite
    /// `/etc/config/network` behind LuCI's back).
    pub async fn set_port_cost(&self, name: &str, cost: u32) -> Result<(), Error> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set_port(LinkBridgePort::new(index).cost(cost).build())
            .execute()
            .await
            .map_err(|source| Error::Netlink {
                what: "setting the bridge port cost",
                link: name.to_string(),
                source,
            })
    }
}

/// EEXIST, without a libc dependency for one constant.
const fn libc_eexist() -> i32 {
    17
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse() {
        let c: Cidr = "10.99.0.1/24".parse().expect("valid");
        assert_eq!(c.prefix, 24);
        assert!("10.99.0.1".parse::<Cidr>().is_err());
        assert!("10.99.0.1/33".parse::<Cidr>().is_err());
        assert!("fd00::1/64".parse::<Cidr>().is_ok());
        assert!("x/8".parse::<Cidr>().is_err());
    }
}
