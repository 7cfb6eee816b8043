//! Reading configuration: `showConfig`/`showCfg` and the `exists`, `listNodes`,
//! `returnValue(s)` queries, for the working (`exists`, …) or running (`existsActive`, …)
//! configuration.
//!
//! `showConfig` prints VyOS's curly format exactly as `vyos_config::render_config` renders it.
//! Inside a session, without `--show-active-only` or `--show-working-only`, it prints the
//! active → working comparison instead, every line prefixed with a marker column (` `, `+`,
//! `-`), like VyOS's configuration-mode `show`: text no parser should accept as a config.

use vyos_config::{Node, Tree, ValueBehaviour, Verb, render_commands, render_config};

use crate::ctx::Ctx;
use crate::error::{Output, Result};
use crate::schema::{Kind, Schema};
use crate::session;
use crate::state;

/// Leaf names whose values `--show-hide-secrets` masks.
pub const SECRET_LEAVES: &[&str] =
    &["private-key", "preshared-key", "password", "plaintext-password", "encrypted-password", "secret", "key"];

/// The mask for hidden secrets.
pub const HIDDEN: &str = "xxxxxx";

/// Default values `--show-show-defaults` adds where their parent exists: (parent path with
/// `*` for tag values, leaf, value).
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("service ssh", "port", "22"),
    ("interfaces ethernet *", "mtu", "1500"),
    ("system config-management commit-confirm", "action", "reboot"),
];

/// `showConfig` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowOptions {
    /// `--show-active-only`
    pub active_only: bool,
    /// `--show-working-only`
    pub working_only: bool,
    /// `--show-show-defaults`
    pub show_defaults: bool,
    /// `--show-hide-secrets`
    pub hide_secrets: bool,
    /// `--show-commands`
    pub commands: bool,
    /// `--show-cfg1`
    pub cfg1: Option<String>,
    /// `--show-cfg2`
    pub cfg2: Option<String>,
}

/// Masks the values of secret leaves.
pub fn hide_secrets(tree: &mut Tree) {
    let mut paths: Vec<Vec<String>> = Vec::new();
    let mut prefix = Vec::new();
    tree.root().walk(&mut prefix, &mut |path, node| {
        if node.is_leaf() && !node.values().is_empty() && path.last().is_some_and(|n| SECRET_LEAVES.contains(n)) {
            paths.push(path.iter().map(|s| (*s).to_owned()).collect());
        }
    });
    for path in paths {
        if let Some(node) = tree.get_mut(&path) {
            let n = node.values().len();
            node.set_values(vec![HIDDEN.to_owned(); n]);
        }
    }
}

/// Adds the default values of [`DEFAULTS`] that are not set.
pub fn add_defaults(tree: &mut Tree) {
    for (parent, leaf, value) in DEFAULTS {
        let pattern: Vec<&str> = parent.split_whitespace().collect();
        let mut parents: Vec<Vec<String>> = Vec::new();
        collect_matches(tree.root(), &pattern, &mut Vec::new(), &mut parents);
        for mut path in parents {
            path.push((*leaf).to_owned());
            if !tree.exists(&path) {
                let _ignored = tree.set(&path, Some(value), ValueBehaviour::Add, &|_: &[&str]| false);
            }
        }
    }
}

fn collect_matches(node: &Node, pattern: &[&str], path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some((first, rest)) = pattern.split_first() else {
        if node.values().is_empty() {
            out.push(path.clone());
        }
        return;
    };
    for child in node.children() {
        if *first == "*" || child.name() == *first {
            path.push(child.name().to_owned());
            collect_matches(child, rest, path, out);
            path.pop();
        }
    }
}

