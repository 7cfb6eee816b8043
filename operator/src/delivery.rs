//! Delivery: keeps every router at its desired revision (no Kubernetes here).
//!
//! The controllers (or standalone mode) call [`Engine::set_desired`] with each router's
//! composed revision; one worker per router delivers it through the agent hub when the agent is
//! connected (and again whenever it reconnects), records what was applied in an
//! [`AppliedStore`] (so Merge removals are computed from what the router really received, even
//! across operator restarts, for routers without an agent of their own record: see
//! [`AppliedStore::note`]), retries failures with exponential backoff, and re-applies on
//! drift when the target's policy says so. Every state change is sent as a [`DeliveryEvent`]
//! for the status writers. QGA delivery slots in here as a second path of the worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use vrouter_proto::RouterId;
use vrouter_proto::v1::{ApplyOutcome, ApplyRequest, ApplyResult, CommitConfirm, ConfigPolicy as WirePolicy, Revision};

use crate::crd::ConfigPolicy;
use crate::hub::{DeliveryError, Hub, HubEvent};
use crate::qga::fallback::{self, FallbackRequest, FallbackResult};
use crate::qga::guest::{self, GuestProbe};
use crate::qga::route::{Next, QgaSupport, Situation, decide};
use crate::qga::{QgaClient, QgaClientConfig};

/// A router's desired revision, ready to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Revision id.
    pub revision: String,
    /// Digest of the desired tree (secrets as placeholders).
    pub digest: String,
    /// Hierarchical config with secret placeholders (what is stored and shown).
    pub config: String,
    /// Placeholder → value, substituted only into what is sent.
    pub secrets: BTreeMap<String, String>,
    /// Explicit deletions.
    pub deletions: Vec<String>,
    /// Merge or Replace.
    pub policy: ConfigPolicy,
    /// Managed scopes.
    pub managed_scopes: Vec<String>,
    /// Save after commit.
    pub save: bool,
    /// Commit-confirm minutes (None: off).
    pub commit_confirm: Option<u32>,
    /// Deadline of one apply.
    pub apply_timeout: Duration,
    /// Deliver nothing (drift is still reported).
    pub paused: bool,
    /// Re-apply on drift.
    pub correct_drift: bool,
    /// The guest-agent path (bootstrap and fallback), if the target has one.
    pub qga: Option<crate::qga::route::QgaRoute>,
}

impl Desired {
    /// `text` with the secret values in place of their placeholders. A placeholder this revision
    /// has no value for stays as it is: an earlier applied config may name a Secret that is gone.
    /// Values are checked when the revision is derived, so an error here means a value that
    /// cannot be delivered.
    pub fn substituted(&self, text: &str) -> Result<String, crate::render::SubstituteError> {
        crate::render::substitute(text, |r| {
            let placeholder = r.placeholder();
            Some(self.secrets.get(&placeholder).cloned().unwrap_or(placeholder))
        })
    }

    /// Replaces secret values in text from the router (output, errors) with their placeholders.
    pub fn redact(&self, text: &str) -> String {
        crate::render::Redactor::replacing(self.secrets.iter().map(|(p, v)| (v.clone(), p.clone()))).redact(text)
    }
}

/// What was last applied to a router (secrets as placeholders).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppliedRecord {
    /// Revision id.
    pub revision: String,
    /// Its config.
    pub config: String,
    /// When, Unix seconds.
    pub at: i64,
}

/// Durable record of what each router was last given.
#[async_trait]
pub trait AppliedStore: Send + Sync {
    /// The record of a router.
    async fn load(&self, id: &RouterId) -> Result<Option<AppliedRecord>, String>;
    /// Replaces the record of a router.
    async fn save(&self, id: &RouterId, record: &AppliedRecord) -> Result<(), String>;
    /// Records what a router's agent applied. The agent keeps its own durable record, which is
    /// the truth for every later delivery through an agent (the operator's copy only stands in
    /// when the agent has none), so a store may keep this one in memory for the process's
    /// lifetime instead of writing it (the Kubernetes store does: one API write less per
    /// router and revision). By default it is saved like any record.
    async fn note(&self, id: &RouterId, record: &AppliedRecord) -> Result<(), String> {
        self.save(id, record).await
    }
}

