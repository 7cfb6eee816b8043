//! Parser for VyOS configuration command lists (`set`, `delete`, `comment`).
//!
//! One command per line; blank lines and lines starting with `#` are ignored. Words are split
//! on spaces and tabs; `'…'` and `"…"` quote, and adjacent quoted and bare parts join into one
//! word as in a shell. Inside quotes the escapes of VyOS's own format are decoded (`\'`, `\"`,
//! `\\`, `\n`, `\t`, `\r`, `\b`, `\f`, `\/` and `\DDD`), so the output of
//! `show configuration commands` (and of [`crate::render_commands`]) reads back exactly.
//!
//! Commands are data, never shell: the first word must be `set`, `delete` or `comment`;
//! unquoted shell syntax (`;`, `|`, `&`, `<`, `>`, `$`, backticks, backslashes) and command
//! substitution inside double quotes are refused with the line and column, so a template
//! parameter can never turn into something executed.
//! A NUL character (raw or `\000`), which VyOS cannot store, is refused as well.
//!
//! For `set` and `delete`, a *quoted* last word is the value; an unquoted last word is a path
//! element. VyOS itself decides with its schema whether a trailing word is a value, so both
//! spellings reach the router as the same argv; see [`crate::Tree::conform_to`] for how the
//! model reconciles them.

use std::fmt;

use crate::parse::MAX_DEPTH;
use crate::tree::{Path, invalid_name_reason, path_to_string};

/// Maximum number of words in one command: the verb, a path as deep as the hierarchical parser
/// accepts ([`MAX_DEPTH`]) and a value, so every parsed tree can be written as
/// commands.
pub const MAX_WORDS: usize = crate::parse::MAX_DEPTH + 2;

/// A command's verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `set <path> [value]`
    Set,
    /// `delete <path> [value]`
    Delete,
    /// `comment <path> <text>` (empty text clears the comment)
    Comment,
}

impl Op {
    /// The command word.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Comment => "comment",
        }
    }
}

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// The verb.
    pub op: Op,
    /// The configuration path.
    pub path: Path,
    /// The value (`set`/`delete`) or the comment text (`comment`).
    pub value: Option<String>,
    /// The 1-based source line (0 when built in code).
    pub line: usize,
}

impl Command {
    /// A `set` command.
    pub fn set(path: Path, value: Option<String>) -> Self {
        Command { op: Op::Set, path, value, line: 0 }
    }

    /// A `delete` command.
    pub fn delete(path: Path, value: Option<String>) -> Self {
        Command { op: Op::Delete, path, value, line: 0 }
    }

    /// A `comment` command.
    pub fn comment(path: Path, text: String) -> Self {
        Command { op: Op::Comment, path, value: Some(text), line: 0 }
    }

    /// The argv VyOS's `my_set`/`my_delete`/`my_comment` take: the path words, then the value.
    pub fn argv(&self) -> Vec<&str> {
        let mut argv: Vec<&str> = self.path.iter().map(String::as_str).collect();
        if let Some(value) = &self.value {
            argv.push(value);
        }
        argv
    }
}

impl fmt::Display for Command {
    /// Renders the command the way VyOS prints it, value in single quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.as_str())?;
        if !self.path.is_empty() {
            f.write_str(" ")?;
            f.write_str(&path_to_string(&self.path))?;
        }
        if let Some(value) = &self.value {
            let mut quoted = String::from(" '");
            crate::render::escape_single(value, &mut quoted);
            quoted.push('\'');
            f.write_str(&quoted)?;
        }
        Ok(())
    }
}

/// An error in a command list, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CommandError {
    /// Line of the error.
    pub line: usize,
    /// Column (character, from 1) of the error.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One word of a command line, as [`split_words`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word, quotes removed and escapes decoded.
    pub text: String,
    /// Whether any part of it was quoted.
    pub quoted: bool,
    /// Column (character, from 1) where it starts.
    pub column: usize,
    /// Byte offset in the line where it starts.
    pub start: usize,
    /// Byte offset in the line just after it.
    pub end: usize,
}

const NUL_MESSAGE: &str = "a NUL character, which VyOS cannot store";

/// Parses a command list.
pub fn parse_commands(text: &str) -> Result<Vec<Command>, CommandError> {
    let mut out = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push(parse_line(line, line_no)?);
    }
    Ok(out)
}

