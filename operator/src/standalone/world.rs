//! Standalone mode's reconciler: manifests → generated configs → composed revisions → status.
//!
//! The same pure steps the controllers run ([`generate`], [`rollout`], [`compose`]), with the
//! generated VRouterConfigs and every status kept in memory (and written to a file) instead of
//! the Kubernetes API. No I/O here: the runner feeds it manifests, delivery and hub events, and
//! hands the desired revisions it returns to the delivery engine.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use vrouter_proto::RouterId;

use super::manifests::{Manifests, Namespace};
use crate::binding_plan::{BindingPlan, Existing, plan_cached};
use crate::crd::{ConfigPhase, VRouterBindingStatus, VRouterConfig, VRouterTargetStatus};
use crate::delivery::{DeliveryEvent, Desired};
use crate::generate::{Inputs, RenderCache};
use crate::hub::HubEvent;
use crate::time::to_k8s;
pub use crate::tracker::Key;
use crate::tracker::{Tracker, key, truncate};

/// Everything standalone mode knows.
#[derive(Default)]
pub struct World {
    /// Router and config status.
    tracker: Tracker,
    /// Generated configs (as the API server would hold them).
    generated: BTreeMap<Key, VRouterConfig>,
    /// Generations of hand-written configs: (spec, generation).
    handwritten: BTreeMap<Key, (String, i64)>,
    /// Binding statuses.
    bindings: BTreeMap<Key, VRouterBindingStatus>,
    /// What each binding last rendered (a pass re-renders only what changed).
    render_cache: RenderCache,
    /// Bumped whenever `generated` changes (callers save the configs only then).
    generated_version: u64,
}

/// What one reconcile step wants done.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Desired revisions per router (None: nothing to deliver).
    pub desired: Vec<(RouterId, Option<Desired>)>,
    /// Look again after this long even without changes (rollouts waiting on time).
    pub wake_after: Option<Duration>,
}

impl World {
    /// A world; `secret_key` keys the secrets fingerprint of revision ids.
    pub fn new(secret_key: Vec<u8>) -> World {
        World { tracker: Tracker::new(secret_key), ..World::default() }
    }

    /// Puts back generated configs saved by an earlier run (see [`generated`](Self::generated)):
    /// the API server keeps them across operator restarts, and a rollout holding targets at
    /// their previous config needs them, or the held targets would be sent an empty config.
    pub fn restore_generated(&mut self, configs: impl IntoIterator<Item = VRouterConfig>) {
        for c in configs {
            let ns = c.namespace().unwrap_or_default();
            self.generated.insert(key(&ns, &c.name_any()), c);
        }
        self.generated_version += 1;
    }

    /// One reconcile pass over all manifests.
    pub fn step(&mut self, m: &Manifests, now: SystemTime) -> StepOutput {
        let mut out = StepOutput::default();
        // Forget what is gone.
        self.bindings.retain(|(ns, n), _| m.namespaces.get(ns).is_some_and(|x| x.bindings.contains_key(n)));
        self.render_cache.retain(|ns, n| m.namespaces.get(ns).is_some_and(|x| x.bindings.contains_key(n)));
        let before = self.generated.len();
        self.generated.retain(|(ns, _), c| {
            let binding = c.annotations().get(crate::crd::ANNOTATION_BINDING).map(String::as_str).unwrap_or_default();
            m.namespaces.get(ns).is_some_and(|x| x.bindings.contains_key(binding))
        });
        if self.generated.len() != before {
            self.generated_version += 1;
        }
        for (ns_name, ns) in &m.namespaces {
            // Every binding of the namespace plans against one snapshot of its configs, as a
            // controller's store would show them; what the plans write is applied afterwards.
            let mut plans = Vec::with_capacity(ns.bindings.len());
            {
                let configs = namespace_configs(&self.generated, &self.tracker, ns_name, ns);
                let inputs = Inputs { templates: &ns.templates, params: &ns.params, targets: &ns.targets };
                for (name, binding) in &ns.bindings {
                    let bkey = key(ns_name, name);
                    let mut binding = binding.clone();
                    binding.status = self.bindings.remove(&bkey);
                    let plan = plan_cached(&binding, inputs, &configs, now, &mut self.render_cache);
                    plans.push((bkey, plan));
                }
            }
            for (bkey, plan) in plans {
                out.wake_after = match (out.wake_after, plan.requeue_after) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.apply_plan(ns_name, bkey, plan);
            }
            self.step_targets(ns_name, ns, now, &mut out);
        }
        let (generated, handwritten) = (&self.generated, &m.namespaces);
        self.tracker.retain(
            |(ns, n)| m.namespaces.get(ns).is_some_and(|x| x.targets.contains_key(n)),
            |k| generated.contains_key(k) || handwritten.get(&k.0).is_some_and(|x| x.configs.contains_key(&k.1)),
        );
        out
    }

