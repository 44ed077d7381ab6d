//! OpenWrt UCI files (`/etc/config/<name>`), read exactly as libuci reads them and printed
//! as `uci show` prints them.
//!
//! No daemon reads `/etc/config/trellis`: the init scripts turn its options into flags. This
//! reader is for xtask's package checks (the shipped defaults, what LuCI edits), and it owns
//! one rule: what a UCI file means. It follows openwrt/uci's `file.c` step for step rather
//! than a grammar of our own, because uci's behaviour comes from how it edits its line buffer
//! in place: `;` starts another statement only after a blank or a quoted word (right after
//! a bare word, the rest of the line is dropped), a bare `#` ends the line, quoted values and
//! a trailing backslash continue on the next line, `option x ''` changes nothing, a second
//! `config` of the same name continues the first section, an error's "byte" is the offset in
//! that buffer. `tests/uci-corpus/` holds what real `uci show` printed for 48 inputs;
//! `uci/tests.rs` compares every one byte for byte.
//!
//! Pending changes in `/tmp/.uci` are not applied: like every direct reader, this sees the
//! committed file only. Std only, so `xtask/fuzz` compiles this file on its own.

// The package checks use `parse` and `section`; the rest serves the package tests, the
// corpus test and xtask/fuzz, which compile this file too.
#![cfg_attr(not(test), allow(dead_code))]

use std::fmt;

/// A parsed UCI file: its sections in the order libuci keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UciFile {
    pub sections: Vec<Section>,
}

/// `config <kind> ['<name>']` and the options that follow it (and those of any later
/// `config` with the same name, which libuci merges into this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (`config trellis 'main'` has kind `trellis`).
    pub kind: String,
    /// The name; for an anonymous section the one libuci generates (`cfg02a1b2`), which
    /// `uci show` does not print (it says `@kind[index]`).
    pub name: String,
    pub anonymous: bool,
    /// Options in libuci's order: a name appears once; an `option` that changes a value
    /// moves it to the end, a `list` appends an item (turning a single value into a list).
    pub options: Vec<(String, Value)>,
    /// The line of the first `config` statement, for messages about this section.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Single(String),
    List(Vec<String>),
}

/// What libuci refuses, with its own reason, line and byte (`uci: Parse error (...) at line
/// 3, byte 16`), so a user can compare with what the router says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciError {
    /// Lines read so far (libuci's count: the line of the error, or one less when that
    /// line is the last and has no newline).
    pub line: usize,
    /// libuci's position in its line buffer (a value continued over lines counts them all).
    pub byte: usize,
    /// libuci's reason text.
    pub reason: &'static str,
}

impl UciError {
    /// Exactly what `uci` prints after `uci: `.
    pub fn uci_message(&self) -> String {
        format!(
            "Parse error ({}) at line {}, byte {}",
            self.reason, self.line, self.byte
        )
    }

    /// What to do about it, in words libuci does not give.
    fn hint(&self) -> &'static str {
        match self.reason {
            INVALID_NAME => {
                "section, option and package names may use only letters, digits and _ \
                 (a package name also -)"
            }
            INVALID_TYPE => "a section type may use only printable ASCII, no blanks",
            TOO_MANY => "quote a value that contains blanks: option name 'two words'",
            BEFORE_SECTION => "put a `config TYPE 'NAME'` line before the first option or list",
            INVALID_COMMAND => {
                "a statement starts with config, option, list or package (or c, o, l, p) \
                 followed by a blank; # starts a comment"
            }
            INSUFFICIENT => "config needs a type, option and list a name",
            UNTERMINATED_SQ | UNTERMINATED_DQ => "close the quote (a value may span lines)",
            OTHER_TYPE => "a second section of the same name must have the same type",
            NOT_UTF8 => "save the file as UTF-8 without NUL bytes",
            TOO_LONG => {
                "a statement may take at most 2 MiB; NUL bytes in the file join lines \
                 (remove them)"
            }
            _ => "the statement needs a name after its keyword",
        }
    }
}

impl fmt::Display for UciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.uci_message(), self.hint())
    }
}

