//! `trellis wifi`: the home's wifi networks from the router's shell (a client of
//! `/v1/admin/wifi`). A passphrase is read from a file or standard input, never from the
//! command line (other users see a command line in `ps`, shells keep it in their history).

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use hyper::Method;
use trellis_proto::client::ClientError;
use trellis_proto::home_wifi::{Bands, NetworkKind, Security};

use crate::cli::{bad, call, show, Cli};
use crate::uci_wireless;
use crate::wifi::{NetworkChange, WifiChanged, WifiShown};

#[derive(Debug, Subcommand)]
pub enum WifiCommand {
    /// The home's networks (passphrases are write-only: shown as "set").
    Show,
    /// Set a network every router serves: `trellis wifi set home --ssid "Our Home"
    /// --passphrase-file /tmp/pw` (or `--passphrase-stdin`).
    Set {
        /// home, iot or guest.
        kind: NetworkKind,
        #[arg(long)]
        ssid: String,
        /// A file whose first line is the passphrase (8 to 63 characters).
        #[arg(long, conflicts_with = "passphrase_stdin")]
        passphrase_file: Option<PathBuf>,
        /// Read the passphrase from standard input.
        #[arg(long)]
        passphrase_stdin: bool,
        /// wpa2-wpa3 (the default: old devices keep working) or wpa3.
        #[arg(long, value_parser = parse_security)]
        security: Option<Security>,
        /// both, 2g or 5g (iot is 2g unless you say).
        #[arg(long, value_parser = parse_bands)]
        bands: Option<Bands>,
    },
    /// Stop serving a network on every router.
    Remove { kind: NetworkKind },
    /// Take this router's existing SSID and key (OpenWrt's wireless config) as the home
    /// network, so nobody's devices have to re-join.
    Import {
        /// Read `uci -q show wireless` output from this file instead of running it.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Replace a home network that is already set.
        #[arg(long)]
        replace: bool,
    },
}

fn parse_security(s: &str) -> Result<Security, String> {
    match s {
        "wpa2-wpa3" | "wpa2_wpa3" | "sae-mixed" => Ok(Security::Wpa2Wpa3),
        "wpa3" | "sae" => Ok(Security::Wpa3),
        _ => Err(format!("{s:?}: expected wpa2-wpa3 or wpa3")),
    }
}

fn parse_bands(s: &str) -> Result<Bands, String> {
    match s {
        "both" => Ok(Bands::Both),
        "2g" => Ok(Bands::Only2g),
        "5g" => Ok(Bands::Only5g),
        _ => Err(format!("{s:?}: expected both, 2g or 5g")),
    }
}

/// The passphrase as typed: one line, its line ending dropped.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).next().unwrap_or("").to_owned()
}

fn shown_text(w: &WifiShown) -> String {
    if w.networks.is_empty() {
        return "no wifi networks: the routers' own wireless config is left alone\n  set one: trellis wifi set home --ssid NAME --passphrase-file FILE (or trellis wifi import)\n".into();
    }
    let mut out = String::new();
    for n in &w.networks {
        let bands = match n.bands {
            Bands::Both => "2.4 + 5 GHz",
            Bands::Only2g => "2.4 GHz",
            Bands::Only5g => "5 GHz",
        };
        let security = match n.security {
            Security::Wpa2Wpa3 => "WPA2/WPA3",
            Security::Wpa3 => "WPA3",
        };
        out.push_str(&format!(
            "{:<6} {:?}  {security}, {bands}, passphrase {}\n",
            n.kind.to_string(),
            n.ssid,
            n.passphrase
        ));
    }
    if let Some(md) = &w.mobility_domain {
        out.push_str(&format!("fast roaming: mobility domain {md}\n"));
    }
    out
}

fn changed_text(what: &str, c: &WifiChanged) -> String {
    if c.changed {
        format!(
            "{what} (config version {}); every router applies it\n",
            c.config_version
        )
    } else {
        format!("{what}: no change\n")
    }
}

