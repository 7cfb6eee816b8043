//! Renderers for both formats, byte for byte as VyOS's config library prints them.
//!
//! Hierarchical (`render_config`): 4 spaces per level, values always double-quoted, names
//! never quoted, tag nodes as `ethernet eth0 {`, a childless non-tag node as a bare name,
//! comments as `/* text */` on the line before their node.
//!
//! Commands (`render_commands`): one `set <path> '<value>'` line per value, valueless leaves as
//! `set <path>`, a node's `comment <path> '<text>'` after its own lines, lines joined with `\n`
//! and no trailing newline.
//!
//! One deliberate difference: VyOS prints a value containing `'` as `'it's'`, which no parser
//! can read back. Here the quote is escaped (`'it\'s'`), which VyOS's own lexer decodes the
//! same way; values without `'` render identically.

use crate::tree::{Node, Tree};

/// VyOS's `Util.escape_string`: `"` and `\` and the usual control characters get a backslash,
/// other control characters become `\DDD` (decimal), bytes ≥ 0x80 pass through.
pub fn escape(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let n = c as u32;
                out.push('\\');
                out.push(char::from(b'0' + (n / 100) as u8));
                out.push(char::from(b'0' + ((n / 10) % 10) as u8));
                out.push(char::from(b'0' + (n % 10) as u8));
            }
            c => out.push(c),
        }
    }
}

/// Escaping inside single quotes in command lines: VyOS's escaping plus `'` → `\'`.
pub fn escape_single(value: &str, out: &mut String) {
    let start = out.len();
    escape(value, out);
    if out[start..].contains('\'') {
        let escaped = out[start..].replace('\'', "\\'");
        out.truncate(start);
        out.push_str(&escaped);
    }
}

/// Options for the hierarchical renderer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Sort multi-values in natural order (VyOS's `ordered_values`); default keeps stored order.
    pub ordered_values: bool,
}

/// Renders a tree in the hierarchical format, without a version footer.
pub fn render_config(tree: &Tree, options: RenderOptions) -> String {
    let mut out = String::with_capacity(tree.count_nodes() * 32);
    for child in tree.children() {
        render_node(child, 0, options, &mut out);
    }
    out
}

fn indent(level: usize, out: &mut String) {
    const SPACES: &str = "                                                                ";
    let mut n = level * 4;
    while n > 0 {
        let take = n.min(SPACES.len());
        out.push_str(&SPACES[..take]);
        n -= take;
    }
}

fn render_comment(node: &Node, level: usize, out: &mut String) {
    if let Some(comment) = node.comment() {
        indent(level, out);
        out.push_str("/* ");
        out.push_str(comment);
        out.push_str(" */\n");
    }
}

fn render_node(node: &Node, level: usize, options: RenderOptions, out: &mut String) {
    if node.children().is_empty() {
        render_comment(node, level, out);
        render_values(node, level, options, out);
    } else if crate::tree::fits_tag_form(node) {
        // (A "tag" node with a comment of its own, or whose instance holds a value or is a tag
        // node itself, cannot be written in tag form without losing that, which VyOS's
        // renderer does silently; such a node is written as a plain block instead.)
        for child in node.children() {
            render_comment(child, level, out);
            indent(level, out);
            out.push_str(node.name());
            out.push(' ');
            out.push_str(child.name());
            out.push_str(" {\n");
            for grandchild in child.children() {
                render_node(grandchild, level + 1, options, out);
            }
            indent(level, out);
            out.push_str("}\n");
        }
    } else {
        render_comment(node, level, out);
        indent(level, out);
        out.push_str(node.name());
        out.push_str(" {\n");
        for child in node.children() {
            render_node(child, level + 1, options, out);
        }
        indent(level, out);
        out.push_str("}\n");
    }
}

fn render_values(node: &Node, level: usize, options: RenderOptions, out: &mut String) {
    if node.values().is_empty() {
        indent(level, out);
        out.push_str(node.name());
        out.push('\n');
        return;
    }
    let mut values: Vec<&String> = node.values().iter().collect();
    if options.ordered_values && values.len() > 1 {
        values.sort_by(|a, b| crate::natord::compare(a, b));
    }
    for value in values {
        indent(level, out);
        out.push_str(node.name());
        out.push_str(" \"");
        escape(value, out);
        out.push_str("\"\n");
    }
}

/// The verb of a rendered command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `set` lines (and `comment` lines for commented nodes).
    Set,
    /// `delete` lines (comments are not rendered).
    Delete,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Set => "set",
            Verb::Delete => "delete",
        }
    }
}

/// Renders a tree as command lines (`Verb::Set`: VyOS's `to_commands()`), joined with `\n`,
/// without a trailing newline.
pub fn render_commands(tree: &Tree, verb: Verb) -> String {
    let mut lines = Vec::new();
    let mut path = Vec::new();
    for child in tree.children() {
        command_lines(child, verb, &mut path, &mut lines);
    }
    lines.join("\n")
}

