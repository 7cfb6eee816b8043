//! Parameter values are VyOS values, never VyOS syntax.
//!
//! A template is plain text, so a parameter holding a quote, a brace or a newline could otherwise
//! add commands or nodes of its author's choosing. Instead, every `{{ expr }}` output becomes
//! exactly one VyOS value (or one word: a node name, a tag instance, a path element):
//!
//! 1. While rendering, the formatter ([`formatter`]) does not write a value's text: it records the
//!    text in the render's [`Values`] and writes a *marker*, [`OPEN`], the value's index in
//!    private-use "digits", [`CLOSE`]. No Jinja filter changes those characters, and the markers
//!    are ordinary word characters to both VyOS lexers. Text that is already output (a macro's
//!    result, a `{% set %}` block, `super()`, an include) is a minijinja *safe* string holding
//!    markers of its own and is written as it is, as is a value passed through
//!    [`raw_syntax`](raw_syntax_filter), the one explicit way to print syntax.
//! 2. After rendering, [`finish`] reads the text with the `vyos` crate's own lexers, the
//!    command-word splitter for `commands` and the hierarchical tokens for `config`. Each word
//!    or quoted string holding markers is decoded (markers → values, literal text around them
//!    kept) into one word and written again with VyOS's quoting. A word that is a valid node
//!    name stays as it was written (bare or quoted); anything else is quoted (`'…'` in commands,
//!    `"…"` in config). Tokens without markers are copied byte for byte.
//!
//! Values that no quoting can make one VyOS value are refused while rendering, where minijinja
//! knows the template and line: control characters (newline, carriage return, tab, NUL, …) and
//! the characters reserved for markers. Literal reserved characters in a template's text are
//! refused when it is compiled ([`reserved_in_source`]).
//!
//! A template without any `{{ }}` output never touches any of this: its text comes back as it
//! was rendered.

use std::borrow::Cow;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, Output, State};
use vyos_config::commands::split_words;
use vyos_config::parse::{Lexeme, lexemes, unquote};
use vyos_config::render::{escape, escape_single};
use vyos_config::tree::is_valid_name;

use super::Field;

/// Starts a value marker.
pub(crate) const OPEN: char = '\u{E000}';
/// Ends a value marker.
pub(crate) const CLOSE: char = '\u{E001}';
/// The first of the 16 marker digits (`U+E010` is 0, `U+E01F` is 15).
const DIGIT_ZERO: u32 = 0xE010;
/// The reserved range: markers and digits, with room to spare.
const RESERVED: std::ops::RangeInclusive<char> = '\u{E000}'..='\u{E01F}';

/// The detail of the error a render fails with when its values exceed the output limit.
pub(crate) const VALUES_TOO_LARGE: &str = "the printed values exceed the rendered output limit";

/// Whether `c` is one of the characters vrouter reserves for value markers.
pub(crate) fn is_reserved(c: char) -> bool {
    RESERVED.contains(&c)
}

/// The values printed by one render, in the order of their markers.
#[derive(Debug, Default)]
pub(crate) struct Values {
    /// Each printed value as a string value (strings are shared with the context, not copied).
    texts: Vec<Value>,
    bytes: usize,
}

impl Values {
    fn get(&self, index: usize) -> Option<&str> {
        self.texts.get(index).and_then(Value::as_str)
    }
}

/// The text a value prints as: booleans as `true`/`false` (as JSON parameters and the
/// predecessor's Go templates spell them, not Python's `True`), everything else as minijinja
/// prints it.
fn plain_text(value: &Value) -> Cow<'_, str> {
    match value.kind() {
        ValueKind::Bool => Cow::Borrowed(if value.is_true() { "true" } else { "false" }),
        _ => match value.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(value.to_string()),
        },
    }
}

/// At most 40 characters of a value, for messages.
fn preview(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{short:?}")
}

/// Why `text` cannot be one VyOS value, if it cannot.
fn unrepresentable(text: &str) -> Option<String> {
    // Fast path: control characters are single bytes, reserved ones start with 0xEE in UTF-8.
    if !text.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xEE) {
        return None;
    }
    let c = text.chars().find(|&c| c < ' ' || c == '\x7f' || is_reserved(c))?;
    let what = match c {
        '\n' => "a newline",
        '\r' => "a carriage return",
        '\t' => "a tab",
        '\0' => "a NUL",
        c if is_reserved(c) => {
            return Some(format!(
                "the value {} contains {c:?}, a character vrouter reserves for its value markers \
                 (U+E000 to U+E01F); if it is the output of a macro, an include or a {{% set %}} block \
                 changed by a filter or an operator, print that output unchanged",
                preview(text)
            ));
        }
        _ => "a control character",
    };
    Some(format!(
        "the value {} contains {what} ({c:?}), which a VyOS value cannot hold; every {{{{ }}}} output is \
         one VyOS value (use raw_syntax for deliberate syntax, see docs/templates.md)",
        preview(text)
    ))
}

