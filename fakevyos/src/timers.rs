//! Time-driven behaviour on the fake clock: boot completion and commit-confirm expiry.
//!
//! Every invocation first calls [`prelude`], which fires what is due, so a timer that expired
//! while nobody looked fires at the next call of any tool (or at `fakevyos ctl ROOT tick`).

use std::fs::File;

use vyos_config::Tree;

use crate::archive;
use crate::commit::{self, Origin};
use crate::error::Result;
use crate::files;
use crate::layout::Root;
use crate::profile::Profile;
use crate::save;
use crate::session;
use crate::state::{self, Locked, RevertAction};

/// A revert commit whose hooks still have to run (after the state lock is released), with
/// the commit lock it holds.
#[derive(Debug)]
pub struct PendingHooks {
    _commit_lock: File,
    env: Vec<(String, String)>,
}

/// Fires what is due on the fake clock, then runs the hooks of a reload revert.
pub fn prelude(root: &Root) -> Result<()> {
    let mut locked = state::lock(root)?;
    let pending = advance(root, &mut locked)?;
    locked.save()?;
    drop(locked);
    if let Some(pending) = pending {
        let _output = commit::run_hooks(root, &pending.env)?;
    }
    Ok(())
}

/// Fires due timers under the state lock: a commit-confirm revert, then boot completion.
pub fn advance(root: &Root, locked: &mut Locked) -> Result<Option<PendingHooks>> {
    let mut pending = None;
    if let Some(confirm) = locked.state.confirm.clone()
        && locked.state.clock >= confirm.deadline
    {
        match confirm.action {
            RevertAction::Reboot => reboot(root, locked, "commit-confirm")?,
            RevertAction::Reload => pending = reload(root, locked)?,
        }
    }
    if locked.state.boot_complete_at.is_some_and(|at| locked.state.clock >= at) {
        complete_boot(root, locked)?;
    }
    Ok(pending)
}

/// Boot completes: `/tmp/vyos-config-status` appears with `0`.
pub fn complete_boot(root: &Root, locked: &mut Locked) -> Result<()> {
    locked.state.boot_complete_at = None;
    files::write_atomic(&root.boot_status(), b"0")?;
    state::record_event(root, locked.state.clock, "boot-complete", "")
}

/// A reboot: the saved config.boot (migrated if it has no footer) becomes the running
/// configuration, sessions and `/tmp` are wiped, the boot id changes, a pending
/// commit-confirm is gone, and the boot completes after the configured boot time.
pub fn reboot(root: &Root, locked: &mut Locked, reason: &str) -> Result<()> {
    let clock = locked.state.clock;
    let text = files::read_optional(&root.saved_config())?.unwrap_or_default();
    let tree = match save::parse_and_migrate(root, clock, &text, "/config/config.boot")? {
        Ok(tree) => tree,
        Err(message) => {
            state::record_event(root, clock, "boot-config-error", &message.replace('\n', " "))?;
            Tree::new()
        }
    };
    state::write_active(root, &tree)?;
    session::wipe_all(root)?;
    files::empty_dir(&root.tmp_dir())?;
    crate::keepalived::restart(root, &tree, clock)?;
    let boot_id = state::new_boot_id(root)?;
    locked.state.confirm = None;
    locked.state.boot_complete_at = locked.state.boot_time.map(|t| clock + t);
    state::record_event(root, clock, "rebooted", &format!("reason={reason} boot_id={boot_id}"))?;
    if locked.state.boot_complete_at.is_some_and(|at| clock >= at) {
        complete_boot(root, locked)?;
    }
    Ok(())
}

/// A reload revert (rolling's `revert_soft`): archive revision 0 is committed as the running
/// configuration. Waits (stays pending) while another commit holds the lock.
fn reload(root: &Root, locked: &mut Locked) -> Result<Option<PendingHooks>> {
    let clock = locked.state.clock;
    let Some(commit_lock) = commit::try_commit_lock(root)? else {
        return Ok(None);
    };
    locked.state.confirm = None;
    let Some(target) = archive::read_revision(root, 0)? else {
        state::record_event(root, clock, "reload-failed", "reason=no-archive-revision")?;
        return Ok(None);
    };
    let profile = Profile::load(root)?;
    let active = state::read_active(root)?;
    let computed = commit::compute(&active, &target, &locked.state);
    let origin = Origin {
        via: "config-mgmt".to_owned(),
        comment: "commit-confirm revert".to_owned(),
        user: "root".to_owned(),
        in_confirm: false,
    };
    let env = commit::apply(root, &profile, locked, &active, &computed, &origin)?;
    state::record_event(root, clock, "reloaded", &format!("status={}", computed.status.name()))?;
    Ok(Some(PendingHooks { _commit_lock: commit_lock, env }))
}
