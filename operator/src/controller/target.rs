//! The target controller: a thin shell over [`crate::tracker`]. It composes each router's
//! VRouterConfigs into its desired revision, hands it to the delivery engine, and marks the
//! target for the status writer ([`super::status`]), which writes the target's and its configs'
//! status. Delivery and agent events update the tracker directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use vrouter_proto::RouterId;

use super::{Context, Error};
use crate::crd::{FIELD_MANAGER, VRouterConfig, VRouterTarget};
use crate::delivery::{AppliedRecord, AppliedStore};
use crate::render::placeholders;
use crate::tracker::Secrets;

/// How often a target is reconciled without a change (picks up Secret changes, which are not
/// watched: the operator reads only the Secrets templates name, never lists them).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one target.
pub async fn reconcile(target: Arc<VRouterTarget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = target.name_any();
    let ns = target.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let Some(delivery) = ctx.delivery.as_ref() else { return Ok(Action::await_change()) };
    // Before the status write (which changes the resourceVersion the annotation's removal is
    // conditional on); its failure is returned after the router's own work.
    let enrolled = super::enroll::reconcile(&target, &ctx).await;
    let running = super::running::reconcile(&target, &ctx).await;
    // The store's objects are shared, not copied: a fleet's configs are many.
    let mine: Vec<Arc<VRouterConfig>> = ctx.stores.configs_of(&ns, &name);
    let mine: Vec<&VRouterConfig> = mine.iter().map(|c| c.as_ref()).collect();

    // Secrets the configs refer to, read one by one.
    let mut wanted: BTreeMap<String, ()> = BTreeMap::new();
    for c in &mine {
        for text in [c.spec.config.as_deref(), c.spec.commands.as_deref()].into_iter().flatten() {
            for r in placeholders(text) {
                wanted.insert(r.name, ());
            }
        }
    }
    let mut secrets = Secrets::new();
    let sapi: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for s in wanted.keys() {
        if let Some(secret) = sapi.get_opt(s).await.map_err(Error::kube("read Secret"))? {
            let values = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
                .collect();
            secrets.insert(s.clone(), values);
        }
    }

    {
        let mut tracker = delivery.tracker.lock().map_err(|_| Error::Poisoned)?;
        tracker.seed_target(&ns, &name, target.status.as_ref());
        for c in &mine {
            tracker.seed_config(&ns, &c.name_any(), c.status.as_ref());
        }
        if let Some(desired) = tracker.target(&target, &mine, &secrets, SystemTime::now())
            && let Ok(id) = RouterId::new(ns.clone(), name.clone())
        {
            delivery.engine.set_desired(&id, desired);
        }
    }
    delivery.marks.mark(&ns, &name);
    enrolled?;
    running?;
    Ok(Action::requeue(RESYNC))
}

/// The target a config belongs to (for the controller's config watch).
pub fn config_target(c: &VRouterConfig) -> Option<ObjectRef<VRouterTarget>> {
    let ns = c.namespace()?;
    Some(ObjectRef::new(&c.spec.target_ref.name).within(&ns))
}

/// Applied records as ConfigMaps `vrouter-applied-<target>` owned by their target (deleted with
/// it). They hold secret placeholders only. Written for deliveries the router keeps no record
/// of (the guest-agent apply script); what an agent applied is only noted in memory
/// ([`AppliedStore::note`]): the agent's own record is the durable one.
///
/// Records are kept in memory once read or written: the leader is their only writer, and a
/// store lives for one leadership term (a new term reads them again), so a delivery costs no
/// read of its router's record.
pub struct ConfigMapStore {
    client: Client,
    targets: Store<VRouterTarget>,
    known: std::sync::Mutex<std::collections::HashMap<RouterId, Option<AppliedRecord>>>,
}

impl ConfigMapStore {
    /// A store; `targets` supplies the owner references.
    pub fn new(client: Client, targets: Store<VRouterTarget>) -> Self {
        ConfigMapStore { client, targets, known: std::sync::Mutex::default() }
    }

    fn remember(&self, id: &RouterId, record: Option<AppliedRecord>) {
        if let Ok(mut k) = self.known.lock() {
            k.insert(id.clone(), record);
        }
    }

    /// The ConfigMap's name for a router.
    pub fn name(id: &RouterId) -> String {
        let plain = format!("vrouter-applied-{}", id.name());
        if plain.len() <= 253 { plain } else { format!("vrouter-applied-{}", crate::naming::label_value(id.name())) }
    }
}

#[async_trait]
impl AppliedStore for ConfigMapStore {
    async fn load(&self, id: &RouterId) -> Result<Option<AppliedRecord>, String> {
        if let Some(known) = self.known.lock().ok().and_then(|k| k.get(id).cloned()) {
            return Ok(known);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), id.namespace());
        let record = api.get_opt(&Self::name(id)).await.map_err(|e| e.to_string())?.map(|cm| {
            let data = cm.data.unwrap_or_default();
            AppliedRecord {
                revision: data.get("revision").cloned().unwrap_or_default(),
                config: data.get("config").cloned().unwrap_or_default(),
                at: data.get("at").and_then(|a| a.parse().ok()).unwrap_or(0),
            }
        });
        self.remember(id, record.clone());
        Ok(record)
    }

    async fn note(&self, id: &RouterId, record: &AppliedRecord) -> Result<(), String> {
        self.remember(id, Some(record.clone()));
        Ok(())
    }

    async fn save(&self, id: &RouterId, record: &AppliedRecord) -> Result<(), String> {
        let target = self.targets.get(&ObjectRef::new(id.name()).within(id.namespace()));
        let owner = target.and_then(|t| t.controller_owner_ref(&()));
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(Self::name(id));
        cm.metadata.namespace = Some(id.namespace().to_owned());
        cm.metadata.owner_references = owner.map(|o| vec![o]);
        cm.metadata.labels =
            Some(BTreeMap::from([(crate::crd::LABEL_TARGET.to_owned(), crate::naming::label_value(id.name()))]));
        cm.data = Some(BTreeMap::from([
            ("revision".to_owned(), record.revision.clone()),
            ("config".to_owned(), record.config.clone()),
            ("at".to_owned(), record.at.to_string()),
        ]));
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), id.namespace());
        let written = api
            .patch(&Self::name(id), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&cm))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        // After a failed write the ConfigMap's content is unknown: read it again next time.
        match written {
            Ok(()) => self.remember(id, Some(record.clone())),
            Err(_) => {
                if let Ok(mut k) = self.known.lock() {
                    k.remove(id);
                }
            }
        }
        written
    }
}
