//! Standalone mode's reconciler: manifests → generated configs → composed revisions → status.
//!
//! The same pure steps the controllers run ([`generate`], [`rollout`], [`compose`]), with the
//! generated VRouterConfigs and every status kept in memory (and written to a file) instead of
//! the Kubernetes API. No I/O here: the runner feeds it manifests, delivery and hub events, and
//! hands the desired revisions it returns to the delivery engine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sha2::{Digest as _, Sha256};
use vrouter_proto::RouterId;
use vyos_config::{RenderOptions, Schema, digest, render_config};

use super::manifests::{Manifests, Namespace};
use crate::compose::{Part, RevisionInput, compose, revision_id};
use crate::conditions::{condition, set_condition};
use crate::crd::{
    AgentStatus, ConfigPhase, ConfigPolicy, DriftStatus, LastApply, VRouterBindingStatus, VRouterConfig,
    VRouterConfigStatus, VRouterTarget, VRouterTargetStatus, format_duration,
};
use crate::delivery::{DeliveryEvent, Desired, Phase};
use crate::generate::Inputs;
use crate::hub::HubEvent;
use crate::render::placeholders;
use crate::time::to_k8s;

/// (namespace, name).
pub type Key = (String, String);

/// Everything standalone mode knows.
#[derive(Default)]
pub struct World {
    /// Key for the secrets fingerprint in revision ids.
    secret_key: Vec<u8>,
    /// Generated configs (as the API server would hold them).
    generated: BTreeMap<Key, VRouterConfig>,
    /// Generations of hand-written configs: (spec, generation).
    handwritten: BTreeMap<Key, (String, i64)>,
    /// Binding statuses.
    bindings: BTreeMap<Key, VRouterBindingStatus>,
    /// Config statuses (generated and hand-written).
    configs: BTreeMap<Key, VRouterConfigStatus>,
    /// Target statuses.
    targets: BTreeMap<Key, VRouterTargetStatus>,
    /// Per router: revision → the configs (name, generation) it carries.
    revisions: BTreeMap<Key, BTreeMap<String, Vec<(String, i64)>>>,
}

/// What one reconcile step wants done.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Desired revisions per router (None: nothing to deliver).
    pub desired: Vec<(RouterId, Option<Desired>)>,
    /// Look again after this long even without changes (rollouts waiting on time).
    pub wake_after: Option<Duration>,
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_owned(), name.to_owned())
}

impl World {
    /// A world; `secret_key` keys the secrets fingerprint of revision ids.
    pub fn new(secret_key: Vec<u8>) -> World {
        World { secret_key, ..World::default() }
    }

