//! The OpenWrt backend: the agent's own `wifi-iface` sections in `/etc/config/wireless`
//! (named `trellis_<network>_<radio>`; the person's sections are never read for writing,
//! changed or deleted), written with `uci batch` and brought up with `wifi reload` only when
//! something changed; afterwards ubus `hostapd.<ifname>` for clients, neighbour lists and
//! BSS transition requests.
//!
//! The options are the ones OpenWrt's own scripts read, checked against both generations:
//! - 24.10: package/network/services/hostapd/files/hostapd.sh, `hostapd_set_bss_options`
//!   (and `hostapd_common_add_bss_config` for the option names and types);
//! - 25.12: package/network/config/wifi-scripts/files-ucode/usr/share/ucode/wifi/ap.uc
//!   (`iface_setup`, `iface_auth_type`, `iface_rrm`, `iface_roaming`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use trellis_proto::home_wifi::{
    AccessPointReport, ApNeighbour, Band, HomeWifi, NetworkKind, Roaming, Security, SteerRequest,
    MAX_ACCESS_POINTS,
};
use trellis_proto::policy::MacAddr;

use super::plan::{self, PlannedAp, Radios, SECTION_PREFIX};
use super::{neighbours_of, ApError, Change, NeighbourReport, Station};

/// Most bytes read from one tool's output (a `uci show wireless` of a big router is a few
/// kB; `get_clients` of 128 clients tens of kB).
const MAX_TOOL_OUTPUT: usize = 1 << 20;

/// The programs the backend runs (their real paths on OpenWrt; stand-ins in tests).
#[derive(Debug, Clone)]
pub struct Tools {
    pub uci: PathBuf,
    pub wifi: PathBuf,
    pub ubus: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            uci: "/sbin/uci".into(),
            wifi: "/sbin/wifi".into(),
            ubus: "/bin/ubus".into(),
        }
    }
}

/// The OpenWrt backend.
pub struct OpenWrt {
    tools: Tools,
    /// The netifd network each kind's interfaces join (`lan` unless told).
    networks: BTreeMap<NetworkKind, String>,
    /// What the last apply planned: the interfaces ubus is asked about.
    current: Vec<PlannedAp>,
    radios: Radios,
}

/// One uci option value: a single value or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UciValue {
    One(String),
    List(Vec<String>),
}

/// A section as `uci show` printed it: its type and options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UciSection {
    pub kind: String,
    pub options: BTreeMap<String, UciValue>,
}

impl OpenWrt {
    pub fn new(tools: Tools) -> Self {
        Self {
            tools,
            networks: BTreeMap::new(),
            current: Vec::new(),
            radios: Radios::default(),
        }
    }

    /// The netifd network (e.g. `guest`) that `kind`'s access points bridge into.
    pub fn with_network(mut self, kind: NetworkKind, network: &str) -> Self {
        self.networks.insert(kind, network.to_string());
        self
    }

    fn network_of(&self, kind: NetworkKind) -> &str {
        self.networks
            .get(&kind)
            .map(String::as_str)
            .unwrap_or("lan")
    }

    pub async fn apply(&mut self, wifi: &HomeWifi, radios: &Radios) -> Result<Change, ApError> {
        let planned = plan::plan(wifi, radios)?;
        let shown = run(&self.tools.uci, &["-q", "show", "wireless"], None).await?;
        let existing = parse_show_ours(&shown);
        let mut desired = BTreeMap::new();
        for ap in &planned {
            // plan() checked that roaming is there whenever there is an access point.
            let roaming = wifi.roaming.as_ref().ok_or(ApError::NoRoaming)?;
            desired.insert(
                ap.section.clone(),
                section_options(ap, roaming, self.network_of(ap.network.kind))?,
            );
        }
        let ours: BTreeMap<&String, &UciSection> = existing
            .iter()
            .filter(|(name, _)| name.starts_with(SECTION_PREFIX))
            .collect();
        let same = ours.len() == desired.len()
            && desired.iter().all(|(name, want)| {
                ours.get(name)
                    .is_some_and(|have| have.kind == "wifi-iface" && &have.options == want)
            });
        self.current = planned.clone();
        self.radios = radios.clone();
        if same {
            return Ok(Change::Unchanged);
        }
        let stale: Vec<&str> = ours
            .keys()
            .filter(|n| !desired.contains_key(n.as_str()))
            .map(|n| n.as_str())
            .collect();
        let batch = batch(&stale, &desired);
        run(&self.tools.uci, &["batch"], Some(&batch)).await?;
        run(&self.tools.wifi, &["reload"], None).await?;
        Ok(Change::Applied(planned))
    }

