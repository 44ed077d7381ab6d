//! The backend without netifd (the VM lab, a plain Linux box): one generated `hostapd.conf`
//! per radio (the first access point as `interface=`, the others as `bss=`), written 0600
//! and only when it changed, hostapd run in the foreground and supervised (restarted after
//! a crash with a bounded backoff), and its control sockets for everything afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trellis_io::files::Medium;
use trellis_proto::home_wifi::{
    AccessPointReport, ApNeighbour, Band, HomeWifi, NetworkKind, Roaming, SteerRequest,
    MAX_ACCESS_POINTS, MAX_HEARD_CLIENTS,
};
use trellis_proto::policy::MacAddr;

use super::ctrl::{parse_show_neighbor, parse_status, Ctrl};
use super::plan::{self, PlannedAp, Radio, Radios};
use super::{hex, neighbours_of, ApError, Change, NeighbourReport, Station};

/// Where and how the backend runs hostapd.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hostapd: PathBuf,
    pub iw: PathBuf,
    /// The generated configs (`<dir>/hostapd-<radio>.conf`, 0600).
    pub config_dir: PathBuf,
    /// hostapd's `ctrl_interface`: one socket per interface.
    pub ctrl_dir: PathBuf,
    /// This router's name, for the FT NAS identifiers.
    pub node: String,
    /// The bridge each kind's access points join, if any (`bridge=`).
    pub bridges: BTreeMap<NetworkKind, String>,
    /// Where the phys' permanent addresses are read (`<dir>/<phy>/macaddress`).
    pub sys_ieee80211: PathBuf,
    pub backoff: Backoff,
}

impl Settings {
    pub fn new(node: &str, config_dir: PathBuf) -> Self {
        Self {
            hostapd: "hostapd".into(),
            iw: "iw".into(),
            config_dir,
            ctrl_dir: "/var/run/hostapd".into(),
            node: node.to_string(),
            bridges: BTreeMap::new(),
            sys_ieee80211: "/sys/class/ieee80211".into(),
            backoff: Backoff::default(),
        }
    }
}

/// How long to wait before restarting a hostapd that exited: doubling from `first` up to
/// `max`, back to `first` after it ran `healthy` without exiting.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub healthy: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            healthy: Duration::from_secs(60),
        }
    }
}

/// One radio's hostapd, kept running until dropped.
struct Supervisor {
    task: tokio::task::JoinHandle<()>,
    starts: Arc<AtomicU32>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Dropping the task drops its child, which was spawned kill_on_drop.
        self.task.abort();
    }
}

