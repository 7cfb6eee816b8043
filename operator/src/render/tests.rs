use super::*;
use serde_json::json;

fn tpl(name: &str, config: Option<&str>, commands: Option<&str>) -> TemplateSource {
    TemplateSource { name: name.into(), config: config.map(Into::into), commands: commands.map(Into::into) }
}

fn config(name: &str, text: &str) -> TemplateSource {
    tpl(name, Some(text), None)
}

fn renderer(templates: &[TemplateSource]) -> Renderer {
    match Renderer::new(templates, Limits::default()) {
        Ok(r) => r,
        Err(errors) => panic!("compile errors: {errors:#?}"),
    }
}

fn ctx(params: serde_json::Value) -> RenderContext {
    let serde_json::Value::Object(params) = params else { panic!("params must be an object") };
    RenderContext {
        params,
        target: ObjectInfo {
            name: "r1".into(),
            namespace: "net".into(),
            labels: BTreeMap::from([
                ("site".into(), "ams".into()),
                ("topology.kubernetes.io/zone".into(), "z1".into()),
            ]),
        },
        binding: None,
    }
}

/// Renders the `config` of the first template.
fn render_one(text: &str, params: serde_json::Value) -> Result<String, RenderError> {
    let r = renderer(&[config("t", text)]);
    r.render("t", &ctx(params)).map(|out| out.config.unwrap())
}

#[test]
fn renders_params_and_both_fields() {
    let r = renderer(&[tpl(
        "base",
        Some("system {\n    host-name {{ hostname }}\n}\n"),
        Some("set system host-name '{{ hostname }}'\n"),
    )]);
    let out = r.render("base", &ctx(json!({"hostname": "edge-1"}))).unwrap();
    assert_eq!(out.config.as_deref(), Some("system {\n    host-name edge-1\n}\n"));
    assert_eq!(out.commands.as_deref(), Some("set system host-name 'edge-1'\n"));
    assert!(out.secrets.is_empty());
    assert_eq!(out.get(Field::Config), out.config.as_deref());
}

#[test]
fn absent_fields_stay_absent() {
    let r = renderer(&[tpl("c", None, Some("set x")), tpl("none", None, None)]);
    let out = r.render("c", &ctx(json!({}))).unwrap();
    assert_eq!(out.config, None);
    assert_eq!(out.commands.as_deref(), Some("set x"));
    assert_eq!(r.render("none", &ctx(json!({}))).unwrap(), Rendered::default());
}

#[test]
fn trailing_newline_is_kept_and_no_escaping() {
    assert_eq!(render_one("a\n", json!({})).unwrap(), "a\n");
    // No HTML escaping: the value is quoted as VyOS quotes it, and only because it is not a bare word.
    assert_eq!(render_one("{{ v }}\n\n", json!({"v": "<&'\">"})).unwrap(), "\"<&'\\\">\"\n\n");
    assert_eq!(render_one("{{ v }}\n\n", json!({"v": "10.0.0.1/24"})).unwrap(), "10.0.0.1/24\n\n");
}

#[test]
fn nested_params_lists_and_numbers() {
    let text = "{% for n in bgp.neighbors %}neighbor {{ n.address }} remote-as {{ n.asn }}\n{% endfor %}\
                asn {{ bgp.asn }} {{ params.bgp.asn }} {{ bgp['asn'] }}";
    let out = render_one(
        text,
        json!({"bgp": {"asn": 65000, "neighbors": [{"address": "10.0.0.1", "asn": 1}, {"address": "10.0.0.2", "asn": 4200000000u64}]}}),
    )
    .unwrap();
    assert_eq!(out, "neighbor 10.0.0.1 remote-as 1\nneighbor 10.0.0.2 remote-as 4200000000\nasn 65000 65000 65000");
}

#[test]
fn strict_undefined_names_template_field_line_and_key() {
    let r = renderer(&[config("bgp", "protocols {\n  bgp {\n    system-as {{ asn }}\n  }\n}\n")]);
    let err = r.render("bgp", &ctx(json!({}))).unwrap_err();
    assert_eq!(
        err,
        RenderError::Undefined {
            template: "bgp".into(),
            field: Field::Config,
            line: Some(3),
            expression: "asn".into()
        }
    );
    assert_eq!(err.to_string(), "template \"bgp\" (config) line 3: undefined value \"asn\"");
    assert_eq!(err.template(), Some("bgp"));
    assert_eq!(err.field(), Some(Field::Config));
    assert_eq!(err.line(), Some(3));
}

