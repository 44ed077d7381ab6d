//! Reading a router's existing wifi from the output of `uci -q show wireless`, so the first
//! setup can take the primary's SSID and key and nobody's devices have to re-join
//! (`trellis wifi import`).
//!
//! This module owns the reading of `uci show` output (the `package.section.option='value'`
//! lines OpenWrt's `uci` prints: values single-quoted, a quote inside written `'\''`, list
//! items separated by a space, a value may span lines) and the choice of which access point
//! is the home network. What makes an SSID or passphrase valid is not decided here: the
//! proto types ([`Ssid`], [`Passphrase`]) do.

use std::collections::BTreeMap;

use trellis_proto::home_wifi::{Band, Bands, Passphrase, Security, Ssid, WifiError};

/// Largest `uci show wireless` output read (a router's is a few KiB).
pub const MAX_SHOW_BYTES: usize = 256 * 1024;
/// Most sections kept (radios and interfaces; a router has a handful).
pub const MAX_SECTIONS: usize = 256;

/// Why nothing could be imported, said so a person can act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the wireless config is larger than {} KiB; this is not `uci show wireless` output", MAX_SHOW_BYTES / 1024)]
    TooLarge,
    #[error("line {0} of the wireless config is not `uci show` output (expected package.section.option='value')")]
    Malformed(usize),
    #[error("the wireless config lists more than {MAX_SECTIONS} sections")]
    TooManySections,
    #[error("this router has no enabled access point (a wifi-iface with mode 'ap' and an SSID) to import; set the network with `trellis wifi set home --ssid NAME --passphrase-file FILE`")]
    NoAccessPoint,
    #[error("the access point {ssid:?} uses encryption {encryption:?}, which Trellis does not import (it serves WPA2/WPA3 personal networks); set the network with `trellis wifi set home`")]
    Unsupported { ssid: String, encryption: String },
    #[error("the access point's network name cannot be used: {0}")]
    Ssid(WifiError),
    #[error("the access point's key cannot be used ({0}); a 64-hex-digit raw key cannot be imported either: set the network with `trellis wifi set home`")]
    Key(WifiError),
}

/// `uci -q show wireless` on this router (bounded), for [`import_home`]; the error says
/// what to do instead. The `trellis wifi import` command and the page's first-setup offer
/// both read the router's wireless config through this.
pub fn show_wireless() -> Result<String, String> {
    let out = std::process::Command::new("uci")
        .args(["-q", "show", "wireless"])
        .output()
        .map_err(|e| {
            format!(
                "cannot run `uci show wireless` ({e}); on a box without OpenWrt's uci, give its output with `trellis wifi import --from FILE`"
            )
        })?;
    if !out.status.success() {
        return Err(
            "`uci show wireless` failed: this router has no /etc/config/wireless; set the network with `trellis wifi set home`".into(),
        );
    }
    if out.stdout.len() > MAX_SHOW_BYTES {
        return Err(ImportError::TooLarge.to_string());
    }
    String::from_utf8(out.stdout)
        .map_err(|_| "`uci show wireless` printed text that is not UTF-8".to_owned())
}

/// One section of the `wireless` package: its type and options (a list's items joined by a
/// space, as only single options are read here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub options: BTreeMap<String, Vec<String>>,
}

impl Section {
    fn get(&self, option: &str) -> Option<&str> {
        self.options
            .get(option)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The sections of one package, by name (`default_radio0`, or `@wifi-iface[0]` for an
/// anonymous one), in the order `uci` printed them.
pub fn parse_show(text: &str, package: &str) -> Result<Vec<(String, Section)>, ImportError> {
    if text.len() > MAX_SHOW_BYTES {
        return Err(ImportError::TooLarge);
    }
    let mut sections: Vec<(String, Section)> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    loop {
        // Skip blank lines.
        while chars.peek() == Some(&'\n') || chars.peek() == Some(&'\r') {
            if chars.next() == Some('\n') {
                line += 1;
            }
        }
        if chars.peek().is_none() {
            break;
        }
        let start_line = line;
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some('\n') | None => return Err(ImportError::Malformed(start_line)),
                Some(c) => key.push(c),
            }
        }
        let mut values = Vec::new();
        if chars.peek() == Some(&'\'') {
            // A list of quoted words: 'a' 'b c', each word maybe 'it'\''s'.
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('\'') => loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                word.push(c);
                            }
                            None => return Err(ImportError::Malformed(start_line)),
                        }
                    },
                    Some('\\') => match chars.next() {
                        Some('\'') => word.push('\''),
                        _ => return Err(ImportError::Malformed(start_line)),
                    },
                    Some(' ') => values.push(std::mem::take(&mut word)),
                    Some('\r') if chars.peek() == Some(&'\n') => {}
                    Some('\n') | None => {
                        line += 1;
                        values.push(word);
                        break;
                    }
                    Some(_) => return Err(ImportError::Malformed(start_line)),
                }
            }
        } else {
            let mut bare = String::new();
            loop {
                match chars.next() {
                    Some('\n') | None => {
                        line += 1;
                        break;
                    }
                    Some('\r') if chars.peek() == Some(&'\n') => {}
                    Some(c) => bare.push(c),
                }
            }
            values.push(bare);
        }
        let mut parts = key.splitn(3, '.');
        let (Some(pkg), Some(name)) = (parts.next(), parts.next()) else {
            return Err(ImportError::Malformed(start_line));
        };
        if pkg != package || name.is_empty() {
            // Another package's lines (`uci show` of everything): not ours.
            continue;
        }
        let option = parts.next();
        let index = match sections.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                if sections.len() >= MAX_SECTIONS {
                    return Err(ImportError::TooManySections);
                }
                sections.push((name.to_owned(), Section::default()));
                sections.len() - 1
            }
        };
        let section = &mut sections[index].1;
        match option {
            None => section.kind = values.concat(),
            Some("") => return Err(ImportError::Malformed(start_line)),
            Some(option) => {
                section.options.insert(option.to_owned(), values);
            }
        }
    }
    Ok(sections)
}

