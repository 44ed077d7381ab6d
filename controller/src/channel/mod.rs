//! The home's mesh channel: which channel (band, width) every router's mesh radio uses, chosen
//! from every router's survey. This module owns the rule; it is a pure function of the surveys
//! and the [`Rules`] (what a person excluded, which channels a radar closed), so the CLI, the
//! page and the coordinated move all ask it and none re-derives it. [`home`] keeps the
//! home's channel state (stored) and turns a choice into a move in the snapshot.
//!
//! The rule, in words a person reads back in `trellis channel`:
//! - A channel is a candidate only if every router's mesh radio may beacon on every 20 MHz
//!   channel of its block (regulatory domain and hardware), it is not DFS when DFS is
//!   excluded, and no radar closed it within the non-occupancy period.
//! - Its cost is the share of air taken by others (busy minus own transmissions) at the worst
//!   router, over the block, plus a tenth of the average: a mesh is as good as its worst hop,
//!   so one router that hears a loud neighbour network rules its channel out.
//! - Among costs within 5 points of each other, prefer 5 GHz, then the wider width, then a
//!   non-DFS channel (no radar risk, no listening period), then the lower channel.

use serde::Serialize;
use trellis_proto::channel::{channel_freq, channel_number, Band, RadioSurvey, Width};

pub mod cli;
pub mod home;

/// How long a channel stays closed after a radar on it: the regulatory non-occupancy period
/// (ETSI EN 301 893 and FCC part 15.407: 30 minutes).
pub const NON_OCCUPANCY_S: u64 = 30 * 60;

/// Cost counted for a channel a router's driver gives no times for: not known to be clear.
const UNMEASURED_COST: f64 = 0.5;

/// Costs this close (share of air) count as equal, so width and band decide.
const COST_BUCKET: f64 = 0.05;

/// A router's mesh radio as its last telemetry reported it.
#[derive(Debug, Clone, Copy)]
pub struct RouterSurvey<'a> {
    pub node: &'a str,
    pub radio: &'a RadioSurvey,
}

/// A channel closed by a radar until `until_unix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RadarClosure {
    pub freq_mhz: u32,
    pub until_unix: u64,
    /// The router whose radio detected it.
    pub seen_by: String,
}

/// What the person and the air decided beforehand.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub exclude_dfs: bool,
    pub radar: Vec<RadarClosure>,
    pub now_unix: u64,
}

/// One channel the mesh could use, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Candidate {
    pub channel: u16,
    pub freq_mhz: u32,
    pub band: Band,
    pub width: Width,
    /// The centre of the whole block (what `iw ... freq F WIDTH CENTER` takes).
    pub center_freq_mhz: u32,
    pub dfs: bool,
    /// Share of air taken by others, 0..=1, at the worst router plus a tenth of the average.
    pub cost: f64,
    /// The router where the block is busiest, and how busy (share of air), if measured.
    pub worst_node: String,
    pub worst_busy: Option<f64>,
}

impl Candidate {
    pub fn describe(&self) -> String {
        let busy = match self.worst_busy {
            Some(b) => format!("{:.0}% busy at {}", b * 100.0, self.worst_node),
            None => format!("not measured at {}", self.worst_node),
        };
        format!(
            "channel {} ({} MHz, {}, {}{}): {busy}",
            self.channel,
            self.freq_mhz,
            self.band.label(),
            self.width,
            if self.dfs { ", DFS" } else { "" }
        )
    }
}

/// Why a channel is not a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Exclusion {
    /// The router's radio lacks it or the regulatory domain forbids beaconing there.
    NotAllowed { node: String },
    /// A DFS channel, and the person excluded DFS.
    DfsExcluded,
    /// A radar closed it.
    Radar { seen_by: String, until_unix: u64 },
}

