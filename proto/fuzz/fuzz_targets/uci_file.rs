//! `/etc/config/trellis` as the daemons read it (`uci::parse`): LuCI writes it from what the
//! admin types. Invariants: no panic; a file that parses, written back (`uci export` layout),
//! parses to the same sections and options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_proto::uci;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(file) = uci::parse(&text) else {
        return;
    };
    let written = file.to_string();
    let again = uci::parse(&written).expect("what we write back parses");
    // Line numbers differ between layouts; everything else must not.
    let strip = |f: &uci::UciFile| {
        f.sections
            .iter()
            .map(|s| (s.kind.clone(), s.name.clone(), s.options.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&file), "written back as:\n{written}");
});
