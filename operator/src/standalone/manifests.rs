//! Reading a directory of manifests (a GitOps checkout): the same YAML `kubectl apply` takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kube::ResourceExt;
use serde_json::Value;

use crate::crd::{
    API_VERSION, ProxmoxCluster, VRouterBinding, VRouterConfig, VRouterParams, VRouterTarget, VRouterTemplate, validate,
};

/// Largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The objects of one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Namespace {
    /// Templates by name.
    pub templates: BTreeMap<String, VRouterTemplate>,
    /// Params by name.
    pub params: BTreeMap<String, VRouterParams>,
    /// Targets by name.
    pub targets: BTreeMap<String, VRouterTarget>,
    /// Bindings by name.
    pub bindings: BTreeMap<String, VRouterBinding>,
    /// Hand-written configs by name.
    pub configs: BTreeMap<String, VRouterConfig>,
    /// Proxmox clusters by name.
    pub proxmox: BTreeMap<String, ProxmoxCluster>,
    /// Secrets (for `secret()`): name → key → value.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// Every object read, by namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifests {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
}

/// A manifest that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", doc.map(|d| format!(" (document {d})")).unwrap_or_default())]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document index in the file.
    pub doc: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Namespace of objects that do not say.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Reads every `*.yaml`/`*.yml` under `dir` (recursively; hidden entries skipped). All errors
/// are returned; a directory with errors yields no manifests (half a configuration must never
/// be delivered).
pub fn load_dir(dir: &Path) -> Result<Manifests, Vec<ManifestError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect(dir, &mut files, &mut errors);
    files.sort();
    let mut out = Manifests::default();
    for file in files {
        let err = |message: String| ManifestError { file: file.clone(), doc: None, message };
        match std::fs::metadata(&file) {
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                errors.push(err(format!("{} bytes, more than the {MAX_FILE_BYTES}-byte limit", m.len())));
                continue;
            }
            Err(e) => {
                errors.push(err(e.to_string()));
                continue;
            }
            Ok(_) => {}
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                if let Err(mut e) = add_text(&mut out, &file, &text) {
                    errors.append(&mut e);
                }
            }
            Err(e) => errors.push(err(e.to_string())),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ManifestError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ManifestError { file: dir.to_owned(), doc: None, message: e.to_string() });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect(&path, files, errors),
            Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") => files.push(path),
            _ => {}
        }
    }
}

/// Most documents one manifest file may hold (a fleet file lists one target per document).
pub const MAX_DOCUMENTS_PER_FILE: usize = 100_000;

/// The YAML parser's limits. Its defaults stop at 1,024 documents and 250,000 nodes, which a
/// fleet of a few thousand targets in one file exceeds; these allow 100,000 documents of about
/// 50 nodes each and keep the other guards (depth, aliases, scalar bytes) as they are.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_documents = MAX_DOCUMENTS_PER_FILE;
    budget.max_nodes = 50 * MAX_DOCUMENTS_PER_FILE;
    budget.max_events = 100 * MAX_DOCUMENTS_PER_FILE;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Adds the documents of one file.
