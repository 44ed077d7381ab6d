//! The nl80211 events the agent follows (`iw event`): peer links appearing and going, mesh
//! peer candidates, radar, channel switches and interfaces vanishing, decoded into
//! [`WifiEvent`].

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use wl_nl80211::packet_core::NetlinkPayload;
use wl_nl80211::Nl80211MulticastGroup;

use super::{cmd, Error, RawNl80211};
use crate::raw_nla;
use trellis_proto::policy::MacAddr;

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

#[cfg(test)]
mod tests {
    use super::super::ifindex_mac_attrs;
    use super::*;
    use crate::raw_nla::NlaWriter;

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
}