    pub async fn stations(&mut self) -> Result<Vec<Station>, ApError> {
        let mut out = Vec::new();
        for ap in &self.current {
            let reply = self.ubus(&ap.ifname, "get_clients", "{}").await?;
            for (mac, c) in parse_clients(&reply)? {
                if out.len() >= trellis_proto::home_wifi::MAX_HEARD_CLIENTS {
                    break;
                }
                if !c.assoc {
                    continue;
                }
                out.push(Station {
                    mac,
                    interface: ap.ifname.clone(),
                    network: ap.network.kind,
                    band: ap.band,
                    signal_dbm: c.signal,
                    inactive_ms: None,
                });
            }
        }
        Ok(out)
    }

    pub async fn access_points(&mut self) -> Result<Vec<AccessPointReport>, ApError> {
        let mut out = Vec::new();
        for ap in self.current.iter().take(MAX_ACCESS_POINTS) {
            let reply = self.ubus(&ap.ifname, "rrm_nr_get_own", "{}").await?;
            let own = parse_nr_own(&reply)?;
            let radio = self.radios.0.get(ap.radio);
            out.push(AccessPointReport {
                network: ap.network.kind,
                interface: ap.ifname.clone(),
                bssid: own.bssid,
                band: ap.band,
                channel: radio.map(|r| r.channel).unwrap_or(0),
                freq_mhz: radio.map(|r| r.freq_mhz).unwrap_or(0),
                neighbour_report: Some(own.nr),
                ssid: Some(own.ssid),
                settings: Some(ap.settings.clone()),
            });
        }
        Ok(out)
    }

    pub async fn send_bss_transition(&mut self, req: &SteerRequest) -> Result<(), ApError> {
        if !self.current.iter().any(|a| a.ifname == req.interface) {
            return Err(ApError::UnknownInterface(req.interface.clone()));
        }
        // Checked here so a bad element is refused with a reason, not by hostapd's parser.
        NeighbourReport::parse_hex(&req.target_neighbour_report)?;
        let args = bss_transition_args(req);
        self.ubus(&req.interface, "bss_transition_request", &args.to_string())
            .await?;
        Ok(())
    }

    pub async fn set_neighbours(&mut self, neighbours: &[ApNeighbour]) -> Result<(), ApError> {
        for ap in self.current.clone() {
            let list = rrm_nr_set_args(&neighbours_of(neighbours, ap.network.kind));
            self.ubus(&ap.ifname, "rrm_nr_set", &list.to_string())
                .await?;
        }
        Ok(())
    }

    async fn ubus(&self, ifname: &str, method: &str, args: &str) -> Result<String, ApError> {
        let object = format!("hostapd.{ifname}");
        run(&self.tools.ubus, &["call", &object, method, args], None).await
    }
}