#[test]
fn strict_undefined_nested_attribute() {
    let err = render_one("x\n{{ bgp.asn }}", json!({"bgp": {"id": 1}})).unwrap_err();
    assert_eq!(err.to_string(), "template \"t\" (config) line 2: undefined value \"bgp.asn\"");
    let err = render_one("{{ missing.asn }}", json!({})).unwrap_err();
    assert!(matches!(&err, RenderError::Undefined { expression, .. } if expression == "missing"), "{err}");
}

#[test]
fn strict_undefined_in_commands_and_statements() {
    let r = renderer(&[tpl("t", Some("ok"), Some("set a\n{% if enabled %}set b{% endif %}"))]);
    let err = r.render("t", &ctx(json!({}))).unwrap_err();
    assert!(
        matches!(&err, RenderError::Undefined { field: Field::Commands, line: Some(2), expression, .. } if expression == "enabled"),
        "{err:?}"
    );
    let err = render_one("{% for x in items %}{% endfor %}", json!({})).unwrap_err();
    assert!(matches!(&err, RenderError::Undefined { expression, .. } if expression == "items"), "{err:?}");
    let err = render_one("{{ x + 1 }}", json!({})).unwrap_err();
    assert!(matches!(&err, RenderError::Undefined { expression, .. } if expression == "x"), "{err:?}");
}

#[test]
fn defined_checks_and_default_work_in_strict_mode() {
    let text =
        "{% if mtu is defined %}{{ mtu }}{% else %}none{% endif %} {{ desc | default('-') }} {{ bgp.x | default(7) }}";
    assert_eq!(render_one(text, json!({"bgp": {}})).unwrap(), "none - 7");
    assert_eq!(render_one(text, json!({"mtu": 9000, "desc": "d", "bgp": {"x": 1}})).unwrap(), "9000 d 1");
}

#[test]
fn reserved_names_win_over_params() {
    let text = "{{ target.name }} {{ params.target }} {{ params.params }} {{ binding is none }}";
    let out = render_one(text, json!({"target": "param-target", "params": "p", "binding": "b"})).unwrap();
    assert_eq!(out, "r1 param-target p true");
}

#[test]
fn target_and_binding_info() {
    let r = renderer(&[config(
        "t",
        "{{ target.name }}.{{ target.namespace }} {{ target.labels.site }} {{ target.labels['topology.kubernetes.io/zone'] }} {{ binding.name }}/{{ binding.labels.tier }}",
    )]);
    let mut c = ctx(json!({}));
    c.binding = Some(ObjectInfo {
        name: "edge".into(),
        namespace: "net".into(),
        labels: BTreeMap::from([("tier".into(), "1".into())]),
    });
    assert_eq!(r.render("t", &c).unwrap().config.unwrap(), "r1.net ams z1 edge/1");
}

#[test]
fn unknown_template() {
    let r = renderer(&[]);
    let err = r.render("nope", &ctx(json!({}))).unwrap_err();
    assert_eq!(err, RenderError::UnknownTemplate { name: "nope".into() });
    assert_eq!(err.to_string(), "unknown template \"nope\"");
}

#[test]
fn booleans_print_like_json() {
    assert_eq!(render_one("{{ a }} {{ b }} {{ 1 == 1 }}", json!({"a": true, "b": false})).unwrap(), "true false true");
}

#[test]
fn includes_resolve_to_the_same_field() {
    let r = renderer(&[
        tpl("common", Some("config of common for {{ target.name }}\n"), Some("set common {{ x }}\n")),
        tpl("main", Some("{% include \"common\" %}main config\n"), Some("{% include \"common\" %}set main\n")),
    ]);
    let out = r.render("main", &ctx(json!({"x": 1}))).unwrap();
    assert_eq!(out.config.unwrap(), "config of common for r1\nmain config\n");
    assert_eq!(out.commands.unwrap(), "set common 1\nset main\n");
}