/// The formatter: records each printed value and writes its marker; safe strings (output of
/// macros, blocks, includes, and `raw_syntax`) are written as they are. `limit` bounds the total
/// size of the recorded values (the rendered output limit).
pub(crate) fn formatter(
    limit: usize,
) -> impl Fn(&mut Output<'_>, &mut State<'_, '_>, &Value) -> Result<(), Error> + Send + Sync + 'static {
    move |out, state, value| {
        if value.is_safe() {
            return out.write_str(value.as_str().unwrap_or_default()).map_err(Error::from);
        }
        // `{{ x if c }}` with `c` false: nothing, as in Jinja (strict undefined values never get
        // here).
        if value.is_undefined() {
            return Ok(());
        }
        let text = plain_text(value);
        if let Some(problem) = unrepresentable(&text) {
            return Err(Error::new(ErrorKind::InvalidOperation, problem));
        }
        let values = state.get_or_insert_extension(Values::default());
        values.bytes = values.bytes.saturating_add(text.len());
        if values.bytes > limit {
            return Err(Error::new(ErrorKind::InvalidOperation, VALUES_TOO_LARGE));
        }
        let index = values.texts.len();
        let text = match text {
            // The same string the context holds: a reference count, not a copy.
            Cow::Borrowed(_) if value.kind() == ValueKind::String => value.clone(),
            text => Value::from(text.into_owned()),
        };
        values.texts.push(text);
        write_marker(out, index).map_err(Error::from)
    }
}

fn write_marker(out: &mut impl std::fmt::Write, index: usize) -> std::fmt::Result {
    out.write_char(OPEN)?;
    let digits = if index == 0 { 1 } else { (usize::BITS - index.leading_zeros()).div_ceil(4) };
    for shift in (0..digits).rev() {
        let nibble = ((index >> (shift * 4)) & 0xf) as u32;
        // DIGIT_ZERO + 0..=15 lies in the private-use area; the fallback cannot happen.
        out.write_char(char::from_u32(DIGIT_ZERO + nibble).unwrap_or(CLOSE))?;
    }
    out.write_char(CLOSE)
}

/// The `raw_syntax` filter: prints a value as VyOS syntax, unquoted and unchecked. For
/// templates that build syntax from data on purpose; reported as a warning wherever it is used.
pub(crate) fn raw_syntax_filter(value: Value) -> Result<Value, Error> {
    if value.is_safe() {
        return Ok(value);
    }
    let text = plain_text(&value);
    if let Some(c) = text.chars().find(|&c| is_reserved(c)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("raw_syntax: the value contains {c:?}, a character vrouter reserves for its value markers"),
        ));
    }
    Ok(Value::from_safe_string(text.into_owned()))
}

/// Jinja's `safe` would print a value unquoted without saying so; here that is `raw_syntax`.
pub(crate) fn safe_filter(_value: Value) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        "the safe filter is not available: every {{ }} output is one VyOS value; to print VyOS syntax \
         on purpose use raw_syntax (see docs/templates.md)",
    ))
}

/// The first reserved character in a template's text, with its 1-based line.
pub(crate) fn reserved_in_source(source: &str) -> Option<(usize, char)> {
    let at = source.find(is_reserved)?;
    let c = source[at..].chars().next()?;
    Some((source[..at].matches('\n').count() + 1, c))
}

/// The 1-based lines of a template's text where `raw_syntax` is used inside a tag.
pub(crate) fn raw_syntax_lines(source: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut from = 0;
    while let Some(offset) = source[from..].find("raw_syntax") {
        let at = from + offset;
        from = at + "raw_syntax".len();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word(source[..at].chars().next_back()) || word(source[from..].chars().next()) {
            continue;
        }
        if inside_tag(source, at) {
            let line = source[..at].matches('\n').count() + 1;
            if lines.last() != Some(&line) {
                lines.push(line);
            }
        }
    }
    lines
}

/// Whether byte `at` lies inside a `{{ … }}` or `{% … %}` tag (after the last opening delimiter
/// before it, with no closing one in between).
fn inside_tag(source: &str, at: usize) -> bool {
    let before = &source[..at];
    let open = [before.rfind("{{"), before.rfind("{%")].into_iter().flatten().max();
    let Some(open) = open else { return false };
    let closed = [before.rfind("}}"), before.rfind("%}"), before.rfind("#}")].into_iter().flatten().max();
    let in_comment = before.rfind("{#").is_some_and(|c| c > open);
    closed.is_none_or(|c| c < open) && !in_comment
}

