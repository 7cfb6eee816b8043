//! Per-router state shared by the Kubernetes controllers and standalone mode (no I/O): composes
//! a router's configs into its desired revision, and turns delivery and agent events into target
//! and config status. The shells write what it computes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::ResourceExt;
use sha2::{Digest as _, Sha256};
use vrouter_proto::RouterId;
use vyos_config::{RenderOptions, Schema, Tree, canonical_text, digest_of_canonical, render_config};

use crate::compose::{Composed, Part, RevisionInput, compose, revision_id_of};
use crate::conditions::{condition, ready_follows, set_condition, stamp_generation};
use crate::crd::{
    AgentStatus, ConfigPhase, ConfigPolicy, DriftStatus, LastApply, VRouterConfig, VRouterConfigStatus, VRouterTarget,
    VRouterTargetStatus, format_duration,
};
use crate::delivery::{DeliveryEvent, Desired, Phase};
use crate::hub::HubEvent;
use crate::render::{SecretRef, placeholders, substitute};
use crate::render_cache::{Hasher, InputDigest};
use crate::time::to_k8s;

/// (namespace, name).
pub type Key = (String, String);

/// Secret values of a namespace: name → key → value.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// (namespace, name) key.
pub fn key(ns: &str, name: &str) -> Key {
    (ns.to_owned(), name.to_owned())
}

/// The configs a revision carries: (name, generation).
type Parts = Vec<(String, i64)>;

/// Revisions remembered per router (a delivery answers for one of the last few).
const REVISIONS_KEPT: usize = 8;

/// Router and config status, as far as this process knows.
#[derive(Default)]
pub struct Tracker {
    /// Key for the secrets fingerprint in revision ids.
    secret_key: Vec<u8>,
    /// Config statuses.
    configs: BTreeMap<Key, VRouterConfigStatus>,
    /// Target statuses.
    targets: BTreeMap<Key, VRouterTargetStatus>,
    /// Per router: the last few revisions (oldest first) and the configs (name, generation) each
    /// carries — enough for the events of deliveries still in flight, without growing forever.
    revisions: BTreeMap<Key, Vec<(String, Parts)>>,
    /// Per router: the last composition, keyed by a digest of its parts (a pass where a
    /// router's configs did not change does not compose them again), and the revision last
    /// derived from it.
    composed: BTreeMap<Key, (InputDigest, ComposeOutcome, Option<RevisionMemo>)>,
}

/// A revision id derived from a composition, with the other inputs it was derived from: while
/// they stay the same the id and the substitution check are not computed again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RevisionMemo {
    /// The secrets fingerprint (keyed digest of the secret values the config uses).
    fingerprint: String,
    /// The target's config policy.
    policy: ConfigPolicy,
    /// The target's managed scopes.
    managed_scopes: Vec<String>,
    /// The revision id.
    revision: String,
}

/// What revisions need of a composition.
#[derive(Debug)]
struct ComposedText {
    /// The composition, its tree emptied (`config`, `canonical` and `digest` are what is used of
    /// it; keeping the texts instead of the tree saves memory).
    composed: Composed,
    /// The tree rendered as VyOS configuration.
    config: String,
    /// The tree's canonical text (`vyos_config::canonical_text`).
    canonical: String,
    /// The tree's digest (`vyos_config::digest`).
    digest: String,
    /// The secret placeholders in `config`.
    placeholders: BTreeSet<SecretRef>,
}

/// A composition, or which configs block it and why.
type ComposeOutcome = Result<Arc<ComposedText>, (Vec<String>, String)>;

