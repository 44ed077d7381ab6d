//! The agent's nl80211 handle: radios, interfaces, the mesh-point interface, peer links
//! (stations), mesh paths, mesh parameters, channel surveys and nl80211 events.
//!
//! Radios and interfaces go through `wl-nl80211`'s typed requests. What it does not type yet
//! (JOIN_MESH, GET_MPATH, GET/SET_MESH_CONFIG, SET_STATION plink_action) and the station dump
//! (its parser rejects the kernel's u32 airtime metric, see [`super::raw_nla`]) go through the
//! same generic-netlink connection as [`RawNl80211`] messages whose attributes are built and
//! parsed in [`super::raw_nla`]. Each method names the `iw` command it matches.

use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use wl_nl80211::packet_core::{
    DecodeError, Emitable, NetlinkMessage, NetlinkPayload, ParseableParametrized,
};
use wl_nl80211::packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use wl_nl80211::packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use wl_nl80211::{
    Nl80211Attr, Nl80211Handle, Nl80211InterfaceType, Nl80211MulticastGroup, Nl80211NewInterface,
};

use super::raw_nla::{self, MeshParam, MpathInfo, NlaWriter, PlinkAction};
use trellis_proto::policy::MacAddr;

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
    pub mac: Option<MacAddr>,
    pub freq_mhz: Option<u32>,
}

/// The state of one peer link (`iw dev X station dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerLink {
    pub peer: MacAddr,
    /// ESTAB, LISTEN, OPN_SNT, OPN_RCVD, CNF_RCVD, HOLDING, BLOCKED (the `iw` names).
    pub plink: String,
    pub signal_dbm: Option<i8>,
    pub signal_avg_dbm: Option<i8>,
    /// Last TX rate in 100 kbit/s, as the kernel reports it.
    pub tx_bitrate_100kbps: Option<u32>,
    /// Estimated throughput in kbit/s (mac80211's rate control estimate).
    pub expected_throughput_kbps: Option<u32>,
    /// The HWMP airtime link metric (lower is better).
    pub airtime_metric: Option<u32>,
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

/// A wifi client associated with one of this router's access points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApClient {
    pub mac: MacAddr,
    pub interface: String,
    pub signal_dbm: Option<i8>,
    pub inactive_ms: Option<u32>,
}

/// One mesh path (`iw dev X mpath dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeshPath {
    pub dst: MacAddr,
    pub next_hop: MacAddr,
    #[serde(flatten)]
    pub info: MpathInfo,
}

/// What the agent cares about among nl80211 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WifiEvent {
    /// NEW_STATION: a peer appeared (or a peer link changed state).
    PeerNew {
        ifindex: u32,
        peer: MacAddr,
    },
    /// DEL_STATION: a peer is gone.
    PeerDel {
        ifindex: u32,
        peer: MacAddr,
    },
    /// NEW_PEER_CANDIDATE: a mesh beacon from a node we have no link with (user MPM only).
    PeerCandidate {
        ifindex: u32,
        peer: MacAddr,
    },
    /// RADAR_DETECT: the radio's DFS detector reports on `freq_mhz` (a radar, or a channel
    /// availability check finishing or aborting, or the non-occupancy period ending).
    Radar {
        ifindex: u32,
        freq_mhz: u32,
        kind: RadarEvent,
    },
    /// CH_SWITCH_NOTIFY: the interface is now on `freq_mhz` (after a channel switch).
    ChannelSwitched {
        ifindex: u32,
        freq_mhz: u32,
    },
    /// DEL_INTERFACE: our interface vanished (driver reset, someone ran `iw dev X del`).
    InterfaceGone {
        ifindex: u32,
    },
    Other {
        cmd: String,
    },
}

/// `enum nl80211_radar_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RadarEvent {
    Detected,
    CacFinished,
    CacAborted,
    NopFinished,
    Other,
}

