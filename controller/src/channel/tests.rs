//! The channel choice against recorded survey shapes: each radio is a 5 GHz mesh radio with
//! the channel plan of mac80211_hwsim under an ETSI regulatory domain (36-64 and 100-140,
//! 52-140 DFS; 149-165 allowed only where a test says so), with busy times as a survey dump
//! reports them after a minute of listening.

use super::*;
use trellis_proto::channel::ChannelSurvey;

const LISTEN_MS: u64 = 60_000;

/// A radio from `(channel, busy %)`; channels not listed are quiet (1 %).
fn radio(busy: &[(u16, u64)], with_149: bool, max_width: Width) -> RadioSurvey {
    let mut plan: Vec<u16> = (36..=64).step_by(4).chain((100..=140).step_by(4)).collect();
    if with_149 {
        plan.extend([149, 153, 157, 161]);
    }
    RadioSurvey {
        radio: "phy0".into(),
        mesh: true,
        channels: plan
            .into_iter()
            .map(|ch| {
                let pct = busy.iter().find(|(c, _)| *c == ch).map_or(1, |(_, p)| *p);
                ChannelSurvey {
                    freq_mhz: channel_freq(Band::Ghz5, ch).expect("a 5 GHz channel"),
                    in_use: ch == 36,
                    noise_dbm: Some(-95),
                    active_ms: Some(LISTEN_MS),
                    busy_ms: Some(LISTEN_MS * pct / 100),
                    rx_ms: Some(LISTEN_MS * pct / 200),
                    tx_ms: Some(0),
                    allowed: true,
                    dfs: (52..=144).contains(&ch),
                    radar_unavailable: false,
                    max_width,
                }
            })
            .collect(),
    }
}

fn block_busy(channels: &[u16], pct: u64) -> Vec<(u16, u64)> {
    channels.iter().map(|c| (*c, pct)).collect()
}