impl Exclusion {
    pub fn describe(&self, now_unix: u64) -> String {
        match self {
            Exclusion::NotAllowed { node } => format!("not allowed on {node}'s radio"),
            Exclusion::DfsExcluded => "DFS channel, and DFS channels are excluded".into(),
            Exclusion::Radar {
                seen_by,
                until_unix,
            } => format!(
                "radar seen by {seen_by}: closed for {} more min",
                until_unix.saturating_sub(now_unix).div_ceil(60)
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Excluded {
    pub channel: u16,
    pub freq_mhz: u32,
    #[serde(flatten)]
    pub why: Exclusion,
}

/// The choice: the best channel, the runner-up (on another block) and why.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Choice {
    pub best: Candidate,
    pub runner_up: Option<Candidate>,
    pub why: String,
    /// Every 20 MHz channel some router has that cannot be used, with the reason.
    pub excluded: Vec<Excluded>,
}

/// Why no channel, or not the requested one, can be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no router has reported a survey of its mesh radio yet; wait for telemetry (about a minute after the routers start) and ask again")]
    NoSurveys,
    #[error("no channel is allowed on every router's mesh radio{hint}")]
    NoCommonChannel { hint: String },
    #[error("channel {channel} is not a {band} channel of any router's mesh radio; give a channel number as `iw` prints it (for example 36 or 149)")]
    NoSuchChannel { channel: u16, band: &'static str },
    #[error("channel {channel}: {why}; nothing was changed (see `trellis channel` for the allowed channels)")]
    Excluded { channel: u16, why: String },
    #[error("channel {channel} cannot run at {width}: {why}; the widest it can do is {widest} (nothing was changed)")]
    Width {
        channel: u16,
        width: Width,
        widest: Width,
        why: String,
    },
}

/// Chooses the home's mesh channel. Pure: the same surveys and rules give the same choice.
pub fn choose(routers: &[RouterSurvey<'_>], rules: &Rules) -> Result<Choice, Refusal> {
    if routers.is_empty() {
        return Err(Refusal::NoSurveys);
    }
    let excluded = exclusions(routers, rules);
    let mut candidates: Vec<Candidate> = primaries(routers)
        .into_iter()
        .filter_map(|f| widest_candidate(routers, rules, f))
        .collect();
    candidates.sort_by(|a, b| {
        rank(a)
            .partial_cmp(&rank(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let Some(best) = candidates.first().cloned() else {
        let hint = if rules.exclude_dfs && excluded.iter().any(|e| e.why == Exclusion::DfsExcluded)
        {
            "; DFS channels are excluded, allowing them may help".to_string()
        } else {
            String::new()
        };
        return Err(Refusal::NoCommonChannel { hint });
    };
    let runner_up = candidates.iter().find(|c| !overlaps(c, &best)).cloned();
    let why = match &runner_up {
        Some(r) => format!(
            "{} is the clearest for every router; runner-up {}",
            best.describe(),
            r.describe()
        ),
        None => format!(
            "{} is the only channel every router can use",
            best.describe()
        ),
    };
    Ok(Choice {
        best,
        runner_up,
        why,
        excluded,
    })
}

/// Checks a channel a person asked for: allowed on every router at `width` (or the widest it
/// can do when `width` is `None`). The error says what is wrong; nothing is decided here.
pub fn check(
    routers: &[RouterSurvey<'_>],
    rules: &Rules,
    channel: u16,
    width: Option<Width>,
) -> Result<Candidate, Refusal> {
    let band = routers
        .first()
        .and_then(|r| r.radio.channels.iter().find_map(|c| Band::of(c.freq_mhz)))
        .ok_or(Refusal::NoSurveys)?;
    let freq = channel_freq(band, channel)
        .filter(|f| routers.iter().any(|r| r.radio.channel(*f).is_some()))
        .ok_or(Refusal::NoSuchChannel {
            channel,
            band: band.label(),
        })?;
    if let Some(e) = exclusions(routers, rules)
        .into_iter()
        .find(|e| e.freq_mhz == freq)
    {
        return Err(Refusal::Excluded {
            channel,
            why: e.why.describe(rules.now_unix),
        });
    }
    let widest = widest_candidate(routers, rules, freq).ok_or_else(|| Refusal::Excluded {
        channel,
        why: "not on every router's radio".into(),
    })?;
    match width {
        None => Ok(widest),
        Some(w) if w <= widest.width => {
            candidate(routers, rules, freq, w).ok_or_else(|| Refusal::Excluded {
                channel,
                why: "not on every router's radio".into(),
            })
        }
        Some(w) => Err(Refusal::Width {
            channel,
            width: w,
            widest: widest.width,
            why: width_limit(routers, rules, freq, w),
        }),
    }
}

/// What keeps `freq` from running at `width`, in words.
fn width_limit(routers: &[RouterSurvey<'_>], rules: &Rules, freq: u32, width: Width) -> String {
    let Some(block) = block(freq, width) else {
        return format!("the {} band has no {width} channel there", band_label(freq));
    };
    for r in routers {
        for f in &block {
            match r.radio.channel(*f) {
                None => return format!("{}'s radio has no channel at {f} MHz", r.node),
                Some(c) if c.max_width < width => {
                    return format!("{}'s radio can do at most {} there", r.node, c.max_width)
                }
                Some(c) if !usable(c, rules) => {
                    return format!(
                        "channel {} in the block cannot be used",
                        channel_number(*f).unwrap_or(0)
                    )
                }
                Some(_) => {}
            }
        }
    }
    "a channel in the block cannot be used".into()
}

fn band_label(freq: u32) -> &'static str {
    Band::of(freq).map(Band::label).unwrap_or("wifi")
}

/// The sort key: cost bucket, band preference, width (wider first), DFS last, frequency.
fn rank(c: &Candidate) -> (i64, u8, i8, bool, u32) {
    let band = match c.band {
        Band::Ghz5 => 0,
        Band::Ghz6 => 1,
        Band::Ghz2 => 2,
    };
    (
        (c.cost / COST_BUCKET).round() as i64,
        band,
        -(c.width.mhz() as i8 / 20),
        c.dfs,
        c.freq_mhz,
    )
}

fn overlaps(a: &Candidate, b: &Candidate) -> bool {
    let half = |c: &Candidate| c.width.mhz() / 2;
    let (a_lo, a_hi) = (a.center_freq_mhz - half(a), a.center_freq_mhz + half(a));
    let (b_lo, b_hi) = (b.center_freq_mhz - half(b), b.center_freq_mhz + half(b));
    a_lo < b_hi && b_lo < a_hi
}

/// Every 20 MHz channel the first router's mesh radio has, in order (others must have it too).
fn primaries(routers: &[RouterSurvey<'_>]) -> Vec<u32> {
    let mut f: Vec<u32> = routers
        .first()
        .map(|r| r.radio.channels.iter().map(|c| c.freq_mhz).collect())
        .unwrap_or_default();
    f.sort_unstable();
    f.dedup();
    f
}

fn usable(c: &trellis_proto::channel::ChannelSurvey, rules: &Rules) -> bool {
    c.allowed
        && !c.radar_unavailable
        && (!rules.exclude_dfs || !c.dfs)
        && rules
            .radar
            .iter()
            .all(|r| r.freq_mhz != c.freq_mhz || r.until_unix <= rules.now_unix)
}

/// The 20 MHz channels (centre frequencies) of the `width` block that holds `freq`.
pub fn block(freq: u32, width: Width) -> Option<Vec<u32>> {
    let band = Band::of(freq)?;
    let ch = channel_number(freq)?;
    let n = (width.mhz() / 20) as u16;
    if n == 1 {
        return Some(vec![freq]);
    }
    let base = match band {
        Band::Ghz2 => return None,
        Band::Ghz5 if (36..=144).contains(&ch) => 36,
        Band::Ghz5 if ch >= 149 => 149,
        Band::Ghz5 => return None,
        Band::Ghz6 => 1,
    };
    if (ch - base) % 4 != 0 {
        return None;
    }
    let start = base + ((ch - base) / (4 * n)) * 4 * n;
    (0..n)
        .map(|i| channel_freq(band, start + 4 * i))
        .collect::<Option<Vec<u32>>>()
}

/// The candidate on primary `freq` at `width`, if every router can use the whole block.
fn candidate(
    routers: &[RouterSurvey<'_>],
    rules: &Rules,
    freq: u32,
    width: Width,
) -> Option<Candidate> {
    let block = block(freq, width)?;
    let mut worst: Option<(f64, &str, Option<f64>)> = None;
    let mut sum = 0.0;
    let mut dfs = false;
    for r in routers {
        let mut router_cost = 0.0f64;
        let mut router_busy: Option<f64> = None;
        for f in &block {
            let c = r.radio.channel(*f)?;
            if !usable(c, rules) || c.max_width < width {
                return None;
            }
            dfs |= c.dfs;
            let busy = c.foreign_busy();
            router_cost = router_cost.max(busy.unwrap_or(UNMEASURED_COST));
            if let Some(b) = busy {
                router_busy = Some(router_busy.map_or(b, |m: f64| m.max(b)));
            }
        }
        sum += router_cost;
        if worst.is_none_or(|(w, _, _)| router_cost > w) {
            worst = Some((router_cost, r.node, router_busy));
        }
    }
    let (worst_cost, worst_node, worst_busy) = worst?;
    let first = *block.first()?;
    let last = *block.last()?;
    Some(Candidate {
        channel: channel_number(freq)?,
        freq_mhz: freq,
        band: Band::of(freq)?,
        width,
        center_freq_mhz: (first + last) / 2,
        dfs,
        cost: worst_cost + sum / routers.len() as f64 / 10.0,
        worst_node: worst_node.to_string(),
        worst_busy,
    })
}

/// The widest candidate on primary `freq`.
fn widest_candidate(routers: &[RouterSurvey<'_>], rules: &Rules, freq: u32) -> Option<Candidate> {
    Width::ALL
        .into_iter()
        .rev()
        .find_map(|w| candidate(routers, rules, freq, w))
}

fn exclusions(routers: &[RouterSurvey<'_>], rules: &Rules) -> Vec<Excluded> {
    let mut out: Vec<Excluded> = Vec::new();
    let mut all: Vec<u32> = routers
        .iter()
        .flat_map(|r| r.radio.channels.iter().map(|c| c.freq_mhz))
        .collect();
    all.sort_unstable();
    all.dedup();
    for f in all {
        let Some(channel) = channel_number(f) else {
            continue;
        };
        let why = if let Some(r) = rules
            .radar
            .iter()
            .find(|r| r.freq_mhz == f && r.until_unix > rules.now_unix)
        {
            Some(Exclusion::Radar {
                seen_by: r.seen_by.clone(),
                until_unix: r.until_unix,
            })
        } else if let Some(r) = routers
            .iter()
            .find(|r| r.radio.channel(f).is_some_and(|c| c.radar_unavailable))
        {
            Some(Exclusion::Radar {
                seen_by: r.node.to_string(),
                until_unix: rules.now_unix + NON_OCCUPANCY_S,
            })
        } else if let Some(r) = routers
            .iter()
            .find(|r| r.radio.channel(f).is_none_or(|c| !c.allowed))
        {
            Some(Exclusion::NotAllowed {
                node: r.node.to_string(),
            })
        } else if rules.exclude_dfs
            && routers
                .iter()
                .any(|r| r.radio.channel(f).is_some_and(|c| c.dfs))
        {
            Some(Exclusion::DfsExcluded)
        } else {
            None
        };
        if let Some(why) = why {
            out.push(Excluded {
                channel,
                freq_mhz: f,
                why,
            });
        }
    }
    out
}

/// Most radar closures remembered (each lasts [`NON_OCCUPANCY_S`]; a 5 GHz radio has ~20 DFS
/// channels).
pub const MAX_RADAR_CLOSURES: usize = 32;

/// The home's channel state, stored (one JSON record): the channel in the snapshot, what the
/// person decided, which channels a radar closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChannelState {
    #[serde(default)]
    pub channel: Option<trellis_proto::channel::MeshChannel>,
    #[serde(default)]
    pub exclude_dfs: bool,
    /// At most [`MAX_RADAR_CLOSURES`].
    #[serde(default)]
    pub radar: Vec<RadarClosure>,
}

#[cfg(test)]
mod home_tests;
#[cfg(test)]
mod tests;
