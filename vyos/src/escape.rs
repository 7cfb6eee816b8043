//! Untrusted text (configuration values, names, a router's output) made safe to show in a
//! message: control characters and bidirectional-formatting characters are written as `\u{…}`
//! escapes, so a value cannot move the terminal's cursor, hide text, or make a message read
//! differently than it is stored (U+202E and friends, "Trojan Source").
//!
//! Escaped: C0 controls except tab and newline (multi-line messages, such as a commit's output,
//! stay readable; neither hides anything), DEL, C1 controls, the bidirectional embeddings and
//! overrides U+202A–U+202E, the isolates U+2066–U+2069, and the marks U+200E, U+200F and U+061C.

use std::borrow::Cow;

/// Whether `c` is escaped by [`escape_controls`].
pub fn is_escaped(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [escaped](is_escaped) character written as `\u{…}` (borrowed when there is
/// none).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_escaped(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape_controls`] of an owned string (returned as it is when there is nothing to escape).
pub fn escape_controls_owned(text: String) -> String {
    if text.chars().any(is_escaped) { escape_controls(&text).into_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_characters_are_escaped() {
        assert!(matches!(escape_controls("plain text, ünïcödé, 日本"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_controls("\u{1b}[2Jx\ry\u{0}"), "\\u{1b}[2Jx\\u{d}y\\u{0}");
        assert_eq!(escape_controls("c1\u{85}\u{9b}"), "c1\\u{85}\\u{9b}");
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert_eq!(escape_controls(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
        assert_eq!(escape_controls("two\nlines\tand a tab"), "two\nlines\tand a tab");
        assert_eq!(escape_controls_owned("x\u{7f}".to_owned()), "x\\u{7f}");
        assert_eq!(escape_controls_owned("x".to_owned()), "x");
    }
}
