//! Executing command lists on a tree, with VyOS's semantics.
//!
//! - `set <path>` creates the path (intermediate nodes included); setting something that exists
//!   succeeds without change (VyOS prints "already exists" and exits 0).
//! - `set <path> 'v'` on a leaf that has other values replaces them, unless the schema says the
//!   leaf is multi-valued or the leaf was created earlier in the same list (a list describing a
//!   configuration repeats a leaf once per value, as `show configuration commands` does).
//! - `delete <path>` removes the subtree; `delete <path> 'v'` removes one value (the node when it
//!   was the last). Deleting what does not exist is an error.
//! - `comment <path> 'text'` sets the comment of an existing node; `''` clears it.
//!
//! A trailing unquoted word that names no node but matches the value position of an existing
//! leaf (`set system host-name r2` where `host-name` holds a value) is read as the value, as
//! VyOS's schema would.
//!
//! Application is atomic: on the first error nothing is changed and the error names the line.

use crate::commands::{Command, Op};
use crate::schema::Schema;
use crate::tree::{EditError, Tree, ValueBehaviour};

/// A command that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// The reason is part of the message and deliberately not the error's `source()`: a chain printer
// (anyhow's `{:#}`) would print it twice.
#[error("{}`{command}`: {reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ApplyError {
    /// Source line of the command, when it came from text.
    pub line: Option<usize>,
    /// The command as text.
    pub command: String,
    /// Why it failed.
    pub reason: EditError,
}

/// What applying a command list did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Whether the tree changed.
    pub changed: bool,
    /// Notes such as "already exists", one per command that changed nothing.
    pub warnings: Vec<String>,
}

/// Applies commands to a tree, all or nothing.
pub fn apply_commands(tree: &mut Tree, commands: &[Command], schema: &Schema) -> Result<ApplyReport, ApplyError> {
    let mut work = tree.clone();
    let mut report = ApplyReport::default();
    let tag_hint = |p: &[&str]| schema.is_tag(p);
    for cmd in commands {
        let fail = |reason: EditError| ApplyError {
            line: (cmd.line > 0).then_some(cmd.line),
            command: cmd.to_string(),
            reason,
        };
        match cmd.op {
            Op::Set => {
                let (path, value) = resolve_value(&work, cmd);
                let has_values = value.is_some() && work.get(path).is_some_and(|n| !n.values().is_empty());
                // Replace only a single-value leaf that held values before this list; values set
                // earlier in the list (or on multi-value leaves) accumulate.
                let behaviour = if has_values && tree.get(path).is_some_and(|n| !n.values().is_empty()) {
                    let words: Vec<&str> = path.iter().map(String::as_str).collect();
                    if schema.is_multi(&words) { ValueBehaviour::Add } else { ValueBehaviour::Replace }
                } else {
                    ValueBehaviour::Add
                };
                let changed = work.set(path, value, behaviour, &tag_hint).map_err(fail)?;
                if changed {
                    report.changed = true;
                } else {
                    report.warnings.push(format!("Configuration path: [{}] already exists", cmd.argv().join(" ")));
                }
            }
            Op::Delete => {
                if work.exists(&cmd.path) || cmd.value.is_some() {
                    work.delete(&cmd.path, cmd.value.as_deref()).map_err(fail)?;
                } else {
                    // `delete <leaf> value` written without quotes.
                    match cmd.path.split_last() {
                        Some((last, parent)) if work.values(parent).iter().any(|v| v == last) => {
                            work.delete(parent, Some(last)).map_err(fail)?;
                        }
                        _ => return Err(fail(EditError::NotFound(cmd.path.join(" ")))),
                    }
                }
                report.changed = true;
            }
            Op::Comment => {
                let text = cmd.value.as_deref().filter(|t| !t.is_empty());
                let before = work.get(&cmd.path).and_then(|n| n.comment().map(str::to_owned));
                work.set_comment(&cmd.path, text).map_err(fail)?;
                if before.as_deref() != text {
                    report.changed = true;
                }
            }
        }
    }
    *tree = work;
    Ok(report)
}

/// Reads a trailing unquoted word as a value when it sits where an existing leaf's value goes.
/// Splits a trailing value off a path given without one (`set a b VALUE` parsed as a path),
/// when the tree has a valued leaf at the parent.
pub(crate) fn resolve_value<'c>(tree: &Tree, cmd: &'c Command) -> (&'c [String], Option<&'c str>) {
    if cmd.value.is_none()
        && !tree.exists(&cmd.path)
        && let Some((last, parent)) = cmd.path.split_last()
        && let Some(node) = tree.get(parent)
        && node.is_leaf()
        && !node.values().is_empty()
    {
        return (parent, Some(last.as_str()));
    }
    (&cmd.path, cmd.value.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::parse_commands;
    use crate::parse::parse_tree;

    fn run(base: &str, cmds: &str) -> Result<Tree, ApplyError> {
        let mut t = parse_tree(base).unwrap();
        apply_commands(&mut t, &parse_commands(cmds).unwrap(), Schema::vyos())?;
        Ok(t)
    }

    #[test]
    fn set_replaces_single_and_appends_multi() {
        let t = run(
            "system {\n    host-name a\n    name-server 1.1.1.1\n}\n",
            "set system host-name 'b'\nset system name-server '8.8.8.8'\n",
        )
        .unwrap();
        assert_eq!(t.values(&["system", "host-name"]), ["b"]);
        assert_eq!(t.values(&["system", "name-server"]), ["1.1.1.1", "8.8.8.8"]);
    }

    #[test]
    fn repeated_leaf_in_one_list_appends() {
        let t = run("", "set a b 'x'\nset a b 'y'\n").unwrap();
        assert_eq!(t.values(&["a", "b"]), ["x", "y"]);
    }

    #[test]
    fn unquoted_trailing_word_on_existing_leaf_is_a_value() {
        let t = run("system {\n    host-name a\n}\n", "set system host-name b\n").unwrap();
        assert_eq!(t.values(&["system", "host-name"]), ["b"]);
        let t = run("system {\n    host-name a\n}\n", "delete system host-name a\n").unwrap();
        assert!(!t.exists(&["system", "host-name"]));
    }

    #[test]
    fn tags_from_schema() {
        let t = run("", "set interfaces ethernet eth0 address '10.0.0.1/24'\n").unwrap();
        assert!(t.get(&["interfaces", "ethernet"]).unwrap().is_tag());
    }

    #[test]
    fn atomic_and_names_the_line() {
        let mut t = parse_tree("a b\n").unwrap();
        let before = t.clone();
        let cmds = parse_commands("set x y\n\ndelete missing node\n").unwrap();
        let e = apply_commands(&mut t, &cmds, Schema::vyos()).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.to_string(), "line 3: `delete missing node`: configuration path [missing node] does not exist");
        assert_eq!(t, before);
    }

    #[test]
    fn already_exists_is_a_warning() {
        let mut t = parse_tree("a b\n").unwrap();
        let r = apply_commands(&mut t, &parse_commands("set a 'b'\n").unwrap(), Schema::vyos()).unwrap();
        assert!(!r.changed);
        assert_eq!(r.warnings, ["Configuration path: [a b] already exists"]);
    }

    #[test]
    fn comments() {
        let t = run("a b\n", "comment a 'hello'\n").unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), Some("hello"));
        assert!(run("a b\n", "comment nope 'x'\n").is_err());
    }
}
