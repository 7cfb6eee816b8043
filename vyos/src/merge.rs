//! Merging one tree onto another.
//!
//! `top` wins: its nodes are added to `base`; a leaf in both takes `top`'s values (a union for
//! multi-value leaves, per the schema); `top`'s comments and tag flags are kept. A single-value
//! leaf given different values by the two trees is a [`Conflict`]: composition reports it on
//! both sides rather than letting the last writer win silently.

use crate::schema::Schema;
use crate::tree::{Node, Path, Tree};

/// The same leaf given different values by two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The leaf's path.
    pub path: Path,
    /// Values in the base tree.
    pub base: Vec<String>,
    /// Values in the merged-on tree (which won).
    pub top: Vec<String>,
}

/// Merges `top` onto `base` and returns the conflicts found.
pub fn merge(base: &mut Tree, top: &Tree, schema: &Schema) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    let mut path = Vec::new();
    merge_node(base.root_mut(), top.root(), schema, &mut path, &mut conflicts);
    conflicts
}

fn merge_node<'a>(
    base: &mut Node,
    top: &'a Node,
    schema: &Schema,
    path: &mut Vec<&'a str>,
    conflicts: &mut Vec<Conflict>,
) {
    for child in top.children() {
        path.push(child.name());
        match base.child_mut(child.name()) {
            None => base.insert_child(child.clone()),
            Some(existing) => {
                if child.comment().is_some() {
                    existing.set_comment(child.comment().map(str::to_owned));
                }
                if child.is_tag() {
                    existing.set_tag(true);
                }
                let top_leaf = child.is_leaf() && !child.values().is_empty();
                let base_leaf = existing.is_leaf() && !existing.values().is_empty();
                if top_leaf || base_leaf {
                    if existing.values() != child.values() {
                        if schema.is_multi(path) && top_leaf && base_leaf {
                            for v in child.values() {
                                existing.add_value(v.clone());
                            }
                        } else {
                            if base_leaf && !same_set(existing.values(), child.values()) {
                                conflicts.push(Conflict {
                                    path: path.iter().map(|s| (*s).to_owned()).collect(),
                                    base: existing.values().to_vec(),
                                    top: child.values().to_vec(),
                                });
                            }
                            let mut replacement = child.clone();
                            if replacement.comment().is_none() {
                                replacement.set_comment(existing.comment().map(str::to_owned));
                            }
                            *existing = replacement;
                        }
                    }
                } else {
                    merge_node(existing, child, schema, path, conflicts);
                }
            }
        }
        path.pop();
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|v| b.contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_tree;

    #[test]
    fn top_wins_and_reports_conflicts() {
        let mut base = parse_tree("system {\n    host-name a\n    name-server 1\n}\nx y\n").unwrap();
        let top = parse_tree("system {\n    host-name b\n    name-server 2\n}\nz w\n").unwrap();
        let conflicts = merge(&mut base, &top, Schema::vyos());
        assert_eq!(base.values(&["system", "host-name"]), ["b"]);
        assert_eq!(base.values(&["system", "name-server"]), ["1", "2"]);
        assert!(base.exists(&["x"]) && base.exists(&["z"]));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].path, ["system", "host-name"]);
        assert_eq!(conflicts[0].base, ["a"]);
    }

    #[test]
    fn same_values_no_conflict() {
        let mut base = parse_tree("a b\n").unwrap();
        let top = parse_tree("/* c */\na b\n").unwrap();
        assert!(merge(&mut base, &top, Schema::vyos()).is_empty());
        assert_eq!(base.get(&["a"]).unwrap().comment(), Some("c"));
    }
}
