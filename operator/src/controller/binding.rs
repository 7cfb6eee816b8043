//! The binding controller: a thin shell over [`crate::binding_plan`]. It reads templates,
//! params, targets and configs from reflector stores, writes generated VRouterConfigs with
//! server-side apply (owner-referenced, so Kubernetes garbage-collects them with the binding),
//! deletes the ones whose target left, and writes the binding's status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error};
use crate::binding_plan::plan;
use crate::crd::{API_VERSION, FIELD_MANAGER, VRouterBinding, VRouterConfig};
use crate::generate::Inputs;

/// The objects of one namespace in a store, by name.
pub(crate) fn in_namespace<K>(store: &Store<K>, ns: &str) -> BTreeMap<String, K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .map(|o| (o.name_any(), (**o).clone()))
        .collect()
}

/// Reconciles one binding.
pub async fn reconcile(binding: Arc<VRouterBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = binding.name_any();
    let ns = binding.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let templates = in_namespace(&ctx.stores.templates, &ns);
    let params = in_namespace(&ctx.stores.params, &ns);
    let targets = in_namespace(&ctx.stores.targets, &ns);
    let configs = in_namespace(&ctx.stores.configs, &ns);
    let inputs = Inputs { templates: &templates, params: &params, targets: &targets };
    let p = plan(&binding, inputs, &configs, SystemTime::now());

    let api: Api<VRouterConfig> = Api::namespaced(ctx.client.clone(), &ns);
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    // A fleet's configs are written WRITES_IN_FLIGHT at a time, not one after another.
    // Configs this process just wrote that the store has not caught up with are not written
    // again (a reconcile triggered by the first of its own writes sees the rest still pending).
    let write: Vec<&VRouterConfig> =
        p.write.iter().filter(|c| !just_written(&ctx, &ns, c, configs.get(&c.name_any()))).collect();
    // (By index: a closure over `&VRouterConfig` makes the reconcile's future not `Send`.)
    let written: Vec<Result<(), Error>> = futures::stream::iter(0..write.len())
        .map(|i| write_config(&ctx, &api, &ssa, write[i]))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await;
    written.into_iter().collect::<Result<(), Error>>()?;
    for n in &p.delete {
        match api.delete(n, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube("delete VRouterConfig")(e)),
        }
    }
    let oref = binding.object_ref(&());
    if !p.write.is_empty() || !p.delete.is_empty() {
        let names: Vec<String> = p.write.iter().map(|c| c.name_any()).collect();
        let mut note = String::new();
        if !names.is_empty() {
            note.push_str(&format!("wrote {}", names.join(", ")));
        }
        if !p.delete.is_empty() {
            note.push_str(&format!("{}deleted {}", if note.is_empty() { "" } else { "; " }, p.delete.join(", ")));
        }
        ctx.event(&oref, EventType::Normal, "ConfigsWritten", "Render", note).await;
    }
    let ready = p.status.conditions.iter().find(|c| c.type_ == "Ready");
    if let Some(c) = ready
        && c.reason == "RenderFailed"
        && binding.status.as_ref().and_then(|s| s.conditions.iter().find(|x| x.type_ == "Ready")) != Some(c)
    {
        ctx.event(&oref, EventType::Warning, "RenderFailed", "Render", c.message.clone()).await;
    }
    let rolled_out = ready.filter(|c| c.status == "True" && c.reason == "Applied");
    if let Some(c) = rolled_out
        && binding.status.as_ref().and_then(|s| s.conditions.iter().find(|x| x.type_ == "Ready")).map(|x| &x.status)
            != Some(&c.status)
    {
        // The rollout as one Event (a router's own apply has none: that would be one per router).
        ctx.event(&oref, EventType::Normal, "RolledOut", "Deliver", c.message.clone()).await;
    }
    if binding.status.as_ref() != Some(&p.status) {
        let bapi: Api<VRouterBinding> = Api::namespaced(ctx.client.clone(), &ns);
        let body = json!({"apiVersion": API_VERSION, "kind": "VRouterBinding", "status": p.status});
        bapi.patch_status(&name, &ssa, &Patch::Apply(body))
            .await
            .map_err(Error::kube("write VRouterBinding status"))?;
    }
    Ok(p.requeue_after.map_or_else(Action::await_change, Action::requeue))
}