/// Parses one command line (without the newline).
pub fn parse_line(line: &str, line_no: usize) -> Result<Command, CommandError> {
    let err = |column: usize, message: String| CommandError { line: line_no, column, message };
    let words = split_words(line, line_no)?;
    let Some(first) = words.first() else {
        return Err(err(1, "empty command".to_owned()));
    };
    let op = match (first.text.as_str(), first.quoted) {
        ("set", false) => Op::Set,
        ("delete", false) => Op::Delete,
        ("comment", false) => Op::Comment,
        (other, _) => {
            return Err(err(
                first.column,
                format!(
                    "unknown command {other:?}: only set, delete and comment are allowed (commit, save and the like are run by the agent)"
                ),
            ));
        }
    };
    if words.len() > MAX_WORDS {
        return Err(err(words[MAX_WORDS].column, format!("too many words (more than {MAX_WORDS})")));
    }
    let rest = &words[1..];
    let (path_words, value) = match op {
        Op::Comment => {
            if rest.len() < 2 {
                return Err(err(first.column, "comment needs a path and a text: comment <path> '<text>'".to_owned()));
            }
            let (text, path) = rest.split_last().ok_or_else(|| err(1, "empty".into()))?;
            (path, Some(text.text.clone()))
        }
        Op::Set | Op::Delete => match rest.split_last() {
            None => return Err(err(first.column, format!("{} needs a configuration path", op.as_str()))),
            Some((last, path)) if last.quoted => {
                if path.is_empty() {
                    return Err(err(
                        last.column,
                        format!("{} needs a configuration path before the value", op.as_str()),
                    ));
                }
                (path, Some(last.text.clone()))
            }
            Some(_) => (rest, None),
        },
    };
    // A path the hierarchical format could not nest (it would not parse back after rendering).
    if let Some(word) = path_words.get(MAX_DEPTH) {
        return Err(err(word.column, format!("path deeper than {MAX_DEPTH} levels")));
    }
    let mut path = Vec::with_capacity(path_words.len());
    for word in path_words {
        // The hierarchical parser applies the same rule, so a tree from either format can be
        // written in the other; a quoted path word could otherwise carry shell characters that
        // the rendered (unquoted) path would then hold, and the line would not parse back.
        if let Some(reason) = invalid_name_reason(&word.text) {
            return Err(err(word.column, format!("invalid path element {:?}: {reason}", word.text)));
        }
        path.push(word.text.clone());
    }
    Ok(Command { op, path, value, line: line_no })
}

/// Splits one command line (without its newline) into words exactly as [`parse_line`] does,
/// refusing the same shell syntax; for tools that rewrite words while leaving the rest of the
/// line as it is.
pub fn split_words(line: &str, line_no: usize) -> Result<Vec<Word>, CommandError> {
    // Syntax characters are all ASCII, so the line is scanned as bytes; multi-byte UTF-8
    // sequences are copied through untouched. Columns in errors count characters.
    let col = |byte: usize| line[..byte].chars().count() + 1;
    let err = |byte: usize, message: String| CommandError { line: line_no, column: col(byte), message };
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut text: Vec<u8> = Vec::new();
        let mut quoted = false;
        while i < b.len() && !matches!(b[i], b' ' | b'\t') {
            let c = b[i];
            match c {
                b'\'' | b'"' => {
                    quoted = true;
                    let open = i;
                    i += 1;
                    loop {
                        let Some(&q) = b.get(i) else {
                            return Err(err(open, format!("missing closing {} quote", c as char)));
                        };
                        if q == c {
                            i += 1;
                            break;
                        }
                        if c == b'"' && (q == b'`' || (q == b'$' && b.get(i + 1) == Some(&b'('))) {
                            return Err(err(
                                i,
                                "command substitution is not allowed: commands are data, not shell; use single quotes for a literal value".to_owned(),
                            ));
                        }
                        if q == b'\\' {
                            i += 1;
                            let Some(&e) = b.get(i) else {
                                return Err(err(open, format!("missing closing {} quote", c as char)));
                            };
                            match e {
                                b'n' => text.push(b'\n'),
                                b't' => text.push(b'\t'),
                                b'r' => text.push(b'\r'),
                                b'b' => text.push(0x08),
                                b'f' => text.push(0x0c),
                                b'\\' | b'\'' | b'"' | b'/' => text.push(e),
                                d if d.is_ascii_digit()
                                    && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                                    && b.get(i + 2).is_some_and(u8::is_ascii_digit) =>
                                {
                                    let n = b[i..i + 3].iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                                    if n == 0 {
                                        return Err(err(i - 1, NUL_MESSAGE.to_owned()));
                                    }
                                    if n < 0x20 || n == 0x7f {
                                        // `\DDD` as VyOS's escaper writes control characters.
                                        text.push(n as u8);
                                        i += 2;
                                    } else {
                                        text.push(b'\\');
                                        text.push(d);
                                    }
                                }
                                other => {
                                    // Unknown escape: keep it literally, as the config parser does.
                                    text.push(b'\\');
                                    if other.is_ascii() {
                                        text.push(other);
                                    } else {
                                        // Let the loop copy the multi-byte character.
                                        continue;
                                    }
                                }
                            }
                            i += 1;
                            continue;
                        }
                        if q == 0 {
                            return Err(err(i, NUL_MESSAGE.to_owned()));
                        }
                        text.push(q);
                        i += 1;
                    }
                }
                0 => return Err(err(i, NUL_MESSAGE.to_owned())),
                b';' | b'|' | b'&' | b'<' | b'>' | b'$' | b'`' | b'\\' | b'(' | b')' => {
                    return Err(err(
                        i,
                        format!(
                            "unquoted {:?} is not allowed: commands are data, not shell; quote the value ('...')",
                            c as char
                        ),
                    ));
                }
                _ => {
                    text.push(c);
                    i += 1;
                }
            }
        }
        // Only ASCII bytes were added or removed around intact UTF-8 sequences.
        let text = String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        words.push(Word { text, quoted, column: col(start), start, end: i });
    }
    Ok(words)
}