impl Supervisor {
    fn start(settings: &Settings, config: PathBuf, first_if: String, phy: String) -> Self {
        let starts = Arc::new(AtomicU32::new(0));
        let counter = starts.clone();
        let s = settings.clone();
        let task = tokio::spawn(async move {
            let mut wait = s.backoff.first;
            loop {
                if let Err(e) = ensure_interface(&s.iw, &phy, &first_if).await {
                    tracing::warn!(error = %e, interface = %first_if, "could not create the access point interface");
                }
                counter.fetch_add(1, Ordering::Relaxed);
                let started = tokio::time::Instant::now();
                let status = tokio::process::Command::new(&s.hostapd)
                    .arg(&config)
                    .stdin(std::process::Stdio::null())
                    // Without -d hostapd prints only what it set up and its errors (never
                    // a key): into the agent's own log.
                    .stdout(std::process::Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn();
                match status {
                    Ok(mut child) => {
                        let st = child.wait().await;
                        tracing::warn!(?st, config = %config.display(), "hostapd exited; restarting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not start hostapd");
                    }
                }
                if started.elapsed() >= s.backoff.healthy {
                    wait = s.backoff.first;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(s.backoff.max);
            }
        });
        Self { task, starts }
    }
}

/// hostapd (nl80211) needs the first interface of a radio to exist; it creates the `bss=`
/// ones itself. `iw phy <phy> interface add <if> type managed`, as netifd's mac80211.sh does.
async fn ensure_interface(iw: &Path, phy: &str, ifname: &str) -> Result<(), ApError> {
    if Path::new("/sys/class/net").join(ifname).exists() {
        return Ok(());
    }
    let out = tokio::process::Command::new(iw)
        .args(["phy", phy, "interface", "add", ifname, "type", "managed"])
        .output()
        .await
        .map_err(|source| ApError::Spawn {
            tool: "iw".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(ApError::Tool {
            tool: "iw interface add".into(),
            detail: String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(200)
                .collect(),
        });
    }
    Ok(())
}

/// The hostapd backend.
pub struct Hostapd {
    settings: Settings,
    current: Vec<PlannedAp>,
    radios: Radios,
    running: BTreeMap<String, Supervisor>,
    /// Neighbours set per interface, to remove the ones no longer listed.
    neighbours: BTreeMap<String, BTreeSet<MacAddr>>,
}

impl Hostapd {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            current: Vec::new(),
            radios: Radios::default(),
            running: BTreeMap::new(),
            neighbours: BTreeMap::new(),
        }
    }

    /// How many times the radio's hostapd was started (supervision, for tests and reports).
    pub fn starts(&self, radio: &str) -> u32 {
        self.running
            .get(radio)
            .map(|s| s.starts.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn config_path(&self, radio: &str) -> PathBuf {
        self.settings
            .config_dir
            .join(format!("hostapd-{radio}.conf"))
    }

    async fn ctrl(&self, ifname: &str) -> Result<Ctrl, ApError> {
        Ctrl::connect(&self.settings.ctrl_dir.join(ifname)).await
    }

    pub async fn apply(&mut self, wifi: &HomeWifi, radios: &Radios) -> Result<Change, ApError> {
        let planned = plan::plan(wifi, radios)?;
        let mut configs = BTreeMap::new();
        for (i, radio) in radios.0.iter().enumerate() {
            let aps: Vec<&PlannedAp> = planned.iter().filter(|a| a.radio == i).collect();
            if aps.is_empty() {
                continue;
            }
            let roaming = wifi.roaming.as_ref().ok_or(ApError::NoRoaming)?;
            let base = read_phy_mac(&self.settings.sys_ieee80211, &radio.phy);
            configs.insert(
                radio.name.clone(),
                (
                    radio.clone(),
                    aps[0].ifname.clone(),
                    render(radio, &aps, roaming, &self.settings, base)?,
                ),
            );
        }
        let mut changed = false;
        // Radios with nothing to serve any more: stop and forget.
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|r| !configs.contains_key(*r))
            .cloned()
            .collect();
        for r in gone {
            self.running.remove(&r);
            let _ = std::fs::remove_file(self.config_path(&r));
            changed = true;
        }
        for (name, (radio, first_if, text)) in configs {
            let path = self.config_path(&name);
            let same = std::fs::read_to_string(&path).is_ok_and(|t| t == text);
            if same && self.running.contains_key(&name) {
                continue;
            }
            write_secret(&path, &text)?;
            // A new config: hostapd restarted on it (a reload would keep old BSSes).
            self.running.remove(&name);
            self.running.insert(
                name,
                Supervisor::start(&self.settings, path, first_if, radio.phy.clone()),
            );
            changed = true;
        }
        self.current = planned.clone();
        self.radios = radios.clone();
        Ok(if changed {
            Change::Applied(planned)
        } else {
            Change::Unchanged
        })
    }

    pub async fn stations(&mut self) -> Result<Vec<Station>, ApError> {
        let mut out = Vec::new();
        for ap in &self.current {
            let Ok(ctrl) = self.ctrl(&ap.ifname).await else {
                continue; // not up yet: no stations there
            };
            let left = MAX_HEARD_CLIENTS.saturating_sub(out.len());
            for sta in ctrl.stations(left).await? {
                if !sta.associated() {
                    continue;
                }
                out.push(Station {
                    mac: sta.mac,
                    interface: ap.ifname.clone(),
                    network: ap.network.kind,
                    band: ap.band,
                    signal_dbm: sta.signal_dbm(),
                    inactive_ms: sta.inactive_ms(),
                });
            }
        }
        Ok(out)
    }

    pub async fn access_points(&mut self) -> Result<Vec<AccessPointReport>, ApError> {
        let mut out = Vec::new();
        for ap in self.current.iter().take(MAX_ACCESS_POINTS) {
            let Ok(ctrl) = self.ctrl(&ap.ifname).await else {
                continue;
            };
            let status = parse_status(&ctrl.request("STATUS").await?);
            // bss[i]=<ifname>, bssid[i]=<mac>: this interface's index.
            let Some(index) = (0..8).find(|i| status.get(&format!("bss[{i}]")) == Some(&ap.ifname))
            else {
                continue;
            };
            let Some(bssid) = status
                .get(&format!("bssid[{index}]"))
                .and_then(|m| m.parse::<MacAddr>().ok())
            else {
                continue;
            };
            let nr = parse_show_neighbor(&ctrl.request("SHOW_NEIGHBOR").await?, bssid);
            out.push(AccessPointReport {
                network: ap.network.kind,
                interface: ap.ifname.clone(),
                bssid,
                band: ap.band,
                channel: status
                    .get("channel")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
                freq_mhz: status.get("freq").and_then(|c| c.parse().ok()).unwrap_or(0),
                neighbour_report: nr,
                ssid: status.get(&format!("ssid[{index}]")).cloned(),
                settings: Some(ap.settings.clone()),
            });
        }
        Ok(out)
    }

    pub async fn send_bss_transition(&mut self, req: &SteerRequest) -> Result<(), ApError> {
        if !self.current.iter().any(|a| a.ifname == req.interface) {
            return Err(ApError::UnknownInterface(req.interface.clone()));
        }
        let nr = NeighbourReport::parse_hex(&req.target_neighbour_report)?;
        self.ctrl(&req.interface)
            .await?
            .ok(&bss_tm_req(req, &nr))
            .await
    }

    pub async fn set_neighbours(&mut self, neighbours: &[ApNeighbour]) -> Result<(), ApError> {
        for ap in self.current.clone() {
            let Ok(ctrl) = self.ctrl(&ap.ifname).await else {
                continue;
            };
            let list = neighbours_of(neighbours, ap.network.kind);
            let now: BTreeSet<MacAddr> = list.iter().map(|n| n.bssid).collect();
            let before = self.neighbours.remove(&ap.ifname).unwrap_or_default();
            for old in before.difference(&now) {
                ctrl.ok(&format!("REMOVE_NEIGHBOR {old}")).await?;
            }
            for n in &list {
                NeighbourReport::parse_hex(&n.neighbour_report)?;
                ctrl.ok(&set_neighbor(n)).await?;
            }
            self.neighbours.insert(ap.ifname.clone(), now);
        }
        Ok(())
    }
}

/// `BSS_TM_REQ` (hostapd ctrl_iface.c hostapd_ctrl_iface_bss_tm_req): disassociation
/// imminent with the controller's timer, the target as the one preferred candidate
/// (preference subelement 3, value 255).
pub fn bss_tm_req(req: &SteerRequest, target: &NeighbourReport) -> String {
    let mut cand = target.clone();
    cand.subelements.extend_from_slice(&[3, 1, 255]);
    format!(
        "BSS_TM_REQ {} disassoc_imminent=1 disassoc_timer={} valid_int=255 pref=1 abridged=1 \
         dialog_token={} neighbor={}",
        req.station,
        req.disassoc_timer_tbtt,
        (req.id % 255) + 1,
        cand.to_bss_tm_candidate()
    )
}

/// `SET_NEIGHBOR <bssid> ssid=<hex> nr=<hex>` (ctrl_iface.c hostapd_ctrl_iface_set_neighbor:
/// an unquoted ssid is hex, wpa_config_parse_string).
pub fn set_neighbor(n: &ApNeighbour) -> String {
    format!(
        "SET_NEIGHBOR {} ssid={} nr={}",
        n.bssid,
        hex(n.ssid.as_str().as_bytes()),
        n.neighbour_report.to_ascii_lowercase()
    )
}

fn read_phy_mac(sys: &Path, phy: &str) -> Option<MacAddr> {
    std::fs::read_to_string(sys.join(phy).join("macaddress"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A second BSS's address: the phy's with the locally administered bit and the index in the
/// last octet (each BSS of a radio needs its own).
fn bss_address(base: MacAddr, index: usize) -> MacAddr {
    let mut m = base.0;
    if index > 0 {
        m[0] |= 0x02;
        m[5] = m[5].wrapping_add(index as u8);
    }
    MacAddr(m)
}

/// The hostapd.conf of one radio. Every option is hostapd's own (hostapd/hostapd.conf).
pub fn render(
    radio: &Radio,
    aps: &[&PlannedAp],
    roaming: &Roaming,
    settings: &Settings,
    base: Option<MacAddr>,
) -> Result<String, ApError> {
    let (r0kh, r1kh) = plan::key_holders(roaming)?;
    let mut c = String::new();
    let mut line = |k: &str, v: &str| {
        c.push_str(k);
        c.push('=');
        c.push_str(v);
        c.push('\n');
    };
    line(
        "# Written by trellis-agent (the home's access points on this radio); radio",
        &format!("{} ({})", radio.name, radio.phy),
    );
    line("driver", "nl80211");
    line("ctrl_interface", &settings.ctrl_dir.display().to_string());
    line("hw_mode", if radio.band == Band::G5 { "a" } else { "g" });
    line("channel", &radio.channel.to_string());
    line("ieee80211n", "1");
    for (i, ap) in aps.iter().enumerate() {
        let n = &ap.network;
        line(if i == 0 { "interface" } else { "bss" }, &ap.ifname);
        let bssid = base.map(|b| bss_address(b, i));
        if let (Some(b), true) = (bssid, i > 0) {
            line("bssid", &b.to_string());
        }
        if let Some(br) = settings.bridges.get(&n.kind) {
            line("bridge", br);
        }
        // Hex, so no byte of a name can end the line.
        line("ssid2", &hex(n.ssid.as_str().as_bytes()));
        line("utf8_ssid", "1");
        line("wmm_enabled", "1");
        line("wpa", "2");
        line("wpa_key_mgmt", plan::key_mgmt(n.security));
        line("rsn_pairwise", "CCMP");
        line("wpa_passphrase", n.passphrase.expose());
        line(
            "ieee80211w",
            match n.security {
                trellis_proto::home_wifi::Security::Wpa2Wpa3 => "1",
                trellis_proto::home_wifi::Security::Wpa3 => "2",
            },
        );
        line("sae_require_mfp", "1");
        line("sae_pwe", "2");
        // 802.11r: one mobility domain per home; the key holders carry the home's key
        // (FT-SAE needs them: ft_psk_generate_local covers FT-PSK only).
        line("mobility_domain", &roaming.mobility_domain.to_string());
        let nas = match bssid {
            Some(b) => hex(&b.0),
            None => format!("{}.{}", ap.ifname, settings.node)
                .chars()
                .take(48)
                .collect(),
        };
        line("nas_identifier", &nas);
        line("ft_over_ds", "0");
        line("ft_psk_generate_local", "0");
        line("pmk_r1_push", "1");
        line("reassociation_deadline", "1000");
        line("r0kh", &r0kh.replace(',', " "));
        line("r1kh", &r1kh.replace(',', " "));
        // 802.11k and v.
        line("rrm_neighbor_report", "1");
        line("rrm_beacon_report", "1");
        line("bss_transition", "1");
        line("wnm_sleep_mode", "0");
        if n.kind == NetworkKind::Guest {
            line("ap_isolate", "1");
        }
    }
    Ok(c)
}

/// Writes a file holding a secret: 0600 from its creation, replaced atomically.
fn write_secret(path: &Path, text: &str) -> Result<(), ApError> {
    let err = |source| ApError::File {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    trellis_io::files::replace(path, text.as_bytes(), 0o600, Medium::Ram).map_err(err)?;
    Ok(())
}

#[cfg(test)]
#[path = "hostapd_tests.rs"]
mod tests;