/// An in-memory store (tests).
#[derive(Default)]
pub struct MemoryStore(Mutex<HashMap<RouterId, AppliedRecord>>);

#[async_trait]
impl AppliedStore for MemoryStore {
    async fn load(&self, id: &RouterId) -> Result<Option<AppliedRecord>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.get(id).cloned())
    }
    async fn save(&self, id: &RouterId, record: &AppliedRecord) -> Result<(), String> {
        self.0.lock().map_err(|e| e.to_string())?.insert(id.clone(), record.clone());
        Ok(())
    }
}

/// A store of one JSON file per router in a directory (standalone mode).
pub struct DirStore(std::path::PathBuf);

impl DirStore {
    /// Uses (and creates) `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(DirStore(dir))
    }

    fn path(&self, id: &RouterId) -> std::path::PathBuf {
        Self::file(&self.0, id)
    }

    /// The record file of a router in `dir` (`<namespace>_<name>.json`, [`RouterId::file_name`]).
    pub fn file(dir: &std::path::Path, id: &RouterId) -> std::path::PathBuf {
        dir.join(format!("{}.json", id.file_name()))
    }
}

#[async_trait]
impl AppliedStore for DirStore {
    async fn load(&self, id: &RouterId) -> Result<Option<AppliedRecord>, String> {
        match tokio::fs::read(self.path(id)).await {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| format!("{}: {e}", self.path(id).display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path(id).display())),
        }
    }
    async fn save(&self, id: &RouterId, record: &AppliedRecord) -> Result<(), String> {
        // Durable (fsync), as the PKI's files: Merge removals depend on this record.
        let path = self.path(id);
        let data = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let p = path.clone();
        tokio::task::spawn_blocking(move || crate::pki::store::write_atomic(&p, &data, 0o600))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where a router's delivery stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting (not connected, paused).
    Pending,
    /// An apply is in flight.
    Applying,
    /// The router confirmed the desired revision.
    Applied,
    /// The last attempt failed; retried later.
    Failed,
}

/// A change in a router's delivery, for status writers.
#[derive(Clone, Debug)]
pub struct DeliveryEvent {
    /// The router.
    pub id: RouterId,
    /// The desired revision this is about.
    pub revision: String,
    /// Where it stands.
    pub phase: Phase,
    /// Human-readable (secrets redacted).
    pub message: String,
    /// The attempt's result, when there was one.
    pub result: Option<Attempt>,
}

/// One finished delivery attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Outcome name (`Applied`, `NoChange`, `Failed`, `RolledBack`, `Partial`, or the delivery
    /// error kind).
    pub outcome: String,
    /// Commands executed.
    pub commands: u32,
    /// How long it took.
    pub duration: Duration,
    /// When it finished.
    pub at: SystemTime,
    /// The router's running digest after it.
    pub running_digest: String,
    /// Whether the router saved.
    pub saved: bool,
}

/// Timing of retries.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// First retry delay after a failure.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Retry delay after a lost session or timeout (the outcome is unknown; the retry finds
    /// out without committing twice).
    pub retry_unknown: Duration,
    /// Smallest gap between two drift corrections of one router (doubles while drift persists).
    pub correction_min: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(300),
            retry_unknown: Duration::from_secs(5),
            correction_min: Duration::from_secs(60),
        }
    }
}

struct Worker {
    desired: watch::Sender<Option<Desired>>,
    kick: Arc<tokio::sync::Notify>,
    force: Arc<std::sync::atomic::AtomicBool>,
}

/// The delivery engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    hub: Hub,
    store: Arc<dyn AppliedStore>,
    config: EngineConfig,
    workers: Mutex<HashMap<RouterId, Worker>>,
    events: mpsc::UnboundedSender<DeliveryEvent>,
    cancel: CancellationToken,
    qga: std::sync::OnceLock<QgaSupport>,
}

