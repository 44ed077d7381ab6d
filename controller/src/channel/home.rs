//! The home's channel as the controller runs it: gathers every live router's mesh-radio survey
//! (from telemetry), asks the rule ([`super::choose`], [`super::check`]) and turns a choice
//! into a move: a new [`MeshChannel`] generation in the snapshot, timed so every router
//! switches together. Radar reports close a channel for [`super::NON_OCCUPANCY_S`] and move
//! the mesh off it. Bad requests change nothing.

use serde::{Deserialize, Serialize};
use trellis_proto::channel::{channel_number, MeshChannel, RadioSurvey, Width};

use super::{
    check, choose, Candidate, ChannelState, Choice, RadarClosure, Refusal, RouterSurvey, Rules,
    MAX_RADAR_CLOSURES, NON_OCCUPANCY_S,
};
use crate::error::{HomeError, Kind, Result};
use crate::home::Home;

/// How far ahead of the switch a move is published: the snapshot reaches every agent's long
/// poll within a second or two; the rest is margin for a slow router.
pub const MOVE_LEAD_S: u64 = 5;

/// One router's line in `trellis channel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterChannel {
    pub node: String,
    /// The router's mesh radio survey; `None` when it reported none (not a mesh router, an old
    /// agent, or silent).
    pub radio: Option<RadioSurvey>,
    /// The channel its mesh radio is on now (the survey's in-use channel).
    pub on_freq_mhz: Option<u32>,
}

/// What `trellis channel` and the page show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelView {
    /// The channel in the snapshot (`None`: routers keep their set-up channel).
    pub current: Option<MeshChannel>,
    pub exclude_dfs: bool,
    /// Channels a radar closed, still closed.
    pub radar: Vec<RadarClosure>,
    pub routers: Vec<RouterChannel>,
    /// What the rule would choose now, or why it cannot.
    pub choice: Option<Choice>,
    pub choice_error: Option<String>,
}

/// `POST /v1/admin/channel` bodies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ChannelRequest {
    /// Move to this channel (number as `iw` prints it), at this width or the widest possible.
    Set {
        channel: u16,
        #[serde(default)]
        width: Option<Width>,
    },
    /// Move to what the rule chooses now.
    Pick,
    /// Exclude (or allow again) DFS channels; when excluding while on one, move off it.
    ExcludeDfs { exclude: bool },
}

/// Keeps a reported survey within the protocol's bounds (RAM stays bounded whatever an agent
/// sends).
pub fn bound_survey(survey: &mut Vec<RadioSurvey>) {
    survey.truncate(trellis_proto::channel::MAX_SURVEY_RADIOS);
    for r in survey {
        r.channels
            .truncate(trellis_proto::channel::MAX_SURVEY_CHANNELS);
        if r.radio.len() > 16 {
            r.radio = crate::home::capped(&r.radio, 16).to_string();
        }
    }
}

impl From<Refusal> for HomeError {
    fn from(e: Refusal) -> Self {
        let kind = match e {
            Refusal::NoSurveys => Kind::Conflict,
            _ => Kind::BadRequest,
        };
        HomeError::new(kind, e.to_string())
    }
}

impl Home {
    /// Every enrolled, heard-from router's mesh radio survey, by name.
    fn mesh_surveys(&self) -> Result<Vec<(String, Option<RadioSurvey>)>> {
        let silent = self.silent_nodes();
        let mut out = Vec::new();
        for row in self.store.nodes()? {
            if row.revoked_at.is_some() {
                continue;
            }
            let radio = if silent.contains(&row.name) {
                None
            } else {
                self.telemetry(&row.name)
                    .and_then(|t| t.survey.into_iter().find(|r| r.mesh))
            };
            out.push((row.name.to_string(), radio));
        }
        Ok(out)
    }

    fn channel_rules(state: &ChannelState, now_unix: u64) -> Rules {
        Rules {
            exclude_dfs: state.exclude_dfs,
            radar: state.radar.clone(),
            now_unix,
        }
    }

