//! The agent's nl80211 handle: radios, interfaces, the mesh-point interface, peer links
//! (stations), mesh paths, mesh parameters, channel surveys and nl80211 events.
//!
//! Radios and interfaces go through `wl-nl80211`'s typed requests. What it does not type yet
//! (JOIN_MESH, GET_MPATH, GET/SET_MESH_CONFIG, SET_STATION plink_action) and the station dump
//! (its parser rejects the kernel's u32 airtime metric, see [`super::raw_nla`]) go through the
//! same generic-netlink connection as [`RawNl80211`] messages whose attributes are built and
//! parsed in [`super::raw_nla`]. Each method names the `iw` command it matches.
//!
//! This file owns the connection itself: [`Nl80211`], its errors, the raw request path
//! (command numbers, [`RawNl80211`], timeouts, dump bounds). The requests are grouped by what
//! they are about:
//!
//! - `interface`: radios, interfaces, the mesh-point interface and its mesh parameters.
//! - `stations`: peer links (stations), access-point clients and mesh paths.
//! - `channels`: what each channel allows, the survey dump and the channel switch.
//! - `events`: the multicast events the agent follows.

mod channels;
mod events;
mod interface;
mod stations;

use std::time::Duration;

use futures_util::StreamExt;
use wl_nl80211::packet_core::{
    DecodeError, Emitable, NetlinkMessage, NetlinkPayload, ParseableParametrized,
};
use wl_nl80211::packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use wl_nl80211::packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use wl_nl80211::Nl80211Handle;

use super::raw_nla::{self, NlaWriter};
use trellis_proto::policy::MacAddr;

pub use channels::chan_width_value;
pub use events::{event_from_message, events, RadarEvent, WifiEvent};
pub use interface::{Radio, WifiInterface};
pub use stations::{mesh_path_from_attrs, peer_link_from_attrs, ApClient, MeshPath, PeerLink};

/// Dumps stop here: a home mesh has a handful of peers; a kernel that returns thousands of
/// entries is misbehaving and must not make the agent grow without bound.
pub const MAX_DUMP_ENTRIES: usize = 512;

