//! The hostapd backend: its configs read by the real hostapd, its supervision against a
//! hostapd that keeps crashing, its control-socket calls against a socket that answers as
//! hostapd's ctrl_iface.c does.

use super::*;
use crate::access_point::plan::tests::{home_wifi, radios};
use std::os::unix::fs::PermissionsExt;
use tokio::net::UnixDatagram;
use trellis_proto::home_wifi::{NetworkKind as K, Ssid};
use trellis_proto::identity::NodeName;

fn settings(dir: &Path) -> Settings {
    let mut s = Settings::new("attic", dir.join("conf"));
    s.ctrl_dir = dir.join("ctrl");
    s.sys_ieee80211 = dir.join("sys");
    s.iw = "true".into();
    s.backoff = Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(80),
        healthy: Duration::from_secs(60),
    };
    std::fs::create_dir_all(dir.join("sys/phy0")).unwrap();
    std::fs::write(dir.join("sys/phy0/macaddress"), "02:00:00:00:00:00\n").unwrap();
    s
}

fn rendered(kinds: &[K]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let w = home_wifi(kinds);
    let r = radios(8);
    let p = plan::plan(&w, &r).unwrap();
    let aps: Vec<&PlannedAp> = p.iter().filter(|a| a.radio == 0).collect();
    let base = read_phy_mac(&s.sys_ieee80211, "phy0");
    let text = render(&r.0[0], &aps, w.roaming.as_ref().unwrap(), &s, base).unwrap();
    (text, dir)
}

#[test]
fn the_config_has_ft_k_v_and_the_transition_mode() {
    let (c, _d) = rendered(&[K::Home, K::Guest]);
    let has = |l: &str| assert!(c.lines().any(|x| x == l), "no {l:?} in\n{c}");
    has("driver=nl80211");
    has("interface=tr-home0");
    has("bss=tr-guest0");
    has("bssid=02:00:00:00:00:01");
    has("hw_mode=g");
    has("channel=6");
    has(&format!("ssid2={}", hex(b"Example home")));
    has("wpa=2");
    has("wpa_key_mgmt=WPA-PSK FT-PSK SAE FT-SAE");
    has("ieee80211w=1");
    has("mobility_domain=a1b2");
    has("nas_identifier=020000000000");
    has("ft_over_ds=0");
    has("pmk_r1_push=1");
    has(&format!("r0kh=ff:ff:ff:ff:ff:ff * {}", "0f".repeat(32)));
    has(&format!(
        "r1kh=00:00:00:00:00:00 00:00:00:00:00:00 {}",
        "0f".repeat(32)
    ));
    has("rrm_neighbor_report=1");
    has("bss_transition=1");
    has("ap_isolate=1");
    // Only the guest is isolated.
    assert_eq!(c.matches("ap_isolate=1").count(), 1);
}

#[test]
fn the_real_hostapd_reads_the_config_without_an_error() {
    let (c, dir) = rendered(&[K::Home, K::Guest]);
    let path = dir.path().join("hostapd-radio0.conf");
    write_secret(&path, &c).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the config holds the passphrase");
    let hostapd = ["/usr/sbin/hostapd", "/sbin/hostapd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("hostapd is installed (cargo xtask setup installs Debian's hostapd)");
    // The interface does not exist, so hostapd stops at driver init: after it read the
    // whole file. A bad line would be reported as "Line N: ..." before that.
    let out = std::process::Command::new(hostapd)
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Line "), "hostapd refused a line:\n{text}");
    assert!(
        !text.contains("errors found in configuration file"),
        "{text}"
    );
    assert!(
        !text.contains("correct horse"),
        "the passphrase was printed:\n{text}"
    );
}

#[tokio::test]
async fn hostapd_is_restarted_after_it_crashes_and_stopped_when_not_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let fake = dir.path().join("hostapd");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}/starts\nexit 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.hostapd = fake;
    let mut b = Hostapd::new(s);
    let one = Radios(vec![radios(8).0[0].clone()]);
    let w = home_wifi(&[K::Home]);
    assert!(matches!(
        b.apply(&w, &one).await.unwrap(),
        Change::Applied(_)
    ));
    let conf = dir.path().join("conf/hostapd-radio0.conf");
    assert!(conf.exists());
    // Wait (bounded) for the third start: two restarts after crashes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.starts("radio0") < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hostapd was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The same settings again: nothing rewritten, the supervisor kept.
    assert_eq!(b.apply(&w, &one).await.unwrap(), Change::Unchanged);
    assert!(b.starts("radio0") >= 3);
    // No networks: the radio's hostapd stops and its config (with the key) is removed.
    assert!(matches!(
        b.apply(&HomeWifi::default(), &one).await.unwrap(),
        Change::Applied(_)
    ));
    assert!(!conf.exists());
    assert_eq!(b.starts("radio0"), 0);
}

