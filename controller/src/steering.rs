//! Client steering, decided by the controller (issue 15): a pure state machine, time passed
//! in, no I/O. It owns the steering rules and each device's bounded steering history.
//!
//! Inputs, each round: what every router reports (its associated clients with signal, band
//! and band capability, the clients it hears, its access points), and the outcomes of the
//! requests it sent. Outputs: 802.11v BSS transition requests ([`SteerRequest`], with
//! disassociation imminent and a timer, never a deauthentication) for the router the client
//! is on, which it receives in its next telemetry answer.
//!
//! The rules, in the order they are asked ([`Steering::decide`]):
//! 1. the iot network, and clients that only do 2.4 GHz, are never steered;
//! 2. a client that declined (or ignored) twice in a row is left alone for a while;
//! 3. one request at a time: a client with a request outstanding is waiting for its answer;
//! 4. no ping-pong: a client that moved (steered or by itself) stays put for a hold time;
//! 5. sticky client: on an access point weaker than [`Config::weak_dbm`] while another
//!    access point of the same network hears it at least [`Config::margin_db`] better
//!    (the margin is the hysteresis: a move has to be clearly better to be asked for);
//! 6. band: a dual-band client on 2.4 GHz that a 5 GHz access point of its network hears
//!    at [`Config::good_5g_dbm`] or better is asked to move there.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use trellis_proto::home_wifi::{
    AccessPointReport, Band, HeardClient, NetworkKind, SteerOutcome, SteerRequest, SteerResult,
};
use trellis_proto::policy::MacAddr;
use trellis_proto::NodeName;

/// The thresholds of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// An access point this weak (dBm) or weaker lets the client be steered away.
    pub weak_dbm: i32,
    /// How much better (dB) another access point must hear the client.
    pub margin_db: i32,
    /// A 5 GHz access point that hears a dual-band client this well (dBm) takes it.
    pub good_5g_dbm: i32,
    /// A report of hearing a client older than this (ms) is not used.
    pub heard_max_age_ms: u32,
    /// After a move, the client stays put this long (ms): no ping-pong.
    pub hold_ms: u64,
    /// An outstanding request with no outcome after this long (ms) counts as ignored.
    pub answer_timeout_ms: u64,
    /// Declines (or ignores) in a row after which the client is left alone...
    pub declines_to_back_off: u32,
    /// ...for this long (ms).
    pub back_off_ms: u64,
    /// Beacon intervals until the access point would disassociate (hostapd `disassoc_timer`;
    /// 100 TU ≈ 10 s at the usual 102.4 ms interval).
    pub disassoc_timer_tbtt: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            weak_dbm: -70,
            margin_db: 8,
            good_5g_dbm: -65,
            heard_max_age_ms: 10_000,
            hold_ms: 5 * 60_000,
            answer_timeout_ms: 30_000,
            declines_to_back_off: 2,
            back_off_ms: 30 * 60_000,
            disassoc_timer_tbtt: 100,
        }
    }
}

/// Devices whose steering state is kept (the least recently seen goes first).
pub const MAX_DEVICES: usize = 512;
/// Records kept per device.
pub const MAX_HISTORY: usize = 16;
/// Requests waiting for one router's next telemetry answer.
pub const MAX_PENDING_PER_ROUTER: usize = 16;

/// "Now", passed in: a monotonic millisecond clock for the rules, and unix seconds for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub ms: u64,
    pub unix: u64,
}

/// A client associated with one of a router's access points, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Associated {
    pub mac: MacAddr,
    pub interface: String,
    pub network: NetworkKind,
    pub band: Band,
    pub signal_dbm: i32,
    /// `Some(false)`: it said it cannot do 5 GHz; `None`: it did not say.
    pub dual_band: Option<bool>,
}

/// One router's report, for one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterView {
    pub node: NodeName,
    pub associated: Vec<Associated>,
    pub heard: Vec<HeardClient>,
    pub access_points: Vec<AccessPointReport>,
}

/// An access point a client could be on, with how well its router hears the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub node: NodeName,
    pub bssid: MacAddr,
    pub band: Band,
    pub signal_dbm: i32,
}

/// What the controller decided for a client, with the figures it decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at_unix: u64,
    pub node: NodeName,
    pub network: NetworkKind,
    pub band: Band,
    pub signal_dbm: i32,
    /// The best other access point that hears it, if any.
    #[serde(default)]
    pub best_other: Option<Candidate>,
    /// Where it was asked to go (`None`: it stays).
    #[serde(default)]
    pub steered_to: Option<Candidate>,
    pub reason: String,
}