#[test]
fn includes_with_an_explicit_field() {
    let r = renderer(&[
        tpl("common", Some("C"), Some("K")),
        tpl("main", Some("{% include \"common/commands\" %}-{% include 'common/config' %}"), None),
    ]);
    assert_eq!(r.render("main", &ctx(json!({}))).unwrap().config.unwrap(), "K-C");
}

#[test]
fn include_of_missing_template_or_field() {
    let r = renderer(&[
        tpl("cmds-only", None, Some("K")),
        config("a", "line1\n{% include 'nothere' %}"),
        config("b", "{% include 'cmds-only' %}"),
        config("c", "{% include 'nothere' ignore missing %}ok"),
    ]);
    let err = r.render("a", &ctx(json!({}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"a\" (config) line 2: there is no template \"nothere\" to include or import"
    );
    let err = r.render("b", &ctx(json!({}))).unwrap_err();
    assert_eq!(err.to_string(), "template \"b\" (config) line 1: template \"cmds-only\" has no config");
    assert_eq!(r.render("c", &ctx(json!({}))).unwrap().config.unwrap(), "ok");
}

#[test]
fn errors_in_included_templates_point_into_them() {
    let r = renderer(&[config("common", "a\nb {{ missing }}\n"), config("main", "{% include 'common' %}")]);
    let err = r.render("main", &ctx(json!({}))).unwrap_err();
    assert_eq!(err.to_string(), "template \"common\" (config) line 2: undefined value \"missing\"");
}

#[test]
fn import_macros() {
    let r = renderer(&[
        tpl(
            "macros",
            Some("{% macro iface(name, addr) %}ethernet {{ name }} {\n    address {{ addr }}\n}\n{% endmacro %}"),
            Some(
                "{% macro iface(name, addr) %}set interfaces ethernet {{ name }} address '{{ addr }}'\n{% endmacro %}",
            ),
        ),
        tpl(
            "main",
            Some("{% import 'macros' as m %}{{ m.iface('eth0', host_cidr(lan, 1)) }}"),
            Some("{% from 'macros' import iface %}{{ iface('eth0', lan | host_cidr(1)) }}"),
        ),
    ]);
    let out = r.render("main", &ctx(json!({"lan": "192.168.1.0/24"}))).unwrap();
    assert_eq!(out.config.unwrap(), "ethernet eth0 {\n    address 192.168.1.1/24\n}\n");
    assert_eq!(out.commands.unwrap(), "set interfaces ethernet eth0 address '192.168.1.1/24'\n");
}

#[test]
fn self_include_fails_cleanly() {
    let r = renderer(&[config("loop", "x{% include 'loop' %}")]);
    let err = r.render("loop", &ctx(json!({}))).unwrap_err();
    assert!(matches!(&err, RenderError::Eval { template, .. } if template == "loop"), "{err:?}");
    assert!(err.to_string().contains("recursion limit exceeded"), "{err}");
}

#[test]
fn include_cycle_fails_cleanly() {
    let r = renderer(&[
        config("a", "{% include 'b' %}"),
        config("b", "{% include 'c' %}"),
        config("c", "{% include 'a' %}"),
    ]);
    let err = r.render("a", &ctx(json!({}))).unwrap_err();
    assert!(err.to_string().contains("recursion limit exceeded"), "{err}");
    // The same in a thread with a small stack: the limit must trigger before the stack runs out.
    let r2 = r.clone();
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || r2.render("b", &ctx(json!({}))).unwrap_err().to_string())
        .unwrap();
    assert!(handle.join().unwrap().contains("recursion limit exceeded"));
}

#[test]
fn recursive_macro_fails_cleanly() {
    let err = render_one("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", json!({})).unwrap_err();
    assert!(err.to_string().contains("recursion limit exceeded"), "{err}");
    // Also with a small stack, and with recursion through a loop and an import.
    let r = renderer(&[
        config(
            "m",
            "{% macro f(n) %}{% for i in [1] %}{% import 'm' as again %}{{ again.f(n) }}{% endfor %}{% endmacro %}",
        ),
        config("main", "{% import 'm' as m %}{{ m.f(1) }}"),
    ]);
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || r.render("main", &ctx(json!({}))).unwrap_err().to_string())
        .unwrap();
    let message = handle.join().unwrap();
    assert!(message.contains("recursion limit exceeded"), "{message}");
    // Bounded recursion is fine.
    let out =
        render_one("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}", json!({}))
            .unwrap();
    assert_eq!(out, "54321");
}

