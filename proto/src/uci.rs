//! A reader for OpenWrt UCI files (`/etc/config/<name>`).
//!
//! No daemon reads `/etc/config/trellis`: the init scripts turn its options into flags. Only
//! xtask's package checks read the shipped defaults with this reader (issue 14 moves it there
//! and makes it exactly uci's grammar). The grammar follows libuci's
//! `uci_parse_line`: one statement per line (`package`, `config`, `option`, `list`), words
//! separated by blanks, `#` starting a comment where a word could start, values either bare,
//! `'single quoted'` (no escapes) or `"double quoted"` (backslash escapes), and adjacent
//! pieces glued into one word (`'it'\''s'`). Pending changes in `/tmp/.uci` are not applied:
//! like every direct reader, this sees the committed file only.

use std::fmt;

/// A parsed UCI file: its sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UciFile {
    pub sections: Vec<Section>,
}

/// `config <kind> ['<name>']` and the options that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (`config trellis 'main'` has kind `trellis`).
    pub kind: String,
    /// `None` for an anonymous section (addressed as `@kind[index]` by the `uci` CLI).
    pub name: Option<String>,
    /// Options in file order; a name appears once (a later `option` replaces the value, a
    /// `list` appends), as libuci does.
    pub options: Vec<(String, Value)>,
    /// The line of the `config` statement, for messages about this section.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Single(String),
    List(Vec<String>),
}

/// A malformed line, with its 1-based number so a user can open the file at that line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct UciError {
    pub line: usize,
    pub message: String,
}

impl UciFile {
    /// The first section named `name` (named sections are unique in practice).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
    }

    /// All sections of one type, in file order.
    pub fn sections_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections.iter().filter(move |s| s.kind == kind)
    }

    /// `uci get config.section.option` for a single value.
    pub fn get(&self, section: &str, option: &str) -> Option<&str> {
        self.section(section)?.get(option)
    }
}

impl Section {
    pub fn value(&self, option: &str) -> Option<&Value> {
        self.options
            .iter()
            .find(|(n, _)| n == option)
            .map(|(_, v)| v)
    }

    /// A single value; for a list, its first item (what `config_get` would not do, but what
    /// a reader of a scalar option wants when a user wrote `list` by mistake).
    pub fn get(&self, option: &str) -> Option<&str> {
        match self.value(option)? {
            Value::Single(s) => Some(s),
            Value::List(items) => items.first().map(String::as_str),
        }
    }

    /// A list; a single value reads as a one-item list.
    pub fn list(&self, option: &str) -> Vec<&str> {
        match self.value(option) {
            Some(Value::Single(s)) => vec![s.as_str()],
            Some(Value::List(items)) => items.iter().map(String::as_str).collect(),
            None => Vec::new(),
        }
    }

    /// A boolean the way `config_get_bool` reads one (1/yes/on/true/enabled and their
    /// opposites); anything else is an error naming the option, rather than a silent default.
    pub fn get_bool(&self, option: &str) -> Result<Option<bool>, String> {
        let Some(v) = self.get(option) else {
            return Ok(None);
        };
        match v {
            "1" | "yes" | "on" | "true" | "enabled" => Ok(Some(true)),
            "0" | "no" | "off" | "false" | "disabled" => Ok(Some(false)),
            other => Err(format!(
                "option {option} of section {} (line {}) is {other:?}, not a boolean (0/1)",
                self.display_name(),
                self.line
            )),
        }
    }

    fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("@{}", self.kind),
        }
    }
}

