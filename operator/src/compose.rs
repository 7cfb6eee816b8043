//! Composing every VRouterConfig of a router into one desired state (pure).
//!
//! Each config becomes a tree of its own (its `config`, then its `commands` applied on top);
//! the trees are merged in ascending priority, then name, so a higher priority wins where two
//! configs set the same leaf. Such an overlap is reported on both configs. The same leaf given
//! different values by two configs of *equal* priority is a conflict: nothing is delivered
//! until someone resolves it (silently picking a winner by name would make a router's state
//! depend on how configs happen to be named).
//!
//! `delete` commands act twice: on the config's own tree (so `config` + `delete` works as in a
//! VyOS session) and, under the Merge policy, on the router's running configuration (so a
//! config can remove something it does not otherwise own). They are carried as explicit
//! deletions in the revision.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};
use vyos_config::{ApplyError, Command, CommandError, Config, Op, Schema, Tree, apply_commands, parse_commands};

use crate::crd::ConfigPolicy;

/// One VRouterConfig as composition sees it.
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    /// The VRouterConfig's name.
    pub name: &'a str,
    /// Its `metadata.generation` (which version of it a revision carries).
    pub generation: i64,
    /// Composition priority.
    pub priority: i32,
    /// Hierarchical configuration (or a command list; the format is detected).
    pub config: Option<&'a str>,
    /// `set`/`delete`/`comment` lines applied after `config`.
    pub commands: Option<&'a str>,
    /// Whether it asks for the configuration to be saved.
    pub save: bool,
}

/// Two configs setting the same leaf differently (different priorities: the higher won).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// The other config.
    pub other: String,
    /// The leaf (or deleted path).
    pub path: String,
    /// Whether this config's value is the one in the composed state.
    pub won: bool,
}

/// A router's composed desired state.
#[derive(Clone, Debug)]
pub struct Composed {
    /// The desired configuration (secret placeholders unsubstituted).
    pub tree: Tree,
    /// Explicit deletions (`delete …` lines), sorted, without duplicates.
    pub deletions: Vec<String>,
    /// Save after commit: every config asks for it.
    pub save: bool,
    /// The configs in composition order, with the generation composed.
    pub parts: Vec<(String, i64)>,
    /// Overlaps, by config name.
    pub overlaps: BTreeMap<String, Vec<Overlap>>,
}

/// Why a router's configs cannot be composed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// A config's `config` text is not valid.
    #[error("VRouterConfig {name:?}: config: {message}")]
    Config {
        /// The VRouterConfig.
        name: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A config's `commands` do not parse.
    #[error("VRouterConfig {name:?}: commands: {error}")]
    Commands {
        /// The VRouterConfig.
        name: String,
        /// The parse error.
        error: CommandError,
    },
    /// A config's `commands` cannot be applied to its `config`.
    #[error("VRouterConfig {name:?}: commands: {error}")]
    Apply {
        /// The VRouterConfig.
        name: String,
        /// The failing command.
        error: ApplyError,
    },
    /// Two configs of equal priority set a leaf to different values.
    #[error(
        "VRouterConfigs {first:?} and {second:?} (both priority {priority}) set [{path}] differently \
         ({first_values} vs {second_values}): give one a higher priority or remove the overlap"
    )]
    Conflict {
        /// The config merged first.
        first: String,
        /// The config merged second.
        second: String,
        /// Their priority.
        priority: i32,
        /// The leaf.
        path: String,
        /// The first config's values.
        first_values: String,
        /// The second config's values.
        second_values: String,
    },
}

impl ComposeError {
    /// The configs the error is about.
    pub fn configs(&self) -> Vec<&str> {
        match self {
            ComposeError::Config { name, .. }
            | ComposeError::Commands { name, .. }
            | ComposeError::Apply { name, .. } => vec![name],
            ComposeError::Conflict { first, second, .. } => vec![first, second],
        }
    }
}

