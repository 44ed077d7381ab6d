//! The nl80211 attributes `wl-nl80211` 0.8 does not type yet: mesh ID, mesh setup, mesh config,
//! mesh path info and the peer-link action. They are built and parsed here as raw netlink
//! attributes (NLAs) and travel through `wl-nl80211` as `Nl80211Attr::Other`.
//!
//! Numbers are from the kernel UAPI header `include/uapi/linux/nl80211.h` (stable ABI: values
//! are only ever appended). Every parser takes bytes from the kernel as untrusted input: a
//! short or malformed attribute is an error or is skipped, never a panic.

use std::fmt;

/// `NL80211_ATTR_WIPHY`: u32 radio index.
pub const ATTR_WIPHY: u16 = 1;
/// `NL80211_ATTR_IFINDEX`: u32.
pub const ATTR_IFINDEX: u16 = 3;
/// `NL80211_ATTR_MAC`: 6 bytes.
pub const ATTR_MAC: u16 = 6;
/// `NL80211_ATTR_STA_INFO`: nested `NL80211_STA_INFO_*`.
pub const ATTR_STA_INFO: u16 = 21;
/// `NL80211_ATTR_WIPHY_FREQ`: u32 MHz.
pub const ATTR_WIPHY_FREQ: u16 = 38;
/// `NL80211_ATTR_MESH_ID`: the mesh ID (like an SSID), 0..=32 bytes.
pub const ATTR_MESH_ID: u16 = 24;
/// `NL80211_ATTR_STA_PLINK_ACTION`: u8, [`PlinkAction`].
pub const ATTR_STA_PLINK_ACTION: u16 = 25;
/// `NL80211_ATTR_MPATH_NEXT_HOP`: 6-byte MAC of the next hop.
pub const ATTR_MPATH_NEXT_HOP: u16 = 26;
/// `NL80211_ATTR_MPATH_INFO`: nested `NL80211_MPATH_INFO_*`.
pub const ATTR_MPATH_INFO: u16 = 27;
/// `NL80211_ATTR_MESH_CONFIG`: nested `NL80211_MESHCONF_*`.
pub const ATTR_MESH_CONFIG: u16 = 35;
/// `NL80211_ATTR_SURVEY_INFO`: nested `NL80211_SURVEY_INFO_*` (one channel of a survey dump).
pub const ATTR_SURVEY_INFO: u16 = 84;
/// `NL80211_ATTR_CHANNEL_WIDTH`: u32, `enum nl80211_chan_width`.
pub const ATTR_CHANNEL_WIDTH: u16 = 159;
/// `NL80211_ATTR_CENTER_FREQ1`: u32 MHz, the centre of the whole channel.
pub const ATTR_CENTER_FREQ1: u16 = 160;
/// `NL80211_ATTR_RADAR_EVENT`: u32, `enum nl80211_radar_event`.
pub const ATTR_RADAR_EVENT: u16 = 168;
/// `NL80211_ATTR_CH_SWITCH_COUNT`: u32 beacons until the switch (at most 255).
pub const ATTR_CH_SWITCH_COUNT: u16 = 183;
/// `NL80211_ATTR_MESH_SETUP`: nested `NL80211_MESH_SETUP_*` (only at JOIN_MESH).
pub const ATTR_MESH_SETUP: u16 = 112;

/// The flag the kernel may set on nested attributes; masked off before matching kinds.
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
const NLA_HEADER_LEN: usize = 4;

/// `NL80211_MESH_SETUP_*`: what the kernel leaves to userspace at JOIN_MESH.
pub mod mesh_setup {
    pub const USERSPACE_AUTH: u16 = 4;
    pub const USERSPACE_AMPE: u16 = 5;
    pub const USERSPACE_MPM: u16 = 7;
}

