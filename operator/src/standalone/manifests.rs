//! Reading a directory of manifests (a GitOps checkout): the same YAML `kubectl apply` takes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use base64::Engine as _;
use kube::ResourceExt;
use serde_json::Value;
use serde_saphyr::budget::{BudgetBreach, BudgetReport};

use crate::crd::{
    API_VERSION, GROUP, ProxmoxCluster, VRouterBinding, VRouterConfig, VRouterParams, VRouterTarget, VRouterTemplate,
    validate,
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
#[error(
    "{}{}: {}",
    vyos_config::escape_controls(&file.display().to_string()),
    doc.map(|d| format!(" (document {d})")).unwrap_or_default(),
    vyos_config::escape_controls(message)
)]
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
/// be delivered). The files share one [`SetBudget`]: the file where it runs out is named and
/// the files after it are not read.
pub fn load_dir(dir: &Path) -> Result<Manifests, Vec<ManifestError>> {
    load_dir_within(dir, SetBudget::default())
}

/// [`load_dir`] with another budget.
pub fn load_dir_within(dir: &Path, mut budget: SetBudget) -> Result<Manifests, Vec<ManifestError>> {
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
                if let Err(mut e) = add_text_within(&mut out, &file, &text, &mut budget) {
                    errors.append(&mut e);
                }
            }
            Err(e) => errors.push(err(e.to_string())),
        }
        if budget.exhausted {
            break;
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

/// Most YAML nodes (scalars, sequences, mappings; aliases expanded) one file may hold.
pub const MAX_NODES_PER_FILE: usize = 50 * MAX_DOCUMENTS_PER_FILE;

/// Most YAML nodes (aliases expanded) all files of a manifest set may hold together: as many as
/// one file may, so files of alias bombs each under the per-file limit cannot add up to
/// gigabytes (60 such files of 1.2 KB once took 2.8 GB).
pub const MAX_SET_NODES: usize = MAX_NODES_PER_FILE;

/// Most scalar bytes (aliases expanded, tags included) one file may hold (the parser's default).
pub const MAX_SCALAR_BYTES_PER_FILE: usize = 64 << 20;

/// Most scalar bytes (aliases expanded) all files of a manifest set may hold together.
pub const MAX_SET_SCALAR_BYTES: usize = 256 << 20;

/// The YAML budget of a whole manifest set (by default [`MAX_SET_NODES`] and
/// [`MAX_SET_SCALAR_BYTES`]): each file may use at most what the files before it left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetBudget {
    max_nodes: usize,
    max_scalar_bytes: usize,
    nodes: usize,
    scalar_bytes: usize,
    exhausted: bool,
}

impl Default for SetBudget {
    fn default() -> Self {
        SetBudget::new(MAX_SET_NODES, MAX_SET_SCALAR_BYTES)
    }
}

impl SetBudget {
    /// A budget of `max_nodes` YAML nodes and `max_scalar_bytes` scalar bytes (aliases expanded).
    pub fn new(max_nodes: usize, max_scalar_bytes: usize) -> SetBudget {
        SetBudget { max_nodes, max_scalar_bytes, nodes: 0, scalar_bytes: 0, exhausted: false }
    }

    /// Whether a file ran the budget out (the files after it are not read).
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    fn nodes_left(&self) -> usize {
        self.max_nodes.saturating_sub(self.nodes)
    }

    fn scalar_bytes_left(&self) -> usize {
        self.max_scalar_bytes.saturating_sub(self.scalar_bytes)
    }
}

/// The YAML parser's limits for the next file. Its defaults stop at 1,024 documents and 250,000
/// nodes, which a fleet of a few thousand targets in one file exceeds; these allow 100,000
/// documents of about 50 nodes each — less what earlier files of the set used — and keep the
/// other guards (depth, aliases, scalar bytes) as they are. Nodes and scalar bytes are counted
/// with aliases expanded (replayed events are charged to the same budget).
fn yaml_options(set: &SetBudget) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_documents = MAX_DOCUMENTS_PER_FILE;
    budget.max_nodes = MAX_NODES_PER_FILE.min(set.nodes_left());
    budget.max_events = 100 * MAX_DOCUMENTS_PER_FILE;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES_PER_FILE.min(set.scalar_bytes_left());
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Adds the documents of one file (with a budget of its own: see [`add_text_within`]).
pub fn add_text(out: &mut Manifests, file: &Path, text: &str) -> Result<(), Vec<ManifestError>> {
    add_text_within(out, file, text, &mut SetBudget::default())
}

