//! The double's own state under `ROOT/fake/`: knobs set with `fakevyos ctl`, the fake clock,
//! pending timers, and the event log.
//!
//! Every invocation is a separate process; [`lock`] serializes them with an exclusive lock
//! on `ROOT/fake/state.lock`, held while the state and the configuration files are read and
//! written (never while sleeping or running hooks).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use vyos_config::{Tree, parse_tree, render_config};

use crate::error::{Error, Result, io_at};
use crate::files;
use crate::layout::Root;

/// How a pending commit-confirm reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevertAction {
    /// Reboot: the saved config.boot becomes the running configuration.
    Reboot,
    /// Reload: archive revision 0 is loaded and committed.
    Reload,
}

impl RevertAction {
    /// `reboot` or `reload`.
    pub fn name(self) -> &'static str {
        match self {
            RevertAction::Reboot => "reboot",
            RevertAction::Reload => "reload",
        }
    }
}

/// A running commit-confirm timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    /// Fake-clock second at which the revert happens.
    pub deadline: u64,
    /// The timeout given, in minutes.
    pub minutes: u64,
    /// What happens at the deadline.
    pub action: RevertAction,
}

/// An injected commit failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The subtree whose changes fail.
    pub path: Vec<String>,
    /// The conf-mode error text printed for it.
    pub message: String,
}

/// An injected commit warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The subtree whose changes print the warning.
    pub path: Vec<String>,
    /// The warning text.
    pub text: String,
}

/// Everything the double remembers besides the configuration files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The fake clock, in seconds since the Unix epoch.
    pub clock: u64,
    /// Extra time every commit takes (real milliseconds, commit lock held).
    pub latency_ms: u64,
    /// Injected per-subtree commit failures.
    pub failures: Vec<Failure>,
    /// Injected commit warnings.
    pub warnings: Vec<Warning>,
    /// The pending commit-confirm, if any.
    pub confirm: Option<Confirm>,
    /// Fake seconds a boot takes before `/tmp/vyos-config-status` appears; `None`: only
    /// `ctl boot-complete` completes it.
    pub boot_time: Option<u64>,
    /// When the current boot completes (fake clock), if it is still booting.
    pub boot_complete_at: Option<u64>,
    /// BGP session state per neighbour address for `vtysh`; key `*` is the default.
    pub bgp_state: BTreeMap<String, String>,
    /// Missing-environment warnings already recorded (`tool:VARIABLE`).
    pub env_warnings: BTreeSet<String>,
    /// The next this many `my_set` calls fail with a bare `Set failed`, as VyOS does briefly
    /// right after a commit while the lock is still held (vyos.md §9.1, T9218).
    #[serde(default)]
    pub transient_set_failures: u32,
    /// keepalived's numeric VRRP state per group name (key `*`: every group), for the fake
    /// keepalived's JSON dump.
    #[serde(default)]
    pub vrrp_state: BTreeMap<String, u32>,
}

impl State {
    /// The initial state: the clock at the real current time.
    pub fn new() -> State {
        State {
            clock: real_now(),
            latency_ms: 0,
            failures: Vec::new(),
            warnings: Vec::new(),
            confirm: None,
            boot_time: Some(60),
            boot_complete_at: None,
            bgp_state: BTreeMap::new(),
            env_warnings: BTreeSet::new(),
            transient_set_failures: 0,
            vrrp_state: BTreeMap::new(),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// The state, read under the exclusive state lock (released on drop).
#[derive(Debug)]
pub struct Locked {
    _lock: File,
    root: Root,
    /// The state; written back by [`Locked::save`].
    pub state: State,
}

/// Takes the state lock (waiting for it) and reads the state.
pub fn lock(root: &Root) -> Result<Locked> {
    let path = root.state_lock();
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Corrupt(format!("{} is not a fakevyos root (run `fakevyos install` first)", root.dir().display()))
        } else {
            io_at(&path)(e)
        }
    })?;
    file.lock().map_err(io_at(&path))?;
    let state_path = root.state_file();
    let state = match files::read_optional(&state_path)? {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("{}: {e}", state_path.display())))?
        }
        None => State::new(),
    };
    Ok(Locked { _lock: file, root: root.clone(), state })
}

impl Locked {
    /// Writes the state back.
    pub fn save(&self) -> Result<()> {
        store(&self.root, &self.state)
    }
}

/// Writes a state file (used by `install` before anything is locked).
pub fn store(root: &Root, state: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::Corrupt(e.to_string()))?;
    files::write_atomic(&root.state_file(), text.as_bytes())
}

/// Appends `<clock> <event> [details]` to the event log.
pub fn record_event(root: &Root, clock: u64, event: &str, details: &str) -> Result<()> {
    let path = root.events_file();
    let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_at(&path))?;
    let line = if details.is_empty() { format!("{clock} {event}\n") } else { format!("{clock} {event} {details}\n") };
    file.write_all(line.as_bytes()).map_err(io_at(&path))
}

/// The event log lines.
pub fn events(root: &Root) -> Result<Vec<String>> {
    Ok(files::read_optional(&root.events_file())?.unwrap_or_default().lines().map(str::to_owned).collect())
}

/// Reads the running configuration.
pub fn read_active(root: &Root) -> Result<Tree> {
    let path = root.active_file();
    let text = files::read(&path)?;
    parse_tree(&text).map_err(|e| Error::Corrupt(format!("{}: {}", path.display(), e.vyos_message())))
}

/// Writes the running configuration.
pub fn write_active(root: &Root, tree: &Tree) -> Result<()> {
    files::write_atomic(&root.active_file(), render_config(tree, Default::default()).as_bytes())
}

/// Reads the current boot id.
pub fn boot_id(root: &Root) -> Result<String> {
    Ok(files::read_optional(&root.boot_id_file())?.unwrap_or_default().trim().to_owned())
}

/// Writes a fresh random-looking boot id (UUID format).
pub fn new_boot_id(root: &Root) -> Result<String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(root.dir().as_os_str().as_encoded_bytes());
    hasher.update(boot_id(root).unwrap_or_default().as_bytes());
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("{}-{}-4{}-a{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32]);
    files::write_atomic(&root.boot_id_file(), format!("{id}\n").as_bytes())?;
    Ok(id)
}

fn real_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_events_append() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        files::create_dir(&root.fake_dir()).unwrap();
        let mut locked = lock(&root).unwrap();
        locked.state.latency_ms = 5;
        locked.state.confirm = Some(Confirm { deadline: 9, minutes: 1, action: RevertAction::Reload });
        locked.save().unwrap();
        drop(locked);
        let again = lock(&root).unwrap();
        assert_eq!(again.state.latency_ms, 5);
        assert_eq!(again.state.confirm.as_ref().map(|c| c.action), Some(RevertAction::Reload));
        record_event(&root, 1, "a", "").unwrap();
        record_event(&root, 2, "b", "x=y").unwrap();
        assert_eq!(events(&root).unwrap(), ["1 a", "2 b x=y"]);
    }

    #[test]
    fn boot_ids_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let a = new_boot_id(&root).unwrap();
        let b = new_boot_id(&root).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(boot_id(&root).unwrap(), b);
    }
}