/// `NL80211_MPATH_INFO_*`.
mod mpath_info {
    pub const FRAME_QLEN: u16 = 1;
    pub const SN: u16 = 2;
    pub const METRIC: u16 = 3;
    pub const EXPTIME: u16 = 4;
    pub const FLAGS: u16 = 5;
    pub const DISCOVERY_TIMEOUT: u16 = 6;
    pub const DISCOVERY_RETRIES: u16 = 7;
    pub const HOP_COUNT: u16 = 8;
    pub const PATH_CHANGE: u16 = 9;
}

/// `NL80211_MPATH_FLAG_*` bits of `NL80211_MPATH_INFO_FLAGS`.
pub mod mpath_flags {
    pub const ACTIVE: u8 = 1 << 0;
    pub const RESOLVING: u8 = 1 << 1;
    pub const SN_VALID: u8 = 1 << 2;
    pub const FIXED: u8 = 1 << 3;
    pub const RESOLVED: u8 = 1 << 4;
}

/// A malformed attribute from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NlaError {
    #[error(
        "netlink attribute at offset {offset} is truncated (needs {needed} bytes, {left} left)"
    )]
    Truncated {
        offset: usize,
        needed: usize,
        left: usize,
    },
    #[error("netlink attribute kind {kind} has {len} value bytes, expected {expected}")]
    BadLength {
        kind: u16,
        len: usize,
        expected: usize,
    },
}

/// Appends netlink attributes (4-byte header, value, padding to 4) to a buffer.
#[derive(Debug, Default, Clone)]
pub struct NlaWriter {
    buf: Vec<u8>,
}

impl NlaWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        // nla_len is a u16 covering header + value; callers only pass small values (mesh IDs
        // <= 32 bytes, nested configs of a few hundred), so the cast cannot truncate.
        let len = (NLA_HEADER_LEN + value.len()).min(u16::MAX as usize) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    pub fn u8(&mut self, kind: u16, v: u8) -> &mut Self {
        self.bytes(kind, &[v])
    }

    pub fn u16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.bytes(kind, &v.to_ne_bytes())
    }

    pub fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.bytes(kind, &v.to_ne_bytes())
    }

    pub fn u64(&mut self, kind: u16, v: u64) -> &mut Self {
        self.bytes(kind, &v.to_ne_bytes())
    }

    pub fn flag(&mut self, kind: u16) -> &mut Self {
        self.bytes(kind, &[])
    }

    pub fn finish(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

/// Iterates over the attributes in `buf` as `(kind without flags, value)`.
pub fn attrs(buf: &[u8]) -> NlaIter<'_> {
    NlaIter { buf, offset: 0 }
}

pub struct NlaIter<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for NlaIter<'a> {
    type Item = Result<(u16, &'a [u8]), NlaError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        if rest.len() < NLA_HEADER_LEN {
            let e = NlaError::Truncated {
                offset: self.offset,
                needed: NLA_HEADER_LEN,
                left: rest.len(),
            };
            self.offset = self.buf.len();
            return Some(Err(e));
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HEADER_LEN || len > rest.len() {
            let e = NlaError::Truncated {
                offset: self.offset,
                needed: len.max(NLA_HEADER_LEN),
                left: rest.len(),
            };
            self.offset = self.buf.len();
            return Some(Err(e));
        }
        let value = &rest[NLA_HEADER_LEN..len];
        self.offset += (len + 3) & !3;
        Some(Ok((kind, value)))
    }
}

fn fixed<const N: usize>(kind: u16, v: &[u8]) -> Result<[u8; N], NlaError> {
    v.try_into().map_err(|_| NlaError::BadLength {
        kind,
        len: v.len(),
        expected: N,
    })
}

