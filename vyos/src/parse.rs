//! Parser for VyOS's hierarchical configuration format (config.boot).
//!
//! This follows VyOS's own lexer and grammar (vyos1x-config):
//!
//! ```text
//! config       = { node_content } EOF
//! node_content = { COMMENT } ( node | tag_node | leaf_node )   (last comment wins, trimmed)
//! node         = IDENT "{" { node_content } "}"
//! tag_node     = IDENT value "{" { node_content } "}"
//! leaf_node    = IDENT [ value ] ( NEWLINE | EOF )
//! value        = IDENT | STRING
//! ```
//!
//! Newlines are tokens only right after an identifier or a string (the "lexer hack" that
//! makes `address dhcp` a leaf with a value). `//` comments run to the end of the line and are
//! dropped. At every level, siblings with the same name are merged (values appended, children
//! joined); a merged node that then has two children of the same name is an error, as in VyOS.
//!
//! Deliberate differences from VyOS, each for robustness: line numbers stay right after
//! multi-line comments (VyOS stops counting newlines inside comments); an unknown backslash
//! escape inside a quoted string is kept literally instead of failing, and `\DDD` (which VyOS's
//! own escaper writes for control characters) is decoded so every value round-trips; a node that ends up with
//! both a value and children, which VyOS would silently render without the value, is an error;
//! a node or tag instance name that the command format cannot carry (control and shell
//! characters, whitespace, quotes; see [`crate::tree::invalid_name_reason`]) is an error, so every
//! accepted tree can be written as commands; a value repeated on one leaf is kept once (`set`
//! cannot store it twice); an empty `/* */` comment is no comment (commands cannot say it); a tag
//! node merged with a plain block that gives an instance a value or a tag form of its own is not
//! a tag node (the tag form could not be rendered);
//! nesting deeper than [`MAX_DEPTH`] is an error instead of a stack overflow; a NUL character
//! (raw or `\000`), which VyOS cannot store, is an error.

use std::fmt;

use crate::natord;
use crate::tree::{Node, Tree, invalid_name_reason};

/// Maximum nesting depth accepted by the parser.
pub const MAX_DEPTH: usize = 128;

/// A parse error with its 1-based line and column (in bytes, like VyOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Line of the offending token.
    pub line: usize,
    /// Column (byte offset in the line, from 1) of the offending token.
    pub column: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of parse errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A token in the wrong place; VyOS says "Invalid syntax.". The detail names what was found.
    Syntax {
        /// What was found and, where useful, what was expected.
        detail: String,
    },
    /// A quoted string without its closing quote.
    UnterminatedString {
        /// The quote character.
        quote: char,
    },
    /// A `/*` comment without `*/`.
    UnterminatedComment,
    /// After merging same-named siblings, a node has two children with the same name.
    DuplicateChild {
        /// The node's path as VyOS prints it (`interfaces ethernet`).
        node: String,
        /// The duplicated child name.
        child: String,
    },
    /// A node has both values and child nodes.
    ValueAndChildren {
        /// The node's path.
        node: String,
    },
    /// A node or tag instance name that the command format cannot carry (see
    /// [`crate::tree::invalid_name_reason`]).
    InvalidName {
        /// The name as read (quotes removed, escapes decoded).
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A NUL character, raw or written `\000`: VyOS cannot store it.
    Nul,
}