/// The part of a tree `showConfig PATH` shows: the children of the node at the path (the
/// node itself for a leaf); the whole tree for an empty path; `None` if the path is missing.
pub fn subtree(tree: &Tree, path: &[String]) -> Option<Tree> {
    if path.is_empty() {
        return Some(tree.clone());
    }
    let node = tree.get(path)?;
    let mut root = Node::new("");
    if node.is_leaf() {
        root.insert_child(node.clone());
    } else {
        for child in node.children() {
            root.insert_child(child.clone());
        }
    }
    Some(Tree::from_root(root))
}

fn render(tree: &Tree, commands: bool) -> String {
    if commands {
        let text = render_commands(tree, Verb::Set);
        if text.is_empty() { text } else { format!("{text}\n") }
    } else {
        render_config(tree, Default::default())
    }
}

/// A line comparison of two texts: every line of the result prefixed with ` `, `-` or `+`.
pub fn marked_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut out = String::new();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        for line in &a {
            out.push_str(&format!("-{line}\n"));
        }
        for line in &b {
            out.push_str(&format!("+{line}\n"));
        }
        return out;
    }
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    out
}

fn prepare(tree: &Tree, options: &ShowOptions, path: &[String]) -> Option<Tree> {
    let mut tree = tree.clone();
    if options.show_defaults {
        add_defaults(&mut tree);
    }
    if options.hide_secrets {
        hide_secrets(&mut tree);
    }
    subtree(&tree, path)
}

/// `cli-shell-api showConfig [options] [path…]`.
pub fn show_config(ctx: &Ctx, options: &ShowOptions, path: &[String]) -> Result<Output> {
    let schema = ctx.schema()?;
    let _locked = state::lock(&ctx.root)?;
    let active = state::read_active(&ctx.root)?;
    let session = session::from_env(ctx).ok().filter(|s| s.dir.is_dir());
    let working = match &session {
        Some(session) => Some(session.load(&ctx.root, &schema)?.tree),
        None => None,
    };
    let pick = |name: &str| -> std::result::Result<Tree, String> {
        match name {
            "@ACTIVE" => Ok(active.clone()),
            "@WORKING" => Ok(working.clone().unwrap_or_else(|| active.clone())),
            other => Err(format!("fakevyos: --show-cfg1/--show-cfg2 only support @ACTIVE and @WORKING, not {other}\n")),
        }
    };
    let (first, second) = match (&options.cfg1, &options.cfg2) {
        (Some(c1), Some(c2)) => match (pick(c1), pick(c2)) {
            (Ok(a), Ok(b)) => (a, Some(b)),
            (Err(e), _) | (_, Err(e)) => return Ok(Output::fail(e)),
        },
        _ => match &working {
            None => (active.clone(), None),
            Some(_) if options.active_only => (active.clone(), None),
            Some(w) if options.working_only => (w.clone(), None),
            Some(w) => (active.clone(), Some(w.clone())),
        },
    };
    let first = prepare(&first, options, path);
    let Some(second) = second else {
        return Ok(Output::ok(first.map(|t| render(&t, options.commands)).unwrap_or_default()));
    };
    let second = prepare(&second, options, path);
    let old = first.map(|t| render(&t, options.commands)).unwrap_or_default();
    let new = second.map(|t| render(&t, options.commands)).unwrap_or_default();
    Ok(Output::ok(marked_diff(&old, &new)))
}

/// Which configuration a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The running configuration (`…Active` queries).
    Active,
    /// The session's working configuration (the running one outside a session).
    Working,
}

fn read(ctx: &Ctx, source: Source) -> Result<Tree> {
    let schema = ctx.schema()?;
    let _locked = state::lock(&ctx.root)?;
    if source == Source::Working
        && let Ok(session) = session::from_env(ctx)
        && session.dir.is_dir()
    {
        return Ok(session.load(&ctx.root, &schema)?.tree);
    }
    state::read_active(&ctx.root)
}

/// `exists` / `existsActive`: the path (optionally ending in a value) exists.
pub fn exists(ctx: &Ctx, source: Source, path: &[String]) -> Result<Output> {
    let tree = read(ctx, source)?;
    let found = tree.exists(path)
        || path.split_last().is_some_and(|(value, parent)| !parent.is_empty() && tree.values(parent).contains(value));
    Ok(Output::status(found))
}