#[test]
fn go_compat_expressions() {
    let text = "set system host-name '{{ .hostname }}'\nset protocols bgp system-as {{ .bgp.asn }}\nset x {{ .a.b_c }}";
    let r = renderer(&[tpl("t", None, Some(text))]);
    let out = r.render("t", &ctx(json!({"hostname": "r1", "bgp": {"asn": 65000}, "a": {"b_c": "x"}}))).unwrap();
    assert_eq!(out.commands.unwrap(), "set system host-name 'r1'\nset protocols bgp system-as 65000\nset x x");
    // A Go path is a value like any other: quoted as VyOS quotes it, never syntax.
    let out = r.render("t", &ctx(json!({"hostname": "a' b", "bgp": {"asn": "1 2"}, "a": {"b_c": "x"}}))).unwrap();
    assert_eq!(out.commands.unwrap(), "set system host-name 'a\\' b'\nset protocols bgp system-as '1 2'\nset x x");
    // Trim markers behave like Go's.
    assert_eq!(render_one("a\n  {{- .x -}}  \nb", json!({"x": 1})).unwrap(), "a1b");
    // `.target` is the parameter, as it was in Go.
    assert_eq!(render_one("{{ .target }} {{ target.name }}", json!({"target": "p"})).unwrap(), "p r1");
}

#[test]
fn go_compat_keeps_line_numbers_in_errors() {
    let err = render_one("{{ .a }}\n{{ .b.c }}\n{{\n .missing\n}}", json!({"a": 1, "b": {"c": 2}})).unwrap_err();
    assert_eq!(err.line(), Some(4), "{err}");
    assert!(matches!(&err, RenderError::Undefined { expression, .. } if expression == "missing"), "{err:?}");
}

#[test]
fn go_control_structures_are_refused() {
    let errors = Renderer::new(&[config("go", "ok\n{{ range .items }}x{{ end }}\n")], Limits::default()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line(), Some(2));
    let message = errors[0].to_string();
    assert!(
        message
            .starts_with("template \"go\" (config) line 2: Go template control structures like `{{ range .items }}`"),
        "{message}"
    );
    assert!(message.contains("{% if %}/{% for %}"), "{message}");
}

#[test]
fn unsupported_go_syntax_gets_a_hint() {
    let errors = Renderer::new(&[config("go", "ok\n{{ .x | printf \"%d\" }}\n")], Limits::default()).unwrap_err();
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(message.starts_with("template \"go\" (config) line 2: syntax error"), "{message}");
    assert!(message.contains("Go template syntax"), "{message}");
    // No hint for ordinary Jinja mistakes.
    let errors = Renderer::new(&[config("j", "{% if x %}")], Limits::default()).unwrap_err();
    assert!(!errors[0].to_string().contains("Go template"), "{}", errors[0]);
}

#[test]
fn syntax_errors_of_all_templates_are_reported_together() {
    let errors = Renderer::new(
        &[
            tpl("a", Some("fine"), Some("line 1\n{% if %}")),
            config("b", "x\ny\n{{ unclosed"),
            config("good", "{{ fine }}"),
            tpl("c", Some("{% for x in y %}"), Some("{{ 1 + }}")),
        ],
        Limits::default(),
    )
    .unwrap_err();
    let found: Vec<(Option<&str>, Option<Field>, Option<usize>)> =
        errors.iter().map(|e| (e.template(), e.field(), e.line())).collect();
    assert_eq!(
        found,
        vec![
            (Some("a"), Some(Field::Commands), Some(2)),
            (Some("b"), Some(Field::Config), Some(3)),
            (Some("c"), Some(Field::Config), Some(1)),
            (Some("c"), Some(Field::Commands), Some(1)),
        ]
    );
    for e in &errors {
        assert!(matches!(e, RenderError::Syntax { .. }), "{e:?}");
        assert!(e.to_string().contains("syntax error"), "{e}");
    }
}