    /// One reconcile pass over all manifests.
    pub fn step(&mut self, m: &Manifests, now: SystemTime) -> StepOutput {
        let mut out = StepOutput::default();
        // Forget what is gone.
        self.bindings.retain(|(ns, n), _| m.namespaces.get(ns).is_some_and(|x| x.bindings.contains_key(n)));
        self.targets.retain(|(ns, n), _| m.namespaces.get(ns).is_some_and(|x| x.targets.contains_key(n)));
        self.generated.retain(|(ns, _), c| {
            let binding = c.annotations().get(crate::crd::ANNOTATION_BINDING).cloned().unwrap_or_default();
            m.namespaces.get(ns).is_some_and(|x| x.bindings.contains_key(&binding))
        });
        for (ns_name, ns) in &m.namespaces {
            for (name, binding) in &ns.bindings {
                let wake = self.step_binding(ns_name, ns, name, binding, now);
                out.wake_after = match (out.wake_after, wake) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            self.step_targets(ns_name, ns, now, &mut out);
        }
        let live: BTreeSet<Key> = self.all_config_keys(m).into_iter().collect();
        self.configs.retain(|k, _| live.contains(k));
        out
    }

    fn all_config_keys(&self, m: &Manifests) -> Vec<Key> {
        let mut keys: Vec<Key> = self.generated.keys().cloned().collect();
        for (ns_name, ns) in &m.namespaces {
            keys.extend(ns.configs.keys().map(|n| key(ns_name, n)));
        }
        keys
    }

    fn step_binding(
        &mut self,
        ns_name: &str,
        ns: &Namespace,
        name: &str,
        binding: &crate::crd::VRouterBinding,
        now: SystemTime,
    ) -> Option<Duration> {
        let bkey = key(ns_name, name);
        let mut binding = binding.clone();
        binding.status = self.bindings.remove(&bkey);
        // Every config of the namespace, with its status, as the API server would list them.
        let mut configs: BTreeMap<String, VRouterConfig> = BTreeMap::new();
        for (n, c) in &ns.configs {
            let mut c = c.clone();
            c.status = self.configs.get(&key(ns_name, n)).cloned();
            configs.insert(n.clone(), c);
        }
        for ((ns, n), c) in &self.generated {
            if ns == ns_name {
                let mut c = c.clone();
                c.status = self.configs.get(&key(ns_name, n)).cloned();
                configs.insert(n.clone(), c);
            }
        }
        let inputs = Inputs { templates: &ns.templates, params: &ns.params, targets: &ns.targets };
        let plan = crate::binding_plan::plan(&binding, inputs, &configs, now);
        for n in &plan.delete {
            self.generated.remove(&key(ns_name, n));
        }
        for mut c in plan.write {
            let k = key(ns_name, &c.name_any());
            c.metadata.generation = Some(self.generated.get(&k).and_then(|c| c.metadata.generation).unwrap_or(0) + 1);
            self.generated.insert(k, c);
        }
        self.bindings.insert(bkey, plan.status);
        plan.requeue_after
    }

    fn step_targets(&mut self, ns_name: &str, ns: &Namespace, now: SystemTime, out: &mut StepOutput) {
        // Every config of the namespace, hand-written first.
        let mut all: Vec<VRouterConfig> = Vec::new();
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
            all.push(c);
        }
        all.extend(self.generated.iter().filter(|((ns, _), _)| ns == ns_name).map(|(_, c)| c.clone()));

        for c in &all {
            if !ns.targets.contains_key(&c.spec.target_ref.name) {
                let s = self.configs.entry(key(ns_name, &c.name_any())).or_default();
                s.phase = ConfigPhase::Failed;
                s.message = Some(format!("VRouterTarget {:?} not found", c.spec.target_ref.name));
                s.observed_generation = c.metadata.generation;
            }
        }
        for (tname, target) in &ns.targets {
            let Ok(id) = RouterId::new(ns_name, tname.clone()) else { continue };
            let tkey = key(ns_name, tname);
            let parts_src: Vec<&VRouterConfig> = all.iter().filter(|c| c.spec.target_ref.name == *tname).collect();
            let names: Vec<String> = parts_src.iter().map(|c| c.name_any()).collect();
            let parts: Vec<Part<'_>> = parts_src
                .iter()
                .zip(&names)
                .map(|(c, n)| Part {
                    name: n,
                    generation: c.metadata.generation.unwrap_or(1),
                    priority: c.spec.priority,
                    config: c.spec.config.as_deref(),
                    commands: c.spec.commands.as_deref(),
                    save: c.spec.save,
                })
                .collect();
            let mut status = self.targets.remove(&tkey).unwrap_or_default();
            let old_conditions = status.conditions.clone();
            status.observed_generation = target.metadata.generation;
            status.configs = names.clone();
            match self.desired_for(ns, target, &parts) {
                Err((blame, message)) => {
                    for n in &names {
                        let s = self.configs.entry(key(ns_name, n)).or_default();
                        if blame.contains(n) {
                            s.phase = ConfigPhase::Failed;
                            s.message = Some(message.clone());
                        } else if s.phase != ConfigPhase::Applied {
                            s.phase = ConfigPhase::Pending;
                            s.message = Some(format!("router blocked: {message}"));
                        }
                    }
                    set_condition(
                        &mut status.conditions,
                        condition("ConfigApplied", false, "ComposeFailed", message, now, &old_conditions),
                    );
                    // The router keeps its last desired revision: nothing is delivered.
                }
                Ok(None) => {
                    status.desired_revision = None;
                    set_condition(
                        &mut status.conditions,
                        condition(
                            "ConfigApplied",
                            false,
                            "NoConfig",
                            "no VRouterConfig for this router",
                            now,
                            &old_conditions,
                        ),
                    );
                    out.desired.push((id, None));
                }
                Ok(Some((desired, parts, overlaps))) => {
                    status.desired_revision = Some(desired.revision.clone());
                    status.desired_digest = Some(desired.digest.clone());
                    self.revisions.entry(tkey.clone()).or_default().insert(desired.revision.clone(), parts);
                    for n in &names {
                        let s = self.configs.entry(key(ns_name, n)).or_default();
                        let ov = overlaps.get(n).cloned().unwrap_or_default();
                        s.overlaps = ov.iter().map(|o| format!("{} ({})", o.other, o.path)).collect();
                        let old = s.conditions.clone();
                        let c = if ov.is_empty() {
                            condition("Overlap", false, "NoOverlap", "", now, &old)
                        } else {
                            let won = ov.iter().filter(|o| o.won).count();
                            condition(
                                "Overlap",
                                true,
                                "Overlap",
                                format!("{} leaves also set by other configs ({won} won by this one)", ov.len()),
                                now,
                                &old,
                            )
                        };
                        set_condition(&mut s.conditions, c);
                        if s.phase == ConfigPhase::Failed
                            && s.message.as_deref().is_some_and(|m| m.starts_with("VRouterConfig"))
                        {
                            // A compose error that is gone.
                            s.phase = ConfigPhase::Pending;
                            s.message = None;
                        }
                    }
                    let applied_now = status.applied_revision.as_deref() == Some(desired.revision.as_str());
                    if !applied_now {
                        set_condition(
                            &mut status.conditions,
                            condition("ConfigApplied", false, "Pending", "waiting for delivery", now, &old_conditions),
                        );
                    }
                    out.desired.push((id, Some(desired)));
                }
            }
            self.targets.insert(tkey, status);
        }
    }

