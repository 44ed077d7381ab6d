//! Peer links and mesh paths: the station dump (`iw dev X station dump`, also the clients of
//! this router's access points), the mesh path dump (`iw dev X mpath dump`), their decoding
//! from raw attributes, and the per-peer commands (delete a station or a path, plink_action).

use serde::Serialize;

use super::{cmd, ifindex_attr, ifindex_mac_attrs, Error, Nl80211, MAX_DUMP_ENTRIES};
use crate::raw_nla::{self, MpathInfo, NlaWriter, PlinkAction};
use trellis_proto::policy::MacAddr;

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

impl Nl80211 {
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
}
