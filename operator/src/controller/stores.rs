//! The reflector stores the reconcilers read, and the change feeds that trigger them.
//!
//! A reconcile reads templates, params, targets and configs from these shared stores. Its
//! triggers must therefore come from the same stores, sent after the store holds the change: a
//! controller's own watch of another kind races the shared reflector, and a reconcile it
//! triggers can read the store a moment before the change lands — and then nothing triggers it
//! again. (Found on the real API server: a config written by a binding was not delivered for
//! five minutes, until the resync, once status writes stopped re-triggering every target.)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
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
    /// The configs of each target, by name (kept with `configs`).
    pub configs_by_target: ConfigIndex,
}

/// The names of the configs that reference each target: a target's reconcile and status write
/// read its own configs without a pass over the fleet's (which made a rollout quadratic in the
/// number of routers).
#[derive(Clone, Default, Debug)]
pub struct ConfigIndex(Arc<RwLock<Index>>);

#[derive(Default, Debug)]
struct Index {
    /// (namespace, target) → config names.
    by_target: HashMap<(String, String), BTreeSet<String>>,
    /// (namespace, config) → the target it references.
    target_of: HashMap<(String, String), String>,
}

impl Index {
    fn remove(&mut self, ns: &str, name: &str) {
        let Some(old) = self.target_of.remove(&(ns.to_owned(), name.to_owned())) else { return };
        let k = (ns.to_owned(), old);
        if let Some(set) = self.by_target.get_mut(&k) {
            set.remove(name);
            if set.is_empty() {
                self.by_target.remove(&k);
            }
        }
    }

    fn insert(&mut self, c: &VRouterConfig) {
        let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
        self.remove(&ns, &name);
        let target = c.spec.target_ref.name.clone();
        self.by_target.entry((ns.clone(), target.clone())).or_default().insert(name.clone());
        self.target_of.insert((ns, name), target);
    }
}

impl ConfigIndex {
    /// An index of `configs` as they are now.
    pub fn of(configs: &Store<VRouterConfig>) -> ConfigIndex {
        let index = ConfigIndex::default();
        index.reset(&configs.state());
        index
    }

    fn reset(&self, configs: &[Arc<VRouterConfig>]) {
        if let Ok(mut i) = self.0.write() {
            *i = Index::default();
            for c in configs {
                i.insert(c);
            }
        }
    }

    fn apply(&self, change: &Change<VRouterConfig>) {
        if let Ok(mut i) = self.0.write() {
            match change {
                Change::Applied(c) => i.insert(c),
                Change::Deleted(c) => i.remove(&c.namespace().unwrap_or_default(), &c.name_any()),
            }
        }
    }

