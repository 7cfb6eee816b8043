//! Configuration diff with VyOS's own rules (`Config_diff.diff_tree`, Python `DiffTree`).
//!
//! Walking both trees by node name, VyOS builds four trees (`add`, `sub`, `del`, `inter`);
//! the two that define the commands are built here:
//! - `add`: what only NEW has (whole subtrees, or the added values of a multi-value leaf),
//!   with ancestors carrying their data (so a commented ancestor also emits its comment);
//! - `del`: what to delete: the highest removed node as a valueless stub, or removed values.
//!
//! A single value changed on both sides is a delete of the old value plus a set of the new one.
//! Multi-values compare as sets; a node whose values all went away is deleted whole. Nodes equal
//! in everything are not descended into. Comment-only and tag-flag-only changes produce nothing
//! in VyOS's output.
//!
//! [`Diff::vyos_commands`] is `DiffTree.to_commands()`: the `delete` lines from `del`, then the
//! `set` lines from `add` — the exact list VyOS's `load_explicit` runs. [`Diff::commands`] adds
//! `comment` lines for comment changes VyOS ignores, so applying it really yields NEW.

use std::cmp::Ordering;

use crate::commands::{Command, Op};
use crate::natord;
use crate::render::{Verb, command_lines_of};
use crate::tree::{Node, Path, Tree};

/// The result of comparing two configurations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// What only the new configuration has.
    pub add: Tree,
    /// What to delete to get from old to new.
    pub del: Tree,
    /// Nodes with children in OLD that are leaves with values in NEW. VyOS's diff only emits
    /// the `set` (its schema makes the shape change impossible); here they are deleted first.
    shape_deletes: Vec<Command>,
    /// Commands VyOS's diff does not emit but NEW needs: the rare residue of VyOS's rules (a
    /// leaf whose values all go while the node stays, valueless or with children).
    fixes: Vec<Command>,
    /// `comment` changes, which VyOS's diff ignores.
    comment_fixes: Vec<Command>,
}

impl Diff {
    /// Whether the configurations are equivalent for VyOS (ignoring comments).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.del.is_empty()
    }

    /// The `delete` then `set` commands VyOS itself computes (`DiffTree.to_commands()`).
    pub fn vyos_commands(&self) -> Vec<Command> {
        let mut out = tree_commands(&self.del, Op::Delete);
        out.extend(tree_commands(&self.add, Op::Set));
        out
    }

    /// VyOS's commands plus the fixes it leaves out (changed comments, a leaf that becomes
    /// valueless): applying these to OLD gives NEW exactly.
    pub fn commands(&self) -> Vec<Command> {
        let mut out = self.shape_deletes.clone();
        out.extend(self.vyos_commands());
        out.extend(self.fixes.iter().cloned());
        out.extend(self.comment_fixes.iter().cloned());
        out
    }

    /// Exactly the text VyOS's `DiffTree.to_commands()` returns: the delete lines, `"\n"`, the
    /// set lines (so it starts with an empty line when nothing is deleted).
    pub fn vyos_string(&self) -> String {
        let del = command_lines_of(&self.del, Verb::Delete).join("\n");
        let add = command_lines_of(&self.add, Verb::Set).join("\n");
        format!("{del}\n{add}")
    }

    /// Paths that differ, for drift reports: each removed node or value, each added leaf.
    pub fn changed_paths(&self) -> Vec<(Path, ChangeKind)> {
        let mut out: Vec<(Path, ChangeKind)> = Vec::new();
        for (path, node) in self.del.leaves() {
            let kind = if node.values().is_empty() && !self.add.exists(&path) {
                ChangeKind::Removed
            } else {
                ChangeKind::Changed
            };
            out.push((path.iter().map(|s| (*s).to_owned()).collect::<Path>(), kind));
        }
        for (path, _) in self.add.leaves() {
            if !self.del.exists(&path) {
                out.push((path.iter().map(|s| (*s).to_owned()).collect::<Path>(), ChangeKind::Added));
            }
        }
        out.sort_by(|a, b| path_cmp(&a.0, &b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }
}

/// How a path changed between two configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only the new configuration has it.
    Added,
    /// Only the old configuration has it.
    Removed,
    /// Both have it, with different values.
    Changed,
}

