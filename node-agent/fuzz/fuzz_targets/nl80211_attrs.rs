//! Raw nl80211 attributes as the kernel sends them (`wifi::raw_nla`): the attribute walk,
//! station info, mesh path info and mesh config. Invariants: no panic, the walk ends and
//! every value lies inside the buffer; mesh config parse -> encode -> parse is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_wifi::raw_nla::{
    attrs, encode_mesh_config, parse_mesh_config, parse_mpath_info, parse_sta_info,
    plink_state_name,
};

fuzz_target!(|buf: &[u8]| {
    let mut seen = 0usize;
    for a in attrs(buf) {
        // Every attribute takes at least its 4-byte header, so the walk is bounded.
        seen += 1;
        assert!(seen <= buf.len() / 4 + 1, "the attribute walk does not end");
        if let Ok((_, value)) = a {
            let start = value.as_ptr() as usize - buf.as_ptr() as usize;
            assert!(start + value.len() <= buf.len());
        }
    }
    if let Ok(st) = parse_sta_info(buf) {
        let _ = plink_state_name(st.plink_state);
    }
    let _ = parse_mpath_info(buf);
    if let Ok(params) = parse_mesh_config(buf) {
        let again =
            parse_mesh_config(&encode_mesh_config(&params)).expect("our own encoding parses");
        // Duplicates in the input stay duplicates; values already have their wire width.
        assert_eq!(again, params, "mesh config round trip");
    }
});