    /// Carries out a binding's plan: its writes and deletions of generated configs, its status.
    fn apply_plan(&mut self, ns_name: &str, bkey: Key, plan: BindingPlan) {
        for n in &plan.delete {
            if self.generated.remove(&key(ns_name, n)).is_some() {
                self.generated_version += 1;
            }
        }
        for mut c in plan.write {
            let k = key(ns_name, &c.name_any());
            c.metadata.generation = Some(self.generated.get(&k).and_then(|c| c.metadata.generation).unwrap_or(0) + 1);
            self.generated.insert(k, c);
            self.generated_version += 1;
        }
        self.bindings.insert(bkey, plan.status);
    }

    fn step_targets(&mut self, ns_name: &str, ns: &Namespace, now: SystemTime, out: &mut StepOutput) {
        // Every config of the namespace, hand-written first (those with their generation set).
        let mut handwritten: Vec<VRouterConfig> = Vec::new();
        for (name, c) in &ns.configs {
            let spec_text = serde_json::to_string(&c.spec).unwrap_or_default();
            let k = key(ns_name, name);
            let generation = match self.handwritten.get(&k) {
                Some((s, g)) if *s == spec_text => *g,
                Some((_, g)) => g + 1,
                None => c.metadata.generation.unwrap_or(1),
            };
            self.handwritten.insert(k, (spec_text, generation));
            let mut c = c.clone();
            c.metadata.generation = Some(generation);
            handwritten.push(c);
        }
        let generated = self.generated.range(key(ns_name, "")..).take_while(|((n, _), _)| n == ns_name);
        let all: Vec<&VRouterConfig> = handwritten.iter().chain(generated.map(|(_, c)| c)).collect();

        for c in &all {
            if !ns.targets.contains_key(&c.spec.target_ref.name) {
                self.tracker.target_missing(c);
            }
        }
        // Group once: each router composes only its own configs.
        let mut by_target: BTreeMap<&str, Vec<&VRouterConfig>> = BTreeMap::new();
        for c in &all {
            by_target.entry(c.spec.target_ref.name.as_str()).or_default().push(*c);
        }
        for (tname, target) in &ns.targets {
            let Ok(id) = RouterId::new(ns_name, tname.clone()) else { continue };
            let mine = by_target.get(tname.as_str()).map(Vec::as_slice).unwrap_or_default();
            if let Some(desired) = self.tracker.target(target, mine, &ns.secrets, now) {
                out.desired.push((id, desired));
            }
        }
    }

    /// Records a delivery event.
    pub fn on_delivery(&mut self, ev: &DeliveryEvent) {
        self.tracker.on_delivery(ev);
    }

    /// Records a hub event.
    pub fn on_hub(&mut self, ev: &HubEvent) {
        self.tracker.on_hub(ev);
    }