fn path_cmp(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match natord::compare(x, y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

/// Renders a tree as structured commands, in the same order as [`crate::render_commands`].
pub fn tree_commands(tree: &Tree, op: Op) -> Vec<Command> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    for child in tree.children() {
        node_commands(child, op, &mut path, &mut out);
    }
    out
}

fn node_commands(node: &Node, op: Op, path: &mut Vec<String>, out: &mut Vec<Command>) {
    path.push(node.name().to_owned());
    if node.children().is_empty() {
        if node.values().is_empty() {
            out.push(Command { op, path: path.clone(), value: None, line: 0 });
        } else {
            for value in node.values() {
                out.push(Command { op, path: path.clone(), value: Some(value.clone()), line: 0 });
            }
        }
    } else {
        for child in node.children() {
            node_commands(child, op, path, out);
        }
    }
    if op == Op::Set
        && let Some(comment) = node.comment()
    {
        out.push(Command::comment(path.clone(), comment.to_owned()));
    }
    path.pop();
}

/// Compares two configurations with VyOS's rules.
pub fn diff(old: &Tree, new: &Tree) -> Diff {
    let mut d = Diff::default();
    let mut path = Vec::new();
    walk(old.root(), new.root(), new, &mut path, &mut d, old);
    d
}

/// Compares two configurations restricted to some subtrees (the managed scopes of a Merge
/// policy): the diff of both trees masked to those paths. An empty scope list compares the
/// whole trees.
pub fn diff_scoped<S: AsRef<str>>(old: &Tree, new: &Tree, scopes: &[Vec<S>]) -> Diff {
    if scopes.is_empty() {
        return diff(old, new);
    }
    diff(&old.mask(scopes), &new.mask(scopes))
}

fn walk(left: &Node, right: &Node, new: &Tree, path: &mut Vec<String>, d: &mut Diff, old: &Tree) {
    // Here both sides exist at `path` (the roots, or matching children).
    if left == right {
        return;
    }
    if !path.is_empty() && left.comment() != right.comment() {
        // After the commands below (which may delete and recreate the node), set the comment.
        d.comment_fixes.push(Command::comment(path.clone(), right.comment().unwrap_or("").to_owned()));
    }
    if left.values() != right.values() {
        if !left.children().is_empty() && right.children().is_empty() && !right.values().is_empty() {
            d.shape_deletes.push(Command::delete(path.clone(), None));
        }
        updated(left, right, old, new, path, d);
        if !left.values().is_empty() && right.values().is_empty() {
            // VyOS deletes the node and adds nothing back; NEW still has it (valueless, or
            // with children): recreate it.
            let mut subtree = Tree::new();
            clone_into(&mut subtree, new, path, true, None);
            d.fixes.extend(tree_commands(&subtree, Op::Set));
        }
        return;
    }
    if left.is_tag() && !left.children().is_empty() && right.children().is_empty() {
        // Deleting a tag node's last instance removes the tag node too (VyOS's prune); NEW
        // keeps the node, childless: recreate it after the deletes.
        d.fixes.push(Command::set(path.clone(), None));
    }
    // Children of both, in natural order, each name once.
    let (mut i, mut j) = (0, 0);
    let (lc, rc) = (left.children(), right.children());
    while i < lc.len() || j < rc.len() {
        let order = match (lc.get(i), rc.get(j)) {
            (Some(l), Some(r)) => natord::compare(l.name(), r.name()),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                path.push(lc[i].name().to_owned());
                clone_into(&mut d.del, old, path, false, Some(Vec::new()));
                path.pop();
                i += 1;
            }
            Ordering::Greater => {
                path.push(rc[j].name().to_owned());
                clone_into(&mut d.add, new, path, true, None);
                path.pop();
                j += 1;
            }
            Ordering::Equal => {
                path.push(lc[i].name().to_owned());
                walk(&lc[i], &rc[j], new, path, d, old);
                path.pop();
                i += 1;
                j += 1;
            }
        }
    }
}

