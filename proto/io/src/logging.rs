//! The `--log` filter both daemons take, checked before anything runs, and the one logger
//! setup (stderr, which procd hands to logd).
//!
//! `tracing`'s own parser takes any bare word as a target, so `--log garbage` used to start a
//! daemon that logged nothing. Here a directive is a level, or `target=level`. The filter is
//! a `Targets` (not `EnvFilter`): the same syntax without span/field matching, and no regex
//! engine in router flash.

use tracing_subscriber::filter::{LevelFilter, Targets};

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `filter` if it is a log filter, else what is wrong with it and what to write instead (a
/// clap value parser: `--log` and `TRELLIS_LOG` are refused at start).
pub fn check_filter(filter: &str) -> Result<String, String> {
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    let bad = |what: &str| {
        Err(format!(
            "{what:?} is not a log filter: give a level ({}) or target=level pairs separated by commas, e.g. info,trellis_controller=debug",
            LEVELS.join(", ")
        ))
    };
    if filter.trim().is_empty() {
        return bad(filter);
    }
    for directive in filter.split(',') {
        let ok = match directive.split_once('=') {
            None => is_level(directive),
            Some((target, level)) => {
                !target.trim().is_empty()
                    && target
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && is_level(level)
            }
        };
        if !ok {
            return bad(directive);
        }
    }
    filter
        .parse::<Targets>()
        .map_err(|e| format!("{filter:?}: {e}"))?;
    Ok(filter.to_owned())
}

/// Log to stderr with `filter` (already checked by [`check_filter`]; anything else logs at
/// info), without colours: procd collects stderr into logd.
pub fn init(filter: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let targets = filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_levels_pass_and_anything_else_says_what_to_write() {
        for good in [
            "info",
            "WARN",
            "info,trellis_controller=debug",
            "trellis_io::listener=trace",
        ] {
            assert_eq!(check_filter(good).as_deref(), Ok(good));
        }
        for bad in ["garbage", "", "info,", "trellis=loud", "=debug", "inf"] {
            let e = check_filter(bad).unwrap_err();
            assert!(
                e.contains("not a log filter") && e.contains("e.g. info"),
                "{bad}: {e}"
            );
        }
    }
}