    /// The names of the configs that reference the target `ns/target`, in name order.
    pub fn names(&self, ns: &str, target: &str) -> Vec<String> {
        let Ok(i) = self.0.read() else { return Vec::new() };
        i.by_target.get(&(ns.to_owned(), target.to_owned())).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

impl Stores {
    /// Stores over these reflectors, the config index built from `configs` as it is now (tests).
    pub fn new(
        templates: Store<VRouterTemplate>,
        params: Store<VRouterParams>,
        targets: Store<VRouterTarget>,
        configs: Store<VRouterConfig>,
    ) -> Stores {
        let configs_by_target = ConfigIndex::of(&configs);
        Stores { templates, params, targets, configs, configs_by_target }
    }

    /// The configs that reference the target `ns/target`, in name order (shared, not copied).
    pub fn configs_of(&self, ns: &str, target: &str) -> Vec<Arc<VRouterConfig>> {
        self.configs_by_target
            .names(ns, target)
            .into_iter()
            .filter_map(|n| self.configs.get(&ObjectRef::new(&n).within(ns)))
            // The store may be ahead of the index for a moment (a config moved to another target).
            .filter(|c| c.spec.target_ref.name == target)
            .collect()
    }
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
    let configs_by_target = ConfigIndex::default();
    let index = configs_by_target.clone();
    let stores = Stores {
        templates: reflect(client, shutdown, vec![t_tx], |_| {}),
        params: reflect(client, shutdown, vec![p_tx], |_| {}),
        targets: reflect(client, shutdown, vec![g_tx, gd_tx], |_| {}),
        configs: reflect(client, shutdown, vec![cb_tx, ct_tx], move |u| match u {
            Update::Relisted(all) => index.reset(all),
            Update::Changed(c) => index.apply(c),
        }),
        configs_by_target,
    };
    (stores, Feeds { templates, params, targets, targets_for_delivery, configs_for_bindings, configs_for_targets })
}

/// What a reflector's store went through, for an index kept beside it.
enum Update<'a, K> {
    /// A re-list: the store now holds exactly these.
    Relisted(&'a [Arc<K>]),
    /// One change.
    Changed(&'a Change<K>),
}

/// Starts a reflector for `K` (all namespaces); every change it applies is given to `index`
/// and then sent to `feeds` (a re-list sends every listed object once the store has swapped
/// them in).
fn reflect<K>(
    client: &Client,
    shutdown: &CancellationToken,
    feeds: Vec<mpsc::UnboundedSender<Change<K>>>,
    mut index: impl FnMut(Update<'_, K>) + Send + 'static,
) -> Store<K>
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
                watcher::Event::Apply(o) => {
                    let c = Change::Applied(Arc::new(o));
                    index(Update::Changed(&c));
                    send(c);
                }
                watcher::Event::Delete(o) => {
                    let c = Change::Deleted(Arc::new(o));
                    index(Update::Changed(&c));
                    send(c);
                }
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(o) => listed.push(Arc::new(o)),
                watcher::Event::InitDone => {
                    index(Update::Relisted(&listed));
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

    fn config(name: &str, target: &str) -> Arc<VRouterConfig> {
        let mut c = VRouterConfig::new(name, Default::default());
        c.metadata.namespace = Some("net".into());
        c.spec.target_ref.name = target.into();
        Arc::new(c)
    }

    #[test]
    fn the_index_follows_changes_moves_deletes_and_relists() {
        let index = ConfigIndex::default();
        index.apply(&Change::Applied(config("b", "r1")));
        index.apply(&Change::Applied(config("a", "r1")));
        index.apply(&Change::Applied(config("c", "r2")));
        assert_eq!(index.names("net", "r1"), ["a", "b"], "in name order");
        assert_eq!(index.names("other", "r1"), Vec::<String>::new(), "namespaced");
        index.apply(&Change::Applied(config("b", "r2")));
        assert_eq!(index.names("net", "r1"), ["a"], "moved away");
        assert_eq!(index.names("net", "r2"), ["b", "c"], "moved here");
        index.apply(&Change::Deleted(config("a", "r1")));
        assert!(index.names("net", "r1").is_empty());
        assert!(!index.0.read().unwrap().by_target.contains_key(&("net".into(), "r1".into())), "no empty sets kept");
        // A re-list holds only what was listed (a delete missed while the watch was down).
        index.reset(&[config("d", "r3")]);
        assert!(index.names("net", "r2").is_empty());
        assert_eq!(index.names("net", "r3"), ["d"]);
    }

    #[test]
    fn configs_of_reads_the_store_through_the_index() {
        let (reader, mut writer) = reflector::store();
        for (n, t) in [("x", "r1"), ("y", "r2"), ("w", "r1")] {
            writer.apply_watcher_event(&watcher::Event::Apply((*config(n, t)).clone()));
        }
        let stores = Stores::new(reflector::store().0, reflector::store().0, reflector::store().0, reader);
        let names: Vec<String> = stores.configs_of("net", "r1").iter().map(|c| c.name_any()).collect();
        assert_eq!(names, ["w", "x"]);
        // The store ahead of the index: "x" moved to r2, the index has not seen it yet.
        writer.apply_watcher_event(&watcher::Event::Apply((*config("x", "r2")).clone()));
        let names: Vec<String> = stores.configs_of("net", "r1").iter().map(|c| c.name_any()).collect();
        assert_eq!(names, ["w"]);
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
