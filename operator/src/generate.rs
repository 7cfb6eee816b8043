//! A binding's generated VRouterConfigs (pure): resolve its templates, params and targets,
//! render per target, check the result with the VyOS model.
//!
//! Failures are kept as small as they can be: a missing template or params object, or a
//! template the binding names that does not compile, fails the binding (nothing can be
//! rendered; a broken template the binding does not name is left out of its renderer); a render
//! failure or invalid output fails that target only — its generated config keeps its previous
//! content, and the others proceed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use vyos_config::{Config, RenderOptions, Schema, Tree, parse_commands, render_config};

use crate::crd::{
    ANNOTATION_BINDING, ANNOTATION_TARGET, LABEL_BINDING, LABEL_TARGET, NameRef, Params, VRouterBinding,
    VRouterConfigSpec, VRouterParams, VRouterTarget, VRouterTemplate, validate,
};
use crate::naming::{config_name, label_value};
use crate::render::{
    Limits, ObjectInfo, PreparedContext, RenderContext, Renderer, SecretRef, TemplateSource, merge_params,
};
pub use crate::render_cache::RenderCache;
use crate::render_cache::{Hasher, InputDigest};

/// The objects a binding may refer to (same namespace).
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Templates by name.
    pub templates: &'a BTreeMap<String, VRouterTemplate>,
    /// Params by name.
    pub params: &'a BTreeMap<String, VRouterParams>,
    /// Targets by name.
    pub targets: &'a BTreeMap<String, VRouterTarget>,
}

/// One generated VRouterConfig.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The target.
    pub target: String,
    /// The config's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its spec.
    pub spec: VRouterConfigSpec,
    /// Secrets the content refers to.
    pub secrets: BTreeSet<SecretRef>,
}

/// What a binding generates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// Selected targets, in rollout order (those that exist).
    pub targets: Vec<String>,
    /// Rendered configs, in target order (shared with the render cache).
    pub configs: Vec<Arc<Generated>>,
    /// Targets that could not be rendered, with the reason.
    pub failed: BTreeMap<String, String>,
}

/// Why a binding cannot render at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BindingError(pub String);

/// Whether `labels` match `selector` (matchLabels and matchExpressions).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            // Validation refuses other operators; never match on one.
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The binding's targets: `targetRefs` in order, then selector matches by name. Names in
/// `targetRefs` that do not exist are returned separately.
pub fn select_targets(
    binding: &VRouterBinding,
    targets: &BTreeMap<String, VRouterTarget>,
) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &binding.spec.target_refs {
        if !targets.contains_key(&r.name) {
            missing.push(r.name.clone());
        } else if seen.insert(r.name.clone()) {
            out.push(r.name.clone());
        }
    }
    if let Some(sel) = &binding.spec.target_selector {
        for (name, t) in targets {
            if selector_matches(sel, t.labels()) && seen.insert(name.clone()) {
                out.push(name.clone());
            }
        }
    }
    (out, missing)
}

fn template_refs(binding: &VRouterBinding) -> Vec<&NameRef> {
    binding.spec.template_ref.iter().chain(binding.spec.template_refs.iter()).collect()
}

/// Renders a binding for all its targets.
pub fn generate(binding: &VRouterBinding, inputs: Inputs<'_>) -> Result<Output, BindingError> {
    generate_cached(binding, inputs, &mut RenderCache::new())
}

