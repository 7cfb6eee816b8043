//! `my_commit`: the commit algorithm, its lock, injected failures and warnings, the archive
//! and the post-commit hooks.
//!
//! As in VyOS (vyatta-cfg `doCommit`): the commit lock `ROOT/opt/vyatta/config/.lock` is taken
//! without waiting (held → `Configuration system temporarily locked due to another commit in
//! progress`, exit 1). Subtrees are committed independently: a subtree with an injected failure
//! (`ctl fail PATH`) prints its error and `[[PATH]] failed` and stays pending in the session;
//! the others go into the running configuration (PARTIAL); `Commit failed` ends the output and
//! the exit code is 1. Then revision archiving (skipped under `IN_COMMIT_CONFIRM=t`, which
//! writes `/tmp/commit-rev-entry` instead) and the user hooks in
//! `/config/scripts/commit/post-hooks.d` with `COMMIT_STATUS` = SUCCESS / PARTIAL / FAILURE.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use vyos_config::Tree;

use crate::archive;
use crate::ctx::Ctx;
use crate::error::{Output, Result, io_at};
use crate::files;
use crate::layout::Root;
use crate::profile::Profile;
use crate::session::{self, Working};
use crate::state::{self, Locked, State};

/// VyOS's message when the commit lock is held.
pub const LOCKED: &str = "Configuration system temporarily locked due to another commit in progress\n";

/// The overall result of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every subtree was committed.
    Success,
    /// Some subtrees were committed, others failed.
    Partial,
    /// Nothing was committed.
    Failure,
}

impl Status {
    /// `SUCCESS`, `PARTIAL` or `FAILURE` (the hooks' `COMMIT_STATUS`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Partial => "PARTIAL",
            Status::Failure => "FAILURE",
        }
    }
}

/// A commit worked out before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The running configuration after the commit.
    pub new_active: Tree,
    /// Failed subtrees with their error text.
    pub failed: Vec<(String, String)>,
    /// Warnings to print.
    pub warnings: Vec<String>,
    /// The overall result.
    pub status: Status,
}

/// Who commits, for the archive and the hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `COMMIT_VIA` (VyOS's default `other`).
    pub via: String,
    /// `COMMIT_COMMENT` (VyOS's default `commit`).
    pub comment: String,
    /// The user recorded in the log.
    pub user: String,
    /// `IN_COMMIT_CONFIRM=t`: write `/tmp/commit-rev-entry` instead of archiving.
    pub in_confirm: bool,
}

impl Origin {
    /// The origin an environment describes.
    pub fn from_env(ctx: &Ctx) -> Origin {
        let user = ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|v| ctx.var(v)).unwrap_or("root");
        Origin {
            via: ctx.var("COMMIT_VIA").filter(|v| !v.is_empty()).unwrap_or("other").to_owned(),
            comment: ctx.var("COMMIT_COMMENT").filter(|v| !v.is_empty()).unwrap_or("commit").to_owned(),
            user: user.to_owned(),
            in_confirm: ctx.var("IN_COMMIT_CONFIRM") == Some("t"),
        }
    }
}

/// Works out which subtrees commit and which fail.
pub fn compute(active: &Tree, working: &Tree, state: &State) -> Computed {
    let mut new_active = working.clone();
    let mut failed = Vec::new();
    for failure in &state.failures {
        if active.get(&failure.path) != working.get(&failure.path) {
            restore(&mut new_active, active, &failure.path);
            failed.push((failure.path.join(" "), failure.message.clone()));
        }
    }
    let warnings = state
        .warnings
        .iter()
        .filter(|w| active.get(&w.path) != new_active.get(&w.path))
        .map(|w| w.text.clone())
        .collect();
    let status = if failed.is_empty() {
        Status::Success
    } else if new_active != *active {
        Status::Partial
    } else {
        Status::Failure
    };
    Computed { new_active, failed, warnings, status }
}