impl ParseError {
    /// The message in the exact words VyOS's config library uses, where it has one.
    pub fn vyos_message(&self) -> String {
        match &self.kind {
            ParseErrorKind::Syntax { .. } => {
                format!("Syntax error on line {}, character {}: Invalid syntax.", self.line, self.column)
            }
            ParseErrorKind::UnterminatedString { quote: '"' } => format!(
                "Syntax error on line {}, character {}: Quoted string is missing the closing double quote",
                self.line, self.column
            ),
            ParseErrorKind::UnterminatedString { .. } => format!(
                "Syntax error on line {}, character {}: Quoted string is missing the closing single quote",
                self.line, self.column
            ),
            ParseErrorKind::DuplicateChild { node, child } => {
                format!("Node \"{node}\" has two children named \"{child}\"")
            }
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, column) = (self.line, self.column);
        match &self.kind {
            ParseErrorKind::Syntax { detail } => {
                write!(f, "Syntax error on line {line}, character {column}: Invalid syntax. ({detail})")
            }
            ParseErrorKind::UnterminatedString { quote } => write!(
                f,
                "Syntax error on line {line}, character {column}: quoted string is missing the closing {quote}"
            ),
            ParseErrorKind::UnterminatedComment => {
                write!(f, "Syntax error on line {line}, character {column}: comment is missing the closing */")
            }
            ParseErrorKind::DuplicateChild { node, child } => {
                write!(f, "Node \"{node}\" has two children named \"{child}\" (line {line}, character {column})")
            }
            ParseErrorKind::ValueAndChildren { node } => {
                write!(f, "Node \"{node}\" has both a value and child nodes (line {line}, character {column})")
            }
            ParseErrorKind::InvalidName { name, reason } => {
                write!(f, "Syntax error on line {line}, character {column}: invalid node name {name:?}: {reason}")
            }
            ParseErrorKind::TooDeep => {
                write!(f, "Syntax error on line {line}, character {column}: nesting deeper than {MAX_DEPTH} levels")
            }
            ParseErrorKind::Nul => {
                write!(f, "Syntax error on line {line}, character {column}: a NUL character, which VyOS cannot store")
            }
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Comment(String),
    LBrace,
    RBrace,
    Newline,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("found word {s:?}"),
            Tok::Str(s) => format!("found quoted string {s:?}"),
            Tok::Comment(_) => "found a comment".to_owned(),
            Tok::LBrace => "found '{'".to_owned(),
            Tok::RBrace => "found '}'".to_owned(),
            Tok::Newline => "found end of line".to_owned(),
            Tok::Eof => "found end of input".to_owned(),
        }
    }
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    line: usize,
    line_start: usize,
    /// True right after an identifier or string: the next newline is significant.
    inside_node: bool,
    /// Byte offset where the token last returned by [`Lexer::next`] starts.
    token_start: usize,
    /// Whether tokens carry their text ([`lexemes`] only needs their kinds and spans).
    keep_text: bool,
}

fn is_ident_byte(b: u8) -> bool {
    // NUL ends a word, so that the next token reports it.
    !matches!(b, 0 | b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'}' | b'"' | b'\'')
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            src: text.as_bytes(),
            text,
            pos: 0,
            line: 1,
            line_start: 0,
            inside_node: false,
            token_start: 0,
            keep_text: true,
        }
    }

    fn err(&self, line: usize, column: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { line, column, kind }
    }

    /// Returns the next token and its (line, column).
    fn next(&mut self) -> Result<(Tok, usize, usize), ParseError> {
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                self.token_start = self.pos;
                return Ok((Tok::Eof, self.line, self.pos - self.line_start + 1));
            };
            let (line, column) = (self.line, self.pos - self.line_start + 1);
            self.token_start = self.pos;
            match b {
                0 => return Err(self.err(line, column, ParseErrorKind::Nul)),
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                    if self.inside_node {
                        self.inside_node = false;
                        return Ok((Tok::Newline, line, column));
                    }
                }
                b'"' | b'\'' => {
                    let s = self.quoted(b, line, column)?;
                    self.inside_node = true;
                    return Ok((Tok::Str(s), line, column));
                }
                b'{' => {
                    self.pos += 1;
                    self.inside_node = false;
                    return Ok((Tok::LBrace, line, column));
                }
                b'}' => {
                    self.pos += 1;
                    self.inside_node = false;
                    return Ok((Tok::RBrace, line, column));
                }
                _ => {
                    let start = self.pos;
                    let mut end = start;
                    while end < self.src.len() && is_ident_byte(self.src[end]) {
                        end += 1;
                    }
                    let rest = &self.src[start..];
                    if rest.starts_with(b"//") {
                        // A line comment always wins over an identifier (it is at least as long).
                        while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                            if self.src[self.pos] == 0 {
                                return Err(self.err(line, self.pos - self.line_start + 1, ParseErrorKind::Nul));
                            }
                            self.pos += 1;
                        }
                        continue;
                    }
                    if rest.starts_with(b"/*") && end - start == 2 {
                        let c = self.comment(line, column)?;
                        self.inside_node = false;
                        return Ok((Tok::Comment(c), line, column));
                    }
                    self.pos = end;
                    self.inside_node = true;
                    let word = if self.keep_text { self.text[start..end].to_owned() } else { String::new() };
                    return Ok((Tok::Ident(word), line, column));
                }
            }
        }
    }

    fn quoted(&mut self, quote: u8, line: usize, column: usize) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                return Err(self.err(line, column, ParseErrorKind::UnterminatedString { quote: quote as char }));
            };
            self.pos += 1;
            if b == quote {
                break;
            }
            match b {
                b'\\' => {
                    let Some(&e) = self.src.get(self.pos) else {
                        return Err(self.err(
                            line,
                            column,
                            ParseErrorKind::UnterminatedString { quote: quote as char },
                        ));
                    };
                    let decoded = match e {
                        b'/' => Some(b'/'),
                        b'\\' => Some(b'\\'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'\'' => Some(b'\''),
                        b'"' => Some(b'"'),
                        _ => None,
                    };
                    match decoded {
                        Some(d) => {
                            if self.keep_text {
                                out.push(d);
                            }
                            self.pos += 1;
                        }
                        None => match self.decimal_escape() {
                            Some(0) => {
                                let column = self.pos - self.line_start;
                                return Err(self.err(self.line, column, ParseErrorKind::Nul));
                            }
                            // `\DDD`, which VyOS's escaper writes for other control characters.
                            Some(d) => {
                                if self.keep_text {
                                    out.push(d);
                                }
                                self.pos += 3;
                            }
                            // Unknown escape: keep the backslash; the next byte is read normally.
                            None => {
                                if self.keep_text {
                                    out.push(b'\\');
                                }
                            }
                        },
                    }
                }
                b'\n' => {
                    if self.keep_text {
                        out.push(b'\n');
                    }
                    self.line += 1;
                    self.line_start = self.pos;
                }
                0 => return Err(self.err(self.line, self.pos - self.line_start, ParseErrorKind::Nul)),
                _ if self.keep_text => out.push(b),
                _ => {}
            }
        }
        // The input is valid UTF-8 and escapes only produce ASCII, so this cannot fail; be safe anyway.
        Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Three decimal digits at the current position naming a control character (< 0x20, 0x7f).
    fn decimal_escape(&self) -> Option<u8> {
        let digits = self.src.get(self.pos..self.pos + 3)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        (n < 0x20 || n == 0x7f).then_some(n as u8)
    }

    fn comment(&mut self, line: usize, column: usize) -> Result<String, ParseError> {
        self.pos += 2;
        let start = self.pos;
        loop {
            if self.pos + 1 >= self.src.len() {
                return Err(self.err(line, column, ParseErrorKind::UnterminatedComment));
            }
            if self.src[self.pos] == b'*' && self.src[self.pos + 1] == b'/' {
                let text = if self.keep_text { self.text[start..self.pos].to_owned() } else { String::new() };
                self.pos += 2;
                return Ok(text);
            }
            if self.src[self.pos] == b'\n' {
                self.line += 1;
                self.line_start = self.pos + 1;
            }
            if self.src[self.pos] == 0 {
                return Err(self.err(self.line, self.pos - self.line_start + 1, ParseErrorKind::Nul));
            }
            self.pos += 1;
        }
    }
}

