//! Tests of the policy: MAC parsing, the family defaults, grants, deny-wins, dry runs, the
//! network a device joined overriding the device book, validation, `trellis why` and the JSON
//! form.

use super::*;
use crate::identity::HomeId;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn devices() -> Vec<Device> {
    let d = |name: &str, m: &str, ip: &str, group: &str| Device {
        name: name.into(),
        mac: mac(m),
        ips: vec![ip.parse().unwrap()],
        group: group.into(),
    };
    vec![
        d("laptop", "02:00:00:00:00:01", "192.168.1.10", "trusted"),
        d("thermostat", "02:00:00:00:00:02", "192.168.1.11", "iot"),
        d("visitor", "02:00:00:00:00:03", "192.168.1.12", "guest"),
        d("tv", "02:00:00:00:00:04", "192.168.1.13", "media"),
    ]
}

fn src(p: &Policy, q: &str) -> Source {
    p.resolve_source(q, &devices()).unwrap()
}

fn rule(
    name: &str,
    action: Action,
    sources: Vec<SourceMatch>,
    svc: Option<&str>,
    ports: &[u16],
) -> Rule {
    Rule {
        name: name.into(),
        action,
        sources,
        to: vec![ServiceMatch {
            service: svc.map(Into::into),
            ports: ports.to_vec(),
        }],
        dry_run: false,
    }
}

/// Found by the `identity_text` fuzz target: `u8::from_str_radix` takes a leading `+`,
/// so `10:37:17:00:37:+7` was read as a MAC.
#[test]
fn a_mac_is_six_pairs_of_hex_digits_and_nothing_else() {
    for bad in [
        "10:37:17:00:37:+7",
        "+1:02:03:04:05:06",
        "-1:02:03:04:05:06",
        " 1:02:03:04:05:06",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} is not a MAC");
    }
    for bad in [
        "",
        "02:00",
        "02:00:00:00:00:00:00",
        "zz:00:00:00:00:00",
        "2:0:0:0:0:0",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} is not a MAC");
    }
    assert_eq!(mac("0A-0b-0C-0d-0E-0f").to_string(), "0a:0b:0c:0d:0e:0f");
    // Logs, JSON and the page print it one way.
    let m = mac("02:00:00:00:0A:ff");
    assert_eq!(format!("{m:?}"), "02:00:00:00:0a:ff");
    let json = serde_json::to_string(&m).expect("serialises");
    assert_eq!(json, "\"02:00:00:00:0a:ff\"");
    assert_eq!(serde_json::from_str::<MacAddr>(&json).expect("parses"), m);
}

#[test]
fn a_refused_mac_is_quoted_short() {
    let long = "x".repeat(10_000);
    let err = long.parse::<MacAddr>().unwrap_err().to_string();
    assert!(err.len() < 200, "{} bytes", err.len());
}

#[test]
fn family_defaults_trusted_reach_everything_iot_and_guests_nothing() {
    let p = Policy::default();
    p.validate().unwrap();
    let d = p.evaluate(&src(&p, "laptop"), "nas", Some(445));
    assert!(d.allowed());
    assert_eq!(d.rule(), "default:trusted");
    assert!(
        d.explain().contains("reaches every home service"),
        "{}",
        d.explain()
    );

    let d = p.evaluate(&src(&p, "thermostat"), "nas", Some(445));
    assert!(!d.allowed());
    assert_eq!(d.rule(), "default:iot");
    let d = p.evaluate(&src(&p, "visitor"), "nas", Some(445));
    assert!(!d.allowed());
    assert_eq!(d.rule(), "default:guest");
    let text = d.explain();
    assert!(
        text.starts_with(
            "DENIED: device \"visitor\" (02:00:00:00:00:03, 192.168.1.12, group guest) -> nas:445"
        ),
        "{text}"
    );
    assert!(
        text.contains("[rule default:guest, identity device:02:00:00:00:00:03]"),
        "{text}"
    );
}