/// The home network found on a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The section it came from, e.g. `default_radio0`.
    pub section: String,
    pub ssid: Ssid,
    pub passphrase: Passphrase,
    pub security: Security,
    pub bands: Bands,
}

/// The security Trellis serves for an OpenWrt `encryption` value, if it takes that network
/// (WPA2-personal networks move to the WPA2/WPA3 transition mode, which their devices join
/// as before).
fn security_of(encryption: &str) -> Option<Security> {
    let base = encryption.split('+').next().unwrap_or("");
    match base {
        "psk" | "psk2" | "psk-mixed" | "sae-mixed" => Some(Security::Wpa2Wpa3),
        "sae" => Some(Security::Wpa3),
        _ => None,
    }
}

fn band_of(radio: &Section) -> Option<Band> {
    match radio.get("band") {
        Some("2g") => return Some(Band::G2),
        Some("5g") => return Some(Band::G5),
        _ => {}
    }
    match radio.get("hwmode") {
        Some("11a") => Some(Band::G5),
        Some("11g" | "11b" | "11bg" | "11n") => Some(Band::G2),
        _ => None,
    }
}

/// The router's home network from `uci show wireless` output: the first enabled access point
/// with an SSID (the one on the `lan` network first), on every band where an access point
/// serves the same name.
pub fn import_home(show: &str) -> Result<Imported, ImportError> {
    let sections = parse_show(show, "wireless")?;
    let ap = |s: &Section| {
        s.kind == "wifi-iface"
            && s.get("mode").unwrap_or("ap") == "ap"
            && s.get("disabled") != Some("1")
            && s.get("ssid").is_some_and(|v| !v.is_empty())
    };
    let candidates: Vec<&(String, Section)> = sections.iter().filter(|(_, s)| ap(s)).collect();
    let chosen = candidates
        .iter()
        .find(|(_, s)| s.get("network").unwrap_or("lan") == "lan")
        .or_else(|| candidates.first())
        .ok_or(ImportError::NoAccessPoint)?;
    let (name, iface) = (&chosen.0, &chosen.1);
    let ssid_text = iface.get("ssid").unwrap_or("");
    let encryption = iface.get("encryption").unwrap_or("none");
    let security = security_of(encryption).ok_or_else(|| ImportError::Unsupported {
        ssid: ssid_text.chars().take(40).collect(),
        encryption: encryption.chars().take(40).collect(),
    })?;
    let ssid = Ssid::new(ssid_text).map_err(ImportError::Ssid)?;
    let passphrase = Passphrase::new(iface.get("key").unwrap_or("")).map_err(ImportError::Key)?;
    let radios: BTreeMap<&str, &Section> = sections
        .iter()
        .filter(|(_, s)| s.kind == "wifi-device")
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let mut bands = Vec::new();
    for (_, s) in candidates
        .iter()
        .filter(|(_, s)| s.get("ssid") == Some(ssid_text))
    {
        let band = s
            .get("device")
            .and_then(|d| radios.get(d))
            .and_then(|r| band_of(r));
        bands.push(band);
    }
    let bands = match (
        bands.contains(&Some(Band::G2)),
        bands.contains(&Some(Band::G5)),
        bands.contains(&None),
    ) {
        (true, false, false) => Bands::Only2g,
        (false, true, false) => Bands::Only5g,
        _ => Bands::Both,
    };
    Ok(Imported {
        section: name.clone(),
        ssid,
        passphrase,
        security,
        bands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OpenWrt 24.10 prints for a two-radio router after the person set a password.
    const TWO_RADIOS: &str = "wireless.radio0=wifi-device
wireless.radio0.type='mac80211'
wireless.radio0.path='platform/soc/18000000.wifi'
wireless.radio0.channel='1'
wireless.radio0.band='2g'
wireless.radio0.htmode='HE20'
wireless.default_radio0=wifi-iface
wireless.default_radio0.device='radio0'
wireless.default_radio0.network='lan'
wireless.default_radio0.mode='ap'
wireless.default_radio0.ssid='Our '\\''Home'\\'''
wireless.default_radio0.encryption='psk2'
wireless.default_radio0.key='correct horse'
wireless.radio1=wifi-device
wireless.radio1.type='mac80211'
wireless.radio1.band='5g'
wireless.default_radio1=wifi-iface
wireless.default_radio1.device='radio1'
wireless.default_radio1.network='lan'
wireless.default_radio1.mode='ap'
wireless.default_radio1.ssid='Our '\\''Home'\\'''
wireless.default_radio1.encryption='psk2'
wireless.default_radio1.key='correct horse'
wireless.@wifi-iface[2]=wifi-iface
wireless.@wifi-iface[2].device='radio1'
wireless.@wifi-iface[2].mode='mesh'
wireless.@wifi-iface[2].mesh_id='trellis-x'
";

    #[test]
    fn the_primarys_home_network_is_taken_with_its_bands() {
        let got = import_home(TWO_RADIOS).unwrap();
        assert_eq!(got.section, "default_radio0");
        assert_eq!(got.ssid.as_str(), "Our 'Home'");
        assert_eq!(got.passphrase.expose(), "correct horse");
        assert_eq!(got.security, Security::Wpa2Wpa3);
        assert_eq!(got.bands, Bands::Both);
    }

    #[test]
    fn uci_show_quoting_as_the_corpus_shows_it() {
        // Lines as real `uci` printed them (/work/shared/reference/uci-corpus 07, 08, 09, 12).
        let s = parse_show(
            "w.main=t\nw.main.x='it'\\''s'\nw.main.l='a' 'b c'\nw.@peer[0]=peer\nw.@peer[0].a='1'\nw.main.m='line1\nline2'\n",
            "w",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        let main = &s[0].1;
        assert_eq!(main.kind, "t");
        assert_eq!(main.options["x"], vec!["it's"]);
        assert_eq!(main.options["l"], vec!["a", "b c"]);
        assert_eq!(main.options["m"], vec!["line1\nline2"]);
        assert_eq!(s[1].0, "@peer[0]");
    }

    #[test]
    fn every_corpus_case_real_uci_accepted_is_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/uci-corpus");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return; // the corpus is the team's reference, not part of the repository
        };
        let mut read = 0;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("show") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            if let Err(err) = parse_show(&text, "trellis") {
                panic!("{}: {err}", p.display());
            }
            read += 1;
        }
        assert!(read > 0);
    }

    /// Every cut of the fuzz seeds (unterminated quotes, half lines) is read or refused,
    /// never a panic; what imports is valid by the proto's rules.
    #[test]
    fn every_prefix_of_the_fuzz_seeds_is_read_or_refused() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/uci_wireless");
        let mut seeds = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            seeds += 1;
            for (i, _) in text.char_indices() {
                let _ = parse_show(&text[..i], "wireless");
                if let Ok(found) = import_home(&text[..i]) {
                    assert!(Passphrase::new(found.passphrase.expose()).is_ok());
                }
            }
        }
        assert!(seeds >= 3);
    }

    #[test]
    fn a_single_band_network_and_wpa3() {
        let show = "wireless.radio0=wifi-device\nwireless.radio0.hwmode='11a'\n\
                    wireless.x=wifi-iface\nwireless.x.device='radio0'\nwireless.x.ssid='Five'\n\
                    wireless.x.encryption='sae'\nwireless.x.key='12345678'\n";
        let got = import_home(show).unwrap();
        assert_eq!(got.bands, Bands::Only5g);
        assert_eq!(got.security, Security::Wpa3);
    }

    #[test]
    fn what_cannot_be_imported_is_said() {
        let open = "wireless.x=wifi-iface\nwireless.x.mode='ap'\nwireless.x.ssid='Cafe'\nwireless.x.encryption='none'\n";
        let err = import_home(open).unwrap_err();
        assert!(matches!(err, ImportError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("trellis wifi set"));
        let disabled = "wireless.x=wifi-iface\nwireless.x.ssid='A'\nwireless.x.disabled='1'\n";
        assert_eq!(import_home(disabled), Err(ImportError::NoAccessPoint));
        let raw = format!(
            "wireless.x=wifi-iface\nwireless.x.ssid='A'\nwireless.x.encryption='psk2'\nwireless.x.key='{}'\n",
            "ab".repeat(32)
        );
        let err = import_home(&raw).unwrap_err();
        assert!(matches!(err, ImportError::Key(_)));
        assert!(
            !err.to_string().contains(&"ab".repeat(32)),
            "no key in the error"
        );
        assert_eq!(
            parse_show("wireless.x.ssid='A\n", "wireless"),
            Err(ImportError::Malformed(1))
        );
        assert_eq!(
            parse_show("no equals sign\n", "wireless"),
            Err(ImportError::Malformed(1))
        );
    }
}
