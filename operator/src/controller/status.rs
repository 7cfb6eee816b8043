//! The status writer: a thin shell over [`crate::status_flush`]. Reconciles and delivery events
//! only mark a target; this task writes the target's and its configs' status from the tracker
//! once the mark is due (server-side apply, only what differs from the status last written),
//! so a revision costs one write per object however many phases it passed through.
//!
//! A refused write is retried with the target's backoff and published as a Warning Event on the
//! target ([`super::failure`]), as a failed reconcile is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Context, Error};
use crate::crd::{API_VERSION, FIELD_MANAGER, VRouterConfig, VRouterConfigStatus, VRouterTarget, VRouterTargetStatus};
use crate::status_flush::{Schedule, settled, target_worth_writing};
use crate::tracker::{Key, key};

/// Status writes in flight at once.
const IN_FLIGHT: usize = 16;

/// Marks targets whose status changed (cheap to clone; marks after the writer stopped are
/// dropped).
#[derive(Clone, Debug)]
pub struct Marks(mpsc::UnboundedSender<Key>);

/// The writer's end of [`Marks`].
pub type MarksRx = mpsc::UnboundedReceiver<Key>;

impl Marks {
    /// A pair of ends.
    pub fn channel() -> (Marks, MarksRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Marks(tx), rx)
    }

    /// Marks the target `ns/name`.
    pub fn mark(&self, ns: &str, name: &str) {
        let _ = self.0.send(key(ns, name));
    }
}

/// The statuses this process last wrote, by target: the target's, and its configs' by name.
#[derive(Default, Debug)]
pub struct Written(HashMap<Key, (Option<VRouterTargetStatus>, HashMap<String, VRouterConfigStatus>)>);

/// Writes the status of the target `key` and of its configs where it differs from the one last
/// written. A target no longer in the store is forgotten.
pub async fn flush(ctx: &Context, target_key: &Key, written: &Mutex<Written>) -> Result<(), Error> {
    let (ns, name) = target_key;
    let Some(delivery) = ctx.delivery.as_ref() else { return Ok(()) };
    let Some(target) = ctx.stores.targets.get(&ObjectRef::new(name).within(ns)) else {
        if let Ok(mut w) = written.lock() {
            w.0.remove(target_key);
        }
        return Ok(());
    };
    let configs: Vec<Arc<VRouterConfig>> = ctx.stores.configs_of(ns, name);
    // What to write: the tracker's statuses that differ from the written (or stored) ones.
    let (target_status, config_statuses) = {
        let tracker = delivery.tracker.lock().map_err(|_| Error::Poisoned)?;
        let mut w = written.lock().map_err(|_| Error::Poisoned)?;
        let (last_target, last_configs) = w.0.entry(target_key.clone()).or_default();
        // Configs that left the target are forgotten.
        last_configs.retain(|n, _| configs.iter().any(|c| c.name_any() == *n));
        let ts = tracker
            .target_status(ns, name)
            .filter(|s| target_worth_writing(last_target.as_ref().or(target.status.as_ref()), s));
        let cs: Vec<(String, VRouterConfigStatus)> = configs
            .iter()
            .filter_map(|c| {
                let cname = c.name_any();
                let s = tracker.config_status(ns, &cname)?;
                let last = last_configs.get(&cname).or(c.status.as_ref());
                (last != Some(s)).then(|| (cname, s.clone()))
            })
            .collect();
        (ts.cloned(), cs)
    };
    // The target's and its configs' writes go out together (one round trip, not one per object).
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    let target_write = async {
        let Some(s) = target_status else { return Ok(()) };
        let body = json!({"apiVersion": API_VERSION, "kind": "VRouterTarget", "status": s});
        Api::<VRouterTarget>::namespaced(ctx.client.clone(), ns)
            .patch_status(name, &ssa, &Patch::Apply(body))
            .await
            .map_err(Error::kube("write VRouterTarget status"))?;
        if let Ok(mut w) = written.lock() {
            w.0.entry(target_key.clone()).or_default().0 = Some(s);
        }
        Ok(())
    };
    let capi: Api<VRouterConfig> = Api::namespaced(ctx.client.clone(), ns);
    let config_writes = futures::future::try_join_all(config_statuses.into_iter().map(|(cname, s)| {
        let (capi, ssa) = (&capi, &ssa);
        async move {
            let body = json!({"apiVersion": API_VERSION, "kind": "VRouterConfig", "status": s});
            match capi.patch_status(&cname, ssa, &Patch::Apply(body)).await {
                Ok(_) => {}
                // Deleted since the store saw it (its binding let go of the target).
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::kube("write VRouterConfig status")(e)),
            }
            if let Ok(mut w) = written.lock() {
                w.0.entry(target_key.clone()).or_default().1.insert(cname, s);
            }
            Ok(())
        }
    }));
    let (t, c) = futures::join!(target_write, config_writes);
    t.and(c.map(drop))
}

/// Writes marked targets' statuses until `shutdown` (the leader's term: a new term starts from
/// what the API server holds).
pub async fn run(ctx: Arc<Context>, mut marks: MarksRx, shutdown: CancellationToken) {
    let Some(delivery) = ctx.delivery.as_ref() else { return };
    let written = Mutex::new(Written::default());
    let mut schedule: Schedule<Key> = Schedule::default();
    loop {
        let next = schedule.next();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            m = marks.recv() => {
                let Some(first) = m else { return };
                let now = Instant::now();
                let mut batch = vec![first];
                while let Ok(k) = marks.try_recv() {
                    batch.push(k);
                }
                let Ok(tracker) = delivery.tracker.lock() else { return };
                for k in batch {
                    let done = tracker.target_status(&k.0, &k.1).is_none_or(settled);
                    schedule.mark(k, now, done);
                }
            }
            _ = sleep_until(next) => {
                let due = schedule.take_due(Instant::now());
                let results: Vec<(Key, Result<(), Error>)> = futures::stream::iter(due)
                    .map(|k| {
                        let (ctx, written) = (&ctx, &written);
                        async move {
                            let r = flush(ctx, &k, written).await;
                            (k, r)
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect()
                    .await;
                for (k, r) in results {
                    let id = format!("status:{}/{}", k.0, k.1);
                    match r {
                        Ok(()) => {
                            ctx.succeeded(&id);
                            ctx.metrics.reconciled("status", None);
                        }
                        Err(e) => {
                            ctx.metrics.reconciled("status", Some(&e.kind()));
                            let delay = ctx.backoff(&id);
                            tracing::warn!(target = %format!("{}/{}", k.0, k.1), error = %e, retry_in = ?delay, "status write failed");
                            if let Some(t) = ctx.stores.targets.get(&ObjectRef::new(&k.1).within(&k.0)) {
                                let (reason, note) = super::failure::failure_event(&e, delay);
                                ctx.event(&t.object_ref(&()), EventType::Warning, reason, "WriteStatus", note).await;
                            }
                            schedule.retry(k, Instant::now() + delay);
                        }
                    }
                }
            }
        }
    }
}

/// Sleeps until `at` (forever without one).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
