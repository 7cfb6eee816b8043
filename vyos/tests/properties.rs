//! Property tests over generated configuration trees.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use proptest::prelude::*;
use vyos_config::{
    Config, Node, RenderOptions, Schema, Tree, Verb, apply_commands, canonical_text, diff, digest, parse_commands,
    parse_tree, render_command_list, render_commands, render_config,
};

/// Node names as they appear in VyOS: words, numbers, addresses, interface names.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}",
        "[0-9]{1,5}",
        "eth[0-9]{1,2}(\\.[0-9]{1,3})?",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,2})?",
        "[A-Z][A-Z_]{0,6}",
    ]
}

/// Values: anything printable, quotes, backslashes, control characters, non-ASCII; never NUL,
/// which VyOS cannot store (the parsers refuse it).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:-]{0,12}",
        ".{0,12}".prop_map(|s| s.replace('\0', "")),
        "[ -~]{0,10}",
        "[a\\\\\"'\n\t\r\u{1}\u{7f}é]{0,6}",
    ]
}

fn comment() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        1 => "[a-zA-Z0-9 ,.'\"-]{1,20}".prop_map(|c| {
            let t = c.trim().to_owned();
            if t.is_empty() { None } else { Some(t) }
        }),
    ]
}

/// A leaf: no values, one, or several distinct ones.
fn leaf() -> impl Strategy<Value = Node> {
    (name(), prop::collection::vec(value(), 0..4), comment()).prop_map(|(n, mut values, c)| {
        let mut seen = std::collections::HashSet::new();
        values.retain(|v| seen.insert(v.clone()));
        let mut node = Node::new(n);
        node.set_values(values);
        node.set_comment(c);
        node
    })
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        (name(), prop::collection::vec(inner, 1..5), comment(), any::<bool>()).prop_map(|(n, children, c, tag)| {
            let mut node = Node::new(n);
            for child in children {
                node.insert_child(child);
            }
            // A tag node's instances carry no values of their own, and a tag node's own comment
            // is not part of the format (the instance comments are).
            let tag = tag && node.children().iter().all(|ch| ch.values().is_empty());
            node.set_tag(tag);
            if tag {
                // Tag instances (`eth0` under `ethernet`) are never tag nodes themselves.
                let instances: Vec<Node> = node.children().to_vec();
                for mut instance in instances {
                    instance.set_tag(false);
                    node.insert_child(instance);
                }
            }
            if !tag {
                node.set_comment(c);
            }
            node
        })
    })
}

fn tree() -> impl Strategy<Value = Tree> {
    prop::collection::vec(node(), 0..6).prop_map(|nodes| {
        let mut root = Node::new("");
        for n in nodes {
            root.insert_child(n);
        }
        Tree::from_root(root)
    })
}

/// The same tree with tag flags cleared (the command format does not carry them).
fn untagged(tree: &Tree) -> Tree {
    fn clear(node: &Node) -> Node {
        let mut copy = node.shallow_clone();
        copy.set_tag(false);
        for child in node.children() {
            copy.insert_child(clear(child));
        }
        copy
    }
    Tree::from_root(clear(tree.root()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Hierarchical format: parse(render(t)) == t, exactly.
    #[test]
    fn hierarchical_round_trip(t in tree()) {
        let text = render_config(&t, RenderOptions::default());
        let back = parse_tree(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &t, "{}", text);
        prop_assert_eq!(render_config(&back, RenderOptions::default()), text);
    }

    /// Command format: parse(render(t)) == t (tag flags aside), and the digest agrees.
    #[test]
    fn commands_round_trip(t in tree()) {
        let text = render_commands(&t, Verb::Set);
        let back = Config::from_commands(&text, &Schema::empty())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back.tree, &untagged(&t), "{}", text);
        prop_assert_eq!(digest(&back.tree), digest(&t));
    }

    /// apply(old, diff(old, new)) == new, through the command text.
    #[test]
    fn diff_applies(old in tree(), new in tree()) {
        let d = diff(&old, &new);
        let text = render_command_list(&d.commands());
        let commands = parse_commands(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let mut applied = old.clone();
        apply_commands(&mut applied, &commands, &Schema::additive())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(canonical_text(&applied), canonical_text(&new), "{}", text);
        prop_assert!(diff(&applied, &new).commands().is_empty());
        // Equal trees have an empty diff and equal digests.
        prop_assert!(diff(&new, &new).commands().is_empty());
    }

    /// A tree and its mutated copy differ in digest; equal trees agree.
    #[test]
    fn digest_detects_changes(t in tree(), extra in name(), v in value()) {
        let mut changed = t.clone();
        let d0 = digest(&t);
        changed.set(&["zz-extra", extra.as_str()], Some(&v), vyos_config::ValueBehaviour::Add, &|_| false).unwrap();
        prop_assert_ne!(digest(&changed), d0.clone());
        prop_assert_eq!(digest(&t.clone()), d0);
    }
}

/// Hostile input never panics, and errors carry a position.
mod hostile {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn parser_never_panics(text in "[a-c {}\"'/*\\\\\n\t#;]{0,64}") {
            if let Err(e) = parse_tree(&text) {
                prop_assert!(e.line >= 1 && e.column >= 1);
            }
            let _ = Config::parse(&text);
        }

        #[test]
        fn command_parser_never_panics(text in "[a-c setdlomn'\"\\\\$();|&\n#]{0,64}") {
            if let Ok(cmds) = parse_commands(&text) {
                let mut t = Tree::new();
                let _ = apply_commands(&mut t, &cmds, Schema::vyos());
            }
        }
    }
}
