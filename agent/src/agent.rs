//! The agent's life: enroll on first start, connect, keep a session, reconnect with jittered
//! exponential backoff (reset after a healthy session), and apply revisions one at a time in a
//! worker that outlives sessions (a commit-confirm proof may need a reconnect).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use vrouter_proto::RouterId;
use vrouter_proto::v1::{AgentMessage, ApplyProgress, ApplyRequest, CloseCode, agent_message};

use crate::apply::{Applier, Reachability};
use crate::backend::Backend;
use crate::config::AgentConfig;
use crate::creds::{Creds, Loaded, unix_now};
use crate::session::{self, SessionEnd};
use crate::state::StateFile;
use crate::transport;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot work (no certificate and no token, bad identity, ...).
    #[error("{0}")]
    Fatal(String),
}

/// What the agent is doing, for the simulator's display and for tests.
#[derive(Debug, Default)]
pub struct Observer {
    /// A session is open.
    pub connected: AtomicBool,
    /// Sessions established so far.
    pub sessions: AtomicU64,
    /// Applies finished so far.
    pub applies: AtomicU64,
    /// The last revision applied (or acknowledged).
    pub applied: Mutex<Option<String>>,
    /// The last connection or enrollment error.
    pub last_error: Mutex<Option<String>>,
}

impl Observer {
    fn error(&self, e: impl Into<String>) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.into());
        }
    }

    /// The last applied revision id.
    pub fn applied_revision(&self) -> Option<String> {
        self.applied.lock().ok().and_then(|a| a.clone())
    }
}

/// Asks the current session for a fresh round trip.
pub(crate) enum SessionCmd {
    Prove(oneshot::Sender<()>),
}

/// The current session, as seen by the apply worker.
#[derive(Clone, Default)]
pub(crate) struct Link {
    pub(crate) epoch: u64,
    pub(crate) session: Option<mpsc::Sender<SessionCmd>>,
}

struct Prover {
    link: watch::Receiver<Link>,
}

#[async_trait]
impl Reachability for Prover {
    async fn prove(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        let mut rx = self.link.clone();
        let start_epoch = rx.borrow().epoch;
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(tx) = current.session {
                // A session opened after the commit has already made a full round trip.
                if current.epoch > start_epoch {
                    return true;
                }
                let (otx, orx) = oneshot::channel();
                if tx.send(SessionCmd::Prove(otx)).await.is_ok()
                    && matches!(tokio::time::timeout_at(until, orx).await, Ok(Ok(())))
                {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                return false;
            }
        }
    }
}

/// The agent.
pub struct Agent {
    config: AgentConfig,
    id: RouterId,
    creds: Creds,
    backend: Arc<dyn Backend>,
    applier: Arc<Applier>,
    observer: Arc<Observer>,
}

impl Agent {
    /// An agent with this configuration and backend.
    pub fn new(config: AgentConfig, backend: Arc<dyn Backend>) -> Result<Self, AgentError> {
        let id = config.router_id().map_err(|e| AgentError::Fatal(e.to_string()))?;
        let protected = Applier::load_protected(config.apply.protected_file.as_deref()).map_err(AgentError::Fatal)?;
        let applier =
            Arc::new(Applier::new(backend.clone(), StateFile::new(&config.state_dir), config.apply.clone(), protected));
        Ok(Agent { creds: Creds::new(&config.state_dir), config, id, backend, applier, observer: Arc::default() })
    }

    /// What the agent is doing.
    pub fn observer(&self) -> Arc<Observer> {
        self.observer.clone()
    }

    /// The applier (for one-shot local applies).
    pub fn applier(&self) -> Arc<Applier> {
        self.applier.clone()
    }