/// How long one nl80211 request may take before the agent gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open an nl80211 socket (is cfg80211 loaded? running as root?)")]
    Socket(#[source] std::io::Error),
    #[error("nl80211 {cmd} refused by the kernel: {source}")]
    Kernel {
        cmd: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("nl80211 {cmd} failed: {detail}")]
    Request { cmd: &'static str, detail: String },
    #[error("nl80211 {cmd} got no answer within {REQUEST_TIMEOUT:?}")]
    Timeout { cmd: &'static str },
    #[error("no wifi interface named {0:?}")]
    NoSuchInterface(String),
    #[error("no radio named {0:?} (see `trellis-agent mesh --list`)")]
    NoSuchRadio(String),
}

/// The connection to nl80211 used for requests.
#[derive(Clone)]
pub struct Nl80211 {
    handle: Nl80211Handle,
}

impl Nl80211 {
    /// Opens a request socket; the connection task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, Error> {
        let (conn, handle, _) = wl_nl80211::new_connection().map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Sends one request and collects the replies; a kernel error (NACK) becomes
    /// [`Error::Kernel`]. `dump` asks for every object; otherwise an ACK is requested so
    /// commands without a reply still report failure.
    async fn raw(&self, command: u8, attrs: Vec<u8>, dump: bool) -> Result<Vec<RawNl80211>, Error> {
        let name = cmd_name(command);
        let mut msg = NetlinkMessage::from(GenlMessage::from_payload(RawNl80211 {
            cmd: command,
            attrs,
        }));
        msg.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let mut genl = self.handle.handle.clone();
        let stream = genl.request(msg).await.map_err(|e| Error::Request {
            cmd: name,
            detail: e.to_string(),
        })?;
        let mut stream = Box::pin(stream);
        let mut out = Vec::new();
        while let Some(item) = with_timeout_opt(name, stream.next()).await? {
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(cmd = name, error = %e, "undecodable nl80211 reply skipped");
                    continue;
                }
            };
            match msg.payload {
                NetlinkPayload::InnerMessage(genl) if out.len() < MAX_DUMP_ENTRIES => {
                    out.push(genl.payload);
                }
                NetlinkPayload::Error(err) => {
                    if err.code.is_some() {
                        return Err(Error::Kernel {
                            cmd: name,
                            source: err.to_io(),
                        });
                    }
                    break; // an ACK
                }
                NetlinkPayload::Done(_) => break,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// nl80211 command numbers (`enum nl80211_commands`, include/uapi/linux/nl80211.h).
mod cmd {
    pub const DEL_INTERFACE: u8 = 8;
    pub const GET_STATION: u8 = 17;
    pub const SET_STATION: u8 = 18;
    pub const NEW_STATION: u8 = 19;
    pub const DEL_STATION: u8 = 20;
    pub const GET_MPATH: u8 = 21;
    pub const DEL_MPATH: u8 = 24;
    pub const GET_MESH_CONFIG: u8 = 28;
    pub const SET_MESH_CONFIG: u8 = 29;
    pub const JOIN_MESH: u8 = 68;
    pub const LEAVE_MESH: u8 = 69;
    pub const NEW_PEER_CANDIDATE: u8 = 72;
    pub const GET_SURVEY: u8 = 50;
    pub const CH_SWITCH_NOTIFY: u8 = 88;
    pub const RADAR_DETECT: u8 = 94;
    pub const CHANNEL_SWITCH: u8 = 102;
}

/// An nl80211 message whose attributes stay raw bytes: sent and received through
/// `wl-nl80211`'s generic-netlink handle, parsed by [`super::raw_nla`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawNl80211 {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

impl GenlFamily for RawNl80211 {
    fn family_name() -> &'static str {
        "nl80211"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for RawNl80211 {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for RawNl80211 {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

fn cmd_name(c: u8) -> &'static str {
    match c {
        cmd::DEL_INTERFACE => "DEL_INTERFACE",
        cmd::GET_STATION => "GET_STATION",
        cmd::SET_STATION => "SET_STATION",
        cmd::DEL_STATION => "DEL_STATION",
        cmd::GET_MPATH => "GET_MPATH",
        cmd::DEL_MPATH => "DEL_MPATH",
        cmd::GET_MESH_CONFIG => "GET_MESH_CONFIG",
        cmd::SET_MESH_CONFIG => "SET_MESH_CONFIG",
        cmd::JOIN_MESH => "JOIN_MESH",
        cmd::LEAVE_MESH => "LEAVE_MESH",
        cmd::GET_SURVEY => "GET_SURVEY",
        cmd::CHANNEL_SWITCH => "CHANNEL_SWITCH",
        _ => "request",
    }
}

fn ifindex_attr(ifindex: u32) -> Vec<u8> {
    NlaWriter::new()
        .u32(raw_nla::ATTR_IFINDEX, ifindex)
        .finish()
}

fn ifindex_mac_attrs(ifindex: u32, mac: MacAddr) -> Vec<u8> {
    NlaWriter::new()
        .u32(raw_nla::ATTR_IFINDEX, ifindex)
        .bytes(raw_nla::ATTR_MAC, &mac.0)
        .finish()
}

async fn with_timeout<T, E: std::fmt::Display>(
    cmd: &'static str,
    fut: impl std::future::Future<Output = Result<Option<T>, E>>,
) -> Result<Option<T>, Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Err(_) => Err(Error::Timeout { cmd }),
        Ok(Err(e)) => Err(Error::Request {
            cmd,
            detail: e.to_string(),
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

async fn with_timeout_opt<T>(
    cmd: &'static str,
    fut: impl std::future::Future<Output = Option<T>>,
) -> Result<Option<T>, Error> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| Error::Timeout { cmd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_messages_emit_their_attribute_bytes() {
        let m = RawNl80211 {
            cmd: cmd::GET_MPATH,
            attrs: ifindex_attr(9),
        };
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        assert_eq!(buf, ifindex_attr(9));
        assert_eq!(m.command(), 21);
    }
}
