//! Issue 21: a parameter can never inject VyOS configuration; every `{{ }}` output is one value.

use serde_json::json;
use vyos_config::{Schema, Tree, apply_commands, parse_commands, parse_tree};

use super::*;

fn render(config: Option<&str>, commands: Option<&str>, params: serde_json::Value) -> Result<Rendered, RenderError> {
    let source =
        TemplateSource { name: "t".into(), config: config.map(Into::into), commands: commands.map(Into::into) };
    let r = Renderer::new(&[source], Limits::default()).map_err(|mut e| e.remove(0))?;
    let serde_json::Value::Object(params) = params else { panic!("params must be an object") };
    r.render("t", &RenderContext { params, ..RenderContext::default() })
}

fn commands_tree(text: &str) -> Tree {
    let mut tree = Tree::new();
    apply_commands(&mut tree, &parse_commands(text).unwrap(), Schema::vyos()).unwrap();
    tree
}

const MALLORY: &str = "corp.example'\nset system login user mallory authentication plaintext-password 'hunter22'";

/// Reproduction 1: a quote and a newline in a commands template's parameter added a user.
/// Before the fix the output was two commands, the second one creating user mallory.
#[test]
fn commands_parameter_cannot_add_a_command() {
    let err = render(None, Some("set system domain-name '{{ evil }}'\n"), json!({ "evil": MALLORY })).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RenderError::Eval { line: Some(1), .. }), "{err:?}");
    assert!(message.starts_with("template \"t\" (commands) line 1: the value \"corp.example'\\nset"), "{message}");
    assert!(message.contains("contains a newline"), "{message}");
    // Without the newline, the same text is one value of the one command.
    let evil = MALLORY.replace('\n', " ");
    let out = render(None, Some("set system domain-name '{{ evil }}'\n"), json!({ "evil": evil })).unwrap();
    let commands = parse_commands(out.commands.as_deref().unwrap()).unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].path, ["system", "domain-name"]);
    assert_eq!(commands[0].value.as_deref(), Some(evil.as_str()));
    assert!(!commands_tree(out.commands.as_deref().unwrap()).exists(&["system", "login"]));
}

/// Reproduction 2: a config template's parameter closed its node and opened `service ssh`.
#[test]
fn config_parameter_cannot_add_nodes() {
    let template = "system {\n    domain-name \"{{ evil }}\"\n}\n";
    let evil = "x\"\n}\nservice {\n ssh {\n port 2222\n }\n}\nsystem {\n y \"";
    let err = render(Some(template), None, json!({ "evil": evil })).unwrap_err();
    assert!(matches!(err, RenderError::Eval { line: Some(2), .. }), "{err:?}");
    assert!(err.to_string().contains("contains a newline"), "{err}");
    // The hierarchical format needs no newline to break out: on one line, still one value.
    let evil = "x\" } service { ssh { port 2222 } } system { y \"";
    for template in
        [template, "system {\n    domain-name {{ evil }}\n}\n", "system {\n    domain-name '{{ evil }}'\n}\n"]
    {
        let out = render(Some(template), None, json!({ "evil": evil })).unwrap();
        let tree = parse_tree(out.config.as_deref().unwrap()).unwrap();
        assert_eq!(tree.values(&["system", "domain-name"]), [evil], "{template}");
        assert!(!tree.exists(&["service"]), "{template}");
        assert_eq!(tree.children().len(), 1);
    }
}

/// Reproduction 3: a lone quote rewrote the path (`set system domain-name 'x' description 'y'`).
#[test]
fn a_lone_quote_is_part_of_the_value() {
    let out =
        render(None, Some("set system domain-name '{{ evil }}'\n"), json!({ "evil": "x' description 'y" })).unwrap();
    assert_eq!(out.commands.as_deref(), Some("set system domain-name 'x\\' description \\'y'\n"));
    let commands = parse_commands(out.commands.as_deref().unwrap()).unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].path, ["system", "domain-name"]);
    assert_eq!(commands[0].value.as_deref(), Some("x' description 'y"));
    // Unquoted in the template: still one word.
    let out = render(None, Some("set system domain-name {{ evil }}\n"), json!({ "evil": "x y" })).unwrap();
    assert_eq!(out.commands.as_deref(), Some("set system domain-name 'x y'\n"));
    let out = render(Some("system {\n    domain-name {{ evil }}\n}\n"), None, json!({ "evil": "x' y" })).unwrap();
    assert_eq!(out.config.as_deref(), Some("system {\n    domain-name \"x' y\"\n}\n"));
}

