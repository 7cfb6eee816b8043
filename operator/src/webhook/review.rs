//! The admission rules (pure): one request and the objects of its namespace → allowed or
//! denied, with messages naming the field.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crd::{
    ProxmoxCluster, VRouterBinding, VRouterConfig, VRouterParams, VRouterTarget, VRouterTemplate, validate,
};
use crate::generate::{Inputs, generate};
use crate::render::{Limits, Renderer, TemplateSource, raw_syntax_uses};

/// The operation reviewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT (never ours; allowed).
    Connect,
}

impl Operation {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One admission request, reduced to what the rules read.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The kind (`VRouterTarget`, ...).
    pub kind: String,
    /// The operation.
    pub operation: Operation,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The object as it would be stored (CREATE, UPDATE).
    pub object: Option<Value>,
    /// The object as stored (UPDATE, DELETE).
    pub old_object: Option<Value>,
}

/// The objects of the request's namespace the rules look at, by name. Which kinds are filled
/// depends on the request ([`Needs::of`]); the others stay empty.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Templates.
    pub templates: BTreeMap<String, VRouterTemplate>,
    /// Params.
    pub params: BTreeMap<String, VRouterParams>,
    /// Targets.
    pub targets: BTreeMap<String, VRouterTarget>,
    /// Bindings.
    pub bindings: BTreeMap<String, VRouterBinding>,
    /// Configs.
    pub configs: BTreeMap<String, VRouterConfig>,
    /// Proxmox clusters.
    pub proxmox_clusters: BTreeMap<String, ProxmoxCluster>,
}

/// Which kinds of the namespace a request's review reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Only this target (read by name instead of listing them all: configs, which the operator
    /// itself writes for every router).
    pub target: Option<String>,
    /// Only this Proxmox cluster (a target's provider reference).
    pub proxmox_cluster: Option<String>,
    /// Templates.
    pub templates: bool,
    /// Params.
    pub params: bool,
    /// Targets.
    pub targets: bool,
    /// Bindings.
    pub bindings: bool,
    /// Configs.
    pub configs: bool,
    /// Proxmox clusters.
    pub proxmox_clusters: bool,
}

impl Needs {
    /// What reviewing `request` reads: [`Needs::of`] its kind and operation, narrowed to single
    /// objects where the rules name them.
    pub fn for_request(request: &Request) -> Needs {
        let mut needs = Needs::of(&request.kind, request.operation);
        let object = request.object.as_ref();
        let name_at =
            |pointer: &str| object.and_then(|o| o.pointer(pointer)).and_then(Value::as_str).map(str::to_owned);
        if request.kind == "VRouterConfig" && needs.targets {
            needs.targets = false;
            needs.target = Some(name_at("/spec/targetRef/name").unwrap_or_default());
        }
        if request.kind == "VRouterTarget" && needs.proxmox_clusters {
            needs.proxmox_clusters = false;
            needs.proxmox_cluster = name_at("/spec/provider/proxmox/clusterRef/name");
        }
        needs
    }

    /// What reviewing `kind` under `operation` reads.
    pub fn of(kind: &str, operation: Operation) -> Needs {
        let render = Needs { templates: true, params: true, targets: true, bindings: true, ..Needs::default() };
        match (kind, operation) {
            (_, Operation::Connect) => Needs::default(),
            ("VRouterTemplate" | "VRouterParams", Operation::Delete) => Needs { bindings: true, ..Needs::default() },
            ("VRouterTemplate" | "VRouterParams", _) => render,
            ("VRouterTarget", Operation::Delete) => Needs { bindings: true, configs: true, ..Needs::default() },
            ("VRouterTarget", _) => Needs { proxmox_clusters: true, ..render },
            ("VRouterBinding", Operation::Delete) => Needs::default(),
            ("VRouterBinding", _) => Needs { templates: true, params: true, targets: true, ..Needs::default() },
            ("VRouterConfig", Operation::Delete) => Needs::default(),
            ("VRouterConfig", _) => Needs { targets: true, ..Needs::default() },
            ("ProxmoxCluster", Operation::Delete) => Needs { targets: true, ..Needs::default() },
            _ => Needs::default(),
        }
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not (each problem names its field or object).
    pub problems: Vec<String>,
    /// Allowed, but worth saying (e.g. a deprecated field).
    pub warnings: Vec<String>,
}

impl Verdict {
    fn allow() -> Verdict {
        Verdict { allowed: true, problems: Vec::new(), warnings: Vec::new() }
    }