    /// The desired revision of a target, or which configs block it and why.
    #[allow(clippy::type_complexity)]
    fn desired_for(
        &self,
        ns: &Namespace,
        target: &VRouterTarget,
        parts: &[Part<'_>],
    ) -> Result<
        Option<(Desired, Vec<(String, i64)>, BTreeMap<String, Vec<crate::compose::Overlap>>)>,
        (Vec<String>, String),
    > {
        if parts.is_empty() && target.spec.config_policy == ConfigPolicy::Replace {
            // An empty Replace would wipe the router: deliver nothing instead.
            return Ok(None);
        }
        let composed = compose(parts, Schema::vyos()).map_err(|errors| {
            let blame = errors.iter().flat_map(|e| e.configs()).map(str::to_owned).collect();
            (blame, errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        })?;
        let config = render_config(&composed.tree, RenderOptions::default());
        let mut secrets = BTreeMap::new();
        let mut missing = Vec::new();
        for r in placeholders(&config) {
            match ns.secrets.get(&r.name).and_then(|s| s.get(&r.key)) {
                Some(v) => {
                    secrets.insert(r.placeholder(), v.clone());
                }
                None => missing.push(format!("{}/{}", r.name, r.key)),
            }
        }
        if !missing.is_empty() {
            let blame = parts.iter().map(|p| p.name.to_owned()).collect();
            return Err((blame, format!("Secret values not found: {}", missing.join(", "))));
        }
        let mut h = Sha256::new();
        h.update(&self.secret_key);
        for (p, v) in &secrets {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
        let fingerprint: String =
            if secrets.is_empty() { String::new() } else { h.finalize().iter().map(|b| format!("{b:02x}")).collect() };
        let spec = &target.spec;
        let revision = revision_id(RevisionInput {
            composed: &composed,
            policy: spec.config_policy,
            managed_scopes: &spec.managed_scopes,
            secrets_fingerprint: &fingerprint,
        });
        let apply_timeout =
            spec.delivery.apply_timeout.as_ref().and_then(|d| d.get().ok()).unwrap_or(Duration::from_secs(300));
        let desired = Desired {
            revision,
            digest: digest(&composed.tree).to_string(),
            config,
            secrets,
            deletions: composed.deletions.clone(),
            policy: spec.config_policy,
            managed_scopes: spec.managed_scopes.clone(),
            save: composed.save,
            commit_confirm: spec
                .delivery
                .commit_confirm
                .enabled
                .then_some(spec.delivery.commit_confirm.timeout_minutes),
            apply_timeout,
            paused: spec.paused,
            correct_drift: spec.drift_policy == crate::crd::DriftPolicy::Correct,
        };
        Ok(Some((desired, composed.parts.clone(), composed.overlaps.clone())))
    }

    /// Records a delivery event.
    pub fn on_delivery(&mut self, ev: &DeliveryEvent) {
        let tkey = key(ev.id.namespace(), ev.id.name());
        let Some(status) = self.targets.get_mut(&tkey) else { return };
        let now = ev.result.as_ref().map_or_else(SystemTime::now, |r| r.at);
        let old = status.conditions.clone();
        if let Some(r) = &ev.result {
            status.last_apply = Some(LastApply {
                revision: ev.revision.clone(),
                outcome: r.outcome.clone(),
                commands: r.commands,
                duration: Some(format_duration(Duration::from_millis(r.duration.as_millis() as u64))),
                time: Some(to_k8s(r.at)),
                message: Some(truncate(&ev.message, 1024)),
            });
        }
        let current = status.desired_revision.as_deref() == Some(ev.revision.as_str());
        let parts = self.revisions.get(&tkey).and_then(|r| r.get(&ev.revision)).cloned().unwrap_or_default();
        match ev.phase {
            Phase::Applied => {
                status.applied_revision = Some(ev.revision.clone());
                status.applied_digest = ev.result.as_ref().map(|r| r.running_digest.clone()).filter(|d| !d.is_empty());
                status.last_applied_time = Some(to_k8s(now));
                if current {
                    set_condition(
                        &mut status.conditions,
                        condition("ConfigApplied", true, "Applied", ev.message.clone(), now, &old),
                    );
                }
                for (name, generation) in &parts {
                    let s = self.configs.entry(key(ev.id.namespace(), name)).or_default();
                    let old = s.conditions.clone();
                    s.phase = ConfigPhase::Applied;
                    s.applied_revision = Some(ev.revision.clone());
                    s.applied_generation = Some(*generation);
                    s.observed_generation = Some(*generation);
                    s.last_applied_time = Some(to_k8s(now));
                    s.message = Some(format!("applied in revision {}", ev.revision));
                    set_condition(
                        &mut s.conditions,
                        condition("Applied", true, "Applied", s.message.clone().unwrap_or_default(), now, &old),
                    );
                }
            }
            Phase::Failed | Phase::Applying | Phase::Pending if current => {
                let (phase, reason) = match ev.phase {
                    Phase::Failed => (ConfigPhase::Failed, "ApplyFailed"),
                    Phase::Applying => (ConfigPhase::Applying, "Applying"),
                    _ => (ConfigPhase::Pending, "Pending"),
                };
                set_condition(
                    &mut status.conditions,
                    condition("ConfigApplied", false, reason, ev.message.clone(), now, &old),
                );
                for (name, generation) in &parts {
                    let s = self.configs.entry(key(ev.id.namespace(), name)).or_default();
                    // Configs already applied at this generation stay Applied (only the new
                    // parts of the revision are in question), except on failure.
                    if s.phase == ConfigPhase::Applied
                        && s.applied_generation == Some(*generation)
                        && phase != ConfigPhase::Failed
                    {
                        continue;
                    }
                    let old = s.conditions.clone();
                    s.phase = phase;
                    s.observed_generation = Some(*generation);
                    s.message = Some(truncate(&ev.message, 1024));
                    set_condition(
                        &mut s.conditions,
                        condition("Applied", false, reason, ev.message.clone(), now, &old),
                    );
                }
            }
            _ => {}
        }
    }

    /// Records a hub event (agent sessions, status and drift reports).
    pub fn on_hub(&mut self, ev: &HubEvent) {
        let now = SystemTime::now();
        type Update = Box<dyn FnOnce(&mut VRouterTargetStatus)>;
        let (id, f): (&RouterId, Update) = match ev {
            HubEvent::Connected { id, hello, .. } => {
                let hello = hello.clone();
                (
                    id,
                    Box::new(move |s| {
                        let os = hello.os.as_ref().map(|o| format!("{} {}", o.id, o.version).trim().to_owned());
                        s.agent = Some(AgentStatus {
                            connected: true,
                            since: Some(to_k8s(now)),
                            version: Some(hello.agent_version.clone()),
                            os,
                            boot_id: Some(hello.boot_id.clone()).filter(|b| !b.is_empty()),
                            last_heartbeat: Some(to_k8s(now)),
                            last_disconnect_reason: s.agent.as_ref().and_then(|a| a.last_disconnect_reason.clone()),
                        });
                        let old = s.conditions.clone();
                        set_condition(
                            &mut s.conditions,
                            condition("AgentConnected", true, "Connected", "agent session open", now, &old),
                        );
                    }),
                )
            }
            HubEvent::Disconnected { id, reason, .. } => {
                let reason = reason.clone();
                (
                    id,
                    Box::new(move |s| {
                        let a = s.agent.get_or_insert_with(AgentStatus::default);
                        a.connected = false;
                        a.since = Some(to_k8s(now));
                        a.last_disconnect_reason = Some(reason.clone());
                        let old = s.conditions.clone();
                        set_condition(
                            &mut s.conditions,
                            condition("AgentConnected", false, "Disconnected", reason, now, &old),
                        );
                    }),
                )
            }
            HubEvent::Status { id, .. } => (
                id,
                Box::new(move |s| {
                    if let Some(a) = s.agent.as_mut() {
                        a.last_heartbeat = Some(to_k8s(now));
                    }
                }),
            ),
            HubEvent::Drift { id, report } => {
                let report = report.clone();
                (
                    id,
                    Box::new(move |s| {
                        let prev = s.drift.take().unwrap_or_default();
                        let paths: Vec<String> = report.paths.iter().take(50).map(|p| p.path.clone()).collect();
                        let count = report.paths.len() as u32 + report.paths_omitted;
                        s.drift = Some(DriftStatus {
                            drifted: report.drifted,
                            paths,
                            path_count: count,
                            unsaved: report.unsaved,
                            detected_at: if report.drifted {
                                prev.detected_at.or_else(|| Some(to_k8s(now)))
                            } else {
                                None
                            },
                            corrections: prev.corrections,
                        });
                        let old = s.conditions.clone();
                        let msg = if report.drifted {
                            format!("{count} paths differ from the applied revision")
                        } else {
                            String::new()
                        };
                        set_condition(
                            &mut s.conditions,
                            condition(
                                "Drifted",
                                report.drifted,
                                if report.drifted { "Drifted" } else { "InSync" },
                                msg,
                                now,
                                &old,
                            ),
                        );
                    }),
                )
            }
        };
        // Sessions may open before the first reconcile; the next step drops unknown targets.
        f(self.targets.entry(key(id.namespace(), id.name())).or_default());
    }

    /// What is not yet in its desired state (empty when everything is synced).
    pub fn unsynced(&self, m: &Manifests) -> Vec<String> {
        let mut out = Vec::new();
        for ((ns, name), s) in &self.bindings {
            if let Some(c) = s.conditions.iter().find(|c| c.type_ == "Ready")
                && c.status != "True"
            {
                out.push(format!("VRouterBinding {ns}/{name}: {}", c.message));
            }
        }
        for ((ns, name), s) in &self.targets {
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

    /// Every status, as YAML documents (`kind`, `metadata`, `status`).
    pub fn status_documents(&self) -> Vec<serde_json::Value> {
        let mut docs = Vec::new();
        let doc = |kind: &str, (ns, name): &Key, status: serde_json::Value| serde_json::json!({"kind": kind, "metadata": {"namespace": ns, "name": name}, "status": status});
        for (k, s) in &self.targets {
            docs.push(doc("VRouterTarget", k, serde_json::to_value(s).unwrap_or_default()));
        }
        for (k, s) in &self.bindings {
            docs.push(doc("VRouterBinding", k, serde_json::to_value(s).unwrap_or_default()));
        }
        for (k, s) in &self.configs {
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

    /// Target statuses.
    pub fn target_statuses(&self) -> impl Iterator<Item = (&Key, &VRouterTargetStatus)> {
        self.targets.iter()
    }

    /// A one-line-per-target table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:<9} {:<17} {:<17} {:<8} {}\n",
            "TARGET", "AGENT", "DESIRED", "APPLIED", "DRIFT", "MESSAGE"
        );
        for ((ns, name), s) in &self.targets {
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

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `Time` helper for tests and callers.
pub fn now_k8s() -> Time {
    to_k8s(SystemTime::now())
}
