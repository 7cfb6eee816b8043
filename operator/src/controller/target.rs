//! The target controller: a thin shell over [`crate::tracker`]. It composes each router's
//! VRouterConfigs into its desired revision, hands it to the delivery engine, and writes the
//! target's and its configs' status (server-side apply, only when changed). Delivery and agent
//! events update the tracker and trigger a reconcile of their target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use vrouter_proto::RouterId;

use super::binding::in_namespace;
use super::{Context, Error};
use crate::crd::{API_VERSION, FIELD_MANAGER, VRouterConfig, VRouterTarget};
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
    let all = in_namespace(&ctx.stores.configs, &ns);
    let mine: Vec<&VRouterConfig> = all.values().filter(|c| c.spec.target_ref.name == name).collect();

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

    let (target_status, config_statuses) = {
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
        let ts = tracker.target_status(&ns, &name).cloned();
        let cs: Vec<(String, Option<crate::crd::VRouterConfigStatus>)> =
            mine.iter().map(|c| (c.name_any(), tracker.config_status(&ns, &c.name_any()).cloned())).collect();
        (ts, cs)
    };
    write_statuses(&ctx.client, &ns, &target, target_status, &mine, config_statuses).await?;
    enrolled?;
    running?;
    Ok(Action::requeue(RESYNC))
}

async fn write_statuses(
    client: &Client,
    ns: &str,
    target: &VRouterTarget,
    target_status: Option<crate::crd::VRouterTargetStatus>,
    configs: &[&VRouterConfig],
    config_statuses: Vec<(String, Option<crate::crd::VRouterConfigStatus>)>,
) -> Result<(), Error> {
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(s) = target_status
        && target.status.as_ref() != Some(&s)
    {
        let body = json!({"apiVersion": API_VERSION, "kind": "VRouterTarget", "status": s});
        Api::<VRouterTarget>::namespaced(client.clone(), ns)
            .patch_status(&target.name_any(), &ssa, &Patch::Apply(body))
            .await
            .map_err(Error::kube("write VRouterTarget status"))?;
    }
    let capi: Api<VRouterConfig> = Api::namespaced(client.clone(), ns);
    for (c, (name, status)) in configs.iter().zip(config_statuses) {
        if let Some(s) = status
            && c.status.as_ref() != Some(&s)
        {
            let body = json!({"apiVersion": API_VERSION, "kind": "VRouterConfig", "status": s});
            capi.patch_status(&name, &ssa, &Patch::Apply(body))
                .await
                .map_err(Error::kube("write VRouterConfig status"))?;
        }
    }
    Ok(())
}

/// The target a config belongs to (for the controller's config watch).
pub fn config_target(c: &VRouterConfig) -> Option<ObjectRef<VRouterTarget>> {
    let ns = c.namespace()?;
    Some(ObjectRef::new(&c.spec.target_ref.name).within(&ns))
}

/// Applied records as ConfigMaps `vrouter-applied-<target>` owned by their target (deleted with
/// it). They hold secret placeholders only.
pub struct ConfigMapStore {
    client: Client,
    targets: Store<VRouterTarget>,
}

impl ConfigMapStore {
    /// A store; `targets` supplies the owner references.
    pub fn new(client: Client, targets: Store<VRouterTarget>) -> Self {
        ConfigMapStore { client, targets }
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
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), id.namespace());
        let Some(cm) = api.get_opt(&Self::name(id)).await.map_err(|e| e.to_string())? else { return Ok(None) };
        let data = cm.data.unwrap_or_default();
        Ok(Some(AppliedRecord {
            revision: data.get("revision").cloned().unwrap_or_default(),
            config: data.get("config").cloned().unwrap_or_default(),
            at: data.get("at").and_then(|a| a.parse().ok()).unwrap_or(0),
        }))
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
        api.patch(&Self::name(id), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&cm))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