/// Renders a tree as a list of command lines.
pub fn command_lines_of(tree: &Tree, verb: Verb) -> Vec<String> {
    let mut lines = Vec::new();
    let mut path = Vec::new();
    for child in tree.children() {
        command_lines(child, verb, &mut path, &mut lines);
    }
    lines
}

fn command_lines<'a>(node: &'a Node, verb: Verb, path: &mut Vec<&'a str>, lines: &mut Vec<String>) {
    path.push(node.name());
    if node.children().is_empty() {
        if node.values().is_empty() {
            lines.push(format!("{} {}", verb.word(), path.join(" ")));
        } else {
            for value in node.values() {
                let mut line = format!("{} {} '", verb.word(), path.join(" "));
                escape_single(value, &mut line);
                line.push('\'');
                lines.push(line);
            }
        }
    } else {
        for child in node.children() {
            command_lines(child, verb, path, lines);
        }
    }
    if verb == Verb::Set
        && let Some(comment) = node.comment()
    {
        let mut line = format!("comment {} '", path.join(" "));
        escape_single(comment, &mut line);
        line.push('\'');
        lines.push(line);
    }
    path.pop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_tree;

    #[test]
    fn escape_like_vyos() {
        let mut s = String::new();
        escape("a\"b\\c\nd\te\r\u{8}\u{1}\u{7f}é'", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd\\te\\r\\b\\001\\127é'");
    }

    #[test]
    fn hierarchical_rules() {
        let t = parse_tree(
            "interfaces {\n ethernet eth10 {\n  address 10.0.0.1/24\n }\n ethernet \"eth2\" {\n  /* up */\n  description \"x\"\n }\n loopback lo {\n }\n dummy {\n }\n}\n",
        )
        .unwrap();
        let out = render_config(&t, RenderOptions::default());
        assert_eq!(
            out,
            "interfaces {\n    dummy\n    ethernet eth2 {\n        /* up */\n        description \"x\"\n    }\n    ethernet eth10 {\n        address \"10.0.0.1/24\"\n    }\n    loopback lo {\n    }\n}\n"
        );
    }

    #[test]
    fn commands_rules() {
        let t = parse_tree(
            "interfaces {\n    ethernet eth2 {\n        address 10.0.0.10/24\n        /* uplink */\n        description \"it's\"\n    }\n    ethernet eth10 {\n        address a\n        address b\n        disable\n    }\n}\n",
        )
        .unwrap();
        assert_eq!(
            render_commands(&t, Verb::Set),
            "set interfaces ethernet eth2 address '10.0.0.10/24'\n\
             set interfaces ethernet eth2 description 'it\\'s'\n\
             comment interfaces ethernet eth2 description 'uplink'\n\
             set interfaces ethernet eth10 address 'a'\n\
             set interfaces ethernet eth10 address 'b'\n\
             set interfaces ethernet eth10 disable"
        );
        assert_eq!(
            render_commands(&t, Verb::Delete).lines().next(),
            Some("delete interfaces ethernet eth2 address '10.0.0.10/24'")
        );
    }

    #[test]
    fn tag_node_with_valued_child_keeps_the_value() {
        let mut t = crate::Tree::new();
        t.set(&["protocols", "bgp", "system-as"], Some("65001"), crate::ValueBehaviour::Add, &|p: &[&str]| {
            p == ["protocols", "bgp"]
        })
        .unwrap();
        assert!(t.get(&["protocols", "bgp"]).unwrap().is_tag());
        let out = render_config(&t, RenderOptions::default());
        assert_eq!(out, "protocols {\n    bgp {\n        system-as \"65001\"\n    }\n}\n");
    }

    /// Commands can comment a tag node itself, which the tag form cannot show (VyOS drops it):
    /// such a node is written as a plain block so the comment survives.
    #[test]
    fn tag_node_with_its_own_comment_keeps_it() {
        let tags = |p: &[&str]| p == ["interfaces", "ethernet"];
        let mut t = crate::Tree::new();
        t.set(&["interfaces", "ethernet", "eth0", "mtu"], Some("1500"), crate::ValueBehaviour::Add, &tags).unwrap();
        t.set_comment(&["interfaces", "ethernet"], Some("all ports")).unwrap();
        let out = render_config(&t, RenderOptions::default());
        assert_eq!(
            out,
            "interfaces {\n    /* all ports */\n    ethernet {\n        eth0 {\n            mtu \"1500\"\n        }\n    }\n}\n"
        );
        let mut back = parse_tree(&out).unwrap();
        back.conform_to(&t);
        assert_eq!(back, t);
    }

    #[test]
    fn ordered_values() {
        let t = parse_tree("a 10\na 9\n").unwrap();
        assert_eq!(render_config(&t, RenderOptions::default()), "a \"10\"\na \"9\"\n");
        assert_eq!(render_config(&t, RenderOptions { ordered_values: true }), "a \"9\"\na \"10\"\n");
    }
}