impl Engine {
    /// A new engine; events arrive on the returned receiver. Workers stop when `cancel` fires.
    pub fn new(
        hub: Hub,
        store: Arc<dyn AppliedStore>,
        config: EngineConfig,
        cancel: CancellationToken,
    ) -> (Engine, mpsc::UnboundedReceiver<DeliveryEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Engine {
            inner: Arc::new(EngineInner {
                hub,
                store,
                config,
                workers: Mutex::default(),
                events: tx,
                cancel,
                qga: std::sync::OnceLock::new(),
            }),
        };
        let e = engine.clone();
        tokio::spawn(async move { e.watch_hub().await });
        (engine, rx)
    }

    /// Enables the guest-agent path (bootstrap and fallback) for routers whose desired state has
    /// a [`QgaRoute`](crate::qga::route::QgaRoute). Only the first call counts.
    pub fn enable_qga(&self, support: QgaSupport) {
        let _ = self.inner.qga.set(support);
    }

    /// Sets (or with `None`, clears) a router's desired revision.
    pub fn set_desired(&self, id: &RouterId, desired: Option<Desired>) {
        let Ok(mut workers) = self.inner.workers.lock() else { return };
        if let Some(w) = workers.get(id) {
            w.desired.send_if_modified(|cur| {
                if *cur != desired {
                    *cur = desired.clone();
                    true
                } else {
                    false
                }
            });
            return;
        }
        if desired.is_none() {
            return;
        }
        let (tx, rx) = watch::channel(desired);
        let worker = Worker { desired: tx, kick: Arc::default(), force: Arc::default() };
        let run = WorkerRun {
            id: id.clone(),
            engine: self.inner.clone(),
            desired: rx,
            kick: worker.kick.clone(),
            force: worker.force.clone(),
        };
        workers.insert(id.clone(), worker);
        tokio::spawn(run.run());
    }

    /// The hub deliveries go through (and its PKI).
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The guest-agent settings, once enabled (the agent endpoint guests are told to dial).
    pub fn qga(&self) -> Option<&QgaSupport> {
        self.inner.qga.get()
    }

    /// Routers with a desired revision.
    pub fn routers(&self) -> Vec<RouterId> {
        self.inner.workers.lock().map(|w| w.keys().cloned().collect()).unwrap_or_default()
    }

    fn kick(&self, id: &RouterId, force: bool) {
        if let Ok(workers) = self.inner.workers.lock()
            && let Some(w) = workers.get(id)
        {
            if force {
                w.force.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            w.kick.notify_one();
        }
    }

    async fn watch_hub(self) {
        let mut events = self.inner.hub.subscribe();
        let mut last_correction: HashMap<RouterId, (SystemTime, Duration)> = HashMap::new();
        loop {
            let event = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(HubEvent::Connected { id, .. }) => self.kick(&id, false),
                Ok(HubEvent::Drift { id, report }) if report.drifted => {
                    let correct = self
                        .inner
                        .workers
                        .lock()
                        .ok()
                        .and_then(|w| w.get(&id).map(|w| w.desired.borrow().as_ref().is_some_and(|d| d.correct_drift)))
                        .unwrap_or(false);
                    if !correct {
                        continue;
                    }
                    let now = SystemTime::now();
                    let min = self.inner.config.correction_min;
                    let (last, gap) = last_correction.get(&id).copied().unwrap_or((SystemTime::UNIX_EPOCH, min));
                    let since = now.duration_since(last).unwrap_or_default();
                    if since >= gap {
                        // A human fighting the operator doubles the gap each time; quiet
                        // periods reset it.
                        let next = if since > gap * 4 { min } else { (gap * 2).min(Duration::from_secs(3600)) };
                        last_correction.insert(id.clone(), (now, next));
                        self.kick(&id, true);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Missed events: make every worker look again.
                    let ids = self.routers();
                    for id in ids {
                        self.kick(&id, false);
                    }
                }
                Err(_) => return,
            }
        }
    }
}

struct WorkerRun {
    id: RouterId,
    engine: Arc<EngineInner>,
    desired: watch::Receiver<Option<Desired>>,
    kick: Arc<tokio::sync::Notify>,
    force: Arc<std::sync::atomic::AtomicBool>,
}

impl WorkerRun {
    fn emit(&self, revision: &str, phase: Phase, message: impl Into<String>, result: Option<Attempt>) {
        let _ = self.engine.events.send(DeliveryEvent {
            id: self.id.clone(),
            revision: revision.to_owned(),
            phase,
            message: message.into(),
            result,
        });
    }