/// Puts the subtree at `path` of `old` back into `new` (removing it if `old` has none).
fn restore(new: &mut Tree, old: &Tree, path: &[String]) {
    let Some((_, parents)) = path.split_last() else { return };
    if let Some(node) = old.get(path) {
        let mut src = old.root();
        let mut dst = new.root_mut();
        for name in parents {
            let Some(s) = src.child(name) else { return };
            src = s;
            if dst.child(name).is_none() {
                dst.insert_child(s.shallow_clone());
            }
            let Some(d) = dst.child_mut(name) else { return };
            dst = d;
        }
        dst.insert_child(node.clone());
    } else {
        if new.exists(path) {
            let _ignored = new.delete(path, None);
        }
        // Drop ancestors the change created and that are now empty.
        let mut p = path.to_vec();
        while p.pop().is_some() && !p.is_empty() {
            if old.exists(&p) {
                break;
            }
            match new.get(&p) {
                Some(n) if n.is_leaf() && n.values().is_empty() => {
                    let _ignored = new.delete(&p, None);
                }
                Some(_) => break,
                None => {}
            }
        }
    }
}

/// The text a commit prints: each failed subtree, the warnings, `Commit failed`.
pub fn report(computed: &Computed) -> String {
    let mut out = String::new();
    for (path, message) in &computed.failed {
        out.push_str(&format!("\n{}\n\n[[{path}]] failed\n", message.trim_end()));
    }
    for warning in &computed.warnings {
        out.push_str(&format!("WARNING: {warning}\n"));
    }
    if !computed.failed.is_empty() {
        out.push_str("Commit failed\n");
    }
    out
}

/// Writes a computed commit: the running configuration, the event, the archive (or the
/// commit-confirm log entry). The caller holds the state lock. Returns the hooks' environment.
pub fn apply(
    root: &Root,
    profile: &Profile,
    locked: &Locked,
    active: &Tree,
    computed: &Computed,
    origin: &Origin,
) -> Result<Vec<(String, String)>> {
    let clock = locked.state.clock;
    let changed = computed.new_active != *active;
    if changed {
        state::write_active(root, &computed.new_active)?;
        crate::keepalived::sync(root, &computed.new_active, clock)?;
    }
    let failed: Vec<&str> = computed.failed.iter().map(|(p, _)| p.as_str()).collect();
    let mut details = format!("status={} via={} user={}", computed.status.name(), origin.via, origin.user);
    if !failed.is_empty() {
        details.push_str(&format!(" failed=[{}]", failed.join(",")));
    }
    state::record_event(root, clock, "commit", &details)?;
    if changed && let Some(limit) = archive::revisions_limit(&computed.new_active) {
        let entry = archive::log_entry(clock, &origin.user, &origin.via, &origin.comment);
        if origin.in_confirm {
            files::write_atomic(&root.commit_rev_entry(), format!("{entry}\n").as_bytes())?;
        } else {
            archive::archive(root, profile, &computed.new_active, &entry, limit)?;
        }
    }
    Ok(vec![
        ("COMMIT_STATUS".to_owned(), computed.status.name().to_owned()),
        ("COMMIT_VIA".to_owned(), origin.via.clone()),
        ("COMMIT_COMMENT".to_owned(), origin.comment.clone()),
        ("FAKEVYOS_ROOT".to_owned(), root.dir().display().to_string()),
    ])
}

/// Runs the user post-commit hooks (`run-parts` rules: executable files whose names are
/// letters, digits, `_` and `-`, in name order) and returns their combined output.
pub fn run_hooks(root: &Root, env: &[(String, String)]) -> Result<String> {
    let dir = root.hooks_dir();
    let mut hooks = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(io_at(&dir)(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let runnable = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let executable = entry.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if runnable && executable {
            hooks.push((name, entry.path()));
        }
    }
    hooks.sort();
    let mut out = String::new();
    for (name, path) in hooks {
        match Command::new(&path).envs(env.iter().map(|(k, v)| (k, v))).output() {
            Ok(result) => {
                out.push_str(&String::from_utf8_lossy(&result.stdout));
                out.push_str(&String::from_utf8_lossy(&result.stderr));
                if !result.status.success() {
                    let code = result.status.code().unwrap_or(-1);
                    out.push_str(&format!("run-parts: {} exited with return code {code}\n", dir.join(name).display()));
                }
            }
            Err(e) => out.push_str(&format!("run-parts: failed to exec {}: {e}\n", path.display())),
        }
    }
    Ok(out)
}

/// Takes the commit lock without waiting; `None` when another process holds it.
pub fn try_commit_lock(root: &Root) -> Result<Option<File>> {
    let path = root.commit_lock();
    let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io_at(&path)(e)),
    }
}

