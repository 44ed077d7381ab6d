//! The differential test against real `uci` (`xtask/tests/uci-corpus/`) and the behaviours
//! read from libuci's source that the corpus does not cover.

use super::*;
use std::path::Path;

/// Every corpus case: accepted ones must print what `uci show trellis` printed, byte for
/// byte; refused ones must fail with the line `uci` wrote to stderr, byte for byte (reason,
/// line and byte position, after the `uci: ` prefix).
#[test]
fn matches_real_uci_on_the_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/uci-corpus");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "uci"))
        .collect();
    inputs.sort();
    assert_eq!(inputs.len(), 48, "corpus cases in {}", dir.display());
    let mut wrong = Vec::new();
    for input in &inputs {
        let read = |ext: &str| std::fs::read_to_string(input.with_extension(ext)).unwrap();
        let case = input.file_stem().unwrap().to_string_lossy().into_owned();
        let rc: i32 = read("rc").trim().parse().unwrap();
        let ours = parse(&read("uci"));
        match (rc, ours) {
            (0, Ok(file)) => {
                let shown = file.show("trellis");
                if shown != read("show") {
                    wrong.push(format!(
                        "{case}: we show\n{shown}uci showed\n{}",
                        read("show")
                    ));
                }
            }
            (0, Err(e)) => wrong.push(format!("{case}: uci accepts it, we say {e}")),
            (_, Ok(file)) => wrong.push(format!(
                "{case}: uci refuses it ({}), we show\n{}",
                read("err").trim(),
                file.show("trellis")
            )),
            (_, Err(e)) => {
                let said = format!("uci: {}\n", e.uci_message());
                if said != read("err") {
                    wrong.push(format!(
                        "{case}: we say {said:?}, uci said {:?}",
                        read("err")
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 48 differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

const SAMPLE: &str = "\
# Trellis
package trellis

config trellis 'main'
\toption enabled '1'
\toption role auto        # trailing comment
\toption name \"my \\\"home\\\"\"
\tlist band '5g'
\tlist band \"2g\"

config peer
\toption note 'it'\\''s'
";

#[test]
fn reads_sections_options_and_lists() {
    let f = parse(SAMPLE).unwrap();
    assert_eq!(f.sections.len(), 2);
    let main = f.section("main").unwrap();
    assert_eq!(main.kind, "trellis");
    assert_eq!(main.line, 4);
    assert_eq!(f.get("main", "enabled"), Some("1"));
    assert_eq!(f.get("main", "role"), Some("auto"));
    assert_eq!(f.get("main", "name"), Some("my \"home\""));
    assert_eq!(
        main.value("band"),
        Some(&Value::List(vec!["5g".into(), "2g".into()]))
    );
    assert_eq!(main.get_bool("enabled"), Ok(Some(true)));
    assert_eq!(f.sections[1].kind, "peer");
    assert!(f.sections[1].anonymous);
    assert_eq!(f.sections[1].get("note"), Some("it's"));
}

#[test]
fn anonymous_sections_get_libucis_generated_names() {
    // uci_fixup_section: "cfg" + n_section (2 after one section) + djbhash("peer") % 65536.
    let f = parse("config peer\n").unwrap();
    let mut h: u32 = 5381;
    for c in b"peer" {
        h = h.wrapping_mul(33).wrapping_add(u32::from(*c));
    }
    assert_eq!(
        f.sections[0].name,
        format!("cfg02{:04x}", (h & 0x7FFF_FFFF) % 65536)
    );
    // A later `config` naming it continues that section, as in libuci.
    let named = format!(
        "config peer\n option a 1\nconfig peer '{}'\n option b 2\n",
        f.sections[0].name
    );
    let f = parse(&named).unwrap();
    assert_eq!(
        f.show("t"),
        "t.@peer[0]=peer\nt.@peer[0].a='1'\nt.@peer[0].b='2'\n"
    );
}

// From list.c's uci_set and uci_add_list (not in the corpus): what a changed value does to
// the order `uci show` prints, and that an empty value never deletes.
#[test]
fn later_option_moves_to_the_end_and_empty_changes_nothing() {
    let f = parse("config a 'x'\n option v 1\n option w 2\n option v 3\n option w ''\n").unwrap();
    assert_eq!(f.show("p"), "p.x=a\np.x.w='2'\np.x.v='3'\n");
    let f = parse("config a 'x'\n option v 1\n option w 2\n option v 1\n").unwrap();
    assert_eq!(f.show("p"), "p.x=a\np.x.v='1'\np.x.w='2'\n");
    let f = parse("config a 'x'\n option v 1\n option w 2\n list v 3\n").unwrap();
    assert_eq!(f.show("p"), "p.x=a\np.x.w='2'\np.x.v='1' '3'\n");
}

#[test]
fn what_we_write_reads_back_the_same() {
    let odd = "config 'a#b' 'x'\n option v 'it'\\''s\nmulti'\n list l ''\n list l ';#'\nconfig t\n";
    for text in [SAMPLE, odd] {
        let f = parse(text).unwrap();
        let again = parse(&f.to_string()).unwrap();
        assert_eq!(again.show("p"), f.show("p"), "written as:\n{f}");
        assert_eq!(again.sections[1].name, f.sections[1].name);
    }
}

#[test]
fn bad_boolean_is_an_error_naming_the_option() {
    let f = parse("config t 'main'\n option enabled maybe\n").unwrap();
    let e = f.section("main").unwrap().get_bool("enabled").unwrap_err();
    assert!(e.contains("enabled") && e.contains("maybe"), "{e}");
}

#[test]
fn errors_say_what_uci_says_and_what_to_do() {
    let e = parse("config t 'main'\n option role my home\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Parse error (too many arguments) at line 2, byte 21: \
         quote a value that contains blanks: option name 'two words'"
    );
    let e = parse("config t 'main'\n\toptoin role auto\n").unwrap_err();
    assert_eq!((e.line, e.byte, e.reason), (2, 1, "invalid command"));
    assert!(
        e.to_string().contains("config, option, list or package"),
        "{e}"
    );
    // The last line without a newline is not counted, as in libuci.
    let e = parse("config t 'x'\n option 'a").unwrap_err();
    assert_eq!((e.line, e.reason), (1, "EOF with unterminated '"));
}

#[test]
fn nul_bytes_cut_the_line_as_fgets_does() {
    // libuci's buffer ends at the NUL; fgets already read the rest of that chunk (here up
    // to the newline), so it is gone and the next line continues this one.
    let f = parse("config t 'x'\n option a b\0junk\nc\n").unwrap();
    assert_eq!(f.show("p"), "p.x=t\np.x.a='bc'\n");
}

#[test]
fn nul_bytes_on_every_line_stop_at_a_bound_not_at_out_of_memory() {
    // Each line's read ends at its NUL, not at a newline, so libuci doubles its buffer per
    // line: 30 lines would ask for 32 GiB.
    let text = format!("config t 'x'\n{}", "\t\0x\n".repeat(30));
    let e = parse(&text).unwrap_err();
    assert_eq!(e.reason, "line too long");
    assert!(e.to_string().contains("NUL bytes"), "{e}");
}

#[test]
fn semicolon_after_a_blank_or_a_quote_starts_a_statement() {
    // From file.c's parse_str (the corpus has the quoted and the bare case): a bare word's
    // end is written over the `;`, so only these two keep the rest of the line.
    let f = parse("config t 'x'\n option a 1 ; option b 2\n option c '3'; option d 4\n").unwrap();
    assert_eq!(
        f.show("p"),
        "p.x=t\np.x.a='1'\np.x.b='2'\np.x.c='3'\np.x.d='4'\n"
    );
}
