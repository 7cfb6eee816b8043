//! Property tests: templates rendered with hostile parameters (huge strings, deep nesting,
//! template syntax and placeholder look-alikes inside values) never panic, stay within the
//! limits, evaluate nothing that came from a value, and never let a placeholder through that
//! `secret()` did not make.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;

/// Small limits, so that the properties reach them quickly.
const LIMITS: Limits = Limits { max_output_bytes: 16 << 10, fuel: 50_000, max_template_bytes: 4 << 10 };

/// Templates that use their parameters in the ways real ones do.
const TEMPLATES: &[&str] = &[
    "{{ v }}",
    "set x '{{ v }}'\n",
    "{% for k, x in params|items %}{{ k }} {{ x }}\n{% endfor %}",
    "{{ params }}",
    "{{ v|tojson }}",
    "{% if v is mapping %}{% for k in v %}{{ k }}={{ v[k] }};{% endfor %}{% else %}{{ v }}{% endif %}",
    "{{ a }}{{ b }}",
    "{{ a ~ b ~ v }}",
    "{{ v|string|upper }} {{ v|length }}",
    "{% for x in range(100) %}{{ v }}{% endfor %}",
    "{{ secret('s', 'k') }} {{ v }}",
];

/// Strings a hostile parameter may hold.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,20}",
        "[{}%#@/:a-z' \n-]{0,30}",
        Just("{{ secret('admin', 'password') }}".to_owned()),
        Just("{% include 't0' %}{{ range(999999999) }}".to_owned()),
        Just("{{ .path }}".to_owned()),
        "@@vrouter-secret:[a-z.-]{0,8}/[A-Za-z0-9._-]{0,8}@@",
        "@@vrouter-secret:[a-z]{1,4}/?[a-z@]{0,4}",
        "[a-z/]{0,4}@@",
        // Up to 64 KiB, four times the output limit.
        (0usize..(64 << 10), "[a-z@{]").prop_map(|(n, c)| c.repeat(n)),
    ]
}

/// JSON values: hostile strings, numbers, and nesting up to 200 levels deep.
fn hostile_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        hostile_string().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        any::<bool>().prop_map(Json::from),
        Just(Json::Null),
    ];
    let nested = leaf.clone().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::from),
            prop::collection::btree_map(hostile_string(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        4 => nested,
        1 => (1usize..200, leaf, any::<bool>()).prop_map(|(depth, leaf, as_list)| {
            (0..depth).fold(leaf, |v, _| if as_list { json!([v]) } else { json!({ "k": v }) })
        }),
    ]
}

fn context(v: Json, a: String, b: String) -> RenderContext {
    let Json::Object(params) = json!({ "v": v, "a": a, "b": b }) else { unreachable!() };
    RenderContext { params, ..RenderContext::default() }
}