/// Adds the documents of one file of a set, charging what it holds to `budget`. A file that
/// runs the set's budget out is an error that says so (and marks the budget exhausted).
pub fn add_text_within(
    out: &mut Manifests,
    file: &Path,
    text: &str,
    budget: &mut SetBudget,
) -> Result<(), Vec<ManifestError>> {
    let file_error = |message: String| vec![ManifestError { file: file.to_owned(), doc: None, message }];
    if budget.exhausted {
        return Err(file_error("not read: the manifest set's YAML budget ran out before this file".to_owned()));
    }
    let mut options = yaml_options(budget);
    let report: Rc<RefCell<Option<BudgetReport>>> = Rc::default();
    let slot = report.clone();
    options.budget_report_cb = Some(Rc::new(RefCell::new(move |r: BudgetReport| *slot.borrow_mut() = Some(r))));
    let parsed: Result<Vec<Value>, _> = serde_saphyr::from_multiple_with_options(text, options);
    let report = report.borrow_mut().take();
    let (nodes, bytes) = report.as_ref().map_or((0, 0), |r| (r.nodes, r.total_scalar_bytes));
    // A breach of a limit the set's budget lowered below the file's own is the set running out.
    let set_ran_out = match report.as_ref().and_then(|r| r.breached.as_ref()) {
        Some(BudgetBreach::Nodes { .. }) => budget.nodes_left() < MAX_NODES_PER_FILE,
        Some(BudgetBreach::ScalarBytes { .. }) => budget.scalar_bytes_left() < MAX_SCALAR_BYTES_PER_FILE,
        _ => false,
    };
    if set_ran_out {
        budget.exhausted = true;
        return Err(file_error(format!(
            "the manifest set's YAML budget ran out in this file: all files together may hold {} nodes and \
             {} bytes of scalars, aliases expanded (the files before this one used {} nodes and {} bytes); \
             the files after it were not read",
            budget.max_nodes, budget.max_scalar_bytes, budget.nodes, budget.scalar_bytes,
        )));
    }
    budget.nodes = budget.nodes.saturating_add(nodes);
    budget.scalar_bytes = budget.scalar_bytes.saturating_add(bytes);
    let docs = parsed.map_err(|e| file_error(format!("not YAML: {e}")))?;
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

/// The kinds of [`API_VERSION`].
const KINDS: [&str; 6] =
    ["VRouterTemplate", "VRouterParams", "VRouterTarget", "VRouterBinding", "VRouterConfig", "ProxmoxCluster"];

fn add_doc(out: &mut Manifests, doc: Value) -> Result<(), String> {
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    if kind == "List" {
        for item in doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
            add_doc(out, item)?;
        }
        return Ok(());
    }
    if api.is_empty() || kind.is_empty() {
        return Err("not a Kubernetes object (apiVersion and kind are required)".to_owned());
    }
    // One of our kinds under another apiVersion (a version this build does not know, or a
    // group that is not ours) would otherwise be ignored as someone else's object.
    let our_group = api.split_once('/').is_some_and(|(group, _)| group == GROUP);
    if api != API_VERSION && (our_group || KINDS.contains(&kind.as_str())) {
        return Err(format!("{kind}: unknown apiVersion {api:?} (the vrouter kinds are {API_VERSION})"));
    }
    if api != API_VERSION && (api.as_str(), kind.as_str()) != ("v1", "Secret") {
        // Other Kubernetes objects in the same repository are not ours.
        return Ok(());
    }
    let namespace = match doc.pointer("/metadata/namespace") {
        None | Some(Value::Null) => DEFAULT_NAMESPACE.to_owned(),
        Some(Value::String(n)) if n.is_empty() => DEFAULT_NAMESPACE.to_owned(),
        Some(Value::String(n)) => {
            validate::check_namespace(n).map_err(|e| format!("{kind} metadata.namespace: {e}"))?;
            n.clone()
        }
        Some(other) => return Err(format!("{kind} metadata.namespace: expected a string, found {other}")),
    };
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
        // Filtered out above.
        _ => Ok(()),
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

    /// A document whose aliases expand to about `10^levels × copies` nodes from a few lines.
    fn alias_bomb(levels: usize, copies: usize) -> String {
        let mut text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for l in 1..=levels {
            let p = l - 1;
            text.push_str(&format!(
                "  l{l}: &l{l} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
            ));
        }
        text.push_str(&format!("  top: [{}]\n", vec![format!("*l{levels}"); copies].join(", ")));
        text
    }

    #[test]
    fn the_yaml_budget_holds_for_the_whole_set_not_per_file() {
        // Each file expands to about 23,500 nodes, under any per-file limit; a set budget of
        // 100,000 nodes runs out in the fifth.
        let dir = tempfile::tempdir().unwrap();
        for i in 0..8 {
            std::fs::write(dir.path().join(format!("f{i}.yaml")), alias_bomb(2, 20)).unwrap();
        }
        let mut one = Manifests::default();
        let mut budget = SetBudget::new(100_000, 1 << 20);
        add_text_within(&mut one, Path::new("f0.yaml"), &alias_bomb(2, 20), &mut budget).unwrap();
        assert!(budget.nodes > 20_000 && budget.nodes < 25_000, "{budget:?}");
        assert!(!budget.exhausted());

        let e = load_dir_within(dir.path(), SetBudget::new(100_000, 1 << 20)).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].file, dir.path().join("f4.yaml"));
        assert!(e[0].message.starts_with("the manifest set's YAML budget ran out in this file"), "{}", e[0]);
        assert!(e[0].message.contains("100000 nodes"), "{}", e[0]);
        // Bytes too: long scalars repeated by aliases.
        let long = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: s}}\ndata:\n  a: &a {}\n  b: [*a, *a, *a, *a, *a, *a, *a, *a]\n",
            "y".repeat(10_000)
        );
        let mut budget = SetBudget::new(1_000_000, 200_000);
        let mut m = Manifests::default();
        add_text_within(&mut m, Path::new("a.yaml"), &long, &mut budget).unwrap();
        add_text_within(&mut m, Path::new("b.yaml"), &long, &mut budget).unwrap();
        let e = add_text_within(&mut m, Path::new("c.yaml"), &long, &mut budget).unwrap_err();
        assert_eq!(e[0].file, Path::new("c.yaml"));
        assert!(e[0].message.contains("200000 bytes"), "{}", e[0]);
        assert!(budget.exhausted());
        let e = add_text_within(&mut m, Path::new("d.yaml"), "a: 1\n", &mut budget).unwrap_err();
        assert!(e[0].message.contains("ran out before this file"), "{}", e[0]);
    }

    #[test]
    fn the_default_set_budget_stops_files_that_each_pass_the_per_file_limits() {
        // A 1 MiB scalar repeated 60 times by aliases: 61 MiB per file, under the per-file 64 MiB;
        // four files use 244 MiB of the set's 256 MiB and the fifth runs it out.
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: s}}\ndata:\n  a: &a {}\n  b: [{}]\n",
            "y".repeat(1 << 20),
            vec!["*a"; 60].join(", ")
        );
        let dir = tempfile::tempdir().unwrap();
        for i in 0..6 {
            std::fs::write(dir.path().join(format!("f{i}.yaml")), &text).unwrap();
        }
        let e = load_dir(dir.path()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].file, dir.path().join("f4.yaml"));
        assert!(e[0].message.contains(&format!("{MAX_SET_SCALAR_BYTES} bytes")), "{}", e[0]);
    }

    #[test]
    fn an_invalid_namespace_is_an_error_naming_the_document() {
        for ns in ["../../x", "UPPER", "a_b", "-a", &"n".repeat(64)] {
            let e = load(&format!(
                "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {{name: r1}}\nspec: {{}}\n---\n\
                 apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {{name: r1, namespace: '{ns}'}}\nspec: {{}}\n"
            ))
            .unwrap_err();
            assert_eq!(e.len(), 1, "{ns}: {e:?}");
            assert_eq!(e[0].doc, Some(2));
            assert!(e[0].message.starts_with("VRouterTarget metadata.namespace: "), "{}", e[0]);
        }
        let e = load("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ../x}\n").unwrap_err();
        assert!(e[0].message.starts_with("Secret metadata.namespace: "), "{}", e[0]);
        let e = load("apiVersion: vrouter.kojuro.date/v1\nkind: VRouterParams\nmetadata: {name: p, namespace: [a]}\nspec: {params: {}}\n")
            .unwrap_err();
        assert!(e[0].message.contains("metadata.namespace: expected a string"), "{}", e[0]);
        // Objects that are not ours are not looked at.
        let m = load("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: ../x}\n").unwrap();
        assert!(m.namespaces.is_empty());
        // Empty or absent: the default namespace.
        let m = load("apiVersion: vrouter.kojuro.date/v1\nkind: VRouterParams\nmetadata: {name: p, namespace: ''}\nspec: {params: {}}\n").unwrap();
        assert!(m.namespaces["default"].params.contains_key("p"));
    }

    #[test]
    fn errors_escape_control_and_bidi_characters_of_values() {
        let e = load(
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r1}\nspec: {provider: {type: \"lib\\u202evirt\\e[2J\"}}\n",
        )
        .unwrap_err();
        let text = e[0].to_string();
        assert!(text.contains("lib\\u{202e}virt\\u{1b}[2J"), "{text}");
        assert!(!text.contains('\u{202e}') && !text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn a_vrouter_kind_under_another_api_version_is_an_error() {
        for (api, kind) in [
            ("vrouter.kojuro.date/v2", "VRouterTarget"),
            ("vrouter.kojuro.date/v1beta1", "Something"),
            ("example.com/v1", "VRouterBinding"),
            ("v1", "VRouterTemplate"),
        ] {
            let e = load(&format!("---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: r1}}\nspec: {{}}\n"))
                .unwrap_err();
            assert_eq!(e.len(), 1, "{api} {kind}: {e:?}");
            assert_eq!(e[0].doc, Some(1));
            assert_eq!(
                e[0].message,
                format!("{kind}: unknown apiVersion {api:?} (the vrouter kinds are vrouter.kojuro.date/v1)")
            );
        }
        // Someone else's kinds stay ignored, in any group.
        assert!(load("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n").unwrap().namespaces.is_empty());
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
