//! `my_set`, `my_delete`, `my_comment`, `my_discard`: editing a session's working configuration
//! with VyOS's checks and messages.
//!
//! Messages (stdout; exit code in brackets):
//! - unknown path: `Configuration path: [a b c] is not valid` [1]
//! - value node without value: `Configuration path: [a b] requires a value` [1]
//! - rejected value: `"v" is not a valid value for [a b]: must be …` + `Value validation failed` [1]
//! - set of what exists: `Configuration path: [a b c] already exists` [0]
//! - delete of what does not exist: `Nothing to delete (the specified node does not exist)`
//!   (or `value`) [1]
//! - comment on a missing node: `The specified config node does not exist` [1]

use vyos_config::{Tree, ValueBehaviour};

use crate::ctx::Ctx;
use crate::error::{Output, Result};
use crate::schema::{Mode, PathError, Schema};
use crate::session;
use crate::state;

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// Whether the tree changed.
    pub changed: bool,
    /// Text to print (a note such as "already exists"), empty if none.
    pub note: String,
}

fn path_message(error: PathError, words: &[String]) -> String {
    let all = words.join(" ");
    match error {
        PathError::NotValid => format!("Configuration path: [{all}] is not valid\n"),
        PathError::RequiresValue => format!("Configuration path: [{all}] requires a value\n"),
        PathError::BadValue { value, node, expected } => {
            format!(
                "\"{value}\" is not a valid value for [{}]: must be {expected}\nValue validation failed\n",
                node.join(" ")
            )
        }
    }
}

/// `set` on a tree: `words` are the path and, for a leaf, the value as last word.
pub fn set(schema: &Schema, tree: &mut Tree, words: &[String]) -> std::result::Result<Edited, String> {
    let resolved = schema.resolve(words, Mode::Set).map_err(|e| path_message(e, words))?;
    let behaviour = if resolved.multi { ValueBehaviour::Add } else { ValueBehaviour::Replace };
    let tag_hint = |path: &[&str]| schema.is_tag(path);
    match tree.set(&resolved.path, resolved.value.as_deref(), behaviour, &tag_hint) {
        Ok(true) => Ok(Edited { changed: true, note: String::new() }),
        Ok(false) => {
            Ok(Edited { changed: false, note: format!("Configuration path: [{}] already exists\n", words.join(" ")) })
        }
        Err(e) => Err(format!("{e}\n")),
    }
}

/// `delete` on a tree.
pub fn delete(schema: &Schema, tree: &mut Tree, words: &[String]) -> std::result::Result<Edited, String> {
    let resolved = schema.resolve(words, Mode::Delete).map_err(|e| path_message(e, words))?;
    match &resolved.value {
        Some(value) => {
            if !tree.values(&resolved.path).contains(value) {
                return Err("Nothing to delete (the specified value does not exist)\n".into());
            }
        }
        None => {
            if !tree.exists(&resolved.path) {
                return Err("Nothing to delete (the specified node does not exist)\n".into());
            }
        }
    }
    tree.delete(&resolved.path, resolved.value.as_deref()).map_err(|e| format!("{e}\n"))?;
    Ok(Edited { changed: true, note: String::new() })
}

/// `comment` on a tree: the last word is the comment text (empty clears it).
pub fn comment(schema: &Schema, tree: &mut Tree, words: &[String]) -> std::result::Result<Edited, String> {
    let Some((text, path)) = words.split_last() else {
        return Err("Need to specify the config node to comment\n".into());
    };
    let resolved = schema.resolve(path, Mode::Delete).map_err(|e| path_message(e, path))?;
    if resolved.value.is_some() {
        return Err("Cannot comment on config values\n".into());
    }
    if !tree.exists(&resolved.path) {
        return Err("The specified config node does not exist\n".into());
    }
    let before = tree.get(&resolved.path).and_then(|n| n.comment().map(str::to_owned));
    tree.set_comment(&resolved.path, Some(text)).map_err(|e| format!("{e}\n"))?;
    let after = tree.get(&resolved.path).and_then(|n| n.comment().map(str::to_owned));
    Ok(Edited { changed: before != after, note: String::new() })
}

/// Which edit a tool makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `my_set`
    Set,
    /// `my_delete`
    Delete,
    /// `my_comment`
    Comment,
}