impl std::error::Error for UciError {}

// libuci's reasons, verbatim (they are compared with real uci's output).
const INVALID_NAME: &str = "invalid character in name field";
const INVALID_TYPE: &str = "invalid character in type field";
const TOO_MANY: &str = "too many arguments";
const BEFORE_SECTION: &str = "option/list command found before the first section";
const INVALID_COMMAND: &str = "invalid command";
const INSUFFICIENT: &str = "insufficient arguments";
const UNTERMINATED_SQ: &str = "EOF with unterminated '";
const UNTERMINATED_DQ: &str = "EOF with unterminated \"";
const OTHER_TYPE: &str = "section of different type overwrites prior section with same name";
const PACKAGE_NO_NAME: &str = "package without name";
const CONFIG_NO_NAME: &str = "config without name";
const OPTION_NO_NAME: &str = "option without name";
// Ours: libuci keeps any bytes; our model is text. Only a NUL byte in the input can make
// this happen (libuci drops the rest of a read chunk after one, possibly mid-character).
const NOT_UTF8: &str = "value is not UTF-8";
// Ours: libuci doubles its buffer for every read that does not end in a newline, which a
// NUL byte causes on every line (30 such lines ask for 32 GiB); it then fails with "Out of
// memory". We stop at a bound instead.
const TOO_LONG: &str = "line too long";
const MAX_BUF: usize = 4 << 20;

impl UciFile {
    /// The section named `name` (libuci merges sections of one name, so there is one).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// `uci get config.section.option` for a single value.
    pub fn get(&self, section: &str, option: &str) -> Option<&str> {
        self.section(section)?.get(option)
    }

    /// What `uci show <package>` prints for this file installed as `/etc/config/<package>`:
    /// `package.section=type` and `package.section.option='value'` lines, anonymous
    /// sections as `@type[i]` where i counts every earlier section of that type.
    pub fn show(&self, package: &str) -> String {
        let mut out = String::new();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for s in &self.sections {
            let index = match seen.iter_mut().find(|(k, _)| *k == s.kind) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    seen.push((&s.kind, 1));
                    0
                }
            };
            let name = if s.anonymous {
                format!("@{}[{index}]", s.kind)
            } else {
                s.name.clone()
            };
            out += &format!("{package}.{name}={}\n", s.kind);
            for (option, value) in &s.options {
                let shown = match value {
                    Value::Single(v) => quote(v),
                    Value::List(items) => {
                        items.iter().map(|v| quote(v)).collect::<Vec<_>>().join(" ")
                    }
                };
                out += &format!("{package}.{name}.{option}={shown}\n");
            }
        }
        out
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
        if self.anonymous {
            format!("@{}", self.kind)
        } else {
            self.name.clone()
        }
    }
}

impl fmt::Display for UciFile {
    /// Writes the file in `uci export`'s layout (without the `package` line), every word
    /// single-quoted so that any type or value reads back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sections {
            write!(f, "\nconfig {}", quote(&s.kind))?;
            if !s.anonymous {
                write!(f, " {}", quote(&s.name))?;
            }
            writeln!(f)?;
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
        writeln!(f)
    }
}

/// uci's quoting for `show` and `export`: single quotes, `'` as `'\''`.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// Parse the text of a UCI file as `uci` does (strict mode, its default).
pub fn parse(text: &str) -> Result<UciFile, UciError> {
    let mut p = Parser {
        input: text.as_bytes(),
        read: 0,
        eof: false,
        buf: Vec::new(),
        filled: 0,
        pos: 0,
        line: 0,
        file: UciFile::default(),
        current: None,
        n_section: 0,
    };
    // uci_import: one line (or, for a multi-line value, more) into the buffer, then its
    // statements.
    while !p.eof {
        p.pos = 0;
        p.getln(0)?;
        if p.at(0) != 0 {
            p.parse_line()?;
        }
    }
    Ok(p.file)
}

type Parsed<T> = Result<T, UciError>;