/// Renders commands one per line (each with a trailing newline).
pub fn render_command_list(commands: &[Command]) -> String {
    let mut out = String::new();
    for c in commands {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Command {
        parse_line(line, 1).unwrap()
    }

    #[test]
    fn values_and_paths() {
        let c = one("set interfaces ethernet eth0 address '192.0.2.1/24'");
        assert_eq!(c.op, Op::Set);
        assert_eq!(c.path, ["interfaces", "ethernet", "eth0", "address"]);
        assert_eq!(c.value.as_deref(), Some("192.0.2.1/24"));
        let c = one("set interfaces ethernet eth0 disable");
        assert_eq!(c.path.len(), 4);
        assert_eq!(c.value, None);
        let c = one("delete system host-name \"vyos\"");
        assert_eq!(c.op, Op::Delete);
        assert_eq!(c.value.as_deref(), Some("vyos"));
        let c = one("set system name-server ''");
        assert_eq!(c.value.as_deref(), Some(""));
        let c = one("  set   a\tb   'x y'  ");
        assert_eq!(c.path, ["a", "b"]);
        assert_eq!(c.value.as_deref(), Some("x y"));
    }

    #[test]
    fn comment_command() {
        let c = one("comment interfaces ethernet eth0 'uplink to core'");
        assert_eq!(c.op, Op::Comment);
        assert_eq!(c.path, ["interfaces", "ethernet", "eth0"]);
        assert_eq!(c.value.as_deref(), Some("uplink to core"));
        assert!(parse_line("comment x", 1).is_err());
    }

    #[test]
    fn escapes_round_trip() {
        let c = one(r#"set a b 'it\'s a \"test\" \\ \n \001'"#);
        assert_eq!(c.value.as_deref(), Some("it's a \"test\" \\ \n \u{1}"));
        assert_eq!(parse_line(&c.to_string(), 1).unwrap(), c.clone());
        // Adjacent parts join like in a shell.
        assert_eq!(one("set a b 'it'\"'\"'s'").value.as_deref(), Some("it's"));
    }

    #[test]
    fn blank_and_comment_lines() {
        let cmds = parse_commands("\n# a comment\n   \nset a b\r\n  # indented comment\ndelete c\n").unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].line, 4);
        assert_eq!(cmds[1].line, 6);
    }

    #[test]
    fn rejects_non_config_commands() {
        for (text, col) in [("commit", 1), ("save", 1), ("run show version", 1), ("'set' a b", 1), ("exit", 1)] {
            let e = parse_line(text, 7).unwrap_err();
            assert_eq!((e.line, e.column), (7, col), "{text}: {e}");
            assert!(e.message.contains("only set, delete and comment"), "{e}");
        }
    }

    #[test]
    fn rejects_shell() {
        for text in [
            "set system host-name x; reboot",
            "set system host-name $(reboot)",
            "set system host-name `reboot`",
            "set a b c > /etc/passwd",
            "set a b | sh",
            "set a b && reboot",
            "set a \"$(reboot)\"",
            "set a \"`id`\"",
            "set a b\\ c",
        ] {
            let e = parse_line(text, 3).unwrap_err();
            assert_eq!(e.line, 3, "{text}");
            assert!(e.message.contains("not shell") || e.message.contains("substitution"), "{text}: {e}");
        }
        // Inside single quotes anything is data.
        let c = one("set a b '$(reboot); `id` | x > y'");
        assert_eq!(c.value.as_deref(), Some("$(reboot); `id` | x > y"));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(parse_line("set", 1).is_err());
        assert!(parse_line("set 'value-only'", 1).is_err());
        assert!(parse_line("set a 'b c' d", 1).is_err()); // quoted path element with a space
        assert!(parse_line("set a 'unterminated", 1).is_err());
        let e = parse_line("set a '' b", 1).unwrap_err();
        assert_eq!(e.column, 7);
    }

    /// VyOS cannot store a NUL: refused raw or escaped, quoted or not, with its column.
    #[test]
    fn nul_is_refused() {
        for (line, column) in [
            ("set a 'x\0y'", 9),
            ("set a x\0y", 8),
            ("set a 'x\\000'", 9),
            ("set a \"\\000\"", 8),
            ("comment a '\0'", 12),
        ] {
            let e = parse_line(line, 5).unwrap_err();
            assert_eq!((e.line, e.column), (5, column), "{line:?}: {e}");
            assert!(e.message.contains("NUL"), "{e}");
        }
        assert_eq!(one("set a 'x\\001'").value.as_deref(), Some("x\u{1}"));
    }

    #[test]
    fn words_have_spans() {
        let line = "set a  'b c'd \"e\"";
        let words = split_words(line, 1).unwrap();
        let spans: Vec<(&str, &str, bool)> =
            words.iter().map(|w| (&line[w.start..w.end], w.text.as_str(), w.quoted)).collect();
        assert_eq!(spans, [("set", "set", false), ("a", "a", false), ("'b c'd", "b cd", true), ("\"e\"", "e", true)]);
    }

    #[test]
    fn argv() {
        let c = one("set a b 'v w'");
        assert_eq!(c.argv(), ["a", "b", "v w"]);
    }

    /// Found by fuzzing: a quoted path word holding a shell character parsed, but its rendered
    /// (unquoted) form did not parse back.
    #[test]
    fn shell_characters_in_quoted_path_words_are_refused() {
        for line in ["set a 'b`c' d", "set 'x;y' 'v'", "delete a'$'b c"] {
            let e = parse_line(line, 2).unwrap_err();
            assert!(e.message.contains("is not allowed in a name"), "{line}: {e}");
        }
        assert_eq!(one("set a 'b`c;$(x)'").value.as_deref(), Some("b`c;$(x)"));
    }

    /// Found by fuzzing `commands_parse`: a `set` with 129 path words built a tree one level
    /// deeper than the hierarchical parser accepts, so its render did not parse back. Paths are
    /// limited to the same depth; the longest path still takes a value or a comment text.
    #[test]
    fn paths_deeper_than_the_hierarchical_format_are_refused() {
        let words = |n: usize| vec!["n"; n].join(" ");
        let e = parse_line(&format!("set {}", words(MAX_DEPTH + 1)), 4).unwrap_err();
        assert_eq!((e.line, e.column), (4, 5 + 2 * MAX_DEPTH), "{e}");
        assert!(e.message.contains("deeper than 128 levels"), "{e}");
        let mut tree = crate::Tree::new();
        let commands = parse_commands(&format!("set {0} 'v'\ncomment {0} 'c'\n", words(MAX_DEPTH))).unwrap();
        crate::apply_commands(&mut tree, &commands, crate::Schema::vyos()).unwrap();
        let text = crate::render_config(&tree, crate::RenderOptions::default());
        assert_eq!(crate::parse_tree(&text).unwrap(), tree);
    }

    /// Found by the property tests: a node named `//…` or `/*` rendered to hierarchical text read
    /// back as a comment, so the configuration silently lost it. Such names are refused.
    #[test]
    fn names_that_would_read_back_as_comments_are_refused() {
        for line in ["set //", "set a //b", "set /*", "delete x /*"] {
            let e = parse_line(line, 3).unwrap_err();
            assert_eq!(e.line, 3);
            assert!(e.message.contains("cannot start a comment"), "{line}: {e}");
        }
        let mut tree = crate::Tree::new();
        assert!(tree.set(&["//x"], None, crate::ValueBehaviour::Add, &|_| false).is_err());
        assert!(tree.set(&["/*"], None, crate::ValueBehaviour::Add, &|_| false).is_err());
        // Elsewhere in a name, slashes and stars are ordinary characters.
        for name in ["a//b", "/*x", "/", "*/", "10.0.0.0/8"] {
            assert!(tree.set(&[name], None, crate::ValueBehaviour::Add, &|_| false).is_ok(), "{name}");
        }
        let text = crate::render_config(&tree, crate::RenderOptions::default());
        assert_eq!(crate::parse_tree(&text).unwrap(), tree, "{text}");
    }
}