    /// What is not yet in its desired state (empty when everything is synced): bindings not
    /// Ready, routers not running their desired revision, and configs that failed (a config whose
    /// target does not exist reaches no router, so no router shows it).
    pub fn unsynced(&self, m: &Manifests) -> Vec<String> {
        let mut out = Vec::new();
        for ((ns, name), s) in self.tracker.configs() {
            if s.phase == ConfigPhase::Failed {
                out.push(format!("VRouterConfig {ns}/{name}: Failed: {}", s.message.as_deref().unwrap_or_default()));
            }
        }
        for ((ns, name), s) in &self.bindings {
            if let Some(c) = s.conditions.iter().find(|c| c.type_ == "Ready")
                && c.status != "True"
            {
                out.push(format!("VRouterBinding {ns}/{name}: {}", c.message));
            }
        }
        for ((ns, name), s) in self.tracker.targets() {
            let has_configs = !s.configs.is_empty();
            let paused = m.namespaces.get(ns).and_then(|n| n.targets.get(name)).is_some_and(|t| t.spec.paused);
            if has_configs && !paused && (s.desired_revision.is_none() || s.desired_revision != s.applied_revision) {
                let why = s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "ConfigApplied")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                out.push(format!("VRouterTarget {ns}/{name}: {why}"));
            }
        }
        out
    }

    /// Render and composition problems (bindings not rendering, routers blocked).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((ns, name), s) in &self.bindings {
            for c in s
                .conditions
                .iter()
                .filter(|c| c.status == "False" && (c.reason == "RenderFailed" || c.reason == "RolloutHalted"))
            {
                out.push(format!("VRouterBinding {ns}/{name}: {}", c.message));
            }
        }
        for ((ns, name), s) in self.tracker.targets() {
            for c in s.conditions.iter().filter(|c| c.reason == "ComposeFailed") {
                out.push(format!("VRouterTarget {ns}/{name}: {}", c.message));
            }
        }
        out
    }

    /// Every status, as YAML documents (`kind`, `metadata`, `status`).
    pub fn status_documents(&self) -> Vec<serde_json::Value> {
        let mut docs = Vec::new();
        let doc = |kind: &str, (ns, name): &Key, status: serde_json::Value| serde_json::json!({"kind": kind, "metadata": {"namespace": ns, "name": name}, "status": status});
        for (k, s) in self.tracker.targets() {
            docs.push(doc("VRouterTarget", k, serde_json::to_value(s).unwrap_or_default()));
        }
        for (k, s) in &self.bindings {
            docs.push(doc("VRouterBinding", k, serde_json::to_value(s).unwrap_or_default()));
        }
        for (k, s) in self.tracker.configs() {
            let mut d = doc("VRouterConfig", k, serde_json::to_value(s).unwrap_or_default());
            if let Some(c) = self.generated.get(k) {
                d["spec"] = serde_json::to_value(&c.spec).unwrap_or_default();
                d["metadata"]["generation"] = c.metadata.generation.into();
            }
            docs.push(d);
        }
        docs
    }

    /// The generated configs.
    pub fn generated(&self) -> impl Iterator<Item = &VRouterConfig> {
        self.generated.values()
    }

    /// A number that changes whenever the generated configs change (it says nothing else).
    pub fn generated_version(&self) -> u64 {
        self.generated_version
    }

    /// Target statuses.
    pub fn target_statuses(&self) -> impl Iterator<Item = (&Key, &VRouterTargetStatus)> {
        self.tracker.targets().iter()
    }

    /// A one-line-per-target table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:<9} {:<17} {:<17} {:<8} {}\n",
            "TARGET", "AGENT", "DESIRED", "APPLIED", "DRIFT", "MESSAGE"
        );
        for ((ns, name), s) in self.tracker.targets() {
            let agent = match &s.agent {
                Some(a) if a.connected => "connected",
                Some(_) => "lost",
                None => "-",
            };
            let msg =
                s.conditions.iter().find(|c| c.type_ == "ConfigApplied").map(|c| c.message.as_str()).unwrap_or("");
            out.push_str(&format!(
                "{:<28} {:<9} {:<17} {:<17} {:<8} {}\n",
                format!("{ns}/{name}"),
                agent,
                s.desired_revision.as_deref().unwrap_or("-"),
                s.applied_revision.as_deref().unwrap_or("-"),
                if s.drift.as_ref().is_some_and(|d| d.drifted) { "yes" } else { "no" },
                truncate(msg, 60),
            ));
        }
        out
    }
}