    /// The survey per router, the current channel, and what the rule would choose.
    pub fn channel_view(&self) -> Result<ChannelView> {
        let now = crate::ca::unix_now();
        let state = self.store.channel_state()?;
        let surveys = self.mesh_surveys()?;
        let measured = measured(&surveys);
        let (choice, choice_error) = match choose(&measured, &Self::channel_rules(&state, now)) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(ChannelView {
            current: state.channel.clone(),
            exclude_dfs: state.exclude_dfs,
            radar: state
                .radar
                .iter()
                .filter(|r| r.until_unix > now)
                .cloned()
                .collect(),
            routers: surveys
                .iter()
                .map(|(n, r)| RouterChannel {
                    node: n.clone(),
                    on_freq_mhz: r
                        .as_ref()
                        .and_then(|r| r.channels.iter().find(|c| c.in_use))
                        .map(|c| c.freq_mhz),
                    radio: r.clone(),
                })
                .collect(),
            choice,
            choice_error,
        })
    }

    /// Carries out a `POST /v1/admin/channel`.
    pub fn channel_request(&self, req: &ChannelRequest) -> Result<ChannelView> {
        match req {
            ChannelRequest::Set { channel, width } => {
                self.set_channel(*channel, *width)?;
            }
            ChannelRequest::Pick => {
                self.pick_channel("chosen from the survey on request")?;
            }
            ChannelRequest::ExcludeDfs { exclude } => self.set_exclude_dfs(*exclude)?,
        }
        self.channel_view()
    }

    /// Moves the mesh to `channel` after checking every router's radio allows it at `width`.
    pub fn set_channel(&self, channel: u16, width: Option<Width>) -> Result<MeshChannel> {
        let now = crate::ca::unix_now();
        let state = self.store.channel_state()?;
        let surveys = self.mesh_surveys()?;
        let measured = measured(&surveys);
        let c = check(&measured, &Self::channel_rules(&state, now), channel, width)?;
        self.move_to(state, &c, format!("set by a person: {}", c.describe()), now)
    }

    /// Moves the mesh to the rule's choice (nothing moves when it is the current channel).
    pub fn pick_channel(&self, reason: &str) -> Result<MeshChannel> {
        let now = crate::ca::unix_now();
        let state = self.store.channel_state()?;
        let surveys = self.mesh_surveys()?;
        let measured = measured(&surveys);
        let choice = choose(&measured, &Self::channel_rules(&state, now))?;
        self.move_to(
            state,
            &choice.best,
            format!("{reason}: {}", choice.why),
            now,
        )
    }

    /// A person excludes DFS channels (or allows them again). Excluding while the mesh is on
    /// a DFS channel moves it off.
    pub fn set_exclude_dfs(&self, exclude: bool) -> Result<()> {
        let mut state = self.store.channel_state()?;
        state.exclude_dfs = exclude;
        self.store.put_channel_state(&state)?;
        let on_dfs = state.channel.as_ref().is_some_and(|c| {
            self.mesh_surveys().ok().is_some_and(|s| {
                s.iter().any(|(_, r)| {
                    r.as_ref()
                        .and_then(|r| r.channel(c.freq_mhz))
                        .is_some_and(|ch| ch.dfs)
                })
            })
        });
        if exclude && on_dfs {
            self.pick_channel("DFS channels excluded")?;
        }
        Ok(())
    }

