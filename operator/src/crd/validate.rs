//! The resources' validation rules in Rust: what the CRD's schema and CEL rules enforce, plus
//! what they cannot (references stay in the namespace, durations, duplicates, name syntax).
//! Standalone mode and the controllers run these on every object, so a manifest that the API
//! server would refuse is refused the same way without one.

use std::collections::BTreeSet;
use std::fmt;

use super::{
    GoDuration, MAX_TEXT_BYTES, NameRef, ProviderType, ProxmoxClusterSpec, RolloutMode, VRouterBindingSpec,
    VRouterConfigSpec, VRouterParamsSpec, VRouterTargetSpec, VRouterTemplateSpec,
};

/// One validation failure: the field (JSON path under the object) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// E.g. `spec.targetRefs[2].name`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }

    fn name_ref(&mut self, field: &str, r: &NameRef, namespace: &str) {
        if let Err(e) = check_name(&r.name) {
            self.add(format!("{field}.name"), e);
        }
        if let Some(ns) = r.namespace.as_deref()
            && !ns.is_empty()
            && ns != namespace
        {
            self.add(
                format!("{field}.namespace"),
                format!("must be empty or {namespace:?}: references across namespaces are not allowed"),
            );
        }
    }

    fn text(&mut self, field: &str, text: Option<&str>) {
        if let Some(t) = text
            && t.len() > MAX_TEXT_BYTES
        {
            self.add(field, format!("{} bytes, more than the limit of {MAX_TEXT_BYTES}", t.len()));
        }
    }

    fn duration(&mut self, field: &str, d: Option<&GoDuration>, positive: bool) {
        if let Some(d) = d {
            match d.get() {
                Ok(v) if positive && v.is_zero() => self.add(field, "must be greater than 0"),
                Ok(_) => {}
                Err(e) => self.add(field, e),
            }
        }
    }

    fn done(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

/// Checks a DNS-1123 subdomain name (what Kubernetes object names are).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("{} characters, more than 253", name.len()));
    }
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(ok_label) {
        return Err(format!(
            "{name:?} is not a valid name (lower-case letters, digits, '-' and '.', starting and ending alphanumeric)"
        ));
    }
    Ok(())
}

/// Checks a namespace name: a DNS-1123 label (at most 63 lower-case letters, digits and '-',
/// starting and ending alphanumeric), as Kubernetes namespaces are.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{namespace:?} is not a valid namespace (at most 63 lower-case letters, digits and '-', starting and ending alphanumeric)"
        ))
    }
}

/// A VRouterTemplate.
pub fn template(spec: &VRouterTemplateSpec) -> Result<(), Vec<Problem>> {
    let mut p = Problems::default();
    if spec.config.is_none() && spec.commands.is_none() {
        p.add("spec", "set config, commands or both");
    }
    p.text("spec.config", spec.config.as_deref());
    p.text("spec.commands", spec.commands.as_deref());
    p.done()
}

/// A VRouterParams.
pub fn params(_spec: &VRouterParamsSpec) -> Result<(), Vec<Problem>> {
    Ok(())
}

/// A VRouterTarget.
pub fn target(spec: &VRouterTargetSpec) -> Result<(), Vec<Problem>> {
    let mut p = Problems::default();
    if let Some(prov) = &spec.provider {
        let given = [
            (ProviderType::Kubevirt, prov.kubevirt.is_some(), "kubevirt"),
            (ProviderType::Proxmox, prov.proxmox.is_some(), "proxmox"),
            (ProviderType::Libvirt, prov.libvirt.is_some(), "libvirt"),
        ];
        for (ty, present, name) in given {
            if prov.type_ == ty && !present {
                p.add(format!("spec.provider.{name}"), format!("required when type is {name}"));
            }
            if prov.type_ != ty && present {
                p.add(format!("spec.provider.{name}"), format!("set, but type is {:?}", prov.type_));
            }
        }
        if let Some(kv) = &prov.kubevirt
            && let Err(e) = check_name(&kv.name)
        {
            p.add("spec.provider.kubevirt.name", e);
        }
        if let Some(px) = &prov.proxmox {
            if px.vmid < 100 {
                p.add("spec.provider.proxmox.vmid", "must be at least 100");
            }
            if let Err(e) = check_name(&px.cluster_ref.name) {
                p.add("spec.provider.proxmox.clusterRef.name", e);
            }
        }
        if let Some(lv) = &prov.libvirt
            && !lv.socket.starts_with('/')
        {
            p.add("spec.provider.libvirt.socket", "must be an absolute path");
        }
    }
    let cc = &spec.delivery.commit_confirm;
    if !(1..=60).contains(&cc.timeout_minutes) {
        p.add("spec.delivery.commitConfirm.timeoutMinutes", "must be between 1 and 60");
    }
    p.duration("spec.delivery.applyTimeout", spec.delivery.apply_timeout.as_ref(), true);
    for (i, scope) in spec.managed_scopes.iter().enumerate() {
        if let Err(e) = check_scope(scope) {
            p.add(format!("spec.managedScopes[{i}]"), e);
        }
    }
    p.done()
}

