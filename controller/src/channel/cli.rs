//! `trellis channel`: the subcommands and the text they print (the request goes through the
//! admin API, [`crate::api::channel`]).

use clap::Subcommand;
use trellis_proto::channel::{channel_number, Width};

use super::home::{ChannelRequest, ChannelView};

#[derive(Debug, Subcommand)]
pub enum ChannelChange {
    /// Move the whole mesh to CHANNEL (the number `iw` prints: 36, 149).
    Set {
        channel: u16,
        /// 20, 40, 80 or 160 MHz; the widest every router's radio can do there if left out.
        #[arg(long, value_parser = Width::parse)]
        width: Option<Width>,
    },
    /// Move the whole mesh to the channel the survey chooses now.
    Pick,
    /// `exclude` leaves DFS (radar) channels out of every choice, `allow` lets them back.
    Dfs {
        #[arg(value_parser = ["exclude", "allow"])]
        setting: String,
    },
}

/// The admin API request for a subcommand (`None`: just show).
pub fn request(change: Option<&ChannelChange>) -> Option<ChannelRequest> {
    Some(match change? {
        ChannelChange::Set { channel, width } => ChannelRequest::Set {
            channel: *channel,
            width: *width,
        },
        ChannelChange::Pick => ChannelRequest::Pick,
        ChannelChange::Dfs { setting } => ChannelRequest::ExcludeDfs {
            exclude: setting == "exclude",
        },
    })
}

fn pct(v: Option<f64>) -> String {
    v.map(|b| format!("{:.0}%", b * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// What `trellis channel` prints.
pub fn render(v: &ChannelView, change: Option<&ChannelChange>, now: u64) -> String {
    let mut out = String::new();
    if let (Some(ChannelChange::Set { .. } | ChannelChange::Pick), Some(c)) = (change, &v.current) {
        let left = c.switch_at_unix.saturating_sub(now);
        out += &format!(
            "moving the mesh to channel {} ({}){}\n\n",
            c.channel().unwrap_or(0),
            c.width,
            if left > 0 {
                format!(" in {left} s")
            } else {
                String::new()
            }
        );
    }
    match &v.current {
        Some(c) => {
            out += &format!(
                "mesh channel:  {} ({} MHz, {}) — {}\n",
                c.channel().unwrap_or(0),
                c.freq_mhz,
                c.width,
                c.reason
            )
        }
        None => out += "mesh channel:  as each router was set up (none chosen yet)\n",
    }
    out += &format!(
        "DFS channels:  {}\n",
        if v.exclude_dfs { "excluded" } else { "allowed" }
    );
    for r in &v.radar {
        out += &format!(
            "radar:         channel {} seen by {}, closed for {} more min\n",
            channel_number(r.freq_mhz).unwrap_or(0),
            r.seen_by,
            r.until_unix.saturating_sub(now).div_ceil(60)
        );
    }
    match (&v.choice, &v.choice_error) {
        (Some(c), _) => {
            out += &format!("choice:        {}\n", c.best.describe());
            if let Some(r) = &c.runner_up {
                out += &format!("runner-up:     {}\n", r.describe());
            }
        }
        (None, Some(e)) => out += &format!("choice:        none: {e}\n"),
        (None, None) => {}
    }
    out +=
        "\nsurvey (share of air others use; * = the radio is on it, D = DFS, x = not allowed):\n";
    for r in &v.routers {
        let Some(radio) = &r.radio else {
            out += &format!("  {:<16} no survey reported\n", r.node);
            continue;
        };
        let cells: Vec<String> = radio
            .channels
            .iter()
            .map(|c| {
                format!(
                    "{}{}{}:{}",
                    channel_number(c.freq_mhz).unwrap_or(0),
                    if c.in_use { "*" } else { "" },
                    if !c.allowed {
                        "x"
                    } else if c.dfs {
                        "D"
                    } else {
                        ""
                    },
                    pct(c.foreign_busy())
                )
            })
            .collect();
        out += &format!("  {:<16} {} {}\n", r.node, radio.radio, cells.join(" "));
    }
    out
}