/// Refuses a node or tag instance name that the command format could not carry, so every tree
/// this parser accepts can be written as commands and read back.
fn check_name(name: &str, line: usize, column: usize) -> Result<(), ParseError> {
    match invalid_name_reason(name) {
        None => Ok(()),
        Some(reason) => {
            Err(ParseError { line, column, kind: ParseErrorKind::InvalidName { name: name.to_owned(), reason } })
        }
    }
}

/// A node under construction, with the position where it started (for error messages).
struct Parsed {
    node: Node,
    line: usize,
    column: usize,
}

/// The nodes of one block in file order, with their positions kept apart (they are only
/// needed for error messages, and keeping them out of the nodes avoids a copy per block).
#[derive(Default)]
struct Block {
    nodes: Vec<Node>,
    positions: Vec<(usize, usize)>,
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Tok, usize, usize)>,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Result<&(Tok, usize, usize), ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next()?);
        }
        // Just filled above.
        Ok(self.peeked.as_ref().unwrap_or(&(Tok::Eof, 0, 0)))
    }

    fn bump(&mut self) -> Result<(Tok, usize, usize), ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next(),
        }
    }

    fn syntax(&self, tok: &(Tok, usize, usize), expected: &str) -> ParseError {
        ParseError {
            line: tok.1,
            column: tok.2,
            kind: ParseErrorKind::Syntax { detail: format!("{}{expected}", tok.0.describe()) },
        }
    }

    /// `{ node_content }` up to (not including) the terminator: `}` for blocks, EOF at top level.
    fn contents(&mut self, depth: usize, top: bool) -> Result<Block, ParseError> {
        let mut out = Block::default();
        loop {
            let tok = self.peek()?.clone();
            match tok.0 {
                Tok::Eof if top => return Ok(out),
                Tok::RBrace if !top => return Ok(out),
                Tok::Comment(_) | Tok::Ident(_) => {
                    let mut parsed = self.node_content(depth)?;
                    // `rule 1 {…} rule 2 {…}`: consecutive instances of one tag node go straight
                    // into the first tag node (what VyOS's sibling merge does, without the sort).
                    match out.nodes.last_mut() {
                        Some(last) if parsed.node.is_tag() && last.is_tag() && last.name() == parsed.node.name() => {
                            last.children_mut_unchecked().append(&mut parsed.node.take_children());
                        }
                        _ => {
                            out.nodes.push(parsed.node);
                            out.positions.push((parsed.line, parsed.column));
                        }
                    }
                }
                _ => {
                    let expected = if top { "; expected a node name" } else { "; expected a node name or '}'" };
                    return Err(self.syntax(&tok, expected));
                }
            }
        }
    }

    fn node_content(&mut self, depth: usize) -> Result<Parsed, ParseError> {
        let mut comment = None;
        let mut commented = false;
        while let Tok::Comment(_) = self.peek()?.0 {
            if let (Tok::Comment(c), _, _) = self.bump()? {
                commented = true;
                // An empty comment is no comment: commands cannot say `/* */` (`comment … ''`
                // clears), so keeping it would make the two formats disagree.
                let text = crate::tree::trim_comment(&c);
                comment = (!text.is_empty()).then(|| text.to_owned());
            }
        }
        let tok = self.bump()?;
        let Tok::Ident(name) = tok.0.clone() else {
            let expected = if commented { "; a comment must be followed by a node" } else { "; expected a node name" };
            return Err(self.syntax(&tok, expected));
        };
        let (line, column) = (tok.1, tok.2);
        check_name(&name, line, column)?;
        if depth >= MAX_DEPTH {
            return Err(ParseError { line, column, kind: ParseErrorKind::TooDeep });
        }
        let next = self.bump()?;
        match next.0 {
            Tok::LBrace => {
                let children = self.block(depth)?;
                let node = finish_level(Node::from_parts(name, Vec::new(), comment, false, Vec::new()), children, &[])?;
                Ok(Parsed { node, line, column })
            }
            Tok::Newline | Tok::Eof => {
                if next.0 == Tok::Eof {
                    self.peeked = Some(next);
                }
                Ok(Parsed { node: Node::from_parts(name, Vec::new(), comment, false, Vec::new()), line, column })
            }
            Tok::Ident(value) | Tok::Str(value) => {
                let after = self.bump()?;
                match after.0 {
                    Tok::LBrace => {
                        check_name(&value, next.1, next.2)?;
                        let children = self.block(depth)?;
                        let inner = finish_level(
                            Node::from_parts(value, Vec::new(), comment, false, Vec::new()),
                            children,
                            &[name.as_str()],
                        )?;
                        let outer = Node::from_parts(name, Vec::new(), None, true, vec![inner]);
                        Ok(Parsed { node: outer, line, column })
                    }
                    Tok::Newline | Tok::Eof => {
                        if after.0 == Tok::Eof {
                            self.peeked = Some(after);
                        }
                        Ok(Parsed {
                            node: Node::from_parts(name, vec![value], comment, false, Vec::new()),
                            line,
                            column,
                        })
                    }
                    _ => Err(self.syntax(&after, "; expected end of line or '{' after a value")),
                }
            }
            _ => Err(self.syntax(&next, "; expected a value, '{' or end of line after a node name")),
        }
    }

    /// Children of a block after `{`, consuming the closing `}`.
    fn block(&mut self, depth: usize) -> Result<Block, ParseError> {
        let children = self.contents(depth + 1, false)?;
        let close = self.bump()?;
        if close.0 != Tok::RBrace {
            return Err(self.syntax(&close, "; expected '}'"));
        }
        Ok(children)
    }
}