/// An error found in the rendered text: its 1-based line there and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Replaces every marker of a rendered field by its value, quoted as VyOS quotes it so that it
/// stays one word; see the [module documentation](self).
pub(crate) fn finish(text: String, field: Field, values: Option<&Values>) -> Result<String, Problem> {
    let Some(values) = values.filter(|v| !v.texts.is_empty()) else { return Ok(text) };
    if !text.contains(OPEN) {
        return Ok(text);
    }
    match field {
        Field::Commands => commands(&text, values),
        Field::Config => config(&text, values),
    }
}

/// Replaces the markers of `s` by their values.
fn decode<'s>(s: &'s str, values: &Values) -> Result<Cow<'s, str>, String> {
    let Some(first) = s.find(OPEN) else { return Ok(Cow::Borrowed(s)) };
    let cut = || {
        "a value marker is incomplete: the output of a macro, an include or a {% set %} block went through a \
         filter or an operator that cut it (such as reverse, split, slicing or truncate); print such output \
         unchanged"
            .to_string()
    };
    let mut out = String::with_capacity(s.len() + 32);
    out.push_str(&s[..first]);
    let mut chars = s[first..].chars();
    while let Some(c) = chars.next() {
        if c != OPEN {
            if c == CLOSE || is_reserved(c) {
                return Err(cut());
            }
            out.push(c);
            continue;
        }
        let mut index = 0usize;
        let mut digits = 0;
        loop {
            match chars.next() {
                Some(CLOSE) if digits > 0 => break,
                Some(d) if (DIGIT_ZERO..DIGIT_ZERO + 16).contains(&(d as u32)) && digits < 16 => {
                    index = (index << 4) | (d as u32 - DIGIT_ZERO) as usize;
                    digits += 1;
                }
                _ => return Err(cut()),
            }
        }
        out.push_str(values.get(index).ok_or_else(cut)?);
    }
    Ok(Cow::Owned(out))
}

/// `commands`: each line's words as the command parser splits them.
fn commands(text: &str, values: &Values) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for (index, raw) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        if !raw.contains(OPEN) {
            out.push_str(raw);
            continue;
        }
        let line_no = index + 1;
        let problem = |message: String| Problem { line: line_no, message };
        let (line, cr) = match raw.strip_suffix('\r') {
            Some(line) => (line, "\r"),
            None => (raw, ""),
        };
        if line.trim_start_matches([' ', '\t']).starts_with('#') {
            // A comment line: ignored by VyOS; a value (no newline) cannot leave it.
            out.push_str(&decode(line, values).map_err(problem)?);
            out.push_str(cr);
            continue;
        }
        let words = split_words(line, line_no).map_err(|e| problem(format!("column {}: {}", e.column, e.message)))?;
        let mut copied = 0;
        for (position, word) in words.iter().enumerate() {
            if !line[word.start..word.end].contains(OPEN) {
                continue;
            }
            out.push_str(&line[copied..word.start]);
            copied = word.end;
            let value = decode(&word.text, values).map_err(problem)?;
            if position == 0 {
                if word.quoted || !matches!(&*value, "set" | "delete" | "comment") {
                    return Err(problem(format!(
                        "the command word cannot come from a value ({}): a value is one word of a set, delete or \
                         comment command, never a command of its own; use raw_syntax to print commands on purpose",
                        preview(&value)
                    )));
                }
                out.push_str(&value);
            } else if !word.quoted && is_valid_name(&value) {
                out.push_str(&value);
            } else {
                out.push('\'');
                escape_single(&value, &mut out);
                out.push('\'');
            }
        }
        out.push_str(&line[copied..]);
        out.push_str(cr);
    }
    Ok(out)
}

