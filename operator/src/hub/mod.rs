//! The agent hub: every router's agent holds one bidirectional stream open to the operator; the
//! hub keeps the registry of those sessions and offers the rest of the operator an async API:
//! deliver a revision and get the outcome, ask who is connected, fetch a running config,
//! subscribe to status and drift reports.
//!
//! - One session per router identity. A newer stream for the same identity replaces the old
//!   one atomically: it gets a higher *epoch*, the old one is closed with `FENCED`, and whatever
//!   the old stream still sends is ignored.
//! - Applies to one router are strictly serial (a per-router lock held across reconnects). A
//!   revision the router reports as applied is acknowledged `NO_CHANGE` without a round trip
//!   unless the request says `force`, so retries and reconnects never commit twice.
//! - Liveness: HTTP/2 keepalive on the transport, plus an application heartbeat: the hub pings
//!   every interval, and a session silent for `interval × misses` is ended.
//! - Limits: message size, number of sessions, handshake deadline, request deadlines; on the
//!   transport, the TLS handshake deadline, the first-request deadline and a cap on connections
//!   without a verified client certificate; each refusal is a clear error and a counted metric.
//!
//! No Kubernetes types here: the controllers and the standalone mode both drive this API.

mod conn_limit;
mod listener;
mod preface;
mod refusals;
mod service;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use vrouter_proto::RouterId;
use vrouter_proto::v1::{
    ApplyOutcome, ApplyRequest, ApplyResult, CloseCode, ControllerMessage, DriftReport, GetRunningConfig, Hello,
    Revision, RunningConfig, StatusReport, controller_message,
};

use crate::metrics::{LabelKind, Metrics};
use crate::pki::Pki;

pub use service::{AgentServer, ServeError, ServerConfig};
pub use session::SessionInfo;
use session::{Pending, Session};

/// Hub settings.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How often the hub pings each agent.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats before a session is declared dead.
    pub heartbeat_misses: u32,
    /// Time allowed between stream start and the agent's `Hello`.
    pub handshake_timeout: Duration,
    /// Most sessions at once; more streams are refused.
    pub max_sessions: usize,
    /// Largest protobuf message accepted or sent.
    pub max_message_bytes: usize,
    /// How often agents send status reports.
    pub status_interval: Duration,
    /// How often agents re-check drift.
    pub drift_interval: Duration,
    /// Frames queued per session before senders wait.
    pub outbound_queue: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_misses: 3,
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 20_000,
            max_message_bytes: 4 * 1024 * 1024,
            status_interval: Duration::from_secs(60),
            drift_interval: Duration::from_secs(300),
            outbound_queue: 16,
        }
    }
}

/// Something that happened on an agent session.
#[derive(Clone, Debug)]
pub enum HubEvent {
    /// A session started (or replaced an older one).
    Connected {
        /// The router.
        id: RouterId,
        /// The session's epoch.
        epoch: u64,
        /// What the agent said about itself.
        hello: Box<Hello>,
    },
    /// A session ended.
    Disconnected {
        /// The router.
        id: RouterId,
        /// The session's epoch.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// A status report.
    Status {
        /// The router.
        id: RouterId,
        /// The report.
        report: Box<StatusReport>,
    },
    /// A drift report.
    Drift {
        /// The router.
        id: RouterId,
        /// The report.
        report: Box<DriftReport>,
    },
}

/// Why a request to a router did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The router has no session.
    #[error("router {0} is not connected")]
    NotConnected(String),
    /// The session ended before the answer came (it may have been applied; retry to find out —
    /// a retry of the same revision never commits twice).
    #[error("session with {0} ended before it answered")]
    SessionLost(String),
    /// No answer within the deadline.
    #[error("router {id} did not answer within {after:?}")]
    Timeout {
        /// The router.
        id: String,
        /// The deadline.
        after: Duration,
    },
    /// The agent refused the request.
    #[error("router {id} refused the request: {reason}")]
    Rejected {
        /// The router.
        id: String,
        /// The agent's reason.
        reason: String,
    },
    /// The request is larger than the message size limit.
    #[error("request for {id} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// The router.
        id: String,
        /// Encoded size.
        size: usize,
        /// Limit.
        limit: usize,
    },
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) pki: Arc<Pki>,
    pub(crate) metrics: Metrics,
    sessions: Mutex<HashMap<RouterId, Arc<Session>>>,
    apply_locks: Mutex<HashMap<RouterId, Arc<tokio::sync::Mutex<()>>>>,
    next_epoch: AtomicU64,
    next_request: AtomicU64,
    events: broadcast::Sender<HubEvent>,
    started: std::time::Instant,
    /// Whether agent sessions are accepted (false on a follower).
    serving: std::sync::atomic::AtomicBool,
}

