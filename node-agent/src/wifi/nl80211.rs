//! The agent's nl80211 handle: radios, interfaces, the mesh-point interface, peer links
//! (stations), mesh paths, mesh parameters and nl80211 events.
//!
//! Typed requests go through `wl-nl80211`; what it does not type yet (JOIN_MESH, GET_MPATH,
//! GET/SET_MESH_CONFIG, SET_STATION plink_action) is sent through its generic request path with
//! attributes from [`super::raw_nla`]. Each method names the `iw` command it matches.

use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use wl_nl80211::packet_core::{DefaultNla, NetlinkMessage, NetlinkPayload};
use wl_nl80211::packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use wl_nl80211::packet_generic::GenlMessage;
use wl_nl80211::{
    Nl80211Attr, Nl80211Command, Nl80211Handle, Nl80211InterfaceType, Nl80211Message,
    Nl80211MulticastGroup, Nl80211NewInterface, Nl80211PeerLinkState, Nl80211RateInfo,
    Nl80211StationInfo,
};

use super::raw_nla::{self, MeshParam, MpathInfo, PlinkAction};
use super::Mac;

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

/// A radio (`iw phy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Radio {
    pub wiphy: u32,
    pub name: String,
}

/// A wireless interface (`iw dev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WifiInterface {
    pub ifindex: u32,
    pub name: String,
    pub wiphy: u32,
    pub iftype: String,
    pub mac: Option<Mac>,
    pub freq_mhz: Option<u32>,
}

/// The state of one peer link (`iw dev X station dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerLink {
    pub peer: Mac,
    /// ESTAB, LISTEN, OPN_SNT, OPN_RCVD, CNF_RCVD, HOLDING, BLOCKED (the `iw` names).
    pub plink: String,
    pub signal_dbm: Option<i8>,
    pub signal_avg_dbm: Option<i8>,
    /// Last TX rate in 100 kbit/s, as the kernel reports it.
    pub tx_bitrate_100kbps: Option<u32>,
    /// Estimated throughput in kbit/s (mac80211's rate control estimate).
    pub expected_throughput_kbps: Option<u32>,
    /// The HWMP airtime link metric (lower is better).
    pub airtime_metric: Option<u16>,
    pub inactive_ms: Option<u32>,
    pub tx_failed: Option<u32>,
    pub tx_retries: Option<u32>,
    pub connected_to_gate: Option<bool>,
}

impl PeerLink {
    pub fn is_established(&self) -> bool {
        self.plink == "ESTAB"
    }
}

/// One mesh path (`iw dev X mpath dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeshPath {
    pub dst: Mac,
    pub next_hop: Mac,
    #[serde(flatten)]
    pub info: MpathInfo,
}