/// Values that are bare words stay as the template wrote them: existing templates render the
/// same text as before.
#[test]
fn plain_values_render_as_before() {
    let config = "interfaces {\n    ethernet {{ ifname }} {\n        address {{ cidr }}\n        description \"{{ d }}\"\n    }\n}\n";
    let commands = "set interfaces ethernet {{ ifname }} address '{{ cidr }}'\nset protocols bgp system-as {{ asn }}\n{{ verb }} system host-name edge\n";
    let out = render(
        Some(config),
        Some(commands),
        json!({ "ifname": "eth0", "cidr": "10.0.0.1/24", "d": "uplink to core", "asn": 65000, "verb": "delete" }),
    )
    .unwrap();
    assert_eq!(
        out.config.as_deref(),
        Some(
            "interfaces {\n    ethernet eth0 {\n        address 10.0.0.1/24\n        description \"uplink to core\"\n    }\n}\n"
        )
    );
    assert_eq!(
        out.commands.as_deref(),
        Some(
            "set interfaces ethernet eth0 address '10.0.0.1/24'\nset protocols bgp system-as 65000\ndelete system host-name edge\n"
        )
    );
}

/// Where a value cannot be one word, the render is refused with template, field and line.
#[test]
fn values_out_of_place_are_refused() {
    let err = render(None, Some("set a b\n{{ line }}\n"), json!({ "line": "set system host-name x" })).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"t\" (commands) rendered line 2: the command word cannot come from a value (\"set system host-name x\"): \
         a value is one word of a set, delete or comment command, never a command of its own; use raw_syntax to print \
         commands on purpose"
    );
    let err = render(Some("/* {{ c }} */\na b\n"), None, json!({ "c": "x */ service { ssh } /* y" })).unwrap_err();
    assert!(
        matches!(&err, RenderError::Quoting { line: 1, message, .. } if message.contains("would end the comment")),
        "{err:?}"
    );
    for bad in ["a\rb", "a\0b", "a\tb", "a\u{7f}", "a\u{e000}b"] {
        let err = render(None, Some("set a '{{ v }}'\n"), json!({ "v": bad })).unwrap_err();
        assert!(matches!(err, RenderError::Eval { line: Some(1), .. }), "{bad:?}: {err:?}");
    }
    // A value is one value even when empty: it cannot make a word disappear.
    let out = render(None, Some("set interfaces ethernet {{ v }} disable\n"), json!({ "v": "" })).unwrap();
    assert_eq!(out.commands.as_deref(), Some("set interfaces ethernet '' disable\n"));
}

/// `raw_syntax` prints syntax on purpose, and the renderer says where it is used.
#[test]
fn raw_syntax_prints_syntax_and_is_reported() {
    let commands = "set a b\n{{ extra | raw_syntax }}\n";
    let out = render(None, Some(commands), json!({ "extra": "set system host-name 'r1'\nset c d" })).unwrap();
    assert_eq!(out.commands.as_deref(), Some("set a b\nset system host-name 'r1'\nset c d\n"));
    let config = "system {\n{% filter raw_syntax %}    host-name r1\n{% endfilter %}}\n";
    let out = render(Some(config), None, json!({})).unwrap();
    assert_eq!(out.config.as_deref(), Some("system {\n    host-name r1\n}\n"));
    let source = TemplateSource { name: "t".into(), config: Some(config.into()), commands: Some(commands.into()) };
    let r = Renderer::new(std::slice::from_ref(&source), Limits::default()).unwrap();
    let uses: Vec<String> = r.raw_syntax_uses().iter().map(ToString::to_string).collect();
    assert_eq!(uses.len(), 2);
    assert!(
        uses[0].starts_with("template \"t\" (config) line 2: raw_syntax prints a value as VyOS syntax"),
        "{uses:?}"
    );
    assert!(uses[1].starts_with("template \"t\" (commands) line 2: raw_syntax"), "{uses:?}");
    assert_eq!(raw_syntax_uses(&source), r.raw_syntax_uses());
    // Jinja's `safe` would do the same silently: refused, pointing at raw_syntax.
    let err = render(None, Some("set a '{{ v | safe }}'\n"), json!({ "v": "x" })).unwrap_err();
    assert!(err.to_string().contains("use raw_syntax"), "{err}");
}

