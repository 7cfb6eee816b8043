//! The reflector stores the reconcilers read, and the change feeds that trigger them.
//!
//! A reconcile reads templates, params, targets and configs from these shared stores. Its
//! triggers must therefore come from the same stores, sent after the store holds the change: a
//! controller's own watch of another kind races the shared reflector, and a reconcile it
//! triggers can read the store a moment before the change lands — and then nothing triggers it
//! again. (Found on the real API server: a config written by a binding was not delivered for
//! five minutes, until the resync, once status writes stopped re-triggering every target.)

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::watch_backoff;
use crate::crd::{VRouterConfig, VRouterParams, VRouterTarget, VRouterTemplate};

/// A change a shared store has applied (sent once the store holds it).
#[derive(Clone, Debug)]
pub enum Change<K> {
    /// Created or updated (also every object after a re-list).
    Applied(Arc<K>),
    /// Deleted.
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// A feed of one kind's changes.
pub type Feed<K> = mpsc::UnboundedReceiver<Change<K>>;

/// The reflector stores the reconcilers read.
#[derive(Clone)]
pub struct Stores {
    /// Templates.
    pub templates: Store<VRouterTemplate>,
    /// Params.
    pub params: Store<VRouterParams>,
    /// Targets.
    pub targets: Store<VRouterTarget>,
    /// Configs.
    pub configs: Store<VRouterConfig>,
}

/// The change feeds of [`Stores`], one per consumer.
pub struct Feeds {
    /// Templates, for the binding controller.
    pub templates: Feed<VRouterTemplate>,
    /// Params, for the binding controller.
    pub params: Feed<VRouterParams>,
    /// Targets, for the binding controller.
    pub targets: Feed<VRouterTarget>,
    /// Targets, for delivery (a deleted target's router is let go).
    pub targets_for_delivery: Feed<VRouterTarget>,
    /// Configs, for the binding controller (their owner).
    pub configs_for_bindings: Feed<VRouterConfig>,
    /// Configs, for the target controller (their target).
    pub configs_for_targets: Feed<VRouterConfig>,
}

/// Starts the reflectors the controllers share, and their feeds.
pub fn stores(client: &Client, shutdown: &CancellationToken) -> (Stores, Feeds) {
    let (t_tx, templates) = mpsc::unbounded_channel();
    let (p_tx, params) = mpsc::unbounded_channel();
    let (g_tx, targets) = mpsc::unbounded_channel();
    let (gd_tx, targets_for_delivery) = mpsc::unbounded_channel();
    let (cb_tx, configs_for_bindings) = mpsc::unbounded_channel();
    let (ct_tx, configs_for_targets) = mpsc::unbounded_channel();
    let stores = Stores {
        templates: reflect(client, shutdown, vec![t_tx]),
        params: reflect(client, shutdown, vec![p_tx]),
        targets: reflect(client, shutdown, vec![g_tx, gd_tx]),
        configs: reflect(client, shutdown, vec![cb_tx, ct_tx]),
    };
    (stores, Feeds { templates, params, targets, targets_for_delivery, configs_for_bindings, configs_for_targets })
}

/// Starts a reflector for `K` (all namespaces); every change it applies is then sent to
/// `feeds` (a re-list sends every listed object once the store has swapped them in).
fn reflect<K>(client: &Client, shutdown: &CancellationToken, feeds: Vec<mpsc::UnboundedSender<Change<K>>>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()).backoff(watch_backoff()).reflect(writer);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut listed: Vec<Arc<K>> = Vec::new();
        let send = |c: Change<K>| {
            for f in &feeds {
                let _ = f.send(c.clone());
            }
        };
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => match item {
                    None => return,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, kind = %K::kind(&()), "watch error");
                        continue;
                    }
                    Some(Ok(event)) => event,
                }
            };
            match event {
                watcher::Event::Apply(o) => send(Change::Applied(Arc::new(o))),
                watcher::Event::Delete(o) => send(Change::Deleted(Arc::new(o))),
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(o) => listed.push(Arc::new(o)),
                watcher::Event::InitDone => {
                    for o in listed.drain(..) {
                        send(Change::Applied(o));
                    }
                }
            }
        }
    });
    reader
}

/// Passes an object only when it is new, deleted, or its generation or labels changed: for a
/// consumer that reads specs and labels, never status (status writes are a fleet's most
/// frequent change).
pub fn spec_changes<K>() -> impl FnMut(&Change<K>) -> bool
where
    K: kube::Resource,
{
    use std::hash::{Hash, Hasher};
    let mut seen: HashMap<String, (Option<i64>, u64)> = HashMap::new();
    move |change| {
        let meta = change.object().meta();
        let uid = meta.uid.clone().unwrap_or_else(|| {
            format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
        });
        match change {
            Change::Deleted(_) => {
                seen.remove(&uid);
                true
            }
            Change::Applied(_) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                meta.labels.hash(&mut h);
                let print = (meta.generation, h.finish());
                seen.insert(uid, print) != Some(print)
            }
        }
    }
}

impl Stores {
    /// Waits until every store has listed its kind once (`false`: shut down first, or a
    /// reflector stopped).
    pub async fn synced(&self, shutdown: &CancellationToken) -> bool {
        let all = async {
            tokio::try_join!(
                self.templates.wait_until_ready(),
                self.params.wait_until_ready(),
                self.targets.wait_until_ready(),
                self.configs.wait_until_ready(),
            )
        };
        let started = std::time::Instant::now();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            r = all => {
                match r {
                    Ok(_) => tracing::info!(after = ?started.elapsed(), "caches synced: reconciling"),
                    Err(ref e) => tracing::error!(error = %e, "a cache stopped before it synced"),
                }
                r.is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn target(uid: &str, generation: i64, label: &str) -> Arc<VRouterTarget> {
        let mut t = VRouterTarget::new("r1", Default::default());
        t.metadata = ObjectMeta {
            name: Some("r1".into()),
            namespace: Some("net".into()),
            uid: Some(uid.into()),
            generation: Some(generation),
            labels: Some([("site".to_owned(), label.to_owned())].into()),
            ..ObjectMeta::default()
        };
        Arc::new(t)
    }

    #[test]
    fn status_only_changes_are_not_passed_but_spec_labels_and_deletes_are() {
        let mut pass = spec_changes::<VRouterTarget>();
        assert!(pass(&Change::Applied(target("u1", 1, "a"))), "new");
        assert!(!pass(&Change::Applied(target("u1", 1, "a"))), "a status write: same generation and labels");
        assert!(pass(&Change::Applied(target("u1", 2, "a"))), "spec");
        assert!(pass(&Change::Applied(target("u1", 2, "b"))), "labels");
        assert!(pass(&Change::Deleted(target("u1", 2, "b"))), "deleted");
        assert!(pass(&Change::Applied(target("u1", 2, "b"))), "seen again after its delete");
        assert!(pass(&Change::Applied(target("u2", 2, "b"))), "another object (recreated: new uid)");
    }
}