/// [`generate`], reusing the results of an earlier call for targets whose inputs did not change
/// (see [`RenderCache`]), and leaving this call's results in `cache`.
pub fn generate_cached(
    binding: &VRouterBinding,
    inputs: Inputs<'_>,
    cache: &mut RenderCache,
) -> Result<Output, BindingError> {
    let namespace = binding.namespace().unwrap_or_default();
    let binding_name = binding.name_any();
    validate::binding(&binding.spec, &namespace).map_err(|p| BindingError(validate::describe(&p)))?;

    let refs = template_refs(binding);
    let missing: Vec<&str> =
        refs.iter().filter(|r| !inputs.templates.contains_key(&r.name)).map(|r| r.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(BindingError(format!("VRouterTemplate not found: {}", missing.join(", "))));
    }
    let mut layers: Vec<&Params> = Vec::new();
    let mut missing_params = Vec::new();
    for r in &binding.spec.params_refs {
        match inputs.params.get(&r.name) {
            Some(p) => layers.push(&p.spec.params),
            None => missing_params.push(r.name.as_str()),
        }
    }
    if !missing_params.is_empty() {
        return Err(BindingError(format!("VRouterParams not found: {}", missing_params.join(", "))));
    }
    let empty = Params::new();
    layers.push(binding.spec.params.as_ref().unwrap_or(&empty));

    // Every template of the namespace is loadable (include/import by name). A template that
    // does not compile fails only the bindings naming it: for the others it is left out, and a
    // render that includes or imports it fails that target with its compile error.
    let mut broken: Vec<(String, String)> = Vec::new();
    let compile = |broken: &mut Vec<(String, String)>| {
        let used: BTreeSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        let mut left_out: BTreeSet<&str> = BTreeSet::new();
        loop {
            let sources: Vec<TemplateSource> = inputs
                .templates
                .iter()
                .filter(|(name, _)| !left_out.contains(name.as_str()))
                .map(|(name, t)| TemplateSource {
                    name: name.clone(),
                    config: t.spec.config.clone(),
                    commands: t.spec.commands.clone(),
                })
                .collect();
            let errors = match Renderer::new(&sources, Limits::default()) {
                Ok(r) => return Ok(r),
                Err(errors) => errors,
            };
            let relevant: Vec<String> = errors
                .iter()
                .filter(|e| e.template().is_none_or(|t| used.contains(t)))
                .map(ToString::to_string)
                .collect();
            // The templates to leave out next: those with errors, not left out yet (none: give up).
            let mut more = Vec::new();
            for e in &errors {
                if let Some((name, _)) = e.template().and_then(|t| inputs.templates.get_key_value(t))
                    && !left_out.contains(name.as_str())
                {
                    more.push((name, e.to_string()));
                }
            }
            if !relevant.is_empty() || more.is_empty() {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                return Err(BindingError(if relevant.is_empty() { all } else { relevant }.join("; ")));
            }
            for (name, e) in more {
                left_out.insert(name.as_str());
                broken.push((name.clone(), e));
            }
        }
    };
    let (mut entry, hit) = cache.take(&namespace, &binding_name, binding_digest(binding, inputs, &layers));
    // Cached results exist only for templates that compiled: compile when something renders.
    let mut renderer = if hit { None } else { Some(compile(&mut broken)?) };
    let mut results = std::collections::BTreeMap::new();

    let (targets, missing_targets) = select_targets(binding, inputs.targets);
    let mut out = Output { targets: targets.clone(), ..Output::default() };
    for name in missing_targets {
        out.failed.insert(name.clone(), format!("VRouterTarget {name:?} not found"));
    }
    let binding_info =
        ObjectInfo { name: binding_name.clone(), namespace: namespace.clone(), labels: binding.labels().clone() };
    for target_name in &targets {
        let Some(target) = inputs.targets.get(target_name) else { continue };
        let tdigest = target_digest(target_name, target);
        let result = match entry.targets.remove(target_name) {
            Some((d, r)) if d == tdigest => r,
            _ => {
                let r = match &renderer {
                    Some(r) => r,
                    None => renderer.insert(compile(&mut broken)?),
                };
                // The context (params merged over every layer) is built only to render.
                let mut target_layers = layers.clone();
                if let Some(p) = &target.spec.params {
                    target_layers.push(p);
                }
                let ctx = RenderContext {
                    params: merge_params(&target_layers),
                    target: ObjectInfo {
                        name: target_name.clone(),
                        namespace: namespace.clone(),
                        labels: target.labels().clone(),
                    },
                    binding: Some(binding_info.clone()),
                };
                render_target(r, &refs, &ctx).map_err(|e| explain_left_out(e, &broken)).map(
                    |(config, commands, secrets)| {
                        Arc::new(Generated {
                            target: target_name.clone(),
                            labels: BTreeMap::from([
                                (LABEL_BINDING.to_owned(), label_value(&binding_name)),
                                (LABEL_TARGET.to_owned(), label_value(target_name)),
                            ]),
                            annotations: BTreeMap::from([
                                (ANNOTATION_BINDING.to_owned(), binding_name.clone()),
                                (ANNOTATION_TARGET.to_owned(), target_name.clone()),
                            ]),
                            spec: VRouterConfigSpec {
                                target_ref: NameRef::new(target_name.clone()),
                                config,
                                commands,
                                save: binding.spec.save,
                                priority: binding.spec.priority,
                            },
                            secrets,
                            name: config_name(&binding_name, target_name),
                        })
                    },
                )
            }
        };
        match &result {
            Ok(g) => out.configs.push(g.clone()),
            Err(e) => {
                out.failed.insert(target_name.clone(), e.clone());
            }
        }
        results.insert(target_name.clone(), (tdigest, result));
    }
    entry.targets = results;
    cache.put(&namespace, &binding_name, entry);
    Ok(out)
}