/// Merges same-named siblings into the first one (values appended, children joined), checks
/// that no merged child now has duplicate children, and sorts. `prefix` is the path VyOS names
/// in its duplicate-child message (the enclosing node names).
///
/// A stable sort keeps file order among equal names, so merging adjacent runs gives VyOS's
/// first-occurrence semantics (the first node's comment and tag flag, values in file order).
/// Files saved by VyOS are already sorted with unique names; they take the fast path.
fn finish_level(mut parent: Node, block: Block, prefix: &[&str]) -> Result<Node, ParseError> {
    let Block { nodes, positions } = block;
    let sorted_unique = nodes.windows(2).all(|w| natord::compare(w[0].name(), w[1].name()) == std::cmp::Ordering::Less);
    let mut merged: Vec<Node>;
    let mut merged_positions: Vec<(usize, usize)>;
    if sorted_unique {
        merged = nodes;
        merged_positions = positions;
    } else {
        let mut items: Vec<(Node, (usize, usize))> = nodes.into_iter().zip(positions).collect();
        items.sort_by(|a, b| natord::compare(a.0.name(), b.0.name()));
        merged = Vec::with_capacity(items.len());
        merged_positions = Vec::with_capacity(items.len());
        let mut iter = items.into_iter().peekable();
        while let Some((mut first, position)) = iter.next() {
            // Gather the run of siblings with the same name; merge them in one pass.
            let mut extra_children: Vec<Node> = Vec::new();
            let mut last_position = None;
            while iter.peek().is_some_and(|next| next.0.name() == first.name()) {
                if let Some((mut next, next_position)) = iter.next() {
                    first.values_mut().append(next.values_mut());
                    extra_children.append(&mut next.take_children());
                    last_position = Some(next_position);
                }
            }
            if let Some((line, column)) = last_position {
                // A value given twice is kept once: `set` cannot store a value twice, so the
                // command form could not say it.
                if first.values().len() > 1 {
                    let mut seen = std::collections::HashSet::new();
                    first.values_mut().retain(|v| seen.insert(v.clone()));
                }
                let kids = first.children_mut_unchecked();
                kids.append(&mut extra_children);
                crate::tree::sort_nodes(kids);
                let duplicate = kids.windows(2).find(|w| w[0].name() == w[1].name()).map(|w| w[0].name().to_owned());
                if let Some(dup) = duplicate {
                    return Err(ParseError {
                        line,
                        column,
                        kind: ParseErrorKind::DuplicateChild {
                            node: node_path(prefix, &parent, first.name()),
                            child: dup,
                        },
                    });
                }
            }
            // A tag node merged with a plain block that gave an instance a value or a tag form
            // of its own cannot be written in tag form (the renderer falls back to a plain
            // block), so it is not one: otherwise the flag would be lost on render and parse.
            if first.is_tag() && !crate::tree::fits_tag_form(&first) {
                first.set_tag(false);
            }
            merged.push(first);
            merged_positions.push(position);
        }
    }
    // Tag nodes gathered their instances in file order: sort them and reject duplicates.
    for (node, &(line, column)) in merged.iter_mut().zip(&merged_positions) {
        if node.is_tag() && node.children().len() > 1 {
            let kids = node.children_mut_unchecked();
            if !kids.windows(2).all(|w| natord::compare(w[0].name(), w[1].name()) == std::cmp::Ordering::Less) {
                crate::tree::sort_nodes(kids);
                if let Some(w) = kids.windows(2).find(|w| w[0].name() == w[1].name()) {
                    let dup = w[0].name().to_owned();
                    return Err(ParseError {
                        line,
                        column,
                        kind: ParseErrorKind::DuplicateChild {
                            node: node_path(prefix, &parent, node.name()),
                            child: dup,
                        },
                    });
                }
            }
        }
    }
    if let Some(i) = merged.iter().position(|c| !c.values().is_empty() && !c.children().is_empty()) {
        let (line, column) = merged_positions[i];
        return Err(ParseError {
            line,
            column,
            kind: ParseErrorKind::ValueAndChildren { node: node_path(prefix, &parent, merged[i].name()) },
        });
    }
    *parent.children_mut_unchecked() = merged;
    Ok(parent)
}

