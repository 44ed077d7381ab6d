//! hostapd's control-socket traffic as the agent decodes it (`access_point::ctrl`), and the
//! neighbour report elements the controller relays (`access_point::NeighbourReport`), from
//! bytes made text the way `Ctrl` does (lossy UTF-8).
//! Invariants: no panic; bounded results; an event printed the way hostapd prints it parses
//! back to the same event; a neighbour report read from hex becomes a BSS_TM_REQ candidate
//! that starts with its BSSID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_agent::access_point::ctrl::{
    parse_event, parse_show_neighbor, parse_sta, parse_status, HostapdEvent,
};
use trellis_agent::access_point::NeighbourReport;
use trellis_proto::policy::MacAddr;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(parse_status(&text).len() <= 96);
    if let Some(sta) = parse_sta(&text) {
        assert!(sta.fields.len() <= 96);
        let _ = (sta.signal_dbm(), sta.inactive_ms(), sta.associated());
    }
    if let Some(nr) = parse_show_neighbor(&text, MacAddr([2, 0, 0, 0, 0, 0])) {
        assert!(nr.len() <= 510);
    }
    match parse_event(&text) {
        HostapdEvent::Other(s) => assert!(s.chars().count() <= 160),
        HostapdEvent::StaConnected(m) => {
            assert_eq!(
                parse_event(&format!("<3>AP-STA-CONNECTED {m}")),
                HostapdEvent::StaConnected(m)
            );
        }
        HostapdEvent::StaDisconnected(m) => {
            assert_eq!(
                parse_event(&format!("<3>AP-STA-DISCONNECTED {m}")),
                HostapdEvent::StaDisconnected(m)
            );
        }
        e @ HostapdEvent::BssTmResp { .. } => {
            let HostapdEvent::BssTmResp {
                station,
                dialog_token,
                status_code,
                target_bssid,
            } = e.clone()
            else {
                unreachable!()
            };
            let mut line =
                format!("<3>BSS-TM-RESP {station} dialog_token={dialog_token} status_code={status_code}");
            if let Some(t) = target_bssid {
                line.push_str(&format!(" target_bssid={t}"));
            }
            assert_eq!(parse_event(&line), e);
        }
    }
    if let Ok(nr) = NeighbourReport::parse_hex(&text) {
        assert!(nr.to_bss_tm_candidate().starts_with(&nr.bssid.to_string()));
        assert!(nr.subelements.len() <= 255);
    }
});
