//! Tests of [`super`] (raw nl80211 attributes): parsing kernel byte fixtures (mpath info, station
//! info, mesh config), mesh config round trips, and malformed input (truncated, wrong widths,
//! unknown params) being an error or skipped, never a panic.

use super::*;

// Byte fixtures are little-endian (the lab and CI are x86_64); netlink uses host order.
#[cfg(target_endian = "little")]
mod little_endian {
    use super::*;

    /// An MPATH_INFO as a 6.1 kernel sends it for an active path: qlen 0, sn 7, metric 170,
    /// exptime 4800 ms, flags ACTIVE|SN_VALID|RESOLVED, discovery timeout 100 ms, retries 0,
    /// hop count 2, path changes 3.
    static MPATH_INFO: [u8; 72] = [
        8, 0, 1, 0, 0, 0, 0, 0, // FRAME_QLEN 0
        8, 0, 2, 0, 7, 0, 0, 0, // SN 7
        8, 0, 3, 0, 170, 0, 0, 0, // METRIC 170
        8, 0, 4, 0, 0xc0, 0x12, 0, 0, // EXPTIME 4800
        5, 0, 5, 0, 0x15, 0, 0, 0, // FLAGS ACTIVE|SN_VALID|RESOLVED
        8, 0, 6, 0, 100, 0, 0, 0, // DISCOVERY_TIMEOUT 100
        5, 0, 7, 0, 0, 0, 0, 0, // DISCOVERY_RETRIES 0
        5, 0, 8, 0, 2, 0, 0, 0, // HOP_COUNT 2
        8, 0, 9, 0, 3, 0, 0, 0, // PATH_CHANGE 3
    ];

    #[test]
    fn parses_a_kernel_mpath_info() {
        let info = parse_mpath_info(&MPATH_INFO).expect("valid fixture");
        assert_eq!(info.frame_qlen, Some(0));
        assert_eq!(info.sn, Some(7));
        assert_eq!(info.metric, Some(170));
        assert_eq!(info.exptime_ms, Some(4800));
        assert!(info.is_active());
        assert!(!info.is_resolving());
        assert_eq!(info.flags & mpath_flags::RESOLVED, mpath_flags::RESOLVED);
        assert_eq!(info.discovery_timeout_ms, Some(100));
        assert_eq!(info.discovery_retries, Some(0));
        assert_eq!(info.hop_count, Some(2));
        assert_eq!(info.path_change_count, Some(3));
    }

    /// A 6.1 kernel's STA_INFO for an established mesh peer (abridged): inactive 120 ms,
    /// LLID/PLID, plink ESTAB, signal -30, tx bitrate {BITRATE 540, BITRATE32 540},
    /// expected throughput 36000 kbit/s, connected to gate, airtime metric 170 as a u32.
    static STA_INFO: [u8; 100] = [
        8, 0, 1, 0, 120, 0, 0, 0, // INACTIVE_TIME 120
        6, 0, 4, 0, 0x34, 0x12, 0, 0, // LLID 0x1234
        6, 0, 5, 0, 0x78, 0x56, 0, 0, // PLID 0x5678
        5, 0, 6, 0, 4, 0, 0, 0, // PLINK_STATE ESTAB
        5, 0, 7, 0, 0xe2, 0, 0, 0, // SIGNAL -30
        20, 0, 8, 0x80, // TX_BITRATE (nested)
        6, 0, 1, 0, 0x1c, 0x02, 0, 0, // BITRATE 540
        8, 0, 5, 0, 0x1c, 0x02, 0, 0, // BITRATE32 540
        8, 0, 11, 0, 3, 0, 0, 0, // TX_RETRIES 3
        8, 0, 12, 0, 1, 0, 0, 0, // TX_FAILED 1
        8, 0, 27, 0, 0xa0, 0x8c, 0, 0, // EXPECTED_THROUGHPUT 36000
        5, 0, 38, 0, 1, 0, 0, 0, // CONNECTED_TO_GATE
        8, 0, 41, 0, 170, 0, 0, 0, // AIRTIME_LINK_METRIC 170 (u32!)
    ];

    #[test]
    fn parses_a_kernel_sta_info() {
        let st = parse_sta_info(&STA_INFO).expect("valid fixture");
        assert_eq!(st.inactive_ms, Some(120));
        assert_eq!(st.llid, Some(0x1234));
        assert_eq!(st.plid, Some(0x5678));
        assert_eq!(plink_state_name(st.plink_state), "ESTAB");
        assert_eq!(st.signal_dbm, Some(-30));
        assert_eq!(st.tx_bitrate_100kbps, Some(540));
        assert_eq!(st.tx_retries, Some(3));
        assert_eq!(st.tx_failed, Some(1));
        assert_eq!(st.expected_throughput_kbps, Some(36000));
        assert_eq!(st.connected_to_gate, Some(true));
        assert_eq!(st.airtime_metric, Some(170));
    }