fn renderer() -> Renderer {
    let sources: Vec<TemplateSource> = TEMPLATES
        .iter()
        .enumerate()
        .map(|(i, t)| TemplateSource { name: format!("t{i}"), config: Some((*t).to_owned()), commands: None })
        .collect();
    match Renderer::new(&sources, LIMITS) {
        Ok(r) => r,
        Err(errors) => panic!("{errors:#?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every template renders or fails with a clear error; output stays within the limit, and
    /// every placeholder in it was made by `secret()` in the template.
    #[test]
    fn hostile_params_stay_within_limits(v in hostile_json(), a in hostile_string(), b in hostile_string()) {
        let r = renderer();
        let ctx = context(v, a, b);
        for (i, template) in TEMPLATES.iter().enumerate() {
            let name = format!("t{i}");
            match r.render(&name, &ctx) {
                Ok(out) => {
                    let text = out.config.unwrap_or_default();
                    prop_assert!(text.len() <= LIMITS.max_output_bytes);
                    let found = placeholders(&text);
                    prop_assert_eq!(&found, &out.secrets);
                    if template.contains("secret(") {
                        prop_assert!(found.iter().all(|s| s.name == "s" && s.key == "k"), "{:?}", found);
                    } else {
                        prop_assert!(found.is_empty(), "{:?}", found);
                    }
                }
                Err(err) => {
                    prop_assert_eq!(err.template(), Some(name.as_str()));
                    prop_assert!(!err.to_string().is_empty());
                }
            }
        }
    }

    /// A value is text, never template: what is printed is exactly the value, as one VyOS word
    /// (bare when it is a valid name, else double-quoted), whatever syntax it holds; a value
    /// holding a well-formed placeholder is refused, not passed on, and one that no VyOS value
    /// can hold (control characters) is refused.
    #[test]
    fn values_are_never_evaluated_nor_smuggled(s in hostile_string()) {
        let r = renderer();
        let result = r.render("t0", &context(Json::from(s.clone()), String::new(), String::new()));
        let expected = if vyos_config::tree::is_valid_name(&s) {
            s.clone()
        } else {
            let mut quoted = String::from("\"");
            vyos_config::render::escape(&s, &mut quoted);
            quoted.push('"');
            quoted
        };
        if s.chars().any(|c| c.is_ascii_control() || quoting::is_reserved(c)) {
            prop_assert!(
                matches!(&result, Err(RenderError::Eval { message, .. }) if message.contains("cannot hold") || message.contains("reserves")),
                "{:?}",
                result.map(|_| ())
            );
        } else if expected.len() > LIMITS.max_output_bytes {
            prop_assert!(matches!(result, Err(RenderError::TooLarge { .. })), "{:?}", result.map(|_| ()));
        } else if !placeholders(&s).is_empty() {
            prop_assert!(matches!(result, Err(RenderError::ForeignPlaceholder { .. })), "{:?}", result.map(|_| ()));
        } else {
            let out = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out.config.as_deref(), Some(expected.as_str()));
            prop_assert!(out.secrets.is_empty());
        }
    }

    /// A placeholder split across two values (each harmless alone) is caught once joined.
    #[test]
    fn split_placeholders_are_caught(name in "[a-z][a-z0-9]{0,8}", key in "[A-Za-z0-9_]{1,8}", cut in 0usize..64) {
        let placeholder = SecretRef::new(&name, &key).map_err(|e| TestCaseError::fail(e.to_string()))?.placeholder();
        let cut = cut % (placeholder.len() + 1);
        let (a, b) = placeholder.split_at(cut);
        let r = renderer();
        let result = r.render("t6", &context(Json::Null, a.to_owned(), b.to_owned()));
        prop_assert!(matches!(result, Err(RenderError::ForeignPlaceholder { .. })), "{:?}", result.map(|_| ()));
    }

    /// `secret()` with hostile arguments either makes a placeholder for exactly that secret, or
    /// fails with an error naming the call.
    #[test]
    fn secret_arguments_are_validated(name in hostile_string(), key in hostile_string()) {
        let sources = [TemplateSource {
            name: "s".into(),
            config: Some("{{ secret(n, k) }}".into()),
            commands: None,
        }];
        let r = Renderer::new(&sources, LIMITS).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let Json::Object(params) = json!({ "n": name, "k": key }) else { unreachable!() };
        let result = r.render("s", &RenderContext { params, ..RenderContext::default() });
        match SecretRef::new(&name, &key) {
            Ok(secret) => {
                let out = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(out.config, Some(secret.placeholder()));
                prop_assert_eq!(out.secrets, BTreeSet::from([secret]));
            }
            Err(_) => prop_assert!(matches!(result, Err(RenderError::Eval { .. })), "{:?}", result.map(|_| ())),
        }
    }
}

/// A `commands` and a `config` template that use one parameter `v` in every kind of place a
/// value goes: a quoted value, inside quotes with literal text around it, an unquoted word, a
/// comment.
const STRUCTURE_COMMANDS: &str = "set system domain-name '{{ v }}'\n\
    set system login banner pre-login \"pre {{ v }} post\"\n\
    set interfaces ethernet eth0 description x{{ v }}\n\
    comment system domain-name '{{ v }}'\n\
    # {{ v }}\n\
    set system host-name edge\n";

const STRUCTURE_CONFIG: &str = "system {\n    domain-name {{ v }}\n    login {\n        banner {\n            \
    pre-login \"pre {{ v }} post\"\n        }\n    }\n}\n/* {{ v }} */\ninterfaces {\n    ethernet eth0 {\n        \
    description '{{ v }}' // {{ v }}\n    }\n}\n";

/// Parameter strings of every kind: arbitrary text, and VyOS syntax meant to break out.
fn any_param() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,30}",
        "['\"{}; \\/*#a-z\n-]{0,30}",
        Just("corp.example'\nset system login user mallory authentication plaintext-password 'hunter22'".to_owned()),
        Just("x' description 'y".to_owned()),
        Just("x\" } service { ssh { port 2222 } } system { y \"".to_owned()),
        Just("x */ service { ssh { } } /* y".to_owned()),
    ]
}