/// Checks a managed scope: a configuration path of plain words (`protocols bgp`).
pub fn check_scope(scope: &str) -> Result<(), String> {
    let words: Vec<&str> = scope.split_whitespace().collect();
    if words.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(w) = words.iter().find(|w| w.contains(['\'', '"', '{', '}', '#'])) {
        return Err(format!("{w:?}: a scope is a path of plain words, like \"protocols bgp\""));
    }
    Ok(())
}

/// A VRouterBinding in `namespace`.
pub fn binding(spec: &VRouterBindingSpec, namespace: &str) -> Result<(), Vec<Problem>> {
    let mut p = Problems::default();
    if spec.template_ref.is_none() && spec.template_refs.is_empty() {
        p.add("spec.templateRefs", "set templateRefs (or the deprecated templateRef)");
    }
    if spec.target_refs.is_empty() && spec.target_selector.is_none() {
        p.add("spec.targetRefs", "set targetRefs, targetSelector or both");
    }
    if let Some(r) = &spec.template_ref {
        p.name_ref("spec.templateRef", r, namespace);
    }
    for (i, r) in spec.template_refs.iter().enumerate() {
        p.name_ref(&format!("spec.templateRefs[{i}]"), r, namespace);
    }
    for (i, r) in spec.params_refs.iter().enumerate() {
        p.name_ref(&format!("spec.paramsRefs[{i}]"), r, namespace);
    }
    let mut seen = BTreeSet::new();
    for (i, r) in spec.target_refs.iter().enumerate() {
        p.name_ref(&format!("spec.targetRefs[{i}]"), r, namespace);
        if !seen.insert(r.name.as_str()) {
            p.add(format!("spec.targetRefs[{i}].name"), format!("{:?} is listed twice", r.name));
        }
    }
    if let Some(sel) = &spec.target_selector {
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let op_ok = matches!(e.operator.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist");
            if !op_ok {
                p.add(
                    format!("spec.targetSelector.matchExpressions[{i}].operator"),
                    format!("unknown operator {:?}", e.operator),
                );
            }
            let needs_values = matches!(e.operator.as_str(), "In" | "NotIn");
            let has_values = e.values.as_ref().is_some_and(|v| !v.is_empty());
            if op_ok && needs_values != has_values {
                p.add(
                    format!("spec.targetSelector.matchExpressions[{i}].values"),
                    if needs_values {
                        "required for In and NotIn"
                    } else {
                        "must be empty for Exists and DoesNotExist"
                    },
                );
            }
        }
    }
    if !(-1000..=1000).contains(&spec.priority) {
        p.add("spec.priority", "must be between -1000 and 1000");
    }
    if let Some(r) = &spec.rollout {
        if r.max_unavailable == 0 {
            p.add("spec.rollout.maxUnavailable", "must be at least 1");
        }
        p.duration("spec.rollout.pollInterval", r.poll_interval.as_ref(), true);
        p.duration("spec.rollout.waitAfterApplied", r.wait_after_applied.as_ref(), false);
        match r.mode {
            RolloutMode::FixedInterval if r.wait_interval.is_none() => {
                p.add("spec.rollout.waitInterval", "required when mode is FixedInterval")
            }
            _ => p.duration("spec.rollout.waitInterval", r.wait_interval.as_ref(), true),
        }
    }
    p.done()
}

/// A VRouterConfig in `namespace`.
pub fn config(spec: &VRouterConfigSpec, namespace: &str) -> Result<(), Vec<Problem>> {
    let mut p = Problems::default();
    p.name_ref("spec.targetRef", &spec.target_ref, namespace);
    p.text("spec.config", spec.config.as_deref());
    p.text("spec.commands", spec.commands.as_deref());
    if !(-1000..=1000).contains(&spec.priority) {
        p.add("spec.priority", "must be between -1000 and 1000");
    }
    p.done()
}

/// A ProxmoxCluster.
pub fn proxmox(spec: &ProxmoxClusterSpec) -> Result<(), Vec<Problem>> {
    let mut p = Problems::default();
    if spec.endpoints.is_empty() {
        p.add("spec.endpoints", "at least one endpoint is required");
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        if !(e.starts_with("https://") || e.starts_with("http://")) || e.len() <= "https://".len() {
            p.add(format!("spec.endpoints[{i}]"), format!("{e:?} is not an http(s) URL"));
        }
    }
    if let Err(e) = check_name(&spec.credentials_ref.name) {
        p.add("spec.credentialsRef.name", e);
    }
    p.duration("spec.syncInterval", spec.sync_interval.as_ref(), true);
    p.done()
}

/// Joins problems into one message.
pub fn describe(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; ")
}