/// libuci's parse context: its line buffer (edited in place: quotes and escapes are
/// removed by copying the value down, ends of words become NUL bytes), the position in it,
/// and the lines read. Positions into `buf` stand for its `char *`s.
struct Parser<'a> {
    input: &'a [u8],
    /// The next input byte `fgets` would read, and whether it has seen the end.
    read: usize,
    eof: bool,
    /// libuci's `buf`; its length is libuci's `bufsz` (32, doubled as lines need), which
    /// decides where `fgets` splits a long line, which matters after a NUL byte.
    buf: Vec<u8>,
    filled: usize,
    pos: usize,
    line: usize,
    file: UciFile,
    /// The section that `option`/`list` add to.
    current: Option<usize>,
    /// libuci's `n_section`, part of anonymous sections' generated names.
    n_section: u32,
}

/// C's `isspace` in the "C" locale (uci never sets a locale).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// libuci's `uci_validate_str`: names are `[A-Za-z0-9_]` (a package's also `-`), types any
/// printable ASCII but blanks.
fn valid_str(s: &[u8], name: bool, package: bool) -> bool {
    !s.is_empty()
        && s.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || c == b'_'
                || (c == b'-' && package)
                || (!name && (33..=126).contains(&c))
        })
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    fn put(&mut self, i: usize, c: u8) {
        // Positions stay below `filled` < buf.len(); the check only keeps a slip from
        // becoming a panic on a user's file.
        if let Some(b) = self.buf.get_mut(i) {
            *b = c;
        }
    }

    /// The NUL-terminated string at `i`.
    fn cstr(&self, i: usize) -> &[u8] {
        let rest = self.buf.get(i..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn error(&self, reason: &'static str) -> UciError {
        UciError {
            line: self.line,
            byte: self.pos,
            reason,
        }
    }

    /// `fgets(buf + ofs, size)`: at most `size - 1` bytes, up to and including a newline.
    /// Returns how many bytes it stored, or `None` at the end of the input.
    fn fgets(&mut self, ofs: usize, size: usize) -> Option<usize> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            self.eof = true;
            return None;
        }
        let max = size.saturating_sub(1);
        let mut n = rest.len().min(max);
        match rest[..n].iter().position(|&c| c == b'\n') {
            Some(nl) => n = nl + 1,
            // It wanted more than there was: it saw the end of the file.
            None if n < max => self.eof = true,
            None => {}
        }
        self.buf[ofs..ofs + n].copy_from_slice(&rest[..n]);
        self.buf[ofs + n] = 0;
        self.read += n;
        Some(n)
    }

    /// `uci_getln`: append the next line at `offset`, growing the buffer as libuci does.
    fn getln(&mut self, offset: usize) -> Parsed<()> {
        if self.buf.is_empty() {
            self.buf = vec![0; 32];
        }
        if offset >= self.buf.len() - 1 {
            self.grow()?;
        }
        let mut ofs = offset;
        loop {
            self.buf[ofs] = 0;
            if self.fgets(ofs, self.buf.len() - ofs).is_none() || self.buf[ofs] == 0 {
                return Ok(());
            }
            ofs += self.cstr(ofs).len();
            self.filled = ofs;
            if self.buf[ofs - 1] == b'\n' {
                self.line += 1;
                return Ok(());
            }
            self.grow()?;
        }
    }

    fn grow(&mut self) -> Parsed<()> {
        let size = self.buf.len() * 2;
        if size > MAX_BUF {
            return Err(self.error(TOO_LONG));
        }
        self.buf.resize(size, 0);
        Ok(())
    }

    fn skip_whitespace(&mut self) {
        while self.cur() != 0 && is_space(self.cur()) {
            self.pos += 1;
        }
    }

    fn addc(&mut self, target: &mut usize) {
        self.put(*target, self.cur());
        *target += 1;
        self.pos += 1;
    }

    /// `parse_backslash`: skip it; at the end of a line fetch the next one in its place
    /// (false: nothing to copy), otherwise the next character is copied as is (true).
    fn parse_backslash(&mut self) -> Parsed<bool> {
        self.pos += 1;
        let c = self.cur();
        if c == 0
            || c == b'\n'
            || (c == b'\r' && self.at(self.pos + 1) == b'\n' && self.at(self.pos + 2) == 0)
        {
            self.getln(self.pos)?;
            return Ok(false);
        }
        Ok(true)
    }

    fn parse_double_quote(&mut self, target: &mut usize) -> Parsed<()> {
        self.pos += 1;
        loop {
            match self.cur() {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos)?;
                    if self.cur() == 0 {
                        return Err(self.error(UNTERMINATED_DQ));
                    }
                }
                b'\\' => {
                    if self.parse_backslash()? {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    fn parse_single_quote(&mut self, target: &mut usize) -> Parsed<()> {
        self.pos += 1;
        loop {
            match self.cur() {
                b'\'' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos)?;
                    if self.cur() == 0 {
                        return Err(self.error(UNTERMINATED_SQ));
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    /// `parse_str`: one word (bare, quoted and escaped pieces glued), copied down to
    /// `target` and NUL-terminated there. That NUL can land on a `;` or on the rest of the
    /// line, which is how uci drops what follows `a;b` or `a#b`.
    fn parse_str(&mut self, target: &mut usize) -> Parsed<()> {
        let mut next = true;
        loop {
            match self.cur() {
                b'\'' => self.parse_single_quote(target)?,
                b'"' => self.parse_double_quote(target)?,
                b'#' => {
                    self.put(self.pos, 0);
                    break;
                }
                0 => break,
                b';' => {
                    next = false;
                    break;
                }
                b'\\' => {
                    if self.parse_backslash()? {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
            if self.cur() == 0 || is_space(self.cur()) {
                break;
            }
        }
        if self.cur() != 0 && next {
            self.pos += 1;
        }
        self.put(*target, 0);
        Ok(())
    }

    /// `next_arg`: the next word's position (empty at the end of the statement).
    fn next_arg(&mut self, required: bool, name: bool, package: bool) -> Parsed<usize> {
        self.skip_whitespace();
        let val = self.pos;
        let mut target = self.pos;
        if self.cur() == b';' {
            self.put(self.pos, 0);
            self.pos += 1;
        } else {
            self.parse_str(&mut target)?;
        }
        if self.at(val) == 0 {
            if required {
                return Err(self.error(INSUFFICIENT));
            }
        } else if name && !valid_str(self.cstr(val), true, package) {
            return Err(self.error(INVALID_NAME));
        }
        Ok(val)
    }

    fn assert_eol(&mut self) -> Parsed<()> {
        self.skip_whitespace();
        let extra = self.next_arg(false, false, false)?;
        if self.at(extra) != 0 {
            return Err(self.error(TOO_MANY));
        }
        Ok(())
    }

    /// Step over the keyword `strtok` cut off (`uci_increase_pos`).
    fn skip_keyword(&mut self, reason: &'static str) -> Parsed<()> {
        let add = self.cstr(self.pos).len() + 1;
        if self.pos + add > self.filled {
            return Err(self.error(reason));
        }
        self.pos += add;
        Ok(())
    }

    /// `strtok(buf + pos, " \t")`: the next keyword's start, its end made a NUL.
    fn strtok(&mut self) -> Option<usize> {
        let mut start = self.pos;
        while matches!(self.at(start), b' ' | b'\t') {
            start += 1;
        }
        if self.at(start) == 0 {
            return None;
        }
        let mut end = start;
        while !matches!(self.at(end), 0 | b' ' | b'\t') {
            end += 1;
        }
        self.put(end, 0);
        Some(start)
    }

    /// `uci_parse_line`: the statements in the buffer, more than one when `;` survives.
    fn parse_line(&mut self) -> Parsed<()> {
        self.skip_whitespace();
        loop {
            let Some(word) = self.strtok() else {
                return Ok(());
            };
            let word = self.cstr(word);
            let is = |long: &[u8]| word.len() == 1 || word == long;
            match word[0] {
                b'#' => return Ok(()),
                b'p' if is(b"package") => self.parse_package()?,
                b'c' if is(b"config") => self.parse_config()?,
                b'o' if is(b"option") => self.parse_option(false)?,
                b'l' if is(b"list") => self.parse_option(true)?,
                _ => return Err(self.error(INVALID_COMMAND)),
            }
        }
    }

    /// `package <name>`: for `uci show`'s single-package load only checked, never obeyed.
    fn parse_package(&mut self) -> Parsed<()> {
        self.skip_keyword(PACKAGE_NO_NAME)?;
        self.next_arg(true, true, true)?;
        self.assert_eol()
    }

    fn parse_config(&mut self) -> Parsed<()> {
        self.skip_keyword(CONFIG_NO_NAME)?;
        let kind = self.next_arg(true, false, false)?;
        if !valid_str(self.cstr(kind), false, false) {
            return Err(self.error(INVALID_TYPE));
        }
        let name = self.next_arg(false, true, false)?;
        self.assert_eol()?;
        // Both validated ASCII.
        let kind = String::from_utf8_lossy(self.cstr(kind)).into_owned();
        let name = String::from_utf8_lossy(self.cstr(name)).into_owned();
        let line = self.line;
        if name.is_empty() {
            // uci_add_section: counted once when allocated, once more for the name.
            self.n_section += 2;
            let name = format!(
                "cfg{:02x}{:04x}",
                self.n_section,
                djb_hash(&kind) % (1 << 16)
            );
            self.push_section(kind, name, true, line);
            return Ok(());
        }
        match self.file.sections.iter().position(|s| s.name == name) {
            Some(i) if self.file.sections[i].kind != kind => Err(self.error(OTHER_TYPE)),
            // The same section again: later options go on adding to it.
            Some(i) => {
                self.current = Some(i);
                Ok(())
            }
            None => {
                self.n_section += 1;
                self.push_section(kind, name, false, line);
                Ok(())
            }
        }
    }

    fn push_section(&mut self, kind: String, name: String, anonymous: bool, line: usize) {
        self.file.sections.push(Section {
            kind,
            name,
            anonymous,
            options: Vec::new(),
            line,
        });
        self.current = Some(self.file.sections.len() - 1);
    }

    fn parse_option(&mut self, list: bool) -> Parsed<()> {
        let Some(current) = self.current else {
            return Err(self.error(BEFORE_SECTION));
        };
        self.skip_keyword(OPTION_NO_NAME)?;
        let name = self.next_arg(true, true, false)?;
        let value = self.next_arg(false, false, false)?;
        self.assert_eol()?;
        let name = String::from_utf8_lossy(self.cstr(name)).into_owned();
        let value =
            String::from_utf8(self.cstr(value).to_vec()).map_err(|_| self.error(NOT_UTF8))?;
        let options = &mut self.file.sections[current].options;
        let slot = options.iter().position(|(n, _)| *n == name);
        if list {
            // uci_add_list: a single value becomes a new list (at the end) holding it.
            match slot.map(|i| (i, &mut options[i].1)) {
                Some((_, Value::List(items))) => items.push(value),
                Some((i, Value::Single(_))) => {
                    let (_, old) = options.remove(i);
                    let Value::Single(old) = old else {
                        return Ok(());
                    };
                    options.push((name, Value::List(vec![old, value])));
                }
                None => options.push((name, Value::List(vec![value]))),
            }
        } else if !value.is_empty() {
            // uci_set: an empty value does nothing (the parser's lookup is not "complete");
            // the same value leaves the option in place, another one re-adds it at the end.
            if let Some(i) = slot {
                if options[i].1 == Value::Single(value.clone()) {
                    return Ok(());
                }
                options.remove(i);
            }
            options.push((name, Value::Single(value)));
        }
        Ok(())
    }
}

/// libuci's `djbhash` of a section type, for anonymous sections' names.
fn djb_hash(s: &str) -> u32 {
    let mut hash: u32 = 5381;
    for &c in s.as_bytes() {
        // C adds a (signed) char; types are ASCII, so the sign never shows.
        hash = (hash << 5).wrapping_add(hash).wrapping_add(c as i8 as u32);
    }
    hash & 0x7FFF_FFFF
}

#[cfg(test)]
mod tests;