    async fn run(mut self) {
        // The revision confirmed by the router in this process's lifetime.
        let mut confirmed: Option<String> = None;
        let mut failures = 0u32;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut qga = QgaState::default();
        loop {
            let desired = self.desired.borrow_and_update().clone();
            let mut force = self.force.swap(false, std::sync::atomic::Ordering::SeqCst);
            let due = retry_at.is_none_or(|t| tokio::time::Instant::now() >= t);
            let support = self.engine.qga.get();
            let use_qga = desired.as_ref().is_some_and(|d| d.qga.is_some())
                && support.is_some()
                && self.engine.hub.session(&self.id).is_none();
            if !use_qga {
                qga = QgaState::default();
            } else if let Some(d) = desired.as_ref()
                && confirmed.as_deref() == Some(d.revision.as_str())
                && due
                && !force
                && qga.applied_boot.is_some()
            {
                // Delivered through the guest agent: a reboot may have lost unsaved state, and
                // no agent is there to notice. Look once per poll; re-apply once per boot.
                force = self.rebooted(d, &qga).await;
                if !force && let Some(s) = support {
                    retry_at = Some(tokio::time::Instant::now() + s.poll);
                }
            }
            if let Some(d) = desired.as_ref().filter(|d| !d.paused)
                && (confirmed.as_deref() != Some(d.revision.as_str()) || force)
                && (due || force)
            {
                retry_at = None;
                let result = match support.filter(|_| use_qga) {
                    Some(support) => self.attempt_qga(d, support, &mut qga).await,
                    None => self.attempt(d, force).await,
                };
                match result {
                    Ok(true) => {
                        confirmed = Some(d.revision.clone());
                        failures = 0;
                    }
                    Ok(false) => {
                        failures += 1;
                        let cfg = &self.engine.config;
                        let delay =
                            cfg.retry_min.saturating_mul(1 << failures.min(10).saturating_sub(1)).min(cfg.retry_max);
                        retry_at = Some(tokio::time::Instant::now() + delay);
                    }
                    Err(delay) => retry_at = delay.map(|d| tokio::time::Instant::now() + d),
                }
                if use_qga
                    && qga.applied_boot.is_some()
                    && retry_at.is_none()
                    && let Some(s) = support
                {
                    retry_at = Some(tokio::time::Instant::now() + s.poll);
                }
            } else if let Some(d) = desired.as_ref().filter(|d| d.paused) {
                self.emit(&d.revision, Phase::Pending, "delivery is paused", None);
            }
            let sleep = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.engine.cancel.cancelled() => return,
                changed = self.desired.changed() => {
                    if changed.is_err() { return; }
                    // New content: try at once.
                    retry_at = None;
                    failures = 0;
                }
                _ = self.kick.notified() => { retry_at = None; }
                _ = sleep => {}
            }
        }
    }