/// Composes a router's configs. All errors are returned, not just the first.
pub fn compose(parts: &[Part<'_>], schema: &Schema) -> Result<Composed, Vec<ComposeError>> {
    let mut order: Vec<&Part<'_>> = parts.iter().collect();
    order.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(b.name)));

    let mut errors = Vec::new();
    let mut built = Vec::with_capacity(order.len());
    for part in &order {
        match part_tree(part, schema) {
            Ok((tree, deletions)) => built.push((*part, tree, deletions)),
            Err(e) => errors.push(e),
        }
    }

    let mut acc = Tree::new();
    // Which config (index in `built`) set each leaf.
    let mut owner: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut overlaps: BTreeMap<String, Vec<Overlap>> = BTreeMap::new();
    let mut deletions = BTreeSet::new();
    for (i, (part, tree, dels)) in built.iter().enumerate() {
        for cmd in dels {
            // A higher-priority deletion removes what lower-priority configs set.
            let hit: Vec<Vec<String>> = owner
                .keys()
                .filter(|p| p.starts_with(&cmd.path) || (cmd.value.is_some() && **p == cmd.path))
                .cloned()
                .collect();
            for path in hit {
                let Some(&j) = owner.get(&path) else { continue };
                if j == i {
                    continue;
                }
                let (other, ..) = &built[j];
                let values = ("set".to_owned(), "deleted".to_owned());
                clash(&mut errors, &mut overlaps, other, part, path.join(" "), values);
                if cmd.value.is_none() {
                    owner.remove(&path);
                }
            }
            if acc.exists(&cmd.path) || cmd.value.as_ref().is_some_and(|v| acc.values(&cmd.path).contains(v)) {
                // Present, so the delete cannot fail.
                let _ = acc.delete(&cmd.path, cmd.value.as_deref());
                prune_empty_parents(&mut acc, &cmd.path);
            }
            deletions.insert(cmd.to_string());
        }
        // Parts are read without VyOS's schema, so an unquoted value (`set system host-name
        // r1`) reads as a node; where another part has the same leaf with a value, read it as a
        // value too (both ways), so overlaps on it are seen.
        let mut tree = tree.clone();
        tree.conform_to(&acc);
        acc.conform_to(&tree);
        for conflict in vyos_config::merge(&mut acc, &tree, schema) {
            // The leaf, or (when it was read as nodes before conforming) a node below it.
            let found = owner.get(&conflict.path).or_else(|| {
                owner
                    .range(conflict.path.clone()..)
                    .next()
                    .filter(|(k, _)| k.starts_with(&conflict.path))
                    .map(|(_, v)| v)
            });
            let Some(&j) = found else { continue };
            let (other, ..) = &built[j];
            let values = (quote_values(&conflict.base), quote_values(&conflict.top));
            clash(&mut errors, &mut overlaps, other, part, conflict.path.join(" "), values);
        }
        for (path, _) in tree.leaves() {
            owner.insert(path.iter().map(|s| (*s).to_owned()).collect(), i);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Deletions a later config undid entirely are still sent: they remove what the running
    // config has beyond the desired subtree (delete, then set = replace).
    Ok(Composed {
        tree: acc,
        deletions: deletions.into_iter().collect(),
        save: order.iter().all(|p| p.save),
        parts: order.iter().map(|p| (p.name.to_owned(), p.generation)).collect(),
        overlaps,
    })
}

/// Removes the containers above `path` that the delete left empty (VyOS does not keep empty
/// containers).
fn prune_empty_parents(tree: &mut Tree, path: &[String]) {
    for k in (1..path.len()).rev() {
        let empty = tree.get(&path[..k]).is_some_and(|n| n.children().is_empty() && n.values().is_empty());
        if !empty {
            break;
        }
        let _ = tree.delete(&path[..k], None);
    }
}

/// `earlier` (merged first) and `later` both set `path`: a conflict at equal priority, else an
/// overlap won by `later`, recorded on both.
fn clash(
    errors: &mut Vec<ComposeError>,
    overlaps: &mut BTreeMap<String, Vec<Overlap>>,
    earlier: &Part<'_>,
    later: &Part<'_>,
    path: String,
    (first_values, second_values): (String, String),
) {
    if earlier.priority == later.priority {
        errors.push(ComposeError::Conflict {
            first: earlier.name.to_owned(),
            second: later.name.to_owned(),
            priority: later.priority,
            path,
            first_values,
            second_values,
        });
        return;
    }
    overlaps.entry(later.name.to_owned()).or_default().push(Overlap {
        other: earlier.name.to_owned(),
        path: path.clone(),
        won: true,
    });
    overlaps.entry(earlier.name.to_owned()).or_default().push(Overlap {
        other: later.name.to_owned(),
        path,
        won: false,
    });
}

fn quote_values(values: &[String]) -> String {
    values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(" ")
}

/// One config's own tree and its explicit deletions.
fn part_tree(part: &Part<'_>, schema: &Schema) -> Result<(Tree, Vec<Command>), ComposeError> {
    let name = || part.name.to_owned();
    let mut tree = match part.config.filter(|c| !c.trim().is_empty()) {
        Some(text) => match Config::parse(text) {
            Ok(c) => c.tree,
            Err(e) => return Err(ComposeError::Config { name: name(), message: e.to_string() }),
        },
        None => Tree::new(),
    };
    let Some(text) = part.commands.filter(|c| !c.trim().is_empty()) else { return Ok((tree, Vec::new())) };
    let mut commands = parse_commands(text).map_err(|error| ComposeError::Commands { name: name(), error })?;
    let deletions: Vec<Command> = commands.iter().filter(|c| c.op == Op::Delete).cloned().collect();
    // A delete of something the config itself does not have is meant for the router: drop it
    // from the config's own list and retry (each round removes one command).
    loop {
        match apply_commands(&mut tree, &commands, schema) {
            Ok(_) => break,
            Err(error) => {
                let missing = matches!(
                    error.reason,
                    vyos_config::EditError::NotFound(_) | vyos_config::EditError::NoSuchValue { .. }
                );
                let index = commands
                    .iter()
                    .position(|c| c.op == Op::Delete && Some(c.line) == error.line && c.to_string() == error.command);
                match index {
                    Some(i) if missing => {
                        commands.remove(i);
                    }
                    _ => return Err(ComposeError::Apply { name: name(), error }),
                }
            }
        }
    }
    Ok((tree, deletions))
}

/// What a revision id is computed from.
#[derive(Clone, Copy, Debug)]
pub struct RevisionInput<'a> {
    /// The composed state.
    pub composed: &'a Composed,
    /// The target's policy.
    pub policy: ConfigPolicy,
    /// The target's managed scopes (Merge).
    pub managed_scopes: &'a [String],
    /// Keyed fingerprint of the secret values the configuration references (empty if none),
    /// so a Secret change makes a new revision without revealing anything about the value.
    pub secrets_fingerprint: &'a str,
}

