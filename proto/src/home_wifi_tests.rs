//! Tests of the home wifi vocabulary: SSID and passphrase rules, fingerprints, redaction and
//! the JSON the controller and agents exchange.

use super::*;

#[cfg(feature = "tls")]
#[test]
fn a_fingerprint_moves_with_every_setting_and_hides_the_passphrase() {
    let net = WifiNetwork {
        kind: NetworkKind::Home,
        ssid: Ssid::new("Our Home").unwrap(),
        passphrase: Passphrase::new("correct horse battery").unwrap(),
        security: Security::Wpa2Wpa3,
        bands: Bands::Both,
    };
    let roaming = Roaming {
        mobility_domain: MobilityDomain([0xab, 0xcd]),
        ft_key_hex: "11".repeat(32),
    };
    let base = settings_fingerprint(&net, Some(&roaming));
    assert_eq!(base.len(), FINGERPRINT_HEX);
    assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        base,
        settings_fingerprint(&net.clone(), Some(&roaming.clone()))
    );
    assert!(!base.contains("horse"));
    let other_pw = WifiNetwork {
        passphrase: Passphrase::new("correct horse battery!").unwrap(),
        ..net.clone()
    };
    let wpa3 = WifiNetwork {
        security: Security::Wpa3,
        ..net.clone()
    };
    let other_md = Roaming {
        mobility_domain: MobilityDomain([0xab, 0xce]),
        ..roaming.clone()
    };
    let other_key = Roaming {
        ft_key_hex: "22".repeat(32),
        ..roaming.clone()
    };
    for other in [
        settings_fingerprint(&other_pw, Some(&roaming)),
        settings_fingerprint(&wpa3, Some(&roaming)),
        settings_fingerprint(&net, Some(&other_md)),
        settings_fingerprint(&net, Some(&other_key)),
        settings_fingerprint(&net, None),
    ] {
        assert_ne!(other, base);
    }
}

#[test]
fn an_ssid_is_one_to_32_bytes() {
    assert!(Ssid::new("Home").is_ok());
    assert!(Ssid::new("x".repeat(32)).is_ok());
    let err = Ssid::new("x".repeat(33)).unwrap_err();
    assert!(err.to_string().contains("33 bytes"), "{err}");
    assert!(Ssid::new("").is_err());
    // Bytes, not characters: 11 three-byte characters are 33 bytes.
    assert!(Ssid::new("€".repeat(11)).is_err());
}

#[test]
fn a_passphrase_is_8_to_63_printable_ascii_and_never_debug_printed() {
    assert!(Passphrase::new("12345678").is_ok());
    assert!(Passphrase::new("a".repeat(63)).is_ok());
    assert_eq!(
        Passphrase::new("short").unwrap_err(),
        WifiError::PassphraseLength(5)
    );
    assert!(Passphrase::new("a".repeat(64)).is_err());
    assert_eq!(
        Passphrase::new("pässwörd1").unwrap_err(),
        WifiError::PassphraseCharacter(2)
    );
    let p = Passphrase::new("correct horse").unwrap();
    assert_eq!(format!("{p:?}"), "<redacted>");
    let n = WifiNetwork {
        kind: NetworkKind::Home,
        ssid: Ssid::new("Home").unwrap(),
        passphrase: p,
        security: Security::default(),
        bands: Bands::Both,
    };
    assert!(!format!("{n:?}").contains("horse"));
}

#[test]
fn bad_values_in_json_are_refused_when_read() {
    let bad = r#"{"kind":"home","ssid":"Home","passphrase":"short","bands":"both"}"#;
    let err = serde_json::from_str::<WifiNetwork>(bad).unwrap_err();
    assert!(err.to_string().contains("8 to 63"), "{err}");
}

#[test]
fn one_network_of_each_kind_with_distinct_names() {
    let net = |kind, ssid: &str| WifiNetwork {
        kind,
        ssid: Ssid::new(ssid).unwrap(),
        passphrase: Passphrase::new("12345678").unwrap(),
        security: Security::Wpa2Wpa3,
        bands: WifiNetwork::default_bands(kind),
    };
    let mut w = HomeWifi {
        networks: vec![net(NetworkKind::Home, "A"), net(NetworkKind::Guest, "B")],
        roaming: None,
    };
    assert!(w.validate().is_ok());
    w.networks.push(net(NetworkKind::Guest, "C"));
    assert_eq!(
        w.validate(),
        Err(WifiError::DuplicateNetwork(NetworkKind::Guest))
    );
    w.networks.pop();
    w.networks.push(net(NetworkKind::Iot, "A"));
    assert!(matches!(w.validate(), Err(WifiError::DuplicateSsid(_))));
}

#[test]
fn mobility_domain_is_four_hex_digits() {
    let md: MobilityDomain = "a1B2".parse().unwrap();
    assert_eq!(md.to_string(), "a1b2");
    assert!("a1b".parse::<MobilityDomain>().is_err());
    assert!("+1b2".parse::<MobilityDomain>().is_err());
}

#[test]
fn iot_is_2g_only_and_never_steered() {
    assert_eq!(WifiNetwork::default_bands(NetworkKind::Iot), Bands::Only2g);
    assert!(!NetworkKind::Iot.steerable());
    assert!(NetworkKind::Guest.steerable());
    assert!(Bands::Only2g.includes(Band::G2) && !Bands::Only2g.includes(Band::G5));
    assert_eq!(Band::of_mhz(2412), Some(Band::G2));
    assert_eq!(Band::of_mhz(5180), Some(Band::G5));
}