    /// One delivery attempt. `Ok(true)`: confirmed; `Ok(false)`: the router refused it (retry
    /// with backoff); `Err(Some(d))`: unknown outcome, retry after `d`; `Err(None)`: wait for a
    /// connection.
    async fn attempt(&self, d: &Desired, force: bool) -> Result<bool, Option<Duration>> {
        let store = &self.engine.store;
        let previous = match store.load(&self.id).await {
            Ok(p) => p,
            Err(e) => {
                self.emit(&d.revision, Phase::Failed, format!("cannot read the applied record: {e}"), None);
                return Err(Some(self.engine.config.retry_min));
            }
        };
        let substituted = d.substituted(&d.config).and_then(|desired| {
            let previous = previous.as_ref().map(|p| d.substituted(&p.config)).transpose()?;
            Ok((desired, previous))
        });
        let (desired_config, previous_config) = match substituted {
            Ok(pair) => pair,
            Err(e) => {
                self.emit(&d.revision, Phase::Failed, e.to_string(), None);
                return Ok(false);
            }
        };
        let request = ApplyRequest {
            revision: Some(Revision { id: d.revision.clone(), digest: d.digest.clone() }),
            desired_config,
            policy: match d.policy {
                ConfigPolicy::Merge => WirePolicy::Merge,
                ConfigPolicy::Replace => WirePolicy::Replace,
            } as i32,
            managed_scopes: d.managed_scopes.clone(),
            previous_config: previous_config.unwrap_or_default(),
            previous_revision: previous.as_ref().map(|p| Revision { id: p.revision.clone(), digest: String::new() }),
            save: d.save,
            commit_confirm: Some(CommitConfirm {
                enabled: d.commit_confirm.is_some(),
                timeout_minutes: d.commit_confirm.unwrap_or(0),
                proof_deadline: None,
            }),
            deadline: prost_types::Duration::try_from(d.apply_timeout).ok(),
            force,
            deletions: d.deletions.clone(),
            ..ApplyRequest::default()
        };
        self.emit(&d.revision, Phase::Applying, "delivering", None);
        let started = std::time::Instant::now();
        // The hub's timeout covers the agent's own deadline plus the commit-confirm proof.
        let timeout = d.apply_timeout + Duration::from_secs(30);
        let result = self.engine.hub.apply(&self.id, request, timeout).await;
        let attempt = |outcome: &str, r: Option<&ApplyResult>| Attempt {
            outcome: outcome.to_owned(),
            commands: r.map_or(0, |r| r.commands.len() as u32),
            duration: started.elapsed(),
            at: SystemTime::now(),
            running_digest: r.map(|r| r.running_digest.clone()).unwrap_or_default(),
            saved: r.is_some_and(|r| r.saved),
        };
        match result {
            Ok(r) => {
                let outcome = ApplyOutcome::try_from(r.outcome).unwrap_or(ApplyOutcome::Unspecified);
                let name = outcome_name(outcome);
                match outcome {
                    ApplyOutcome::Applied | ApplyOutcome::NoChange => {
                        let record =
                            AppliedRecord { revision: d.revision.clone(), config: d.config.clone(), at: unix_now() };
                        // The agent recorded it too, durably: its record is the one that counts.
                        if let Err(e) = store.note(&self.id, &record).await {
                            // Delivered, but the next Merge may miss removals: say so.
                            tracing::error!(router = %self.id, error = %e, "cannot record the applied revision");
                        }
                        let message = if outcome == ApplyOutcome::NoChange {
                            "the router already runs this revision".to_owned()
                        } else {
                            format!("applied {} commands", r.commands.len())
                        };
                        self.emit(&d.revision, Phase::Applied, message, Some(attempt(name, Some(&r))));
                        Ok(true)
                    }
                    _ => {
                        let mut message = format!("{name}: {}", if r.error.is_empty() { &r.output } else { &r.error });
                        if !r.failed_paths.is_empty() {
                            message.push_str(&format!(" (failed paths: {})", r.failed_paths.join(", ")));
                        }
                        self.emit(&d.revision, Phase::Failed, d.redact(&message), Some(attempt(name, Some(&r))));
                        Ok(false)
                    }
                }
            }
            Err(DeliveryError::NotConnected(_)) => {
                self.emit(&d.revision, Phase::Pending, "waiting for the router's agent to connect", None);
                Err(None)
            }
            Err(e @ (DeliveryError::SessionLost(_) | DeliveryError::Timeout { .. })) => {
                self.emit(&d.revision, Phase::Failed, e.to_string(), Some(attempt("Unknown", None)));
                Err(Some(self.engine.config.retry_unknown))
            }
            Err(e) => {
                self.emit(&d.revision, Phase::Failed, d.redact(&e.to_string()), Some(attempt("Refused", None)));
                Ok(false)
            }
        }
    }
}

/// A worker's guest-agent bookkeeping (reset whenever the agent has a session).
#[derive(Default)]
struct QgaState {
    /// Since when the router has had no agent session (as seen by this worker).
    no_session_since: Option<std::time::Instant>,
    /// When this worker last bootstrapped the router.
    last_bootstrap: Option<std::time::Instant>,
    /// The guest's boot id when the guest agent last delivered the confirmed revision.
    applied_boot: Option<String>,
}