/// `my_commit`.
pub fn my_commit(ctx: &Ctx) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    let session = match session::require(ctx, "doCommit") {
        Ok(session) => session,
        Err(out) => return Ok(out),
    };
    let Some(_commit_lock) = try_commit_lock(&ctx.root)? else {
        return Ok(Output::fail(LOCKED));
    };
    let schema = ctx.schema()?;
    let latency = {
        let mut locked = state::lock(&ctx.root)?;
        ctx.note_rolling_env(&mut locked)?;
        state::record_event(&ctx.root, locked.state.clock, "commit-started", &format!("session={}", session.sid))?;
        if !ctx.root.boot_status().exists() {
            state::record_event(&ctx.root, locked.state.clock, "commit-before-boot-complete", "")?;
        }
        locked.save()?;
        let working = session.load(&ctx.root, &schema)?;
        if working.tree == working.base {
            session.set_changed(false)?;
            return Ok(Output::ok("No configuration changes to commit\n"));
        }
        locked.state.latency_ms
    };
    if latency > 0 {
        std::thread::sleep(Duration::from_millis(latency));
    }
    let origin = Origin::from_env(ctx);
    let (computed, hook_env) = {
        let locked = state::lock(&ctx.root)?;
        let working = session.load(&ctx.root, &schema)?;
        let active = working.base.clone();
        if working.tree == active {
            session.set_changed(false)?;
            return Ok(Output::ok("No configuration changes to commit\n"));
        }
        let computed = compute(&active, &working.tree, &locked.state);
        let hook_env = apply(&ctx.root, &ctx.profile, &locked, &active, &computed, &origin)?;
        let pending = working.tree != computed.new_active;
        session.store(&Working { base: computed.new_active.clone(), tree: working.tree })?;
        session.set_changed(pending)?;
        if computed.status != Status::Failure {
            session.set_unsaved(true)?;
        }
        (computed, hook_env)
    };
    let mut text = report(&computed);
    let mut env: Vec<(String, String)> = ctx.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.extend(hook_env);
    text.push_str(&run_hooks(&ctx.root, &env)?);
    Ok(Output { code: if computed.failed.is_empty() { 0 } else { 1 }, stdout: text, stderr: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Failure;
    use vyos_config::{parse_tree, render_config};

    fn fail(path: &str) -> Failure {
        Failure { path: path.split_whitespace().map(str::to_owned).collect(), message: "boom".into() }
    }

    #[test]
    fn partial_keeps_failed_subtree_as_before() {
        let active = parse_tree("system {\n    host-name \"a\"\n}\n").unwrap();
        let working = parse_tree(
            "interfaces {\n    dummy dum0 {\n        address \"10.0.0.1/32\"\n    }\n}\nsystem {\n    host-name \"b\"\n}\n",
        )
        .unwrap();
        let state = State { failures: vec![fail("interfaces dummy dum0")], ..State::new() };
        let c = compute(&active, &working, &state);
        assert_eq!(c.status, Status::Partial);
        assert_eq!(render_config(&c.new_active, Default::default()), "system {\n    host-name \"b\"\n}\n");
        assert_eq!(report(&c), "\nboom\n\n[[interfaces dummy dum0]] failed\nCommit failed\n");
    }

    #[test]
    fn all_failed_is_failure_and_untouched_failures_do_not_fire() {
        let active = parse_tree("system {\n    host-name \"a\"\n}\n").unwrap();
        let working = parse_tree("system {\n    host-name \"b\"\n}\n").unwrap();
        let state = State { failures: vec![fail("system"), fail("protocols bgp")], ..State::new() };
        let c = compute(&active, &working, &state);
        assert_eq!(c.status, Status::Failure);
        assert_eq!(c.new_active, active);
        assert_eq!(c.failed.len(), 1);
    }

    #[test]
    fn restoring_a_deleted_subtree_rebuilds_ancestors() {
        let active = parse_tree("protocols {\n    bgp {\n        system-as \"65001\"\n    }\n}\n").unwrap();
        let working = Tree::new();
        let state = State { failures: vec![fail("protocols bgp")], ..State::new() };
        let c = compute(&active, &working, &state);
        assert_eq!(c.status, Status::Failure);
        assert_eq!(c.new_active, active);
    }
}