/// The agent hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("sessions", &self.session_count()).finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub using `pki` to authenticate agents.
    pub fn new(config: HubConfig, pki: Arc<Pki>, metrics: Metrics) -> Self {
        let (events, _) = broadcast::channel(4096);
        Hub {
            inner: Arc::new(Inner {
                config,
                pki,
                metrics,
                sessions: Mutex::new(HashMap::new()),
                apply_locks: Mutex::new(HashMap::new()),
                next_epoch: AtomicU64::new(1),
                next_request: AtomicU64::new(1),
                events,
                started: std::time::Instant::now(),
                serving: std::sync::atomic::AtomicBool::new(true),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The PKI.
    pub fn pki(&self) -> &Arc<Pki> {
        &self.inner.pki
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Events from all sessions. Slow receivers lose the oldest events (`Lagged`); resync
    /// with [`Hub::sessions`].
    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// Accepts agent sessions (`true`, the default) or refuses new ones with `UNAVAILABLE` (a
    /// follower: the agent reconnects, through the Service, to the leader). Open sessions are
    /// not touched ([`Hub::close_all`] ends them).
    pub fn set_serving(&self, serving: bool) {
        self.inner.serving.store(serving, Ordering::SeqCst);
    }

    /// Whether agent sessions are accepted.
    pub fn serving(&self) -> bool {
        self.inner.serving.load(Ordering::SeqCst)
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The session of a router, if connected.
    pub fn session(&self, id: &RouterId) -> Option<SessionInfo> {
        self.get(id).map(|s| s.info(self.inner.started))
    }

    /// Every open session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> =
            self.inner.sessions.lock().map(|s| s.values().cloned().collect()).unwrap_or_default();
        sessions.iter().map(|s| s.info(self.inner.started)).collect()
    }

    fn get(&self, id: &RouterId) -> Option<Arc<Session>> {
        self.inner.sessions.lock().ok().and_then(|s| s.get(id).cloned())
    }

    fn apply_lock(&self, id: &RouterId) -> Arc<tokio::sync::Mutex<()>> {
        match self.inner.apply_locks.lock() {
            Ok(mut locks) => locks.entry(id.clone()).or_default().clone(),
            // A poisoned map still must not serialize nothing: fall back to a fresh lock.
            Err(_) => Arc::default(),
        }
    }

    /// A fresh request id.
    fn request_id(&self) -> String {
        format!("op-{}", self.inner.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// Delivers a revision to a router and waits for the outcome (at most `timeout`).
    ///
    /// Applies to one router run one at a time. A revision the router already reports as
    /// applied is acknowledged `NO_CHANGE` right away unless `request.force` is set.
    pub async fn apply(
        &self,
        id: &RouterId,
        mut request: ApplyRequest,
        timeout: Duration,
    ) -> Result<ApplyResult, DeliveryError> {
        let lock = self.apply_lock(id);
        let _serial = lock.lock().await;
        let session = self.get(id).ok_or_else(|| DeliveryError::NotConnected(id.to_string()))?;
        let revision = request.revision.clone().unwrap_or_default();
        if !request.force
            && !request.dry_run
            && session.applied().is_some_and(|r| r.id == revision.id && !r.id.is_empty())
        {
            self.inner.metrics.applies.get_or_create(&LabelKind::of("no_change")).inc();
            return Ok(ApplyResult {
                request_id: request.request_id,
                revision: Some(revision),
                outcome: ApplyOutcome::NoChange as i32,
                output: "revision already applied on the router".to_owned(),
                running_digest: session.hello().running_digest.clone(),
                ..ApplyResult::default()
            });
        }
        if request.request_id.is_empty() {
            request.request_id = self.request_id();
        }
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        let request_id = request.request_id.clone();
        let message = ControllerMessage { msg: Some(controller_message::Msg::Apply(request)) };
        self.check_size(id, &message)?;
        session.add_pending(request_id.clone(), Pending::Apply(tx));
        if !session.send(message).await {
            session.take_pending(&request_id);
            return Err(DeliveryError::SessionLost(id.to_string()));
        }
        let result = tokio::select! {
            r = rx => r.map_err(|_| DeliveryError::SessionLost(id.to_string()))?,
            _ = tokio::time::sleep(timeout) => {
                session.take_pending(&request_id);
                return Err(DeliveryError::Timeout { id: id.to_string(), after: timeout });
            }
        };
        let result = result.map_err(|reason| DeliveryError::Rejected { id: id.to_string(), reason })?;
        self.inner.metrics.apply_duration.observe(started.elapsed().as_secs_f64());
        let outcome = ApplyOutcome::try_from(result.outcome).unwrap_or(ApplyOutcome::Unspecified);
        self.inner.metrics.applies.get_or_create(&LabelKind::of(outcome_label(outcome))).inc();
        if matches!(outcome, ApplyOutcome::Applied | ApplyOutcome::NoChange) && !result.dry_run {
            session.set_applied(result.revision.clone().unwrap_or(revision));
        }
        Ok(result)
    }

    /// Fetches a router's running configuration.
    pub async fn running_config(&self, id: &RouterId, timeout: Duration) -> Result<RunningConfig, DeliveryError> {
        let session = self.get(id).ok_or_else(|| DeliveryError::NotConnected(id.to_string()))?;
        let request_id = self.request_id();
        let (tx, rx) = oneshot::channel();
        session.add_pending(request_id.clone(), Pending::Running(tx));
        let message = ControllerMessage {
            msg: Some(controller_message::Msg::GetRunningConfig(GetRunningConfig { request_id: request_id.clone() })),
        };
        if !session.send(message).await {
            session.take_pending(&request_id);
            return Err(DeliveryError::SessionLost(id.to_string()));
        }
        tokio::select! {
            r = rx => r.map_err(|_| DeliveryError::SessionLost(id.to_string()))?
                .map_err(|reason| DeliveryError::Rejected { id: id.to_string(), reason }),
            _ = tokio::time::sleep(timeout) => {
                session.take_pending(&request_id);
                Err(DeliveryError::Timeout { id: id.to_string(), after: timeout })
            }
        }
    }

    /// Records the revision a router runs when it was applied another way (QGA fallback), so the
    /// stream path does not commit it again.
    pub fn record_applied(&self, id: &RouterId, revision: Revision) {
        if let Some(session) = self.get(id) {
            session.set_applied(revision);
        }
    }

    /// Removes a router's identity: its certificate is refused from now on and its session
    /// ends with `IDENTITY_REVOKED`.
    pub async fn revoke(&self, id: &RouterId) -> Result<(), crate::pki::PkiError> {
        self.inner.pki.revoke(id).await?;
        if let Some(session) = self.get(id) {
            session.close(CloseCode::IdentityRevoked, "this router's identity was removed");
        }
        Ok(())
    }

    /// Ends every session (operator shutdown): agents reconnect with backoff.
    pub fn close_all(&self, reason: &str) {
        let sessions: Vec<Arc<Session>> =
            self.inner.sessions.lock().map(|s| s.values().cloned().collect()).unwrap_or_default();
        for s in sessions {
            s.close(CloseCode::Shutdown, reason);
        }
    }

    fn check_size(&self, id: &RouterId, message: &ControllerMessage) -> Result<(), DeliveryError> {
        use vrouter_proto::prost::Message;
        let size = message.encoded_len();
        if size > self.inner.config.max_message_bytes {
            return Err(DeliveryError::TooLarge {
                id: id.to_string(),
                size,
                limit: self.inner.config.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Registers a new session, fencing any older one for the same router.
    pub(crate) fn register(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        let old = self.inner.sessions.lock().ok().and_then(|mut s| s.insert(session.id().clone(), session.clone()));
        if let Some(old) = &old {
            // The new session inherits what the router is known to run, until its own reports.
            if session.applied().is_none()
                && let Some(r) = old.applied()
            {
                session.set_applied(r);
            }
            old.close(CloseCode::Fenced, "a newer stream for this router took over");
            self.inner.metrics.sessions_fenced.inc();
        } else {
            self.inner.metrics.agent_sessions.inc();
        }
        old
    }

    /// Removes a session if it is still the current one for its router.
    pub(crate) fn unregister(&self, session: &Session, reason: &str) {
        let removed = self
            .inner
            .sessions
            .lock()
            .map(|mut s| {
                if s.get(session.id()).is_some_and(|cur| cur.epoch() == session.epoch()) {
                    s.remove(session.id());
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if removed {
            self.inner.metrics.agent_sessions.dec();
        }
        let _ = self.inner.events.send(HubEvent::Disconnected {
            id: session.id().clone(),
            epoch: session.epoch(),
            reason: reason.to_owned(),
        });
    }

    pub(crate) fn emit(&self, event: HubEvent) {
        let _ = self.inner.events.send(event);
    }

    pub(crate) fn next_epoch(&self) -> u64 {
        self.inner.next_epoch.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn started(&self) -> std::time::Instant {
        self.inner.started
    }
}

/// Metric label of an apply outcome.
pub fn outcome_label(outcome: ApplyOutcome) -> &'static str {
    match outcome {
        ApplyOutcome::Applied => "applied",
        ApplyOutcome::NoChange => "no_change",
        ApplyOutcome::Failed => "failed",
        ApplyOutcome::RolledBack => "rolled_back",
        ApplyOutcome::Partial => "partial",
        ApplyOutcome::Unspecified => "unspecified",
    }
}
