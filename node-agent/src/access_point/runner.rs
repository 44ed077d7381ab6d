//! What the running agent holds of its access points: the backend, this router's radios,
//! what was last applied (so a snapshot that did not change the wifi changes nothing), and
//! the bounded telemetry that goes to the controller (access points, heard clients, steering
//! outcomes). The agent's config watch and telemetry call in here; nothing else does.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use trellis_proto::api::SeenDevice;
use trellis_proto::home_wifi::{
    AccessPointReport, ApNeighbour, Band, HeardClient, HomeWifi, NetworkKind, SteerOutcome,
    SteerRequest, SteerResult, MAX_ACCESS_POINTS, MAX_HEARD_CLIENTS, MAX_STEER_OUTCOMES,
};
use trellis_proto::policy::MacAddr;

use super::{ApError, Backend, Change, Radios};

/// The agent's access points.
pub struct AccessPoints {
    backend: tokio::sync::Mutex<Backend>,
    radios: Radios,
    /// The settings last applied without an error.
    applied: Mutex<Option<HomeWifi>>,
    /// `(interface, network, band)` of every access point running: what a station's
    /// interface means.
    interfaces: Mutex<Vec<(String, NetworkKind, Band)>>,
    /// This router's own BSSIDs, never put in its own neighbour lists.
    own_bssids: Mutex<BTreeSet<MacAddr>>,
    /// The neighbour list last given, to give it again only on change.
    neighbours: Mutex<Option<Vec<ApNeighbour>>>,
    outcomes: Mutex<VecDeque<SteerOutcome>>,
    /// Steering request ids already handled (the answer repeats until the next decision).
    steered: Mutex<VecDeque<u64>>,
}

impl AccessPoints {
    pub fn new(backend: Backend, radios: Radios) -> Self {
        Self {
            backend: tokio::sync::Mutex::new(backend),
            radios,
            applied: Mutex::new(None),
            interfaces: Mutex::new(Vec::new()),
            own_bssids: Mutex::new(BTreeSet::new()),
            neighbours: Mutex::new(None),
            outcomes: Mutex::new(VecDeque::new()),
            steered: Mutex::new(VecDeque::new()),
        }
    }

    /// Applies the home's wifi when it differs from what was last applied. On an error the
    /// access points stay as they were, and the error says what to change.
    pub async fn apply(&self, wifi: &HomeWifi) -> Result<bool, ApError> {
        if lock(&self.applied).as_ref() == Some(wifi) {
            return Ok(false);
        }
        let mut backend = self.backend.lock().await;
        let change = backend.apply(wifi, &self.radios).await?;
        if let Change::Applied(aps) = &change {
            *lock(&self.interfaces) = aps
                .iter()
                .map(|a| (a.ifname.clone(), a.network.kind, a.band))
                .collect();
            // New access points: their neighbour lists are given again.
            *lock(&self.neighbours) = None;
        } else if lock(&self.interfaces).is_empty() {
            // Unchanged since before this agent started (e.g. OpenWrt kept the sections).
            if let Ok(aps) = super::plan(wifi, &self.radios) {
                *lock(&self.interfaces) = aps
                    .iter()
                    .map(|a| (a.ifname.clone(), a.network.kind, a.band))
                    .collect();
            }
        }
        *lock(&self.applied) = Some(wifi.clone());
        tracing::info!(
            networks = wifi.networks.len(),
            changed = matches!(change, Change::Applied(_)),
            "home wifi applied"
        );
        Ok(matches!(change, Change::Applied(_)))
    }

    /// Fills in the network and band of the devices associated with one of the agent's
    /// access points (the network a device joined decides its group first).
    pub fn annotate(&self, devices: &mut [SeenDevice]) {
        let interfaces = lock(&self.interfaces);
        let mut joined = Vec::new();
        for d in devices {
            let Some(w) = d.wifi.as_mut() else { continue };
            if let Some((_, kind, band)) = interfaces.iter().find(|(i, _, _)| *i == w.interface) {
                w.network = Some(*kind);
                w.band = Some(*band);
                if let Ok(mac) = d.mac.parse::<MacAddr>() {
                    joined.push((mac, *kind));
                }
            }
        }
        super::joined::set(joined);
    }

    /// How many radios the access points may use (a router without radios reports 0).
    pub fn radio_count(&self) -> u8 {
        u8::try_from(self.radios.0.len()).unwrap_or(u8::MAX)
    }

    /// The network of the access point interface `ifname`, if it is one of the agent's.
    pub fn network_of(&self, ifname: &str) -> Option<NetworkKind> {
        lock(&self.interfaces)
            .iter()
            .find(|(i, _, _)| i == ifname)
            .map(|(_, k, _)| *k)
    }