/// What the agent cares about among nl80211 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WifiEvent {
    /// NEW_STATION: a peer appeared (or a peer link changed state).
    PeerNew {
        ifindex: u32,
        peer: Mac,
    },
    /// DEL_STATION: a peer is gone.
    PeerDel {
        ifindex: u32,
        peer: Mac,
    },
    /// NEW_PEER_CANDIDATE: a mesh beacon from a node we have no link with (user MPM only).
    PeerCandidate {
        ifindex: u32,
        peer: Mac,
    },
    /// DEL_INTERFACE: our interface vanished (driver reset, someone ran `iw dev X del`).
    InterfaceGone {
        ifindex: u32,
    },
    Other {
        cmd: String,
    },
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

    /// `iw phy`: the radios.
    pub async fn radios(&self) -> Result<Vec<Radio>, Error> {
        let cmd = "GET_WIPHY";
        let mut stream = self.handle.clone().wireless_physic().get().execute().await;
        let mut out: Vec<Radio> = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            let mut wiphy = None;
            let mut name = None;
            for a in &msg.payload.attributes {
                match a {
                    Nl80211Attr::Wiphy(w) => wiphy = Some(*w),
                    Nl80211Attr::WiphyName(n) => name = Some(n.clone()),
                    _ => {}
                }
            }
            // A split dump sends several messages per radio; keep one entry each.
            if let (Some(wiphy), Some(name)) = (wiphy, name) {
                if !out.iter().any(|r| r.wiphy == wiphy) && out.len() < MAX_DUMP_ENTRIES {
                    out.push(Radio { wiphy, name });
                }
            }
        }
        out.sort_by_key(|r| r.wiphy);
        Ok(out)
    }

    /// `iw dev`: the wireless interfaces.
    pub async fn interfaces(&self) -> Result<Vec<WifiInterface>, Error> {
        let cmd = "GET_INTERFACE";
        let mut stream = self.handle.clone().interface().get(vec![]).execute().await;
        let mut out = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            if let Some(iface) = interface_from_attrs(&msg.payload.attributes) {
                if out.len() < MAX_DUMP_ENTRIES {
                    out.push(iface);
                }
            }
        }
        out.sort_by_key(|i: &WifiInterface| i.ifindex);
        Ok(out)
    }

    pub async fn interface_by_name(&self, name: &str) -> Result<WifiInterface, Error> {
        self.interfaces()
            .await?
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| Error::NoSuchInterface(name.to_string()))
    }

    pub async fn radio_by_name(&self, name: &str) -> Result<Radio, Error> {
        self.radios()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::NoSuchRadio(name.to_string()))
    }

    /// `iw phy PHY interface add NAME type mp`: creates the mesh-point interface, or returns the
    /// existing one of that name if it already is a mesh point on that radio.
    pub async fn ensure_mesh_interface(
        &self,
        wiphy: u32,
        name: &str,
    ) -> Result<WifiInterface, Error> {
        if let Some(existing) = self
            .interfaces()
            .await?
            .into_iter()
            .find(|i| i.name == name)
        {
            if existing.iftype == "mesh point" && existing.wiphy == wiphy {
                return Ok(existing);
            }
            self.delete_interface(existing.ifindex).await?;
        }
        let cmd = "NEW_INTERFACE";
        let attrs =
            Nl80211NewInterface::new(wiphy, Nl80211InterfaceType::MeshPoint, name.to_string())
                .build();
        let mut stream = self.handle.clone().interface().add(attrs).execute().await;
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            if let Some(iface) = interface_from_attrs(&msg.payload.attributes) {
                return Ok(iface);
            }
        }
        self.interface_by_name(name).await
    }

    /// `iw dev X del`.
    pub async fn delete_interface(&self, ifindex: u32) -> Result<(), Error> {
        self.raw(
            Nl80211Command::DelInterface,
            vec![Nl80211Attr::IfIndex(ifindex)],
            false,
        )
        .await
        .map(|_| ())
    }

    /// `iw dev X mesh join ID freq F [mesh params]`: joins an OPEN mesh run by the kernel's own
    /// peering. Only for the explicit test setting: an encrypted mesh is joined by
    /// wpa_supplicant (see [`super::sae`]).
    pub async fn join_open_mesh(
        &self,
        ifindex: u32,
        mesh_id: &str,
        freq_mhz: u32,
        params: &[(MeshParam, u32)],
    ) -> Result<(), Error> {
        let mut attrs = vec![
            Nl80211Attr::IfIndex(ifindex),
            other(raw_nla::ATTR_MESH_ID, mesh_id.as_bytes().to_vec()),
            Nl80211Attr::WiphyFreq(freq_mhz),
            other(raw_nla::ATTR_MESH_SETUP, raw_nla::encode_mesh_setup_open()),
        ];
        if !params.is_empty() {
            attrs.push(other(
                raw_nla::ATTR_MESH_CONFIG,
                raw_nla::encode_mesh_config(params),
            ));
        }
        self.raw(Nl80211Command::JoinMesh, attrs, false)
            .await
            .map(|_| ())
    }

    /// `iw dev X mesh leave`.
    pub async fn leave_mesh(&self, ifindex: u32) -> Result<(), Error> {
        self.raw(
            Nl80211Command::LeaveMesh,
            vec![Nl80211Attr::IfIndex(ifindex)],
            false,
        )
        .await
        .map(|_| ())
    }

    /// `iw dev X station dump`: every peer link with its signal, rates and metric.
    pub async fn peer_links(&self, ifindex: u32) -> Result<Vec<PeerLink>, Error> {
        let cmd = "GET_STATION";
        let mut stream = self.handle.clone().station().dump(ifindex).execute().await;
        let mut out = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            if let Some(link) = peer_link_from_attrs(&msg.payload.attributes) {
                if out.len() < MAX_DUMP_ENTRIES {
                    out.push(link);
                }
            }
        }
        out.sort_by_key(|l: &PeerLink| l.peer);
        Ok(out)
    }

    /// `iw dev X station del PEER`: drops the peer's station entry (and any BLOCKED state).
    pub async fn delete_station(&self, ifindex: u32, peer: Mac) -> Result<(), Error> {
        self.raw(
            Nl80211Command::DelStation,
            vec![Nl80211Attr::IfIndex(ifindex), Nl80211Attr::Mac(peer.0)],
            false,
        )
        .await
        .map(|_| ())
    }

    /// `iw dev X mpath dump`.
    pub async fn mesh_paths(&self, ifindex: u32) -> Result<Vec<MeshPath>, Error> {
        let msgs = self
            .raw(
                Nl80211Command::GetMpath,
                vec![Nl80211Attr::IfIndex(ifindex)],
                true,
            )
            .await?;
        let mut out = Vec::new();
        for m in msgs {
            match mesh_path_from_attrs(&m.attributes) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a malformed mesh path"),
            }
        }
        out.sort_by_key(|p: &MeshPath| p.dst);
        Ok(out)
    }

    /// `iw dev X mpath del DST`: forgets a path so the next frame starts a fresh discovery.
    pub async fn delete_mesh_path(&self, ifindex: u32, dst: Mac) -> Result<(), Error> {
        self.raw(
            Nl80211Command::DelMpath,
            vec![Nl80211Attr::IfIndex(ifindex), Nl80211Attr::Mac(dst.0)],
            false,
        )
        .await
        .map(|_| ())
    }

    /// `iw dev X get mesh_param`: every parameter the kernel reports.
    pub async fn mesh_config(&self, ifindex: u32) -> Result<Vec<(MeshParam, u32)>, Error> {
        let msgs = self
            .raw(
                Nl80211Command::GetMeshConfig,
                vec![Nl80211Attr::IfIndex(ifindex)],
                false,
            )
            .await?;
        for m in msgs {
            for a in &m.attributes {
                if let Some(v) = other_value(a, raw_nla::ATTR_MESH_CONFIG) {
                    return raw_nla::parse_mesh_config(&v).map_err(|e| Error::Request {
                        cmd: "GET_MESH_CONFIG",
                        detail: e.to_string(),
                    });
                }
            }
        }
        Ok(Vec::new())
    }

    /// `iw dev X set mesh_param NAME VALUE` for several parameters at once (the mesh must be
    /// joined: the kernel answers ENOLINK before that).
    pub async fn set_mesh_config(
        &self,
        ifindex: u32,
        params: &[(MeshParam, u32)],
    ) -> Result<(), Error> {
        if params.is_empty() {
            return Ok(());
        }
        self.raw(
            Nl80211Command::SetMeshConfig,
            vec![
                Nl80211Attr::IfIndex(ifindex),
                other(
                    raw_nla::ATTR_MESH_CONFIG,
                    raw_nla::encode_mesh_config(params),
                ),
            ],
            false,
        )
        .await
        .map(|_| ())
    }

    /// `iw dev X station set PEER plink_action open|block`.
    pub async fn set_plink_action(
        &self,
        ifindex: u32,
        peer: Mac,
        action: PlinkAction,
    ) -> Result<(), Error> {
        self.raw(
            Nl80211Command::SetStation,
            vec![
                Nl80211Attr::IfIndex(ifindex),
                Nl80211Attr::Mac(peer.0),
                other(raw_nla::ATTR_STA_PLINK_ACTION, vec![action as u8]),
            ],
            false,
        )
        .await
        .map(|_| ())
    }

    /// Sends one request and collects the replies; a kernel error (NACK) becomes
    /// [`Error::Kernel`]. `dump` asks for every object; otherwise an ACK is requested so
    /// commands without a reply still report failure.
    async fn raw(
        &self,
        cmd: Nl80211Command,
        attributes: Vec<Nl80211Attr>,
        dump: bool,
    ) -> Result<Vec<Nl80211Message>, Error> {
        let name = command_name(cmd);
        let mut msg = NetlinkMessage::from(GenlMessage::from_payload(Nl80211Message {
            cmd,
            attributes,
        }));
        msg.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let mut handle = self.handle.clone();
        let stream = handle.request(msg).await.map_err(|e| Error::Request {
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

/// Subscribes to the nl80211 `mlme` and `config` multicast groups (`iw event`): peer links
/// appearing and going, interfaces vanishing. The returned stream ends when the socket closes.
pub fn events() -> Result<impl Stream<Item = WifiEvent>, Error> {
    let (conn, _handle, messages) = wl_nl80211::new_multicast_connection(&[
        Nl80211MulticastGroup::Mlme,
        Nl80211MulticastGroup::Config,
    ])
    .map_err(Error::Socket)?;
    tokio::spawn(conn);
    Ok(messages.filter_map(|(msg, _)| async move {
        let NetlinkPayload::InnerMessage(raw) = msg.payload else {
            return None;
        };
        let genl = raw.parse_into_genlmsg::<Nl80211Message>().ok()?;
        Some(event_from_message(&genl.payload))
    }))
}

fn event_from_message(msg: &Nl80211Message) -> WifiEvent {
    let ifindex = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            Nl80211Attr::IfIndex(i) => Some(*i),
            _ => None,
        })
        .unwrap_or(0);
    let mac = msg.attributes.iter().find_map(|a| match a {
        Nl80211Attr::Mac(m) => Some(Mac(*m)),
        _ => None,
    });
    match (msg.cmd, mac) {
        (Nl80211Command::NewStation, Some(peer)) => WifiEvent::PeerNew { ifindex, peer },
        (Nl80211Command::DelStation, Some(peer)) => WifiEvent::PeerDel { ifindex, peer },
        (Nl80211Command::DelInterface, _) => WifiEvent::InterfaceGone { ifindex },
        (Nl80211Command::Other(NL80211_CMD_NEW_PEER_CANDIDATE), Some(peer)) => {
            WifiEvent::PeerCandidate { ifindex, peer }
        }
        (cmd, _) => WifiEvent::Other {
            cmd: format!("{cmd:?}"),
        },
    }
}

/// `NL80211_CMD_NEW_PEER_CANDIDATE` (wl-nl80211 0.8 has no name for it).
const NL80211_CMD_NEW_PEER_CANDIDATE: u8 = 72;

fn other(kind: u16, value: Vec<u8>) -> Nl80211Attr {
    Nl80211Attr::Other(DefaultNla::new(kind, value))
}

/// The value of an untyped attribute of the given kind (nested flag ignored).
fn other_value(attr: &Nl80211Attr, kind: u16) -> Option<Vec<u8>> {
    match attr {
        Nl80211Attr::Other(nla) => {
            let (k, v) = nla_parts(nla);
            (k == kind).then_some(v)
        }
        _ => None,
    }
}

fn mesh_path_from_attrs(attrs: &[Nl80211Attr]) -> Result<Option<MeshPath>, raw_nla::NlaError> {
    let mut dst = None;
    let mut next_hop = None;
    let mut info = None;
    for a in attrs {
        match a {
            Nl80211Attr::Mac(m) => dst = Some(Mac(*m)),
            Nl80211Attr::Other(nla) => {
                let (kind, value) = nla_parts(nla);
                match kind {
                    raw_nla::ATTR_MPATH_NEXT_HOP => {
                        next_hop = Some(Mac(raw_nla::parse_mac(kind, &value)?))
                    }
                    raw_nla::ATTR_MPATH_INFO => info = Some(raw_nla::parse_mpath_info(&value)?),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(match (dst, next_hop) {
        (Some(dst), Some(next_hop)) => Some(MeshPath {
            dst,
            next_hop,
            info: info.unwrap_or_default(),
        }),
        _ => None,
    })
}

/// Kind (flags masked) and value bytes of an untyped attribute. `DefaultNla` keeps its fields
/// private, so the value is read back by emitting it.
fn nla_parts(nla: &DefaultNla) -> (u16, Vec<u8>) {
    use wl_nl80211::packet_core::Nla;
    let mut value = vec![0u8; nla.value_len()];
    nla.emit_value(&mut value);
    (nla.kind() & 0x3fff, value)
}

fn interface_from_attrs(attrs: &[Nl80211Attr]) -> Option<WifiInterface> {
    let mut ifindex = None;
    let mut name = None;
    let mut wiphy = None;
    let mut iftype = None;
    let mut mac = None;
    let mut freq = None;
    for a in attrs {
        match a {
            Nl80211Attr::IfIndex(i) => ifindex = Some(*i),
            Nl80211Attr::IfName(n) => name = Some(n.clone()),
            Nl80211Attr::Wiphy(w) => wiphy = Some(*w),
            Nl80211Attr::IfType(t) => iftype = Some(iftype_name(t)),
            Nl80211Attr::Mac(m) => mac = Some(Mac(*m)),
            Nl80211Attr::WiphyFreq(f) => freq = Some(*f),
            _ => {}
        }
    }
    Some(WifiInterface {
        ifindex: ifindex?,
        name: name?,
        wiphy: wiphy?,
        iftype: iftype.unwrap_or_else(|| "unknown".into()),
        mac,
        freq_mhz: freq,
    })
}

fn iftype_name(t: &Nl80211InterfaceType) -> String {
    match t {
        Nl80211InterfaceType::MeshPoint => "mesh point".into(),
        Nl80211InterfaceType::Station => "managed".into(),
        Nl80211InterfaceType::Ap => "AP".into(),
        Nl80211InterfaceType::Monitor => "monitor".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn peer_link_from_attrs(attrs: &[Nl80211Attr]) -> Option<PeerLink> {
    let mut peer = None;
    let mut info: &[Nl80211StationInfo] = &[];
    for a in attrs {
        match a {
            Nl80211Attr::Mac(m) => peer = Some(Mac(*m)),
            Nl80211Attr::StationInfo(i) => info = i,
            _ => {}
        }
    }
    let mut link = PeerLink {
        peer: peer?,
        plink: "UNKNOWN".into(),
        signal_dbm: None,
        signal_avg_dbm: None,
        tx_bitrate_100kbps: None,
        expected_throughput_kbps: None,
        airtime_metric: None,
        inactive_ms: None,
        tx_failed: None,
        tx_retries: None,
        connected_to_gate: None,
    };
    for i in info {
        match i {
            Nl80211StationInfo::PeerLinkState(s) => link.plink = plink_name(s),
            Nl80211StationInfo::Signal(s) => link.signal_dbm = Some(*s),
            Nl80211StationInfo::SignalAvg(s) => link.signal_avg_dbm = Some(*s),
            Nl80211StationInfo::TxBitrate(rate) => link.tx_bitrate_100kbps = bitrate(rate),
            Nl80211StationInfo::ExpectedThroughput(t) => link.expected_throughput_kbps = Some(*t),
            Nl80211StationInfo::AirtimeLinkMetric(m) => link.airtime_metric = Some(*m),
            Nl80211StationInfo::InactiveTime(t) => link.inactive_ms = Some(*t),
            Nl80211StationInfo::TxFailed(t) => link.tx_failed = Some(*t),
            Nl80211StationInfo::TxRetries(t) => link.tx_retries = Some(*t),
            Nl80211StationInfo::ConnectedToGate(g) => link.connected_to_gate = Some(*g),
            _ => {}
        }
    }
    Some(link)
}

/// The 32-bit bitrate when present (it does not overflow above 6.5 Gbit/s), else the 16-bit one.
fn bitrate(rate: &[Nl80211RateInfo]) -> Option<u32> {
    let mut b16 = None;
    for r in rate {
        match r {
            Nl80211RateInfo::Bitrate32(b) => return Some(*b),
            Nl80211RateInfo::Bitrate(b) => b16 = Some(u32::from(*b)),
            _ => {}
        }
    }
    b16
}

fn plink_name(s: &Nl80211PeerLinkState) -> String {
    match s {
        Nl80211PeerLinkState::Listen => "LISTEN".into(),
        Nl80211PeerLinkState::OpenSent => "OPN_SNT".into(),
        Nl80211PeerLinkState::OpenReceived => "OPN_RCVD".into(),
        Nl80211PeerLinkState::ConfirmReceived => "CNF_RCVD".into(),
        Nl80211PeerLinkState::Established => "ESTAB".into(),
        Nl80211PeerLinkState::Holding => "HOLDING".into(),
        Nl80211PeerLinkState::Blocked => "BLOCKED".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

fn command_name(cmd: Nl80211Command) -> &'static str {
    match cmd {
        Nl80211Command::JoinMesh => "JOIN_MESH",
        Nl80211Command::LeaveMesh => "LEAVE_MESH",
        Nl80211Command::GetMpath => "GET_MPATH",
        Nl80211Command::DelMpath => "DEL_MPATH",
        Nl80211Command::GetMeshConfig => "GET_MESH_CONFIG",
        Nl80211Command::SetMeshConfig => "SET_MESH_CONFIG",
        Nl80211Command::SetStation => "SET_STATION",
        Nl80211Command::DelInterface => "DEL_INTERFACE",
        Nl80211Command::DelStation => "DEL_STATION",
        _ => "request",
    }
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
    fn mpath_reply_attributes_become_a_path() {
        let mut w = raw_nla::NlaWriter::new();
        w.u32(3, 170).u8(5, raw_nla::mpath_flags::ACTIVE).u8(8, 2);
        let attrs = vec![
            Nl80211Attr::IfIndex(5),
            Nl80211Attr::Mac([2, 0, 0, 0, 2, 0]),
            other(raw_nla::ATTR_MPATH_NEXT_HOP, vec![2, 0, 0, 0, 1, 0]),
            other(raw_nla::ATTR_MPATH_INFO | 0x8000, w.finish()),
        ];
        let p = mesh_path_from_attrs(&attrs)
            .expect("valid")
            .expect("complete");
        assert_eq!(p.dst.to_string(), "02:00:00:00:02:00");
        assert_eq!(p.next_hop.to_string(), "02:00:00:00:01:00");
        assert_eq!(p.info.metric, Some(170));
        assert_eq!(p.info.hop_count, Some(2));
        assert!(p.info.is_active());
    }

    #[test]
    fn a_short_next_hop_is_an_error() {
        let attrs = vec![
            Nl80211Attr::Mac([2, 0, 0, 0, 2, 0]),
            other(raw_nla::ATTR_MPATH_NEXT_HOP, vec![2, 0, 0]),
        ];
        assert!(mesh_path_from_attrs(&attrs).is_err());
    }

    #[test]
    fn station_attributes_become_a_peer_link() {
        let attrs = vec![
            Nl80211Attr::Mac([2, 0, 0, 0, 1, 0]),
            Nl80211Attr::StationInfo(vec![
                Nl80211StationInfo::PeerLinkState(Nl80211PeerLinkState::Established),
                Nl80211StationInfo::Signal(-42),
                Nl80211StationInfo::TxBitrate(vec![Nl80211RateInfo::Bitrate(540)]),
                Nl80211StationInfo::ExpectedThroughput(36000),
                Nl80211StationInfo::AirtimeLinkMetric(170),
            ]),
        ];
        let l = peer_link_from_attrs(&attrs).expect("has a MAC");
        assert!(l.is_established());
        assert_eq!(l.signal_dbm, Some(-42));
        assert_eq!(l.tx_bitrate_100kbps, Some(540));
        assert_eq!(l.expected_throughput_kbps, Some(36000));
        assert_eq!(l.airtime_metric, Some(170));
    }

    #[test]
    fn station_events_name_the_peer() {
        let msg = Nl80211Message {
            cmd: Nl80211Command::DelStation,
            attributes: vec![
                Nl80211Attr::IfIndex(7),
                Nl80211Attr::Mac([2, 0, 0, 0, 3, 0]),
            ],
        };
        assert_eq!(
            event_from_message(&msg),
            WifiEvent::PeerDel {
                ifindex: 7,
                peer: Mac([2, 0, 0, 0, 3, 0])
            }
        );
    }
}