pub(super) fn get_u8(kind: u16, v: &[u8]) -> Result<u8, NlaError> {
    Ok(fixed::<1>(kind, v)?[0])
}
pub(super) fn get_u16(kind: u16, v: &[u8]) -> Result<u16, NlaError> {
    Ok(u16::from_ne_bytes(fixed(kind, v)?))
}
pub(super) fn get_u32(kind: u16, v: &[u8]) -> Result<u32, NlaError> {
    Ok(u32::from_ne_bytes(fixed(kind, v)?))
}
pub(super) fn get_u64(kind: u16, v: &[u8]) -> Result<u64, NlaError> {
    Ok(u64::from_ne_bytes(fixed(kind, v)?))
}

/// `NL80211_STA_INFO_*` (station dump). Parsed here rather than through `wl-nl80211` 0.8, whose
/// station parser expects `AIRTIME_LINK_METRIC` as a u16 while the kernel sends a u32
/// (`PUT_SINFO(AIRTIME_LINK_METRIC, airtime_link_metric, u32)` in net/wireless/nl80211.c), so the
/// whole reply of a mesh peer fails to decode there.
mod sta_info {
    pub const INACTIVE_TIME: u16 = 1;
    pub const LLID: u16 = 4;
    pub const PLID: u16 = 5;
    pub const PLINK_STATE: u16 = 6;
    pub const SIGNAL: u16 = 7;
    pub const TX_BITRATE: u16 = 8;
    pub const TX_RETRIES: u16 = 11;
    pub const TX_FAILED: u16 = 12;
    pub const SIGNAL_AVG: u16 = 13;
    pub const EXPECTED_THROUGHPUT: u16 = 27;
    pub const CONNECTED_TO_GATE: u16 = 38;
    pub const AIRTIME_LINK_METRIC: u16 = 41;
}

/// `NL80211_RATE_INFO_*` inside `TX_BITRATE`.
mod rate_info {
    pub const BITRATE: u16 = 1;
    pub const BITRATE32: u16 = 5;
}

/// What the agent reads of one station (peer) entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaInfo {
    pub inactive_ms: Option<u32>,
    pub llid: Option<u16>,
    pub plid: Option<u16>,
    /// `enum nl80211_plink_state`, see [`plink_state_name`].
    pub plink_state: Option<u8>,
    pub signal_dbm: Option<i8>,
    pub signal_avg_dbm: Option<i8>,
    /// 100 kbit/s units.
    pub tx_bitrate_100kbps: Option<u32>,
    pub tx_retries: Option<u32>,
    pub tx_failed: Option<u32>,
    pub expected_throughput_kbps: Option<u32>,
    pub connected_to_gate: Option<bool>,
    pub airtime_metric: Option<u32>,
}

/// Parses the value of `NL80211_ATTR_STA_INFO`. Unknown kinds are skipped; a known kind with a
/// wrong width is an error.
pub fn parse_sta_info(buf: &[u8]) -> Result<StaInfo, NlaError> {
    let mut st = StaInfo::default();
    for a in attrs(buf) {
        let (k, v) = a?;
        match k {
            sta_info::INACTIVE_TIME => st.inactive_ms = Some(get_u32(k, v)?),
            sta_info::LLID => st.llid = Some(get_u16(k, v)?),
            sta_info::PLID => st.plid = Some(get_u16(k, v)?),
            sta_info::PLINK_STATE => st.plink_state = Some(get_u8(k, v)?),
            sta_info::SIGNAL => st.signal_dbm = Some(get_u8(k, v)? as i8),
            sta_info::SIGNAL_AVG => st.signal_avg_dbm = Some(get_u8(k, v)? as i8),
            sta_info::TX_BITRATE => {
                let mut b16 = None;
                let mut b32 = None;
                for r in attrs(v) {
                    let (rk, rv) = r?;
                    match rk {
                        rate_info::BITRATE => b16 = Some(u32::from(get_u16(rk, rv)?)),
                        rate_info::BITRATE32 => b32 = Some(get_u32(rk, rv)?),
                        _ => {}
                    }
                }
                // The 32-bit field exists because the 16-bit one overflows above 6.5 Gbit/s.
                st.tx_bitrate_100kbps = b32.or(b16);
            }
            sta_info::TX_RETRIES => st.tx_retries = Some(get_u32(k, v)?),
            sta_info::TX_FAILED => st.tx_failed = Some(get_u32(k, v)?),
            sta_info::EXPECTED_THROUGHPUT => st.expected_throughput_kbps = Some(get_u32(k, v)?),
            sta_info::CONNECTED_TO_GATE => st.connected_to_gate = Some(get_u8(k, v)? != 0),
            sta_info::AIRTIME_LINK_METRIC => st.airtime_metric = Some(get_u32(k, v)?),
            _ => {}
        }
    }
    Ok(st)
}