fn home<'a>(radios: &'a [(&'a str, RadioSurvey)]) -> Vec<RouterSurvey<'a>> {
    radios
        .iter()
        .map(|(n, r)| RouterSurvey { node: n, radio: r })
        .collect()
}

fn rules() -> Rules {
    Rules {
        now_unix: 1_000_000,
        ..Rules::default()
    }
}

#[test]
fn a_busy_channel_is_left_for_a_clear_one() {
    let busy36 = block_busy(&[36, 40, 44, 48], 60);
    let radios = [
        ("primary", radio(&busy36, true, Width::Mhz80)),
        ("kitchen", radio(&busy36, true, Width::Mhz80)),
        ("attic", radio(&busy36, true, Width::Mhz80)),
    ];
    let c = choose(&home(&radios), &rules()).expect("a channel");
    // 52 and 149 are both clear; 149 needs no radar detection.
    assert_eq!((c.best.channel, c.best.width), (149, Width::Mhz80));
    assert!(!c.best.dfs);
    assert_eq!(c.best.center_freq_mhz, 5775);
    let r = c.runner_up.expect("a runner-up");
    assert!(
        r.channel != 36 && r.channel != 149,
        "runner-up {}",
        r.channel
    );
    assert!(c.why.contains("channel 149"), "{}", c.why);
}

#[test]
fn dfs_channels_are_left_out_when_the_person_says_so() {
    let mut busy = block_busy(&[36, 40, 44, 48], 40);
    busy.extend(block_busy(&[149, 153, 157, 161], 30));
    let radios = [
        ("primary", radio(&busy, true, Width::Mhz80)),
        ("kitchen", radio(&busy, true, Width::Mhz80)),
    ];
    let allowed = choose(&home(&radios), &rules()).expect("a channel");
    assert!(allowed.best.dfs, "the clear DFS block wins when allowed");
    assert_eq!(allowed.best.channel, 52);

    let no_dfs = Rules {
        exclude_dfs: true,
        ..rules()
    };
    let c = choose(&home(&radios), &no_dfs).expect("a channel");
    assert_eq!(c.best.channel, 149, "the least busy non-DFS block");
    assert!(!c.best.dfs && c.runner_up.as_ref().is_some_and(|r| !r.dfs));
    assert!(c
        .excluded
        .iter()
        .any(|e| e.channel == 100 && e.why == Exclusion::DfsExcluded));
}

#[test]
fn one_router_hearing_a_loud_neighbour_rules_its_channel_out() {
    // Everyone hears 36-48 a little; only the attic hears the neighbour's network on 149-161,
    // so loudly that the average of 149 would still look better than 36's.
    let everywhere = block_busy(&[36, 40, 44, 48], 10);
    let mut attic = everywhere.clone();
    attic.extend(block_busy(&[149, 153, 157, 161], 70));
    let radios = [
        ("primary", radio(&everywhere, true, Width::Mhz80)),
        ("kitchen", radio(&everywhere, true, Width::Mhz80)),
        ("attic", radio(&attic, true, Width::Mhz80)),
    ];
    let no_dfs = Rules {
        exclude_dfs: true,
        ..rules()
    };
    let c = choose(&home(&radios), &no_dfs).expect("a channel");
    assert_eq!(c.best.channel, 36);
    let r = c.runner_up.expect("149 is the runner-up");
    assert_eq!(r.channel, 149);
    assert_eq!(r.worst_node, "attic");
    assert!(
        r.describe().contains("70% busy at attic"),
        "{}",
        r.describe()
    );
}

#[test]
fn a_radar_closes_its_channel_for_the_non_occupancy_period() {
    let busy = block_busy(&[36, 40, 44, 48, 149, 153, 157, 161], 50);
    let radios = [
        ("primary", radio(&busy, true, Width::Mhz80)),
        ("kitchen", radio(&busy, true, Width::Mhz80)),
    ];
    let now = 1_000_000;
    let closed = Rules {
        radar: vec![RadarClosure {
            freq_mhz: 5260,
            until_unix: now + NON_OCCUPANCY_S,
            seen_by: "kitchen".into(),
        }],
        ..rules()
    };
    let c = choose(&home(&radios), &closed).expect("a channel");
    // 52's block (52-64) holds the closed channel: no 80 MHz there, and never 52 itself.
    assert_ne!(c.best.channel, 52);
    assert!(c.best.center_freq_mhz != 5290 || c.best.width < Width::Mhz80);
    let e = c
        .excluded
        .iter()
        .find(|e| e.channel == 52)
        .expect("52 is listed as closed");
    assert!(e
        .why
        .describe(now)
        .contains("radar seen by kitchen: closed for 30 more min"));
    let later = Rules {
        now_unix: now + NON_OCCUPANCY_S,
        ..closed
    };
    assert!(choose(&home(&radios), &later)
        .expect("a channel")
        .excluded
        .iter()
        .all(|e| e.channel != 52));
}

#[test]
fn a_requested_channel_must_be_allowed_everywhere_at_that_width() {
    let radios = [
        ("primary", radio(&[], true, Width::Mhz80)),
        ("kitchen", radio(&[], false, Width::Mhz80)),
    ];
    let h = home(&radios);
    let ok = check(&h, &rules(), 44, None).expect("44 is everywhere");
    assert_eq!((ok.width, ok.center_freq_mhz), (Width::Mhz80, 5210));
    assert_eq!(
        check(&h, &rules(), 44, Some(Width::Mhz40)).map(|c| c.center_freq_mhz),
        Ok(5230)
    );

    let e = check(&h, &rules(), 149, None).expect_err("kitchen's radio lacks 149");
    assert!(
        e.to_string().contains("not allowed on kitchen's radio"),
        "{e}"
    );
    let e = check(&h, &rules(), 36, Some(Width::Mhz160)).expect_err("the radios stop at 80");
    assert!(
        matches!(
            e,
            Refusal::Width {
                widest: Width::Mhz80,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("at most 80 MHz"), "{e}");
    let e = check(&h, &rules(), 37, None).expect_err("not a channel");
    assert!(matches!(e, Refusal::NoSuchChannel { .. }), "{e}");
    let no_dfs = Rules {
        exclude_dfs: true,
        ..rules()
    };
    let e = check(&h, &no_dfs, 100, None).expect_err("DFS excluded");
    assert!(e.to_string().contains("DFS channels are excluded"), "{e}");
}

#[test]
fn nothing_to_choose_from_says_what_to_do() {
    assert_eq!(choose(&[], &rules()), Err(Refusal::NoSurveys));
    let mut r = radio(&[], false, Width::Mhz20);
    for c in &mut r.channels {
        c.allowed = c.dfs; // only DFS channels may be used
    }
    let radios = [("primary", r)];
    let no_dfs = Rules {
        exclude_dfs: true,
        ..rules()
    };
    let e = choose(&home(&radios), &no_dfs).expect_err("nothing left");
    assert!(e.to_string().contains("allowing them may help"), "{e}");
}

#[test]
fn blocks_follow_the_5ghz_channel_plan() {
    let f = |ch| channel_freq(Band::Ghz5, ch).expect("5 GHz");
    assert_eq!(
        block(f(44), Width::Mhz80),
        Some(vec![f(36), f(40), f(44), f(48)])
    );
    assert_eq!(block(f(104), Width::Mhz40), Some(vec![f(100), f(104)]));
    assert_eq!(
        block(f(157), Width::Mhz80),
        Some(vec![f(149), f(153), f(157), f(161)])
    );
    assert_eq!(block(f(120), Width::Mhz160).map(|b| b[0]), Some(f(100)));
    assert_eq!(block(2437, Width::Mhz40), None);
}