#[test]
fn invalid_and_duplicate_names() {
    let errors =
        Renderer::new(&[config("", "x"), config("a/b", "x"), config("d", "1"), config("d", "2")], Limits::default())
            .unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(matches!(&errors[0], RenderError::InvalidName { name, .. } if name.is_empty()));
    assert!(matches!(&errors[1], RenderError::InvalidName { name, .. } if name == "a/b"));
    assert_eq!(errors[2], RenderError::DuplicateTemplate { name: "d".into() });
}

#[test]
fn template_names_and_limits() {
    let r = renderer(&[config("b", ""), config("a", "")]);
    assert_eq!(r.template_names().collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(r.limits(), Limits::default());
    assert_eq!(Limits::default(), Limits { max_output_bytes: 1_048_576, fuel: 5_000_000, max_template_bytes: 262_144 });
}

#[test]
fn source_too_large() {
    let limits = Limits { max_template_bytes: 10, ..Limits::default() };
    let errors = Renderer::new(&[tpl("big", Some("0123456789A"), Some("0123456789"))], limits).unwrap_err();
    assert_eq!(
        errors,
        vec![RenderError::SourceTooLarge { template: "big".into(), field: Field::Config, size: 11, limit: 10 }]
    );
    assert_eq!(
        errors[0].to_string(),
        "template \"big\" (config): the text is 11 bytes, more than the limit of 10 bytes"
    );
}

#[test]
fn output_too_large() {
    let limits = Limits { max_output_bytes: 100, ..Limits::default() };
    let r = Renderer::new(&[tpl("t", Some("{% for i in range(n) %}0123456789{% endfor %}"), None)], limits).unwrap();
    assert_eq!(r.render("t", &ctx(json!({"n": 10}))).unwrap().config.unwrap().len(), 100);
    let err = r.render("t", &ctx(json!({"n": 11}))).unwrap_err();
    assert_eq!(err, RenderError::TooLarge { template: "t".into(), field: Field::Config, limit: 100 });
    assert_eq!(err.to_string(), "template \"t\" (config): the rendered text exceeds the limit of 100 bytes");
    // One huge expression is caught as well.
    let r = Renderer::new(&[config("t", "{{ 'x' * 1000 }}")], limits).unwrap();
    assert!(matches!(r.render("t", &ctx(json!({}))), Err(RenderError::TooLarge { .. })));
    // The limit applies per field.
    let r = Renderer::new(&[tpl("t", Some("{{ 'x' * 100 }}"), Some("set {{ 'y' * 96 }}"))], limits).unwrap();
    assert!(r.render("t", &ctx(json!({}))).is_ok());
}

#[test]
fn fuel_exhaustion() {
    let r =
        renderer(&[config("spin", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}")]);
    let err = r.render("spin", &ctx(json!({}))).unwrap_err();
    assert_eq!(err, RenderError::FuelExhausted { template: "spin".into(), field: Field::Config });
    assert!(err.to_string().contains("evaluation budget"), "{err}");
    // The default budget is generous: a big but realistic configuration renders.
    let r = renderer(&[config(
        "big",
        "{% for i in range(2000) %}set interfaces ethernet eth{{ i }} address '{{ host_cidr('10.0.0.0/8', i + 1) }}'\n{% endfor %}",
    )]);
    assert_eq!(r.render("big", &ctx(json!({}))).unwrap().config.unwrap().lines().count(), 2000);
}

#[test]
fn huge_range_is_an_error() {
    let err = render_one("{% for i in range(100000000) %}{% endfor %}", json!({})).unwrap_err();
    assert!(matches!(err, RenderError::Eval { .. } | RenderError::FuelExhausted { .. }), "{err:?}");
}

#[test]
fn secrets_are_placeholders_and_recorded() {
    let r = renderer(&[
        config("macros", "{% macro pw(n) %}{{ secret(n, 'password') }}{% endmacro %}"),
        tpl(
            "bgp",
            Some("password {{ secret('bgp-peers', 'pw') }}\n"),
            Some(
                "{% from 'macros/config' import pw %}set x '{{ pw('other') }}'\n{% set unused = secret('never', 'used') %}",
            ),
        ),
    ]);
    let out = r.render("bgp", &ctx(json!({}))).unwrap();
    assert_eq!(out.config.unwrap(), "password @@vrouter-secret:bgp-peers/pw@@\n");
    assert_eq!(out.commands.unwrap(), "set x '@@vrouter-secret:other/password@@'\n");
    assert_eq!(
        out.secrets,
        BTreeSet::from([
            SecretRef { name: "bgp-peers".into(), key: "pw".into() },
            SecretRef { name: "other".into(), key: "password".into() }
        ])
    );
}

#[test]
fn secrets_in_included_templates_are_recorded() {
    let r = renderer(&[config("inc", "{{ secret('s', 'k') }}"), config("main", "{% include 'inc' %}")]);
    let out = r.render("main", &ctx(json!({}))).unwrap();
    assert_eq!(out.secrets, BTreeSet::from([SecretRef { name: "s".into(), key: "k".into() }]));
}

#[test]
fn invalid_secret_references() {
    let err = render_one("x\n{{ secret('Bad_Name', 'k') }}", json!({})).unwrap_err();
    assert!(matches!(err, RenderError::Eval { line: Some(2), .. }), "{err:?}");
    assert!(err.to_string().contains("secret(\"Bad_Name\", \"k\"): \"Bad_Name\" is not a valid Secret name"), "{err}");
    let err = render_one("{{ secret('ok', 'a/b') }}", json!({})).unwrap_err();
    assert!(err.to_string().contains("is not a valid Secret key"), "{err}");
    let err = render_one("{{ secret('ok') }}", json!({})).unwrap_err();
    assert!(matches!(err, RenderError::Eval { .. }), "{err:?}");
}

#[test]
fn placeholders_from_params_are_refused() {
    let err = render_one("password {{ pw }}", json!({"pw": "@@vrouter-secret:admin/password@@"})).unwrap_err();
    assert_eq!(
        err,
        RenderError::ForeignPlaceholder {
            template: "t".into(),
            field: Field::Config,
            secret: SecretRef { name: "admin".into(), key: "password".into() }
        }
    );
    assert!(err.to_string().contains("\"admin/password\""), "{err}");
    // ... even when the same secret is also used legitimately elsewhere? Then it is the same value
    // going to the same router, so it is accepted.
    let out =
        render_one("{{ secret('admin', 'password') }} {{ pw }}", json!({"pw": "@@vrouter-secret:admin/password@@"}));
    assert!(out.is_ok());
}

#[test]
fn renderer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Renderer>();
    check::<RenderError>();
}

#[test]
fn params_shadow_helpers_but_filters_still_work() {
    let out = render_one(
        "{{ address }} {{ cidr | address }} {{ cidr | host(2) }}",
        json!({"address": "Main St", "cidr": "10.0.0.7/24"}),
    )
    .unwrap();
    // "Main St" is one value: quoted, since it is not a bare word.
    assert_eq!(out, "\"Main St\" 10.0.0.7 10.0.0.2");
}

#[test]
fn keys_that_are_not_identifiers() {
    let out =
        render_one("{{ params['my-key'] }} {{ vlan['10'] }}", json!({"my-key": 1, "vlan": {"10": "ten"}})).unwrap();
    assert_eq!(out, "1 ten");
}

#[test]
fn empty_fields_render_empty() {
    let r = renderer(&[tpl("t", Some(""), Some(""))]);
    let out = r.render("t", &ctx(json!({}))).unwrap();
    assert_eq!((out.config.as_deref(), out.commands.as_deref()), (Some(""), Some("")));
}

#[test]
fn network_helpers_in_a_template() {
    let text = "interfaces {\n    ethernet eth1 {\n        address {{ lan | host_cidr(1) }}\n    }\n}\n\
                {% for v in vlans %}{{ subnet(supernet, 24, v) }} gw {{ subnet(supernet, 24, v) | host(1) }}\n{% endfor %}\
                {% if lan is ipv4 %}v4 {{ netmask(lan) }} {{ broadcast(lan) }}{% endif %}";
    let out = render_one(text, json!({"lan": "192.168.10.0/24", "supernet": "10.20.0.0/16", "vlans": [1, 2]})).unwrap();
    assert_eq!(
        out,
        "interfaces {\n    ethernet eth1 {\n        address 192.168.10.1/24\n    }\n}\n\
         10.20.1.0/24 gw 10.20.1.1\n10.20.2.0/24 gw 10.20.2.1\nv4 255.255.255.0 192.168.10.255"
    );
    let err = render_one("line\n{{ host('10.0.0.0/30', 5) }}", json!({})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"t\" (config) line 2: host(\"10.0.0.0/30\", 5): out of range, subnet has 2 hosts"
    );
}

#[test]
fn merged_params_render() {
    let shared = json!({"ntp": ["a", "b"], "bgp": {"asn": 65000, "keepalive": 30}});
    let binding = json!({"bgp": {"keepalive": 10}, "ntp": ["c"]});
    let target = json!({"hostname": "r1", "bgp": {"router_id": "1.1.1.1"}});
    let layers: Vec<serde_json::Map<String, serde_json::Value>> =
        [shared, binding, target].into_iter().map(|v| v.as_object().unwrap().clone()).collect();
    let params = merge_params(&layers.iter().collect::<Vec<_>>());
    let r = renderer(&[config(
        "t",
        "{{ hostname }} {{ bgp.asn }} {{ bgp.keepalive }} {{ bgp.router_id }} {{ ntp | join(',') }}",
    )]);
    let c = RenderContext { params, ..RenderContext::default() };
    assert_eq!(r.render("t", &c).unwrap().config.unwrap(), "r1 65000 10 1.1.1.1 c");
}

/// The examples of docs/templates.md.
#[test]
fn documentation_examples() {
    let r = renderer(&[
        tpl(
            "base",
            Some(
                "system {\n    host-name {{ hostname }}\n}\ninterfaces {\n    ethernet eth1 {\n        address {{ lan | host_cidr(1) }}\n    }\n}\n",
            ),
            Some(
                "set system time-zone '{{ timezone | default(\"UTC\") }}'\n{% for server in ntp %}\nset service ntp server {{ server }}\n{% endfor %}\n",
            ),
        ),
        config(
            "macros",
            "{% macro ethernet(name, cidr, description=\"\") %}\nethernet {{ name }} {\n    address {{ cidr }}\n\
             {% if description %}    description \"{{ description }}\"\n{% endif %}}\n{% endmacro %}",
        ),
        config("common", "system {\n    time-zone UTC\n}\n"),
        tpl(
            "main",
            Some(
                "{% import \"macros\" as m %}\ninterfaces {\n{{ m.ethernet(\"eth1\", lan | host_cidr(1), \"LAN\") }}\n}\n{% include \"common\" %}",
            ),
            Some(
                "{% from \"macros/config\" import ethernet %}set x {% for k, v in map | items %}{{ k }}={{ v }} {% endfor %}{{ \"%s-%d\" | format(a, b) }}",
            ),
        ),
    ]);
    let c = ctx(
        json!({"hostname": "r1", "lan": "192.168.1.0/24", "ntp": ["a", "b"], "map": {"x": 1, "y": 2}, "a": "s", "b": 3}),
    );
    let base = r.render("base", &c).unwrap();
    assert_eq!(
        base.config.unwrap(),
        "system {\n    host-name r1\n}\ninterfaces {\n    ethernet eth1 {\n        address 192.168.1.1/24\n    }\n}\n"
    );
    assert_eq!(
        base.commands.unwrap(),
        "set system time-zone 'UTC'\n\nset service ntp server a\n\nset service ntp server b\n\n"
    );
    let main = r.render("main", &c).unwrap();
    assert_eq!(
        main.config.unwrap(),
        "\ninterfaces {\n\nethernet eth1 {\n    address 192.168.1.1/24\n    description \"LAN\"\n}\n\n}\nsystem {\n    time-zone UTC\n}\n"
    );
    assert_eq!(main.commands.unwrap(), "set x x=1 y=2 s-3");
    let errs = Renderer::new(&[config("bgp", "a\nb\n{% if x %}")], Limits::default()).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "template \"bgp\" (config) line 3: syntax error: unexpected end of input, expected end of block"
    );
}
