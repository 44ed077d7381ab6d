//! A UCI file as `uci` reads it (`xtask/src/uci.rs`): what LuCI or a person writes to
//! `/etc/config/trellis`, and what the package checks read. Invariants: no panic; an error
//! counts no more lines than the input has; a file that parses, written back (`uci export`
//! layout), parses to the same sections, names and options and shows the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/uci.rs"]
mod uci;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = match uci::parse(&text) {
        Ok(file) => file,
        Err(e) => {
            let lines = text.bytes().filter(|&c| c == b'\n').count();
            assert!(e.line <= lines, "{e} in {lines} lines");
            return;
        }
    };
    let written = file.to_string();
    let again = uci::parse(&written).expect("what we write back parses");
    // Line numbers differ between layouts; nothing else may.
    let strip = |f: &uci::UciFile| {
        f.sections
            .iter()
            .map(|s| (s.kind.clone(), s.name.clone(), s.anonymous, s.options.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&file), "written back as:\n{written}");
    assert_eq!(again.show("p"), file.show("p"));
});