fn updated(left: &Node, right: &Node, old: &Tree, new: &Tree, path: &[String], d: &mut Diff) {
    if left.values().len() == 1 && right.values().len() == 1 {
        clone_into(&mut d.del, old, path, true, None);
        clone_into(&mut d.add, new, path, true, None);
        return;
    }
    let old_set = value_set(left.values());
    let new_set = value_set(right.values());
    let sub_vals: Vec<String> = old_set.iter().filter(|v| !contains(&new_set, v)).cloned().collect();
    let add_vals: Vec<String> = new_set.iter().filter(|v| !contains(&old_set, v)).cloned().collect();
    let kept = old_set.len() - sub_vals.len();
    if !sub_vals.is_empty() {
        if add_vals.is_empty() && kept == 0 {
            // Every value went away: delete the whole node.
            clone_into(&mut d.del, old, path, true, Some(Vec::new()));
        } else {
            clone_into(&mut d.del, old, path, true, Some(sub_vals));
        }
    }
    if !add_vals.is_empty() {
        clone_into(&mut d.add, new, path, true, Some(add_vals));
    }
}

/// Values as a set in natural order (VyOS's `ValueS`).
fn value_set(values: &[String]) -> Vec<String> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| natord::compare(a, b));
    v.dedup();
    v
}

fn contains(sorted: &[String], value: &str) -> bool {
    sorted.binary_search_by(|v| natord::compare(v, value)).is_ok()
}