/// `config`: the hierarchical format's tokens.
fn config(text: &str, values: &Values) -> Result<String, Problem> {
    let tokens = lexemes(text).map_err(|e| Problem { line: e.line, message: e.to_string() })?;
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut copied = 0;
    // Between tokens: whitespace and `//` comments, which a value (no newline) cannot leave.
    let gap = |out: &mut String, from: usize, to: usize, line: usize| -> Result<(), Problem> {
        let between = &text[from..to];
        out.push_str(&decode(between, values).map_err(|message| Problem { line, message })?);
        Ok(())
    };
    for token in &tokens {
        gap(&mut out, copied, token.start, token.line)?;
        copied = token.end;
        let source = &text[token.start..token.end];
        if !source.contains(OPEN) {
            out.push_str(source);
            continue;
        }
        let problem = |message: String| Problem { line: token.line, message };
        match token.lexeme {
            Lexeme::Word => {
                let value = decode(source, values).map_err(problem)?;
                if is_valid_name(&value) {
                    out.push_str(&value);
                } else {
                    out.push('"');
                    escape(&value, &mut out);
                    out.push('"');
                }
            }
            Lexeme::Quoted => {
                let quoted =
                    unquote(source).ok_or_else(|| problem(format!("internal: {source:?} is not one quoted string")))?;
                let value = decode(&quoted, values).map_err(problem)?;
                out.push('"');
                escape(&value, &mut out);
                out.push('"');
            }
            Lexeme::Comment => {
                let comment = source.get(2..source.len().saturating_sub(2)).unwrap_or_default();
                let decoded = decode(comment, values).map_err(problem)?;
                if decoded.contains("*/") {
                    return Err(problem(format!(
                        "a value in a /* comment */ contains \"*/\", which would end the comment: {}",
                        preview(&decoded)
                    )));
                }
                out.push_str("/*");
                out.push_str(&decoded);
                out.push_str("*/");
            }
            // Braces and newlines are ASCII: they never hold a marker.
            Lexeme::Open | Lexeme::Close | Lexeme::Newline => out.push_str(source),
        }
    }
    let last = text[..copied].matches('\n').count() + 1;
    gap(&mut out, copied, text.len(), last)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(texts: &[&str]) -> Values {
        Values { texts: texts.iter().map(|s| Value::from(*s)).collect(), bytes: 0 }
    }

    fn marker(index: usize) -> String {
        let mut s = String::new();
        write_marker(&mut s, index).unwrap();
        s
    }

    #[test]
    fn markers_round_trip() {
        let texts: Vec<Value> = (0..300).map(|i| Value::from(format!("v{i}"))).collect();
        let v = Values { texts, bytes: 0 };
        for i in [0, 1, 15, 16, 255, 256, 299] {
            assert_eq!(decode(&format!("a{}b", marker(i)), &v).unwrap(), format!("av{i}b"));
        }
        for broken in [format!("{OPEN}"), format!("{OPEN}{CLOSE}"), marker(1).chars().rev().collect(), marker(999)] {
            assert!(decode(&broken, &v).unwrap_err().contains("incomplete"), "{broken:?}");
        }
    }

    #[test]
    fn commands_words_are_requoted() {
        let v = values(&["a b", "eth0", "x' y", "", "set", "it's"]);
        let m = |i| marker(i);
        let text = format!(
            "set a {}\nset interfaces ethernet {} description '{}'\nset b {}\n{} c\nset d 'pre {} post'\n# note {}\r\n",
            m(0),
            m(1),
            m(2),
            m(3),
            m(4),
            m(5),
            m(0)
        );
        let out = finish(text, Field::Commands, Some(&v)).unwrap();
        assert_eq!(
            out,
            "set a 'a b'\nset interfaces ethernet eth0 description 'x\\' y'\nset b ''\nset c\nset d 'pre it\\'s post'\n# note a b\r\n"
        );
        let e = finish(format!("{} system", m(0)), Field::Commands, Some(&v)).unwrap_err();
        assert!(e.message.contains("command word cannot come from a value"), "{e:?}");
    }

    #[test]
    fn config_tokens_are_requoted() {
        let v = values(&["eth0", "a b", "x\" } y", "*/"]);
        let m = |i| marker(i);
        let text = format!(
            "interfaces {{\n    ethernet {} {{\n        description {}\n        alias \"{}\" // {}\n    }}\n}}\n/* {} */\n",
            m(0),
            m(1),
            m(2),
            m(1),
            m(0)
        );
        let out = finish(text, Field::Config, Some(&v)).unwrap();
        assert_eq!(
            out,
            "interfaces {\n    ethernet eth0 {\n        description \"a b\"\n        alias \"x\\\" } y\" // a b\n    }\n}\n/* eth0 */\n"
        );
        let e = finish(format!("/* {} */\na\n", m(3)), Field::Config, Some(&v)).unwrap_err();
        assert!(e.message.contains("would end the comment"), "{e:?}");
    }

    #[test]
    fn without_values_the_text_is_untouched() {
        let text = "set a 'b\n".to_owned();
        assert_eq!(finish(text.clone(), Field::Commands, None).unwrap(), text);
        assert_eq!(finish(text.clone(), Field::Config, Some(&Values::default())).unwrap(), text);
    }

    #[test]
    fn raw_syntax_lines_inside_tags_only() {
        let source =
            "a raw_syntax\n{{ x | raw_syntax }}\n{# raw_syntax #}\n{% filter raw_syntax %}\n{{ my_raw_syntax }}\n";
        assert_eq!(raw_syntax_lines(source), [2, 4]);
    }
}
