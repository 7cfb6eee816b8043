//! The kube side of leader election: reads and conditionally writes the Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Decision, LeaseConfig, decide, still_leading};

/// Why an elector cannot start.
#[derive(Debug, thiserror::Error)]
#[error("leader election: {0}")]
pub struct ElectorError(pub String);

/// Contends for one Lease. [`Elector::step`] makes one round; [`Elector::run`] loops.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The lease as last read or written (a leader renews from it without reading first).
    lease: Option<Lease>,
    /// The resourceVersion last seen and since when (expiry is judged on this clock).
    seen: Option<(String, Instant)>,
    /// When this replica last wrote the lease as its holder; `Some` while leading.
    renewed: Option<Instant>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector").field("config", &self.config).field("leading", &self.renewed.is_some()).finish()
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    /// An elector for `config` (validated).
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, ElectorError> {
        config.validate().map_err(ElectorError)?;
        Ok(Elector { api: Api::namespaced(client, &config.namespace), config, lease: None, seen: None, renewed: None })
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Whether this replica led after the last round.
    pub fn leading(&self) -> bool {
        self.renewed.is_some()
    }

    fn observe(&mut self, lease: Option<&Lease>, now: Instant) -> Duration {
        let Some(rv) = lease.and_then(|l| l.metadata.resource_version.clone()) else {
            self.seen = None;
            return Duration::ZERO;
        };
        match &self.seen {
            Some((seen, since)) if *seen == rv => now.saturating_duration_since(*since),
            _ => {
                self.seen = Some((rv, now));
                Duration::ZERO
            }
        }
    }

    fn wrote(&mut self, lease: Lease, now: Instant) {
        self.seen = lease.metadata.resource_version.clone().map(|rv| (rv, now));
        self.lease = Some(lease);
        self.renewed = Some(now);
    }

    fn step_down(&mut self, why: &str) {
        if self.renewed.take().is_some() {
            tracing::warn!(lease = %self.config.name, reason = why, "lost leadership");
        }
        self.lease = None;
    }

    /// A failed call: a leader keeps leading until its renew deadline passes.
    fn failed(&mut self, what: &str, error: &kube::Error, now: Instant) -> bool {
        tracing::warn!(lease = %self.config.name, error = %error, "{what} failed");
        match self.renewed {
            Some(t) if still_leading(now.saturating_duration_since(t), self.config.renew_deadline) => true,
            Some(_) => {
                self.step_down("renew deadline passed");
                false
            }
            None => false,
        }
    }

    fn held_spec(&self, previous: Option<&LeaseSpec>, acquire: bool) -> LeaseSpec {
        let now = micro_now();
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: if acquire { Some(now.clone()) } else { previous.and_then(|s| s.acquire_time.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if acquire && previous.is_some() {
                transitions.saturating_add(1)
            } else {
                transitions
            }),
            ..previous.cloned().unwrap_or_default()
        }
    }

    /// One round at `now`: read the lease (unless leading), decide, write. Returns whether this
    /// replica leads afterwards.
    pub async fn step(&mut self, now: Instant) -> bool {
        let current = match (&self.lease, self.renewed) {
            (Some(l), Some(_)) => Some(l.clone()),
            _ => match self.api.get_opt(&self.config.name).await {
                Ok(l) => l,
                Err(e) => return self.failed("reading the lease", &e, now),
            },
        };
        let unchanged_for = self.observe(current.as_ref(), now);
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = match (&current, spec) {
            // A Lease without a spec is free.
            (Some(_), None) => Decision::TakeOver,
            _ => decide(spec, unchanged_for, &self.config.identity, self.config.lease_duration),
        };
        match decision {
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.held_spec(None, true)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(l) => {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "created the lease: leading");
                        self.wrote(l, now);
                        true
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // Another replica created it first: read it next round.
                        self.step_down("another replica created the lease");
                        false
                    }
                    Err(e) => self.failed("creating the lease", &e, now),
                }
            }
            Decision::Renew | Decision::TakeOver => {
                let acquire = decision == Decision::TakeOver || self.renewed.is_none();
                let Some(mut lease) = current else { return false };
                lease.spec = Some(self.held_spec(lease.spec.as_ref(), acquire));
                // `replace` sends metadata.resourceVersion: the write fails if anyone wrote since.
                match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
                    Ok(l) => {
                        if self.renewed.is_none() {
                            tracing::info!(lease = %self.config.name, identity = %self.config.identity, "acquired the lease: leading");
                        }
                        self.wrote(l, now);
                        true
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        self.step_down("the lease changed under us (conflict)");
                        false
                    }
                    Err(e) => self.failed("writing the lease", &e, now),
                }
            }
            Decision::Follow { holder, expires_in } => {
                self.step_down("another replica holds the lease");
                tracing::debug!(lease = %self.config.name, %holder, ?expires_in, "following");
                self.lease = current;
                false
            }
        }
    }

    /// Gives the lease up (shutdown), so another replica takes over without waiting for expiry.
    /// Conditional like every write; failures are logged.
    pub async fn release(&mut self) {
        if self.renewed.take().is_none() {
            return;
        }
        let Some(mut lease) = self.lease.take() else { return };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
        }
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.config.name, error = %e, "cannot release the lease"),
        }
    }

    /// Contends until `shutdown`, publishing "am I leader" on `leader`; releases the lease at the
    /// end if held.
    pub async fn run(mut self, leader: watch::Sender<bool>, shutdown: CancellationToken) {
        loop {
            let leading = self.step(Instant::now()).await;
            leader.send_if_modified(|l| std::mem::replace(l, leading) != leading);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        leader.send_if_modified(|l| std::mem::replace(l, false));
        self.release().await;
    }

    /// Starts [`Elector::run`] on a task; the receiver says whether this replica leads.
    pub fn spawn(self, shutdown: CancellationToken) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(self.run(tx, shutdown));
        (rx, task)
    }
}