#[test]
fn unknown_devices_are_guests_and_undefined_groups_fail_closed() {
    let p = Policy::default();
    let s = src(&p, "192.168.1.99");
    assert_eq!(s.group(), Some("guest"));
    let d = p.evaluate(&s, "nas", Some(80));
    assert_eq!(d.rule(), "default:guest");
    assert!(
        d.explain()
            .contains("unknown device (192.168.1.99, group guest)"),
        "{}",
        d.explain()
    );

    let d = p.evaluate(&src(&p, "tv"), "nas", Some(80));
    assert!(!d.allowed());
    assert_eq!(d.rule(), "default:undefined-group");
    assert!(d.explain().contains("does not define"));
}

#[test]
fn grants_open_a_service_and_port_for_iot() {
    let mut p = Policy::default();
    p.rules.push(rule(
        "thermostat-to-ha",
        Action::Allow,
        vec![SourceMatch::Group("iot".into())],
        Some("home-assistant"),
        &[8123],
    ));
    let s = src(&p, "02:00:00:00:00:02");
    let d = p.evaluate(&s, "home-assistant", Some(8123));
    assert!(d.allowed());
    assert_eq!(d.rule(), "thermostat-to-ha");
    assert!(d.explain().contains("rule \"thermostat-to-ha\" allows it"));
    // Other port, other service: still the default.
    assert_eq!(
        p.evaluate(&s, "home-assistant", Some(22)).rule(),
        "default:iot"
    );
    assert_eq!(p.evaluate(&s, "nas", Some(8123)).rule(), "default:iot");
    // Asked without a port: not granted, and the explanation says a port-limited rule exists.
    let d = p.evaluate(&s, "home-assistant", None);
    assert!(!d.allowed());
    assert_eq!(d.port_limited, vec!["thermostat-to-ha".to_string()]);
    assert!(d.explain().contains("ask with :<port>"));
}

#[test]
fn deny_wins_over_allow_and_over_the_trusted_default() {
    let mut p = Policy::default();
    let laptop = mac("02:00:00:00:00:01");
    p.rules.push(rule(
        "laptop-everything",
        Action::Allow,
        vec![SourceMatch::Device(laptop)],
        None,
        &[],
    ));
    p.rules.push(rule(
        "no-ssh-to-nas",
        Action::Deny,
        vec![SourceMatch::Any],
        Some("nas"),
        &[22],
    ));
    let s = src(&p, "laptop");
    let d = p.evaluate(&s, "nas", Some(22));
    assert!(!d.allowed());
    assert_eq!(d.rule(), "no-ssh-to-nas");
    assert!(d.explain().contains("deny rules win over allow rules"));
    let d = p.evaluate(&s, "nas", Some(445));
    assert!(d.allowed());
    assert_eq!(d.rule(), "laptop-everything");
}