/// VyOS's `clone`: copies the node at `path` from `source` into `target`, creating missing
/// ancestors with the data (values, comment, tag flag) of their counterparts in `source`.
/// With `recurse` the node's children come along; `values` replaces the node's values.
fn clone_into(target: &mut Tree, source: &Tree, path: &[String], recurse: bool, values: Option<Vec<String>>) {
    if path.is_empty() {
        if recurse {
            *target = source.clone();
        }
        return;
    }
    let mut src = source.root();
    let mut dst = target.root_mut();
    for (i, name) in path.iter().enumerate() {
        let Some(src_child) = src.child(name) else { return };
        let last = i + 1 == path.len();
        if dst.child(name).is_none() {
            let mut copy = if last && recurse { src_child.clone() } else { src_child.shallow_clone() };
            if last && let Some(values) = &values {
                copy.set_values(values.clone());
            }
            dst.insert_child(copy);
        } else if last {
            // Already there (cannot happen for VyOS's walk); merge the data in.
            if let Some(existing) = dst.child_mut(name)
                && let Some(values) = &values
            {
                existing.set_values(values.clone());
            }
        }
        match dst.child_mut(name) {
            Some(next) => dst = next,
            None => return,
        }
        src = src_child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_tree;

    fn lines(d: &Diff) -> Vec<String> {
        d.commands().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn single_value_change() {
        let a = parse_tree("system {\n    host-name vyos\n}\n").unwrap();
        let b = parse_tree("system {\n    host-name r1\n}\n").unwrap();
        let d = diff(&a, &b);
        assert_eq!(lines(&d), ["delete system host-name 'vyos'", "set system host-name 'r1'"]);
        assert_eq!(d.vyos_string(), "delete system host-name 'vyos'\nset system host-name 'r1'");
    }

    #[test]
    fn removed_subtree_is_one_delete() {
        let a = parse_tree("interfaces {\n    ethernet eth0 {\n        mtu 1500\n    }\n    ethernet eth1 {\n        mtu 1500\n    }\n}\n").unwrap();
        let b = parse_tree("interfaces {\n    ethernet eth0 {\n        mtu 1500\n    }\n}\n").unwrap();
        assert_eq!(lines(&diff(&a, &b)), ["delete interfaces ethernet eth1"]);
        let c = parse_tree("interfaces {\n}\n").unwrap();
        assert_eq!(lines(&diff(&a, &c)), ["delete interfaces ethernet"]);
    }

    #[test]
    fn multi_values_as_sets() {
        let a = parse_tree("a {\n    v 1\n    v 2\n    v 3\n}\n").unwrap();
        let b = parse_tree("a {\n    v 3\n    v 10\n    v 1\n    v 4\n}\n").unwrap();
        assert_eq!(lines(&diff(&a, &b)), ["delete a v '2'", "set a v '4'", "set a v '10'"]);
        let c = parse_tree("a {\n    v 7\n    v 8\n}\n").unwrap();
        // Replaced values are deleted one by one...
        assert_eq!(
            lines(&diff(&a, &c)),
            ["delete a v '1'", "delete a v '2'", "delete a v '3'", "set a v '7'", "set a v '8'"]
        );
        // ...but a node left with no values at all is deleted whole.
        let valueless = parse_tree("a {\n    v\n}\n").unwrap();
        assert_eq!(lines(&diff(&a, &valueless)), ["delete a v", "set a v"]);
        // Same set in another order: nothing.
        let e = parse_tree("a {\n    v 3\n    v 2\n    v 1\n}\n").unwrap();
        assert!(diff(&a, &e).is_empty());
    }

    #[test]
    fn equal_is_empty_and_vyos_string() {
        let a = parse_tree("a b\n").unwrap();
        let d = diff(&a, &a);
        assert!(d.is_empty());
        assert_eq!(d.vyos_string(), "\n");
        assert!(d.commands().is_empty());
    }

    #[test]
    fn comments_are_synced_but_not_in_vyos_output() {
        let a = parse_tree("/* old */\na b\nc d\n").unwrap();
        let b = parse_tree("a b\n/* new */\nc d\n").unwrap();
        let d = diff(&a, &b);
        assert!(d.vyos_commands().is_empty());
        assert_eq!(lines(&d), ["comment a ''", "comment c 'new'"]);
    }

    #[test]
    fn commented_ancestor_of_added_node_emits_comment() {
        let a = parse_tree("/* keep */\nsystem {\n    x 1\n}\n").unwrap();
        let b = parse_tree("/* keep */\nsystem {\n    x 1\n    y 2\n}\n").unwrap();
        assert_eq!(lines(&diff(&a, &b)), ["set system y '2'", "comment system 'keep'"]);
    }

    #[test]
    fn inner_node_becoming_a_value_leaf() {
        let a = parse_tree("x {\n    a\n}\n").unwrap();
        let b = parse_tree("x \"\"\n").unwrap();
        let d = diff(&a, &b);
        // VyOS's own output is only the set; the full list deletes the subtree first.
        assert_eq!(d.vyos_string(), "\nset x ''");
        assert_eq!(lines(&d), ["delete x", "set x ''"]);
    }

    #[test]
    fn scoped() {
        let a = parse_tree("a {\n    x 1\n}\nb {\n    y 1\n}\n").unwrap();
        let b = parse_tree("a {\n    x 2\n}\nb {\n    y 2\n}\n").unwrap();
        let d = diff_scoped(&a, &b, &[vec!["b"]]);
        assert_eq!(lines(&d), ["delete b y '1'", "set b y '2'"]);
    }

    #[test]
    fn changed_paths() {
        let a = parse_tree("a {\n    x 1\n    gone 1\n}\n").unwrap();
        let b = parse_tree("a {\n    x 2\n    new 1\n}\n").unwrap();
        let paths = diff(&a, &b).changed_paths();
        let show: Vec<(String, ChangeKind)> = paths.iter().map(|(p, k)| (p.join(" "), *k)).collect();
        assert_eq!(
            show,
            [
                ("a gone".to_owned(), ChangeKind::Removed),
                ("a new".to_owned(), ChangeKind::Added),
                ("a x".to_owned(), ChangeKind::Changed)
            ]
        );
    }
}