    /// The telemetry: access points, the clients heard, and the steering outcomes since the
    /// last call (each bounded by its `MAX_` constant).
    pub async fn telemetry(&self) -> (Vec<AccessPointReport>, Vec<HeardClient>, Vec<SteerOutcome>) {
        let mut backend = self.backend.lock().await;
        let mut aps = backend.access_points().await.unwrap_or_else(|e| {
            tracing::debug!("access points not read: {e}");
            Vec::new()
        });
        aps.truncate(MAX_ACCESS_POINTS);
        *lock(&self.own_bssids) = aps.iter().map(|a| a.bssid).collect();
        let mut heard: Vec<HeardClient> = backend
            .stations()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                Some(HeardClient {
                    mac: s.mac,
                    band: s.band,
                    signal_dbm: s.signal_dbm?,
                    age_ms: s.inactive_ms.unwrap_or(0),
                })
            })
            .collect();
        heard.truncate(MAX_HEARD_CLIENTS);
        let outcomes: Vec<SteerOutcome> = lock(&self.outcomes).drain(..).collect();
        (aps, heard, outcomes)
    }

    /// What the controller's telemetry answer asks: neighbour lists (given again only when
    /// they change) and steering requests (each id sent once).
    pub async fn answer(&self, neighbours: &[ApNeighbour], steer: &[SteerRequest]) {
        let own = lock(&self.own_bssids).clone();
        let list: Vec<ApNeighbour> = neighbours
            .iter()
            .filter(|n| !own.contains(&n.bssid))
            .cloned()
            .collect();
        let mut backend = self.backend.lock().await;
        if lock(&self.neighbours).as_ref() != Some(&list) {
            match backend.set_neighbours(&list).await {
                Ok(()) => *lock(&self.neighbours) = Some(list),
                Err(e) => tracing::warn!("neighbour lists not set: {e}"),
            }
        }
        for req in steer {
            {
                let mut seen = lock(&self.steered);
                if seen.contains(&req.id) {
                    continue;
                }
                if seen.len() >= MAX_STEER_OUTCOMES {
                    seen.pop_front();
                }
                seen.push_back(req.id);
            }
            if let Err(e) = backend.send_bss_transition(req).await {
                tracing::info!(station = %req.station, "steering request not sent: {e}");
                self.outcome(SteerOutcome {
                    id: req.id,
                    station: req.station,
                    result: SteerResult::Failed,
                    status_code: None,
                });
            }
        }
    }

    fn outcome(&self, o: SteerOutcome) {
        let mut q = lock(&self.outcomes);
        if q.len() >= MAX_STEER_OUTCOMES {
            q.pop_front();
        }
        q.push_back(o);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which backend `trellis-agent run --access-points` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// OpenWrt when `uci` and `wifi` are there, otherwise none.
    Auto,
    OpenWrt,
    Hostapd,
    Off,
}

/// How the agent's access points are set up (the `run` command's flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: BackendKind,
    /// This router's radios as JSON ([`Radios`]); the hostapd backend needs it, OpenWrt
    /// reads its `wifi-device` sections when it is not given.
    pub radios_file: Option<std::path::PathBuf>,
    pub node: String,
    /// The bridge the hostapd backend's access points join.
    pub bridge: Option<String>,
    pub config_dir: std::path::PathBuf,
    /// hostapd's `ctrl_interface`.
    pub ctrl_dir: std::path::PathBuf,
}

/// The access points `opts` ask for, or `None` when the agent runs none.
pub async fn build(opts: &Options) -> anyhow::Result<Option<AccessPoints>> {
    use anyhow::Context;
    let tools = super::openwrt::Tools::default();
    let kind = match opts.backend {
        BackendKind::Auto if tools.uci.exists() && tools.wifi.exists() => BackendKind::OpenWrt,
        BackendKind::Auto => BackendKind::Off,
        k => k,
    };
    let radios_from_file = || -> anyhow::Result<Option<Radios>> {
        let Some(p) = &opts.radios_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a radio list (JSON: [{{\"name\":\"radio0\",\"phy\":\"phy0\",\"band\":\"2g\",...}}])",
                p.display()
            )
        })?))
    };
    match kind {
        BackendKind::Off | BackendKind::Auto => Ok(None),
        BackendKind::OpenWrt => {
            let radios = match radios_from_file()? {
                Some(r) => r,
                None => {
                    let out = tokio::process::Command::new(&tools.uci)
                        .args(["-q", "show", "wireless"])
                        .output()
                        .await
                        .context("uci show wireless")?;
                    super::openwrt::radios_from_uci(&String::from_utf8_lossy(&out.stdout))
                }
            };
            Ok(Some(AccessPoints::new(
                Backend::OpenWrt(super::openwrt::OpenWrt::new(tools)),
                radios,
            )))
        }
        BackendKind::Hostapd => {
            let radios = radios_from_file()?
                .context("the hostapd backend needs this router's radios: --wifi-radios FILE")?;
            let mut s = super::hostapd::Settings::new(&opts.node, opts.config_dir.clone());
            s.ctrl_dir = opts.ctrl_dir.clone();
            if let Some(br) = &opts.bridge {
                for k in NetworkKind::ALL {
                    s.bridges.insert(k, br.clone());
                }
            }
            Ok(Some(AccessPoints::new(
                Backend::Hostapd(super::hostapd::Hostapd::new(s)),
                radios,
            )))
        }
    }
}