#[test]
fn a_guest_device_with_the_trusted_laptops_mac_is_a_guest() {
    let mut p = Policy::default();
    let laptop = mac("02:00:00:00:00:01");
    p.rules.push(rule(
        "laptop-everything",
        Action::Allow,
        vec![SourceMatch::Device(laptop)],
        None,
        &[],
    ));
    let attic = NodeName::new("attic").unwrap();
    let on = |network| Joined {
        network,
        router: Some(attic.clone()),
    };
    // Associated on the guest network: a guest, whatever the device book says of the
    // MAC, and the rule naming the laptop's MAC does not apply.
    let guest = |m: MacAddr| (m == laptop).then(|| on(NetworkKind::Guest));
    let d = why_joined(&p, &devices(), "02:00:00:00:00:01", "nas:445", guest).unwrap();
    assert!(!d.allowed(), "{}", d.explain());
    assert_eq!(d.source.group(), Some("guest"));
    assert_eq!(d.rule(), "default:guest");
    let text = d.explain();
    assert!(
        text.contains("guest: joined the guest network on attic"),
        "{text}"
    );
    assert!(text.contains("the network joined decides"), "{text}");
    // Asked by name, the same.
    let d = why_joined(&p, &devices(), "laptop", "nas", guest).unwrap();
    assert!(!d.allowed());
    // On the home network it is the trusted laptop, and says why.
    let home = |_| Some(on(NetworkKind::Home));
    let d = why_joined(&p, &devices(), "laptop", "nas", home).unwrap();
    assert!(d.allowed());
    assert_eq!(d.rule(), "laptop-everything");
    assert!(d
        .explain()
        .contains("trusted: joined the home network on attic"));
    // Not associated anywhere: the device book, then the default.
    let d = why_joined(&p, &devices(), "laptop", "nas", |_| None).unwrap();
    assert_eq!(d.source.group(), Some("trusted"));
    let s = Source::device_on(&devices(), &p, Some(mac("02:00:00:00:00:99")), None, None);
    assert_eq!(s.group(), Some(p.unknown_device_group.as_str()));
    assert!(s.group_reason().unwrap().contains("not in the device book"));
    // An unknown device on the iot network is iot.
    let s = Source::device_on(
        &devices(),
        &p,
        Some(mac("02:00:00:00:00:99")),
        None,
        Some(on(NetworkKind::Iot)),
    );
    assert_eq!(s.group(), Some("iot"));
}

#[test]
fn dry_run_rules_report_but_never_change_the_verdict() {
    let mut p = Policy::default();
    let mut r = rule(
        "maybe-block-nas",
        Action::Deny,
        vec![SourceMatch::Group("trusted".into())],
        Some("nas"),
        &[],
    );
    r.dry_run = true;
    p.rules.push(r);
    let mut g = rule(
        "maybe-grant-guest",
        Action::Allow,
        vec![SourceMatch::Group("guest".into())],
        Some("printer"),
        &[],
    );
    g.dry_run = true;
    p.rules.push(g);

    let d = p.evaluate(&src(&p, "laptop"), "nas", Some(445));
    assert!(d.allowed());
    assert_eq!(d.rule(), "default:trusted");
    assert_eq!(d.would_deny().collect::<Vec<_>>(), vec!["maybe-block-nas"]);
    assert!(
        d.explain()
            .contains("Dry run: rule \"maybe-block-nas\" would deny this, but it is not enforced."),
        "{}",
        d.explain()
    );

    let d = p.evaluate(&src(&p, "visitor"), "printer", Some(631));
    assert!(!d.allowed());
    assert_eq!(d.dry_run[0].action, Action::Allow);
}

#[test]
fn service_identities_reach_only_what_is_granted() {
    let mut p = Policy::default();
    let home = HomeId::new("h1").unwrap();
    let ha = SpiffeId::service(&home, "home-assistant").unwrap();
    p.rules.push(rule(
        "ha-to-camera",
        Action::Allow,
        vec![SourceMatch::Identity(ha.clone())],
        Some("camera"),
        &[554],
    ));
    let s = src(&p, "spiffe://h1/svc/home-assistant");
    assert_eq!(s, Source::Workload(ha));
    let d = p.evaluate(&s, "camera", Some(554));
    assert!(d.allowed());
    assert!(d
        .explain()
        .contains("identity spiffe://h1/svc/home-assistant"));
    let d = p.evaluate(&s, "nas", Some(445));
    assert_eq!(d.rule(), "default:service");
    assert!(!d.allowed());
    // Group rules never match a service identity.
    p.rules.push(rule(
        "trusted-all",
        Action::Allow,
        vec![SourceMatch::Group("trusted".into())],
        None,
        &[],
    ));
    assert!(!p.evaluate(&s, "nas", Some(445)).allowed());
}