/// The `iw` name of an `enum nl80211_plink_state` value.
pub fn plink_state_name(state: Option<u8>) -> &'static str {
    match state {
        Some(0) => "LISTEN",
        Some(1) => "OPN_SNT",
        Some(2) => "OPN_RCVD",
        Some(3) => "CNF_RCVD",
        Some(4) => "ESTAB",
        Some(5) => "HOLDING",
        Some(6) => "BLOCKED",
        Some(_) => "UNKNOWN",
        None => "NONE",
    }
}

/// `enum nl80211_plink_action`, sent with SET_STATION (`iw dev X station set MAC plink_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlinkAction {
    NoAction = 0,
    Open = 1,
    Block = 2,
}

/// One mesh path (`iw dev X mpath dump` row), from NL80211_CMD_GET_MPATH.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MpathInfo {
    pub frame_qlen: Option<u32>,
    pub sn: Option<u32>,
    pub metric: Option<u32>,
    /// Milliseconds until the path expires.
    pub exptime_ms: Option<u32>,
    pub flags: u8,
    pub discovery_timeout_ms: Option<u32>,
    pub discovery_retries: Option<u8>,
    /// Kernel >= 5.5.
    pub hop_count: Option<u8>,
    /// Kernel >= 5.5: how often this path's next hop changed.
    pub path_change_count: Option<u32>,
}

impl MpathInfo {
    pub fn is_active(&self) -> bool {
        self.flags & mpath_flags::ACTIVE != 0
    }
    pub fn is_resolving(&self) -> bool {
        self.flags & mpath_flags::RESOLVING != 0
    }
}

/// Parses the value of `NL80211_ATTR_MPATH_INFO`. Unknown kinds (newer kernels) are skipped.
pub fn parse_mpath_info(buf: &[u8]) -> Result<MpathInfo, NlaError> {
    let mut info = MpathInfo::default();
    for a in attrs(buf) {
        let (k, v) = a?;
        match k {
            mpath_info::FRAME_QLEN => info.frame_qlen = Some(get_u32(k, v)?),
            mpath_info::SN => info.sn = Some(get_u32(k, v)?),
            mpath_info::METRIC => info.metric = Some(get_u32(k, v)?),
            mpath_info::EXPTIME => info.exptime_ms = Some(get_u32(k, v)?),
            mpath_info::FLAGS => info.flags = get_u8(k, v)?,
            mpath_info::DISCOVERY_TIMEOUT => info.discovery_timeout_ms = Some(get_u32(k, v)?),
            mpath_info::DISCOVERY_RETRIES => info.discovery_retries = Some(get_u8(k, v)?),
            mpath_info::HOP_COUNT => info.hop_count = Some(get_u8(k, v)?),
            mpath_info::PATH_CHANGE => info.path_change_count = Some(get_u32(k, v)?),
            _ => {}
        }
    }
    Ok(info)
}

/// Parses a 6-byte MAC attribute value.
pub fn parse_mac(kind: u16, v: &[u8]) -> Result<[u8; 6], NlaError> {
    fixed::<6>(kind, v)
}

/// The width on the wire of a mesh parameter, as the kernel's `nl80211_meshconf_params_policy`
/// wants it (the policy checks lengths, so a u8 sent as u32 is rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    U8,
    U16,
    U32,
}