/// Composes `parts` and renders what revisions need.
fn compose_text(parts: &[Part<'_>]) -> ComposeOutcome {
    let mut composed = compose(parts, Schema::vyos()).map_err(|errors| {
        let blame = errors.iter().flat_map(|e| e.configs()).map(str::to_owned).collect();
        (blame, errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    })?;
    let config = render_config(&composed.tree, RenderOptions::default());
    let canonical = canonical_text(&composed.tree);
    // One walk of the tree for both the canonical text and the digest.
    let digest = digest_of_canonical(&canonical).to_string();
    composed.tree = Tree::new();
    let placeholders = placeholders(&config);
    Ok(Arc::new(ComposedText { composed, config, canonical, digest, placeholders }))
}

/// Digest of everything composition reads of a router's configs.
fn parts_digest(parts: &[Part<'_>]) -> InputDigest {
    let mut h = Hasher::new("parts");
    for p in parts {
        h.bytes("name", p.name.as_bytes());
        h.bytes("generation", &p.generation.to_be_bytes());
        h.bytes("priority", &p.priority.to_be_bytes());
        h.opt("config", p.config);
        h.opt("commands", p.commands);
        h.bytes("save", &[u8::from(p.save)]);
    }
    h.finish()
}

impl Tracker {
    /// A tracker; `secret_key` keys the secrets fingerprint of revision ids.
    pub fn new(secret_key: Vec<u8>) -> Tracker {
        Tracker { secret_key, ..Tracker::default() }
    }

    /// A target's status.
    pub fn target_status(&self, ns: &str, name: &str) -> Option<&VRouterTargetStatus> {
        self.targets.get(&key(ns, name))
    }

    /// A config's status.
    pub fn config_status(&self, ns: &str, name: &str) -> Option<&VRouterConfigStatus> {
        self.configs.get(&key(ns, name))
    }

    /// Every target status.
    pub fn targets(&self) -> &BTreeMap<Key, VRouterTargetStatus> {
        &self.targets
    }

    /// Every config status.
    pub fn configs(&self) -> &BTreeMap<Key, VRouterConfigStatus> {
        &self.configs
    }

    /// Seeds a status read back from the API (after a restart), unless one is known.
    pub fn seed_target(&mut self, ns: &str, name: &str, status: Option<&VRouterTargetStatus>) {
        if let Some(s) = status {
            self.targets.entry(key(ns, name)).or_insert_with(|| s.clone());
        }
    }

    /// Seeds a config status read back from the API, unless one is known.
    pub fn seed_config(&mut self, ns: &str, name: &str, status: Option<&VRouterConfigStatus>) {
        if let Some(s) = status {
            self.configs.entry(key(ns, name)).or_insert_with(|| s.clone());
        }
    }

    /// Forgets targets and configs for which `keep` is false.
    pub fn retain(&mut self, keep_target: impl Fn(&Key) -> bool, keep_config: impl Fn(&Key) -> bool) {
        self.targets.retain(|k, _| keep_target(k));
        self.revisions.retain(|k, _| keep_target(k));
        self.composed.retain(|k, _| keep_target(k));
        self.configs.retain(|k, _| keep_config(k));
    }

    /// Marks a config whose target does not exist.
    pub fn target_missing(&mut self, config: &VRouterConfig) {
        let s = self.configs.entry(key(&config.namespace().unwrap_or_default(), &config.name_any())).or_default();
        s.phase = ConfigPhase::Failed;
        s.message = Some(format!("VRouterTarget {:?} not found", config.spec.target_ref.name));
        s.observed_generation = config.metadata.generation;
    }

    /// Composes a target's configs (those referencing it among `configs`) into its desired
    /// revision and updates their status. `None`: blocked (deliver nothing new);
    /// `Some(None)`: nothing to deliver; `Some(Some(d))`: deliver `d`.
    pub fn target(
        &mut self,
        target: &VRouterTarget,
        configs: &[&VRouterConfig],
        secrets: &Secrets,
        now: SystemTime,
    ) -> Option<Option<Desired>> {
        let ns_name = target.namespace().unwrap_or_default();
        let ns_name = ns_name.as_str();
        let tname = target.name_any();
        let tkey = key(ns_name, &tname);
        let parts_src: Vec<&VRouterConfig> =
            configs.iter().copied().filter(|c| c.spec.target_ref.name == tname).collect();
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
        let outcome = match self.desired_for(secrets, target, &parts) {
            Err((blame, message)) => {
                for n in &names {
                    let s = self.configs.entry(key(ns_name, n)).or_default();
                    if blame.contains(n) {
                        s.phase = ConfigPhase::Failed;
                        s.message = Some(status_message(&message));
                    } else if s.phase != ConfigPhase::Applied {
                        s.phase = ConfigPhase::Pending;
                        s.message = Some(status_message(&format!("router blocked: {message}")));
                    }
                }
                set_condition(
                    &mut status.conditions,
                    condition("ConfigApplied", false, "ComposeFailed", message, now, &old_conditions),
                );
                // The router keeps its last desired revision: nothing is delivered.
                None
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
                Some(None)
            }
            Ok(Some((desired, parts, overlaps))) => {
                status.desired_revision = Some(desired.revision.clone());
                status.desired_digest = Some(desired.digest.clone());
                let known = self.revisions.entry(tkey.clone()).or_default();
                known.retain(|(r, _)| *r != desired.revision);
                known.push((desired.revision.clone(), parts));
                if known.len() > REVISIONS_KEPT {
                    known.remove(0);
                }
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
                Some(Some(desired))
            }
        };
        finish_target(&mut status, now);
        for n in &names {
            if let Some(s) = self.configs.get_mut(&key(ns_name, n)) {
                stamp_generation(&mut s.conditions, s.observed_generation);
            }
        }
        self.targets.insert(tkey, status);
        outcome
    }

    /// The desired revision of a target, or which configs block it and why.
    #[allow(clippy::type_complexity)]
    fn desired_for(
        &mut self,
        secrets_of: &Secrets,
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
        let tkey = key(target.metadata.namespace.as_deref().unwrap_or_default(), &target.name_any());
        let pdigest = parts_digest(parts);
        let (text, memo) = match self.composed.get(&tkey) {
            Some((d, outcome, memo)) if *d == pdigest => (outcome.clone(), memo.clone()),
            _ => {
                let outcome = compose_text(parts);
                self.composed.insert(tkey.clone(), (pdigest, outcome.clone(), None));
                (outcome, None)
            }
        };
        let text = text?;
        let composed = &text.composed;
        let config = text.config.clone();
        let mut secrets = BTreeMap::new();
        let mut missing = Vec::new();
        for r in &text.placeholders {
            match secrets_of.get(&r.name).and_then(|s| s.get(&r.key)) {
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
        let revision = match memo {
            Some(m)
                if m.fingerprint == fingerprint
                    && m.policy == spec.config_policy
                    && m.managed_scopes == spec.managed_scopes =>
            {
                m.revision
            }
            _ => {
                // A value that cannot stand in a VyOS configuration value blocks the router
                // here, not at delivery.
                if let Err(e) = substitute(&config, |r| secrets.get(&r.placeholder()).cloned()) {
                    let blame = parts.iter().map(|p| p.name.to_owned()).collect();
                    return Err((blame, e.to_string()));
                }
                let revision = revision_id_of(
                    &text.canonical,
                    RevisionInput {
                        composed,
                        policy: spec.config_policy,
                        managed_scopes: &spec.managed_scopes,
                        secrets_fingerprint: &fingerprint,
                    },
                );
                if let Some(entry) = self.composed.get_mut(&tkey) {
                    entry.2 = Some(RevisionMemo {
                        fingerprint,
                        policy: spec.config_policy,
                        managed_scopes: spec.managed_scopes.clone(),
                        revision: revision.clone(),
                    });
                }
                revision
            }
        };
        let apply_timeout =
            spec.delivery.apply_timeout.as_ref().and_then(|d| d.get().ok()).unwrap_or(Duration::from_secs(300));
        let desired = Desired {
            revision,
            digest: text.digest.clone(),
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
            qga: crate::qga::route::route_of(target.metadata.namespace.as_deref().unwrap_or_default(), spec),
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
                message: Some(status_message(&ev.message)),
            });
        }
        let current = status.desired_revision.as_deref() == Some(ev.revision.as_str());
        let parts = self
            .revisions
            .get(&tkey)
            .and_then(|known| known.iter().find(|(r, _)| *r == ev.revision))
            .map(|(_, parts)| parts.clone())
            .unwrap_or_default();
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
                    s.message = Some(status_message(&ev.message));
                    set_condition(
                        &mut s.conditions,
                        condition("Applied", false, reason, ev.message.clone(), now, &old),
                    );
                }
            }
            _ => {}
        }
        finish_target(status, now);
        for (name, _) in &parts {
            if let Some(s) = self.configs.get_mut(&key(ev.id.namespace(), name)) {
                stamp_generation(&mut s.conditions, s.observed_generation);
            }
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
}

/// The target's `Ready` (its router runs its desired revision: it follows `ConfigApplied`), and
/// every condition stamped with the generation the status was computed for.
fn finish_target(status: &mut VRouterTargetStatus, now: SystemTime) {
    ready_follows(&mut status.conditions, "ConfigApplied", "Pending", now);
    stamp_generation(&mut status.conditions, status.observed_generation);
}

/// A message for a status field: control and bidi characters escaped
/// ([`vyos_config::escape_controls`]), at most 1,024 bytes.
fn status_message(message: &str) -> String {
    truncate(&vyos_config::escape_controls(message), 1024)
}

/// Cuts `s` to at most `max` bytes (on a character boundary), marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::revision_id;
    use crate::crd::{NameRef, VRouterConfigSpec, VRouterTargetSpec};
    use crate::delivery::Attempt;

    fn target(policy: ConfigPolicy) -> VRouterTarget {
        let mut t = VRouterTarget::new("r1", VRouterTargetSpec { config_policy: policy, ..Default::default() });
        t.metadata.namespace = Some("n".into());
        t
    }

    fn config(name: &str, priority: i32, commands: &str) -> VRouterConfig {
        let mut c = VRouterConfig::new(
            name,
            VRouterConfigSpec {
                target_ref: NameRef::new("r1"),
                commands: Some(commands.into()),
                save: true,
                priority,
                config: None,
            },
        );
        c.metadata.namespace = Some("n".into());
        c.metadata.generation = Some(2);
        c
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn event(revision: &str, phase: Phase, message: &str) -> DeliveryEvent {
        DeliveryEvent {
            id: RouterId::new("n", "r1").unwrap(),
            revision: revision.into(),
            phase,
            message: message.into(),
            result: Some(Attempt {
                outcome: "Applied".into(),
                commands: 1,
                duration: Duration::from_millis(5),
                at: now(),
                running_digest: "sha256:x".into(),
                saved: true,
            }),
        }
    }

    #[test]
    fn composes_delivers_and_tracks_the_applied_generation() {
        let mut t = Tracker::new(vec![1; 32]);
        let a = config("a", 0, "set system host-name 'r1'");
        let b = config("b", 5, "set system host-name 'x'\nset system time-zone 'UTC'");
        let d = t.target(&target(ConfigPolicy::Merge), &[&a, &b], &Secrets::new(), now()).unwrap().unwrap();
        assert!(d.config.contains("host-name \"x\""));
        let s = t.target_status("n", "r1").unwrap();
        assert_eq!(s.desired_revision.as_deref(), Some(d.revision.as_str()));
        assert_eq!(s.configs, ["a", "b"]);
        let ca = t.config_status("n", "a").unwrap();
        assert_eq!(ca.overlaps, ["b (system host-name)"]);
        t.on_delivery(&event(&d.revision, Phase::Applied, "applied 2 commands"));
        let ca = t.config_status("n", "a").unwrap();
        assert_eq!((ca.phase, ca.applied_generation), (ConfigPhase::Applied, Some(2)));
        let s = t.target_status("n", "r1").unwrap();
        assert_eq!(s.applied_revision, s.desired_revision);
        assert_eq!(s.conditions.iter().find(|c| c.type_ == "ConfigApplied").unwrap().status, "True");
        // An event about another revision does not touch the configs.
        t.on_delivery(&event("other", Phase::Failed, "boom"));
        assert_eq!(t.config_status("n", "a").unwrap().phase, ConfigPhase::Applied);
    }

    #[test]
    fn conflicts_block_and_name_both_configs() {
        let mut t = Tracker::new(vec![1; 32]);
        let a = config("a", 0, "set system host-name 'a'");
        let b = config("b", 0, "set system host-name 'b'");
        assert!(t.target(&target(ConfigPolicy::Merge), &[&a, &b], &Secrets::new(), now()).is_none());
        for n in ["a", "b"] {
            let s = t.config_status("n", n).unwrap();
            assert_eq!(s.phase, ConfigPhase::Failed);
            assert!(s.message.as_deref().unwrap().contains("both priority 0"));
        }
    }

    #[test]
    fn secrets_are_substituted_only_at_delivery_and_missing_ones_block() {
        let mut t = Tracker::new(vec![1; 32]);
        let c = config("a", 0, "set system login user u authentication plaintext-password '@@vrouter-secret:s/pw@@'");
        assert!(t.target(&target(ConfigPolicy::Merge), &[&c], &Secrets::new(), now()).is_none());
        assert!(t.config_status("n", "a").unwrap().message.as_deref().unwrap().contains("s/pw"));
        let secrets = Secrets::from([("s".to_owned(), BTreeMap::from([("pw".to_owned(), "hunter22".to_owned())]))]);
        let d = t.target(&target(ConfigPolicy::Merge), &[&c], &secrets, now()).unwrap().unwrap();
        assert!(d.config.contains("@@vrouter-secret:s/pw@@"));
        assert_eq!(d.secrets["@@vrouter-secret:s/pw@@"], "hunter22");
        assert_eq!(d.redact("error near hunter22"), "error near @@vrouter-secret:s/pw@@");
        // A Secret change is a new revision.
        let other = Secrets::from([("s".to_owned(), BTreeMap::from([("pw".to_owned(), "changed!".to_owned())]))]);
        let d2 = t.target(&target(ConfigPolicy::Merge), &[&c], &other, now()).unwrap().unwrap();
        assert_ne!(d.revision, d2.revision);
    }

    #[test]
    fn a_secret_value_vyos_cannot_hold_blocks_the_router() {
        let mut t = Tracker::new(vec![1; 32]);
        let c = config("a", 0, "set system login user u authentication plaintext-password '@@vrouter-secret:s/pw@@'");
        let secrets = Secrets::from([("s".to_owned(), BTreeMap::from([("pw".to_owned(), "it's".to_owned())]))]);
        assert!(t.target(&target(ConfigPolicy::Merge), &[&c], &secrets, now()).is_none());
        let s = t.config_status("n", "a").unwrap();
        assert_eq!(s.phase, ConfigPhase::Failed);
        assert!(s.message.as_deref().unwrap().contains("single quote"), "{s:?}");
    }

    #[test]
    fn compositions_are_reused_until_a_config_changes() {
        let mut t = Tracker::new(vec![1; 32]);
        let r1 = target(ConfigPolicy::Merge);
        let a = config("a", 0, "set system host-name 'r1'");
        let b = config("b", 5, "set system time-zone 'UTC'");
        let first = t.target(&r1, &[&a, &b], &Secrets::new(), now()).unwrap().unwrap();
        // The cached digest is vyos_config's digest of the composed tree.
        let parts: Vec<Part<'_>> = [&a, &b]
            .iter()
            .map(|c| Part {
                name: c.metadata.name.as_deref().unwrap(),
                generation: 2,
                priority: c.spec.priority,
                config: None,
                commands: c.spec.commands.as_deref(),
                save: true,
            })
            .collect();
        assert_eq!(first.digest, vyos_config::digest(&compose(&parts, Schema::vyos()).unwrap().tree).to_string());
        assert_eq!(
            first.revision,
            revision_id(RevisionInput {
                composed: &compose(&parts, Schema::vyos()).unwrap(),
                policy: ConfigPolicy::Merge,
                managed_scopes: &[],
                secrets_fingerprint: "",
            })
        );
        // Tamper with the cached composition: reused while nothing changes.
        let tkey = key("n", "r1");
        let poison = |t: &mut Tracker| {
            let (d, outcome, memo) = t.composed.remove(&tkey).unwrap();
            let mut text = outcome.unwrap();
            let inner = Arc::get_mut(&mut text).unwrap();
            inner.config.push_str("/* cached */\n");
            t.composed.insert(tkey.clone(), (d, Ok(text), memo));
        };
        poison(&mut t);
        let again = t.target(&r1, &[&a, &b], &Secrets::new(), now()).unwrap().unwrap();
        assert!(again.config.ends_with("/* cached */\n"));
        assert_eq!(again.revision, first.revision);
        // The revision id is remembered with its inputs, and reused while they stay the same.
        let poison_revision = |t: &mut Tracker| {
            let memo = t.composed.get_mut(&tkey).unwrap().2.as_mut().unwrap();
            memo.revision = "remembered".into();
        };
        poison_revision(&mut t);
        assert_eq!(t.target(&r1, &[&a, &b], &Secrets::new(), now()).unwrap().unwrap().revision, "remembered");
        let mut scoped = r1.clone();
        scoped.spec.managed_scopes = vec!["system".into()];
        assert_ne!(t.target(&scoped, &[&a, &b], &Secrets::new(), now()).unwrap().unwrap().revision, "remembered");
        poison_revision(&mut t);
        let d = t.target(&target(ConfigPolicy::Replace), &[&a, &b], &Secrets::new(), now()).unwrap().unwrap();
        assert_ne!(d.revision, "remembered");
        t.target(&r1, &[&a, &b], &Secrets::new(), now()).unwrap().unwrap();
        // A config's content, generation or priority changes: composed again.
        let mut a2 = a.clone();
        a2.spec.commands = Some("set system host-name 'r9'".into());
        let mut a3 = a.clone();
        a3.metadata.generation = Some(3);
        let mut b2 = b.clone();
        b2.spec.priority = 7;
        for (x, y) in [(&a2, &b), (&a3, &b), (&a, &b2)] {
            poison(&mut t);
            let d = t.target(&r1, &[x, y], &Secrets::new(), now()).unwrap().unwrap();
            assert!(!d.config.contains("cached"), "{}", d.config);
        }
        // Secret values are looked up on every pass (not cached).
        let c = config("a", 0, "set system login user u authentication plaintext-password '@@vrouter-secret:s/pw@@'");
        let one = Secrets::from([("s".to_owned(), BTreeMap::from([("pw".to_owned(), "one".to_owned())]))]);
        let two = Secrets::from([("s".to_owned(), BTreeMap::from([("pw".to_owned(), "two".to_owned())]))]);
        let d1 = t.target(&r1, &[&c], &one, now()).unwrap().unwrap();
        let d2 = t.target(&r1, &[&c], &two, now()).unwrap().unwrap();
        assert_ne!(d1.revision, d2.revision);
        assert_eq!(d2.secrets["@@vrouter-secret:s/pw@@"], "two");
        // A value that cannot stand in the config blocks the router, with a revision remembered
        // for the same composition and other values.
        let bad = Secrets::from([("s".to_owned(), BTreeMap::from([("pw".to_owned(), "a\u{0}b".to_owned())]))]);
        assert!(t.target(&r1, &[&c], &bad, now()).is_none());
        assert_eq!(t.target(&r1, &[&c], &two, now()).unwrap().unwrap().revision, d2.revision);
        assert!(t.target(&r1, &[&c], &Secrets::new(), now()).is_none());
        // The target's own settings are not cached either.
        let d3 = t.target(&target(ConfigPolicy::Replace), &[&c], &two, now()).unwrap().unwrap();
        assert_ne!(d3.revision, d2.revision);
        // A composition error is cached like a success, and cleared by a change.
        let x = config("x", 0, "set system host-name 'a'");
        let y = config("y", 0, "set system host-name 'b'");
        assert!(t.target(&r1, &[&x, &y], &Secrets::new(), now()).is_none());
        assert!(t.target(&r1, &[&x, &y], &Secrets::new(), now()).is_none());
        assert!(t.target(&r1, &[&x], &Secrets::new(), now()).is_some());
        // Forgotten with the target.
        t.retain(|_| false, |_| false);
        assert!(t.composed.is_empty());
    }

    #[test]
    fn empty_replace_is_never_delivered() {
        let mut t = Tracker::new(vec![1; 32]);
        assert_eq!(t.target(&target(ConfigPolicy::Replace), &[], &Secrets::new(), now()), Some(None));
        assert!(t.target(&target(ConfigPolicy::Merge), &[], &Secrets::new(), now()).unwrap().is_some());
    }
}
