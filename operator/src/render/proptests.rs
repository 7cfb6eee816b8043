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

    /// A value is text, never template: what is printed is exactly the value, whatever syntax
    /// it holds; and a value holding a well-formed placeholder is refused, not passed on.
    #[test]
    fn values_are_never_evaluated_nor_smuggled(s in hostile_string()) {
        let r = renderer();
        let result = r.render("t0", &context(Json::from(s.clone()), String::new(), String::new()));
        if s.len() > LIMITS.max_output_bytes {
            prop_assert!(matches!(result, Err(RenderError::TooLarge { .. })), "{:?}", result.map(|_| ()));
        } else if !placeholders(&s).is_empty() {
            prop_assert!(matches!(result, Err(RenderError::ForeignPlaceholder { .. })), "{:?}", result.map(|_| ()));
        } else {
            let out = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out.config.as_deref(), Some(s.as_str()));
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
