//! Compatibility with the predecessor's Go `text/template` expressions.
//!
//! The predecessor rendered templates with Go `text/template`, where parameters are reached through
//! the dot: `{{ .hostname }}`, `{{ .bgp.asn }}`, `{{- .x -}}`. Those simple expressions keep working
//! here: before a template is compiled, every expression tag whose *entire* content is a dotted path
//! starting with `.` (optionally with `-` whitespace-trim markers, which mean the same in both
//! languages) loses its leading dot:
//!
//! | source              | compiled as        |
//! |---------------------|--------------------|
//! | `{{ .hostname }}`   | `{{ hostname }}`   |
//! | `{{.a.b_c}}`        | `{{a.b_c}}`        |
//! | `{{- .x -}}`        | `{{- x -}}`        |
//! | `{{ .target.y }}`   | `{{ params["target"].y }}` |
//!
//! When the first segment is a name the context reserves (`params`, `target`, `binding`) or a
//! word minijinja reads as a literal or operator (`true`, `none`, `not`, ...), the path is looked up
//! in `params` instead, because in Go `.` always meant the parameter map.
//!
//! Nothing else is touched: statement tags (`{% ... %}`), comments, `{% raw %}` blocks, string
//! literals and expressions with anything besides a dotted path (pipelines, function calls, `$`)
//! stay as they are, and the latter fail to compile with minijinja's own syntax error. No newline
//! is added or removed, so line numbers in error messages still point at the user's source.

use std::borrow::Cow;

/// Names that, as the first path segment, cannot simply lose their dot.
const LOOKUP_IN_PARAMS: &[&str] = &[
    "params", "target", "binding", "true", "false", "none", "True", "False", "None", "not", "and", "or", "in", "is",
    "if", "else", "loop",
];