/// A control socket answering as hostapd does, recording the commands.
async fn fake_hostapd(
    path: PathBuf,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let sock = UnixDatagram::bind(&path).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let cmd = String::from_utf8_lossy(&buf[..n]).into_owned();
            log.lock().unwrap().push(cmd.clone());
            let reply = match cmd.split(' ').next().unwrap_or("") {
                "STATUS" => "state=ENABLED\nfreq=2437\nchannel=6\nbss[0]=tr-home0\n\
                             bssid[0]=02:00:00:00:00:00\nssid[0]=Example home\n"
                    .to_string(),
                "SHOW_NEIGHBOR" => {
                    "02:00:00:00:00:00 ssid=4578616d706c6520686f6d65 nr=020000000000ef190000510607 stat\n"
                        .to_string()
                }
                "STA-FIRST" => "02:00:00:00:09:00\nflags=[AUTH][ASSOC][AUTHORIZED]\n\
                                signal=-40\ninactive_msec=10\n"
                    .to_string(),
                "STA-NEXT" => String::new(),
                "BSS_TM_REQ" | "SET_NEIGHBOR" | "REMOVE_NEIGHBOR" => "OK\n".to_string(),
                _ => "UNKNOWN COMMAND\n".to_string(),
            };
            if let Some(p) = from.as_pathname() {
                let _ = sock.send_to(reply.as_bytes(), p).await;
            }
        }
    });
    (task, seen)
}

#[tokio::test]
async fn control_socket_calls_read_and_send_as_hostapd_speaks() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.hostapd = "true".into();
    std::fs::create_dir_all(&s.ctrl_dir).unwrap();
    let (task, seen) = fake_hostapd(s.ctrl_dir.join("tr-home0")).await;
    let mut b = Hostapd::new(s);
    let one = Radios(vec![radios(8).0[0].clone()]);
    b.apply(&home_wifi(&[K::Home]), &one).await.unwrap();

    let st = b.stations().await.unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].signal_dbm, Some(-40));
    assert_eq!(st[0].association().network, Some(K::Home));
    let aps = b.access_points().await.unwrap();
    assert_eq!(aps.len(), 1);
    assert_eq!(aps[0].bssid.to_string(), "02:00:00:00:00:00");
    assert_eq!((aps[0].channel, aps[0].freq_mhz), (6, 2437));
    assert_eq!(
        aps[0].neighbour_report.as_deref(),
        Some("020000000000ef190000510607")
    );
    // What the radio broadcasts, and the fingerprint the controller checks.
    let w = home_wifi(&[K::Home]);
    assert_eq!(aps[0].ssid.as_deref(), Some("Example home"));
    assert_eq!(
        aps[0].settings,
        Some(trellis_proto::home_wifi::settings_fingerprint(
            &w.networks[0],
            w.roaming.as_ref()
        ))
    );

    let n = ApNeighbour {
        node: NodeName::new("hall").unwrap(),
        network: K::Home,
        bssid: "02:00:00:00:02:00".parse().unwrap(),
        ssid: Ssid::new("Example home").unwrap(),
        neighbour_report: "020000000200ef190000510607".into(),
    };
    b.set_neighbours(std::slice::from_ref(&n)).await.unwrap();
    b.set_neighbours(&[]).await.unwrap();
    let req = SteerRequest {
        id: 41,
        station: "02:00:00:00:09:00".parse().unwrap(),
        interface: "tr-home0".into(),
        target_bssid: n.bssid,
        target_node: n.node.clone(),
        target_neighbour_report: n.neighbour_report.clone(),
        disassoc_timer_tbtt: 15,
    };
    b.send_bss_transition(&req).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(
        &"SET_NEIGHBOR 02:00:00:00:02:00 ssid=4578616d706c6520686f6d65 nr=020000000200ef190000510607"
            .to_string()
    ), "{seen:?}");
    assert!(
        seen.contains(&"REMOVE_NEIGHBOR 02:00:00:00:02:00".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(
            &"BSS_TM_REQ 02:00:00:00:09:00 disassoc_imminent=1 disassoc_timer=15 valid_int=255 \
          pref=1 abridged=1 dialog_token=42 neighbor=02:00:00:00:02:00,0x000019ef,81,6,7,0301ff"
                .to_string()
        ),
        "{seen:?}"
    );
    task.abort();
}
