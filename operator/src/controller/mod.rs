//! Kubernetes controllers: thin shells (kube-runtime) over the pure planners.
//!
//! - [`binding`]: bindings → generated VRouterConfigs and binding status.
//! - [`target`]: a router's configs → its desired revision (to the delivery engine).
//! - [`status`]: the target's and configs' status from the tracker, coalesced per target.
//! - [`enroll`]: enrollment requests (`kubectl vrouter enroll`) → a token in a Secret.
//! - [`running`]: running-configuration requests (`kubectl vrouter diff`) → the router's
//!   running configuration, fetched through the hub, in a Secret ([`request`]: what both share).
//!
//! Reads come from reflector stores shared by the controllers; writes use server-side apply
//! under one field manager ([`FIELD_MANAGER`]). Reconcile errors are typed, retried with a
//! per-object exponential backoff and published as Warning Events on the object ([`failure`]);
//! concurrency is bounded.

pub mod binding;
pub mod client;
pub mod enroll;
pub mod failure;
pub mod request;
pub mod running;
pub mod status;
pub mod stores;
pub mod target;

pub use stores::{Change, Feeds, Stores};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use stores::Feed;

use crate::crd::{FIELD_MANAGER, VRouterBinding, VRouterConfig, VRouterParams, VRouterTarget, VRouterTemplate};
use crate::delivery::{DeliveryEvent, Engine, Phase};
use crate::hub::HubEvent;
use crate::tracker::Tracker;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The object has no namespace (the kinds are namespaced; this is a malformed event).
    #[error("{0} has no namespace")]
    NoNamespace(String),
    /// A lock was poisoned by a panic elsewhere.
    #[error("internal state is poisoned")]
    Poisoned,
    /// An enrollment request cannot be served now ([`enroll`]).
    #[error("enrollment of {target}: {message}")]
    Enroll {
        /// The target, `<namespace>/<name>`.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// A running-configuration request cannot be served now ([`running`]).
    #[error("running configuration of {target}: {message}")]
    Running {
        /// The target, `<namespace>/<name>`.
        target: String,
        /// What went wrong.
        message: String,
    },
}

/// Delivery state shared by the target controller and the event pump.
pub struct Delivery {
    /// Router and config status.
    pub tracker: Mutex<Tracker>,
    /// The delivery engine.
    pub engine: Engine,
    /// Targets whose status changed, for the status writer.
    pub marks: status::Marks,
}

impl Delivery {
    /// Delivery state, and the status writer's end of its marks.
    pub fn new(tracker: Tracker, engine: Engine) -> (Delivery, status::MarksRx) {
        let (marks, rx) = status::Marks::channel();
        (Delivery { tracker: Mutex::new(tracker), engine, marks }, rx)
    }
}

impl Error {
    /// The error's kind for metrics: `api_<code>` for API answers, `api_unreachable` for other
    /// client errors, `no_namespace`, `poisoned`, `enroll`, `running`.
    pub fn kind(&self) -> String {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => format!("api_{}", s.code),
                _ => "api_unreachable".to_owned(),
            },
            Error::NoNamespace(_) => "no_namespace".to_owned(),
            Error::Poisoned => "poisoned".to_owned(),
            Error::Enroll { .. } => "enroll".to_owned(),
            Error::Running { .. } => "running".to_owned(),
        }
    }

    /// Wraps a kube error with what was being done.
    pub fn kube(what: &'static str) -> impl Fn(kube::Error) -> Error {
        move |e| Error::Kube { what, source: Box::new(e) }
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Stores.
    pub stores: Stores,
    /// Event recorder (None: no Events, e.g. in tests that do not expect them).
    pub recorder: Option<Recorder>,
    /// Delivery (None: the binding controller alone).
    pub delivery: Option<Delivery>,
    /// Reconcile counts and errors are recorded here.
    pub metrics: crate::metrics::Metrics,
    failures: Mutex<HashMap<String, u32>>,
    /// Generated configs this process wrote: `ns/name` → (resourceVersion returned, hash of the
    /// spec written).
    pub(crate) written_configs: Mutex<HashMap<String, (String, u64)>>,
}

impl Context {
    /// A context.
    pub fn new(client: Client, stores: Stores, recorder: Option<Recorder>) -> Context {
        Context {
            client,
            stores,
            recorder,
            delivery: None,
            metrics: crate::metrics::Metrics::new(),
            failures: Mutex::default(),
            written_configs: Mutex::default(),
        }
    }

