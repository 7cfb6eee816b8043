//! The canonical digest of a configuration.
//!
//! The digest is the SHA-256 of the canonical command render: one line per leaf value (and
//! per valueless leaf), every path element and value single-quoted, values of multi-value
//! leaves sorted and deduplicated, comments as `comment` lines, lines in natural order. The
//! version footer is never part of it.
//!
//! This form is what VyOS itself stores: it does not depend on the tag flag (`ethernet eth0 {`
//! versus `ethernet { eth0 {`) nor on whether a trailing word was written as a value or a node
//! (`host-name "r1"` versus `set system host-name r1`) — both reach VyOS as the same argv — nor
//! on multi-value order, which VyOS's diff treats as a set. So a configuration has the same
//! digest whether it was written hierarchically or as commands, and two configurations with
//! the same digest produce an empty diff.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::natord;
use crate::render::escape_single;
use crate::tree::{Node, Tree};

/// A configuration digest, `sha256:<64 hex digits>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest as `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical digest of a tree.
pub fn digest(tree: &Tree) -> Digest {
    let mut hasher = Sha256::new();
    for_each_line(tree, &mut |line| {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    });
    finish(hasher)
}

/// The digest of a tree whose [`canonical_text`] is at hand (equal to [`digest`] of that tree,
/// without walking it again).
pub fn digest_of_canonical(canonical: &str) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    finish(hasher)
}

fn finish(hasher: Sha256) -> Digest {
    let bytes = hasher.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Digest(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The canonical text the digest is computed over, one line per entry.
pub fn canonical_text(tree: &Tree) -> String {
    let mut out = String::new();
    for_each_line(tree, &mut |line| {
        out.push_str(line);
        out.push('\n');
    });
    out
}

/// Calls `emit` with every canonical line, in order.
///
/// Tree order is already canonical: children are sorted by name, a node has either values or
/// children (never both), and values are emitted sorted — so a value `v` of leaf `x` and a
/// valueless child `v` of node `x` produce the same line in the same place.
fn for_each_line(tree: &Tree, emit: &mut dyn FnMut(&str)) {
    let mut path: Vec<&str> = Vec::new();
    let mut line = String::new();
    for child in tree.children() {
        walk(child, &mut path, &mut line, emit);
    }
}

fn push_words(line: &mut String, verb: &str, path: &[&str], last: Option<&str>) {
    line.clear();
    line.push_str(verb);
    for w in path.iter().copied().chain(last) {
        line.push_str(" '");
        escape_single(w, line);
        line.push('\'');
    }
}

fn walk<'a>(node: &'a Node, path: &mut Vec<&'a str>, line: &mut String, emit: &mut dyn FnMut(&str)) {
    path.push(node.name());
    if node.children().is_empty() {
        if node.values().is_empty() {
            push_words(line, "set", path, None);
            emit(line);
        } else {
            let mut values: Vec<&str> = node.values().iter().map(String::as_str).collect();
            if values.len() > 1 {
                values.sort_by(|a, b| natord::compare(a, b));
                values.dedup();
            }
            for v in values {
                push_words(line, "set", path, Some(v));
                emit(line);
            }
        }
    } else {
        for child in node.children() {
            walk(child, path, line, emit);
        }
    }
    if let Some(comment) = node.comment() {
        push_words(line, "comment", path, Some(comment));
        emit(line);
    }
    path.pop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_tree;

    #[test]
    fn shape_independent() {
        let a = parse_tree("interfaces {\n    ethernet eth0 {\n        address a\n        address b\n    }\n}\nsystem {\n    host-name r1\n}\n").unwrap();
        let b = parse_tree("interfaces {\n    ethernet {\n        eth0 {\n            address b\n            address a\n        }\n    }\n}\nsystem {\n    host-name {\n        r1\n    }\n}\n").unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert!(digest(&a).as_str().starts_with("sha256:"));
        assert_eq!(digest(&a).as_str().len(), 71);
        let c = parse_tree("system {\n    host-name r2\n}\n").unwrap();
        assert_ne!(digest(&a), digest(&c));
        for t in [&a, &b, &c] {
            assert_eq!(digest_of_canonical(&canonical_text(t)), digest(t));
        }
    }

    #[test]
    fn comments_count() {
        let a = parse_tree("a b\n").unwrap();
        let b = parse_tree("/* x */\na b\n").unwrap();
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn canonical_text_is_readable() {
        let a = parse_tree("a {\n    b \"it's\"\n}\n").unwrap();
        assert_eq!(canonical_text(&a), "set 'a' 'b' 'it\\'s'\n");
    }
}