/// The revision id: a content hash of everything that decides what the router ends up with.
/// Equal inputs give equal ids, so re-deriving a revision after a restart finds the one the
/// router already runs.
pub fn revision_id(input: RevisionInput<'_>) -> String {
    revision_id_of(&vyos_config::canonical_text(&input.composed.tree), input)
}

/// [`revision_id`] given the composed tree's canonical text (`vyos_config::canonical_text`);
/// the tree itself is not read.
pub fn revision_id_of(canonical: &str, input: RevisionInput<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, data: &[u8]| {
        h.update(name.as_bytes());
        h.update((data.len() as u64).to_be_bytes());
        h.update(data);
    };
    field("tree", canonical.as_bytes());
    field("policy", format!("{:?}", input.policy).as_bytes());
    let mut scopes: Vec<String> =
        input.managed_scopes.iter().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    scopes.sort();
    scopes.dedup();
    for s in &scopes {
        field("scope", s.as_bytes());
    }
    for d in &input.composed.deletions {
        field("delete", d.as_bytes());
    }
    field("save", &[u8::from(input.composed.save)]);
    field("secrets", input.secrets_fingerprint.as_bytes());
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part<'a>(name: &'a str, priority: i32, config: Option<&'a str>, commands: Option<&'a str>) -> Part<'a> {
        Part { name, generation: 1, priority, config, commands, save: true }
    }

    fn ok(parts: &[Part<'_>]) -> Composed {
        compose(parts, Schema::vyos()).unwrap()
    }

    fn cmds(c: &Composed) -> String {
        vyos_config::render_commands(&c.tree, vyos_config::Verb::Set)
    }

    #[test]
    fn config_then_commands_in_one_part() {
        let c = ok(&[part(
            "a",
            0,
            Some("system {\n    host-name r1\n    ntp {\n        server 1.1.1.1\n    }\n}\n"),
            Some("set system domain-name 'example.net'\ndelete system ntp\ndelete protocols bgp\n"),
        )]);
        assert_eq!(cmds(&c), "set system domain-name 'example.net'\nset system host-name 'r1'");
        assert_eq!(c.deletions, ["delete protocols bgp", "delete system ntp"]);
        assert_eq!(c.parts, [("a".to_owned(), 1)]);
        assert!(c.overlaps.is_empty());
        assert!(c.save);
    }

    #[test]
    fn commands_format_in_config_is_accepted() {
        let c = ok(&[part("a", 0, Some("set system host-name 'r1'\n"), None)]);
        assert_eq!(cmds(&c), "set system host-name 'r1'");
    }

    #[test]
    fn higher_priority_wins_and_overlap_is_reported_on_both() {
        let low = part("base", 0, None, Some("set system host-name 'a'\nset system time-zone 'UTC'"));
        let high = part("site", 10, None, Some("set system host-name 'b'"));
        // Input order does not matter.
        for parts in [[low, high], [high, low]] {
            let c = ok(&parts);
            assert_eq!(cmds(&c), "set system host-name 'b'\nset system time-zone 'UTC'");
            assert_eq!(c.parts.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["base", "site"]);
            assert_eq!(
                c.overlaps["site"],
                [Overlap { other: "base".into(), path: "system host-name".into(), won: true }]
            );
            assert_eq!(
                c.overlaps["base"],
                [Overlap { other: "site".into(), path: "system host-name".into(), won: false }]
            );
        }
    }

    #[test]
    fn equal_priority_conflict_blocks() {
        let errs = compose(
            &[
                part("a", 0, None, Some("set system host-name 'a'")),
                part("b", 0, None, Some("set system host-name 'b'")),
            ],
            Schema::vyos(),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "VRouterConfigs \"a\" and \"b\" (both priority 0) set [system host-name] differently ('a' vs 'b'): \
             give one a higher priority or remove the overlap"
        );
        assert_eq!(errs[0].configs(), ["a", "b"]);
    }

    #[test]
    fn unquoted_values_are_read_as_values_where_another_part_quoted_them() {
        for (a, b) in [
            ("set system host-name 'a'", "set system host-name b"),
            ("set system host-name a", "set system host-name 'b'"),
        ] {
            let errs =
                compose(&[part("a", 0, None, Some(a)), part("b", 0, None, Some(b))], Schema::vyos()).unwrap_err();
            assert!(matches!(&errs[0], ComposeError::Conflict { path, .. } if path == "system host-name"), "{errs:?}");
        }
    }

    #[test]
    fn same_values_and_multi_values_are_not_conflicts() {
        let c = ok(&[
            part("a", 0, None, Some("set system host-name 'r'\nset interfaces ethernet eth0 address '10.0.0.1/24'")),
            part("b", 0, None, Some("set system host-name 'r'\nset interfaces ethernet eth0 address '10.0.1.1/24'")),
        ]);
        assert!(c.overlaps.is_empty());
        assert_eq!(c.tree.values(&["interfaces", "ethernet", "eth0", "address"]), ["10.0.0.1/24", "10.0.1.1/24"]);
    }

    #[test]
    fn higher_priority_delete_removes_lower_priority_content() {
        let c = ok(&[
            part("base", 0, None, Some("set service ssh port '22'\nset system host-name 'r'")),
            part("hardening", 5, None, Some("delete service ssh")),
        ]);
        assert_eq!(cmds(&c), "set system host-name 'r'");
        assert_eq!(c.deletions, ["delete service ssh"]);
        assert_eq!(c.overlaps["hardening"][0].path, "service ssh port");
        assert!(!c.overlaps["base"][0].won);
        // The same at equal priority is a conflict.
        let errs = compose(
            &[part("base", 0, None, Some("set service ssh port '22'")), part("x", 0, None, Some("delete service ssh"))],
            Schema::vyos(),
        )
        .unwrap_err();
        assert!(errs[0].to_string().contains("('set' vs 'deleted')") || errs[0].to_string().contains("set vs deleted"));
    }

    #[test]
    fn broken_parts_are_all_reported() {
        let errs = compose(
            &[
                part("bad-config", 0, Some("system {\n    host-name r1\n"), None),
                part("bad-commands", 0, None, Some("set system host-name 'a'\nrun reboot now")),
                part("bad-apply", 0, None, Some("set system host-name 'a'\nset system host-name a b")),
                part("good", 0, None, Some("set system time-zone 'UTC'")),
            ],
            Schema::vyos(),
        )
        .unwrap_err();
        let names: Vec<&str> = errs.iter().flat_map(|e| e.configs()).collect();
        assert_eq!(names, ["bad-apply", "bad-commands", "bad-config"]);
        assert!(errs[1].to_string().starts_with("VRouterConfig \"bad-commands\": commands: line 2"), "{}", errs[1]);
    }

    #[test]
    fn save_only_when_every_part_asks() {
        let mut a = part("a", 0, None, Some("set system host-name 'a'"));
        let b = part("b", 0, None, Some("set system time-zone 'UTC'"));
        assert!(ok(&[a, b]).save);
        a.save = false;
        assert!(!ok(&[a, b]).save);
    }

    #[test]
    fn empty_composition() {
        let c = ok(&[]);
        assert!(c.tree.root().children().is_empty());
        assert!(c.save);
    }

    #[test]
    fn revision_depends_on_everything_that_matters() {
        let a = ok(&[part("a", 0, None, Some("set system host-name 'a'"))]);
        let base =
            RevisionInput { composed: &a, policy: ConfigPolicy::Merge, managed_scopes: &[], secrets_fingerprint: "" };
        let id = revision_id(base);
        assert_eq!(id.len(), 16);
        // Deterministic, and independent of part names and scope spelling/order.
        let renamed = ok(&[part("zzz", 3, Some("system {\n host-name a\n}"), None)]);
        assert_eq!(revision_id(RevisionInput { composed: &renamed, ..base }), id);
        let scopes = ["protocols  bgp".to_owned(), "system".to_owned()];
        let scopes2 = ["system".to_owned(), "protocols bgp".to_owned()];
        let with_scopes = revision_id(RevisionInput { managed_scopes: &scopes, ..base });
        assert_ne!(with_scopes, id);
        assert_eq!(revision_id(RevisionInput { managed_scopes: &scopes2, ..base }), with_scopes);
        assert_ne!(revision_id(RevisionInput { policy: ConfigPolicy::Replace, ..base }), id);
        assert_ne!(revision_id(RevisionInput { secrets_fingerprint: "x", ..base }), id);
        let b = ok(&[part("a", 0, None, Some("set system host-name 'b'"))]);
        assert_ne!(revision_id(RevisionInput { composed: &b, ..base }), id);
        let d = ok(&[part("a", 0, None, Some("set system host-name 'a'\ndelete service ssh"))]);
        assert_ne!(revision_id(RevisionInput { composed: &d, ..base }), id);
        let mut unsaved = a.clone();
        unsaved.save = false;
        assert_ne!(revision_id(RevisionInput { composed: &unsaved, ..base }), id);
    }
}