/// The options of one of the agent's sections: each as OpenWrt's scripts read it.
pub fn section_options(
    ap: &PlannedAp,
    roaming: &Roaming,
    network: &str,
) -> Result<BTreeMap<String, UciValue>, ApError> {
    let (r0kh, r1kh) = plan::key_holders(roaming)?;
    let one = |s: &str| UciValue::One(s.to_string());
    let mut o = BTreeMap::new();
    let mut set = |k: &str, v: UciValue| {
        o.insert(k.to_string(), v);
    };
    set("device", one(&ap.radio_name));
    set("mode", one("ap"));
    // netifd takes `ifname` as the interface's name (24.10 mac80211.sh mac80211_prepare_vif,
    // 25.12 wifi/iface.uc prepare): so ubus calls it hostapd.<ifname>.
    set("ifname", one(&ap.ifname));
    set("network", one(network));
    set("ssid", one(ap.network.ssid.as_str()));
    // `sae-mixed` and `sae` are parsed by wireless_vif_parse_encryption (24.10
    // netifd-wireless.sh) into auth_type psk-sae / sae; 25.12 wifi/iface.uc the same.
    set(
        "encryption",
        one(match ap.network.security {
            Security::Wpa2Wpa3 => "sae-mixed",
            Security::Wpa3 => "sae",
        }),
    );
    // hostapd.sh: 8..63 characters become wpa_passphrase (ap.uc: the same test).
    set("key", one(ap.network.passphrase.expose()));
    // 802.11r. hostapd.sh reads mobility_domain, ft_psk_generate_local, ft_over_ds only
    // when ieee80211r > 0; with ft_psk_generate_local 0 it reads pmk_r1_push and the r0kh
    // / r1kh lists, writing each with its commas turned into spaces. ap.uc iface_roaming
    // does the same (split(val, ',', 3)). FT-SAE cannot use ft_psk_generate_local (hostapd
    // generates local PMK-R1s only for FT-PSK), so the key-holder lists carry the home's key.
    set("ieee80211r", one("1"));
    set("mobility_domain", one(&roaming.mobility_domain.to_string()));
    set("ft_over_ds", one("0"));
    set("ft_psk_generate_local", one("0"));
    set("pmk_r1_push", one("1"));
    set("r0kh", UciValue::List(vec![r0kh]));
    set("r1kh", UciValue::List(vec![r1kh]));
    // 802.11k: hostapd.sh defaults rrm_neighbor_report from ieee80211k; ap.uc iface_rrm too.
    set("ieee80211k", one("1"));
    set("rrm_neighbor_report", one("1"));
    // 802.11v: hostapd.sh reads bss_transition and wnm_sleep_mode only under ieee80211v 1;
    // ap.uc reads bss_transition / wnm_sleep_mode directly. WNM sleep stays off (its key
    // reinstallation bug, CVE-2017-13087, is why OpenWrt defaults it off).
    set("ieee80211v", one("1"));
    set("bss_transition", one("1"));
    set("wnm_sleep_mode", one("0"));
    // hostapd.sh: isolate > 0 → ap_isolate; ap.uc the schema maps isolate → ap_isolate.
    let isolate = ap.network.kind == NetworkKind::Guest;
    set("isolate", one(if isolate { "1" } else { "0" }));
    set("disabled", one("0"));
    Ok(o)
}

/// Interfaces a radio is taken to host at once when nothing better is known (the
/// mac80211 drivers OpenWrt ships allow 4 to 16 APs per radio; `iw phy` is not read yet).
pub const DEFAULT_MAX_INTERFACES: u8 = 4;

/// The radios of `uci show wireless`: its `wifi-device` sections (`band` '2g'/'5g', or
/// the older `hwmode` '11a'/'11g'; `channel` a number or 'auto'), each with the person's
/// enabled `wifi-iface` sections on it counted.
pub fn radios_from_uci(text: &str) -> Radios {
    let sections = parse_show(text);
    let get = |s: &UciSection, k: &str| match s.options.get(k) {
        Some(UciValue::One(v)) => Some(v.clone()),
        _ => None,
    };
    let mut out = Vec::new();
    for (name, s) in &sections {
        if s.kind != "wifi-device" {
            continue;
        }
        let band = match (get(s, "band").as_deref(), get(s, "hwmode").as_deref()) {
            (Some("2g"), _) | (None, Some("11g" | "11b" | "11n")) => Band::G2,
            (Some("5g"), _) | (None, Some("11a")) => Band::G5,
            _ => continue, // 6 GHz, 60 GHz: not served yet
        };
        let channel: u8 = get(s, "channel").and_then(|c| c.parse().ok()).unwrap_or(0);
        let freq_mhz = match (band, channel) {
            (_, 0) => 0,
            (Band::G2, 14) => 2484,
            (Band::G2, c) => 2407 + 5 * c as u32,
            (Band::G5, c) => 5000 + 5 * c as u32,
        };
        let other = sections
            .iter()
            .filter(|(n, i)| {
                !n.starts_with(SECTION_PREFIX)
                    && i.kind == "wifi-iface"
                    && get(i, "device").as_deref() == Some(name.as_str())
                    && get(i, "disabled").as_deref() != Some("1")
            })
            .count();
        out.push(super::Radio {
            name: name.clone(),
            phy: name.clone(),
            band,
            channel,
            freq_mhz,
            max_interfaces: DEFAULT_MAX_INTERFACES,
            other_interfaces: other.min(u8::MAX as usize) as u8,
        });
    }
    Radios(out)
}

