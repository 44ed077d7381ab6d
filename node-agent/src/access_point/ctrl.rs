//! hostapd's control socket (`/var/run/hostapd/IFACE`, the one `hostapd_cli` uses; the
//! socket itself is [`trellis_wifi::ctrl`], shared with wpa_supplicant) and the parsers of what it says: `STA-FIRST`/`STA-NEXT` replies and
//! the events an attached socket receives (`AP-STA-CONNECTED`, `AP-STA-DISCONNECTED`,
//! `BSS-TM-RESP`). Replies are outside input: every parser is bounded and fuzzed
//! (node-agent/fuzz, target `hostapd_ctrl`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use trellis_proto::policy::MacAddr;
use trellis_wifi::ctrl::CtrlSocket;

use super::ApError;

/// Most key=value lines read from one reply.
const MAX_FIELDS: usize = 96;

/// A client of one hostapd control socket ([`trellis_wifi::ctrl`], as `hostapd_cli` uses it).
pub struct Ctrl(CtrlSocket);

impl Ctrl {
    pub async fn connect(remote: &Path) -> Result<Self, ApError> {
        Ok(Self(CtrlSocket::connect(remote, Duration::ZERO).await?))
    }

    /// Sends a command and returns its reply; events (`<N>…`) meanwhile are skipped.
    pub async fn request(&self, command: &str) -> Result<String, ApError> {
        Ok(self.0.request(command).await?)
    }

    /// A command whose only good answer is `OK`.
    pub async fn ok(&self, command: &str) -> Result<(), ApError> {
        Ok(self.0.ok(command).await?)
    }

    /// `ATTACH`: from now on this socket also receives events.
    pub async fn attach(&self) -> Result<(), ApError> {
        Ok(self.0.attach().await?)
    }

    /// The next event on an attached socket.
    pub async fn event(&self) -> Result<HostapdEvent, ApError> {
        Ok(parse_event(&self.0.next_event().await?))
    }

    /// Every associated station: `STA-FIRST`, then `STA-NEXT <mac>` until hostapd has no
    /// more (an empty reply or `FAIL`), at most `limit`.
    pub async fn stations(&self, limit: usize) -> Result<Vec<StaInfo>, ApError> {
        let mut out = Vec::new();
        let mut reply = self.request("STA-FIRST").await?;
        while out.len() < limit {
            let Some(sta) = parse_sta(&reply) else { break };
            let mac = sta.mac;
            out.push(sta);
            reply = self.request(&format!("STA-NEXT {mac}")).await?;
        }
        Ok(out)
    }
}

/// One station as `STA-FIRST`/`STA-NEXT` prints it (hostapd src/ap/ctrl_iface_ap.c,
/// hostapd_ctrl_iface_sta_mib: the address on the first line, then `key=value` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaInfo {
    pub mac: MacAddr,
    pub fields: BTreeMap<String, String>,
}

impl StaInfo {
    /// `signal=` (dBm), where the driver reports it.
    pub fn signal_dbm(&self) -> Option<i32> {
        self.fields.get("signal")?.trim().parse().ok()
    }
    /// `inactive_msec=`.
    pub fn inactive_ms(&self) -> Option<u32> {
        self.fields.get("inactive_msec")?.trim().parse().ok()
    }
    /// Whether it is associated (`flags=` holds `[ASSOC]`).
    pub fn associated(&self) -> bool {
        self.fields
            .get("flags")
            .is_some_and(|f| f.contains("[ASSOC]"))
    }
}

/// A `STA-FIRST`/`STA-NEXT` reply; `None` at the end of the list (`FAIL`, empty).
pub fn parse_sta(reply: &str) -> Option<StaInfo> {
    let mut lines = reply.lines();
    let mac: MacAddr = lines.next()?.trim().parse().ok()?;
    let mut fields = BTreeMap::new();
    for line in lines.take(MAX_FIELDS) {
        if let Some((k, v)) = line.split_once('=') {
            if k.len() <= 40 {
                fields.insert(k.to_string(), v.chars().take(200).collect());
            }
        }
    }
    Some(StaInfo { mac, fields })
}

/// What an attached hostapd socket says (hostapd src/common/wpa_ctrl.h names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostapdEvent {
    StaConnected(MacAddr),
    StaDisconnected(MacAddr),
    /// `BSS-TM-RESP <sta> dialog_token=N status_code=N ... [target_bssid=..]`
    /// (hostapd src/ap/wnm_ap.c, ieee802_11_rx_bss_trans_mgmt_resp).
    BssTmResp {
        station: MacAddr,
        dialog_token: u8,
        status_code: u8,
        target_bssid: Option<MacAddr>,
    },
    /// Anything else, shortened.
    Other(String),
}