fn structure_renderer() -> Renderer {
    let source = TemplateSource {
        name: "s".into(),
        config: Some(STRUCTURE_CONFIG.to_owned()),
        commands: Some(STRUCTURE_COMMANDS.to_owned()),
    };
    match Renderer::new(&[source], Limits::default()) {
        Ok(r) => r,
        Err(errors) => panic!("{errors:#?}"),
    }
}

fn render_v(r: &Renderer, v: &str) -> Result<Rendered, RenderError> {
    let Json::Object(params) = json!({ "v": v }) else { unreachable!() };
    r.render("s", &RenderContext { params, ..RenderContext::default() })
}

/// Every leaf of a tree: its path and values.
fn leaves(tree: &vyos_config::Tree) -> Vec<(Vec<String>, Vec<String>)> {
    fn walk(node: &vyos_config::Node, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Vec<String>)>) {
        path.push(node.name().to_owned());
        if node.children().is_empty() {
            out.push((path.clone(), node.values().to_vec()));
        }
        for child in node.children() {
            walk(child, path, out);
        }
        path.pop();
    }
    let mut out = Vec::new();
    for child in tree.children() {
        walk(child, &mut Vec::new(), &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever a parameter holds, the rendered commands are the same commands with the same
    /// paths as with a plain value, the value is exactly the parameter, and the configuration has
    /// the same nodes; or the render is refused, for strings that no VyOS value can hold.
    #[test]
    fn a_parameter_is_always_one_value(v in any_param()) {
        let r = structure_renderer();
        let plain = render_v(&r, "plain").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let plain_commands = vyos_config::parse_commands(plain.commands.as_deref().unwrap_or_default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let plain_tree = vyos_config::parse_tree(plain.config.as_deref().unwrap_or_default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let refused = v.chars().any(|c| c.is_ascii_control() || quoting::is_reserved(c));
        let out = match render_v(&r, &v) {
            Ok(out) => out,
            Err(err) => {
                prop_assert!(refused || v.contains("*/"), "{v:?}: {err}");
                prop_assert_eq!(err.template(), Some("s"));
                let message = err.to_string();
                prop_assert!(message.contains("line "), "{}", message);
                return Ok(());
            }
        };
        prop_assert!(!refused, "{v:?} was accepted");
        prop_assert!(!v.contains("*/"), "{v:?} was accepted in a comment");

        let commands = vyos_config::parse_commands(out.commands.as_deref().unwrap_or_default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{:?}", out.commands)))?;
        prop_assert_eq!(commands.len(), plain_commands.len());
        for (c, p) in commands.iter().zip(&plain_commands) {
            prop_assert_eq!(c.op, p.op);
            if p.path.last().map(String::as_str) == Some("xplain") {
                // An unquoted last word: a path element when it is a bare word, else a value.
                let word = format!("x{v}");
                if vyos_config::tree::is_valid_name(&word) {
                    prop_assert_eq!(c.path.last(), Some(&word));
                    prop_assert_eq!(&c.path[..c.path.len() - 1], &p.path[..p.path.len() - 1]);
                } else {
                    prop_assert_eq!(&c.path[..], &p.path[..p.path.len() - 1]);
                    prop_assert_eq!(c.value.as_deref(), Some(word.as_str()));
                }
                continue;
            }
            prop_assert_eq!(&c.path, &p.path);
            let expected = p.value.as_ref().map(|pv| pv.replace("plain", &v));
            prop_assert_eq!(&c.value, &expected);
        }

        let tree = vyos_config::parse_tree(out.config.as_deref().unwrap_or_default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{:?}", out.config)))?;
        let (got, want) = (leaves(&tree), leaves(&plain_tree));
        prop_assert_eq!(got.len(), want.len());
        for ((path, values), (plain_path, plain_values)) in got.iter().zip(&want) {
            prop_assert_eq!(path, plain_path);
            let expected: Vec<String> = plain_values.iter().map(|pv| pv.replace("plain", &v)).collect();
            prop_assert_eq!(values, &expected);
        }
        let comment = tree.get(&["interfaces"]).and_then(|n| n.comment());
        prop_assert_eq!(comment, Some(v.trim_matches(' ')).filter(|c| !c.is_empty()));
    }
}
