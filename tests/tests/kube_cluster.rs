//! The operator against a real Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager built from Go modules by `tests/kube/build.sh` (see
//! `tests/src/control_plane.rs`). Compiled as ignored unless `VROUTER_KUBE_BIN` names the binaries
//! at build time (`.ci/run` builds them and sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use vrouter_tests::cluster::{Cluster, repo_root};

const IGNORE: &str = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time";

fn bin() -> PathBuf {
    vrouter_tests::control_plane::binaries().unwrap_or_else(|| panic!("{IGNORE}: the directory lacks a binary"))
}

/// Every ```yaml block of the repository's Markdown (README, docs/) that holds a vrouter
/// resource, dedented: (file, block).
fn doc_examples() -> Vec<(String, String)> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut block: Option<Vec<&str>> = None;
        for line in text.lines() {
            let t = line.trim_start();
            match &mut block {
                None if t.starts_with("```yaml") => block = Some(Vec::new()),
                Some(lines) if t.starts_with("```") => {
                    let indent = lines
                        .iter()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.len() - l.trim_start().len())
                        .min()
                        .unwrap_or(0);
                    let body: Vec<&str> = lines.iter().map(|l| l.get(indent..).unwrap_or("")).collect();
                    let body = body.join("\n");
                    if body.contains("apiVersion: vrouter.kojuro.date/") {
                        out.push((file.strip_prefix(&root).unwrap().display().to_string(), body));
                    }
                    block = None;
                }
                Some(lines) => lines.push(line),
                None => {}
            }
        }
    }
    out
}

/// The namespaces a manifest names (`namespace: x`, also inside flow mappings).
fn namespaces_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| l.match_indices("namespace:").map(move |(i, m)| &l[i + m.len()..]))
        .map(|rest| {
            rest.trim_start().split([',', '}', ' ']).next().unwrap_or_default().trim_matches(['"', '\'']).to_owned()
        })
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// CRDs: `vrouter-operator crds` (installed by `Cluster::start`) and the chart's `crds/` are
/// accepted and Established; the quick start and every example in the docs are accepted with
/// server-side apply and strict field validation; wrong types, unknown fields and out-of-range
/// values are refused by the API server itself; printer columns and short names work.
#[test]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
fn crds_examples_and_schema_validation() {
    let cluster = Cluster::start(&bin());
    let root = repo_root();

    // The chart's CRDs are the same objects: applying them over the operator's changes nothing
    // the API server refuses, and they stay Established.
    let chart_crds = root.join("charts/vrouter-operator/crds/crds.yaml");
    cluster.must(&["apply", "--server-side", "--field-manager=vrouter-test", "-f", chart_crds.to_str().unwrap()], None);
    cluster.must(&["wait", "--for=condition=Established", "--timeout=30s", "crd", "--all"], None);
    let crds = cluster.must(&["get", "crd", "-o", "name"], None);
    for kind in
        ["vroutertemplates", "vrouterparams", "vroutertargets", "vrouterbindings", "vrouterconfigs", "proxmoxclusters"]
    {
        assert!(crds.contains(&format!("{kind}.vrouter.kojuro.date")), "CRD {kind} missing: {crds}");
    }

    // The quick start, as the README applies it.
    cluster.must(&["create", "namespace", "quickstart"], None);
    let quickstart = root.join("examples/quickstart");
    let applied = cluster.must(
        &["apply", "-n", "quickstart", "--server-side", "--validate=strict", "-f", quickstart.to_str().unwrap()],
        None,
    );
    assert!(applied.contains("vroutertarget.vrouter.kojuro.date/hub serverside-applied"), "{applied}");

    // Every example in the docs.
    let examples = doc_examples();
    assert!(examples.len() >= 3, "expected examples in docs/, found {}", examples.len());
    for (i, (file, body)) in examples.iter().enumerate() {
        // An example that names its namespace goes there; the others into a namespace of their own.
        let named = namespaces_in(body);
        let ns = named.first().cloned().unwrap_or_else(|| format!("docs-{i}"));
        for n in named.iter().chain([&ns]) {
            let _ = cluster.kubectl(&["create", "namespace", n], None);
        }
        let r = cluster.kubectl(&["apply", "-n", &ns, "--server-side", "--validate=strict", "-f", "-"], Some(body));
        assert!(r.ok, "the example in {file} is refused by the API server:\n{}\n---\n{body}", r.stderr);
    }

    // Refused by the API server itself (kubectl's own validation off; strict field validation is
    // the server's).
    let refused = |manifest: &str, validate: &str, want: &str| {
        let r = cluster.kubectl(
            &["apply", "-n", "quickstart", "--server-side", &format!("--validate={validate}"), "-f", "-"],
            Some(manifest),
        );
        assert!(!r.ok, "accepted, must be refused ({want}):\n{manifest}");
        assert!(r.stderr.contains(want), "refused without {want:?}: {}", r.stderr);
    };
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: typo}\nspec:\n  provider: {type: none}\n  pararms: {asn: 65000}\n",
        "strict",
        ".spec.pararms: field not declared in schema",
    );
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: bad}\nspec:\n  templateRefs: [{name: system}]\n  targetRefs: [{name: hub}]\n  priority: many\n",
        "false",
        "spec.priority",
    );
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: far}\nspec:\n  templateRefs: [{name: system}]\n  targetRefs: [{name: hub}]\n  priority: 5000\n",
        "false",
        "should be less than or equal to 1000",
    );
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterParams\nmetadata: {name: empty}\n",
        "false",
        "spec: Required value",
    );

    // Short names and printer columns.
    let targets = cluster.must(&["get", "vrt", "-n", "quickstart"], None);
    let header = targets.lines().next().unwrap_or_default();
    for column in ["NAME", "CONNECTED", "AGE"] {
        assert!(header.contains(column), "vrt columns lack {column}: {header}");
    }
    assert!(targets.contains("branch-1"), "{targets}");
    for short in ["vrtt", "vrtp", "vrb", "vrc", "pxc"] {
        cluster.must(&["get", short, "-n", "quickstart"], None);
    }
    let bindings = cluster.must(&["get", "vrb", "-n", "quickstart"], None);
    assert!(bindings.lines().next().unwrap_or_default().contains("TARGETS"), "{bindings}");
}