/// Rewrites the Go-style `{{ .path }}` expressions of `source`; see the [module documentation](self).
///
/// Returns the source unchanged (borrowed) when there is nothing to rewrite.
pub fn rewrite_go_paths(source: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    // Everything before `copied` is already in `out` (when `out` exists).
    let mut copied = 0;
    for (inner_start, inner_end) in expression_tags(source) {
        let Some((path_start, path_end)) = go_path(source, inner_start, inner_end) else { continue };
        let buf = out.get_or_insert_with(|| String::with_capacity(source.len() + 16));
        buf.push_str(&source[copied..path_start]);
        // Skip the leading dot.
        let path = &source[path_start + 1..path_end];
        let first = path.split('.').next().unwrap_or(path);
        if LOOKUP_IN_PARAMS.contains(&first) {
            buf.push_str("params[\"");
            buf.push_str(first);
            buf.push_str("\"]");
            buf.push_str(&path[first.len()..]);
        } else {
            buf.push_str(path);
        }
        copied = path_end;
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&source[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(source),
    }
}

/// The content ranges of every `{{ ... }}` tag, skipping comments, statements and raw blocks.
/// Scanning stops at the first unterminated tag (the compiler reports it).
fn expression_tags(source: &str) -> Vec<(usize, usize)> {
    let bytes = source.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(offset) = source[i..].find('{') {
        let start = i + offset;
        match bytes.get(start + 1) {
            Some(b'#') => match source[start + 2..].find("#}") {
                Some(end) => i = start + 2 + end + 2,
                None => break,
            },
            Some(b'%') => {
                let Some(end) = tag_end(source, start + 2, b'%') else { break };
                let inner = &source[start + 2..end];
                i = end + 2;
                if strip_markers(inner).trim() == "raw" {
                    match find_endraw(source, i) {
                        Some(after) => i = after,
                        None => break,
                    }
                }
            }
            Some(b'{') => {
                let Some(end) = tag_end(source, start + 2, b'}') else { break };
                tags.push((start + 2, end));
                i = end + 2;
            }
            _ => i = start + 1,
        }
    }
    tags
}

/// Finds the first Go control structure (`{{ if ... }}`, `{{ range ... }}`, `{{ end }}`, ...)
/// in `source`, which minijinja would otherwise often read as a (nonsensical) variable lookup.
/// Returns the 1-based line and the tag's text.
pub(crate) fn go_control_tag(source: &str) -> Option<(usize, &str)> {
    expression_tags(source).into_iter().find_map(|(start, end)| {
        let body = strip_markers(&source[start..end]).trim();
        let word_len = body.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (word, rest) = body.split_at(word_len);
        let separated = rest.starts_with(char::is_whitespace);
        let rest = rest.trim_start();
        let go = match word {
            "end" | "else" => rest.is_empty() || (word == "else" && separated && rest.starts_with("if ")),
            "if" | "range" | "with" => separated && !rest.is_empty(),
            "template" | "define" | "block" => separated && rest.starts_with('"'),
            _ => false,
        };
        go.then(|| (source[..start].matches('\n').count() + 1, &source[start - 2..end + 2]))
    })
}

/// Removes the whitespace-control markers (`-`, `+`) at both ends of a tag's content.
fn strip_markers(inner: &str) -> &str {
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    inner.strip_suffix(['-', '+']).unwrap_or(inner)
}

/// Finds the closing `<close>}` of a tag whose content starts at `from`, skipping string literals
/// and balanced brackets. Returns the index of the closing delimiter's first byte.
fn tag_end(source: &str, from: usize, close: u8) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' if depth > 0 => depth -= 1,
            c if c == close && depth == 0 && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            b'}' if depth > 0 => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Finds the end of the `{% endraw %}` tag that closes a raw block starting at `from`.
fn find_endraw(source: &str, from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = source[i..].find("{%") {
        let start = i + offset;
        let end = source[start + 2..].find("%}")? + start + 2;
        if strip_markers(&source[start + 2..end]).trim() == "endraw" {
            return Some(end + 2);
        }
        i = start + 2;
    }
    None
}

/// If the expression content `source[start..end]` is exactly a Go dotted path (with optional trim
/// markers and whitespace), returns the byte range of the path including its leading dot.
fn go_path(source: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let inner = &source[start..end];
    let body = strip_markers(inner);
    let body_start = if inner.starts_with(['-', '+']) { start + 1 } else { start };
    let trimmed = body.trim_start();
    let path_start = body_start + (body.len() - trimmed.len());
    let path = trimmed.trim_end();
    let rest = path.strip_prefix('.')?;
    if rest.split('.').all(is_identifier) { Some((path_start, path_start + path.len())) } else { None }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a source line looks like it uses Go template syntax that the compatibility rewrite does
/// not cover (used to add a hint to syntax errors).
pub(crate) fn looks_like_go(line: &str) -> bool {
    let mut rest = line;
    while let Some(pos) = rest.find("{{") {
        let after = rest[pos + 2..].trim_start_matches(['-', '+']).trim_start();
        if after.starts_with('.') || after.starts_with('$') {
            return true;
        }
        let word: String = after.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        if matches!(word.as_str(), "end" | "range" | "with" | "define" | "template" | "block" | "printf" | "index") {
            return true;
        }
        if word == "if" || word == "else" {
            return true;
        }
        rest = &rest[pos + 2..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str) -> String {
        rewrite_go_paths(s).into_owned()
    }

    #[test]
    fn simple_paths() {
        assert_eq!(rw("{{ .hostname }}"), "{{ hostname }}");
        assert_eq!(rw("{{.hostname}}"), "{{hostname}}");
        assert_eq!(rw("{{ .a.b }}"), "{{ a.b }}");
        assert_eq!(rw("{{ .a.b_c }}"), "{{ a.b_c }}");
        assert_eq!(rw("{{ ._x.y2.Z }}"), "{{ _x.y2.Z }}");
        assert_eq!(rw("set system host-name '{{ .hostname }}'\n"), "set system host-name '{{ hostname }}'\n");
    }

    #[test]
    fn trim_markers_are_kept() {
        assert_eq!(rw("a\n{{- .x -}}\nb"), "a\n{{- x -}}\nb");
        assert_eq!(rw("{{- .x }}"), "{{- x }}");
        assert_eq!(rw("{{ .x -}}"), "{{ x -}}");
        assert_eq!(rw("{{-.x-}}"), "{{-x-}}");
    }

    #[test]
    fn unchanged_source_is_borrowed() {
        assert!(matches!(rewrite_go_paths("{{ x.y }} {% if a %}{% endif %}"), Cow::Borrowed(_)));
        assert!(matches!(rewrite_go_paths(""), Cow::Borrowed(_)));
        assert!(matches!(rewrite_go_paths("no tags { at all }"), Cow::Borrowed(_)));
    }

    #[test]
    fn other_tags_are_not_touched() {
        for s in [
            "{{ x.y }}",
            "{{ .x | upper }}",
            "{{ .x.y.z | default('a') }}",
            "{{ printf \"%s\" .x }}",
            "{{ $.x }}",
            "{{ . }}",
            "{{ .5 }}",
            "{{ .a..b }}",
            "{{ .a. }}",
            "{{ .a-b }}",
            "{{ .a.1 }}",
            "{{ \".x\" }}",
            "{{ '{{ .x }}' }}",
            "{% set y = '{{ .x }}' %}",
            "{% if x == \".y\" %}{% endif %}",
            "{# {{ .x }} #}",
            "{% raw %}{{ .x }}{% endraw %}",
            "{%- raw -%}\n{{ .x }}\n{%- endraw -%}",
            "{{ {'a': {'b': 1}} }}",
        ] {
            assert_eq!(rw(s), s, "{s}");
        }
    }

    #[test]
    fn after_raw_block_rewriting_resumes() {
        assert_eq!(rw("{% raw %}{{ .x }}{% endraw %}{{ .y }}"), "{% raw %}{{ .x }}{% endraw %}{{ y }}");
        assert_eq!(rw("{# c #}{{ .y }}"), "{# c #}{{ y }}");
        assert_eq!(rw("{{ {'a': {'b': 1}} }}{{ .y }}"), "{{ {'a': {'b': 1}} }}{{ y }}");
        assert_eq!(rw("{{ '}}' }}{{ .y }}"), "{{ '}}' }}{{ y }}");
    }

    #[test]
    fn reserved_and_keyword_first_segments_go_through_params() {
        assert_eq!(rw("{{ .target }}"), "{{ params[\"target\"] }}");
        assert_eq!(rw("{{ .params.x }}"), "{{ params[\"params\"].x }}");
        assert_eq!(rw("{{ .binding.a.b }}"), "{{ params[\"binding\"].a.b }}");
        assert_eq!(rw("{{ .true }}"), "{{ params[\"true\"] }}");
        assert_eq!(rw("{{ .none }}"), "{{ params[\"none\"] }}");
        // Only the first segment matters.
        assert_eq!(rw("{{ .a.target }}"), "{{ a.target }}");
        assert_eq!(rw("{{ .targets }}"), "{{ targets }}");
    }

    #[test]
    fn many_tags_and_lines_are_preserved() {
        let src = "interfaces {\n  ethernet {{ .wan.name }} {\n    address {{ .wan.address }}\n  }\n}\n\
                   {% for x in list %}{{ x }}{% endfor %}\n{{ .hostname }}{{.domain}}\n";
        let out = rw(src);
        assert_eq!(
            out,
            "interfaces {\n  ethernet {{ wan.name }} {\n    address {{ wan.address }}\n  }\n}\n\
             {% for x in list %}{{ x }}{% endfor %}\n{{ hostname }}{{domain}}\n"
        );
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn multi_line_expression_keeps_its_newlines() {
        let src = "{{\n  .a.b\n}}\nnext";
        assert_eq!(rw(src), "{{\n  a.b\n}}\nnext");
    }

    #[test]
    fn unterminated_tags_are_left_alone() {
        for s in ["{{ .x", "{% if", "{# x", "{% raw %}{{ .x }}", "{{ 'abc }}", "{"] {
            assert_eq!(rw(s), s, "{s}");
        }
        assert_eq!(rw("{{ .a }}{{ .x"), "{{ a }}{{ .x");
    }

    #[test]
    fn non_ascii_text_around_tags() {
        assert_eq!(rw("é{{ .x }}ü{"), "é{{ x }}ü{");
        assert_eq!(rw("{{ 'ü' }}{{ .x }}"), "{{ 'ü' }}{{ x }}");
    }

    #[test]
    fn go_control_structures_are_found() {
        for (src, line, tag) in [
            ("a\n{{ range .items }}x{{ end }}", 2, "{{ range .items }}"),
            ("{{- if .a -}}", 1, "{{- if .a -}}"),
            ("{{ if eq .a 1 }}", 1, "{{ if eq .a 1 }}"),
            ("x {{ end }}", 1, "{{ end }}"),
            ("{{ else }}", 1, "{{ else }}"),
            ("{{ else if .b }}", 1, "{{ else if .b }}"),
            ("{{ with $x := .y }}", 1, "{{ with $x := .y }}"),
            ("{{ template \"x\" . }}", 1, "{{ template \"x\" . }}"),
            ("{{ define \"x\" }}", 1, "{{ define \"x\" }}"),
        ] {
            assert_eq!(go_control_tag(src), Some((line, tag)), "{src}");
        }
        for src in [
            "{{ range(3) | list }}",
            "{{ ending }}",
            "{{ template }}",
            "{{ if }}",
            "{{ end.x }}",
            "{{ x if y else z }}",
            "{% if a %}{% else %}{% endif %}",
            "{% raw %}{{ end }}{% endraw %}",
            "{# {{ end }} #}",
            "{{ 'range .x' }}",
        ] {
            assert_eq!(go_control_tag(src), None, "{src}");
        }
    }

    #[test]
    fn go_detection() {
        assert!(looks_like_go("{{ range .items }}"));
        assert!(looks_like_go("{{- end }}"));
        assert!(looks_like_go("x {{ .a | printf \"%d\" }}"));
        assert!(looks_like_go("{{ $x := 1 }}"));
        assert!(looks_like_go("{{ if .a }}"));
        assert!(!looks_like_go("{{ a.b }}"));
        assert!(!looks_like_go("{% if a %}"));
        assert!(!looks_like_go("{{ ending }}"));
    }
}
