//! The controller's Prometheus page (`/metrics` on `--metrics-listen`, and the admin socket's
//! `/v1/admin/metrics`), and the few counters only the controller can keep.
//!
//! Series (text format 0.0.4, base units, `_total` counters):
//! - `trellis_routers{state}` (gauge): routers by [`crate::fleet::Liveness`], the one rule the
//!   page and the services use (`online`, `connecting`, `offline`, `removed`);
//! - `trellis_config_version` (gauge): the newest published config version;
//! - `trellis_agent_config_acked_version{node}` and `trellis_agent_config_versions_behind{node}`
//!   (gauges): what each router applied, and how many versions it lags behind the newest;
//! - `trellis_config_propagation_seconds` (histogram): from a config version's publication to
//!   each router's first ack of it (RAM only: versions published by this run of the controller);
//! - `trellis_pairings_started_total`, `trellis_pairings_enrolled_total`,
//!   `trellis_pairings_refused_total{reason}` ([`PairingRefusal`]);
//! - `trellis_web_logins_refused_total{reason}` ([`LoginRefusal`]);
//! - `trellis_cert_expiry_seconds{identity,node}` (gauge): seconds until each router's newest
//!   certificate expires (negative once expired), the agents' own series name;
//! - the listeners' `trellis_listener_*` series ([`trellis_io::metrics::render`]).
//!
//! Everything here is bounded: the counters are fixed enums, the per-router series follow the
//! enrolled routers, and the publication times are a ring of [`PUBLISHED_KEPT`] versions.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fleet::Liveness;
use crate::home::Home;

/// Publication times kept for the propagation histogram: an ack of an older version (a router
/// back after a long absence) is not timed.
pub const PUBLISHED_KEPT: usize = 64;

/// Upper bounds of the propagation histogram, in seconds: the goal is 0.2 s to every router;
/// a long poll that missed a change waits up to 55 s.
const PROPAGATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

/// Why a pairing was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRefusal {
    /// The source (or everyone) tried too often: the pairing budget said no.
    RateLimited,
    /// A router of that name is already in the home.
    NameTaken,
    /// Tried against a code that is not open (expired, used, burned or never issued).
    CodeNotOpen,
    /// The code was open and the agent's was wrong.
    WrongCode,
    /// Anything else (a malformed exchange, an unknown session, a CSR the CA refused).
    Invalid,
}

impl PairingRefusal {
    pub const ALL: [PairingRefusal; 5] = [
        PairingRefusal::RateLimited,
        PairingRefusal::NameTaken,
        PairingRefusal::CodeNotOpen,
        PairingRefusal::WrongCode,
        PairingRefusal::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PairingRefusal::RateLimited => "rate_limited",
            PairingRefusal::NameTaken => "name_taken",
            PairingRefusal::CodeNotOpen => "code_not_open",
            PairingRefusal::WrongCode => "wrong_code",
            PairingRefusal::Invalid => "invalid",
        }
    }
}

/// Why the web page refused a login or first-run setup (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    WrongPassword,
    WrongSetupToken,
    /// Too many wrong tries from that source in the last minute.
    Throttled,
    /// The password hasher's queue was full (or that source already had a try in flight).
    Busy,
}

impl LoginRefusal {
    pub const ALL: [LoginRefusal; 4] = [
        LoginRefusal::WrongPassword,
        LoginRefusal::WrongSetupToken,
        LoginRefusal::Throttled,
        LoginRefusal::Busy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LoginRefusal::WrongPassword => "wrong_password",
            LoginRefusal::WrongSetupToken => "wrong_setup_token",
            LoginRefusal::Throttled => "throttled",
            LoginRefusal::Busy => "busy",
        }
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; PROPAGATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in PROPAGATION_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }
}

#[derive(Debug, Default)]
struct Inner {
    pairings_started: u64,
    pairings_enrolled: u64,
    pairings_refused: [u64; PairingRefusal::ALL.len()],
    logins_refused: [u64; LoginRefusal::ALL.len()],
    /// (version, when it was published), oldest first.
    published: VecDeque<(u64, Instant)>,
    propagation: Histogram,
}

/// The controller's own counters. Plain integers under one lock: MIPS32 routers have no
/// 64-bit atomics, and none of this is on a data path.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<Inner>,
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pairing_started(&self) {
        self.lock().pairings_started += 1;
    }

    pub fn pairing_enrolled(&self) {
        self.lock().pairings_enrolled += 1;
    }

    pub fn pairing_refused(&self, why: PairingRefusal) {
        self.lock().pairings_refused[why as usize] += 1;
    }

    pub fn login_refused(&self, why: LoginRefusal) {
        self.lock().logins_refused[why as usize] += 1;
    }

    /// Config `version` went out now (the same version again is not a new publication).
    pub fn published(&self, version: u64) {
        self.published_at(version, Instant::now());
    }

    fn published_at(&self, version: u64, at: Instant) {
        let mut g = self.lock();
        if g.published.back().is_some_and(|(v, _)| *v >= version) {
            return;
        }
        if g.published.len() >= PUBLISHED_KEPT {
            g.published.pop_front();
        }
        g.published.push_back((version, at));
    }

    /// A router acknowledged `version` for the first time (its previous ack was older): time
    /// it from that version's publication, if this run of the controller published it.
    pub fn first_ack(&self, version: u64) {
        self.first_ack_at(version, Instant::now());
    }

    fn first_ack_at(&self, version: u64, at: Instant) {
        let mut g = self.lock();
        let Some(&(_, published)) = g.published.iter().find(|(v, _)| *v == version) else {
            return;
        };
        g.propagation
            .observe(at.saturating_duration_since(published));
    }
}