    fn token(&self) -> Option<String> {
        if let Some(t) = &self.config.operator.token {
            return Some(t.clone());
        }
        let path = self.config.operator.token_file.as_ref()?;
        std::fs::read_to_string(path).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// Credentials to connect with, enrolling first if there are none (or they expired). After
    /// the operator refused the certificate (`refused`), a token this agent has not spent yet
    /// enrolls again; working credentials are never thrown away.
    async fn credentials(&self, refused: bool) -> Result<Loaded, String> {
        match self.creds.load() {
            Ok(Some(l)) if !l.expired(unix_now()) => {
                let fresh = self.token().filter(|t| !self.creds.token_spent(t));
                if !refused || fresh.is_none() {
                    return Ok(l);
                }
                tracing::warn!("the operator refused this certificate; enrolling with the new token");
            }
            Ok(Some(_)) => tracing::warn!("the client certificate has expired; enrolling again"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "stored credentials are unusable; enrolling again"),
        }
        let token = self.token().ok_or_else(|| {
            "no usable certificate and no enrollment token: get a token for this router from the operator".to_owned()
        })?;
        let ca = std::fs::read_to_string(&self.config.operator.ca_file)
            .map_err(|e| format!("{}: {e}", self.config.operator.ca_file.display()))?;
        let loaded = transport::enroll(&self.config.operator, &ca, &self.id, &token, &self.creds)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(router = %self.id, "enrolled with the operator");
        if let Some(path) = &self.config.operator.token_file {
            // The token is spent; do not leave it lying around.
            let _ = std::fs::remove_file(path);
        }
        Ok(loaded)
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let (link_tx, link_rx) = watch::channel(Link::default());
        let (outbox_tx, mut outbox_rx) = mpsc::unbounded_channel::<AgentMessage>();
        let (apply_tx, apply_rx) = mpsc::channel::<ApplyRequest>(64);
        let worker = tokio::spawn(apply_worker(
            self.applier.clone(),
            apply_rx,
            outbox_tx.clone(),
            Prover { link: link_rx },
            self.observer.clone(),
        ));
        let backoff_builder = ExponentialBuilder::default()
            .with_min_delay(self.config.reconnect.min_delay())
            .with_max_delay(self.config.reconnect.max_delay())
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        let mut backoff = backoff_builder.build();
        let mut network = self.backend.network();
        let mut epoch = 0u64;
        let mut refused = false;
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            // A simulated router whose commit cut its own network waits for the revert.
            while !*network.borrow_and_update() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = network.changed() => if r.is_err() { break },
                }
            }
            if shutdown.is_cancelled() {
                break Ok(());
            }
            let mut wait_extra = false;
            match self.credentials(refused).await {
                Err(e) => {
                    tracing::warn!(router = %self.id, error = %e, "cannot get credentials");
                    self.observer.error(e.clone());
                    if e.starts_with("no usable certificate")
                        && self.config.operator.token_file.is_none()
                        && self.config.operator.token.is_none()
                    {
                        break Err(AgentError::Fatal(e));
                    }
                }
                Ok(loaded) => match transport::connect(&self.config.operator, &loaded.ca_pem, Some(&loaded)).await {
                    Err(e) => {
                        tracing::debug!(router = %self.id, error = %e, "connection failed");
                        self.observer.error(e.to_string());
                    }
                    Ok(channel) => {
                        epoch += 1;
                        let started = Instant::now();
                        let end = session::run(session::Context {
                            id: &self.id,
                            creds: &self.creds,
                            loaded,
                            backend: &self.backend,
                            applier: &self.applier,
                            apply_tx: &apply_tx,
                            outbox_tx: &outbox_tx,
                            outbox_rx: &mut outbox_rx,
                            link: &link_tx,
                            epoch,
                            observer: &self.observer,
                            shutdown: &shutdown,
                            channel,
                        })
                        .await;
                        link_tx.send_modify(|l| l.session = None);
                        self.observer.connected.store(false, Ordering::SeqCst);
                        tracing::info!(router = %self.id, reason = %end, "session ended");
                        if started.elapsed() >= Duration::from_secs(self.config.reconnect.healthy_after_secs) {
                            backoff = backoff_builder.build();
                        }
                        refused = false;
                        match &end {
                            SessionEnd::Shutdown => break Ok(()),
                            SessionEnd::Closed { code, .. } if *code == CloseCode::Fenced => wait_extra = true,
                            // The operator no longer accepts this certificate: a token this agent
                            // has not spent yet enrolls again (see `credentials`).
                            SessionEnd::Closed { code, .. } if *code == CloseCode::IdentityRevoked => refused = true,
                            SessionEnd::Refused(status) if status.code() == tonic::Code::Unauthenticated => {
                                refused = true
                            }
                            _ => {}
                        }
                        self.observer.error(end.to_string());
                    }
                },
            }
            let delay = if wait_extra {
                self.config.reconnect.max_delay()
            } else {
                backoff.next().unwrap_or(self.config.reconnect.max_delay())
            };
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        };
        worker.abort();
        result
    }
}

/// Applies requests one at a time; results and progress go to the outbox, which whatever
/// session is current sends on.
async fn apply_worker(
    applier: Arc<Applier>,
    mut requests: mpsc::Receiver<ApplyRequest>,
    outbox: mpsc::UnboundedSender<AgentMessage>,
    prover: Prover,
    observer: Arc<Observer>,
) {
    while let Some(request) = requests.recv().await {
        let progress_out = outbox.clone();
        let progress = move |p: ApplyProgress| {
            let _ = progress_out.send(AgentMessage { msg: Some(agent_message::Msg::ApplyProgress(p)) });
        };
        let result = applier.apply(request, &progress, &prover).await;
        observer.applies.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = applier.last_applied()
            && let Ok(mut a) = observer.applied.lock()
        {
            *a = Some(r.id);
        }
        let _ = outbox.send(AgentMessage { msg: Some(agent_message::Msg::ApplyResult(result)) });
    }
}