/// A render error that names a template left out for not compiling, with that template's error.
fn explain_left_out(message: String, broken: &[(String, String)]) -> String {
    let named: Vec<&str> =
        broken.iter().filter(|(name, _)| message.contains(&format!("{name:?}"))).map(|(_, e)| e.as_str()).collect();
    if named.is_empty() { message } else { format!("{message} (it does not compile: {})", named.join("; ")) }
}

/// Digest of what a binding's rendering reads besides the target (see [`RenderCache`]).
fn binding_digest(binding: &VRouterBinding, inputs: Inputs<'_>, layers: &[&Params]) -> InputDigest {
    let mut h = Hasher::new("binding");
    h.opt("namespace", binding.metadata.namespace.as_deref());
    h.opt("name", binding.metadata.name.as_deref());
    h.json("labels", binding.labels());
    h.json("spec", &binding.spec);
    for (name, t) in inputs.templates {
        h.bytes("template", name.as_bytes());
        h.opt("config", t.spec.config.as_deref());
        h.opt("commands", t.spec.commands.as_deref());
    }
    for layer in layers {
        h.json("params", layer);
    }
    h.finish()
}

/// Digest of what a binding's rendering reads of a target.
fn target_digest(name: &str, target: &VRouterTarget) -> InputDigest {
    let mut h = Hasher::new("target");
    h.bytes("name", name.as_bytes());
    h.json("labels", target.labels());
    h.json("params", &target.spec.params);
    h.finish()
}

type RenderedTarget = (Option<String>, Option<String>, BTreeSet<SecretRef>);