    /// Recording reconciles in `metrics` (the operator's registry).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Context {
        self.metrics = metrics;
        self
    }

    /// With delivery (the target controller).
    pub fn with_delivery(mut self, delivery: Delivery) -> Context {
        self.delivery = Some(delivery);
        self
    }

    /// Publishes an Event; failures are logged, never fatal.
    pub async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        if let Some(r) = &self.recorder
            && let Err(e) = r.publish(&binding::event(type_, reason, action, note), reference).await
        {
            tracing::warn!(error = %e, reason, "cannot publish an Event");
        }
    }

    /// The retry delay after a failure of `key` (doubling from 5 s to 5 min).
    pub fn backoff(&self, key: &str) -> Duration {
        let Ok(mut f) = self.failures.lock() else { return Duration::from_secs(60) };
        let n = f.entry(key.to_owned()).or_insert(0);
        *n = (*n + 1).min(10);
        (Duration::from_secs(5) * (1u32 << (*n - 1))).min(Duration::from_secs(300))
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

fn key_of<K: kube::Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.as_deref().unwrap_or_default(), o.meta().name.as_deref().unwrap_or_default())
}

/// The backoff of every watch (the shared stores and each controller's triggers): 250 ms
/// doubling to 5 s, reset after 30 s without an error.
///
/// Not kube-runtime's default (800 ms doubling to 30 s, with jitter, reset only after 120 s
/// quiet): a controller's triggers share one backoff, and a `410 Gone` — which every watch gets
/// after an API server restart, and is answered by a re-list, not a failure — counts as an
/// error, so after a restart each queued error slept up to 30 s more. Found on the real API
/// server: a controller ignored changes for minutes after the API server came back. Capped at
/// 5 s, a watch still retries at most every 5 s while the API server is down.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff + 'static {
    kube::runtime::utils::ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(30))
}

/// 250 ms doubling to 5 s (see [`watch_backoff`]).
#[derive(Debug, Default)]
struct WatchBackoff {
    failures: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = Duration::from_millis(250).saturating_mul(1 << self.failures.min(5));
        self.failures = self.failures.saturating_add(1);
        Some(delay.min(Duration::from_secs(5)))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Runs a controller: reconcile errors are logged and retried with the object's backoff,
/// which a success resets.
async fn drive<K, F, Fut>(controller: Controller<K>, reconcile: F, kind: &'static str, ctx: Arc<Context>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    controller
        .run(
            move |o, ctx: Arc<Context>| async move {
                let key = key_of(&*o);
                let r = reconcile(o, ctx.clone()).await;
                match &r {
                    Ok(_) => {
                        ctx.succeeded(&key);
                        ctx.metrics.reconciled(kind, None);
                    }
                    Err(e) => ctx.metrics.reconciled(kind, Some(&e.kind())),
                }
                r
            },
            move |o, e, ctx| {
                let delay = ctx.backoff(&key_of(&*o));
                tracing::warn!(kind, object = %key_of(&*o), error = %e, retry_in = ?delay, "reconcile failed");
                // The owner sees it in `kubectl describe` (the error policy cannot await).
                let (reason, note) = failure::failure_event(e, delay);
                let reference = o.object_ref(&());
                tokio::spawn(async move {
                    ctx.event(&reference, EventType::Warning, reason, "Reconcile", note).await;
                });
                Action::requeue(delay)
            },
            ctx,
        )
        .for_each(|_| std::future::ready(()))
        .await;
}

/// Runs the binding controller until `shutdown`: triggered by its bindings' own watch and by
/// the shared stores' feeds of the kinds it reads.
pub async fn run_bindings(
    ctx: Arc<Context>,
    feeds: (Feed<VRouterTemplate>, Feed<VRouterParams>, Feed<VRouterTarget>, Feed<VRouterConfig>),
    concurrency: u16,
    shutdown: CancellationToken,
) {
    let (templates, params, targets, configs) = feeds;
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<VRouterBinding>::all(client), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .trigger_backoff(watch_backoff());
    let bindings = controller.store();
    let (b1, b2, b3) = (bindings.clone(), bindings.clone(), bindings);
    let templates = UnboundedReceiverStream::new(templates).flat_map(move |c| {
        let t = c.object();
        futures::stream::iter(binding::referrers(&b1, t.namespace(), &t.name_any(), binding::template_names))
    });
    let params = UnboundedReceiverStream::new(params).flat_map(move |c| {
        let p = c.object();
        futures::stream::iter(binding::referrers(&b2, p.namespace(), &p.name_any(), binding::params_names))
    });
    let mut changed = stores::spec_changes::<VRouterTarget>();
    let targets =
        UnboundedReceiverStream::new(targets).filter(move |c| std::future::ready(changed(c))).flat_map(move |c| {
            let t = c.object();
            futures::stream::iter(binding::target_referrers(&b3, t.namespace(), &t.name_any()))
        });
    // Owned configs: their owner (status changes count: the binding counts applied configs).
    let owners = ctx.clone();
    let configs = UnboundedReceiverStream::new(configs).filter_map(move |change| {
        if let (Change::Deleted(c), Ok(mut written)) = (&change, owners.written_configs.lock()) {
            // Deleted since this process wrote it: the binding must write it again.
            written.remove(&key_of(c.as_ref()));
        }
        let c = change.object();
        let owner = c
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "VRouterBinding")
            .and_then(|o| c.namespace().map(|ns| ObjectRef::<VRouterBinding>::new(&o.name).within(&ns)));
        std::future::ready(owner)
    });
    let controller = controller
        .reconcile_on(templates)
        .reconcile_on(params)
        .reconcile_on(targets)
        .reconcile_on(configs)
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    drive(controller, binding::reconcile, "binding", ctx).await;
}