impl WorkerRun {
    async fn guest(&self, d: &Desired, support: &QgaSupport) -> Result<QgaClient, String> {
        let route = d.qga.as_ref().ok_or("no guest-agent route")?;
        let provider = support.resolver.resolve(&route.vm).await?;
        let state = provider.state().await.map_err(|e| format!("{}: cannot read the VM's state: {e}", route.vm))?;
        if !state.running {
            return Err(format!("{} is not running", route.vm));
        }
        let transport = provider.transport().await.map_err(|e| format!("{}: {e}", route.vm))?;
        Ok(QgaClient::with_config(transport, QgaClientConfig::default()))
    }

    /// Whether the guest booted since the guest agent delivered (unknown counts as no).
    async fn rebooted(&self, d: &Desired, qga: &QgaState) -> bool {
        let Some(support) = self.engine.qga.get() else { return false };
        let Ok(client) = self.guest(d, support).await else { return false };
        let Ok(id) = client.read_file_limited(&support.bootstrap.layout.boot_id(), 128).await else { return false };
        let id = String::from_utf8_lossy(&id).trim().to_owned();
        let changed = qga.applied_boot.as_deref().is_some_and(|b| b != id);
        if changed {
            tracing::info!(router = %self.id, "the router rebooted since the guest agent delivered; delivering again");
        }
        changed
    }

    /// One step of the guest-agent path for a router without an agent session: bootstrap,
    /// wait, or deliver. Same result contract as [`attempt`](Self::attempt).
    async fn attempt_qga(
        &self,
        d: &Desired,
        support: &QgaSupport,
        qga: &mut QgaState,
    ) -> Result<bool, Option<Duration>> {
        let Some(route) = d.qga.as_ref() else { return Err(None) };
        let client = match self.guest(d, support).await {
            Ok(c) => c,
            Err(e) => {
                self.emit(&d.revision, Phase::Pending, format!("no agent session; {e}"), None);
                return Err(Some(support.poll));
            }
        };
        let layout = &support.bootstrap.layout;
        let probe = match guest::probe(&client, layout).await {
            Ok(p) => p,
            Err(e) => {
                self.emit(&d.revision, Phase::Pending, format!("no agent session; the guest agent: {e}"), None);
                return Err(Some(support.poll));
            }
        };
        let now = std::time::Instant::now();
        let since = *qga.no_session_since.get_or_insert(now);
        let next = decide(
            &Situation {
                route,
                probe: &probe,
                have_binary: support.bootstrap.agent_binary.is_some(),
                without_session: now - since,
                since_bootstrap: qga.last_bootstrap.map(|b| now - b),
            },
            support.fallback_after,
            support.session_wait,
        );
        match next {
            Next::Wait(left) => {
                self.emit(
                    &d.revision,
                    Phase::Pending,
                    format!("waiting for the agent to connect (guest-agent delivery in {}s)", left.as_secs()),
                    None,
                );
                Err(Some(left.min(support.poll)))
            }
            Next::Bootstrap => {
                qga.last_bootstrap = Some(now);
                let token = match self.engine.hub.pki().issue_token(&self.id, Some(support.session_wait * 2)).await {
                    Ok(t) => t,
                    Err(e) => {
                        self.emit(&d.revision, Phase::Failed, format!("bootstrap: cannot issue a token: {e}"), None);
                        return Ok(false);
                    }
                };
                let identity = format!("{}/{}", self.id.namespace(), self.id.name());
                match guest::bootstrap(&client, &support.bootstrap, &probe, &identity, &token).await {
                    Ok(steps) => {
                        let steps: Vec<String> = steps.into_iter().map(|s| s.0).collect();
                        tracing::info!(router = %self.id, steps = ?steps, "bootstrapped the agent through the guest agent");
                        self.emit(
                            &d.revision,
                            Phase::Pending,
                            format!("bootstrapped the agent ({}); waiting for it to connect", steps.join("; ")),
                            None,
                        );
                        Err(Some(support.fallback_after.min(support.poll)))
                    }
                    Err(e) => {
                        self.emit(&d.revision, Phase::Failed, format!("bootstrap through the guest agent: {e}"), None);
                        Ok(false)
                    }
                }
            }
            Next::ApplyWithAgent(_) | Next::ApplyWithScript => self.deliver_qga(d, &client, &probe, next, qga).await,
        }
    }