/// One event message, `<3>AP-STA-CONNECTED 02:00:00:00:09:00` and the like.
pub fn parse_event(msg: &str) -> HostapdEvent {
    let body = match msg.strip_prefix('<').and_then(|m| m.split_once('>')) {
        Some((_, rest)) => rest,
        None => msg,
    };
    let other = || HostapdEvent::Other(body.chars().take(160).collect());
    let mut words = body.split_ascii_whitespace();
    let (Some(name), Some(addr)) = (words.next(), words.next()) else {
        return other();
    };
    let Ok(mac) = addr.parse::<MacAddr>() else {
        return other();
    };
    match name {
        "AP-STA-CONNECTED" => HostapdEvent::StaConnected(mac),
        "AP-STA-DISCONNECTED" => HostapdEvent::StaDisconnected(mac),
        "BSS-TM-RESP" => {
            let mut kv = BTreeMap::new();
            for w in words.take(16) {
                if let Some((k, v)) = w.split_once('=') {
                    kv.insert(k, v);
                }
            }
            let (Some(Ok(dialog_token)), Some(Ok(status_code))) = (
                kv.get("dialog_token").map(|v| v.parse::<u8>()),
                kv.get("status_code").map(|v| v.parse::<u8>()),
            ) else {
                return other();
            };
            HostapdEvent::BssTmResp {
                station: mac,
                dialog_token,
                status_code,
                target_bssid: kv.get("target_bssid").and_then(|v| v.parse().ok()),
            }
        }
        _ => other(),
    }
}

/// `SHOW_NEIGHBOR`'s lines (hostapd ctrl_iface.c hostapd_ctrl_iface_show_neighbor:
/// `<bssid> ssid=<hex> nr=<hex> [lci=..] [civic=..] [stat]`): the neighbour report element
/// of `bssid`, which hostapd keeps for its own BSS when rrm_neighbor_report is on.
pub fn parse_show_neighbor(reply: &str, bssid: MacAddr) -> Option<String> {
    for line in reply.lines().take(64) {
        let mut words = line.split_ascii_whitespace();
        if words.next().and_then(|w| w.parse::<MacAddr>().ok()) != Some(bssid) {
            continue;
        }
        for w in words {
            if let Some(nr) = w.strip_prefix("nr=") {
                if nr.len() <= 510 && nr.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Some(nr.to_ascii_lowercase());
                }
            }
        }
    }
    None
}

/// hostapd's `STATUS` (`key=value` lines), bounded.
pub fn parse_status(reply: &str) -> BTreeMap<String, String> {
    reply
        .lines()
        .take(MAX_FIELDS)
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.len() <= 40)
        .map(|(k, v)| (k.to_string(), v.chars().take(200).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sta_block_reads_as_hostapd_prints_it() {
        let reply = "02:00:00:00:09:00\nflags=[AUTH][ASSOC][AUTHORIZED][WMM][HT]\n\
                     aid=1\ncapability=0x1\nlisten_interval=5\nsupported_rates=82 84\n\
                     timeout_next=NULLFUNC POLL\nrx_packets=12\ninactive_msec=120\n\
                     signal=-31\nrx_rate_info=540 mcs 7\n";
        let sta = parse_sta(reply).unwrap();
        assert_eq!(sta.mac.to_string(), "02:00:00:00:09:00");
        assert!(sta.associated());
        assert_eq!(sta.signal_dbm(), Some(-31));
        assert_eq!(sta.inactive_ms(), Some(120));
        assert_eq!(parse_sta("FAIL\n"), None);
        assert_eq!(parse_sta(""), None);
    }

    #[test]
    fn events_read_as_hostapd_sends_them() {
        let m: MacAddr = "02:00:00:00:09:00".parse().unwrap();
        assert_eq!(
            parse_event("<3>AP-STA-CONNECTED 02:00:00:00:09:00 auth_alg=ft"),
            HostapdEvent::StaConnected(m)
        );
        assert_eq!(
            parse_event("<3>AP-STA-DISCONNECTED 02:00:00:00:09:00"),
            HostapdEvent::StaDisconnected(m)
        );
        assert_eq!(
            parse_event(
                "<3>BSS-TM-RESP 02:00:00:00:09:00 dialog_token=8 status_code=0 \
                 bss_termination_delay=0 target_bssid=02:00:00:00:02:00"
            ),
            HostapdEvent::BssTmResp {
                station: m,
                dialog_token: 8,
                status_code: 0,
                target_bssid: Some("02:00:00:00:02:00".parse().unwrap()),
            }
        );
        assert!(matches!(
            parse_event("<3>BSS-TM-RESP 02:00:00:00:09:00 dialog_token=x"),
            HostapdEvent::Other(_)
        ));
        assert!(matches!(
            parse_event("<3>CTRL-EVENT-EAP"),
            HostapdEvent::Other(_)
        ));
    }

    #[test]
    fn the_own_neighbour_report_is_found_in_show_neighbor() {
        let own: MacAddr = "02:00:00:00:01:00".parse().unwrap();
        let reply = "02:00:00:00:02:00 ssid=4578 nr=020000000200ef190000510603\n\
                     02:00:00:00:01:00 ssid=4578 nr=020000000100EF190000510603 stat\n";
        assert_eq!(
            parse_show_neighbor(reply, own).as_deref(),
            Some("020000000100ef190000510603")
        );
        assert_eq!(parse_show_neighbor("", own), None);
    }
}