/// Runs the target controller until `shutdown`: triggered by its targets' own watch, the
/// config store's feed (mapped to each config's target) and `triggers` (targets whose agent
/// session opened or closed, from [`pump_events`]).
pub async fn run_targets(
    ctx: Arc<Context>,
    triggers: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<VRouterTarget>>,
    configs: Feed<VRouterConfig>,
    concurrency: u16,
    shutdown: CancellationToken,
) {
    let client = ctx.client.clone();
    let configs =
        UnboundedReceiverStream::new(configs).filter_map(|c| std::future::ready(target::config_target(c.object())));
    let controller = Controller::new(Api::<VRouterTarget>::all(client), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .trigger_backoff(watch_backoff())
        .reconcile_on(configs)
        .reconcile_on(UnboundedReceiverStream::new(triggers))
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    drive(controller, target::reconcile, "target", ctx).await;
}

/// Lets go of the routers of deleted targets until `shutdown`: nothing more is delivered to them
/// and their tracked status is forgotten (their applied-record ConfigMaps are garbage-collected
/// with the target).
pub async fn let_go_of_deleted(ctx: Arc<Context>, mut targets: Feed<VRouterTarget>, shutdown: CancellationToken) {
    let Some(delivery) = ctx.delivery.as_ref() else { return };
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = targets.recv() => match c { None => return, Some(c) => c },
        };
        let Change::Deleted(t) = change else { continue };
        let (Some(ns), name) = (t.namespace(), t.name_any()) else { continue };
        if let Ok(id) = vrouter_proto::RouterId::new(ns.clone(), name.clone()) {
            delivery.engine.set_desired(&id, None);
        }
        if let Ok(mut tracker) = delivery.tracker.lock() {
            let gone = crate::tracker::key(&ns, &name);
            tracker.retain(|k| *k != gone, |_| true);
        }
        // The status writer forgets it at its next flush (the target is not in the store).
        delivery.marks.mark(&ns, &name);
    }
}