impl RadarEvent {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Detected,
            1 => Self::CacFinished,
            2 => Self::CacAborted,
            3 => Self::NopFinished,
            _ => Self::Other,
        }
    }
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

    /// `iw phy PHY interface add NAME type mp`: creates the mesh-point interface. An interface
    /// of that name left from an earlier run is deleted first: a fresh one carries no state from
    /// before (a killed wpa_supplicant leaves its link in DORMANT mode, which keeps a bridge
    /// port disabled).
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
        self.raw(cmd::DEL_INTERFACE, ifindex_attr(ifindex), false)
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
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, ifindex)
            .bytes(raw_nla::ATTR_MESH_ID, mesh_id.as_bytes())
            .u32(raw_nla::ATTR_WIPHY_FREQ, freq_mhz)
            .bytes(raw_nla::ATTR_MESH_SETUP, &raw_nla::encode_mesh_setup_open());
        if !params.is_empty() {
            w.bytes(
                raw_nla::ATTR_MESH_CONFIG,
                &raw_nla::encode_mesh_config(params),
            );
        }
        self.raw(cmd::JOIN_MESH, w.finish(), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X mesh leave`.
    pub async fn leave_mesh(&self, ifindex: u32) -> Result<(), Error> {
        self.raw(cmd::LEAVE_MESH, ifindex_attr(ifindex), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X station dump`: every peer link with its signal, rates and metric.
    pub async fn peer_links(&self, ifindex: u32) -> Result<Vec<PeerLink>, Error> {
        let msgs = self
            .raw(cmd::GET_STATION, ifindex_attr(ifindex), true)
            .await?;
        let mut out = Vec::new();
        for m in msgs {
            match peer_link_from_attrs(&m.attrs) {
                Ok(Some(l)) => out.push(l),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a malformed station entry"),
            }
        }
        out.sort_by_key(|l: &PeerLink| l.peer);
        Ok(out)
    }

    /// The clients of every access point on this router (`iw dev <ap> station dump` for each
    /// interface in AP mode, whoever created it: on OpenWrt hostapd does). Bounded.
    pub async fn ap_clients(&self) -> Result<Vec<ApClient>, Error> {
        let mut out = Vec::new();
        for ap in self
            .interfaces()
            .await?
            .into_iter()
            .filter(|i| i.iftype == "AP")
        {
            for sta in self.peer_links(ap.ifindex).await? {
                if out.len() >= MAX_DUMP_ENTRIES {
                    break;
                }
                out.push(ApClient {
                    mac: sta.peer,
                    interface: ap.name.clone(),
                    signal_dbm: sta.signal_avg_dbm.or(sta.signal_dbm),
                    inactive_ms: sta.inactive_ms,
                });
            }
        }
        Ok(out)
    }

    /// `iw dev X station del PEER`: drops the peer's station entry (and any BLOCKED state).
    pub async fn delete_station(&self, ifindex: u32, peer: MacAddr) -> Result<(), Error> {
        self.raw(cmd::DEL_STATION, ifindex_mac_attrs(ifindex, peer), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X mpath dump`.
    pub async fn mesh_paths(&self, ifindex: u32) -> Result<Vec<MeshPath>, Error> {
        let msgs = self
            .raw(cmd::GET_MPATH, ifindex_attr(ifindex), true)
            .await?;
        let mut out = Vec::new();
        for m in msgs {
            match mesh_path_from_attrs(&m.attrs) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a malformed mesh path"),
            }
        }
        out.sort_by_key(|p: &MeshPath| p.dst);
        Ok(out)
    }

    /// `iw dev X mpath del DST`: forgets a path so the next frame starts a fresh discovery.
    pub async fn delete_mesh_path(&self, ifindex: u32, dst: MacAddr) -> Result<(), Error> {
        self.raw(cmd::DEL_MPATH, ifindex_mac_attrs(ifindex, dst), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X get mesh_param`: every parameter the kernel reports.
    pub async fn mesh_config(&self, ifindex: u32) -> Result<Vec<(MeshParam, u32)>, Error> {
        let msgs = self
            .raw(cmd::GET_MESH_CONFIG, ifindex_attr(ifindex), false)
            .await?;
        for m in msgs {
            for a in raw_nla::attrs(&m.attrs).flatten() {
                if a.0 == raw_nla::ATTR_MESH_CONFIG {
                    return raw_nla::parse_mesh_config(a.1).map_err(|e| Error::Request {
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
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, ifindex).bytes(
            raw_nla::ATTR_MESH_CONFIG,
            &raw_nla::encode_mesh_config(params),
        );
        self.raw(cmd::SET_MESH_CONFIG, w.finish(), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X survey dump`: what the radio behind interface `ifindex` measured on each
    /// channel. A malformed entry is logged and skipped.
    pub async fn survey(&self, ifindex: u32) -> Result<Vec<super::survey::SurveyInfo>, Error> {
        let msgs = self
            .raw(cmd::GET_SURVEY, ifindex_attr(ifindex), true)
            .await?;
        let mut out = Vec::new();
        for m in msgs {
            match super::survey::survey_from_attrs(&m.attrs) {
                Ok(Some(s)) => out.push(s),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a malformed survey entry"),
            }
        }
        Ok(out)
    }

    /// `iw phy X info`'s frequency lines: what radio `wiphy` may do on each channel under the
    /// current regulatory domain, and the widest width its hardware supports there.
    pub async fn radio_channels(
        &self,
        wiphy: u32,
    ) -> Result<Vec<super::survey::ChannelCaps>, Error> {
        use wl_nl80211::Nl80211FrequencyInfo;
        use wl_nl80211::{Ieee80211HtCaps, Ieee80211VhtCapInfo, Nl80211BandInfo};
        // `enum nl80211_dfs_state`: USABLE 0, UNAVAILABLE 1 (radar seen), AVAILABLE 2.
        const DFS_UNAVAILABLE: u32 = 1;
        use trellis_proto::channel::{Band, Width};
        let cmd = "GET_WIPHY";
        let mut stream = self.handle.clone().wireless_physic().get().execute().await;
        // A split dump spreads one radio over several messages; channels are collected from all.
        let mut out: Vec<super::survey::ChannelCaps> = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            let attrs = &msg.payload.attributes;
            if !attrs
                .iter()
                .any(|a| matches!(a, Nl80211Attr::Wiphy(w) if *w == wiphy))
            {
                continue;
            }
            for a in attrs {
                let Nl80211Attr::WiphyBands(bands) = a else {
                    continue;
                };
                for band in bands {
                    let mut widest = Width::Mhz20;
                    for info in &band.info {
                        match info {
                            Nl80211BandInfo::HtCapa(c)
                                if c.contains(Ieee80211HtCaps::SupWidth2040) =>
                            {
                                widest = widest.max(Width::Mhz40)
                            }
                            Nl80211BandInfo::VhtCap(c) => {
                                widest = widest.max(Width::Mhz80);
                                if c.intersects(Ieee80211VhtCapInfo::SuppChanWidthMask) {
                                    widest = Width::Mhz160;
                                }
                            }
                            _ => {}
                        }
                    }
                    for info in &band.info {
                        let Nl80211BandInfo::Freqs(freqs) = info else {
                            continue;
                        };
                        for f in freqs {
                            let mut caps = super::survey::ChannelCaps {
                                freq_mhz: 0,
                                allowed: true,
                                dfs: false,
                                radar_unavailable: false,
                                max_width: widest,
                            };
                            let (mut no_minus, mut no_plus) = (false, false);
                            for fi in &f.info {
                                match fi {
                                    Nl80211FrequencyInfo::Freq(mhz) => caps.freq_mhz = *mhz,
                                    Nl80211FrequencyInfo::Disabled
                                    | Nl80211FrequencyInfo::NoIr
                                    | Nl80211FrequencyInfo::NoIbss => caps.allowed = false,
                                    Nl80211FrequencyInfo::Radar => caps.dfs = true,
                                    Nl80211FrequencyInfo::DfsState(state) => {
                                        caps.radar_unavailable = u32::from(state) == DFS_UNAVAILABLE
                                    }
                                    Nl80211FrequencyInfo::NoHt40Minus => no_minus = true,
                                    Nl80211FrequencyInfo::NoHt40Plus => no_plus = true,
                                    Nl80211FrequencyInfo::No80Mhz => {
                                        caps.max_width = caps.max_width.min(Width::Mhz40)
                                    }
                                    Nl80211FrequencyInfo::No160Mhz => {
                                        caps.max_width = caps.max_width.min(Width::Mhz80)
                                    }
                                    _ => {}
                                }
                            }
                            if no_minus && no_plus {
                                caps.max_width = Width::Mhz20;
                            }
                            // 40 MHz on 2.4 GHz takes most of the band: the mesh stays at 20.
                            if Band::of(caps.freq_mhz) == Some(Band::Ghz2) {
                                caps.max_width = Width::Mhz20;
                            }
                            if caps.freq_mhz != 0
                                && !out.iter().any(|c| c.freq_mhz == caps.freq_mhz)
                                && out.len() < MAX_DUMP_ENTRIES
                            {
                                out.push(caps);
                            }
                        }
                    }
                }
            }
        }
        out.sort_by_key(|c| c.freq_mhz);
        Ok(out)
    }

    /// `iw dev X switch freq F [WIDTH CENTER] [beacons N]`: a channel switch announcement on
    /// the mesh interface, `count` beacons ahead (mac80211 also sends the CSA action frame,
    /// and peers repeat it through the mesh). mac80211 refuses a mesh switch that changes
    /// the width or the band; see [`super::channel::plan`].
    pub async fn channel_switch(
        &self,
        ifindex: u32,
        freq_mhz: u32,
        width: trellis_proto::channel::Width,
        center_freq_mhz: u32,
        count: u8,
    ) -> Result<(), Error> {
        self.raw(
            cmd::CHANNEL_SWITCH,
            channel_switch_attrs(ifindex, freq_mhz, width, center_freq_mhz, count),
            false,
        )
        .await
        .map(|_| ())
    }

    /// `iw dev X station set PEER plink_action open|block`.
    pub async fn set_plink_action(
        &self,
        ifindex: u32,
        peer: MacAddr,
        action: PlinkAction,
    ) -> Result<(), Error> {
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, ifindex)
            .bytes(raw_nla::ATTR_MAC, &peer.0)
            .u8(raw_nla::ATTR_STA_PLINK_ACTION, action as u8);
        self.raw(cmd::SET_STATION, w.finish(), false)
            .await
            .map(|_| ())
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

/// Subscribes to the nl80211 `mlme` and `config` multicast groups (`iw event`): peer links
/// appearing and going, interfaces vanishing. The returned stream ends when the socket closes.
/// (The channel behind it is netlink-proto's; the agent drains it at once.)
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
        let genl = raw.parse_into_genlmsg::<RawNl80211>().ok()?;
        Some(event_from_message(&genl.payload))
    }))
}

/// Public only for the fuzz targets (node-agent/fuzz).
#[doc(hidden)]
pub fn event_from_message(msg: &RawNl80211) -> WifiEvent {
    let mut ifindex = 0;
    let mut mac = None;
    let mut freq = None;
    let mut radar = None;
    let u32_of = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes);
    for (k, v) in raw_nla::attrs(&msg.attrs).flatten() {
        match k {
            raw_nla::ATTR_IFINDEX => ifindex = u32_of(v).unwrap_or(ifindex),
            raw_nla::ATTR_MAC => mac = raw_nla::parse_mac(k, v).ok().map(MacAddr),
            raw_nla::ATTR_WIPHY_FREQ => freq = u32_of(v),
            raw_nla::ATTR_RADAR_EVENT => radar = u32_of(v),
            _ => {}
        }
    }
    match (msg.cmd, freq, radar) {
        (cmd::RADAR_DETECT, Some(freq_mhz), Some(r)) => {
            return WifiEvent::Radar {
                ifindex,
                freq_mhz,
                kind: RadarEvent::from_u32(r),
            }
        }
        (cmd::CH_SWITCH_NOTIFY, Some(freq_mhz), _) => {
            return WifiEvent::ChannelSwitched { ifindex, freq_mhz }
        }
        _ => {}
    }
    match (msg.cmd, mac) {
        (cmd::NEW_STATION, Some(peer)) => WifiEvent::PeerNew { ifindex, peer },
        (cmd::DEL_STATION, Some(peer)) => WifiEvent::PeerDel { ifindex, peer },
        (cmd::DEL_INTERFACE, _) => WifiEvent::InterfaceGone { ifindex },
        (cmd::NEW_PEER_CANDIDATE, Some(peer)) => WifiEvent::PeerCandidate { ifindex, peer },
        (c, _) => WifiEvent::Other { cmd: c.to_string() },
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

/// `enum nl80211_chan_width` for a width (20 MHz with HT, as mac80211 meshes run).
pub fn chan_width_value(width: trellis_proto::channel::Width) -> u32 {
    use trellis_proto::channel::Width;
    match width {
        Width::Mhz20 => 1,
        Width::Mhz40 => 2,
        Width::Mhz80 => 3,
        Width::Mhz160 => 5,
    }
}

fn channel_switch_attrs(
    ifindex: u32,
    freq_mhz: u32,
    width: trellis_proto::channel::Width,
    center_freq_mhz: u32,
    count: u8,
) -> Vec<u8> {
    NlaWriter::new()
        .u32(raw_nla::ATTR_IFINDEX, ifindex)
        .u32(raw_nla::ATTR_WIPHY_FREQ, freq_mhz)
        .u32(raw_nla::ATTR_CHANNEL_WIDTH, chan_width_value(width))
        .u32(raw_nla::ATTR_CENTER_FREQ1, center_freq_mhz)
        .u32(raw_nla::ATTR_CH_SWITCH_COUNT, u32::from(count))
        .finish()
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

/// Public only for the fuzz targets (node-agent/fuzz).
#[doc(hidden)]
pub fn mesh_path_from_attrs(buf: &[u8]) -> Result<Option<MeshPath>, raw_nla::NlaError> {
    let mut dst = None;
    let mut next_hop = None;
    let mut info = None;
    for a in raw_nla::attrs(buf) {
        let (k, v) = a?;
        match k {
            raw_nla::ATTR_MAC => dst = Some(MacAddr(raw_nla::parse_mac(k, v)?)),
            raw_nla::ATTR_MPATH_NEXT_HOP => next_hop = Some(MacAddr(raw_nla::parse_mac(k, v)?)),
            raw_nla::ATTR_MPATH_INFO => info = Some(raw_nla::parse_mpath_info(v)?),
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

/// Public only for the fuzz targets (node-agent/fuzz).
#[doc(hidden)]
pub fn peer_link_from_attrs(buf: &[u8]) -> Result<Option<PeerLink>, raw_nla::NlaError> {
    let mut peer = None;
    let mut st = None;
    for a in raw_nla::attrs(buf) {
        let (k, v) = a?;
        match k {
            raw_nla::ATTR_MAC => peer = Some(MacAddr(raw_nla::parse_mac(k, v)?)),
            raw_nla::ATTR_STA_INFO => st = Some(raw_nla::parse_sta_info(v)?),
            _ => {}
        }
    }
    let (Some(peer), Some(st)) = (peer, st) else {
        return Ok(None);
    };
    Ok(Some(PeerLink {
        peer,
        plink: raw_nla::plink_state_name(st.plink_state).to_string(),
        signal_dbm: st.signal_dbm,
        signal_avg_dbm: st.signal_avg_dbm,
        tx_bitrate_100kbps: st.tx_bitrate_100kbps,
        expected_throughput_kbps: st.expected_throughput_kbps,
        airtime_metric: st.airtime_metric,
        inactive_ms: st.inactive_ms,
        tx_failed: st.tx_failed,
        tx_retries: st.tx_retries,
        connected_to_gate: st.connected_to_gate,
    }))
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
            Nl80211Attr::Mac(m) => mac = Some(MacAddr(*m)),
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
        let mut info = NlaWriter::new();
        info.u32(3, 170)
            .u8(5, raw_nla::mpath_flags::ACTIVE)
            .u8(8, 2);
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, 5)
            .bytes(raw_nla::ATTR_MAC, &[2, 0, 0, 0, 2, 0])
            .bytes(raw_nla::ATTR_MPATH_NEXT_HOP, &[2, 0, 0, 0, 1, 0])
            .bytes(raw_nla::ATTR_MPATH_INFO | 0x8000, &info.finish());
        let p = mesh_path_from_attrs(&w.finish())
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
        let mut w = NlaWriter::new();
        w.bytes(raw_nla::ATTR_MAC, &[2, 0, 0, 0, 2, 0])
            .bytes(raw_nla::ATTR_MPATH_NEXT_HOP, &[2, 0, 0]);
        assert!(mesh_path_from_attrs(&w.finish()).is_err());
    }

    #[test]
    fn station_reply_becomes_a_peer_link() {
        let mut rate = NlaWriter::new();
        rate.u16(1, 540);
        let mut info = NlaWriter::new();
        info.u8(6, 4) // ESTAB
            .u8(7, (-42i8) as u8)
            .bytes(8, &rate.finish())
            .u32(27, 36000)
            .u32(41, 170);
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, 5)
            .bytes(raw_nla::ATTR_MAC, &[2, 0, 0, 0, 1, 0])
            .bytes(raw_nla::ATTR_STA_INFO, &info.finish());
        let l = peer_link_from_attrs(&w.finish())
            .expect("valid")
            .expect("has a MAC");
        assert!(l.is_established());
        assert_eq!(l.signal_dbm, Some(-42));
        assert_eq!(l.tx_bitrate_100kbps, Some(540));
        assert_eq!(l.expected_throughput_kbps, Some(36000));
        assert_eq!(l.airtime_metric, Some(170));
    }

    #[test]
    fn station_events_name_the_peer() {
        let msg = RawNl80211 {
            cmd: cmd::DEL_STATION,
            attrs: ifindex_mac_attrs(7, MacAddr([2, 0, 0, 0, 3, 0])),
        };
        assert_eq!(
            event_from_message(&msg),
            WifiEvent::PeerDel {
                ifindex: 7,
                peer: MacAddr([2, 0, 0, 0, 3, 0])
            }
        );
    }

    #[test]
    fn radar_and_channel_switch_events_name_the_frequency() {
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_WIPHY, 0)
            .u32(raw_nla::ATTR_IFINDEX, 7)
            .u32(raw_nla::ATTR_WIPHY_FREQ, 5260)
            .u32(raw_nla::ATTR_RADAR_EVENT, 0);
        let msg = RawNl80211 {
            cmd: cmd::RADAR_DETECT,
            attrs: w.finish(),
        };
        assert_eq!(
            event_from_message(&msg),
            WifiEvent::Radar {
                ifindex: 7,
                freq_mhz: 5260,
                kind: RadarEvent::Detected
            }
        );
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, 7)
            .u32(raw_nla::ATTR_WIPHY_FREQ, 5180);
        let msg = RawNl80211 {
            cmd: cmd::CH_SWITCH_NOTIFY,
            attrs: w.finish(),
        };
        assert_eq!(
            event_from_message(&msg),
            WifiEvent::ChannelSwitched {
                ifindex: 7,
                freq_mhz: 5180
            }
        );
    }

    #[test]
    fn a_channel_switch_carries_the_whole_chandef_and_the_count() {
        let attrs = channel_switch_attrs(4, 5180, trellis_proto::channel::Width::Mhz80, 5210, 10);
        let got: Vec<(u16, Vec<u8>)> = raw_nla::attrs(&attrs)
            .map(|a| a.map(|(k, v)| (k, v.to_vec())).expect("valid"))
            .collect();
        let u = |v: u32| v.to_ne_bytes().to_vec();
        assert_eq!(
            got,
            vec![
                (raw_nla::ATTR_IFINDEX, u(4)),
                (raw_nla::ATTR_WIPHY_FREQ, u(5180)),
                (raw_nla::ATTR_CHANNEL_WIDTH, u(3)),
                (raw_nla::ATTR_CENTER_FREQ1, u(5210)),
                (raw_nla::ATTR_CH_SWITCH_COUNT, u(10)),
            ]
        );
    }

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