/// `trellis-agent run`'s access points: built from its flags and handed to the agent.
pub async fn start(
    agent: &crate::control::Agent,
    args: &crate::cli::RunArgs,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let opts = Options {
        backend: args.access_points,
        radios_file: args.wifi_radios.clone(),
        node: agent.node.identity.to_string(),
        bridge: args.wifi_bridge.clone(),
        config_dir: args.wifi_config_dir.clone(),
        ctrl_dir: args.wifi_ctrl_dir.clone(),
    };
    let Some(aps) = build(&opts).await? else {
        return Ok(());
    };
    let wifi = match &args.wifi_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            let w: HomeWifi = serde_json::from_str(&text)
                .with_context(|| format!("{}: not the home's wifi settings", p.display()))?;
            w.validate()?;
            Some(w)
        }
        None => None,
    };
    agent
        .set_access_points(std::sync::Arc::new(aps), wifi)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_point::hostapd::{Hostapd, Settings};
    use crate::access_point::plan::tests::{home_wifi, radios};
    use trellis_proto::api::WifiAssociation;
    use trellis_proto::identity::NodeName;

    fn runner(dir: &std::path::Path) -> AccessPoints {
        let mut s = Settings::new("attic", dir.join("conf"));
        s.hostapd = "true".into();
        s.iw = "true".into();
        s.ctrl_dir = dir.join("ctrl");
        AccessPoints::new(
            Backend::Hostapd(Hostapd::new(s)),
            Radios(vec![radios(8).0[0].clone()]),
        )
    }

    #[tokio::test]
    async fn a_snapshot_with_the_same_wifi_changes_nothing_and_devices_learn_their_network() {
        let dir = tempfile::tempdir().unwrap();
        let aps = runner(dir.path());
        let w = home_wifi(&[NetworkKind::Home, NetworkKind::Guest]);
        assert!(aps.apply(&w).await.unwrap());
        assert!(!aps.apply(&w).await.unwrap(), "same settings: no apply");
        let wifi = |interface: &str| WifiAssociation {
            interface: interface.into(),
            signal_dbm: Some(-50),
            inactive_ms: None,
            network: None,
            band: None,
            dual_band: None,
        };
        let mut devices = vec![
            SeenDevice {
                mac: "02:00:00:00:09:00".into(),
                ip: None,
                hostname: None,
                wifi: Some(wifi("tr-guest0")),
                port: None,
            },
            SeenDevice {
                mac: "02:00:00:00:0a:00".into(),
                ip: None,
                hostname: None,
                wifi: Some(wifi("phy0-ap0")),
                port: None,
            },
        ];
        let turn = crate::access_point::joined::TEST_TURN
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        aps.annotate(&mut devices);
        let w0 = devices[0].wifi.as_ref().unwrap();
        assert_eq!(
            (w0.network, w0.band),
            (Some(NetworkKind::Guest), Some(Band::G2))
        );
        // The person's own access point: not one of the home's networks.
        assert_eq!(devices[1].wifi.as_ref().unwrap().network, None);
        // The proxy learns which network the station joined.
        assert_eq!(
            crate::access_point::joined::network_of("02:00:00:00:09:00".parse().unwrap()),
            Some(NetworkKind::Guest)
        );
        drop(turn);
    }

    #[tokio::test]
    async fn a_bad_wifi_setting_keeps_the_old_access_points() {
        let dir = tempfile::tempdir().unwrap();
        let aps = runner(dir.path());
        let w = home_wifi(&[NetworkKind::Home]);
        aps.apply(&w).await.unwrap();
        let conf = dir.path().join("conf/hostapd-radio0.conf");
        let before = std::fs::read_to_string(&conf).unwrap();
        let mut bad = home_wifi(&[NetworkKind::Home, NetworkKind::Guest]);
        bad.roaming.as_mut().unwrap().ft_key_hex = "short".into();
        assert!(aps.apply(&bad).await.is_err());
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
        assert_eq!(aps.network_of("tr-guest0"), None);
        assert_eq!(aps.network_of("tr-home0"), Some(NetworkKind::Home));
    }

    #[tokio::test]
    async fn a_steer_that_cannot_be_sent_is_reported_once_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let aps = runner(dir.path());
        aps.apply(&home_wifi(&[NetworkKind::Home])).await.unwrap();
        let req = SteerRequest {
            id: 3,
            station: "02:00:00:00:09:00".parse().unwrap(),
            interface: "tr-home0".into(),
            target_bssid: "02:00:00:00:02:00".parse().unwrap(),
            target_node: NodeName::new("hall").unwrap(),
            target_neighbour_report: "020000000200ef190000510607".into(),
            disassoc_timer_tbtt: 15,
        };
        // No hostapd control socket: the request cannot go out.
        aps.answer(&[], std::slice::from_ref(&req)).await;
        aps.answer(&[], std::slice::from_ref(&req)).await;
        let (_, _, outcomes) = aps.telemetry().await;
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert_eq!(outcomes[0].result, SteerResult::Failed);
        let (_, _, again) = aps.telemetry().await;
        assert!(again.is_empty(), "outcomes are reported once");
    }
}
