//! Saving and loading: `vyos-save-config.py`, `cli-shell-api loadFile`, `vyos-load-config.py`,
//! `vyos-merge-config.py`, and the fake migration.
//!
//! File names given to these tools are resolved with [`Root::resolve_user_path`]: absolute
//! paths under the root (`/config/x` → `ROOT/config/x`), relative ones as they are.
//!
//! **Fake migration.** VyOS runs every migration script on a file without a version footer.
//! The double's single "migration" appends `-migrated` to `system host-name` (or sets it to
//! `migrated` when there is none) and records a `migrated` event. It runs where VyOS migrates:
//! `vyos-load-config.py`, `vyos-merge-config.py` (rolling only; the Oct-2024 script merges the
//! unmigrated text) and loading `/config/config.boot` at boot — not in raw `loadFile`.

use vyos_config::{Config, Schema as Hints, Tree, ValueBehaviour, merge};

use crate::archive::saved_text;
use crate::ctx::Ctx;
use crate::error::{Output, Result};
use crate::files;
use crate::layout::Root;
use crate::session::{self, Working};
use crate::state;

/// Whether a parsed file carries a version footer VyOS would read.
pub fn has_version_footer(config: &Config) -> bool {
    config.footer.as_deref().is_some_and(|f| f.contains("vyos-config-version:") || f.contains("vyatta-config-version:"))
}

/// The fake migration: marks `system host-name`.
pub fn migrate(tree: &mut Tree) {
    let name = tree.values(&["system", "host-name"]).first().map(|v| format!("{v}-migrated"));
    let name = name.unwrap_or_else(|| "migrated".to_owned());
    let _ignored = tree.set(&["system", "host-name"], Some(&name), ValueBehaviour::Replace, &|_: &[&str]| false);
}

/// Parses a config.boot-style text, migrating it when it has no version footer. The inner
/// error is the parser's message in VyOS's words.
pub fn parse_and_migrate(
    root: &Root,
    clock: u64,
    text: &str,
    source: &str,
) -> Result<std::result::Result<Tree, String>> {
    let config = match Config::parse_hierarchical(text) {
        Ok(config) => config,
        Err(e) => return Ok(Err(e.vyos_message())),
    };
    let mut tree = config.tree.clone();
    if !has_version_footer(&config) {
        migrate(&mut tree);
        state::record_event(root, clock, "migrated", &format!("source={source}"))?;
    }
    Ok(Ok(tree))
}

/// `vyos-save-config.py [FILE]`: writes the running configuration with the version footer.
pub fn save(ctx: &Ctx, args: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    if args.len() > 1 {
        return Ok(Output { code: 2, stderr: "usage: vyos-save-config.py [file]\n".into(), ..Output::default() });
    }
    if let Some(target) = args.first()
        && target.contains("://")
    {
        return Ok(Output::fail(format!("fakevyos: remote save locations are not supported: {target}\n")));
    }
    let path = args.first().map(|a| ctx.root.resolve_user_path(a)).unwrap_or_else(|| ctx.root.saved_config());
    let locked = state::lock(&ctx.root)?;
    let active = state::read_active(&ctx.root)?;
    files::write_atomic(&path, saved_text(&ctx.profile, &active).as_bytes())?;
    state::record_event(&ctx.root, locked.state.clock, "saved", &format!("file={}", path.display()))?;
    Ok(Output::ok(""))
}

/// The caller's session and the file it names (loadFile and the load/merge scripts).
fn session_and_file(ctx: &Ctx, file: &str) -> std::result::Result<(session::Session, String), Output> {
    let session = session::require(ctx, "loadFile")?;
    Ok((session, read_user_file(ctx, file)?))
}

fn read_user_file(ctx: &Ctx, name: &str) -> std::result::Result<String, Output> {
    let path = ctx.root.resolve_user_path(name);
    std::fs::read_to_string(&path).map_err(|e| Output::fail(format!("Cannot open configuration file {name}: {e}\n")))
}

/// Replaces the session's working configuration; returns whether it changed.
fn replace_working(ctx: &Ctx, session: &session::Session, mut tree: Tree) -> Result<bool> {
    let schema = ctx.schema()?;
    session::mark_tags(&mut tree, &schema);
    let working = session.load(&ctx.root, &schema)?;
    if working.tree == tree {
        return Ok(false);
    }
    session.store(&Working { base: working.base, tree })?;
    session.set_changed(true)?;
    Ok(true)
}