impl Decision {
    /// One line for `trellis why-roam`.
    pub fn explain(&self) -> String {
        let here = format!(
            "on {} ({}, {} network) at {} dBm",
            self.node, self.band, self.network, self.signal_dbm
        );
        let other = match &self.best_other {
            Some(c) => format!(
                "; best other: {} ({}) hears it at {} dBm",
                c.node, c.band, c.signal_dbm
            ),
            None => "; no other access point hears it".into(),
        };
        match &self.steered_to {
            Some(c) => format!(
                "steered to {} ({}): {}. It was {here}{other}",
                c.node, c.band, self.reason
            ),
            None => format!("stays: {}. It is {here}{other}", self.reason),
        }
    }
}

/// What happened to a client, kept per device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Record {
    /// The controller asked it to move.
    Steered {
        at_unix: u64,
        id: u64,
        from: NodeName,
        to: NodeName,
        reason: String,
    },
    /// How it answered.
    Answered {
        at_unix: u64,
        id: u64,
        result: SteerResult,
        #[serde(default)]
        status_code: Option<u8>,
    },
    /// It moved from one access point to another (asked or by itself).
    Roamed {
        at_unix: u64,
        from: NodeName,
        from_band: Band,
        to: NodeName,
        to_band: Band,
        asked: bool,
    },
}

/// Steers and their outcomes, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub steered: u32,
    pub accepted: u32,
    pub declined: u32,
    pub ignored: u32,
    pub failed: u32,
    pub roamed: u32,
}

/// A device's steering history, as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSteering {
    pub mac: String,
    pub counts: Counts,
    /// Oldest first.
    pub history: Vec<Record>,
    #[serde(default)]
    pub last_decision: Option<Decision>,
    /// The last decision that asked it to move.
    #[serde(default)]
    pub last_steer: Option<Decision>,
    /// Unix seconds until which it is left alone after declining, if it is.
    #[serde(default)]
    pub left_alone_until_unix: Option<u64>,
}

#[derive(Debug, Clone)]
struct Outstanding {
    id: u64,
    target: NodeName,
    sent_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct DeviceState {
    seen_ms: u64,
    at: Option<(NodeName, String, Band)>,
    outstanding: Option<Outstanding>,
    declines_in_row: u32,
    left_alone_until: Option<(u64, u64)>,
    moved_ms: Option<u64>,
    counts: Counts,
    history: VecDeque<Record>,
    last_decision: Option<Decision>,
    last_steer: Option<Decision>,
}

impl DeviceState {
    fn push(&mut self, r: Record) {
        if self.history.len() == MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(r);
    }
}

/// The steering state of the home (RAM only).
#[derive(Debug, Default)]
pub struct Steering {
    pub config: Config,
    next_id: u64,
    devices: BTreeMap<MacAddr, DeviceState>,
    pending: BTreeMap<NodeName, Vec<SteerRequest>>,
}

impl Steering {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// The requests waiting for `node`'s telemetry answer (taken: each is sent once). A
    /// request whose answer already timed out is not sent late.
    pub fn take_for(&mut self, node: &NodeName) -> Vec<SteerRequest> {
        let mut out = self.pending.remove(node).unwrap_or_default();
        out.retain(|r| self.is_outstanding(r));
        out
    }

    fn is_outstanding(&self, r: &SteerRequest) -> bool {
        self.devices
            .get(&r.station)
            .and_then(|d| d.outstanding.as_ref())
            .is_some_and(|o| o.id == r.id)
    }

    pub fn device(&self, mac: &MacAddr) -> Option<DeviceSteering> {
        self.devices.get(mac).map(|d| DeviceSteering {
            mac: mac.to_string(),
            counts: d.counts,
            history: d.history.iter().cloned().collect(),
            last_decision: d.last_decision.clone(),
            last_steer: d.last_steer.clone(),
            left_alone_until_unix: d.left_alone_until.map(|(_, unix)| unix),
        })
    }

