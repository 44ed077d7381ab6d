//! The OpenWrt backend against stand-ins of `uci`, `wifi` and `ubus`: small scripts that
//! record their calls and answer as the real programs do (uci: `show` prints the config,
//! `batch` reads commands from stdin; ubus: a missing object is "Command failed: Not found",
//! exit 4, as ubus's cli.c prints it).

use super::*;
use crate::access_point::plan::tests::{home_wifi, radios};
use crate::access_point::Backend;
use std::os::unix::fs::PermissionsExt;
use trellis_proto::home_wifi::{NetworkKind as K, Passphrase, Ssid};
use trellis_proto::identity::NodeName;

struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new(show: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("show"), show).unwrap();
        let script = |name: &str, body: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            "uci",
            format!(
                "echo \"uci $*\" >> {d}/calls\n\
                 if [ \"$1 $2 $3\" = \"-q show wireless\" ]; then cat {d}/show; exit 0; fi\n\
                 if [ \"$1\" = batch ]; then cat >> {d}/batch; exit 0; fi\n\
                 exit 1\n"
            ),
        );
        script("wifi", format!("echo \"wifi $*\" >> {d}/calls\n"));
        script(
            "ubus",
            format!(
                "printf 'ubus %s %s %s\\n' \"$2\" \"$3\" \"$4\" >> {d}/calls\n\
                 case \"$2\" in hostapd.tr-*) ;; *) echo 'Command failed: Not found' >&2; exit 4;; esac\n\
                 case \"$3\" in\n\
                 rrm_nr_get_own) echo '{{\"value\":[\"02:00:00:00:01:00\",\"Example home\",\"020000000100ef190000510603\"]}}';;\n\
                 get_clients) echo '{{\"freq\":2437,\"clients\":{{\"02:00:00:00:09:00\":{{\"auth\":true,\"assoc\":true,\"authorized\":true,\"signal\":-48}},\"02:00:00:00:0a:00\":{{\"auth\":true,\"assoc\":false}}}}}}';;\n\
                 *) echo '{{}}';;\n\
                 esac\n"
            ),
        );
        Self { dir }
    }

    fn backend(&self) -> OpenWrt {
        let p = |n: &str| self.dir.path().join(n);
        OpenWrt::new(Tools {
            uci: p("uci"),
            wifi: p("wifi"),
            ubus: p("ubus"),
        })
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// The person's own config, as `uci show wireless` prints it on OpenWrt 24.10.
const PERSONS: &str = "wireless.radio0=wifi-device\n\
wireless.radio0.type='mac80211'\n\
wireless.radio0.band='2g'\n\
wireless.radio0.channel='6'\n\
wireless.default_radio0=wifi-iface\n\
wireless.default_radio0.device='radio0'\n\
wireless.default_radio0.network='lan'\n\
wireless.default_radio0.mode='ap'\n\
wireless.default_radio0.ssid='OpenWrt'\n\
wireless.default_radio0.encryption='none'\n";

fn key() -> String {
    "0f".repeat(32)
}

#[test]
fn each_option_is_one_openwrt_reads() {
    let w = home_wifi(&[K::Home, K::Guest]);
    let planned = plan::plan(&w, &radios(8)).unwrap();
    let guest = planned.iter().find(|a| a.network.kind == K::Guest).unwrap();
    let o = section_options(guest, w.roaming.as_ref().unwrap(), "lan").unwrap();
    let get = |k: &str| match o.get(k) {
        Some(UciValue::One(v)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    // hostapd_common_add_bss_config (24.10 hostapd.sh) declares each of these; the value
    // is what hostapd_set_bss_options / ap.uc turn into the hostapd.conf line noted.
    assert_eq!(get("device"), "radio0");
    assert_eq!(get("mode"), "ap");
    assert_eq!(get("ifname"), "tr-guest0");
    assert_eq!(get("ssid"), "Example guest"); // → ssid= (24.10) / ssid2= (25.12)
    assert_eq!(get("encryption"), "sae-mixed"); // → auth_type psk-sae: WPA-PSK FT-PSK SAE FT-SAE
    assert_eq!(get("key"), "correct horse battery"); // 8..63 chars → wpa_passphrase=
    assert_eq!(get("ieee80211r"), "1"); // gates every FT option below
    assert_eq!(get("mobility_domain"), "a1b2"); // → mobility_domain=
    assert_eq!(get("ft_over_ds"), "0"); // → ft_over_ds= (default 1 in 24.10)
    assert_eq!(get("ft_psk_generate_local"), "0"); // 0 → r0kh/r1kh/pmk_r1_push are read
    assert_eq!(get("pmk_r1_push"), "1");
    assert_eq!(
        o.get("r0kh"),
        Some(&UciValue::List(vec![format!(
            "ff:ff:ff:ff:ff:ff,*,{}",
            key()
        )]))
    ); // → r0kh=ff:ff:ff:ff:ff:ff * KEY (commas → spaces)
    assert_eq!(
        o.get("r1kh"),
        Some(&UciValue::List(vec![format!(
            "00:00:00:00:00:00,00:00:00:00:00:00,{}",
            key()
        )]))
    );
    assert_eq!(get("ieee80211k"), "1");
    assert_eq!(get("rrm_neighbor_report"), "1"); // → rrm_neighbor_report=1
    assert_eq!(get("ieee80211v"), "1"); // 24.10 reads bss_transition only under it
    assert_eq!(get("bss_transition"), "1"); // → bss_transition=1
    assert_eq!(get("wnm_sleep_mode"), "0");
    assert_eq!(get("isolate"), "1"); // guest → ap_isolate=1
    assert_eq!(get("disabled"), "0");
    assert_eq!(o.len(), 21, "{:?}", o.keys().collect::<Vec<_>>());
    let home = planned.iter().find(|a| a.network.kind == K::Home).unwrap();
    let o = section_options(home, w.roaming.as_ref().unwrap(), "lan").unwrap();
    assert_eq!(o.get("isolate"), Some(&UciValue::One("0".into())));
}

#[test]
fn a_value_is_quoted_as_uci_batch_reads_it() {
    assert_eq!(quote("it's"), r"'it'\''s'");
    let back = parse_show(&format!("wireless.x.key={}\n", quote("a 'b' c")));
    assert_eq!(
        back["x"].options["key"],
        UciValue::One("a 'b' c".to_string())
    );
    let list = parse_show("wireless.x.r0kh='a,b' 'c d'\n");
    assert_eq!(
        list["x"].options["r0kh"],
        UciValue::List(vec!["a,b".into(), "c d".into()])
    );
}

#[tokio::test]
async fn first_apply_writes_the_agents_sections_and_reloads_once() {
    let bench = Bench::new(PERSONS);
    let mut b = Backend::OpenWrt(bench.backend());
    let w = home_wifi(&[K::Home]);
    let change = b.apply(&w, &radios(8)).await.unwrap();
    assert!(matches!(change, Change::Applied(ref aps) if aps.len() == 2));
    let batch = bench.read("batch");
    assert!(
        batch.contains("set wireless.trellis_home_radio0=wifi-iface\n"),
        "{batch}"
    );
    assert!(batch.contains("set wireless.trellis_home_radio0.ssid='Example home'\n"));
    assert!(batch.contains("set wireless.trellis_home_radio1.device='radio1'\n"));
    assert!(batch.contains(&format!(
        "add_list wireless.trellis_home_radio0.r0kh='ff:ff:ff:ff:ff:ff,*,{}'\n",
        key()
    )));
    assert!(batch.ends_with("commit wireless\n"));
    // The person's section is never named.
    assert!(!batch.contains("default_radio0"), "{batch}");
    let calls = bench.read("calls");
    assert_eq!(calls.matches("wifi reload").count(), 1, "{calls}");
}

#[tokio::test]
async fn the_same_settings_again_change_nothing() {
    let w = home_wifi(&[K::Home]);
    let one = Radios(vec![radios(8).0[0].clone()]);
    // What `uci show wireless` prints after the first apply (uci show's format: lists as
    // space-separated quoted words).
    let ours = format!(
        "wireless.trellis_home_radio0=wifi-iface\n\
wireless.trellis_home_radio0.bss_transition='1'\n\
wireless.trellis_home_radio0.device='radio0'\n\
wireless.trellis_home_radio0.disabled='0'\n\
wireless.trellis_home_radio0.encryption='sae-mixed'\n\
wireless.trellis_home_radio0.ft_over_ds='0'\n\
wireless.trellis_home_radio0.ft_psk_generate_local='0'\n\
wireless.trellis_home_radio0.ieee80211k='1'\n\
wireless.trellis_home_radio0.ieee80211r='1'\n\
wireless.trellis_home_radio0.ieee80211v='1'\n\
wireless.trellis_home_radio0.ifname='tr-home0'\n\
wireless.trellis_home_radio0.isolate='0'\n\
wireless.trellis_home_radio0.key='correct horse battery'\n\
wireless.trellis_home_radio0.mobility_domain='a1b2'\n\
wireless.trellis_home_radio0.mode='ap'\n\
wireless.trellis_home_radio0.network='lan'\n\
wireless.trellis_home_radio0.pmk_r1_push='1'\n\
wireless.trellis_home_radio0.r0kh='ff:ff:ff:ff:ff:ff,*,{k}'\n\
wireless.trellis_home_radio0.r1kh='00:00:00:00:00:00,00:00:00:00:00:00,{k}'\n\
wireless.trellis_home_radio0.rrm_neighbor_report='1'\n\
wireless.trellis_home_radio0.ssid='Example home'\n\
wireless.trellis_home_radio0.wnm_sleep_mode='0'\n",
        k = key()
    );
    let bench = Bench::new(&format!("{PERSONS}{ours}"));
    let mut b = bench.backend();
    assert_eq!(b.apply(&w, &one).await.unwrap(), Change::Unchanged);
    assert_eq!(bench.read("batch"), "");
    assert!(
        !bench.read("calls").contains("wifi"),
        "{}",
        bench.read("calls")
    );

    // A new passphrase is a change: written and reloaded.
    let mut w2 = w.clone();
    w2.networks[0].passphrase = Passphrase::new("a n'other one").unwrap();
    assert!(matches!(
        b.apply(&w2, &one).await.unwrap(),
        Change::Applied(_)
    ));
    assert!(bench
        .read("batch")
        .contains(r"set wireless.trellis_home_radio0.key='a n'\''other one'"));
}

#[tokio::test]
async fn a_network_taken_away_deletes_only_the_agents_section() {
    let stale = "wireless.trellis_guest_radio0=wifi-iface\n\
                 wireless.trellis_guest_radio0.device='radio0'\n";
    let bench = Bench::new(&format!("{PERSONS}{stale}"));
    let mut b = bench.backend();
    let one = Radios(vec![radios(8).0[0].clone()]);
    b.apply(&home_wifi(&[K::Home]), &one).await.unwrap();
    let batch = bench.read("batch");
    assert!(
        batch.starts_with("delete wireless.trellis_guest_radio0\n"),
        "{batch}"
    );
    assert!(!batch.contains("default_radio0"));
    // No networks at all: every agent section goes, the person's stays.
    let bench = Bench::new(&format!("{PERSONS}{stale}"));
    let mut b = bench.backend();
    b.apply(&HomeWifi::default(), &one).await.unwrap();
    assert_eq!(
        bench.read("batch"),
        "delete wireless.trellis_guest_radio0\ncommit wireless\n"
    );
}

#[tokio::test]
async fn a_radio_that_cannot_host_the_guest_changes_nothing() {
    let bench = Bench::new(PERSONS);
    let mut b = bench.backend();
    let err = b
        .apply(&home_wifi(&[K::Home, K::Guest]), &radios(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("radio1 cannot host"), "{err}");
    assert_eq!(bench.read("calls"), "", "nothing may run");
}

#[tokio::test]
async fn ubus_calls_name_the_interface_and_carry_hostapds_fields() {
    let bench = Bench::new(PERSONS);
    let mut b = bench.backend();
    let one = Radios(vec![radios(8).0[0].clone()]);
    b.apply(&home_wifi(&[K::Home]), &one).await.unwrap();

    let st = b.stations().await.unwrap();
    assert_eq!(st.len(), 1, "only associated clients: {st:?}");
    assert_eq!(st[0].mac.to_string(), "02:00:00:00:09:00");
    assert_eq!(st[0].interface, "tr-home0");
    assert_eq!(st[0].signal_dbm, Some(-48));
    assert_eq!(st[0].association().network, Some(K::Home));

    let aps = b.access_points().await.unwrap();
    assert_eq!(aps[0].bssid.to_string(), "02:00:00:00:01:00");
    assert_eq!(aps[0].channel, 6);
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
        node: NodeName::new("attic").unwrap(),
        network: K::Home,
        bssid: "02:00:00:00:02:00".parse().unwrap(),
        ssid: Ssid::new("Example home").unwrap(),
        neighbour_report: "020000000200ef190000510603".into(),
    };
    b.set_neighbours(std::slice::from_ref(&n)).await.unwrap();
    let req = SteerRequest {
        id: 7,
        station: "02:00:00:00:09:00".parse().unwrap(),
        interface: "tr-home0".into(),
        target_bssid: n.bssid,
        target_node: n.node.clone(),
        target_neighbour_report: "020000000200ef190000510603".into(),
        disassoc_timer_tbtt: 20,
    };
    b.send_bss_transition(&req).await.unwrap();
    let calls = bench.read("calls");
    assert!(calls.contains(
        "ubus hostapd.tr-home0 rrm_nr_set {\"list\":[[\"02:00:00:00:02:00\",\"Example home\",\"020000000200ef190000510603\"]]}"
    ), "{calls}");
    assert!(
        calls.contains("ubus hostapd.tr-home0 bss_transition_request {"),
        "{calls}"
    );
    let sent = bss_transition_args(&req);
    assert_eq!(sent["disassociation_imminent"], true);
    assert_eq!(sent["disassociation_timer"], 20);
    assert_eq!(sent["neighbors"][0], "020000000200ef190000510603");
    // An interface that is not the agent's is refused before ubus.
    let mut other = req.clone();
    other.interface = "phy0-ap0".into();
    assert!(matches!(
        b.send_bss_transition(&other).await,
        Err(ApError::UnknownInterface(_))
    ));
}

#[test]
fn radios_are_read_from_the_wifi_device_sections() {
    let r = radios_from_uci(&format!(
        "{PERSONS}wireless.radio1=wifi-device\nwireless.radio1.band='5g'\n\
         wireless.radio1.channel='auto'\n\
         wireless.trellis_home_radio0=wifi-iface\nwireless.trellis_home_radio0.device='radio0'\n"
    ));
    assert_eq!(r.0.len(), 2);
    assert_eq!(
        (
            r.0[0].name.as_str(),
            r.0[0].band,
            r.0[0].channel,
            r.0[0].freq_mhz
        ),
        ("radio0", trellis_proto::home_wifi::Band::G2, 6, 2437)
    );
    // The person's default_radio0 counts; the agent's own section does not.
    assert_eq!(r.0[0].other_interfaces, 1);
    assert_eq!(
        (r.0[1].band, r.0[1].channel),
        (trellis_proto::home_wifi::Band::G5, 0)
    );
    assert_eq!(r.0[1].other_interfaces, 0);
}