/// Renders every template for one target: config fragments merged in template order (a later
/// template overrides an earlier one), commands concatenated.
fn render_target(renderer: &Renderer, refs: &[&NameRef], ctx: &RenderContext) -> Result<RenderedTarget, String> {
    let mut tree = Tree::new();
    let mut any_config = false;
    let mut commands: Vec<String> = Vec::new();
    let mut secrets = BTreeSet::new();
    let ctx = PreparedContext::new(ctx);
    for r in refs {
        let rendered = renderer.render_prepared(&r.name, &ctx).map_err(|e| e.to_string())?;
        secrets.extend(rendered.secrets.iter().cloned());
        if let Some(text) = rendered.config.as_deref().filter(|t| !t.trim().is_empty()) {
            let part = Config::parse(text)
                .map_err(|e| format!("template {:?} (config) rendered invalid VyOS configuration: {e}", r.name))?;
            vyos_config::merge(&mut tree, &part.tree, Schema::vyos());
            any_config = true;
        }
        if let Some(text) = rendered.commands.as_deref().filter(|t| !t.trim().is_empty()) {
            parse_commands(text)
                .map_err(|e| format!("template {:?} (commands) rendered invalid commands: {e}", r.name))?;
            commands.push(text.trim_end_matches('\n').to_owned());
        }
    }
    let config = any_config.then(|| render_config(&tree, RenderOptions::default()));
    let commands = (!commands.is_empty()).then(|| {
        let mut c = commands.join("\n");
        c.push('\n');
        c
    });
    Ok((config, commands, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{VRouterBindingSpec, VRouterParamsSpec, VRouterTargetSpec, VRouterTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    fn obj<K: kube::Resource<DynamicType = ()>>(mut k: K, name: &str, labels: &[(&str, &str)]) -> K {
        k.meta_mut().name = Some(name.into());
        k.meta_mut().namespace = Some("net".into());
        k.meta_mut().labels = Some(labels.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect());
        k
    }

    fn fixture() -> (BTreeMap<String, VRouterTemplate>, BTreeMap<String, VRouterParams>, BTreeMap<String, VRouterTarget>)
    {
        let templates = BTreeMap::from([
            (
                "base".to_owned(),
                obj(
                    VRouterTemplate::new(
                        "",
                        VRouterTemplateSpec {
                            config: Some(
                                "system {\n    host-name {{ target.name }}\n    time-zone {{ tz }}\n}\n".into(),
                            ),
                            commands: None,
                        },
                    ),
                    "base",
                    &[],
                ),
            ),
            (
                "bgp".to_owned(),
                obj(
                    VRouterTemplate::new(
                        "",
                        VRouterTemplateSpec {
                            config: None,
                            commands: Some(
                                "set protocols bgp system-as '{{ .asn }}'\nset system time-zone '{{ site.tz }}'\n"
                                    .into(),
                            ),
                        },
                    ),
                    "bgp",
                    &[],
                ),
            ),
        ]);
        let params = BTreeMap::from([(
            "common".to_owned(),
            obj(
                VRouterParams::new(
                    "",
                    VRouterParamsSpec {
                        params: json!({"tz": "UTC", "asn": 65000, "site": {"tz": "UTC"}}).as_object().unwrap().clone(),
                    },
                ),
                "common",
                &[],
            ),
        )]);
        let mut targets = BTreeMap::new();
        for (name, role, extra) in [
            ("r1", "edge", json!({"asn": 65001})),
            ("r2", "edge", json!({})),
            ("hub", "core", json!({"site": {"tz": "Europe/Paris"}})),
        ] {
            let spec = VRouterTargetSpec { params: extra.as_object().cloned(), ..Default::default() };
            targets.insert(name.to_owned(), obj(VRouterTarget::new("", spec), name, &[("role", role)]));
        }
        (templates, params, targets)
    }

    fn binding(spec: VRouterBindingSpec) -> VRouterBinding {
        obj(VRouterBinding::new("", spec), "core", &[])
    }

    #[test]
    fn renders_every_selected_target_with_layered_params() {
        let (templates, params, targets) = fixture();
        let b = binding(VRouterBindingSpec {
            template_refs: vec![NameRef::new("base"), NameRef::new("bgp")],
            params_refs: vec![NameRef::new("common")],
            target_refs: vec![NameRef::new("r2")],
            target_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "role".into(),
                    operator: "In".into(),
                    values: Some(vec!["edge".into(), "core".into()]),
                }]),
                ..Default::default()
            }),
            save: true,
            priority: 5,
            ..Default::default()
        });
        let out = generate(&b, Inputs { templates: &templates, params: &params, targets: &targets }).unwrap();
        assert_eq!(out.targets, ["r2", "hub", "r1"]);
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        let r1 = out.configs.iter().find(|c| c.target == "r1").unwrap();
        assert_eq!(r1.name, "core.r1");
        assert_eq!(r1.spec.priority, 5);
        assert_eq!(r1.spec.config.as_deref(), Some("system {\n    host-name \"r1\"\n    time-zone \"UTC\"\n}\n"));
        assert_eq!(
            r1.spec.commands.as_deref(),
            Some("set protocols bgp system-as '65001'\nset system time-zone 'UTC'\n")
        );
        assert_eq!(r1.labels[LABEL_BINDING], "core");
        assert_eq!(r1.annotations[ANNOTATION_TARGET], "r1");
        let hub = out.configs.iter().find(|c| c.target == "hub").unwrap();
        assert!(hub.spec.commands.as_deref().unwrap().contains("'Europe/Paris'"));
        assert!(hub.spec.commands.as_deref().unwrap().contains("system-as '65000'"));
    }

    #[test]
    fn a_render_failure_fails_only_its_target() {
        let (templates, params, mut targets) = fixture();
        // r2 loses `tz` by a null in its own params.
        targets.get_mut("r2").unwrap().spec.params = json!({"tz": null}).as_object().cloned();
        let b = binding(VRouterBindingSpec {
            template_refs: vec![NameRef::new("base")],
            params_refs: vec![NameRef::new("common")],
            target_refs: vec![NameRef::new("r1"), NameRef::new("r2"), NameRef::new("ghost")],
            save: true,
            ..Default::default()
        });
        let out = generate(&b, Inputs { templates: &templates, params: &params, targets: &targets }).unwrap();
        assert_eq!(out.configs.iter().map(|c| c.target.as_str()).collect::<Vec<_>>(), ["r1"]);
        assert!(out.failed["r2"].contains("tz"), "{}", out.failed["r2"]);
        assert!(out.failed["r2"].contains("base"), "{}", out.failed["r2"]);
        assert_eq!(out.failed["ghost"], "VRouterTarget \"ghost\" not found");
    }

    #[test]
    fn invalid_rendered_content_names_the_template() {
        let (mut templates, params, targets) = fixture();
        templates.get_mut("bgp").unwrap().spec.commands = Some("set system host-name '{{ tz }}'\ncommit\n".into());
        let b = binding(VRouterBindingSpec {
            template_refs: vec![NameRef::new("bgp")],
            params_refs: vec![NameRef::new("common")],
            target_refs: vec![NameRef::new("r1")],
            save: true,
            ..Default::default()
        });
        let out = generate(&b, Inputs { templates: &templates, params: &params, targets: &targets }).unwrap();
        let msg = &out.failed["r1"];
        assert!(msg.starts_with("template \"bgp\" (commands) rendered invalid commands: line 2"), "{msg}");
    }

    #[test]
    fn missing_references_fail_the_binding() {
        let (templates, params, targets) = fixture();
        let b = binding(VRouterBindingSpec {
            template_refs: vec![NameRef::new("nope")],
            params_refs: vec![NameRef::new("common")],
            target_refs: vec![NameRef::new("r1")],
            save: true,
            ..Default::default()
        });
        let e = generate(&b, Inputs { templates: &templates, params: &params, targets: &targets }).unwrap_err();
        assert_eq!(e.0, "VRouterTemplate not found: nope");
        let b = binding(VRouterBindingSpec {
            template_refs: vec![NameRef::new("base")],
            params_refs: vec![NameRef::new("gone")],
            target_refs: vec![NameRef::new("r1")],
            save: true,
            ..Default::default()
        });
        let e = generate(&b, Inputs { templates: &templates, params: &params, targets: &targets }).unwrap_err();
        assert_eq!(e.0, "VRouterParams not found: gone");
        let b = binding(VRouterBindingSpec { save: true, ..Default::default() });
        assert!(generate(&b, Inputs { templates: &templates, params: &params, targets: &targets }).is_err());
    }

    #[test]
    fn a_broken_template_fails_only_the_bindings_that_use_it() {
        let (mut templates, params, targets) = fixture();
        let mut bad = templates["base"].clone();
        bad.metadata.name = Some("bad".into());
        bad.spec.config = Some("system {\n    host-name {% if %}\n}\n".into());
        templates.insert("bad".into(), bad);
        let mut includer = templates["base"].clone();
        includer.metadata.name = Some("includer".into());
        includer.spec.config = Some("{% include \"bad\" %}".into());
        templates.insert("includer".into(), includer);
        let uses = |t: &str| {
            binding(VRouterBindingSpec {
                template_refs: vec![NameRef::new(t)],
                params_refs: vec![NameRef::new("common")],
                target_refs: vec![NameRef::new("r1")],
                save: true,
                ..Default::default()
            })
        };
        let inputs = Inputs { templates: &templates, params: &params, targets: &targets };
        // The binding naming it fails, with the template's error.
        let e = generate(&uses("bad"), inputs).unwrap_err();
        assert!(e.0.starts_with("template \"bad\" (config) line 2:"), "{}", e.0);
        // One that includes it fails its targets, saying why.
        let out = generate(&uses("includer"), inputs).unwrap();
        let msg = &out.failed["r1"];
        assert!(
            msg.contains("\"bad\"") && msg.contains("it does not compile: template \"bad\" (config) line 2"),
            "{msg}"
        );
        // Another renders, and follows a params change.
        let mut cache = RenderCache::new();
        let other = uses("base");
        let out = generate_cached(&other, inputs, &mut cache).unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        assert!(out.configs[0].spec.config.as_deref().unwrap().contains("time-zone \"UTC\""));
        let mut p2 = params.clone();
        p2.get_mut("common").unwrap().spec.params.insert("tz".into(), json!("Asia/Tokyo"));
        let out = generate_cached(&other, Inputs { params: &p2, ..inputs }, &mut cache).unwrap();
        assert!(out.configs[0].spec.config.as_deref().unwrap().contains("time-zone \"Asia/Tokyo\""));
    }

    /// Marks every cached result of binding `core` so that a reused one shows.
    fn poison(cache: &mut RenderCache) {
        for (_, result) in cache.entry_mut("net", "core").unwrap().targets.values_mut() {
            if let Ok(g) = result
                && let Some(config) = &mut Arc::make_mut(g).spec.config
            {
                config.push_str("# cached\n");
            }
        }
    }

    #[test]
    fn the_cache_reuses_results_until_an_input_changes() {
        let (templates, params, targets) = fixture();
        let b = binding(VRouterBindingSpec {
            template_refs: vec![NameRef::new("base"), NameRef::new("bgp")],
            params_refs: vec![NameRef::new("common")],
            target_refs: vec![NameRef::new("r1"), NameRef::new("r2")],
            save: true,
            ..Default::default()
        });
        let inputs = Inputs { templates: &templates, params: &params, targets: &targets };
        let mut cache = RenderCache::new();
        let first = generate_cached(&b, inputs, &mut cache).unwrap();
        assert_eq!(first, generate(&b, inputs).unwrap());
        assert_eq!(cache.len(), 2);
        // Nothing changed: the (tampered) cached results are used.
        poison(&mut cache);
        let again = generate_cached(&b, inputs, &mut cache).unwrap();
        assert!(again.configs.iter().all(|c| c.spec.config.as_deref().unwrap().ends_with("# cached\n")));

        // Each kind of input, changed, is rendered again (and matches an uncached render).
        let check = |b: &VRouterBinding, inputs: Inputs<'_>, cache: &mut RenderCache, changed: &[&str]| {
            poison(cache);
            let out = generate_cached(b, inputs, cache).unwrap();
            assert_eq!(out.configs.len(), 2);
            for c in &out.configs {
                let cached = c.spec.config.as_deref().unwrap().ends_with("# cached\n");
                assert_eq!(cached, !changed.contains(&c.target.as_str()), "{}: {:?}", c.target, c.spec.config);
            }
            let mut fresh = generate(b, inputs).unwrap();
            let mut got = out;
            for c in fresh.configs.iter_mut().chain(got.configs.iter_mut()) {
                let c = Arc::make_mut(c);
                c.spec.config = c.spec.config.take().map(|t| t.replace("# cached\n", ""));
            }
            assert_eq!(got, fresh);
        };
        // A template.
        let mut t2 = templates.clone();
        t2.get_mut("base").unwrap().spec.config = Some("system {\n    host-name {{ target.name }}-x\n}\n".into());
        check(&b, Inputs { templates: &t2, ..inputs }, &mut cache, &["r1", "r2"]);
        // The second template.
        let mut t3 = t2.clone();
        t3.get_mut("bgp").unwrap().spec.commands = Some("set system time-zone '{{ tz }}'\n".into());
        check(&b, Inputs { templates: &t3, ..inputs }, &mut cache, &["r1", "r2"]);
        // A template the binding does not name (templates can include any of them).
        let extra = t3["base"].clone();
        t3.insert("extra".into(), extra);
        check(&b, Inputs { templates: &t3, ..inputs }, &mut cache, &["r1", "r2"]);
        // A params object.
        let mut p2 = params.clone();
        p2.get_mut("common").unwrap().spec.params.insert("tz".into(), json!("Asia/Tokyo"));
        check(&b, Inputs { templates: &t3, params: &p2, ..inputs }, &mut cache, &["r1", "r2"]);
        // The binding's own params.
        let mut b2 = b.clone();
        b2.spec.params = json!({"tz": "UTC"}).as_object().cloned();
        check(&b2, Inputs { templates: &t3, params: &p2, ..inputs }, &mut cache, &["r1", "r2"]);
        // One target's params: only that target.
        let mut tg2 = targets.clone();
        tg2.get_mut("r2").unwrap().spec.params = json!({"tz": "Europe/Oslo"}).as_object().cloned();
        check(&b2, Inputs { templates: &t3, params: &p2, targets: &tg2 }, &mut cache, &["r2"]);
        // One target's labels (templates can read them).
        tg2.get_mut("r1").unwrap().metadata.labels.get_or_insert_default().insert("site".into(), "x".into());
        check(&b2, Inputs { templates: &t3, params: &p2, targets: &tg2 }, &mut cache, &["r1"]);
        // Nothing changed since the last call.
        check(&b2, Inputs { templates: &t3, params: &p2, targets: &tg2 }, &mut cache, &[]);
        // A target that leaves is forgotten.
        let mut b3 = b2.clone();
        b3.spec.target_refs.pop();
        generate_cached(&b3, Inputs { templates: &t3, params: &p2, targets: &tg2 }, &mut cache).unwrap();
        assert_eq!(cache.len(), 1);
        cache.retain(|_, name| name != "core");
        assert!(cache.is_empty());
    }

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        let req = |op: &str, values: Option<Vec<&str>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            ..Default::default()
        };
        assert!(selector_matches(&LabelSelector::default(), &labels));
        assert!(selector_matches(&req("In", Some(vec!["1", "2"])), &labels));
        assert!(!selector_matches(&req("NotIn", Some(vec!["1"])), &labels));
        assert!(selector_matches(&req("Exists", None), &labels));
        assert!(!selector_matches(&req("DoesNotExist", None), &labels));
        assert!(!selector_matches(&req("Bogus", None), &labels));
        let ml = LabelSelector { match_labels: Some(BTreeMap::from([("a".into(), "2".into())])), ..Default::default() };
        assert!(!selector_matches(&ml, &labels));
    }
}