    /// How a client answered a request `node` sent.
    pub fn outcome(&mut self, now: Now, node: &NodeName, o: &SteerOutcome) {
        let Some(d) = self.devices.get_mut(&o.station) else {
            return;
        };
        let Some(out) = d.outstanding.as_ref().filter(|out| out.id == o.id) else {
            return; // not ours, or already timed out
        };
        let _ = (node, &out.target);
        d.outstanding = None;
        d.push(Record::Answered {
            at_unix: now.unix,
            id: o.id,
            result: o.result,
            status_code: o.status_code,
        });
        match o.result {
            SteerResult::Accepted => {
                d.counts.accepted += 1;
                d.declines_in_row = 0;
                d.moved_ms = Some(now.ms);
            }
            SteerResult::Declined | SteerResult::Ignored => {
                if o.result == SteerResult::Declined {
                    d.counts.declined += 1;
                } else {
                    d.counts.ignored += 1;
                }
                d.declines_in_row += 1;
                if d.declines_in_row >= self.config.declines_to_back_off {
                    d.declines_in_row = 0;
                    d.left_alone_until = Some((
                        now.ms + self.config.back_off_ms,
                        now.unix + self.config.back_off_ms / 1000,
                    ));
                }
            }
            SteerResult::Failed => d.counts.failed += 1,
        }
    }

    /// One round over every router's latest report: track roams, decide each associated
    /// client, queue the requests for the routers the clients are on. Returns the requests
    /// made this round.
    pub fn decide(&mut self, now: Now, routers: &[RouterView]) -> Vec<(NodeName, SteerRequest)> {
        let cfg = self.config;
        let mut made = Vec::new();
        for r in routers {
            for c in &r.associated {
                let candidates = candidates(&cfg, routers, c, &r.node);
                let here_bssid = r
                    .access_points
                    .iter()
                    .find(|a| a.interface == c.interface)
                    .map(|a| a.bssid);
                let d = self.devices.entry(c.mac).or_default();
                d.seen_ms = now.ms;
                // A roam: it is on another access point than last round.
                let place = (r.node.clone(), c.interface.clone(), c.band);
                if let Some(prev) = d.at.replace(place.clone()) {
                    if prev.0 != place.0 || prev.2 != place.2 {
                        let asked = d.outstanding.as_ref().is_some_and(|o| o.target == place.0)
                            || matches!(
                                d.history.back(),
                                Some(Record::Answered {
                                    result: SteerResult::Accepted,
                                    ..
                                })
                            );
                        d.counts.roamed += 1;
                        d.moved_ms = Some(now.ms);
                        d.push(Record::Roamed {
                            at_unix: now.unix,
                            from: prev.0,
                            from_band: prev.2,
                            to: place.0.clone(),
                            to_band: place.2,
                            asked,
                        });
                    }
                }
                // An answer that never came is an ignore.
                if let Some(out) = d.outstanding.clone() {
                    if now.ms.saturating_sub(out.sent_ms) >= cfg.answer_timeout_ms {
                        let o = SteerOutcome {
                            id: out.id,
                            station: c.mac,
                            result: SteerResult::Ignored,
                            status_code: None,
                        };
                        let node = r.node.clone();
                        self.outcome(now, &node, &o);
                        self.prune_pending();
                    }
                }
                let d = self.devices.entry(c.mac).or_default();
                let best_other = candidates.iter().max_by_key(|x| x.signal_dbm).cloned();
                let (target, reason) = rule(&cfg, now, d, c, &candidates);
                let mut decision = Decision {
                    at_unix: now.unix,
                    node: r.node.clone(),
                    network: c.network,
                    band: c.band,
                    signal_dbm: c.signal_dbm,
                    best_other,
                    steered_to: None,
                    reason,
                };
                if let Some(t) = target {
                    let ap = routers
                        .iter()
                        .find(|x| x.node == t.node)
                        .and_then(|x| x.access_points.iter().find(|a| a.bssid == t.bssid));
                    let queue = self.pending.entry(r.node.clone()).or_default();
                    if queue.len() < MAX_PENDING_PER_ROUTER && here_bssid != Some(t.bssid) {
                        self.next_id += 1;
                        let req = SteerRequest {
                            id: self.next_id,
                            station: c.mac,
                            interface: c.interface.clone(),
                            target_bssid: t.bssid,
                            target_node: t.node.clone(),
                            target_neighbour_report: ap
                                .and_then(|a| a.neighbour_report.clone())
                                .unwrap_or_default(),
                            disassoc_timer_tbtt: cfg.disassoc_timer_tbtt,
                        };
                        queue.push(req.clone());
                        d.outstanding = Some(Outstanding {
                            id: req.id,
                            target: t.node.clone(),
                            sent_ms: now.ms,
                        });
                        d.counts.steered += 1;
                        d.push(Record::Steered {
                            at_unix: now.unix,
                            id: req.id,
                            from: r.node.clone(),
                            to: t.node.clone(),
                            reason: decision.reason.clone(),
                        });
                        decision.steered_to = Some(t);
                        d.last_steer = Some(decision.clone());
                        made.push((r.node.clone(), req));
                    }
                }
                d.last_decision = Some(decision);
            }
        }
        self.evict();
        made
    }

