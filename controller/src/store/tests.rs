use trellis_proto::snapshot::MeshCredentials;
use trellis_proto::{CertSerial, HomeId, NodeName, SpiffeId};

use super::*;

fn home(id: &str) -> HomeRecord {
    HomeRecord {
        home_id: HomeId::new(id).unwrap(),
        ca_cert_pem: "cert".into(),
        ca_key_pem: "key".into(),
        mesh: MeshCredentials {
            mesh_id: "trellis-x".into(),
            sae_password: "secret-pass".into(),
        },
    }
}

fn node(name: &str) -> SpiffeId {
    SpiffeId::node(&HomeId::new("h").unwrap(), &NodeName::new(name).unwrap())
}

#[test]
fn the_home_is_created_once_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = Store::open(&path).unwrap();
        let made = store.home_or_create(|| Ok(home("first"))).unwrap();
        assert_eq!(made.home_id.as_str(), "first");
        // A second call must not replace the home.
        let again = store.home_or_create(|| Ok(home("second"))).unwrap();
        assert_eq!(again.home_id.as_str(), "first");
    }
    let store = Store::open(&path).unwrap();
    let kept = store
        .home_or_create(|| panic!("home must already exist"))
        .unwrap();
    assert_eq!(kept.home_id.as_str(), "first");
    assert_eq!(kept.mesh.sae_password, "secret-pass");
}

#[test]
fn enrolling_and_revoking_bump_the_config_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let v0 = store.config_version().unwrap();
    let v1 = store
        .enroll_node(&node("attic"), &CertSerial::from_hex("aa01"), 2_000, 1_000)
        .unwrap();
    assert_eq!(v1, v0 + 1);
    let err = store
        .enroll_node(&node("attic"), &CertSerial::from_hex("aa02"), 2_000, 1_000)
        .unwrap_err();
    assert!(err.to_string().contains("already in this home"), "{err}");
    let (id, v2) = store
        .revoke_node(&NodeName::new("attic").unwrap(), 1_500)
        .unwrap();
    assert_eq!(id, node("attic"));
    assert_eq!(v2, v1 + 1);
    assert_eq!(
        store.revoked_serials(1_600).unwrap(),
        vec![CertSerial::from_hex("aa01")]
    );
    // Expired revoked certificates drop out of the list.
    assert!(store.revoked_serials(2_001).unwrap().is_empty());
    let rows = store.nodes().unwrap();
    assert_eq!(rows[0].revoked_at, Some(1_500));
    // Re-pairing under the same name makes the identity valid again; old serial stays revoked.
    store
        .enroll_node(&node("attic"), &CertSerial::from_hex("aa03"), 3_000, 1_700)
        .unwrap();
    let rows = store.nodes().unwrap();
    assert_eq!(rows[0].revoked_at, None);
    assert_eq!(rows[0].cert_not_after, Some(3_000));
    assert_eq!(
        store.revoked_serials(1_800).unwrap(),
        vec![CertSerial::from_hex("aa01")]
    );
    let err = store
        .revoke_node(&NodeName::new("nobody").unwrap(), 1)
        .unwrap_err();
    assert!(err.to_string().contains("trellis nodes"), "{err}");
}

#[test]
fn devices_need_an_existing_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let tv = DeviceRow {
        mac: "aa:bb:cc:dd:ee:ff".into(),
        name: "tv".into(),
        group: "iot".into(),
    };
    store.put_device(&tv, 1).unwrap();
    let mut moved = tv.clone();
    moved.group = "trusted".into();
    store.put_device(&moved, 2).unwrap();
    assert_eq!(store.devices().unwrap(), vec![moved]);
    let mut bad = tv;
    bad.group = "robots".into();
    let err = store.put_device(&bad, 3).unwrap_err();
    assert!(
        err.to_string().contains("no device group \"robots\""),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let junk = b"this is not sqlite, it is a shopping list: milk, eggs".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    let err = Store::open(&path).err().expect("junk must not open");
    let text = err.to_string();
    assert!(
        text.contains("not a readable Trellis database") && text.contains("backup"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        junk,
        "the file must be left as it was"
    );
}

#[test]
fn a_store_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path)
        .err()
        .expect("newer schema must not open");
    assert!(
        err.to_string().contains("upgrade trellis-controller"),
        "{err}"
    );
}

#[test]
fn wifi_is_written_and_versioned_only_when_it_changes() {
    use trellis_proto::home_wifi::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.wifi().unwrap(), HomeWifi::default());
    let v0 = store.config_version().unwrap();
    assert_eq!(store.put_wifi(&HomeWifi::default()).unwrap(), None);
    let wifi = HomeWifi {
        networks: vec![WifiNetwork {
            kind: NetworkKind::Home,
            ssid: Ssid::new("Home").unwrap(),
            passphrase: Passphrase::new("correct horse").unwrap(),
            security: Security::Wpa2Wpa3,
            bands: Bands::Both,
        }],
        roaming: Some(Roaming {
            mobility_domain: "a1b2".parse().unwrap(),
            ft_key_hex: "00".repeat(32),
        }),
    };
    assert_eq!(store.put_wifi(&wifi).unwrap(), Some(v0 + 1));
    // The same again writes nothing and keeps the version.
    assert_eq!(store.put_wifi(&wifi).unwrap(), None);
    assert_eq!(store.config_version().unwrap(), v0 + 1);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.wifi().unwrap(), wifi);
}