    async fn deliver_qga(
        &self,
        d: &Desired,
        client: &QgaClient,
        probe: &GuestProbe,
        next: Next,
        qga: &mut QgaState,
    ) -> Result<bool, Option<Duration>> {
        let Some(support) = self.engine.qga.get() else { return Err(None) };
        let layout = &support.bootstrap.layout;
        let previous = match self.engine.store.load(&self.id).await {
            Ok(p) => p,
            Err(e) => {
                self.emit(&d.revision, Phase::Failed, format!("cannot read the applied record: {e}"), None);
                return Err(Some(self.engine.config.retry_min));
            }
        };
        let texts = d.substituted(&d.config).and_then(|desired| {
            let previous =
                previous.as_ref().map(|p| d.substituted(&p.config).map(|c| (p.revision.clone(), c))).transpose()?;
            Ok((desired, previous))
        });
        let (desired, previous) = match texts {
            Ok(t) => t,
            Err(e) => {
                self.emit(&d.revision, Phase::Failed, e.to_string(), None);
                return Ok(false);
            }
        };
        let request = FallbackRequest {
            revision: d.revision.clone(),
            desired,
            previous,
            deletions: d.deletions.clone(),
            replace: d.policy == ConfigPolicy::Replace,
            scopes: d.managed_scopes.clone(),
            save: d.save,
            deadline: d.apply_timeout,
        };
        self.emit(&d.revision, Phase::Applying, "delivering through the guest agent", None);
        let started = std::time::Instant::now();
        let result = match &next {
            Next::ApplyWithAgent(binary) => fallback::apply_with_agent(client, layout, binary, &request).await,
            _ => fallback::apply_with_script(client, layout, &request).await,
        };
        let attempt = |r: Option<&FallbackResult>| Attempt {
            outcome: r.map_or_else(|| "Unknown".to_owned(), |r| r.outcome.clone()),
            commands: r.map_or(0, |r| r.commands.len() as u32),
            duration: started.elapsed(),
            at: SystemTime::now(),
            running_digest: r.map(|r| r.running_digest.clone()).unwrap_or_default(),
            saved: r.is_some_and(|r| r.saved),
        };
        match result {
            Ok(r) if r.outcome == "Applied" || r.outcome == "NoChange" => {
                let record = AppliedRecord { revision: d.revision.clone(), config: d.config.clone(), at: unix_now() };
                // `vrouter-agent apply` records it on the router; the apply script does not, so
                // the operator's record is then the only one and must be durable.
                let recorded = if r.via == "agent" {
                    self.engine.store.note(&self.id, &record).await
                } else {
                    self.engine.store.save(&self.id, &record).await
                };
                if let Err(e) = recorded {
                    tracing::error!(router = %self.id, error = %e, "cannot record the applied revision");
                }
                qga.applied_boot = probe.boot_id.clone();
                let message = format!(
                    "{} through the guest agent ({}; the agent has no session)",
                    if r.outcome == "NoChange" {
                        "the router already runs this revision".to_owned()
                    } else {
                        format!("applied {} commands", r.commands.len())
                    },
                    if r.via == "agent" { "vrouter-agent apply" } else { "apply script" },
                );
                self.emit(&d.revision, Phase::Applied, message, Some(attempt(Some(&r))));
                Ok(true)
            }
            Ok(r) => {
                let message = d.redact(&format!("{} through the guest agent: {}", r.outcome, r.message));
                self.emit(&d.revision, Phase::Failed, message, Some(attempt(Some(&r))));
                Ok(false)
            }
            Err(e) => {
                let message = d.redact(&format!("guest-agent delivery: {e}"));
                self.emit(&d.revision, Phase::Failed, message, Some(attempt(None)));
                Err(Some(support.poll))
            }
        }
    }
}

/// The outcome's name as shown in status.
pub fn outcome_name(outcome: ApplyOutcome) -> &'static str {
    match outcome {
        ApplyOutcome::Applied => "Applied",
        ApplyOutcome::NoChange => "NoChange",
        ApplyOutcome::Failed => "Failed",
        ApplyOutcome::RolledBack => "RolledBack",
        ApplyOutcome::Partial => "Partial",
        ApplyOutcome::Unspecified => "Unknown",
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