    /// A router's radio detected a radar on `freq_mhz`: the channel (the mesh's whole block
    /// when it is in it) closes for the non-occupancy period, the event is recorded, and the whole mesh moves to the best
    /// channel left (when it was on the closed one).
    pub fn radar_detected(&self, node: &str, freq_mhz: u32) -> Result<()> {
        let now = crate::ca::unix_now();
        let mut state = self.store.channel_state()?;
        // A radar is detected on the whole operating block (cfg80211 marks every 20 MHz
        // channel of the chandef unavailable), so the whole block closes.
        let block = state
            .channel
            .as_ref()
            .and_then(|c| super::block(c.freq_mhz, c.width))
            .filter(|b| b.contains(&freq_mhz));
        let on_it = block.is_some();
        let closed = block.unwrap_or_else(|| vec![freq_mhz]);
        state
            .radar
            .retain(|r| r.until_unix > now && !closed.contains(&r.freq_mhz));
        for f in &closed {
            if state.radar.len() >= MAX_RADAR_CLOSURES {
                state.radar.remove(0);
            }
            state.radar.push(RadarClosure {
                freq_mhz: *f,
                until_unix: now + NON_OCCUPANCY_S,
                seen_by: node.to_string(),
            });
        }
        self.store.put_channel_state(&state)?;
        let ch = channel_number(freq_mhz).unwrap_or(0);
        self.record(
            "radar",
            format!(
                "{node} detected a radar on channel {ch} ({freq_mhz} MHz); it stays closed for {} min",
                NON_OCCUPANCY_S / 60
            ),
        );
        if on_it || state.channel.is_none() {
            match self.pick_channel(&format!("radar on channel {ch}")) {
                Ok(_) => {}
                Err(e) => self.record(
                    "radar",
                    format!("the mesh cannot leave channel {ch}: {}", e.message),
                ),
            }
        }
        Ok(())
    }

    /// The radars a router's telemetry lists: each one not handled yet (no closure of its
    /// channel made at or after it) closes the channel and moves the mesh. At most
    /// [`trellis_proto::channel::MAX_RADAR_SEEN`] are looked at; failures are logged.
    pub fn radar_reports(&self, node: &str, seen: &[trellis_proto::channel::RadarSeen]) {
        let now = crate::ca::unix_now();
        let Ok(state) = self.store.channel_state() else {
            return;
        };
        for r in seen.iter().take(trellis_proto::channel::MAX_RADAR_SEEN) {
            // The agent's clock may be off; a sighting "from the future" counts as now.
            let at = r.at_unix.min(now);
            let handled = state
                .radar
                .iter()
                .any(|c| c.freq_mhz == r.freq_mhz && c.until_unix >= at + NON_OCCUPANCY_S);
            if handled || at + NON_OCCUPANCY_S <= now {
                continue;
            }
            if let Err(e) = self.radar_detected(node, r.freq_mhz) {
                tracing::warn!(%node, freq = r.freq_mhz, error = %e, "radar report not handled");
            }
            return; // one move per report; the next report handles any other
        }
    }

    fn move_to(
        &self,
        mut state: ChannelState,
        c: &Candidate,
        reason: String,
        now: u64,
    ) -> Result<MeshChannel> {
        if let Some(cur) = &state.channel {
            if cur.freq_mhz == c.freq_mhz
                && cur.width == c.width
                && cur.center_freq_mhz == c.center_freq_mhz
            {
                return Ok(cur.clone());
            }
        }
        let next = MeshChannel {
            freq_mhz: c.freq_mhz,
            width: c.width,
            center_freq_mhz: c.center_freq_mhz,
            generation: state.channel.as_ref().map_or(1, |c| c.generation + 1),
            switch_at_unix: now + MOVE_LEAD_S,
            reason: reason.clone(),
        };
        state.channel = Some(next.clone());
        self.store.put_channel_state(&state)?;
        self.publish()?;
        self.record(
            "channel",
            format!(
                "the mesh moves to channel {} ({}) in {MOVE_LEAD_S} s: {reason}",
                c.channel, c.width
            ),
        );
        tracing::info!(channel = c.channel, width = %c.width, generation = next.generation, %reason, "mesh channel move");
        Ok(next)
    }
}

/// The routers of `surveys` that measured their mesh radio: what the channel rule weighs.
fn measured(surveys: &[(String, Option<RadioSurvey>)]) -> Vec<RouterSurvey<'_>> {
    surveys
        .iter()
        .filter_map(|(n, r)| {
            Some(RouterSurvey {
                node: n,
                radio: r.as_ref()?,
            })
        })
        .collect()
}
