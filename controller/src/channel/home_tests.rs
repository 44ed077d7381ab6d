//! The channel as the controller runs it, on a real [`Home`] (store, snapshot, events): three
//! routers report their surveys; bad requests change nothing, a good one moves the snapshot
//! once, a radar closes its channel and moves the mesh off it.

use std::time::Duration;

use trellis_proto::api::Telemetry;
use trellis_proto::channel::{channel_freq, Band, ChannelSurvey, RadioSurvey, Width};
use trellis_proto::{NodeName, SpiffeId};

use super::home::ChannelRequest;
use crate::error::Kind;
use crate::home::{Home, Settings};

const ROUTERS: [&str; 3] = ["primary", "kitchen", "attic"];

fn survey(busy_36: u64) -> RadioSurvey {
    let plan = [36u16, 40, 44, 48, 52, 56, 60, 64];
    RadioSurvey {
        radio: "phy0".into(),
        mesh: true,
        channels: plan
            .iter()
            .map(|&ch| ChannelSurvey {
                freq_mhz: channel_freq(Band::Ghz5, ch).expect("5 GHz"),
                in_use: ch == 36,
                active_ms: Some(10_000),
                busy_ms: Some(if ch <= 48 { busy_36 * 100 } else { 100 }),
                tx_ms: Some(0),
                allowed: true,
                dfs: ch >= 52,
                max_width: Width::Mhz80,
                ..ChannelSurvey::default()
            })
            .collect(),
    }
}

fn home_of_three() -> (tempfile::TempDir, std::sync::Arc<Home>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = Home::open(Settings {
        data_dir: dir.path().join("data"),
        leaf_ttl: Duration::from_secs(24 * 3600),
        advertise: String::new(),
        node_timeout: crate::home::DEFAULT_NODE_TIMEOUT,
    })
    .expect("a home");
    let now = crate::ca::unix_now();
    for (i, r) in ROUTERS.iter().enumerate() {
        let name = NodeName::new(*r).expect("a name");
        let id = SpiffeId::node(home.home_id(), &name);
        home.store
            .enroll_node(
                &id,
                &trellis_proto::CertSerial::from_hex(&format!("aa0{i}")),
                now + 3600,
                now,
            )
            .expect("enrolled");
        home.report(
            &name,
            Telemetry {
                survey: vec![survey(10)],
                ..Telemetry::default()
            },
        )
        .expect("report taken");
    }
    home.publish().expect("published");
    (dir, home)
}

#[test]
fn a_channel_or_width_the_radios_refuse_moves_nothing() {
    let (_dir, home) = home_of_three();
    let before = home.snapshot();
    for (req, says) in [
        (
            ChannelRequest::Set {
                channel: 149,
                width: None,
            },
            "not a 5 GHz channel of any router's mesh radio",
        ),
        (
            ChannelRequest::Set {
                channel: 36,
                width: Some(Width::Mhz160),
            },
            "the widest it can do is 80 MHz",
        ),
    ] {
        let e = home.channel_request(&req).expect_err("refused");
        assert_eq!(e.kind, Kind::BadRequest);
        assert!(e.message.contains(says), "{}", e.message);
    }
    let after = home.snapshot();
    assert_eq!(after.version, before.version);
    assert_eq!(after.mesh_channel, None);
    assert!(home.events().iter().all(|e| e.kind != "channel"));
}

#[test]
fn a_set_channel_travels_in_the_snapshot_once() {
    let (_dir, home) = home_of_three();
    let v0 = home.snapshot().version;
    let view = home
        .channel_request(&ChannelRequest::Set {
            channel: 44,
            width: Some(Width::Mhz40),
        })
        .expect("allowed everywhere");
    let c = home
        .snapshot()
        .mesh_channel
        .clone()
        .expect("in the snapshot");
    assert_eq!(
        (c.freq_mhz, c.width, c.center_freq_mhz),
        (5220, Width::Mhz40, 5230)
    );
    assert_eq!(c.generation, 1);
    assert!(c.switch_at_unix > 0);
    assert_eq!(view.current, Some(c.clone()));
    assert_eq!(view.routers.len(), 3);
    let v1 = home.snapshot().version;
    assert!(v1 > v0);
    // Asking again for the same channel moves nothing.
    home.set_channel(44, Some(Width::Mhz40)).expect("same");
    assert_eq!(home.snapshot().version, v1);
    assert!(home
        .events()
        .iter()
        .any(|e| e.kind == "channel" && e.message.contains("channel 44")));
}

