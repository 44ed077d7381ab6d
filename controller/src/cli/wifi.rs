//! `trellis wifi`: the home's wifi networks from the router's shell (a client of
//! `/v1/admin/wifi`); `trellis why-roam NAME` and `trellis devices NAME` (a client of
//! `/v1/admin/roaming/{device}`). A passphrase is read from a file or standard input, never from the
//! command line (other users see a command line in `ps`, shells keep it in their history).

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use hyper::Method;
use trellis_io::client::ClientError;
use trellis_proto::home_wifi::{Bands, NetworkKind, Security};

use trellis_proto::api::DeviceListing;

use crate::cli::{bad, call, show, Cli};
use crate::steering::{Counts, DeviceSteering, Record};
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
                None => uci_wireless::show_wireless().map_err(bad)?,
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

async fn steering_of(cli: &Cli, name: &str) -> Result<DeviceSteering, ClientError> {
    let none: Option<&()> = None;
    call(
        cli,
        Method::GET,
        &format!("/v1/admin/roaming/{}", crate::cli::query_value(name)),
        none,
    )
    .await
}

fn counts_line(c: &Counts) -> String {
    format!(
        "steered {} times: {} accepted, {} declined, {} ignored, {} failed; {} roams seen\n",
        c.steered, c.accepted, c.declined, c.ignored, c.failed, c.roamed
    )
}

/// `trellis why-roam NAME`: the last decision with its figures.
pub async fn why_roam(cli: &Cli, name: &str) -> Result<String, ClientError> {
    let s = steering_of(cli, name).await?;
    Ok(show(cli, &s, |s| {
        let mut out = match &s.last_decision {
            Some(d) => format!("{name} ({}): {}\n", s.mac, d.explain()),
            None => format!("{name} ({}): no decision yet\n", s.mac),
        };
        if let Some(steer) = s
            .last_steer
            .as_ref()
            .filter(|st| s.last_decision.as_ref() != Some(*st))
        {
            out.push_str(&format!(
                "last steer, {} ago: {}\n",
                crate::cli::ago(crate::ca::unix_now(), steer.at_unix),
                steer.explain()
            ));
        }
        out.push_str(&counts_line(&s.counts));
        out
    }))
}

/// `trellis devices NAME`: where the device is, and its steering history.
pub async fn device(cli: &Cli, name: &str) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let all: Vec<DeviceListing> = call(cli, Method::GET, "/v1/admin/devices", none).await?;
    let listing = all
        .into_iter()
        .find(|d| d.name.eq_ignore_ascii_case(name) || d.mac.eq_ignore_ascii_case(name))
        .ok_or_else(|| bad(format!("no device {name:?}: see `trellis devices`")))?;
    let steering = match steering_of(cli, &listing.mac).await {
        Ok(s) => Some(s),
        Err(ClientError::Status { status, .. }) if status == hyper::StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let both = serde_json::json!({ "device": listing, "steering": steering });
    let now = crate::ca::unix_now();
    Ok(show(cli, &both, |_| {
        let mut out = format!(
            "{} ({})  group {}  behind {}{}\n",
            listing.name,
            listing.mac,
            listing.group.as_deref().unwrap_or("(default)"),
            listing.router.as_deref().unwrap_or("not seen"),
            listing
                .signal_dbm
                .map(|s| format!(", {s} dBm"))
                .unwrap_or_default()
        );
        match &steering {
            None => out.push_str("no wifi roams or steers recorded\n"),
            Some(s) => {
                out.push_str(&counts_line(&s.counts));
                for r in s.history.iter().rev() {
                    out.push_str(&format!("  {}\n", record_line(now, r)));
                }
            }
        }
        out
    }))
}

fn record_line(now: u64, r: &Record) -> String {
    let ago = |t: u64| crate::cli::ago(now, t);
    match r {
        Record::Steered {
            at_unix,
            id,
            from,
            to,
            reason,
        } => {
            format!(
                "{} ago  asked to move {from} → {to} (#{id}): {reason}",
                ago(*at_unix)
            )
        }
        Record::Answered {
            at_unix,
            id,
            result,
            status_code,
        } => format!(
            "{} ago  answered #{id}: {result:?}{}",
            ago(*at_unix),
            status_code
                .map(|c| format!(" (status {c})"))
                .unwrap_or_default()
        ),
        Record::Roamed {
            at_unix,
            from,
            from_band,
            to,
            to_band,
            asked,
        } => format!(
            "{} ago  roamed {from} ({from_band}) → {to} ({to_band}){}",
            ago(*at_unix),
            if *asked { ", as asked" } else { " by itself" }
        ),
    }
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