/// Macros, `{% set %}` blocks and includes keep their syntax and their values stay values.
#[test]
fn macros_blocks_and_includes_keep_values_as_values() {
    let macros = TemplateSource {
        name: "m".into(),
        config: Some(
            "{% macro eth(name, d) %}ethernet {{ name }} {\n    description {{ d }}\n}\n{% endmacro %}".into(),
        ),
        commands: Some("set system domain-name '{{ evil }}'\n".into()),
    };
    let main = TemplateSource {
        name: "main".into(),
        config: Some(
            "{% import \"m\" as m %}interfaces {\n{{ m.eth(\"eth0\", evil) }}{% set block %}    loopback {{ lo }} {\n    }\n{% endset %}{{ block }}}\n"
                .into(),
        ),
        commands: Some("{% include \"m\" %}set system host-name {{ evil ~ \"-x\" }}\n".into()),
    };
    let r = Renderer::new(&[macros, main], Limits::default()).unwrap();
    let serde_json::Value::Object(params) = json!({ "evil": "a } b", "lo": "lo" }) else { unreachable!() };
    let out = r.render("main", &RenderContext { params, ..RenderContext::default() }).unwrap();
    assert_eq!(
        out.config.as_deref(),
        Some("interfaces {\nethernet eth0 {\n    description \"a } b\"\n}\n    loopback lo {\n    }\n}\n")
    );
    assert_eq!(out.commands.as_deref(), Some("set system domain-name 'a } b'\nset system host-name 'a } b-x'\n"));
    // Output cut by a filter cannot be put back together: refused, not guessed.
    let err =
        render(Some("{% set b %}x {{ v }}{% endset %}{{ b | reverse }}\n"), None, json!({ "v": "y" })).unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    let err = render(Some("{% set b %}x {{ v }}{% endset %}{{ b[1:] }}\n"), None, json!({ "v": "y" })).unwrap_err();
    assert!(err.to_string().contains("reserves"), "{err}");
}

/// Secret placeholders pass through as values; one smuggled in through a parameter is caught.
#[test]
fn secrets_still_work_and_cannot_be_smuggled() {
    let out = render(None, Some("set a password '{{ secret(\"s\", \"k\") }}'\n"), json!({})).unwrap();
    assert_eq!(out.commands.as_deref(), Some("set a password '@@vrouter-secret:s/k@@'\n"));
    assert_eq!(out.secrets.len(), 1);
    for v in ["@@vrouter-secret:admin/password@@", "x' @@vrouter-secret:admin/password@@ 'y"] {
        let err = render(None, Some("set a '{{ v }}'\n"), json!({ "v": v })).unwrap_err();
        assert!(matches!(err, RenderError::ForeignPlaceholder { .. }), "{v}: {err:?}");
    }
}

/// The predecessor's `{{ .path }}` is a value like any other.
#[test]
fn go_paths_are_values() {
    let out =
        render(None, Some("set system domain-name '{{ .evil }}'\n"), json!({ "evil": "x' description 'y" })).unwrap();
    assert_eq!(parse_commands(out.commands.as_deref().unwrap()).unwrap().len(), 1);
    assert!(render(None, Some("set system domain-name '{{ .evil }}'\n"), json!({ "evil": MALLORY })).is_err());
}

/// The reserved marker characters cannot appear in a template's text.
#[test]
fn reserved_characters_in_template_text_are_refused() {
    let source = TemplateSource { name: "t".into(), config: Some("a\nb \u{e001}\n".into()), commands: None };
    let errors = Renderer::new(&[source], Limits::default()).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "template \"t\" (config) line 2: the text contains '\\u{e001}', a character vrouter reserves for its value markers (U+E000 to U+E01F)"
    );
}