/// One router's line of the page.
#[derive(Debug, Clone)]
pub struct RouterSample {
    pub node: String,
    pub identity: String,
    pub liveness: Liveness,
    pub acked_version: u64,
    /// Unix seconds.
    pub cert_not_after: Option<u64>,
}

/// Escape a label value (backslash, quote, newline) per the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole page for `home`, with the listeners' series of `gates`.
pub fn page(home: &Home, gates: &[std::sync::Arc<trellis_io::Gate>]) -> String {
    let routers: Vec<RouterSample> = match home.nodes() {
        Ok(nodes) => nodes
            .into_iter()
            .map(|n| RouterSample {
                liveness: home.liveness(&n.name, n.revoked),
                node: n.name.to_string(),
                identity: n.identity.to_string(),
                acked_version: n.acked_version,
                cert_not_after: n.cert_not_after,
            })
            .collect(),
        Err(e) => {
            tracing::warn!("metrics: cannot list the routers: {e}");
            Vec::new()
        }
    };
    let mut out = render(
        &home.counters,
        home.snapshot().version,
        &routers,
        crate::ca::unix_now(),
    );
    trellis_io::metrics::render(gates, &mut out);
    out
}

/// The controller's series (see the module comment); `now` in unix seconds.
pub fn render(counters: &Counters, version: u64, routers: &[RouterSample], now: u64) -> String {
    let mut out = String::with_capacity(2048);
    let _ = writeln!(out, "# HELP trellis_routers Routers of the home by state (online, connecting, offline, removed).\n# TYPE trellis_routers gauge");
    for state in [
        Liveness::Online,
        Liveness::Connecting,
        Liveness::Offline,
        Liveness::Removed,
    ] {
        let n = routers.iter().filter(|r| r.liveness == state).count();
        let _ = writeln!(out, "trellis_routers{{state=\"{}\"}} {n}", state.as_str());
    }
    let _ = writeln!(out, "# HELP trellis_config_version The newest published config version.\n# TYPE trellis_config_version gauge\ntrellis_config_version {version}");
    let members: Vec<&RouterSample> = routers
        .iter()
        .filter(|r| r.liveness != Liveness::Removed)
        .collect();
    let _ = writeln!(out, "# HELP trellis_agent_config_acked_version The config version each router last applied.\n# TYPE trellis_agent_config_acked_version gauge");
    for r in &members {
        let _ = writeln!(
            out,
            "trellis_agent_config_acked_version{{node=\"{}\"}} {}",
            esc(&r.node),
            r.acked_version
        );
    }
    let _ = writeln!(out, "# HELP trellis_agent_config_versions_behind Config versions a router has not applied yet.\n# TYPE trellis_agent_config_versions_behind gauge");
    for r in &members {
        let _ = writeln!(
            out,
            "trellis_agent_config_versions_behind{{node=\"{}\"}} {}",
            esc(&r.node),
            version.saturating_sub(r.acked_version)
        );
    }
    let g = counters.lock();
    let _ = writeln!(out, "# HELP trellis_config_propagation_seconds From a config change's publication to each router's ack of it.\n# TYPE trellis_config_propagation_seconds histogram");
    for (b, n) in PROPAGATION_BUCKETS.iter().zip(g.propagation.buckets) {
        let _ = writeln!(
            out,
            "trellis_config_propagation_seconds_bucket{{le=\"{b}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "trellis_config_propagation_seconds_bucket{{le=\"+Inf\"}} {c}\ntrellis_config_propagation_seconds_sum {}\ntrellis_config_propagation_seconds_count {c}",
        g.propagation.sum,
        c = g.propagation.count
    );
    let _ = writeln!(out, "# HELP trellis_pairings_started_total Pairing exchanges routers started.\n# TYPE trellis_pairings_started_total counter\ntrellis_pairings_started_total {}", g.pairings_started);
    let _ = writeln!(out, "# HELP trellis_pairings_enrolled_total Routers that paired and joined the home.\n# TYPE trellis_pairings_enrolled_total counter\ntrellis_pairings_enrolled_total {}", g.pairings_enrolled);
    let _ = writeln!(out, "# HELP trellis_pairings_refused_total Pairing steps refused, by reason.\n# TYPE trellis_pairings_refused_total counter");
    for r in PairingRefusal::ALL {
        let _ = writeln!(
            out,
            "trellis_pairings_refused_total{{reason=\"{}\"}} {}",
            r.label(),
            g.pairings_refused[r as usize]
        );
    }
    let _ = writeln!(out, "# HELP trellis_web_logins_refused_total Web page logins and first-run setups refused, by reason.\n# TYPE trellis_web_logins_refused_total counter");
    for r in LoginRefusal::ALL {
        let _ = writeln!(
            out,
            "trellis_web_logins_refused_total{{reason=\"{}\"}} {}",
            r.label(),
            g.logins_refused[r as usize]
        );
    }
    drop(g);
    let _ = writeln!(out, "# HELP trellis_cert_expiry_seconds Seconds until a router's newest certificate expires.\n# TYPE trellis_cert_expiry_seconds gauge");
    for r in &members {
        if let Some(t) = r.cert_not_after {
            let _ = writeln!(
                out,
                "trellis_cert_expiry_seconds{{identity=\"{}\",node=\"{}\"}} {}",
                esc(&r.identity),
                esc(&r.node),
                t as i64 - now as i64
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(node: &str, liveness: Liveness, acked: u64) -> RouterSample {
        RouterSample {
            node: node.into(),
            identity: format!("spiffe://h/node/{node}"),
            liveness,
            acked_version: acked,
            cert_not_after: Some(10_000),
        }
    }

    #[test]
    fn routers_lag_and_certificates_render_per_router() {
        let c = Counters::default();
        let page = render(
            &c,
            7,
            &[
                router("a", Liveness::Online, 7),
                router("b", Liveness::Offline, 4),
                router("gone", Liveness::Removed, 2),
            ],
            9_000,
        );
        for line in [
            "trellis_routers{state=\"online\"} 1",
            "trellis_routers{state=\"offline\"} 1",
            "trellis_routers{state=\"removed\"} 1",
            "trellis_routers{state=\"connecting\"} 0",
            "trellis_config_version 7",
            "trellis_agent_config_versions_behind{node=\"a\"} 0",
            "trellis_agent_config_versions_behind{node=\"b\"} 3",
            "trellis_agent_config_acked_version{node=\"b\"} 4",
            "trellis_cert_expiry_seconds{identity=\"spiffe://h/node/a\",node=\"a\"} 1000",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing:\n{page}");
        }
        assert!(
            !page.contains("node=\"gone\""),
            "a removed router has no lag or certificate series:\n{page}"
        );
    }

    #[test]
    fn propagation_times_the_first_ack_of_each_published_version() {
        let c = Counters::default();
        let t0 = Instant::now();
        c.published_at(3, t0);
        c.published_at(3, t0 + Duration::from_secs(5)); // the same version again: not new
        c.first_ack_at(3, t0 + Duration::from_millis(40));
        c.first_ack_at(3, t0 + Duration::from_millis(300));
        c.first_ack_at(2, t0 + Duration::from_millis(1)); // not published by this run
        let page = render(&c, 3, &[], 0);
        for line in [
            "trellis_config_propagation_seconds_bucket{le=\"0.025\"} 0",
            "trellis_config_propagation_seconds_bucket{le=\"0.05\"} 1",
            "trellis_config_propagation_seconds_bucket{le=\"0.2\"} 1",
            "trellis_config_propagation_seconds_bucket{le=\"0.5\"} 2",
            "trellis_config_propagation_seconds_bucket{le=\"+Inf\"} 2",
            "trellis_config_propagation_seconds_count 2",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing:\n{page}");
        }
    }

    #[test]
    fn publication_times_are_a_bounded_ring() {
        let c = Counters::default();
        let t0 = Instant::now();
        for v in 1..=(PUBLISHED_KEPT as u64 + 10) {
            c.published_at(v, t0);
        }
        assert_eq!(c.lock().published.len(), PUBLISHED_KEPT);
        c.first_ack_at(1, t0); // fell out of the ring: not timed
        assert_eq!(c.lock().propagation.count, 0);
    }

    #[test]
    fn refusals_count_by_reason_and_every_reason_is_on_the_page() {
        let c = Counters::default();
        c.pairing_started();
        c.pairing_refused(PairingRefusal::WrongCode);
        c.pairing_refused(PairingRefusal::WrongCode);
        c.login_refused(LoginRefusal::WrongPassword);
        let page = render(&c, 0, &[], 0);
        for line in [
            "trellis_pairings_started_total 1",
            "trellis_pairings_enrolled_total 0",
            "trellis_pairings_refused_total{reason=\"wrong_code\"} 2",
            "trellis_pairings_refused_total{reason=\"rate_limited\"} 0",
            "trellis_web_logins_refused_total{reason=\"wrong_password\"} 1",
            "trellis_web_logins_refused_total{reason=\"throttled\"} 0",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing:\n{page}");
        }
        // Every family is typed once.
        let types = page.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, 10, "{page}");
    }
}