    /// Drop queued requests whose answer already timed out.
    fn prune_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        for queue in pending.values_mut() {
            queue.retain(|r| self.is_outstanding(r));
        }
        pending.retain(|_, q| !q.is_empty());
        self.pending = pending;
    }

    fn evict(&mut self) {
        while self.devices.len() > MAX_DEVICES {
            let Some(oldest) = self
                .devices
                .iter()
                .min_by_key(|(_, d)| d.seen_ms)
                .map(|(m, _)| *m)
            else {
                break;
            };
            self.devices.remove(&oldest);
        }
    }
}

/// The other access points of the client's network whose router hears it recently on their
/// band, with that signal.
fn candidates(
    cfg: &Config,
    routers: &[RouterView],
    c: &Associated,
    here: &NodeName,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for r in routers {
        for ap in r.access_points.iter().filter(|a| a.network == c.network) {
            if r.node == *here && ap.interface == c.interface {
                continue;
            }
            let heard = r
                .heard
                .iter()
                .filter(|h| h.mac == c.mac && h.band == ap.band && h.age_ms <= cfg.heard_max_age_ms)
                .map(|h| h.signal_dbm)
                .max();
            if let Some(signal_dbm) = heard {
                out.push(Candidate {
                    node: r.node.clone(),
                    bssid: ap.bssid,
                    band: ap.band,
                    signal_dbm,
                });
            }
        }
    }
    out
}

/// The rules, in order: where to send the client (if anywhere) and why.
fn rule(
    cfg: &Config,
    now: Now,
    d: &DeviceState,
    c: &Associated,
    candidates: &[Candidate],
) -> (Option<Candidate>, String) {
    if !c.network.steerable() {
        return (None, format!("the {} network is never steered", c.network));
    }
    if c.dual_band == Some(false) {
        return (None, "it only does 2.4 GHz, so it is never steered".into());
    }
    if let Some((until, _)) = d.left_alone_until {
        if now.ms < until {
            return (
                None,
                format!(
                    "it declined twice, so it is left alone for another {} min",
                    (until - now.ms).div_ceil(60_000)
                ),
            );
        }
    }
    if d.outstanding.is_some() {
        return (None, "waiting for its answer to the last request".into());
    }
    if let Some(moved) = d.moved_ms {
        let since = now.ms.saturating_sub(moved);
        if since < cfg.hold_ms {
            return (
                None,
                format!(
                    "it moved {} s ago; it stays put for {} s after a move (no ping-pong)",
                    since / 1000,
                    cfg.hold_ms / 1000
                ),
            );
        }
    }
    // Sticky: weak here, clearly better elsewhere.
    if c.signal_dbm <= cfg.weak_dbm {
        let better = candidates
            .iter()
            .filter(|x| x.signal_dbm >= c.signal_dbm + cfg.margin_db)
            .filter(|x| x.band == Band::G2 || c.dual_band == Some(true) || c.band == Band::G5)
            .max_by_key(|x| (x.signal_dbm, x.band == Band::G5));
        if let Some(t) = better {
            let reason = format!(
                "{} dBm here is weak (≤ {} dBm) and {} hears it at {} dBm, {} dB better (margin {} dB)",
                c.signal_dbm,
                cfg.weak_dbm,
                t.node,
                t.signal_dbm,
                t.signal_dbm - c.signal_dbm,
                cfg.margin_db
            );
            return (Some(t.clone()), reason);
        }
    }
    // Band: a dual-band client on 2.4 GHz that a 5 GHz access point hears well.
    if c.band == Band::G2 && c.dual_band == Some(true) {
        let five = candidates
            .iter()
            .filter(|x| x.band == Band::G5 && x.signal_dbm >= cfg.good_5g_dbm)
            .max_by_key(|x| x.signal_dbm);
        if let Some(t) = five {
            let reason = format!(
                "it can do 5 GHz and {} hears it there at {} dBm (≥ {} dBm)",
                t.node, t.signal_dbm, cfg.good_5g_dbm
            );
            return (Some(t.clone()), reason);
        }
    }
    if c.signal_dbm > cfg.weak_dbm {
        (
            None,
            format!(
                "{} dBm here is good enough (> {} dBm)",
                c.signal_dbm, cfg.weak_dbm
            ),
        )
    } else {
        (
            None,
            format!(
                "{} dBm here is weak, but no access point of its network hears it {} dB better",
                c.signal_dbm, cfg.margin_db
            ),
        )
    }
}

#[cfg(test)]
mod tests;