    #[test]
    fn mesh_config_uses_the_policy_widths() {
        let bytes = encode_mesh_config(&[
            (MeshParam::HwmpRootmode, 4),
            (MeshParam::HwmpRannInterval, 1000),
            (MeshParam::HwmpActivePathTimeout, 2000),
        ]);
        assert_eq!(
            bytes,
            vec![
                5, 0, 14, 0, 4, 0, 0, 0, // ROOTMODE u8 + 3 padding
                6, 0, 16, 0, 0xe8, 0x03, 0, 0, // RANN_INTERVAL u16 + 2 padding
                8, 0, 11, 0, 0xd0, 0x07, 0, 0, // ACTIVE_PATH_TIMEOUT u32
            ]
        );
    }

    #[test]
    fn rssi_threshold_is_a_signed_bit_pattern() {
        let bytes = encode_mesh_config(&[(MeshParam::RssiThreshold, (-70i32) as u32)]);
        assert_eq!(bytes, vec![8, 0, 20, 0, 0xba, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn nested_flag_is_masked_off() {
        let buf = [8u8, 0, 27, 0x80, 1, 2, 3, 4];
        let (k, v) = attrs(&buf).next().expect("one").expect("valid");
        assert_eq!(k, ATTR_MPATH_INFO);
        assert_eq!(v, &[1, 2, 3, 4]);
    }
}

#[test]
fn mesh_config_round_trips_and_sorts() {
    let params = [
        (MeshParam::Forwarding, 1),
        (MeshParam::GateAnnouncements, 1),
        (MeshParam::HwmpRootmode, 4),
        (MeshParam::RssiThreshold, (-80i32) as u32),
        (MeshParam::PlinkTimeout, 500),
        (MeshParam::MaxPeerLinks, 16),
    ];
    let parsed = parse_mesh_config(&encode_mesh_config(&params)).expect("round trip");
    let mut want = params.to_vec();
    want.sort_by_key(|(p, _)| *p);
    assert_eq!(parsed, want);
}

#[test]
fn unknown_and_misshaped_mesh_params_are_skipped() {
    let mut w = NlaWriter::new();
    w.u32(200, 1) // unknown id from a future kernel
        .u32(MeshParam::HwmpRootmode.id(), 4) // wrong width
        .u8(MeshParam::Forwarding.id(), 0);
    let parsed = parse_mesh_config(&w.finish()).expect("skips, does not fail");
    assert_eq!(parsed, vec![(MeshParam::Forwarding, 0)]);
}

#[test]
fn truncated_attribute_is_an_error_not_a_panic() {
    // header says 12 bytes, only 6 present
    let buf = [12u8, 0, 3, 0, 1, 2];
    assert!(matches!(
        parse_mpath_info(&buf),
        Err(NlaError::Truncated { .. })
    ));
    // a length below the header size must not loop forever
    let buf = [2u8, 0, 3, 0, 0, 0, 0, 0];
    assert!(parse_mpath_info(&buf).is_err());
    // three stray bytes
    assert!(parse_mpath_info(&[1, 2, 3]).is_err());
}

#[test]
fn wrong_value_width_is_reported() {
    let mut w = NlaWriter::new();
    w.u16(3, 170); // METRIC must be u32
    assert_eq!(
        parse_mpath_info(&w.finish()),
        Err(NlaError::BadLength {
            kind: 3,
            len: 2,
            expected: 4
        })
    );
}

#[test]
fn a_u16_airtime_metric_is_rejected_not_misread() {
    let mut w = NlaWriter::new();
    w.u16(41, 170);
    assert!(matches!(
        parse_sta_info(&w.finish()),
        Err(NlaError::BadLength { kind: 41, .. })
    ));
}

#[test]
fn plink_states_have_iw_names() {
    let names: Vec<_> = (0..=7).map(|s| plink_state_name(Some(s))).collect();
    assert_eq!(
        names,
        ["LISTEN", "OPN_SNT", "OPN_RCVD", "CNF_RCVD", "ESTAB", "HOLDING", "BLOCKED", "UNKNOWN"]
    );
}

#[test]
fn every_param_id_maps_back() {
    for p in MeshParam::ALL {
        assert_eq!(MeshParam::from_id(p.id()), Some(p));
    }
    assert_eq!(MeshParam::from_id(0), None);
    assert_eq!(MeshParam::from_id(32), None);
}

#[test]
fn padding_keeps_the_next_attribute_aligned() {
    let mut w = NlaWriter::new();
    w.bytes(ATTR_MESH_ID, b"trellis")
        .u8(ATTR_STA_PLINK_ACTION, 2);
    let buf = w.finish();
    assert_eq!(buf.len(), 12 + 8);
    let got: Vec<_> = attrs(&buf).map(|a| a.expect("valid")).collect();
    assert_eq!(
        got,
        vec![
            (ATTR_MESH_ID, &b"trellis"[..]),
            (ATTR_STA_PLINK_ACTION, &[2u8][..])
        ]
    );
}