impl fmt::Display for UciFile {
    /// Writes the file back in the layout `uci export` uses (tab-indented, single quotes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.sections.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &s.name {
                Some(n) => writeln!(f, "config {} {}", s.kind, quote(n))?,
                None => writeln!(f, "config {}", s.kind)?,
            }
            for (name, value) in &s.options {
                match value {
                    Value::Single(v) => writeln!(f, "\toption {name} {}", quote(v))?,
                    Value::List(items) => {
                        for v in items {
                            writeln!(f, "\tlist {name} {}", quote(v))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// Parse the text of a UCI file.
pub fn parse(text: &str) -> Result<UciFile, UciError> {
    let mut file = UciFile::default();
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let err = |message: String| UciError { line, message };
        let words = split_words(raw).map_err(err)?;
        let Some((keyword, args)) = words.split_first() else {
            continue;
        };
        match keyword.as_str() {
            "package" => {
                if args.len() != 1 {
                    return Err(err("`package` takes exactly one name".into()));
                }
            }
            "config" => {
                let (kind, name) = match args {
                    [kind] => (kind, None),
                    [kind, name] => (kind, Some(name)),
                    [] => return Err(err("`config` needs a section type".into())),
                    _ => {
                        return Err(err(format!(
                            "`config` takes a type and an optional name, got {} words (quote values that contain spaces)",
                            args.len()
                        )))
                    }
                };
                check_name(kind, "section type", true).map_err(err)?;
                if let Some(n) = name {
                    check_name(n, "section name", false).map_err(err)?;
                }
                file.sections.push(Section {
                    kind: kind.clone(),
                    name: name.cloned(),
                    options: Vec::new(),
                    line,
                });
            }
            "option" | "list" => {
                let [name, value] = args else {
                    return Err(err(format!(
                        "`{keyword}` takes a name and one value, got {} words (quote values that contain spaces)",
                        args.len()
                    )));
                };
                check_name(name, "option name", false).map_err(err)?;
                let Some(section) = file.sections.last_mut() else {
                    return Err(err(format!(
                        "`{keyword} {name}` comes before any `config` line"
                    )));
                };
                let slot = section.options.iter_mut().find(|(n, _)| n == name);
                match (keyword.as_str(), slot) {
                    ("option", Some((_, v))) => *v = Value::Single(value.clone()),
                    ("option", None) => section
                        .options
                        .push((name.clone(), Value::Single(value.clone()))),
                    (_, Some((_, Value::List(items)))) => items.push(value.clone()),
                    // libuci turns an option into a list when a `list` line follows it.
                    (_, Some((_, v @ Value::Single(_)))) => {
                        let Value::Single(first) = std::mem::replace(v, Value::List(Vec::new()))
                        else {
                            unreachable!()
                        };
                        *v = Value::List(vec![first, value.clone()]);
                    }
                    (_, None) => section
                        .options
                        .push((name.clone(), Value::List(vec![value.clone()]))),
                }
            }
            other => {
                return Err(err(format!(
                    "unknown statement {other:?}; expected config, option, list or package"
                )))
            }
        }
    }
    Ok(file)
}

/// libuci accepts `[A-Za-z0-9_]` in names, and also `-` in section types.
fn check_name(s: &str, what: &str, dash_ok: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("empty {what}"));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || (dash_ok && c == '-')))
    {
        return Err(format!(
            "{what} {s:?} contains {c:?}; only letters, digits and _ are allowed"
        ));
    }
    Ok(())
}

/// Split one line into words, handling quotes, escapes and comments.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(words),
            _ => {}
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated ' quote".into()),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch) => word.push(ch),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated \" quote".into()),
                    }
                },
                '\\' => match chars.next() {
                    Some(ch) => word.push(ch),
                    None => return Err("a line cannot end with a backslash".into()),
                },
                _ => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(main.list("band"), vec!["5g", "2g"]);
        assert_eq!(main.get_bool("enabled"), Ok(Some(true)));
        let anon: Vec<_> = f.sections_of("peer").collect();
        assert_eq!(anon.len(), 1);
        assert_eq!(anon[0].name, None);
        assert_eq!(anon[0].get("note"), Some("it's"));
    }

    #[test]
    fn later_option_replaces_and_list_after_option_extends() {
        let f = parse("config a 'x'\n option v 1\n option v 2\n list v 3\n").unwrap();
        assert_eq!(
            f.section("x").unwrap().value("v"),
            Some(&Value::List(vec!["2".into(), "3".into()]))
        );
    }

    #[test]
    fn display_round_trips() {
        let f = parse(SAMPLE).unwrap();
        let again = parse(&f.to_string()).unwrap();
        assert_eq!(f.sections.len(), again.sections.len());
        for (a, b) in f.sections.iter().zip(&again.sections) {
            assert_eq!(
                (&a.kind, &a.name, &a.options),
                (&b.kind, &b.name, &b.options)
            );
        }
    }

    #[test]
    fn bad_boolean_is_an_error_naming_the_option() {
        let f = parse("config t 'main'\n option enabled maybe\n").unwrap();
        let e = f.section("main").unwrap().get_bool("enabled").unwrap_err();
        assert!(e.contains("enabled") && e.contains("maybe"), "{e}");
    }

    fn error(text: &str) -> UciError {
        parse(text).expect_err("malformed input must not parse")
    }

    #[test]
    fn malformed_input_names_the_line() {
        let e = error("config t 'main'\n\toption role 'auto\n");
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().starts_with("line 2: unterminated ' quote"),
            "{e}"
        );

        let e = error("# header\n\noption role auto\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("before any `config`"), "{e}");

        let e = error("config t 'main'\n option role my home\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("quote values"), "{e}");

        let e = error("config t 'main'\n\toptoin role auto\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("\"optoin\""), "{e}");

        let e = error("config t 'ma.in'\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("section name"), "{e}");

        let e = error("config t 'main'\n option v \"x\\");
        assert_eq!(e.line, 2);

        let e = error("config\n");
        assert!(e.message.contains("section type"), "{e}");
    }
}