/// `cli-shell-api loadFile FILE`: the file replaces the working configuration (no migration).
pub fn load_file(ctx: &Ctx, file: &str) -> Result<Output> {
    let (session, text) = match session_and_file(ctx, file) {
        Ok(found) => found,
        Err(out) => return Ok(out),
    };
    let config = match Config::parse_hierarchical(&text) {
        Ok(config) => config,
        Err(e) => return Ok(Output::fail(format!("{}\n", e.vyos_message()))),
    };
    let _locked = state::lock(&ctx.root)?;
    replace_working(ctx, &session, config.tree)?;
    Ok(Output::ok(""))
}

/// `vyos-load-config.py FILE`: migrates (when the footer is missing) and loads.
pub fn load_config(ctx: &Ctx, args: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    let [file] = args else {
        return Ok(Output { code: 2, stderr: "usage: vyos-load-config.py file\n".into(), ..Output::default() });
    };
    let (session, text) = match session_and_file(ctx, file) {
        Ok(found) => found,
        Err(out) => return Ok(out),
    };
    let locked = state::lock(&ctx.root)?;
    let tree = match parse_and_migrate(&ctx.root, locked.state.clock, &text, file)? {
        Ok(tree) => tree,
        Err(message) => return Ok(Output::fail(format!("{message}\n"))),
    };
    replace_working(ctx, &session, tree)?;
    Ok(Output::ok(if session.changed() {
        "Load complete. Use 'commit' to make changes effective.\n"
    } else {
        "No configuration changes to commit.\n"
    }))
}

/// `vyos-merge-config.py FILE [path…]` (sagitta, circinus) or `FILE [--destructive]`
/// (rolling, dozenos): merges the file into the working configuration.
pub fn merge_config(ctx: &Ctx, args: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    let old_cli = ctx.profile.family.old_merge_cli();
    let usage = if old_cli {
        "usage: vyos-merge-config.py [-h] file [path ...]"
    } else {
        "usage: vyos-merge-config.py [-h] [--destructive] file"
    };
    let Some((file, rest)) = args.split_first() else {
        return Ok(Output {
            code: 2,
            stderr: format!("{usage}\nvyos-merge-config.py: error: the following arguments are required: file\n"),
            ..Output::default()
        });
    };
    let destructive = !old_cli && rest.iter().any(|a| a == "--destructive");
    let unknown: Vec<&String> =
        rest.iter().filter(|a| if old_cli { a.starts_with("--") } else { a.as_str() != "--destructive" }).collect();
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Ok(Output {
            code: 2,
            stderr: format!("{usage}\nvyos-merge-config.py: error: unrecognized arguments: {}\n", list.join(" ")),
            ..Output::default()
        });
    }
    let (session, text) = match session_and_file(ctx, file) {
        Ok(found) => found,
        Err(out) => return Ok(out),
    };
    let locked = state::lock(&ctx.root)?;
    let parsed = if old_cli {
        Config::parse_hierarchical(&text).map(|c| c.tree).map_err(|e| e.vyos_message())
    } else {
        parse_and_migrate(&ctx.root, locked.state.clock, &text, file)?
    };
    let mut incoming = match parsed {
        Ok(tree) => tree,
        Err(message) => return Ok(Output::fail(format!("{message}\n"))),
    };
    if old_cli && !rest.is_empty() {
        incoming = incoming.mask(&[rest.to_vec()]);
    }
    let schema = ctx.schema()?;
    let mut tree = session.load(&ctx.root, &schema)?.tree;
    if destructive {
        for top in incoming.children() {
            for second in top.children() {
                let path = [top.name().to_owned(), second.name().to_owned()];
                if tree.exists(&path) {
                    let _ignored = tree.delete(&path, None);
                }
            }
        }
    }
    merge(&mut tree, &incoming, Hints::vyos());
    replace_working(ctx, &session, tree)?;
    Ok(Output::ok(if session.changed() {
        "Merge complete. Use 'commit' to make changes effective.\n"
    } else {
        "No configuration changes to commit.\n"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vyos_config::parse_tree;

    #[test]
    fn migration_marks_host_name() {
        let mut t = parse_tree("system {\n    host-name \"r1\"\n}\n").unwrap();
        migrate(&mut t);
        assert_eq!(t.values(&["system", "host-name"]), ["r1-migrated"]);
        let mut empty = Tree::new();
        migrate(&mut empty);
        assert_eq!(empty.values(&["system", "host-name"]), ["migrated"]);
    }

    #[test]
    fn footer_detection() {
        let with = Config::parse_hierarchical("a b\n\n// Warning: Do not remove the following line.\n// vyos-config-version: \"x@1\"\n// Release version: 1\n").unwrap();
        assert!(has_version_footer(&with));
        let without = Config::parse_hierarchical("a b\n").unwrap();
        assert!(!has_version_footer(&without));
    }
}