/// Every config of the namespace (hand-written and generated) with its status, borrowed.
fn namespace_configs<'a>(
    generated: &'a BTreeMap<Key, VRouterConfig>,
    tracker: &'a Tracker,
    ns_name: &str,
    ns: &'a Namespace,
) -> BTreeMap<&'a str, Existing<'a>> {
    let generated = generated.range(key(ns_name, "")..).take_while(|((n, _), _)| n == ns_name);
    ns.configs
        .iter()
        .chain(generated.map(|((_, n), c)| (n, c)))
        .map(|(n, c)| (n.as_str(), Existing { config: c, status: tracker.config_status(ns_name, n) }))
        .collect()
}

/// `Time` helper for tests and callers.
pub fn now_k8s() -> Time {
    to_k8s(SystemTime::now())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;
    use crate::standalone::manifests::add_text;

    const TARGETS: &str = "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r1}\nspec: {}\n---\n\
        apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r2}\nspec: {}\n";

    fn manifests(texts: &[&str]) -> Manifests {
        let mut m = Manifests::default();
        for (i, t) in texts.iter().enumerate() {
            add_text(&mut m, Path::new(&format!("{i}.yaml")), t).unwrap();
        }
        m
    }

    fn desired(out: &StepOutput, router: &str) -> Option<String> {
        out.desired.iter().find(|(id, _)| id.name() == router).and_then(|(_, d)| d.as_ref()).map(|d| d.config.clone())
    }

    #[test]
    fn a_failed_config_is_not_synced() {
        let orphan = "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterConfig\nmetadata: {name: orphan}\n\
            spec: {targetRef: {name: gone}, commands: \"set system host-name 'x'\\n\"}\n";
        let mut w = World::new(vec![0; 32]);
        let m = manifests(&[TARGETS, orphan]);
        w.step(&m, SystemTime::now());
        assert_eq!(w.unsynced(&m), ["VRouterConfig default/orphan: Failed: VRouterTarget \"gone\" not found"]);
        // Without it, nothing is pending.
        let m = manifests(&[TARGETS]);
        w.step(&m, SystemTime::now());
        assert!(w.unsynced(&m).is_empty(), "{:?}", w.unsynced(&m));
    }

    #[test]
    fn a_broken_template_does_not_stop_the_bindings_that_do_not_use_it() {
        let templates = "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {name: good}\n\
            spec: {config: \"system {\\n    time-zone {{ tz }}\\n}\\n\"}\n---\n\
            apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {name: broken}\n\
            spec: {config: \"system {\\n    host-name {% if %}\\n}\\n\"}\n";
        let bindings = "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: a}\n\
            spec: {templateRefs: [{name: broken}], targetRefs: [{name: r1}]}\n---\n\
            apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: b}\n\
            spec: {templateRefs: [{name: good}], paramsRefs: [{name: p}], targetRefs: [{name: r2}]}\n";
        let params = |tz: &str| {
            format!(
                "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterParams\nmetadata: {{name: p}}\nspec: {{params: {{tz: {tz}}}}}\n"
            )
        };
        let mut w = World::new(vec![0; 32]);
        let m = manifests(&[TARGETS, templates, bindings, &params("UTC")]);
        let out = w.step(&m, SystemTime::now());
        assert!(desired(&out, "r2").unwrap().contains("time-zone \"UTC\""), "{out:?}");
        let problems = w.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("VRouterBinding default/a: template \"broken\""), "{problems:?}");
        // A params edit still reaches b's router.
        let m = manifests(&[TARGETS, templates, bindings, &params("Asia/Tokyo")]);
        let out = w.step(&m, SystemTime::now());
        assert!(desired(&out, "r2").unwrap().contains("time-zone \"Asia/Tokyo\""), "{out:?}");
    }
}
