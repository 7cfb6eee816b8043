//! Configuration sessions: `getSessionEnv`, `setupSession`, `inSession`, `sessionChanged`,
//! `teardownSession`, and the working configuration of a session.
//!
//! A session lives in `ROOT/opt/vyatta/config/tmp/new_config_SID/`: `working.boot` (the working
//! configuration), `base.boot` (the running configuration it was last based on), `.modified`
//! (set by a change, like VyOS's marker: `sessionChanged` answers from it) and `.unsaved`.
//! As in VyOS, where a session is an overlay over the running configuration, a session whose
//! base is no longer the running configuration is rebased on read: its own changes (the diff
//! base → working) are replayed onto the new running configuration.
//!
//! Tools find their session from the environment `getSessionEnv` printed:
//! `VYATTA_TEMP_CONFIG_DIR` (which names the SID) and `VYATTA_CONFIG_TMP`, both under the root.

use std::path::{Path, PathBuf};

use vyos_config::{Schema as Hints, Tree, apply_commands, diff, parse_tree, render_config};

use crate::ctx::Ctx;
use crate::error::{Error, Output, Result};
use crate::files;
use crate::layout::Root;
use crate::schema::Schema;
use crate::state;

/// The text `cli-shell-api getSessionEnv SID` prints (no trailing newline), with the root
/// prefixed to every path: VyOS's text, including its missing `;` after the active dir.
pub fn env_text(root: &Root, sid: &str) -> String {
    let r = root.dir().display();
    format!(
        "declare -x VYATTA_EDIT_LEVEL=/; declare -x VYATTA_TEMPLATE_LEVEL=/; umask 002; {{ \
         declare -x -r VYATTA_ACTIVE_CONFIGURATION_DIR={r}/opt/vyatta/config/active \
         declare -x -r VYATTA_CHANGES_ONLY_DIR={r}/opt/vyatta/config/tmp/changes_only_{sid}; \
         declare -x -r VYATTA_TEMP_CONFIG_DIR={r}/opt/vyatta/config/tmp/new_config_{sid}; \
         declare -x -r VYATTA_CONFIG_TMP={r}/opt/vyatta/config/tmp/tmp_{sid}; \
         declare -x -r VYATTA_CONFIG_TEMPLATE={r}/opt/vyatta/share/vyatta-cfg/templates; }} >&/dev/null || true"
    )
}

/// A session named by the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session id.
    pub sid: String,
    /// `new_config_SID`.
    pub dir: PathBuf,
}

/// The working configuration of a session and the running configuration it is based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Working {
    /// The running configuration the working one was based on.
    pub base: Tree,
    /// The working configuration.
    pub tree: Tree,
}