/// Runs `my_set`, `my_delete` or `my_comment` on the session the environment names.
pub fn run(ctx: &Ctx, op: Op, words: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    let (function, verb) = match op {
        Op::Set => ("validateSetPath", "set"),
        Op::Delete => ("deleteCfgPath", "delete"),
        Op::Comment => ("validateCommentArgs", "comment"),
    };
    let session = match session::require(ctx, function) {
        Ok(session) => session,
        Err(out) => return Ok(out),
    };
    if words.is_empty() {
        return Ok(Output::fail(format!("Need to specify the config node to {verb}\n")));
    }
    let schema = ctx.schema()?;
    let mut locked = state::lock(&ctx.root)?;
    ctx.note_rolling_env(&mut locked)?;
    if op == Op::Set && locked.state.transient_set_failures > 0 {
        locked.state.transient_set_failures -= 1;
        locked.save()?;
        return Ok(Output::fail("Set failed\n"));
    }
    locked.save()?;
    let mut working = session.load(&ctx.root, &schema)?;
    let result = match op {
        Op::Set => set(&schema, &mut working.tree, words),
        Op::Delete => delete(&schema, &mut working.tree, words),
        Op::Comment => comment(&schema, &mut working.tree, words),
    };
    match result {
        Ok(edited) => {
            if edited.changed {
                session.store(&working)?;
                session.set_changed(true)?;
            }
            Ok(Output::ok(edited.note))
        }
        Err(message) => Ok(Output::fail(message)),
    }
}

/// `my_discard`: the working configuration becomes the running one again.
pub fn discard(ctx: &Ctx, args: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    let session = match session::require(ctx, "discardChanges") {
        Ok(session) => session,
        Err(out) => return Ok(out),
    };
    if !args.is_empty() {
        return Ok(Output::fail("Invalid discard command\n"));
    }
    let _locked = state::lock(&ctx.root)?;
    let active = state::read_active(&ctx.root)?;
    session.store(&session::Working { base: active.clone(), tree: active })?;
    session.set_changed(false)?;
    Ok(Output::ok(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Family;
    use vyos_config::{parse_tree, render_config};

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn set_replaces_single_and_appends_multi() {
        let schema = Schema::for_family(Family::Sagitta).unwrap();
        let mut t = Tree::new();
        set(&schema, &mut t, &w("system host-name a")).unwrap();
        set(&schema, &mut t, &w("system host-name b")).unwrap();
        set(&schema, &mut t, &w("interfaces ethernet eth0 address dhcp")).unwrap();
        set(&schema, &mut t, &w("interfaces ethernet eth0 address 192.0.2.1/24")).unwrap();
        let again = set(&schema, &mut t, &w("interfaces ethernet eth0 address dhcp")).unwrap();
        assert!(!again.changed);
        assert_eq!(again.note, "Configuration path: [interfaces ethernet eth0 address dhcp] already exists\n");
        assert_eq!(
            render_config(&t, Default::default()),
            "interfaces {\n    ethernet eth0 {\n        address \"dhcp\"\n        address \"192.0.2.1/24\"\n    }\n}\n\
             system {\n    host-name \"b\"\n}\n"
        );
    }

    #[test]
    fn messages() {
        let schema = Schema::for_family(Family::Sagitta).unwrap();
        let mut t = parse_tree("system {\n    host-name \"a\"\n}\n").unwrap();
        assert_eq!(set(&schema, &mut t, &w("foo bar")).unwrap_err(), "Configuration path: [foo bar] is not valid\n");
        assert_eq!(
            set(&schema, &mut t, &w("interfaces ethernet eth0 mtu abc")).unwrap_err(),
            "\"abc\" is not a valid value for [interfaces ethernet eth0 mtu]: must be a number between 68 and 16000\n\
             Value validation failed\n"
        );
        assert_eq!(
            delete(&schema, &mut t, &w("service ssh")).unwrap_err(),
            "Nothing to delete (the specified node does not exist)\n"
        );
        assert_eq!(
            delete(&schema, &mut t, &w("system host-name b")).unwrap_err(),
            "Nothing to delete (the specified value does not exist)\n"
        );
        delete(&schema, &mut t, &w("system host-name a")).unwrap();
        assert!(!t.exists(&["system", "host-name"]));
        assert_eq!(
            comment(&schema, &mut t, &w("service ssh hi")).unwrap_err(),
            "The specified config node does not exist\n"
        );
        assert!(comment(&schema, &mut t, &w("system hello")).unwrap().changed);
        assert_eq!(t.get(&["system"]).unwrap().comment(), Some("hello"));
        assert!(comment(&schema, &mut t, &["system".to_owned(), String::new()]).unwrap().changed);
        assert_eq!(t.get(&["system"]).unwrap().comment(), None);
    }
}