/// Feeds delivery and agent events into the tracker and marks the target for the status
/// writer; publishes Events for failures and drift; triggers a reconcile of the target when an
/// agent session opens or closes (a pending running-configuration request may be served now).
///
/// A successful apply has no Event of its own (it is in the target's status, and the binding
/// announces its whole rollout): one Event per router per revision was a third of the API
/// writes of a fleet rollout. Heartbeats only update the tracker.
pub async fn pump_events(
    ctx: Arc<Context>,
    mut deliveries: tokio::sync::mpsc::UnboundedReceiver<DeliveryEvent>,
    mut hub: tokio::sync::broadcast::Receiver<HubEvent>,
    triggers: tokio::sync::mpsc::UnboundedSender<ObjectRef<VRouterTarget>>,
    shutdown: CancellationToken,
) {
    let Some(delivery) = ctx.delivery.as_ref() else { return };
    loop {
        let (id, event, reconcile) = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = deliveries.recv() => match d {
                None => return,
                Some(ev) => {
                    if let Ok(mut t) = delivery.tracker.lock() {
                        t.on_delivery(&ev);
                    }
                    let note = (ev.phase == Phase::Failed)
                        .then(|| (EventType::Warning, "ApplyFailed", format!("revision {}: {}", ev.revision, ev.message)));
                    (ev.id.clone(), note, false)
                }
            },
            h = hub.recv() => match h {
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                Err(_) => continue,
                Ok(ev) => {
                    if let Ok(mut t) = delivery.tracker.lock() {
                        t.on_hub(&ev);
                    }
                    match &ev {
                        HubEvent::Status { .. } => continue,
                        HubEvent::Connected { id, .. } | HubEvent::Disconnected { id, .. } => (id.clone(), None, true),
                        HubEvent::Drift { id, report } => {
                            let note = report.drifted.then(|| (EventType::Warning, "Drifted", format!("{} paths differ from the applied revision", report.paths.len() as u32 + report.paths_omitted)));
                            (id.clone(), note, false)
                        }
                    }
                }
            },
        };
        delivery.marks.mark(id.namespace(), id.name());
        let oref = ObjectRef::<VRouterTarget>::new(id.name()).within(id.namespace());
        if let Some((type_, reason, note)) = event
            && let Some(t) = ctx.stores.targets.get(&oref)
        {
            // Not awaited here: one slow Event must not hold up every router's status.
            let ctx = ctx.clone();
            tokio::spawn(async move { ctx.event(&t.object_ref(&()), type_, reason, "Deliver", note).await });
        }
        if reconcile {
            let _ = triggers.send(oref);
        }
    }
}

/// Runs the controllers, the delivery engine and the event pump until `shutdown`: the operator
/// in a cluster, on the leader only (cancel `shutdown` when leadership is lost; reconciles and
/// their errors are counted in the hub's metrics). `qga` enables guest-agent bootstrap and
/// fallback. `secret_key` keys the secrets fingerprint of revision ids (it must stay the same
/// across restarts, or every router gets a new revision id once).
pub async fn run(
    client: Client,
    hub: crate::hub::Hub,
    secret_key: Vec<u8>,
    concurrency: u16,
    qga: Option<crate::qga::route::QgaSupport>,
    shutdown: CancellationToken,
) {
    let metrics = hub.metrics().clone();
    let (stores, feeds) = stores::stores(&client, &shutdown);
    let applied = target::ConfigMapStore::new(client.clone(), stores.targets.clone());
    let hub_events = hub.subscribe();
    let (engine, deliveries) =
        Engine::new(hub, Arc::new(applied), crate::delivery::EngineConfig::default(), shutdown.clone());
    if let Some(q) = qga {
        engine.enable_qga(q);
    }
    let recorder = recorder(client.clone(), std::env::var("POD_NAME").ok());
    let (delivery, marks) = Delivery::new(Tracker::new(secret_key), engine);
    let ctx = Arc::new(Context::new(client, stores, Some(recorder)).with_delivery(delivery).with_metrics(metrics));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Nothing is reconciled before every shared store has listed its kind: a target composed
    // from a half-filled config store would be sent a partial configuration (Merge would delete
    // the rest from the router), and a binding planned against a half-filled target store would
    // delete the configs of the targets not seen yet. (Found on a real API server: after a
    // restart, routers were committed partial revisions and then their old one again.)
    if !ctx.stores.synced(&shutdown).await {
        return;
    }
    tokio::join!(
        run_bindings(
            ctx.clone(),
            (feeds.templates, feeds.params, feeds.targets, feeds.configs_for_bindings),
            concurrency,
            shutdown.clone()
        ),
        run_targets(ctx.clone(), rx, feeds.configs_for_targets, concurrency, shutdown.clone()),
        status::run(ctx.clone(), marks, shutdown.clone()),
        let_go_of_deleted(ctx.clone(), feeds.targets_for_delivery, shutdown.clone()),
        pump_events(ctx, deliveries, hub_events, tx, shutdown),
    );
}

/// An Event recorder for the operator.
pub fn recorder(client: Client, instance: Option<String>) -> Recorder {
    Recorder::new(client, Reporter { controller: FIELD_MANAGER.to_owned(), instance })
}

#[cfg(test)]
mod tests;
