//! The running agent: follows the controller's config and keeps the node certificate fresh.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::sync::watch;
use trellis_proto::api::{
    ConfigAck, RenewRequest, RenewResponse, SpeedTestJob, SpeedTestOutcome, TelemetryAnswer,
};
use trellis_proto::snapshot::ConfigSnapshot;

use super::telemetry::{compose, OwnFacts, Published};
use super::{tls, CallError, Controller, Trust};
use crate::access_point::runner::AccessPoints;
use crate::identity::{self, Backoff, CurrentIdentity, NodeIdentity};
use crate::state::{NodeRecord, StateDir};

/// How long each config long poll may wait at the controller.
const POLL_WAIT_S: u64 = 55;
/// Telemetry is small (RAM only at the controller) and carries the mesh links the map shows,
/// so it goes out every half minute (`trellis-agent run --telemetry-interval` changes it).
pub const TELEMETRY_EVERY: Duration = Duration::from_secs(30);
/// The shortest telemetry interval accepted.
pub const TELEMETRY_MIN: Duration = Duration::from_secs(1);
/// How long the report task lets a burst of published changes settle before it reports.
const CHANGE_SETTLE: Duration = Duration::from_millis(200);
/// Retry pace of the config watch while the controller is away.
const WATCH_RETRY_CAP: Duration = Duration::from_secs(30);

/// Everything the agent's tasks share.
#[derive(Clone)]
pub struct Agent {
    state: StateDir,
    pub node: NodeRecord,
    identity: Arc<CurrentIdentity>,
    controller: Controller,
    applied: Arc<watch::Sender<Option<Arc<ConfigSnapshot>>>>,
    /// What the agent's parts publish for the telemetry ([`super::telemetry`]).
    pub published: Published,
    /// Counts renewals, so the data plane picks up a new certificate at once.
    renewed: Arc<watch::Sender<u64>>,
    /// Mesh hops to the other routers, as the controller answers each report (locality).
    hops: Arc<watch::Sender<Hops>>,
    /// One report at a time, each built when its turn comes: a report sent by a caller of
    /// [`Agent::report_once`] beside the report task must not arrive out of order, or an
    /// older one would overwrite a newer one at the controller.
    report_turn: Arc<tokio::sync::Mutex<()>>,
    /// What the radios hear per channel, for the home's channel choice (routers running the
    /// mesh only).
    survey: Arc<trellis_wifi::survey::SurveyCache>,
    /// How often telemetry goes out.
    telemetry_every: Duration,
    /// The home's access points on this router, when the agent runs them
    /// ([`crate::access_point`]); `wifi_fixed`: set from a file, so snapshots leave them.
    access_points: Arc<std::sync::Mutex<Option<RunningAccessPoints>>>,
    /// Shortest and longest wait of the config watch between failed attempts.
    watch_retry: (Duration, Duration),
}

/// The agent's access points and whether their settings came from a file (then snapshots
/// leave them).
type RunningAccessPoints = (Arc<AccessPoints>, bool);

/// Mesh hops from this router to others.
pub type Hops = std::collections::BTreeMap<trellis_proto::NodeName, u32>;