/// A value as `uci batch` reads it: single-quoted, a `'` written `'\''` (uci's
/// parse_str/parse_backslash, the shell's rule).
pub fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// The `uci batch` input: delete the agent's stale sections, then rewrite each of its
/// sections whole (delete and re-add, so an option dropped here is dropped there), commit.
pub fn batch(stale: &[&str], desired: &BTreeMap<String, BTreeMap<String, UciValue>>) -> String {
    let mut b = String::new();
    for name in stale {
        b.push_str(&format!("delete wireless.{name}\n"));
    }
    for (name, options) in desired {
        b.push_str(&format!("delete wireless.{name}\n"));
        b.push_str(&format!("set wireless.{name}=wifi-iface\n"));
        for (k, v) in options {
            match v {
                UciValue::One(v) => b.push_str(&format!("set wireless.{name}.{k}={}\n", quote(v))),
                UciValue::List(vs) => {
                    for v in vs {
                        b.push_str(&format!("add_list wireless.{name}.{k}={}\n", quote(v)));
                    }
                }
            }
        }
    }
    b.push_str("commit wireless\n");
    b
}

/// Reads `uci show wireless` (`wireless.sec=type`, `wireless.sec.opt='v'`, a list
/// `wireless.sec.opt='a' 'b'`). Lines it cannot read are skipped: they are the person's, not
/// the agent's to judge; bounded by the tool output's cap.
pub fn parse_show(text: &str) -> BTreeMap<String, UciSection> {
    let mut out: BTreeMap<String, UciSection> = BTreeMap::new();
    for line in text.lines() {
        let Some((path, value)) = line.split_once('=') else {
            continue;
        };
        let mut parts = path.splitn(3, '.');
        let (Some(_config), Some(section)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(values) = unquote_all(value) else {
            continue;
        };
        let entry = out.entry(section.to_string()).or_default();
        match parts.next() {
            None => entry.kind = values.into_iter().next().unwrap_or_default(),
            Some(option) => {
                let v = if values.len() == 1 {
                    UciValue::One(values.into_iter().next().unwrap_or_default())
                } else {
                    UciValue::List(values)
                };
                entry.options.insert(option.to_string(), v);
            }
        }
    }
    out
}

/// The words of a uci value: `'a' 'b'`, `'it'\''s'`, or a bare word (section types).
fn unquote_all(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return None,
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// `uci show` prints a one-item list like a single value; the agent's lists (r0kh, r1kh)
/// are read back as lists whatever their length.
fn normalise_lists(mut s: UciSection) -> UciSection {
    for k in ["r0kh", "r1kh"] {
        if let Some(UciValue::One(v)) = s.options.get(k).cloned() {
            s.options.insert(k.to_string(), UciValue::List(vec![v]));
        }
    }
    s
}

/// `parse_show`, with the agent's list options read as lists.
pub fn parse_show_ours(text: &str) -> BTreeMap<String, UciSection> {
    parse_show(text)
        .into_iter()
        .map(|(k, v)| (k, normalise_lists(v)))
        .collect()
}

/// One client of hostapd's ubus `get_clients` (OpenWrt's hostapd src/ap/ubus.c,
/// hostapd_bss_get_clients: flags as booleans, `signal` where the driver reports it).
#[derive(Debug, Clone, Deserialize)]
pub struct UbusClient {
    #[serde(default)]
    pub assoc: bool,
    #[serde(default)]
    pub signal: Option<i32>,
}

#[derive(Deserialize)]
struct UbusClients {
    #[serde(default)]
    clients: BTreeMap<String, UbusClient>,
}

pub fn parse_clients(reply: &str) -> Result<Vec<(MacAddr, UbusClient)>, ApError> {
    let c: UbusClients = serde_json::from_str(reply).map_err(|e| ApError::Tool {
        tool: "ubus get_clients".into(),
        detail: format!("unreadable reply: {e}"),
    })?;
    Ok(c.clients
        .into_iter()
        .filter_map(|(mac, c)| mac.parse().ok().map(|m| (m, c)))
        .collect())
}

/// `rrm_nr_get_own`: `{"value": [bssid, ssid, nr-hex]}`.
/// What hostapd says of one of its BSSes (ubus `rrm_nr_get_own`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnBss {
    pub bssid: MacAddr,
    pub ssid: String,
    /// Its neighbour report element, hex.
    pub nr: String,
}

pub fn parse_nr_own(reply: &str) -> Result<OwnBss, ApError> {
    let bad = |detail: String| ApError::Tool {
        tool: "ubus rrm_nr_get_own".into(),
        detail,
    };
    #[derive(Deserialize)]
    struct Own {
        value: (String, String, String),
    }
    let own: Own = serde_json::from_str(reply).map_err(|e| bad(format!("unreadable: {e}")))?;
    let mac = own
        .value
        .0
        .parse()
        .map_err(|_| bad("no BSSID in the reply".into()))?;
    NeighbourReport::parse_hex(&own.value.2)?;
    Ok(OwnBss {
        bssid: mac,
        ssid: own.value.1,
        nr: own.value.2,
    })
}

/// ubus `bss_transition_request` (hostapd src/ap/ubus.c bss_tr_policy: addr,
/// disassociation_imminent, disassociation_timer, validity_period, neighbors, abridged,
/// dialog_token).
pub fn bss_transition_args(req: &SteerRequest) -> serde_json::Value {
    serde_json::json!({
        "addr": req.station.to_string(),
        "disassociation_imminent": true,
        "disassociation_timer": req.disassoc_timer_tbtt,
        "validity_period": 255,
        "neighbors": [req.target_neighbour_report],
        "abridged": true,
        "dialog_token": (req.id % 255) + 1,
    })
}

/// ubus `rrm_nr_set`: `{"list": [[bssid, ssid, nr-hex], ...]}` (hostapd ubus.c
/// hostapd_rrm_nr_set; an empty list clears it).
pub fn rrm_nr_set_args(neighbours: &[&ApNeighbour]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = neighbours
        .iter()
        .map(|n| serde_json::json!([n.bssid.to_string(), n.ssid.as_str(), n.neighbour_report]))
        .collect();
    serde_json::json!({ "list": list })
}

async fn run(
    tool: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ApError> {
    let name = tool
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = format!("{name} {}", args.first().copied().unwrap_or(""));
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ApError::Spawn {
        tool: name.clone(),
        source,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| ApError::Spawn {
                tool: name.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| ApError::Spawn {
            tool: name.clone(),
            source,
        })?;
    if !out.status.success() {
        // stderr never holds the key: uci and ubus print their error names, not values.
        let err: String = String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(200)
            .collect();
        return Err(ApError::Tool {
            tool: label,
            detail: format!("{} {}", out.status, err.trim()),
        });
    }
    if out.stdout.len() > MAX_TOOL_OUTPUT {
        return Err(ApError::Tool {
            tool: label,
            detail: format!(
                "answered {} bytes, more than a router's worth",
                out.stdout.len()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
#[path = "openwrt_tests.rs"]
mod tests;