#[test]
fn validation_names_the_problem() {
    let mut p = Policy::default();
    p.rules
        .push(rule("", Action::Allow, vec![SourceMatch::Any], None, &[]));
    assert_eq!(
        p.validate().unwrap_err(),
        PolicyError::UnnamedRule { index: 0 }
    );
    p.rules[0].name = "a".into();
    p.rules
        .push(rule("a", Action::Deny, vec![SourceMatch::Any], None, &[]));
    assert_eq!(
        p.validate().unwrap_err(),
        PolicyError::DuplicateRule("a".into())
    );
    p.rules[1].name = "b".into();
    p.rules[1].sources = vec![SourceMatch::Group("kids".into())];
    let err = p.validate().unwrap_err().to_string();
    assert!(
        err.contains("\"kids\", which does not exist (groups: trusted, iot, guest)"),
        "{err}"
    );
    p.rules[1].sources.clear();
    assert_eq!(
        p.validate().unwrap_err(),
        PolicyError::NoSources("b".into())
    );
    p.rules.clear();
    p.unknown_device_group = "nobody".into();
    assert!(p.validate().is_err());
}

#[test]
fn custom_groups_work_like_builtin_ones() {
    let mut p = Policy::default();
    p.groups.push(Group {
        name: "media".into(),
        default: GroupDefault::GrantedOnly,
    });
    p.rules.push(rule(
        "tv-to-nas-media",
        Action::Allow,
        vec![SourceMatch::Group("media".into())],
        Some("nas"),
        &[2049],
    ));
    p.validate().unwrap();
    let tv = src(&p, "TV");
    assert!(p.evaluate(&tv, "nas", Some(2049)).allowed());
    assert_eq!(p.evaluate(&tv, "nas", Some(445)).rule(), "default:media");
}

#[test]
fn why_arguments_parse_and_bad_ones_say_what_is_expected() {
    assert_eq!(parse_target("nas").unwrap(), ("nas".into(), None));
    assert_eq!(parse_target("nas:445").unwrap(), ("nas".into(), Some(445)));
    assert_eq!(
        parse_target("nas.trellis.home.arpa:80").unwrap(),
        ("nas".into(), Some(80))
    );
    assert!(parse_target("nas:http")
        .unwrap_err()
        .to_string()
        .contains("<service>:<port>"));
    assert!(parse_target(":80").is_err());
    let p = Policy::default();
    let err = p
        .resolve_source("fridge", &devices())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"fridge\""), "{err}");
    assert!("aa:bb:cc:dd:ee".parse::<MacAddr>().is_err());
    assert!("aa:bb:cc:dd:ee:ff:00".parse::<MacAddr>().is_err());
    assert_eq!(
        "AA-BB-CC-DD-EE-FF".parse::<MacAddr>().unwrap().to_string(),
        "aa:bb:cc:dd:ee:ff"
    );
}

#[test]
fn why_resolves_names_macs_ips_and_mesh_names() {
    let mut p = Policy::default();
    p.rules.push(rule(
        "guests-print",
        Action::Allow,
        vec![SourceMatch::Group("guest".into())],
        Some("printer"),
        &[631],
    ));
    let d = why(&p, &devices(), "visitor", "printer.trellis.home.arpa:631").unwrap();
    assert!(d.allowed());
    assert!(
        d.explain().contains("rule \"guests-print\" allows it"),
        "{}",
        d.explain()
    );
    let d = why(&p, &devices(), "192.168.1.12", "nas").unwrap();
    assert_eq!(d.rule(), "default:guest");
    assert!(why(&p, &devices(), "nobody", "nas").is_err());
    assert!(why(&p, &devices(), "laptop", "nas:x").is_err());
}

#[test]
fn policy_round_trips_through_json() {
    let mut p = Policy::default();
    p.rules.push(rule(
        "x",
        Action::Deny,
        vec![SourceMatch::Device(mac("02:00:00:00:00:01"))],
        Some("nas"),
        &[22],
    ));
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"device\":\"02:00:00:00:00:01\""), "{json}");
    assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
}