pub fn add_text(out: &mut Manifests, file: &Path, text: &str) -> Result<(), Vec<ManifestError>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| vec![ManifestError { file: file.to_owned(), doc: None, message: format!("not YAML: {e}") }])?;
    let mut errors = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        if let Err(message) = add_doc(out, doc) {
            errors.push(ManifestError { file: file.to_owned(), doc: Some(i + 1), message });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn typed<K: serde::de::DeserializeOwned>(doc: Value, kind: &str) -> Result<K, String> {
    serde_json::from_value(doc).map_err(|e| format!("{kind}: {e}"))
}

fn insert<K: kube::Resource>(map: &mut BTreeMap<String, K>, obj: K, kind: &str) -> Result<(), String> {
    let name = obj.meta().name.clone().unwrap_or_default();
    validate::check_name(&name).map_err(|e| format!("{kind} metadata.name: {e}"))?;
    if map.contains_key(&name) {
        return Err(format!("{kind} {name:?} is defined twice"));
    }
    map.insert(name, obj);
    Ok(())
}

fn add_doc(out: &mut Manifests, doc: Value) -> Result<(), String> {
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    if kind == "List" {
        for item in doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
            add_doc(out, item)?;
        }
        return Ok(());
    }
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_owned();
    let ns = out.namespaces.entry(namespace.clone()).or_default();
    let with_ns = |mut k: Value| {
        if let Some(m) = k.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("namespace".into(), Value::String(namespace.clone()));
        }
        k
    };
    let doc = with_ns(doc);
    match (api.as_str(), kind.as_str()) {
        (API_VERSION, "VRouterTemplate") => {
            let o: VRouterTemplate = typed(doc, &kind)?;
            validate::template(&o.spec)
                .map_err(|p| format!("VRouterTemplate {:?}: {}", o.name_any(), validate::describe(&p)))?;
            insert(&mut ns.templates, o, &kind)
        }
        (API_VERSION, "VRouterParams") => insert(&mut ns.params, typed(doc, &kind)?, &kind),
        (API_VERSION, "VRouterTarget") => {
            let o: VRouterTarget = typed(doc, &kind)?;
            validate::target(&o.spec)
                .map_err(|p| format!("VRouterTarget {:?}: {}", o.name_any(), validate::describe(&p)))?;
            insert(&mut ns.targets, o, &kind)
        }
        (API_VERSION, "VRouterBinding") => {
            let o: VRouterBinding = typed(doc, &kind)?;
            validate::binding(&o.spec, &namespace)
                .map_err(|p| format!("VRouterBinding {:?}: {}", o.name_any(), validate::describe(&p)))?;
            insert(&mut ns.bindings, o, &kind)
        }
        (API_VERSION, "VRouterConfig") => {
            let o: VRouterConfig = typed(doc, &kind)?;
            validate::config(&o.spec, &namespace)
                .map_err(|p| format!("VRouterConfig {:?}: {}", o.name_any(), validate::describe(&p)))?;
            insert(&mut ns.configs, o, &kind)
        }
        (API_VERSION, "ProxmoxCluster") => insert(&mut ns.proxmox, typed(doc, &kind)?, &kind),
        (API_VERSION, other) => Err(format!("unknown kind {other:?} in {API_VERSION}")),
        ("v1", "Secret") => {
            let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            validate::check_name(&name).map_err(|e| format!("Secret metadata.name: {e}"))?;
            let mut values = BTreeMap::new();
            for (k, v) in doc.get("data").and_then(Value::as_object).into_iter().flatten() {
                let text = v.as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("Secret {name:?} data.{k}: not base64: {e}"))?;
                let s = String::from_utf8(bytes).map_err(|_| format!("Secret {name:?} data.{k}: not UTF-8 text"))?;
                values.insert(k.clone(), s);
            }
            for (k, v) in doc.get("stringData").and_then(Value::as_object).into_iter().flatten() {
                values.insert(k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
            }
            if ns.secrets.insert(name.clone(), values).is_some() {
                return Err(format!("Secret {name:?} is defined twice"));
            }
            Ok(())
        }
        // Other Kubernetes objects in the same repository are not ours.
        (a, k) if !a.is_empty() && !k.is_empty() => Ok(()),
        _ => Err("not a Kubernetes object (apiVersion and kind are required)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Manifests, Vec<ManifestError>> {
        let mut m = Manifests::default();
        add_text(&mut m, Path::new("x.yaml"), text)?;
        Ok(m)
    }

    #[test]
    fn reads_kinds_namespaces_and_secrets() {
        let m = load(
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {name: t}\nspec: {config: 'a b'}\n---\n\
             apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r1, namespace: edge}\nspec: {}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {psk: c2VjcmV0}\nstringData: {user: admin}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n---\n",
        )
        .unwrap();
        assert!(m.namespaces["default"].templates.contains_key("t"));
        assert_eq!(m.namespaces["edge"].targets["r1"].namespace().as_deref(), Some("edge"));
        assert_eq!(m.namespaces["default"].secrets["s"]["psk"], "secret");
        assert_eq!(m.namespaces["default"].secrets["s"]["user"], "admin");
    }

    #[test]
    fn errors_name_the_document() {
        let e = load(
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {name: t}\nspec: {}\n---\n\
             apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: b}\nspec: {templateRefs: [{name: t}], targetRefs: [{name: x, namespace: other}]}\n---\n\
             apiVersion: vrouter.kojuro.date/v1\nkind: VRouterWidget\nmetadata: {name: w}\n---\n\
             kind: Foo\n",
        )
        .unwrap_err();
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert_eq!(text[0], "x.yaml (document 1): VRouterTemplate \"t\": spec: set config, commands or both");
        assert!(
            text[1].starts_with("x.yaml (document 2): VRouterBinding \"b\": spec.targetRefs[0].namespace"),
            "{}",
            text[1]
        );
        assert!(text[2].contains("unknown kind \"VRouterWidget\""));
        assert!(text[3].contains("apiVersion and kind are required"));
    }

    #[test]
    fn duplicates_and_bad_yaml() {
        let doc =
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterParams\nmetadata: {name: p}\nspec: {params: {a: 1}}\n";
        let e = load(&format!("{doc}---\n{doc}")).unwrap_err();
        assert!(e[0].message.contains("defined twice"));
        let e = load("a: [").unwrap_err();
        assert!(e[0].message.starts_with("not YAML"));
        let e = load("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '***'}\n").unwrap_err();
        assert!(e[0].message.contains("not base64"));
    }

    #[test]
    fn a_fleet_file_may_hold_thousands_of_documents_but_not_unboundedly_many() {
        let target = |i: usize| {
            format!(
                "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {{name: r-{i}}}\nspec: {{}}\n---\n"
            )
        };
        // The parser's default budget stopped at 1,024 documents.
        let text: String = (0..5000).map(target).collect();
        assert_eq!(load(&text).unwrap().namespaces["default"].targets.len(), 5000);
        let storm = "---\n".repeat(MAX_DOCUMENTS_PER_FILE + 10);
        let e = load(&storm).unwrap_err();
        assert!(e[0].message.starts_with("not YAML") && e[0].message.contains("budget"), "{}", e[0].message);
    }

    #[test]
    fn load_dir_skips_hidden_and_reads_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::create_dir_all(dir.path().join(".vrouter")).unwrap();
        std::fs::write(
            dir.path().join("sub/p.yml"),
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterParams\nmetadata: {name: p}\nspec: {params: {}}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".vrouter/bad.yaml"), "a: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "a: [").unwrap();
        let m = load_dir(dir.path()).unwrap();
        assert!(m.namespaces["default"].params.contains_key("p"));
    }
}