pub async fn run(cli: &Cli, command: Option<&WifiCommand>) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    Ok(match command.unwrap_or(&WifiCommand::Show) {
        WifiCommand::Show => {
            let w: WifiShown = call(cli, Method::GET, "/v1/admin/wifi", none).await?;
            show(cli, &w, shown_text)
        }
        WifiCommand::Set {
            kind,
            ssid,
            passphrase_file,
            passphrase_stdin,
            security,
            bands,
        } => {
            let passphrase = match (passphrase_file, passphrase_stdin) {
                (Some(path), _) => Some(one_line(&std::fs::read_to_string(path).map_err(|e| {
                    bad(format!(
                        "cannot read the passphrase file {}: {e}",
                        path.display()
                    ))
                })?)),
                (None, true) => {
                    let mut text = String::new();
                    std::io::stdin()
                        .take(4096)
                        .read_to_string(&mut text)
                        .map_err(|e| {
                            bad(format!(
                                "cannot read the passphrase from standard input: {e}"
                            ))
                        })?;
                    Some(one_line(&text))
                }
                (None, false) => None,
            };
            let body = NetworkChange {
                ssid: ssid.clone(),
                passphrase,
                security: *security,
                bands: *bands,
            };
            let c: WifiChanged = call(
                cli,
                Method::PUT,
                &format!("/v1/admin/wifi/{kind}"),
                Some(&body),
            )
            .await?;
            show(cli, &c, |c| {
                changed_text(&format!("the {kind} network is {ssid:?}"), c)
            })
        }
        WifiCommand::Remove { kind } => {
            let c: WifiChanged =
                call(cli, Method::DELETE, &format!("/v1/admin/wifi/{kind}"), none).await?;
            show(cli, &c, |c| {
                changed_text(&format!("the {kind} network is removed"), c)
            })
        }
        WifiCommand::Import { from, replace } => {
            let text = match from {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?,
                None => uci_show_wireless()?,
            };
            let found = uci_wireless::import_home(&text).map_err(|e| bad(e.to_string()))?;
            if !replace {
                let w: WifiShown = call(cli, Method::GET, "/v1/admin/wifi", none).await?;
                if let Some(home) = w.networks.iter().find(|n| n.kind == NetworkKind::Home) {
                    return Err(bad(format!(
                        "the home network is already set ({:?}); add --replace to take this router's {:?} instead",
                        home.ssid,
                        found.ssid.as_str()
                    )));
                }
            }
            let body = NetworkChange {
                ssid: found.ssid.to_string(),
                passphrase: Some(found.passphrase.expose().to_owned()),
                security: Some(found.security),
                bands: Some(found.bands),
            };
            let c: WifiChanged = call(cli, Method::PUT, "/v1/admin/wifi/home", Some(&body)).await?;
            show(cli, &c, |c| {
                changed_text(
                    &format!(
                        "the home network is {:?}, with its key, from wireless.{}",
                        found.ssid.as_str(),
                        found.section
                    ),
                    c,
                )
            })
        }
    })
}

/// `uci -q show wireless` on this router, bounded.
fn uci_show_wireless() -> Result<String, ClientError> {
    let out = std::process::Command::new("uci")
        .args(["-q", "show", "wireless"])
        .output()
        .map_err(|e| {
            bad(format!(
                "cannot run `uci show wireless` ({e}); on a box without OpenWrt's uci, give its output with --from FILE"
            ))
        })?;
    if !out.status.success() {
        return Err(bad(
            "`uci show wireless` failed: this router has no /etc/config/wireless; set the network with `trellis wifi set home`",
        ));
    }
    if out.stdout.len() > uci_wireless::MAX_SHOW_BYTES {
        return Err(bad(uci_wireless::ImportError::TooLarge.to_string()));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| bad("`uci show wireless` printed text that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passphrase_is_the_first_line() {
        assert_eq!(one_line("correct horse\n"), "correct horse");
        assert_eq!(one_line("correct horse\r\nmore"), "correct horse");
        assert_eq!(one_line(" spaced "), " spaced ");
    }
}