/// Generated configs written at once by one binding's reconcile.
const WRITES_IN_FLIGHT: usize = 16;

/// A hash of a config's spec (its JSON form).
fn spec_hash(spec: &crate::crd::VRouterConfigSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(spec).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Whether `c` is what this process last wrote to that config, and the store's copy (`stored`)
/// is older than that write (resource versions compared as etcd revisions; an unparsable one is
/// never taken as older).
fn just_written(ctx: &Context, ns: &str, c: &VRouterConfig, stored: Option<&VRouterConfig>) -> bool {
    let Ok(written) = ctx.written_configs.lock() else { return false };
    let Some((rv, spec)) = written.get(&format!("{ns}/{}", c.name_any())) else { return false };
    let revision = |v: &str| v.parse::<u64>().ok();
    let stored_rv = stored.and_then(|s| s.metadata.resource_version.as_deref()).map_or(Some(0), revision);
    *spec == spec_hash(&c.spec) && matches!((stored_rv, revision(rv)), (Some(s), Some(w)) if s < w)
}

/// Writes one generated config (server-side apply), and removes fields another manager added.
async fn write_config(
    ctx: &Context,
    api: &Api<VRouterConfig>,
    ssa: &PatchParams,
    c: &VRouterConfig,
) -> Result<(), Error> {
    let live = api.patch(&c.name_any(), ssa, &Patch::Apply(c)).await.map_err(Error::kube("apply VRouterConfig"))?;
    if let (Some(ns), Some(rv), Ok(mut written)) =
        (live.namespace(), live.metadata.resource_version.clone(), ctx.written_configs.lock())
    {
        written.insert(format!("{ns}/{}", live.name_any()), (rv, spec_hash(&live.spec)));
    }
    if live.spec != c.spec {
        // A field another manager added (a hand edit) survives server-side apply: remove it.
        let (l, o) = (serde_json::to_value(&live.spec), serde_json::to_value(&c.spec));
        if let (Ok(l), Ok(o)) = (l, o) {
            let patch = serde_json::json!({ "spec": crate::binding_plan::reset_patch(&l, &o) });
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
            api.patch(&c.name_any(), &params, &Patch::Merge(&patch))
                .await
                .map_err(Error::kube("reset VRouterConfig"))?;
        }
    }
    Ok(())
}

/// Bindings (same namespace) that refer to an object by name through `field`.
pub(crate) fn referrers(
    bindings: &Store<VRouterBinding>,
    ns: Option<String>,
    name: &str,
    field: fn(&VRouterBinding) -> Vec<&str>,
) -> Vec<ObjectRef<VRouterBinding>> {
    bindings
        .state()
        .iter()
        .filter(|b| b.namespace() == ns && field(b).contains(&name))
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// Template names a binding uses.
pub(crate) fn template_names(b: &VRouterBinding) -> Vec<&str> {
    b.spec.template_ref.iter().chain(&b.spec.template_refs).map(|r| r.name.as_str()).collect()
}

/// Params names a binding uses.
pub(crate) fn params_names(b: &VRouterBinding) -> Vec<&str> {
    b.spec.params_refs.iter().map(|r| r.name.as_str()).collect()
}

/// Every binding of the namespace that could select the target (by name or by any selector).
pub(crate) fn target_referrers(
    bindings: &Store<VRouterBinding>,
    ns: Option<String>,
    name: &str,
) -> Vec<ObjectRef<VRouterBinding>> {
    bindings
        .state()
        .iter()
        .filter(|b| {
            b.namespace() == ns
                && (b.spec.target_selector.is_some() || b.spec.target_refs.iter().any(|r| r.name == name))
        })
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// An [`Event`] (helper for the reconcilers); the note is cut to what the API server accepts.
pub(crate) fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    let note = Some(crate::event_note::fit(note));
    Event { type_, reason: reason.to_owned(), note, action: action.to_owned(), secondary: None }
}