/// The mesh parameters the agent reads or sets (`iw dev X get|set mesh_param NAME`), each an
/// `NL80211_MESHCONF_*` id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshParam {
    RetryTimeout = 1,
    ConfirmTimeout = 2,
    HoldingTimeout = 3,
    MaxPeerLinks = 4,
    MaxRetries = 5,
    Ttl = 6,
    AutoOpenPlinks = 7,
    HwmpMaxPreqRetries = 8,
    PathRefreshTime = 9,
    MinDiscoveryTimeout = 10,
    HwmpActivePathTimeout = 11,
    HwmpPreqMinInterval = 12,
    HwmpNetDiamTrvsTime = 13,
    HwmpRootmode = 14,
    ElementTtl = 15,
    HwmpRannInterval = 16,
    GateAnnouncements = 17,
    HwmpPerrMinInterval = 18,
    Forwarding = 19,
    RssiThreshold = 20,
    SyncOffsetMaxNeighbor = 21,
    HtOpmode = 22,
    HwmpPathToRootTimeout = 23,
    HwmpRootInterval = 24,
    HwmpConfirmationInterval = 25,
    PowerMode = 26,
    AwakeWindow = 27,
    PlinkTimeout = 28,
    ConnectedToGate = 29,
    Nolearn = 30,
    ConnectedToAs = 31,
}

impl MeshParam {
    pub const ALL: [MeshParam; 31] = [
        Self::RetryTimeout,
        Self::ConfirmTimeout,
        Self::HoldingTimeout,
        Self::MaxPeerLinks,
        Self::MaxRetries,
        Self::Ttl,
        Self::AutoOpenPlinks,
        Self::HwmpMaxPreqRetries,
        Self::PathRefreshTime,
        Self::MinDiscoveryTimeout,
        Self::HwmpActivePathTimeout,
        Self::HwmpPreqMinInterval,
        Self::HwmpNetDiamTrvsTime,
        Self::HwmpRootmode,
        Self::ElementTtl,
        Self::HwmpRannInterval,
        Self::GateAnnouncements,
        Self::HwmpPerrMinInterval,
        Self::Forwarding,
        Self::RssiThreshold,
        Self::SyncOffsetMaxNeighbor,
        Self::HtOpmode,
        Self::HwmpPathToRootTimeout,
        Self::HwmpRootInterval,
        Self::HwmpConfirmationInterval,
        Self::PowerMode,
        Self::AwakeWindow,
        Self::PlinkTimeout,
        Self::ConnectedToGate,
        Self::Nolearn,
        Self::ConnectedToAs,
    ];