/// What a caller (the CLI, a test, the data plane) holds of a running agent.
pub struct AgentHandle {
    pub agent: Agent,
    pub trust: Trust,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AgentHandle {
    /// Wait for the agent's tasks (they run until the process ends).
    pub async fn wait(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Agent {
    /// Load a joined node's state and its last snapshot (fail static).
    pub fn load(state: StateDir) -> anyhow::Result<Self> {
        let node = state.node()?;
        let identity = NodeIdentity::from_pem(&state.identity_pem()?)?;
        if identity.facts.identity != node.identity {
            anyhow::bail!(
                "identity.pem names {} but node.json says {}; re-pair this router",
                identity.facts.identity,
                node.identity
            );
        }
        let identity = CurrentIdentity::new(identity);
        let ca_pem = state.ca_pem()?;
        let config = tls::member_config(&ca_pem, identity.clone())?;
        let controller = Controller::new(&node.controller, config);
        let last = state.snapshot()?.map(Arc::new);
        if let Some(s) = &last {
            tracing::info!(
                version = s.version,
                "loaded the last config snapshot; working on it until the controller answers"
            );
        }
        let (applied, _) = watch::channel(last);
        Ok(Self {
            state,
            node,
            identity,
            controller,
            applied: Arc::new(applied),
            published: Published::default(),
            renewed: Arc::new(watch::channel(0).0),
            hops: Arc::new(watch::channel(Hops::new()).0),
            report_turn: Arc::default(),
            survey: Arc::default(),
            telemetry_every: TELEMETRY_EVERY,
            access_points: Arc::default(),
            watch_retry: (Duration::ZERO, WATCH_RETRY_CAP),
        })
    }

    /// Send telemetry every `every` (at least [`TELEMETRY_MIN`]) instead of every 30 s.
    pub fn with_telemetry_interval(mut self, every: Duration) -> Self {
        self.telemetry_every = every.max(TELEMETRY_MIN);
        self
    }

    /// Wait between `floor` and `cap` between failed config watch attempts (tests: a huge
    /// floor shows a watch that reconnects as soon as the controller answers again).
    pub fn with_watch_retry(mut self, floor: Duration, cap: Duration) -> Self {
        self.watch_retry = (floor.min(cap), cap);
        self
    }

    /// After a failed watch attempt: wait `delay`, or less if the controller answers another
    /// task's call meanwhile (telemetry resumes within its interval after a controller
    /// restart; the watch must not sit out a 30 s backoff). True when woken by an answer.
    async fn wait_to_retry(&self, delay: Duration, answers: &mut watch::Receiver<u64>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            changed = answers.changed() => changed.is_ok(),
        }
    }

    /// Start following the controller; returns at once.
    pub fn start(self) -> AgentHandle {
        let trust = Trust::new(self.applied.subscribe());
        let watcher = tokio::spawn(self.clone().watch_config());
        let renewer = tokio::spawn(self.clone().keep_renewed());
        let reporter = tokio::spawn(self.clone().report());
        AgentHandle {
            agent: self,
            trust,
            tasks: vec![watcher, renewer, reporter],
        }
    }

    pub fn identity(&self) -> NodeIdentity {
        self.identity.get()
    }

    /// Changes each time the certificate is renewed.
    /// The applied snapshot, as it changes (the stored one first).
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<ConfigSnapshot>>> {
        self.applied.subscribe()
    }

    pub fn renewals(&self) -> watch::Receiver<u64> {
        self.renewed.subscribe()
    }

    fn applied_version(&self) -> u64 {
        self.applied
            .borrow()
            .as_ref()
            .map(|s| s.version)
            .unwrap_or(0)
    }

    /// Long-poll the controller for newer snapshots for ever; on failure keep the last one.
    async fn watch_config(self) {
        let mut backoff = Backoff::default();
        let mut answers = self.controller.answers();
        let (floor, cap) = self.watch_retry;
        loop {
            // Answers from here on (to any task) mean the controller is there.
            answers.mark_unchanged();
            let after = self.applied_version();
            let path = format!("/v1/agent/config?after={after}&wait={POLL_WAIT_S}");
            match self.controller.long_poll(&path).await {
                Ok(answer) if answer.status == StatusCode::NO_CONTENT => backoff.reset(),
                Ok(answer) => match answer.json::<ConfigSnapshot>() {
                    Ok(snapshot) => {
                        backoff.reset();
                        let version = snapshot.version;
                        let wifi = snapshot.wifi.clone();
                        let mut result = self.apply(snapshot);
                        if result.is_ok() {
                            result = self.apply_wifi(&wifi).await;
                        }
                        let ack = ConfigAck {
                            version,
                            error: result.as_ref().err().map(|e| format!("{e:#}")),
                        };
                        if let Err(e) = self
                            .controller
                            .call(Method::POST, "/v1/agent/config/ack", Some(&ack))
                            .await
                        {
                            tracing::debug!("could not acknowledge config v{version}: {e}");
                        }
                    }
                    Err(e) => {
                        // The controller answered, badly: a plain backoff (its own answer
                        // must not wake the retry at once).
                        let delay = backoff.next_delay().clamp(floor, cap);
                        tracing::warn!(
                            "controller refused the config watch: {e}; retrying in {delay:?}"
                        );
                        tokio::time::sleep(delay).await;
                    }
                },
                Err(e) => {
                    let delay = backoff.next_delay().clamp(floor, cap);
                    tracing::warn!(
                        "{e}; keeping config v{} (fail static), retrying in {delay:?} or as soon as the controller answers",
                        self.applied_version()
                    );
                    if self.wait_to_retry(delay, &mut answers).await {
                        tracing::info!("the controller answers again; resuming the config watch");
                        backoff.reset();
                    }
                }
            }
        }
    }

    /// Persist, then publish a snapshot to the data plane.
    fn apply(&self, snapshot: ConfigSnapshot) -> anyhow::Result<()> {
        if snapshot.home_id != self.node.home_id {
            anyhow::bail!(
                "snapshot for home {} but this router belongs to {}",
                snapshot.home_id,
                self.node.home_id
            );
        }
        self.state.save_snapshot(&snapshot)?;
        self.state.save_mesh(&snapshot.mesh)?;
        if let Err(refused) = snapshot.admit(&self.node.identity, &self.identity.get().facts.serial)
        {
            tracing::error!("this router is no longer a router of the home: {refused}");
        }
        tracing::info!(
            version = snapshot.version,
            nodes = snapshot.nodes.len(),
            revoked = snapshot.revoked.len(),
            "config applied"
        );
        self.applied.send_replace(Some(Arc::new(snapshot)));
        Ok(())
    }

    /// Has the access points follow `wifi` (see [`AccessPoints::apply`]): its error goes in
    /// the ack, and the access points stay as they were.
    async fn apply_wifi(&self, wifi: &trellis_proto::home_wifi::HomeWifi) -> anyhow::Result<()> {
        let aps = lock(&self.access_points).clone();
        match aps {
            Some((aps, false)) => Ok(aps.apply(wifi).await.map(|_| ())?),
            _ => Ok(()),
        }
    }

    /// Runs the home's access points through `aps` from now on: the current snapshot's
    /// wifi at once, every new one's as it comes; or, `fixed`, only `wifi_file`'s (the lab,
    /// a box without a controller's wifi settings).
    pub async fn set_access_points(
        &self,
        aps: Arc<AccessPoints>,
        wifi_file: Option<trellis_proto::home_wifi::HomeWifi>,
    ) -> anyhow::Result<()> {
        let fixed = wifi_file.is_some();
        *lock(&self.access_points) = Some((aps.clone(), fixed));
        let wifi = match wifi_file {
            Some(w) => Some(w),
            None => self.applied.borrow().as_ref().map(|s| s.wifi.clone()),
        };
        if let Some(w) = wifi {
            aps.apply(&w).await?;
        }
        Ok(())
    }

    /// Renew at half-life with jitter; back off on failure; the old certificate is served
    /// until a new one arrives.
    async fn keep_renewed(self) {
        let mut backoff = Backoff::default();
        loop {
            let facts = self.identity.get().facts;
            let at =
                identity::renewal_at(facts.not_before, facts.not_after, &mut rand::thread_rng());
            let now = crate::unix_now();
            if at > now {
                tokio::time::sleep(Duration::from_secs(at - now)).await;
            }
            loop {
                match self.renew_once().await {
                    Ok(fresh) => {
                        backoff.reset();
                        tracing::info!(not_after = fresh.facts.not_after, "certificate renewed");
                        // Never renew in a tight loop, whatever lifetime the controller gives.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        let left = self
                            .identity
                            .get()
                            .facts
                            .not_after
                            .saturating_sub(crate::unix_now());
                        tracing::warn!("certificate renewal failed: {e:#}; retrying in {delay:?} (current one valid {left} s more)");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// One renewal: new key, CSR, signed certificate, stored atomically, then swapped in.
    pub async fn renew_once(&self) -> anyhow::Result<NodeIdentity> {
        let kc = identity::new_key_and_csr(self.node.identity.name.as_str())?;
        let answer: RenewResponse = self
            .controller
            .json(
                Method::POST,
                "/v1/agent/renew",
                Some(&RenewRequest {
                    csr_pem: kc.csr_pem,
                }),
            )
            .await?;
        let fresh = NodeIdentity::from_parts(&answer.cert_pem, &kc.key_pem)?;
        if fresh.facts.identity != self.node.identity {
            anyhow::bail!(
                "the controller issued a certificate for {} instead of {}",
                fresh.facts.identity,
                self.node.identity
            );
        }
        self.state.save_identity_pem(&fresh.pem)?;
        self.identity.replace(fresh.clone());
        self.renewed.send_modify(|n| *n += 1);
        Ok(fresh)
    }

    /// Mesh hops to the other routers; changes when the topology does.
    pub fn hops(&self) -> watch::Receiver<Hops> {
        self.hops.subscribe()
    }

    /// Long poll for the next speed test this node is to send (`None` after `wait_s`).
    pub async fn next_job(&self, wait_s: u64) -> Result<Option<SpeedTestJob>, CallError> {
        let answer = self
            .controller
            .long_poll(&format!("/v1/agent/jobs?wait={wait_s}"))
            .await?;
        if answer.status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        answer.json().map(Some).map_err(|source| CallError::Api {
            addr: self.controller.addr.clone(),
            source,
        })
    }

    /// Tell the controller how a speed test went.
    pub async fn report_job(&self, outcome: &SpeedTestOutcome) -> Result<(), CallError> {
        self.controller
            .call(Method::POST, "/v1/agent/jobs/result", Some(outcome))
            .await?
            .ok()
            .map_err(|source| CallError::Api {
                addr: self.controller.addr.clone(),
                source,
            })
    }

    /// The address this node uses towards the controller: on a home mesh, the one other
    /// routers reach it by too (no packet is sent to find it). On the primary router that is
    /// loopback, useless to others: then the LAN bridge's (see [`super::address`]).
    pub async fn local_address_towards_controller(&self) -> Option<std::net::IpAddr> {
        use std::net::ToSocketAddrs;
        let towards = || {
            let target = self.controller.addr.to_socket_addrs().ok()?.next()?;
            let bind: std::net::SocketAddr = if target.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = std::net::UdpSocket::bind(bind).ok()?;
            sock.connect(target).ok()?;
            Some(sock.local_addr().ok()?.ip())
        };
        match towards() {
            Some(ip) if !ip.is_loopback() => Some(ip),
            _ => super::address::choose(&super::address::interface_addresses().await),
        }
    }

    /// Tell the controller how this node is doing.
    pub async fn report_once(&self) -> Result<(), CallError> {
        let _turn = self.report_turn.lock().await;
        let aps = lock(&self.access_points).as_ref().map(|(a, _)| a.clone());
        let own = OwnFacts {
            cert_expires_in_s: self.identity.get().facts.not_after as i64
                - crate::unix_now() as i64,
            applied_version: self.applied_version(),
            report_every: self.telemetry_every,
        };
        let t = compose(&self.published, aps.as_deref(), &self.survey, own).await;
        let answer = self
            .controller
            .call(Method::POST, "/v1/agent/telemetry", Some(&t))
            .await?;
        if answer.status == StatusCode::NO_CONTENT {
            // An older controller: nothing to learn.
            return Ok(());
        }
        let answer: TelemetryAnswer = answer.json().map_err(|source| CallError::Api {
            addr: self.controller.addr.clone(),
            source,
        })?;
        if let Some(a) = &aps {
            a.answer(&answer.neighbours, &answer.steer).await;
        }
        self.hops.send_if_modified(|hops| {
            let changed = *hops != answer.hops;
            *hops = answer.hops;
            changed
        });
        Ok(())
    }

    /// Reports on the timer, and soon after any part publishes something new; a report
    /// that did not get through is retried sooner than the timer (backing off up to it).
    async fn report(self) {
        let mut changes = self.published.changes();
        let mut backoff = Backoff::default();
        loop {
            changes.mark_unchanged();
            let wait = match self.report_once().await {
                Ok(()) => {
                    tracing::debug!(changes = *changes.borrow(), "telemetry delivered");
                    backoff.reset();
                    self.telemetry_every
                }
                Err(e) => {
                    tracing::debug!("telemetry not delivered: {e}");
                    backoff.next_delay().min(self.telemetry_every)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Ok(()) = changes.changed() => {
                    // A burst of changes (discovery's first answers) goes out as one report.
                    tokio::time::sleep(CHANGE_SETTLE).await;
                }
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