    fn from_problems(problems: Vec<String>) -> Verdict {
        Verdict { allowed: problems.is_empty(), problems, warnings: Vec::new() }
    }

    /// The denial message: every problem, joined.
    pub fn message(&self) -> String {
        self.problems.join("; ")
    }
}

fn parse<K: DeserializeOwned>(kind: &str, object: &Value) -> Result<K, String> {
    serde_json::from_value(object.clone()).map_err(|e| format!("{kind}: cannot read the object: {e}"))
}

fn problems(p: Result<(), Vec<validate::Problem>>) -> Vec<String> {
    p.err().unwrap_or_default().iter().map(ToString::to_string).collect()
}

fn being_deleted(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Reviews one request.
pub fn review(request: &Request, snapshot: &Snapshot) -> Verdict {
    let object = match request.operation {
        Operation::Connect => return Verdict::allow(),
        Operation::Delete => return review_delete(request, snapshot),
        Operation::Create | Operation::Update => match &request.object {
            Some(o) => o,
            None => return Verdict::from_problems(vec!["the request carries no object".into()]),
        },
    };
    // An object on its way out only has finalizers removed: never block that.
    if request.operation == Operation::Update && being_deleted(object) {
        return Verdict::allow();
    }
    let ns = request.namespace.as_str();
    let result = match request.kind.as_str() {
        "VRouterTemplate" => parse(&request.kind, object).map(|t| template(t, snapshot)),
        "VRouterParams" => parse(&request.kind, object).map(|p| params(p, snapshot)),
        "VRouterTarget" => parse(&request.kind, object).map(|t| target(t, ns, snapshot)),
        "VRouterBinding" => parse(&request.kind, object).map(|b| binding(&b, ns, snapshot)),
        "VRouterConfig" => parse(&request.kind, object).map(|c| config(&c, ns, snapshot)),
        "ProxmoxCluster" => parse::<ProxmoxCluster>(&request.kind, object)
            .map(|p| Verdict::from_problems(problems(validate::proxmox(&p.spec)))),
        _ => Ok(Verdict::allow()),
    };
    result.unwrap_or_else(|e| Verdict::from_problems(vec![e]))
}

fn review_delete(request: &Request, snapshot: &Snapshot) -> Verdict {
    let name = request.name.as_str();
    let mut p = Vec::new();
    match request.kind.as_str() {
        "VRouterTarget" => {
            for (b, binding) in &snapshot.bindings {
                if let Some(i) = binding.spec.target_refs.iter().position(|r| r.name == name) {
                    p.push(format!("VRouterBinding {b:?} lists it in spec.targetRefs[{i}]; remove it there first"));
                }
            }
            for (c, config) in &snapshot.configs {
                if config.spec.target_ref.name == name {
                    let owner = config
                        .annotations()
                        .get(crate::crd::ANNOTATION_BINDING)
                        .map(|b| format!(" (generated by VRouterBinding {b:?}: make it select the target no more)"))
                        .unwrap_or_default();
                    p.push(format!("VRouterConfig {c:?} targets it in spec.targetRef{owner}"));
                }
            }
        }
        "VRouterTemplate" => {
            for (b, binding) in &snapshot.bindings {
                if let Some(r) = &binding.spec.template_ref
                    && r.name == name
                {
                    p.push(format!("VRouterBinding {b:?} uses it in spec.templateRef"));
                }
                if let Some(i) = binding.spec.template_refs.iter().position(|r| r.name == name) {
                    p.push(format!("VRouterBinding {b:?} uses it in spec.templateRefs[{i}]"));
                }
            }
        }
        "VRouterParams" => {
            for (b, binding) in &snapshot.bindings {
                if let Some(i) = binding.spec.params_refs.iter().position(|r| r.name == name) {
                    p.push(format!("VRouterBinding {b:?} uses it in spec.paramsRefs[{i}]"));
                }
            }
        }
        "ProxmoxCluster" => {
            for (t, target) in &snapshot.targets {
                if target
                    .spec
                    .provider
                    .as_ref()
                    .and_then(|p| p.proxmox.as_ref())
                    .is_some_and(|x| x.cluster_ref.name == name)
                {
                    p.push(format!("VRouterTarget {t:?} uses it in spec.provider.proxmox.clusterRef"));
                }
            }
        }
        _ => {}
    }
    if !p.is_empty() {
        p.insert(0, format!("{} {name:?} is still referenced", request.kind));
    }
    Verdict::from_problems(p)
}

/// Renders every binding of the namespace that `uses` selects, with `snapshot` as it would be
/// after the change; a problem per binding that would fail.
fn render_bindings(snapshot: &Snapshot, uses: impl Fn(&VRouterBinding) -> bool, what: &str) -> Vec<String> {
    let inputs = Inputs { templates: &snapshot.templates, params: &snapshot.params, targets: &snapshot.targets };
    let mut p = Vec::new();
    for (name, b) in snapshot.bindings.iter().filter(|(_, b)| uses(b)) {
        match generate(b, inputs) {
            Err(e) => p.push(format!("VRouterBinding {name:?} would fail to render with this {what}: {e}")),
            Ok(out) => {
                for (target, e) in &out.failed {
                    p.push(format!("VRouterBinding {name:?}, target {target:?}, would fail with this {what}: {e}"));
                }
            }
        }
    }
    p
}

fn template(t: VRouterTemplate, snapshot: &Snapshot) -> Verdict {
    let mut p = problems(validate::template(&t.spec));
    if !p.is_empty() {
        return Verdict::from_problems(p);
    }
    let name = t.name_any();
    // Allowed, but whoever writes the printed value can then write any configuration.
    let warnings: Vec<String> = raw_syntax_uses(&TemplateSource {
        name: name.clone(),
        config: t.spec.config.clone(),
        commands: t.spec.commands.clone(),
    })
    .iter()
    .map(|u| format!("spec.{}: {u}", u.field))
    .collect();
    let mut after = snapshot.clone();
    after.templates.insert(name.clone(), t);
    let sources: Vec<TemplateSource> = after
        .templates
        .iter()
        .map(|(n, t)| TemplateSource {
            name: n.clone(),
            config: t.spec.config.clone(),
            commands: t.spec.commands.clone(),
        })
        .collect();
    if let Err(errors) = Renderer::new(&sources, Limits::default()) {
        // This template's own errors (others are reported when they change).
        let mine: Vec<String> =
            errors.iter().filter(|e| e.template().is_none_or(|n| n == name)).map(|e| format!("spec: {e}")).collect();
        if !mine.is_empty() {
            return Verdict::from_problems(mine);
        }
    }
    p.extend(render_bindings(
        &after,
        |b| b.spec.template_ref.iter().chain(&b.spec.template_refs).any(|r| r.name == name),
        "template",
    ));
    Verdict { warnings, ..Verdict::from_problems(p) }
}

fn params(params: VRouterParams, snapshot: &Snapshot) -> Verdict {
    let mut p = problems(validate::params(&params.spec));
    let name = params.name_any();
    let mut after = snapshot.clone();
    after.params.insert(name.clone(), params);
    p.extend(render_bindings(&after, |b| b.spec.params_refs.iter().any(|r| r.name == name), "params"));
    Verdict::from_problems(p)
}

fn target(t: VRouterTarget, namespace: &str, snapshot: &Snapshot) -> Verdict {
    let mut p = problems(validate::target(&t.spec));
    if let Some(px) = t.spec.provider.as_ref().and_then(|p| p.proxmox.as_ref()) {
        let r = &px.cluster_ref;
        if r.namespace.as_deref().is_some_and(|n| !n.is_empty() && n != namespace) {
            p.push(format!(
                "spec.provider.proxmox.clusterRef.namespace: must be empty or {namespace:?}: references across namespaces are not allowed"
            ));
        } else if !snapshot.proxmox_clusters.contains_key(&r.name) {
            p.push(format!(
                "spec.provider.proxmox.clusterRef.name: ProxmoxCluster {:?} not found in {namespace:?}",
                r.name
            ));
        }
    }
    if !p.is_empty() {
        return Verdict::from_problems(p);
    }
    // Its params and labels feed the bindings that select it.
    let name = t.name_any();
    let mut after = snapshot.clone();
    after.targets.insert(name.clone(), t.clone());
    let selects = |b: &VRouterBinding| {
        b.spec.target_refs.iter().any(|r| r.name == name)
            || b.spec.target_selector.as_ref().is_some_and(|s| crate::generate::selector_matches(s, t.labels()))
    };
    Verdict::from_problems(render_bindings(&after, selects, "target"))
}

fn binding(b: &VRouterBinding, namespace: &str, snapshot: &Snapshot) -> Verdict {
    let mut p = problems(validate::binding(&b.spec, namespace));
    if !p.is_empty() {
        return Verdict::from_problems(p);
    }
    let mut warnings = Vec::new();
    if let Some(r) = &b.spec.template_ref {
        warnings.push("spec.templateRef is deprecated; use spec.templateRefs".to_owned());
        if !snapshot.templates.contains_key(&r.name) {
            p.push(format!("spec.templateRef.name: VRouterTemplate {:?} not found in {namespace:?}", r.name));
        }
    }
    for (i, r) in b.spec.template_refs.iter().enumerate() {
        if !snapshot.templates.contains_key(&r.name) {
            p.push(format!("spec.templateRefs[{i}].name: VRouterTemplate {:?} not found in {namespace:?}", r.name));
        }
    }
    for (i, r) in b.spec.params_refs.iter().enumerate() {
        if !snapshot.params.contains_key(&r.name) {
            p.push(format!("spec.paramsRefs[{i}].name: VRouterParams {:?} not found in {namespace:?}", r.name));
        }
    }
    for (i, r) in b.spec.target_refs.iter().enumerate() {
        if !snapshot.targets.contains_key(&r.name) {
            p.push(format!("spec.targetRefs[{i}].name: VRouterTarget {:?} not found in {namespace:?}", r.name));
        }
    }
    if p.is_empty() {
        let inputs = Inputs { templates: &snapshot.templates, params: &snapshot.params, targets: &snapshot.targets };
        match generate(b, inputs) {
            Err(e) => p.push(format!("spec: the binding cannot render: {e}")),
            Ok(out) => {
                for (target, e) in &out.failed {
                    p.push(format!("spec: rendering for target {target:?} fails: {e}"));
                }
            }
        }
    }
    Verdict { allowed: p.is_empty(), problems: p, warnings }
}

fn config(c: &VRouterConfig, namespace: &str, snapshot: &Snapshot) -> Verdict {
    let mut p = problems(validate::config(&c.spec, namespace));
    if !p.is_empty() {
        return Verdict::from_problems(p);
    }
    if !snapshot.targets.contains_key(&c.spec.target_ref.name) {
        p.push(format!("spec.targetRef.name: VRouterTarget {:?} not found in {namespace:?}", c.spec.target_ref.name));
    }
    if let Some(text) = c.spec.commands.as_deref()
        && let Err(e) = vyos_config::parse_commands(text)
    {
        p.push(format!("spec.commands: {e}"));
    }
    if let Some(text) = c.spec.config.as_deref()
        && !text.trim().is_empty()
        && let Err(e) = vyos_config::Config::parse(text)
    {
        p.push(format!("spec.config: {e}"));
    }
    Verdict::from_problems(p)
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