fn valid_sid(sid: &str) -> bool {
    !sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn same_dir(a: &Path, b: &Path) -> bool {
    if Root::new(a).dir() == Root::new(b).dir() {
        return true;
    }
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The session the environment names, or why there is none. The directory need not exist.
pub fn from_env(ctx: &Ctx) -> std::result::Result<Session, String> {
    let parent = ctx.root.session_parent();
    let temp = ctx.var("VYATTA_TEMP_CONFIG_DIR").ok_or("VYATTA_TEMP_CONFIG_DIR is not set")?;
    let temp = Path::new(temp);
    let sid = temp
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("new_config_"))
        .filter(|s| valid_sid(s))
        .ok_or_else(|| {
            format!("VYATTA_TEMP_CONFIG_DIR={} does not name a new_config_<SID> directory", temp.display())
        })?;
    if !temp.parent().is_some_and(|p| same_dir(p, &parent)) {
        return Err(format!(
            "VYATTA_TEMP_CONFIG_DIR={} is not under {} (use the paths getSessionEnv prints)",
            temp.display(),
            parent.display()
        ));
    }
    let tmp = ctx.var("VYATTA_CONFIG_TMP").ok_or("VYATTA_CONFIG_TMP is not set")?;
    let expected = parent.join(format!("tmp_{sid}"));
    if !same_dir(Path::new(tmp), &expected) {
        return Err(format!("VYATTA_CONFIG_TMP={tmp} does not match the session (expected {})", expected.display()));
    }
    Ok(Session { sid: sid.to_owned(), dir: parent.join(format!("new_config_{sid}")) })
}

/// The session for a tool that needs one, or VyOS's "without config session" failure.
pub fn require(ctx: &Ctx, function: &str) -> std::result::Result<Session, Output> {
    let reason = match from_env(ctx) {
        Ok(session) if session.dir.is_dir() => return Ok(session),
        Ok(session) => {
            format!("session directory {} does not exist (setupSession not run, or wiped)", session.dir.display())
        }
        Err(reason) => reason,
    };
    Err(Output::fail(format!("calling {function}() without config session\nfakevyos: {reason}\n")))
}

impl Session {
    fn working_file(&self) -> PathBuf {
        self.dir.join("working.boot")
    }

    fn base_file(&self) -> PathBuf {
        self.dir.join("base.boot")
    }

    fn modified_marker(&self) -> PathBuf {
        self.dir.join(".modified")
    }

    fn unsaved_marker(&self) -> PathBuf {
        self.dir.join(".unsaved")
    }

    /// Reads the working configuration, rebased onto the running one if that moved.
    pub fn load(&self, root: &Root, schema: &Schema) -> Result<Working> {
        let active = state::read_active(root)?;
        let base = read_tree(&self.base_file())?;
        let tree = read_tree(&self.working_file())?;
        if base == active {
            return Ok(Working { base, tree });
        }
        let rebased = rebase(&base, &tree, &active, schema);
        let working = Working { base: active, tree: rebased };
        self.store(&working)?;
        Ok(working)
    }

    /// Writes the working configuration and its base.
    pub fn store(&self, working: &Working) -> Result<()> {
        files::write_atomic(&self.base_file(), render_config(&working.base, Default::default()).as_bytes())?;
        files::write_atomic(&self.working_file(), render_config(&working.tree, Default::default()).as_bytes())
    }

    /// Whether the session holds changes (`sessionChanged`).
    pub fn changed(&self) -> bool {
        self.modified_marker().exists()
    }

    /// Sets or clears the change marker.
    pub fn set_changed(&self, changed: bool) -> Result<()> {
        set_marker(&self.modified_marker(), changed)
    }

    /// Whether the session committed something not yet saved (`sessionUnsaved`).
    pub fn unsaved(&self) -> bool {
        self.unsaved_marker().exists()
    }

    /// Sets or clears the unsaved marker.
    pub fn set_unsaved(&self, unsaved: bool) -> Result<()> {
        set_marker(&self.unsaved_marker(), unsaved)
    }
}

fn set_marker(path: &Path, on: bool) -> Result<()> {
    if on { files::write_atomic(path, b"") } else { files::remove_file(path) }
}

fn read_tree(path: &Path) -> Result<Tree> {
    let text = files::read(path)?;
    parse_tree(&text).map_err(|e| Error::Corrupt(format!("{}: {}", path.display(), e.vyos_message())))
}

/// Replays the changes `base → working` onto `active`, command by command; a change that no
/// longer applies (deleting what is gone) is dropped.
pub fn rebase(base: &Tree, working: &Tree, active: &Tree, schema: &Schema) -> Tree {
    let mut out = active.clone();
    let hints = Hints::additive();
    for command in diff(base, working).commands() {
        let _ignored = apply_commands(&mut out, std::slice::from_ref(&command), &hints);
    }
    mark_tags(&mut out, schema);
    out
}

/// Sets the tag flag on every node the schema calls a tag node.
pub fn mark_tags(tree: &mut Tree, schema: &Schema) {
    let mut tags: Vec<Vec<String>> = Vec::new();
    let mut prefix = Vec::new();
    tree.root().walk(&mut prefix, &mut |path, node| {
        if !node.is_tag() && !node.is_leaf() && schema.is_tag(path) {
            tags.push(path.iter().map(|s| (*s).to_owned()).collect());
        }
    });
    for path in tags {
        if let Some(node) = tree.get_mut(&path) {
            node.set_tag(true);
        }
    }
}

/// The three directories of a session.
fn session_dirs(root: &Root, sid: &str) -> [PathBuf; 3] {
    let parent = root.session_parent();
    [
        parent.join(format!("new_config_{sid}")),
        parent.join(format!("changes_only_{sid}")),
        parent.join(format!("tmp_{sid}")),
    ]
}

/// `cli-shell-api setupSession`: creates the session as a copy of the running configuration
/// (an existing session is kept as it is).
pub fn setup(ctx: &Ctx) -> Result<Output> {
    let session = match from_env(ctx) {
        Ok(session) => session,
        Err(reason) => return Ok(Output::fail(format!("Cannot set up a config session: {reason}\n"))),
    };
    let mut locked = state::lock(&ctx.root)?;
    ctx.note_rolling_env(&mut locked)?;
    locked.save()?;
    if session.dir.is_dir() {
        return Ok(Output::ok(""));
    }
    for dir in session_dirs(&ctx.root, &session.sid) {
        files::create_dir(&dir)?;
    }
    let active = state::read_active(&ctx.root)?;
    session.store(&Working { base: active.clone(), tree: active })?;
    Ok(Output::ok(""))
}

/// `cli-shell-api teardownSession`.
pub fn teardown(ctx: &Ctx) -> Result<Output> {
    let session = match require(ctx, "teardownSession") {
        Ok(session) => session,
        Err(out) => return Ok(out),
    };
    let _locked = state::lock(&ctx.root)?;
    for dir in session_dirs(&ctx.root, &session.sid) {
        files::remove_dir(&dir)?;
    }
    Ok(Output::ok(""))
}

/// `cli-shell-api inSession`: exit 0 when the environment names an existing session.
pub fn in_session(ctx: &Ctx) -> Output {
    Output::status(from_env(ctx).is_ok_and(|s| s.dir.is_dir()))
}

/// `cli-shell-api sessionChanged`: exit 0 when the session holds changes.
pub fn session_changed(ctx: &Ctx) -> Result<Output> {
    let _locked = state::lock(&ctx.root)?;
    Ok(Output::status(from_env(ctx).is_ok_and(|s| s.dir.is_dir() && s.changed())))
}

/// Removes every session (a reboot).
pub fn wipe_all(root: &Root) -> Result<()> {
    files::empty_dir(&root.session_parent())
}

/// The ids of the sessions that exist.
pub fn list(root: &Root) -> Result<Vec<String>> {
    let parent = root.session_parent();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(crate::error::io_at(&parent)(e)),
    };
    for entry in entries.flatten() {
        if let Some(sid) = entry.file_name().to_str().and_then(|n| n.strip_prefix("new_config_")) {
            out.push(sid.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Family;

    #[test]
    fn env_text_is_vyos_text_with_root() {
        let root = Root::new("/r");
        assert_eq!(
            env_text(&root, "42"),
            "declare -x VYATTA_EDIT_LEVEL=/; declare -x VYATTA_TEMPLATE_LEVEL=/; umask 002; { declare -x -r \
             VYATTA_ACTIVE_CONFIGURATION_DIR=/r/opt/vyatta/config/active declare -x -r \
             VYATTA_CHANGES_ONLY_DIR=/r/opt/vyatta/config/tmp/changes_only_42; declare -x -r \
             VYATTA_TEMP_CONFIG_DIR=/r/opt/vyatta/config/tmp/new_config_42; declare -x -r \
             VYATTA_CONFIG_TMP=/r/opt/vyatta/config/tmp/tmp_42; declare -x -r \
             VYATTA_CONFIG_TEMPLATE=/r/opt/vyatta/share/vyatta-cfg/templates; } >&/dev/null || true"
        );
    }

    #[test]
    fn rebase_replays_session_changes_onto_new_active() {
        let schema = Schema::for_family(Family::Rolling).unwrap();
        let base = parse_tree("system {\n    host-name \"a\"\n}\n").unwrap();
        let working =
            parse_tree("interfaces {\n    dummy dum0 {\n    }\n}\nsystem {\n    host-name \"b\"\n}\n").unwrap();
        let active = parse_tree("service {\n    ssh {\n    }\n}\nsystem {\n    host-name \"a\"\n}\n").unwrap();
        let out = rebase(&base, &working, &active, &schema);
        assert_eq!(
            render_config(&out, Default::default()),
            "interfaces {\n    dummy dum0 {\n    }\n}\nservice {\n    ssh\n}\nsystem {\n    host-name \"b\"\n}\n"
        );
    }
}