#[test]
fn a_radar_moves_the_mesh_off_and_closes_the_channel() {
    let (_dir, home) = home_of_three();
    home.set_channel(52, None).expect("DFS allowed");
    assert_eq!(
        home.snapshot().mesh_channel.as_ref().map(|c| c.freq_mhz),
        Some(5260)
    );
    home.radar_detected("kitchen", 5260).expect("handled");
    let c = home.snapshot().mesh_channel.clone().expect("moved");
    assert_eq!(c.generation, 2);
    assert!(c.freq_mhz < 5250, "off the radar block: {c:?}");
    assert!(c.reason.contains("radar on channel 52"), "{}", c.reason);
    let events = home.events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "radar"
                && e.message.contains("kitchen detected a radar on channel 52"))
    );
    let e = home.set_channel(52, None).expect_err("closed");
    assert!(e.message.contains("radar seen by kitchen"), "{}", e.message);
    // The whole 80 MHz block the mesh was on (52-64) is closed, not only 52.
    let view = home.channel_view().expect("view");
    assert_eq!(view.radar.len(), 4);
}

#[test]
fn excluding_dfs_while_on_a_dfs_channel_moves_the_mesh() {
    let (_dir, home) = home_of_three();
    home.set_channel(56, None).expect("DFS allowed");
    home.channel_request(&ChannelRequest::ExcludeDfs { exclude: true })
        .expect("excluded");
    let c = home.snapshot().mesh_channel.clone().expect("a channel");
    assert!(c.freq_mhz <= 5240, "{c:?}");
    assert!(home.channel_view().expect("view").exclude_dfs);
}

#[test]
fn trellis_channel_shows_the_survey_per_router_the_choice_and_the_runner_up() {
    let (_dir, home) = home_of_three();
    let view = home.channel_view().expect("view");
    let text = super::cli::render(&view, None, crate::ca::unix_now());
    assert!(
        text.contains("mesh channel:  as each router was set up"),
        "{text}"
    );
    assert!(text.contains("choice:        channel 52"), "{text}");
    assert!(text.contains("runner-up:     channel 36"), "{text}");
    for r in ROUTERS {
        assert!(
            text.contains(&format!("  {r:<16} phy0 36*:10% 40:10%")),
            "{text}"
        );
    }
    assert!(text.contains("52D:1%"), "{text}");
}

#[test]
fn a_radar_in_a_routers_telemetry_moves_the_mesh_once() {
    let (_dir, home) = home_of_three();
    home.set_channel(52, None).expect("DFS allowed");
    let attic = NodeName::new("attic").expect("a name");
    let report = || Telemetry {
        survey: vec![survey(10)],
        radar: vec![trellis_proto::channel::RadarSeen {
            freq_mhz: 5260,
            at_unix: crate::ca::unix_now(),
        }],
        ..Telemetry::default()
    };
    home.report(&attic, report()).expect("report taken");
    let c = home.snapshot().mesh_channel.clone().expect("a channel");
    assert_eq!(c.generation, 2);
    assert!(c.freq_mhz < 5250, "{c:?}");
    // The same sighting in the next report (the agent keeps it for a while) moves nothing.
    home.report(&attic, report()).expect("report taken");
    assert_eq!(
        home.snapshot().mesh_channel.as_ref().map(|c| c.generation),
        Some(2)
    );
    assert_eq!(
        home.events().iter().filter(|e| e.kind == "radar").count(),
        1
    );
}
