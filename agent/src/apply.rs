//! Applying a revision: the same careful sequence for every backend.
//!
//! 1. A revision the router already runs is acknowledged `NO_CHANGE` without reading the
//!    configuration (unless forced); a revision that was rolled back is answered with that
//!    outcome again (unless forced), so a re-delivery cannot cut the router off twice.
//! 2. Wait for the router to be ready; parse the desired configuration; read the running one.
//! 3. Plan with the `vyos` crate (Merge or Replace, managed scopes, protected configuration).
//!    Nothing to do: `NO_CHANGE`, no commit.
//! 4. Commit, with the commit-confirm timer started first (by default). Then prove the
//!    operator is still reachable (a fresh round trip, reconnecting if needed) before
//!    confirming. No proof: do not confirm; the router reverts by itself; report `ROLLED_BACK`.
//! 5. Save only after confirming. Record the revision durably.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vrouter_proto::v1::{
    ApplyOutcome, ApplyPhase, ApplyProgress, ApplyRequest, ApplyResult, ConfigPolicy, DriftKind, DriftPath,
    DriftReport, DriftSource, FailureKind, Revision,
};
use vyos_config::{ChangeKind, Config, Plan, PlanInput, Policy, Schema, Tree, digest, path_from_str, plan};

use crate::backend::{Backend, BackendError, BackendEvent, CommitOptions, CommitReport};
use crate::config::ApplyConfig;
use crate::creds::unix_now;
use crate::state::{AppliedRecord, FailureRecord, RevisionRecord, StateFile};

/// Most drift paths listed in one report.
pub const MAX_DRIFT_PATHS: usize = 100;

/// Proves that the operator can still be reached after a commit.
#[async_trait]
pub trait Reachability: Send + Sync {
    /// A fresh round trip with the operator within `deadline` (reconnecting if needed).
    async fn prove(&self, deadline: Duration) -> bool;
}

/// Receives progress reports.
pub trait Progress: Send + Sync {
    /// One report.
    fn report(&self, progress: ApplyProgress);
}

impl<F: Fn(ApplyProgress) + Send + Sync> Progress for F {
    fn report(&self, progress: ApplyProgress) {
        self(progress)
    }
}

/// Applies revisions through a backend.
pub struct Applier {
    backend: Arc<dyn Backend>,
    state: StateFile,
    /// The record as last read or written (the file is the truth; this saves re-reading it).
    cached: std::sync::Mutex<Option<AppliedRecord>>,
    config: ApplyConfig,
    protected: Tree,
    lock: tokio::sync::Mutex<()>,
}

fn fail(request: &ApplyRequest, kind: FailureKind, error: impl Into<String>, started: Instant) -> ApplyResult {
    ApplyResult {
        request_id: request.request_id.clone(),
        revision: request.revision.clone(),
        outcome: ApplyOutcome::Failed as i32,
        error: error.into(),
        failure_kind: kind as i32,
        duration: Some(elapsed(started)),
        dry_run: request.dry_run,
        ..ApplyResult::default()
    }
}

/// The longest reachability proof that still ends before the confirm timer: the timer minus a
/// margin (a quarter of it, at least 15 s, at most a minute), never less than 5 s.
fn confirm_window(minutes: u32) -> Duration {
    let timer = Duration::from_secs(u64::from(minutes.max(1)) * 60);
    let margin = (timer / 4).clamp(Duration::from_secs(15), Duration::from_secs(60));
    timer.saturating_sub(margin).max(Duration::from_secs(5))
}