    pub fn id(self) -> u16 {
        self as u16
    }

    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.id() == id)
    }

    fn width(self) -> Width {
        use MeshParam::*;
        match self {
            MaxRetries | Ttl | AutoOpenPlinks | HwmpMaxPreqRetries | HwmpRootmode | ElementTtl
            | GateAnnouncements | Forwarding | ConnectedToGate | Nolearn | ConnectedToAs => {
                Width::U8
            }
            RetryTimeout
            | ConfirmTimeout
            | HoldingTimeout
            | MaxPeerLinks
            | MinDiscoveryTimeout
            | HwmpPreqMinInterval
            | HwmpNetDiamTrvsTime
            | HwmpRannInterval
            | HwmpPerrMinInterval
            | HtOpmode
            | HwmpRootInterval
            | HwmpConfirmationInterval
            | AwakeWindow => Width::U16,
            PathRefreshTime
            | HwmpActivePathTimeout
            | RssiThreshold
            | SyncOffsetMaxNeighbor
            | HwmpPathToRootTimeout
            | PowerMode
            | PlinkTimeout => Width::U32,
        }
    }

    /// The `iw` name, for logs and advice a person can act on.
    pub fn iw_name(self) -> &'static str {
        use MeshParam::*;
        match self {
            RetryTimeout => "mesh_retry_timeout",
            ConfirmTimeout => "mesh_confirm_timeout",
            HoldingTimeout => "mesh_holding_timeout",
            MaxPeerLinks => "mesh_max_peer_links",
            MaxRetries => "mesh_max_retries",
            Ttl => "mesh_ttl",
            AutoOpenPlinks => "mesh_auto_open_plinks",
            HwmpMaxPreqRetries => "mesh_hwmp_max_preq_retries",
            PathRefreshTime => "mesh_path_refresh_time",
            MinDiscoveryTimeout => "mesh_min_discovery_timeout",
            HwmpActivePathTimeout => "mesh_hwmp_active_path_timeout",
            HwmpPreqMinInterval => "mesh_hwmp_preq_min_interval",
            HwmpNetDiamTrvsTime => "mesh_hwmp_net_diameter_traversal_time",
            HwmpRootmode => "mesh_hwmp_rootmode",
            ElementTtl => "mesh_element_ttl",
            HwmpRannInterval => "mesh_hwmp_rann_interval",
            GateAnnouncements => "mesh_gate_announcements",
            HwmpPerrMinInterval => "mesh_hwmp_perr_min_interval",
            Forwarding => "mesh_fwding",
            RssiThreshold => "mesh_rssi_threshold",
            SyncOffsetMaxNeighbor => "mesh_sync_offset_max_neighbor",
            HtOpmode => "mesh_ht_opmode",
            HwmpPathToRootTimeout => "mesh_hwmp_active_path_to_root_timeout",
            HwmpRootInterval => "mesh_hwmp_root_interval",
            HwmpConfirmationInterval => "mesh_hwmp_confirmation_interval",
            PowerMode => "mesh_power_mode",
            AwakeWindow => "mesh_awake_window",
            PlinkTimeout => "mesh_plink_timeout",
            ConnectedToGate => "mesh_connected_to_gate",
            Nolearn => "mesh_nolearn",
            ConnectedToAs => "mesh_connected_to_as",
        }
    }
}

impl fmt::Display for MeshParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.iw_name())
    }
}

/// Encodes `(param, value)` pairs as the value of `NL80211_ATTR_MESH_CONFIG`. Values are
/// truncated to the parameter's width (RSSI threshold is an s32 passed as its bit pattern).
pub fn encode_mesh_config(params: &[(MeshParam, u32)]) -> Vec<u8> {
    let mut w = NlaWriter::new();
    for &(p, v) in params {
        match p.width() {
            Width::U8 => w.u8(p.id(), v as u8),
            Width::U16 => w.u16(p.id(), v as u16),
            Width::U32 => w.u32(p.id(), v),
        };
    }
    w.finish()
}

/// Parses the value of `NL80211_ATTR_MESH_CONFIG` (a GET_MESH_CONFIG reply) into sorted pairs.
/// Attributes of unknown kind or unexpected width are skipped: a newer kernel must not make
/// the agent fail.
pub fn parse_mesh_config(buf: &[u8]) -> Result<Vec<(MeshParam, u32)>, NlaError> {
    let mut out = Vec::new();
    for a in attrs(buf) {
        let (k, v) = a?;
        let Some(p) = MeshParam::from_id(k) else {
            continue;
        };
        let value = match (p.width(), v.len()) {
            (Width::U8, 1) => u32::from(v[0]),
            (Width::U16, 2) => u32::from(get_u16(k, v)?),
            (Width::U32, 4) => get_u32(k, v)?,
            _ => continue,
        };
        out.push((p, value));
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}

/// The value of `NL80211_ATTR_MESH_SETUP` for an open (unauthenticated) mesh run by the kernel's
/// own peering: empty, all defaults (HWMP, airtime metric, kernel MPM).
pub fn encode_mesh_setup_open() -> Vec<u8> {
    Vec::new()
}
#[cfg(test)]
#[path = "raw_nla_tests.rs"]
mod tests;