fn node_path(prefix: &[&str], parent: &Node, child: &str) -> String {
    let mut path: Vec<&str> = prefix.to_vec();
    if !parent.name().is_empty() {
        path.push(parent.name());
    }
    path.push(child);
    path.join(" ")
}

/// Parses a configuration body in the hierarchical format.
///
/// This is VyOS's parser: a version footer in the legacy `/* … */` form is a syntax error here
/// (see [`crate::Config::parse`] for whole files, which sets the footer aside first).
pub fn parse_tree(text: &str) -> Result<Tree, ParseError> {
    let mut parser = Parser { lexer: Lexer::new(text), peeked: None };
    let children = parser.contents(0, true)?;
    let root = finish_level(Node::new(""), children, &[])?;
    Ok(Tree::from_root(root))
}

/// The kind of one token of the hierarchical format, as [`lexemes`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lexeme {
    /// A bare word (a node name or a value): its text is its span.
    Word,
    /// A quoted string; [`unquote`] decodes its span.
    Quoted,
    /// A `/* … */` comment: its text is its span without the markers.
    Comment,
    /// `{`.
    Open,
    /// `}`.
    Close,
    /// A significant end of line (one that ends a node).
    Newline,
}

/// A [`Lexeme`] with the byte range of its source text. Whatever lies between two tokens is
/// whitespace, insignificant newlines and `//` line comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The token's kind.
    pub lexeme: Lexeme,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just after it.
    pub end: usize,
    /// Its 1-based line.
    pub line: usize,
}

/// Splits a text in the hierarchical format into tokens exactly as [`parse_tree`] reads them,
/// without parsing the grammar and without copying any text; for tools that rewrite words while
/// leaving the rest of the text as it is.
pub fn lexemes(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let mut lexer = Lexer::new(text);
    lexer.keep_text = false;
    let mut out = Vec::new();
    loop {
        let (tok, line, _) = lexer.next()?;
        let lexeme = match tok {
            Tok::Eof => return Ok(out),
            Tok::Ident(_) => Lexeme::Word,
            Tok::Str(_) => Lexeme::Quoted,
            Tok::Comment(_) => Lexeme::Comment,
            Tok::LBrace => Lexeme::Open,
            Tok::RBrace => Lexeme::Close,
            Tok::Newline => Lexeme::Newline,
        };
        out.push(Spanned { lexeme, start: lexer.token_start, end: lexer.pos, line });
    }
}