fn elapsed(started: Instant) -> prost_types::Duration {
    let d = started.elapsed();
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn duration_of(d: &Option<prost_types::Duration>) -> Option<Duration> {
    d.as_ref()
        .and_then(|d| {
            if d.seconds < 0 || d.nanos < 0 { None } else { Some(Duration::new(d.seconds as u64, d.nanos as u32)) }
        })
        .filter(|d| !d.is_zero())
}

impl Applier {
    /// An applier; `protected` is the configuration that always wins.
    pub fn new(backend: Arc<dyn Backend>, state: StateFile, config: ApplyConfig, protected: Tree) -> Self {
        Applier {
            backend,
            state,
            cached: std::sync::Mutex::new(None),
            config,
            protected,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the protected configuration from a file (either format).
    pub fn load_protected(path: Option<&std::path::Path>) -> Result<Tree, String> {
        let Some(path) = path else { return Ok(Tree::new()) };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::parse(&text).map(|c| c.tree).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The durable record.
    pub fn record(&self) -> AppliedRecord {
        match self.load_record() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the applied-revision record");
                AppliedRecord::default()
            }
        }
    }

    fn load_record(&self) -> Result<AppliedRecord, crate::state::StateError> {
        if let Some(r) = self.cached.lock().ok().and_then(|c| c.clone()) {
            return Ok(r);
        }
        let r = self.state.load()?;
        if let Ok(mut c) = self.cached.lock() {
            *c = Some(r.clone());
        }
        Ok(r)
    }

    fn save_record(&self, record: &AppliedRecord) -> Result<(), crate::state::StateError> {
        self.state.save(record)?;
        if let Ok(mut c) = self.cached.lock() {
            *c = Some(record.clone());
        }
        Ok(())
    }

    /// The revision the router runs, as recorded.
    pub fn last_applied(&self) -> Option<Revision> {
        self.record().revision.map(|r| r.to_proto())
    }

    /// The running configuration's digest (empty if it cannot be read).
    pub async fn running_digest(&self) -> String {
        self.backend.running().await.map(|t| digest(&t).to_string()).unwrap_or_default()
    }

    /// Applies one revision. Applies never overlap.
    pub async fn apply(&self, request: ApplyRequest, progress: &dyn Progress, reach: &dyn Reachability) -> ApplyResult {
        let _one_at_a_time = self.lock.lock().await;
        let started = Instant::now();
        let revision = request.revision.clone().unwrap_or_default();
        let deadline = duration_of(&request.deadline);
        let work = self.apply_inner(&request, &revision, progress, reach, started);
        let mut result = match deadline {
            Some(d) => match tokio::time::timeout(d, work).await {
                Ok(r) => r,
                Err(_) => {
                    fail(&request, FailureKind::Deadline, format!("the apply did not finish within {d:?}"), started)
                }
            },
            None => work.await,
        };
        result.duration = Some(elapsed(started));
        if result.running_digest.is_empty() {
            result.running_digest = self.running_digest().await;
        }
        result
    }

    async fn apply_inner(
        &self,
        request: &ApplyRequest,
        revision: &Revision,
        progress: &dyn Progress,
        reach: &dyn Reachability,
        started: Instant,
    ) -> ApplyResult {
        let record = match self.load_record() {
            Ok(r) => r,
            Err(e) => return fail(request, FailureKind::Internal, e.to_string(), started),
        };
        if !request.force && !request.dry_run && !revision.id.is_empty() {
            if record.revision.as_ref().is_some_and(|r| r.id == revision.id) {
                return ApplyResult {
                    request_id: request.request_id.clone(),
                    revision: Some(revision.clone()),
                    outcome: ApplyOutcome::NoChange as i32,
                    output: "revision already applied".to_owned(),
                    ..ApplyResult::default()
                };
            }
            if let Some(f) = record.last_failure.as_ref().filter(|f| f.revision_id == revision.id)
                && f.outcome == ApplyOutcome::RolledBack as i32
            {
                return ApplyResult {
                    request_id: request.request_id.clone(),
                    revision: Some(revision.clone()),
                    outcome: ApplyOutcome::RolledBack as i32,
                    error: format!("this revision was rolled back earlier: {}", f.error),
                    failure_kind: FailureKind::Connectivity as i32,
                    ..ApplyResult::default()
                };
            }
        }
        let report = |phase: ApplyPhase, message: &str, total: usize, done: usize| {
            progress.report(ApplyProgress {
                request_id: request.request_id.clone(),
                revision_id: revision.id.clone(),
                phase: phase as i32,
                message: message.to_owned(),
                commands_total: total as u32,
                commands_done: done as u32,
            })
        };
        // Progress is reported from the commit on: planning is quick, and a no-change answer
        // should cost one frame, not two.
        if let Err(e) = self.backend.ready().await {
            return fail(request, e.kind, e.message, started);
        }
        let desired = match Config::parse(&request.desired_config) {
            Ok(c) => c.tree,
            Err(e) => return fail(request, FailureKind::InvalidConfig, format!("desired configuration: {e}"), started),
        };
        // The router's own record is the truth of what it last applied (whoever delivered it);
        // the operator's copy only stands in when this agent has none (its state was lost, or
        // the router was configured without an agent before).
        let own = (record.revision.is_some() && !record.desired_config.is_empty())
            .then(|| Config::parse(&record.desired_config).ok().map(|c| c.tree))
            .flatten();
        let previous = match own {
            Some(tree) => Some(tree),
            None if !request.previous_config.is_empty() => match Config::parse(&request.previous_config) {
                Ok(c) => Some(c.tree),
                Err(e) => {
                    return fail(request, FailureKind::InvalidConfig, format!("previous configuration: {e}"), started);
                }
            },
            None => None,
        };
        let deletions = match parse_deletions(&request.deletions) {
            Ok(d) => d,
            Err(e) => return fail(request, FailureKind::InvalidConfig, e, started),
        };
        let running = match self.backend.running().await {
            Ok(t) => t,
            Err(e) => return fail(request, e.kind, e.message, started),
        };
        let policy = match ConfigPolicy::try_from(request.policy).unwrap_or(ConfigPolicy::Unspecified) {
            ConfigPolicy::Replace => Policy::Replace,
            _ => Policy::Merge,
        };
        let scopes: Vec<Vec<String>> =
            request.managed_scopes.iter().map(|s| path_from_str(s)).filter(|p| !p.is_empty()).collect();
        let mut protected = self.protected.clone();
        if policy == Policy::Replace {
            // Paths the agent keeps from the running config under Replace.
            let keep: Vec<Vec<String>> = self.config.keep_paths.iter().map(|s| path_from_str(s)).collect();
            vyos_config::merge(&mut protected, &running.mask(&keep), Schema::vyos());
        }
        let plan: Plan = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: previous.as_ref(),
            policy,
            managed_scopes: &scopes,
            deletions: &deletions,
            protected: &protected,
            schema: Schema::vyos(),
        });
        let commands: Vec<String> = plan.commands.iter().map(ToString::to_string).collect();
        let protected_paths: Vec<String> = plan.protected_paths.iter().map(|p| p.join(" ")).collect();
        let base = ApplyResult {
            request_id: request.request_id.clone(),
            revision: Some(revision.clone()),
            commands: commands.clone(),
            protected_paths,
            dry_run: request.dry_run,
            ..ApplyResult::default()
        };
        if request.dry_run {
            let outcome = if plan.is_noop() { ApplyOutcome::NoChange } else { ApplyOutcome::Applied };
            return ApplyResult { outcome: outcome as i32, running_digest: digest(&running).to_string(), ..base };
        }
        if plan.is_noop() {
            if let Err(e) = self.record_applied(request, revision, &record) {
                return fail(request, FailureKind::Internal, e, started);
            }
            let saved = request.save && self.save_if_needed().await;
            return ApplyResult {
                outcome: ApplyOutcome::NoChange as i32,
                output: "the running configuration already matches".to_owned(),
                running_digest: digest(&running).to_string(),
                saved,
                ..base
            };
        }
        let confirm = match &request.commit_confirm {
            Some(cc) => cc.enabled,
            None => self.config.commit_confirm,
        };
        let confirm_minutes = request
            .commit_confirm
            .as_ref()
            .map(|cc| cc.timeout_minutes)
            .filter(|m| *m > 0)
            .unwrap_or(self.config.confirm_minutes);
        let proof_deadline = request
            .commit_confirm
            .as_ref()
            .and_then(|cc| duration_of(&cc.proof_deadline))
            .unwrap_or(Duration::from_secs(self.config.proof_deadline_secs))
            // A proof that arrives after the router's timer fired proves nothing: stay well inside it.
            .min(confirm_window(confirm_minutes));
        report(ApplyPhase::Committing, "committing", plan.commands.len(), 0);
        let mut events = self.backend.events();
        let options = CommitOptions {
            confirm_minutes: confirm.then_some(confirm_minutes),
            comment: format!("vrouter revision {}", revision.id),
        };
        let commit = match self.backend.commit(&plan.commands, &options).await {
            Ok(c) => c,
            Err(e) => {
                self.cancel_timer(confirm).await;
                self.record_failure(revision, ApplyOutcome::Failed, &e.message);
                return ApplyResult {
                    outcome: ApplyOutcome::Failed as i32,
                    error: e.message,
                    failure_kind: e.kind as i32,
                    ..base
                };
            }
        };
        match commit {
            CommitReport::Failed { kind, output } => {
                // Nothing was committed: stop the timer rather than let it revert (or reboot).
                self.cancel_timer(confirm).await;
                self.record_failure(revision, ApplyOutcome::Failed, &output);
                ApplyResult {
                    outcome: ApplyOutcome::Failed as i32,
                    error: output.clone(),
                    output,
                    failure_kind: kind as i32,
                    ..base
                }
            }
            CommitReport::NoChange => {
                self.cancel_timer(confirm).await;
                if let Err(e) = self.record_applied(request, revision, &record) {
                    return fail(request, FailureKind::Internal, e, started);
                }
                ApplyResult { outcome: ApplyOutcome::NoChange as i32, ..base }
            }
            CommitReport::Partial { output, failed_paths } => {
                // Part of the change is live. Keep it if the router is still reachable (the
                // operator decides what to do next); otherwise let the timer revert it.
                if confirm {
                    report(ApplyPhase::Confirming, "proving reachability", plan.commands.len(), plan.commands.len());
                    if !reach.prove(proof_deadline).await {
                        return self.rolled_back(base, revision, &mut events, confirm_minutes, None).await;
                    }
                    if let Some(how) = self.reverted_meanwhile(&mut events, None).await {
                        return self.rolled_back(base, revision, &mut events, confirm_minutes, Some(how)).await;
                    }
                    let _ = self.backend.confirm().await;
                }
                self.record_failure(revision, ApplyOutcome::Partial, &output);
                ApplyResult {
                    outcome: ApplyOutcome::Partial as i32,
                    error: output.clone(),
                    output,
                    failure_kind: FailureKind::Commit as i32,
                    failed_paths,
                    ..base
                }
            }
            CommitReport::Committed { output } => {
                if confirm {
                    report(ApplyPhase::Confirming, "proving reachability", plan.commands.len(), plan.commands.len());
                    if !reach.prove(proof_deadline).await {
                        return self.rolled_back(base, revision, &mut events, confirm_minutes, None).await;
                    }
                    if let Some(how) = self.reverted_meanwhile(&mut events, Some(&plan.target)).await {
                        return self.rolled_back(base, revision, &mut events, confirm_minutes, Some(how)).await;
                    }
                    if let Err(e) = self.backend.confirm().await {
                        return ApplyResult {
                            outcome: ApplyOutcome::Failed as i32,
                            error: format!("confirm failed: {}", e.message),
                            failure_kind: e.kind as i32,
                            output,
                            ..base
                        };
                    }
                }
                let mut saved = false;
                if request.save {
                    report(ApplyPhase::Saving, "saving", plan.commands.len(), plan.commands.len());
                    saved = self.backend.save().await.is_ok();
                }
                if let Err(e) = self.record_applied(request, revision, &record) {
                    return ApplyResult { outcome: ApplyOutcome::Applied as i32, output, error: e, saved, ..base };
                }
                ApplyResult { outcome: ApplyOutcome::Applied as i32, output, saved, ..base }
            }
        }
    }

    /// Whether the commit was reverted while the reachability proof was under way (the proof
    /// then came from a session opened after the revert): a revert event arrived, or the running
    /// configuration no longer matches the target.
    async fn reverted_meanwhile(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<BackendEvent>,
        target: Option<&Tree>,
    ) -> Option<String> {
        loop {
            match events.try_recv() {
                Ok(BackendEvent::Reverted { how }) => return Some(how),
                Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        match (target, self.backend.running().await) {
            (Some(target), Ok(running)) if digest(&running) != digest(target) => {
                Some("the running configuration no longer holds the change".to_owned())
            }
            _ => None,
        }
    }

    async fn cancel_timer(&self, confirm: bool) {
        if confirm && let Err(e) = self.backend.confirm().await {
            tracing::warn!(error = %e, "could not stop the commit-confirm timer");
        }
    }

    /// The reachability proof failed: wait for the router's own revert, then report.
    async fn rolled_back(
        &self,
        base: ApplyResult,
        revision: &Revision,
        events: &mut tokio::sync::broadcast::Receiver<BackendEvent>,
        confirm_minutes: u32,
        already: Option<String>,
    ) -> ApplyResult {
        tracing::warn!(revision = %revision.id, "no proof of reachability after the commit; letting the router revert");
        let wait = Duration::from_secs(u64::from(confirm_minutes) * 60 + 120);
        let reverted = if already.is_some() {
            already
        } else {
            tokio::time::timeout(wait, async {
                loop {
                    match events.recv().await {
                        Ok(BackendEvent::Reverted { how }) => return Some(how),
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten()
        };
        let error = match &reverted {
            Some(how) => {
                format!("the router could not reach the operator after the commit; commit-confirm reverted it ({how})")
            }
            None => {
                "the router could not reach the operator after the commit; not confirmed, the router's timer reverts it"
                    .to_owned()
            }
        };
        self.record_failure(revision, ApplyOutcome::RolledBack, &error);
        ApplyResult {
            outcome: ApplyOutcome::RolledBack as i32,
            error,
            failure_kind: FailureKind::Connectivity as i32,
            ..base
        }
    }

    async fn save_if_needed(&self) -> bool {
        match self.backend.saved().await {
            Ok(true) => true,
            Ok(false) => self.backend.save().await.is_ok(),
            Err(_) => false,
        }
    }

    fn record_applied(
        &self,
        request: &ApplyRequest,
        revision: &Revision,
        record: &AppliedRecord,
    ) -> Result<(), String> {
        let unchanged = record.revision.as_ref().is_some_and(|r| r.id == revision.id && r.digest == revision.digest)
            && record.desired_config == request.desired_config
            && record.managed_scopes == request.managed_scopes
            && record.deletions == request.deletions
            && record.last_failure.as_ref().is_none_or(|f| f.revision_id != revision.id);
        if unchanged {
            // Nothing new to make durable (a forced re-apply that changed nothing).
            return Ok(());
        }
        let mut next = record.clone();
        next.revision = Some(RevisionRecord::from(revision));
        next.desired_config = request.desired_config.clone();
        next.policy = if request.policy == ConfigPolicy::Replace as i32 { "replace" } else { "merge" }.to_owned();
        next.managed_scopes = request.managed_scopes.clone();
        next.deletions = request.deletions.clone();
        next.applied_at = unix_now();
        if next.last_failure.as_ref().is_some_and(|f| f.revision_id == revision.id) {
            next.last_failure = None;
        }
        self.save_record(&next).map_err(|e| e.to_string())
    }

    fn record_failure(&self, revision: &Revision, outcome: ApplyOutcome, error: &str) {
        let mut record = self.record();
        record.last_failure = Some(FailureRecord {
            revision_id: revision.id.clone(),
            outcome: outcome as i32,
            error: error.to_owned(),
            at: unix_now(),
        });
        if let Err(e) = self.save_record(&record) {
            tracing::error!(error = %e, "cannot record the failed revision");
        }
    }

    /// Compares the running configuration with the last applied revision.
    pub async fn drift(&self, source: DriftSource) -> Result<Option<DriftReport>, BackendError> {
        let record = self.record();
        let Some(revision) = record.revision.clone() else { return Ok(None) };
        let desired = match Config::parse(&record.desired_config) {
            Ok(c) => c.tree,
            Err(e) => {
                return Err(BackendError::new(FailureKind::Internal, format!("recorded desired configuration: {e}")));
            }
        };
        let running = self.backend.running().await?;
        let policy = if record.policy == "replace" { Policy::Replace } else { Policy::Merge };
        let scopes: Vec<Vec<String>> =
            record.managed_scopes.iter().map(|s| path_from_str(s)).filter(|p| !p.is_empty()).collect();
        // Recorded by this agent after validation; a line that no longer parses is skipped.
        let deletions = parse_deletions(&record.deletions).unwrap_or_default();
        let p = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: None,
            policy,
            managed_scopes: &scopes,
            deletions: &deletions,
            protected: &self.protected,
            schema: Schema::vyos(),
        });
        let changed = p.diff.changed_paths();
        let paths: Vec<DriftPath> = changed
            .iter()
            .take(MAX_DRIFT_PATHS)
            .map(|(path, kind)| DriftPath {
                path: path.join(" "),
                // The diff goes from the router to the desired state: what the router has
                // extra was "removed" by the diff.
                kind: match kind {
                    ChangeKind::Removed => DriftKind::Added,
                    ChangeKind::Added => DriftKind::Removed,
                    ChangeKind::Changed => DriftKind::Changed,
                } as i32,
            })
            .collect();
        let unsaved = !self.backend.saved().await.unwrap_or(true);
        Ok(Some(DriftReport {
            at: Some(std::time::SystemTime::now().into()),
            revision: Some(revision.to_proto()),
            running_digest: digest(&running).to_string(),
            drifted: !p.is_noop(),
            paths,
            unsaved,
            source: source as i32,
            paths_omitted: changed.len().saturating_sub(MAX_DRIFT_PATHS) as u32,
        }))
    }
}

/// Parses the request's explicit deletions: each must be one `delete <path> [value]` line.
fn parse_deletions(lines: &[String]) -> Result<Vec<vyos_config::Command>, String> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| match vyos_config::commands::parse_line(line, i + 1) {
            Ok(c) if c.op == vyos_config::Op::Delete => Ok(c),
            Ok(_) => Err(format!("deletions[{i}]: {line:?} is not a delete command")),
            Err(e) => Err(format!("deletions[{i}]: {e}")),
        })
        .collect()
}
