//! Whole configuration files: format detection, the version footer, reading and writing.
//!
//! A saved config.boot ends with a version footer that VyOS reads to decide which migration
//! scripts to run:
//!
//! ```text
//! // Warning: Do not remove the following line.
//! // vyos-config-version: "bgp@5:broadcast-relay@1:…"
//! // Release version: 1.4.0
//! ```
//!
//! (VyOS ≤ 1.2 wrote the same lines as `/* … */` comments.) The footer is kept aside verbatim,
//! never part of the tree or its digest, and written back after the body on render — dropping it
//! would make VyOS run every migration script on the next load.

use crate::apply::{ApplyError, apply_commands};
use crate::commands::{CommandError, parse_commands};
use crate::parse::{ParseError, parse_tree};
use crate::render::{RenderOptions, render_config};
use crate::schema::Schema;
use crate::tree::Tree;

/// The two text formats of a VyOS configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// config.boot style, curly braces.
    Hierarchical,
    /// `set`/`delete`/`comment` lines.
    Commands,
}

/// Any error reading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The hierarchical text does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The command list does not parse.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A command of the list cannot be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// A configuration read from text: the tree and, if there was one, the version footer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// The configuration.
    pub tree: Tree,
    /// The version footer lines, verbatim (without a trailing newline).
    pub footer: Option<String>,
}

/// Guesses the format. Command lists start (after blank lines) with `set`, `delete`, `comment`
/// or a `#` comment; anything else is hierarchical. Those words are also legal node names, so a
/// text that opens (`… {`) or closes (`}`) a block anywhere is hierarchical whatever its first
/// word: no command line ends with an unquoted brace.
pub fn detect_format(text: &str) -> Format {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Format::Hierarchical;
    };
    let word = first.split_whitespace().next().unwrap_or("");
    let looks_like_commands = first.starts_with('#') || matches!(word, "set" | "delete" | "comment");
    let has_blocks = text.lines().map(str::trim).any(|l| l == "}" || l.ends_with(" {") || l == "{");
    if looks_like_commands && !has_blocks { Format::Commands } else { Format::Hierarchical }
}

const FOOTER_STARTS: &[&str] = &[
    "// Warning: Do not remove the following line.",
    "/* Warning: Do not remove the following line. */",
    "// vyos-config-version:",
    "/* === vyatta-config-version:",
];

/// Splits a hierarchical file into body and footer. The footer starts at the first line that
/// begins like a VyOS version footer, provided only comment lines and blank lines follow.
pub fn split_footer(text: &str) -> (&str, Option<&str>) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if FOOTER_STARTS.iter().any(|s| trimmed.starts_with(s)) {
            let rest = &text[offset..];
            let all_comments = rest.lines().all(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with("//") || (l.starts_with("/*") && l.ends_with("*/"))
            });
            if all_comments {
                let footer = rest.trim_end();
                return (&text[..offset], (!footer.is_empty()).then_some(footer));
            }
        }
        offset += line.len();
    }
    (text, None)
}

impl Config {
    /// Reads either format (detected with [`detect_format`]).
    pub fn parse(text: &str) -> Result<Config, Error> {
        match detect_format(text) {
            Format::Hierarchical => Ok(Config::parse_hierarchical(text)?),
            Format::Commands => Config::from_commands(text, Schema::vyos()),
        }
    }

    /// Reads a hierarchical file, setting the version footer aside first (as VyOS's loader
    /// does), so old files with a `/* … */` footer load too.
    pub fn parse_hierarchical(text: &str) -> Result<Config, ParseError> {
        let (body, footer) = split_footer(text);
        Ok(Config { tree: parse_tree(body)?, footer: footer.map(str::to_owned) })
    }

    /// Builds a configuration by applying a command list to an empty tree.
    pub fn from_commands(text: &str, schema: &Schema) -> Result<Config, Error> {
        let commands = parse_commands(text)?;
        let mut tree = Tree::new();
        apply_commands(&mut tree, &commands, schema)?;
        Ok(Config { tree, footer: None })
    }

    /// The hierarchical render, followed by the footer when there is one (as VyOS saves it).
    pub fn render(&self) -> String {
        let mut out = render_config(&self.tree, RenderOptions::default());
        if let Some(footer) = &self.footer {
            out.push('\n');
            out.push_str(footer);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(detect_format("\n\nset a b\n"), Format::Commands);
        assert_eq!(detect_format("# hi\nset a b\n"), Format::Commands);
        assert_eq!(detect_format("delete a\n"), Format::Commands);
        assert_eq!(detect_format("interfaces {\n}\n"), Format::Hierarchical);
        assert_eq!(detect_format(""), Format::Hierarchical);
        // Nodes named like the command words, and a leading `#`, in hierarchical files.
        assert_eq!(detect_format("set {\n    a b\n}\n"), Format::Hierarchical);
        assert_eq!(detect_format("delete x {\n}\n"), Format::Hierarchical);
        assert_eq!(detect_format("comment \"c\"\nsystem {\n}\n"), Format::Hierarchical);
        assert_eq!(detect_format("# hi\ninterfaces {\n}\n"), Format::Hierarchical);
        // A brace inside a quoted command value does not make a block.
        assert_eq!(detect_format("set system login banner post-login \"{\"\n"), Format::Commands);
    }

    #[test]
    fn parses_a_hierarchical_file_whose_first_node_is_a_command_word() {
        let c = Config::parse("set {\n    a b\n}\n").unwrap();
        assert_eq!(c.tree.values(&["set", "a"]), ["b"]);
        // VyOS's lexer takes `#` as an identifier: in a hierarchical file it is a node.
        let c = Config::parse("# hi\ninterfaces {\n}\n").unwrap();
        assert_eq!(c.tree.values(&["#"]), ["hi"]);
    }

    #[test]
    fn footer_modern_and_legacy() {
        let modern = "a b\n\n// Warning: Do not remove the following line.\n// vyos-config-version: \"x@1\"\n// Release version: 1.4.0\n";
        let c = Config::parse(modern).unwrap();
        assert_eq!(c.tree.values(&["a"]), ["b"]);
        assert_eq!(
            c.footer.as_deref(),
            Some(
                "// Warning: Do not remove the following line.\n// vyos-config-version: \"x@1\"\n// Release version: 1.4.0"
            )
        );
        assert_eq!(
            c.render(),
            "a \"b\"\n\n// Warning: Do not remove the following line.\n// vyos-config-version: \"x@1\"\n// Release version: 1.4.0\n"
        );
        let legacy = "a b\n/* Warning: Do not remove the following line. */\n/* === vyatta-config-version: \"x@1\" === */\n/* Release version: 1.2.6 */\n";
        let c = Config::parse(legacy).unwrap();
        assert!(c.footer.as_deref().is_some_and(|f| f.starts_with("/* Warning")));
        // VyOS's own parser rejects the legacy footer in the body.
        assert!(parse_tree(legacy).is_err());
    }

    #[test]
    fn footer_like_line_followed_by_config_is_not_a_footer() {
        let text = "// vyos-config-version: \"x\"\na b\n";
        let (body, footer) = split_footer(text);
        assert_eq!(body, text);
        assert!(footer.is_none());
    }
}