/// The value of one quoted string token (`"…"` or `'…'`, as [`lexemes`] spans it): quotes
/// removed, escapes decoded as [`parse_tree`] decodes them. `None` if `token` is not exactly one
/// quoted string.
pub fn unquote(token: &str) -> Option<String> {
    let mut lexer = Lexer::new(token);
    match lexer.next() {
        Ok((Tok::Str(value), _, _)) if lexer.pos == token.len() => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_node_names_are_refused() {
        // Fuzz finding: a tag instance of control characters beside a plain node of the same
        // name lost its tag flag through render and parse.
        let e = parse_tree("system\r\x08 {\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 8), "{e:?}");
        let e = parse_tree("system {\n    name \"a\x01b\" {\n    }\n}\n").unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
        // Leaf values may still carry them (VyOS's escaper writes them as \DDD).
        assert!(parse_tree("system {\n    banner \"a\x01b\"\n}\n").is_ok());
    }

    /// A tree parsed from `text`, written as commands, read back and applied to an empty tree
    /// (tag flags copied back, as commands do not carry them).
    fn through_commands(tree: &Tree) -> Tree {
        let text = crate::render_commands(tree, crate::Verb::Set);
        let commands = crate::parse_commands(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut back = Tree::new();
        crate::apply_commands(&mut back, &commands, &crate::Schema::empty()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        back.conform_to(tree);
        back
    }

    /// Open point of the fuzz run: the hierarchical parser accepted node names with shell
    /// characters that the command parser refuses, so `render_commands` gave lines that did not
    /// parse. Names (node names and tag instances, quoted or not) follow one rule in both formats.
    #[test]
    fn names_the_command_format_cannot_carry_are_refused() {
        for (text, (line, column), name) in [
            ("a;b\n", (1, 1), "a;b"),
            ("system {\n    host$name r1\n}\n", (2, 5), "host$name"),
            ("x {\n    rule `id` {\n    }\n}\n", (2, 10), "`id`"),
            ("firewall {\n    group \"a|b\" {\n    }\n}\n", (2, 11), "a|b"),
            ("user 'a b' {\n}\n", (1, 6), "a b"),
            ("user \"\" {\n}\n", (1, 6), ""),
            ("user \"//x\" {\n}\n", (1, 6), "//x"),
            ("user \"a\\\\b\" {\n}\n", (1, 6), "a\\b"),
            ("a(b) {\n}\n", (1, 1), "a(b)"),
        ] {
            let e = parse_tree(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            let ParseErrorKind::InvalidName { name: found, .. } = &e.kind else { panic!("{text:?}: {e:?}") };
            assert_eq!(found, name, "{text:?}");
            assert!(e.to_string().contains(&format!("invalid node name {name:?}")), "{e}");
        }
        // Values are not names: they may hold anything, and still go through commands.
        let t = parse_tree("a {\n    b \"x;y $(z) `w` 'q' \\\\ {}\"\n    c 'p q'\n}\nuser \"eth0\" {\n}\n").unwrap();
        assert_eq!(t.values(&["a", "b"]), ["x;y $(z) `w` 'q' \\ {}"]);
        assert!(t.get(&["user"]).unwrap().is_tag());
        assert_eq!(through_commands(&t), t);
    }

    /// Open point of the fuzz run: a tag node merged with a plain block of the same name.
    #[test]
    fn tag_node_merged_with_plain_block_round_trips() {
        let schema_tags = |p: &[&str]| p == ["interfaces", "ethernet"];
        for (text, tag) in [
            // Tag form first, plain block adds instances: still a tag node.
            (
                "interfaces {\n    ethernet eth0 {\n    }\n    ethernet {\n        eth1 {\n            mtu 1500\n        }\n        eth2\n    }\n}\n",
                true,
            ),
            // Plain block first: VyOS keeps the first node's flag.
            (
                "interfaces {\n    ethernet {\n        eth1 {\n            mtu 1500\n        }\n    }\n    ethernet eth0 {\n        mtu 9000\n    }\n}\n",
                false,
            ),
            // The plain block gives an instance a value: tag form cannot hold it, so no tag node.
            ("interfaces {\n    ethernet eth0 {\n    }\n    ethernet {\n        eth1 \"x\"\n    }\n}\n", false),
            // … or makes an instance a tag node itself.
            (
                "interfaces {\n    ethernet eth0 {\n    }\n    ethernet {\n        eth1 vif {\n        }\n    }\n}\n",
                false,
            ),
        ] {
            let tree = parse_tree(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(tree.get(&["interfaces", "ethernet"]).unwrap().is_tag(), tag, "{text}");
            let rendered = crate::render_config(&tree, crate::RenderOptions::default());
            assert_eq!(parse_tree(&rendered).unwrap(), tree, "{rendered}");
            assert_eq!(through_commands(&tree), tree, "{text}");
            // The same configuration as commands (with the schema saying `ethernet` is a tag
            // node) has the same digest.
            let commands = crate::parse_commands(&crate::render_commands(&tree, crate::Verb::Set)).unwrap();
            let mut from_commands = Tree::new();
            for c in &commands {
                from_commands.set(&c.path, c.value.as_deref(), crate::ValueBehaviour::Add, &schema_tags).unwrap();
            }
            assert_eq!(crate::digest(&from_commands), crate::digest(&tree), "{text}");
            let rendered = crate::render_config(&from_commands, crate::RenderOptions::default());
            let mut back = parse_tree(&rendered).unwrap();
            assert_eq!(crate::digest(&back), crate::digest(&tree), "{rendered}");
            back.conform_to(&from_commands);
            assert_eq!(back, from_commands, "{rendered}");
        }
        // Merging is one level deep, as in VyOS: the two `ethernet` nodes of two merged
        // `interfaces` blocks are duplicates, whatever their form.
        let e = parse_tree(
            "interfaces {\n    ethernet eth0 {\n    }\n}\ninterfaces {\n    ethernet {\n        eth1\n    }\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.vyos_message(), "Node \"interfaces\" has two children named \"ethernet\"");
        assert_eq!(e.line, 5);
        // The same instance from both forms is a duplicate too.
        let e = parse_tree("ethernet eth0 {\n}\nethernet {\n    eth0 {\n    }\n}\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::DuplicateChild { .. }), "{e}");
    }

    /// Found by the round-trip property: VyOS keeps a value given twice, but commands cannot.
    #[test]
    fn repeated_values_are_kept_once() {
        let t = parse_tree("a {\n    b x\n    b y\n    b \"x\"\n    b z\n}\nc {\n}\nc v\nc 'v'\n").unwrap();
        assert_eq!(t.values(&["a", "b"]), ["x", "y", "z"]);
        assert_eq!(t.values(&["c"]), ["v"]);
        assert_eq!(through_commands(&t), t);
    }

    #[test]
    fn empty_comments_are_no_comments() {
        let t = parse_tree("/* x */\n/*  */\na b\n").unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), None);
        assert_eq!(through_commands(&t), t);
        let e = parse_tree("/* */\n}\n").unwrap_err();
        assert!(e.to_string().contains("a comment must be followed by a node"), "{e}");
    }

    #[test]
    fn leaves_values_and_tags() {
        let t = parse_tree(
            "interfaces {\n    ethernet eth0 {\n        address 192.0.2.1/24\n        address \"192.0.2.2/24\"\n        disable\n    }\n}\n",
        )
        .unwrap();
        let eth = t.get(&["interfaces", "ethernet"]).unwrap();
        assert!(eth.is_tag());
        assert_eq!(t.values(&["interfaces", "ethernet", "eth0", "address"]), ["192.0.2.1/24", "192.0.2.2/24"]);
        assert!(t.exists(&["interfaces", "ethernet", "eth0", "disable"]));
    }

    #[test]
    fn newline_only_significant_after_words() {
        // Blank lines and newlines after braces do not matter.
        let t = parse_tree("a {\n\n   b c\n\n}\n\nd\n").unwrap();
        assert_eq!(t.values(&["a", "b"]), ["c"]);
        assert!(t.exists(&["d"]));
        // Two words on one line after a leaf value: error at the third word.
        let e = parse_tree("a {\n    b c d\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 9));
        assert_eq!(e.vyos_message(), "Syntax error on line 2, character 9: Invalid syntax.");
    }

    #[test]
    fn comments_attach_to_next_node_last_wins() {
        let t = parse_tree("/* first */\n/*  second  */\na b\n").unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), Some("second"));
        // A comment on a tag node goes to the tag value.
        let t = parse_tree("x {\n    /* uplink */\n    ethernet eth1 {\n        mtu 1500\n    }\n}\n").unwrap();
        assert_eq!(t.get(&["x", "ethernet", "eth1"]).unwrap().comment(), Some("uplink"));
        assert_eq!(t.get(&["x", "ethernet"]).unwrap().comment(), None);
        // /*x (no space) is an identifier.
        let t = parse_tree("/*nospace*/\n").unwrap();
        assert!(t.exists(&["/*nospace*/"]));
    }

    #[test]
    fn trailing_comment_is_an_error() {
        let e = parse_tree("a b\n/* Warning */\n").unwrap_err();
        assert_eq!(e.vyos_message(), "Syntax error on line 3, character 1: Invalid syntax.");
    }

    #[test]
    fn line_comments_are_dropped() {
        let t = parse_tree("a b // trailing\n// whole line\nc\n").unwrap();
        assert_eq!(t.values(&["a"]), ["b"]);
        assert!(t.exists(&["c"]));
    }

    #[test]
    fn escapes_in_strings() {
        let t = parse_tree("a \"x\\\"y\\\\z\\n\"\nb 'it\\'s'\nc \"C:\\data\"\n").unwrap();
        assert_eq!(t.values(&["a"]), ["x\"y\\z\n"]);
        assert_eq!(t.values(&["b"]), ["it's"]);
        // Unknown escape kept literally.
        assert_eq!(t.values(&["c"]), ["C:\\data"]);
    }

    #[test]
    fn merges_siblings_and_detects_duplicates() {
        let t = parse_tree("a {\n    x 1\n}\na {\n    y 2\n}\n").unwrap();
        assert_eq!(t.values(&["a", "x"]), ["1"]);
        assert_eq!(t.values(&["a", "y"]), ["2"]);
        let e = parse_tree("interfaces {\n    ethernet eth0 {\n    }\n    ethernet eth0 {\n    }\n}\n").unwrap_err();
        assert_eq!(e.vyos_message(), "Node \"interfaces ethernet\" has two children named \"eth0\"");
        let e = parse_tree("b {\n    x 1\n}\nb {\n    x 2\n}\n").unwrap_err();
        assert_eq!(e.vyos_message(), "Node \"b\" has two children named \"x\"");
        assert_eq!(e.line, 4);
    }

    #[test]
    fn value_and_children_is_an_error() {
        let e = parse_tree("a b\na {\n    c\n}\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::ValueAndChildren { .. }), "{e}");
    }

    #[test]
    fn unterminated_things() {
        assert!(matches!(parse_tree("a \"b\n").unwrap_err().kind, ParseErrorKind::UnterminatedString { .. }));
        assert!(matches!(parse_tree("/* x\n").unwrap_err().kind, ParseErrorKind::UnterminatedComment));
        let e = parse_tree("a {\n b c\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "a {\n".repeat(MAX_DEPTH + 5);
        assert!(matches!(parse_tree(&deep).unwrap_err().kind, ParseErrorKind::TooDeep));
    }

    /// VyOS cannot store a NUL: refused raw or escaped, wherever it is, with its position.
    #[test]
    fn nul_is_refused() {
        for (text, (line, column)) in [
            ("a \"x\0y\"\n", (1, 5)),
            ("a {\n    b x\0y\n}\n", (2, 8)),
            ("a \"x\\000y\"\n", (1, 5)),
            ("a 'x\\000'\n", (1, 5)),
            ("/* c\0 */\na\n", (1, 5)),
            ("a b // c\0\n", (1, 9)),
            ("\0", (1, 1)),
        ] {
            let e = parse_tree(text).unwrap_err();
            assert_eq!(e.kind, ParseErrorKind::Nul, "{text:?}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            assert!(e.to_string().contains("NUL"), "{e}");
        }
        // Other control characters written as `\DDD` still decode.
        assert_eq!(parse_tree("a \"x\\001\"\n").unwrap().values(&["a"]), ["x\u{1}"]);
    }

    #[test]
    fn lexemes_have_spans() {
        let text = "a {\n    b \"x\\ty\" // note\n    /* c */\n}\n";
        let tokens = lexemes(text).unwrap();
        let shown: Vec<(&str, Lexeme, usize)> =
            tokens.iter().map(|t| (&text[t.start..t.end], t.lexeme, t.line)).collect();
        assert_eq!(
            shown,
            [
                ("a", Lexeme::Word, 1),
                ("{", Lexeme::Open, 1),
                ("b", Lexeme::Word, 2),
                ("\"x\\ty\"", Lexeme::Quoted, 2),
                ("\n", Lexeme::Newline, 2),
                ("/* c */", Lexeme::Comment, 3),
                ("}", Lexeme::Close, 4),
            ]
        );
        assert_eq!(unquote("\"x\\ty\"").as_deref(), Some("x\ty"));
        assert_eq!(unquote("'it\\'s'").as_deref(), Some("it's"));
        assert_eq!(unquote("\"a\" b"), None);
        assert_eq!(unquote("a"), None);
    }

    #[test]
    fn leaf_at_eof_without_newline() {
        let t = parse_tree("a {\n}\nb c").unwrap();
        assert_eq!(t.values(&["b"]), ["c"]);
        assert!(t.exists(&["a"]));
    }
}
