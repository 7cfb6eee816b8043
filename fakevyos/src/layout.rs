//! The fake root filesystem: where every file lives, and which tool sits at which path.
//!
//! Everything VyOS keeps at an absolute path lives at the same path under the fake root
//! (`/config/config.boot` → `ROOT/config/config.boot`). The double's own bookkeeping lives in
//! `ROOT/fake/`.

use std::path::{Component, Path, PathBuf};

/// The executables installed into a fake root: (basename, path relative to the root).
pub const TOOLS: &[(&str, &str)] = &[
    ("cli-shell-api", "bin/cli-shell-api"),
    ("my_set", "opt/vyatta/sbin/my_set"),
    ("my_delete", "opt/vyatta/sbin/my_delete"),
    ("my_comment", "opt/vyatta/sbin/my_comment"),
    ("my_commit", "opt/vyatta/sbin/my_commit"),
    ("my_discard", "opt/vyatta/sbin/my_discard"),
    ("vyos-save-config.py", "usr/libexec/vyos/vyos-save-config.py"),
    ("vyos-load-config.py", "usr/libexec/vyos/vyos-load-config.py"),
    ("vyos-merge-config.py", "usr/libexec/vyos/vyos-merge-config.py"),
    ("config-mgmt", "usr/bin/config-mgmt"),
    ("vtysh", "usr/bin/vtysh"),
    ("vyshim", "usr/sbin/vyshim"),
    ("keepalived", "usr/sbin/keepalived"),
];

/// A fake root directory and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// A root at a directory (made absolute against the current directory, `.`/`..` folded).
    pub fn new(dir: impl AsRef<Path>) -> Root {
        let dir = dir.as_ref();
        let absolute = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map(|cwd| cwd.join(dir)).unwrap_or_else(|_| dir.to_path_buf())
        };
        Root { dir: normalize(&absolute) }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path below the root; `rel` is written without the leading `/`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.join(rel.trim_start_matches('/'))
    }

    /// Resolves a file name given to a VyOS tool: absolute paths are taken under the root
    /// (`/config/x` → `ROOT/config/x`) unless they already point inside it; relative paths are
    /// taken as they are (relative to the caller's working directory).
    pub fn resolve_user_path(&self, name: &str) -> PathBuf {
        let path = Path::new(name);
        if path.is_absolute() {
            let normalized = normalize(path);
            if normalized.starts_with(&self.dir) { normalized } else { self.join(name) }
        } else {
            path.to_path_buf()
        }
    }

    /// The running configuration, a config.boot-style text file without footer.
    pub fn active_file(&self) -> PathBuf {
        self.join("opt/vyatta/config/active.boot")
    }

    /// `VYATTA_ACTIVE_CONFIGURATION_DIR` (exists, stays empty: the running config is
    /// [`Root::active_file`]).
    pub fn active_dir(&self) -> PathBuf {
        self.join("opt/vyatta/config/active")
    }

    /// Where sessions live: `new_config_SID`, `changes_only_SID`, `tmp_SID`.
    pub fn session_parent(&self) -> PathBuf {
        self.join("opt/vyatta/config/tmp")
    }

    /// The commit lock file.
    pub fn commit_lock(&self) -> PathBuf {
        self.join("opt/vyatta/config/.lock")
    }

    /// The saved configuration, `/config/config.boot`.
    pub fn saved_config(&self) -> PathBuf {
        self.join("config/config.boot")
    }

    /// User post-commit hooks.
    pub fn hooks_dir(&self) -> PathBuf {
        self.join("config/scripts/commit/post-hooks.d")
    }

    /// The commit archive directory.
    pub fn archive_dir(&self) -> PathBuf {
        self.join("config/archive")
    }

    /// `/tmp`, wiped on every fake reboot.
    pub fn tmp_dir(&self) -> PathBuf {
        self.join("tmp")
    }

    /// `/tmp/vyos-config-status`: present once the boot configuration is loaded.
    pub fn boot_status(&self) -> PathBuf {
        self.join("tmp/vyos-config-status")
    }

    /// `/tmp/commit-rev-entry`: the log entry of a commit made under commit-confirm.
    pub fn commit_rev_entry(&self) -> PathBuf {
        self.join("tmp/commit-rev-entry")
    }

    /// `/proc/sys/kernel/random/boot_id`.
    pub fn boot_id_file(&self) -> PathBuf {
        self.join("proc/sys/kernel/random/boot_id")
    }

    /// keepalived's pid file, `/run/keepalived/keepalived.pid`.
    pub fn keepalived_pid(&self) -> PathBuf {
        self.join("run/keepalived/keepalived.pid")
    }

    /// keepalived's JSON dump, `/tmp/keepalived.json`.
    pub fn keepalived_dump(&self) -> PathBuf {
        self.join("tmp/keepalived.json")
    }

    /// The double's own directory.
    pub fn fake_dir(&self) -> PathBuf {
        self.join("fake")
    }

    /// The double's state (knobs, clock, pending timers), JSON.
    pub fn state_file(&self) -> PathBuf {
        self.join("fake/state.json")
    }

    /// The lock serializing every state change between invocations.
    pub fn state_lock(&self) -> PathBuf {
        self.join("fake/state.lock")
    }

    /// The event log tests read: one `<clock> <event> [details]` line per event.
    pub fn events_file(&self) -> PathBuf {
        self.join("fake/events")
    }

    /// The version profile, JSON.
    pub fn profile_file(&self) -> PathBuf {
        self.join("fake/profile.json")
    }
}

/// Folds `.` and `..` components without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The tool an executable name stands for, if it is one of [`TOOLS`].
pub fn tool_for(basename: &str) -> Option<&'static (&'static str, &'static str)> {
    TOOLS.iter().find(|(name, _)| *name == basename)
}

/// Derives the fake root from how a tool was invoked: `argv[0]` ending in the tool's path
/// (`ROOT/opt/vyatta/sbin/my_set` → `ROOT`), else the `FAKEVYOS_ROOT` environment variable.
pub fn root_from_invocation(argv0: &str, rel: &str, env_root: Option<&str>) -> Option<Root> {
    let invoked = Root::new(argv0);
    let invoked = invoked.dir();
    let rel_path = Path::new(rel);
    let depth = rel_path.components().count();
    if invoked.ends_with(rel_path) {
        let mut root = invoked.to_path_buf();
        for _ in 0..depth {
            root.pop();
        }
        return Some(Root::new(root));
    }
    env_root.filter(|r| !r.is_empty()).map(Root::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_from_argv0() {
        let root = root_from_invocation("/x/y/opt/vyatta/sbin/my_set", "opt/vyatta/sbin/my_set", None).unwrap();
        assert_eq!(root.dir(), Path::new("/x/y"));
        let root = root_from_invocation("/x/./z/../y/bin/cli-shell-api", "bin/cli-shell-api", Some("/e")).unwrap();
        assert_eq!(root.dir(), Path::new("/x/y"));
        let root = root_from_invocation("my_set", "opt/vyatta/sbin/my_set", Some("/e")).unwrap();
        assert_eq!(root.dir(), Path::new("/e"));
        assert!(root_from_invocation("my_set", "opt/vyatta/sbin/my_set", None).is_none());
    }

    #[test]
    fn user_paths_resolve_under_root() {
        let root = Root::new("/r");
        assert_eq!(root.resolve_user_path("/config/x"), PathBuf::from("/r/config/x"));
        assert_eq!(root.resolve_user_path("/r/config/x"), PathBuf::from("/r/config/x"));
        assert_eq!(root.resolve_user_path("rel"), PathBuf::from("rel"));
    }
}