fn quoted_list(items: &[String]) -> String {
    items.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(" ")
}

/// `listNodes` / `listActiveNodes`: the child names, `'a' 'b'` (no newline).
pub fn list_nodes(ctx: &Ctx, source: Source, path: &[String]) -> Result<Output> {
    let tree = read(ctx, source)?;
    let names: Vec<String> = if path.is_empty() {
        tree.children().iter().map(|n| n.name().to_owned()).collect()
    } else {
        tree.get(path).map(|n| n.children().iter().map(|c| c.name().to_owned()).collect()).unwrap_or_default()
    };
    Ok(Output::ok(quoted_list(&names)))
}

fn leaf_kind(schema: &Schema, path: &[String]) -> Option<bool> {
    match schema.node_at(path)?.kind() {
        Kind::Leaf { multi, .. } => Some(*multi),
        _ => None,
    }
}

/// `returnValue` / `returnActiveValue`: the value of a single-value leaf (no newline).
pub fn return_value(ctx: &Ctx, source: Source, path: &[String]) -> Result<Output> {
    let tree = read(ctx, source)?;
    let multi = leaf_kind(&ctx.schema()?, path);
    let values = tree.get(path).filter(|n| n.is_leaf()).map(|n| n.values().to_vec()).unwrap_or_default();
    match (multi, values.as_slice()) {
        (Some(true), _) | (_, []) => Ok(Output::status(false)),
        (_, [first, ..]) => Ok(Output::ok(first.clone())),
    }
}

/// `returnValues` / `returnActiveValues`: the values of a multi-value leaf, `'a' 'b'`.
pub fn return_values(ctx: &Ctx, source: Source, path: &[String]) -> Result<Output> {
    let tree = read(ctx, source)?;
    let multi = leaf_kind(&ctx.schema()?, path);
    if multi == Some(false) {
        return Ok(Output::status(false));
    }
    match tree.get(path).filter(|n| n.is_leaf()) {
        Some(node) => Ok(Output::ok(quoted_list(node.values()))),
        None => Ok(Output::status(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vyos_config::parse_tree;

    #[test]
    fn marks_lines() {
        assert_eq!(marked_diff("a\nb\nc\n", "a\nc\nd\n"), " a\n-b\n c\n+d\n");
        assert_eq!(marked_diff("a\n", "a\n"), " a\n");
    }

    #[test]
    fn secrets_and_defaults() {
        let mut t = parse_tree(
            "interfaces {\n    wireguard wg0 {\n        private-key \"abc\"\n    }\n}\nservice {\n    ssh {\n    }\n}\n",
        )
        .unwrap();
        hide_secrets(&mut t);
        add_defaults(&mut t);
        assert_eq!(
            render_config(&t, Default::default()),
            "interfaces {\n    wireguard wg0 {\n        private-key \"xxxxxx\"\n    }\n}\nservice {\n    ssh {\n        port \"22\"\n    }\n}\n"
        );
    }

    #[test]
    fn subtrees() {
        let t = parse_tree(
            "interfaces {\n    ethernet eth0 {\n        address \"dhcp\"\n    }\n}\nsystem {\n    host-name \"r\"\n}\n",
        )
        .unwrap();
        let s = |p: &str| {
            subtree(&t, &p.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .map(|t| render_config(&t, Default::default()))
        };
        assert_eq!(s("interfaces").unwrap(), "ethernet eth0 {\n    address \"dhcp\"\n}\n");
        assert_eq!(s("interfaces ethernet").unwrap(), "eth0 {\n    address \"dhcp\"\n}\n");
        assert_eq!(s("system host-name").unwrap(), "host-name \"r\"\n");
        assert!(s("protocols").is_none());
    }
}
