//! The operator against a real Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager built from Go modules by `tests/kube/build.sh` (see
//! `tests/src/control_plane.rs`). Compiled as ignored unless `VROUTER_KUBE_BIN` names the binaries
//! at build time (`.ci/run` builds them and sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use vrouter_tests::cluster::{Cluster, eventually, repo_root};

mod api_faults;
mod conflict;
mod leader;
mod pki;
mod slow_webhook;
mod throttle;

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

/// Each target's (desiredRevision, appliedRevision) in the routers' namespace.
fn revisions(cluster: &Cluster) -> Vec<(String, String)> {
    let list = cluster.get_json(&["-n", ROUTERS, "get", "vrt"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = &t["status"];
            (
                s["desiredRevision"].as_str().unwrap_or_default().to_owned(),
                s["appliedRevision"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// How many targets applied a revision other than the one they had `before`.
fn moved(before: &[(String, String)], now: &[(String, String)]) -> usize {
    now.iter().zip(before).filter(|((_, applied), (_, old))| !applied.is_empty() && applied != old).count()
}

/// Whether every target applied a new desired revision since `before`.
fn all_moved(before: &[(String, String)], now: &[(String, String)]) -> bool {
    now.iter().zip(before).all(|((desired, applied), (old, _))| desired != old && applied == desired)
}

const RELEASE: &str = "vrouter-operator";
const SYSTEM: &str = "vrouter-system";
const ROUTERS: &str = "quickstart";
/// The quick start's routers.
const NAMES: [&str; 3] = ["hub", "branch-1", "branch-2"];

/// The chart installed (one replica), its operator running as the chart's ServiceAccount, the
/// quick start applied and its routers enrolled, connected and Ready.
struct QuickStart {
    release: vrouter_tests::cluster::Release,
    op: vrouter_tests::cluster::OperatorProc,
    ports: vrouter_tests::cluster::Ports,
    state: PathBuf,
    routers: vrouter_tests::cluster::Routers,
    // Dropped last: the processes above use it.
    cluster: Cluster,
}

impl QuickStart {
    /// Starts it all; the routers' commits take `commit_latency_ms`.
    async fn start(commit_latency_ms: u64) -> QuickStart {
        use vrouter_tests::cluster::{Ports, Release, Routers, chart_dir, enroll, helm, wait_ready};
        let cluster = Cluster::start(&bin());
        let kubeconfig = cluster.plane.kubeconfig.to_str().unwrap().to_owned();
        cluster.must(&["create", "namespace", ROUTERS], None);
        let ports = Ports::free();
        let mut values = serde_json::json!({
            "replicaCount": 1,
            "webhook": {"url": format!("https://127.0.0.1:{}/validate", ports.webhook)},
            "rbac": {"namespaces": [ROUTERS]},
        });
        // The operator's log filter (`--log`), for debugging a failing test.
        if let Ok(filter) = std::env::var("VROUTER_TEST_OPERATOR_LOG") {
            values["operator"] = serde_json::json!({"logLevel": filter});
        }
        helm(&["install", &kubeconfig, SYSTEM, RELEASE, chart_dir().to_str().unwrap(), &values.to_string()])
            .unwrap_or_else(|e| panic!("helm install: {e}\n{}", cluster.plane.logs()));
        let release = Release::read(&cluster, SYSTEM, RELEASE);
        let pod = format!("{RELEASE}-test-0");
        release.create_pod(&cluster, &pod);
        let state = cluster.scratch.path().join("operator-state");
        let op = release.start(&cluster, &pod, ports, &state);
        wait_ready(&op, || op.log_text()).await;
        let quickstart = repo_root().join("examples/quickstart");
        cluster.must(&["apply", "-n", ROUTERS, "--server-side", "-f", quickstart.to_str().unwrap()], None);
        let (tokens, ca_file) = enroll(&cluster, ROUTERS, &NAMES, &op.endpoint());
        let sim = vrouter_agent::config::SimConfig { commit_latency_ms, ..Default::default() };
        let routers = Routers::start_with(
            &tokens,
            &op.endpoint(),
            &ca_file,
            release.flag("server-dns-name"),
            &cluster.scratch.path().join("routers"),
            &sim,
        );
        let run = QuickStart { release, op, ports, state, routers, cluster };
        run.wait_ready(180).await;
        run
    }

    /// Waits until every target and binding is Ready.
    async fn wait_ready(&self, secs: u64) {
        let timeout = format!("--timeout={secs}s");
        for kind in ["vrt", "vrb"] {
            let r =
                self.cluster.kubectl(&["-n", ROUTERS, "wait", "--for=condition=Ready", kind, "--all", &timeout], None);
            assert!(
                r.ok,
                "{kind} not Ready: {}\n{}\n{}",
                r.stderr,
                self.cluster.must(&["-n", ROUTERS, "get", kind, "-o", "yaml"], None),
                self.diagnose().await
            );
        }
    }

    /// Each target's (desiredRevision, appliedRevision).
    fn revisions(&self) -> Vec<(String, String)> {
        revisions(&self.cluster)
    }

    /// Waits until every target's status reports, as desired and applied, the revision its router
    /// committed last (statuses are written a moment after the commit: a snapshot taken before
    /// that would count the previous change as the next one's progress).
    async fn settle(&self, secs: u64) {
        eventually(
            secs,
            "every target's status at the revision its router runs",
            || {
                let list = self.cluster.get_json(&["-n", ROUTERS, "get", "vrt"]);
                let items = list["items"].as_array().cloned().unwrap_or_default();
                items.len() == NAMES.len()
                    && items.iter().all(|t| {
                        let (s, name) = (&t["status"], t["metadata"]["name"].as_str().unwrap_or_default());
                        let applied = s["appliedRevision"].as_str();
                        applied.is_some()
                            && s["desiredRevision"].as_str() == applied
                            && self.routers.last_commit(name).as_deref() == applied
                    })
            },
            || format!("{:?}", self.revisions()),
        )
        .await;
    }

    /// Applies the quick start's params with each `(from, to)` of `changes` replaced.
    fn change_params(&self, changes: &[(&str, &str)]) {
        let mut params = std::fs::read_to_string(repo_root().join("examples/quickstart/10-params.yaml")).unwrap();
        for (from, to) in changes {
            assert!(params.contains(from), "the quick start's params hold {from:?}");
            params = params.replace(from, to);
        }
        self.cluster.must(&["apply", "-n", ROUTERS, "--server-side", "-f", "-"], Some(&params));
    }

    /// Whether every router's running configuration contains `text`.
    fn all_run(&self, text: &str) -> bool {
        NAMES.iter().all(|n| self.routers.active(n).contains(text))
    }

    /// Whether no router's running configuration contains `text`.
    fn none_run(&self, text: &str) -> bool {
        !NAMES.iter().any(|n| self.routers.active(n).contains(text))
    }

    /// Asserts that no router committed a revision more than once.
    fn assert_one_commit_per_revision(&self) {
        for name in NAMES {
            for (rev, n) in self.routers.commits(name) {
                assert_eq!(n, 1, "{name}: revision {rev} committed {n} times");
            }
        }
    }

    /// What a failed wait shows: the operator's reconcile metrics, the generated configs'
    /// commands and status, the routers' time zones and the operator's log.
    async fn diagnose(&self) -> String {
        let metrics = self.op.http_get("/metrics").await.unwrap_or_default();
        let metrics: Vec<&str> = metrics.lines().filter(|l| l.contains("reconcil") && !l.starts_with('#')).collect();
        let configs = self.cluster.kubectl(&["-n", ROUTERS, "get", "vrc", "-o", "yaml"], None).stdout;
        let zones: Vec<String> = NAMES
            .iter()
            .map(|n| {
                let active = self.routers.active(n);
                format!("{n}: {}", active.lines().find(|l| l.contains("time-zone")).unwrap_or("-"))
            })
            .collect();
        format!(
            "metrics:\n{}\nconfigs:\n{configs}\nrouters: {zones:?}\nlog:\n{}",
            metrics.join("\n"),
            self.op.log_text()
        )
    }

    /// The Warning Events about `kind`/`name` in the routers' namespace: (reason, note).
    fn warnings(&self, kind: &str, name: &str) -> Vec<(String, String)> {
        let list = self.cluster.get_json(&["-n", ROUTERS, "get", "events.events.k8s.io"]);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "Warning" && e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
            .map(|e| {
                (e["reason"].as_str().unwrap_or_default().to_owned(), e["note"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }
}

/// The chart installed, upgraded and uninstalled through the real Helm library; the operator run
/// with the chart's own ServiceAccount token (real RBAC, no 403) and the chart's flags; the quick
/// start through the real webhook; simulated routers enrolled with `kubectl vrouter enroll` over
/// mTLS; conditions, observedGeneration, printer columns and Events; a params change as one new
/// revision with one commit per router; garbage collection of a deleted binding's configs and
/// the Merge policy removing their paths; a hand edit of a generated config restored while
/// another manager's field stays; least privilege.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
async fn the_chart_runs_the_quick_start_with_its_own_service_account() {
    use vrouter_tests::cluster::{Ports, Release, Routers, chart_dir, enroll, eventually, helm, wait_ready};
    let cluster = Cluster::start(&bin());
    let kubeconfig = cluster.plane.kubeconfig.to_str().unwrap().to_owned();
    let chart = chart_dir();
    let ports = Ports::free();
    cluster.must(&["create", "namespace", ROUTERS], None);
    let mut values = serde_json::json!({
        "replicaCount": 1,
        "webhook": {"url": format!("https://127.0.0.1:{}/validate", ports.webhook)},
        "rbac": {"namespaces": [ROUTERS]},
    });

    // Install, then upgrade with changed values: every object accepted by the API server.
    let manifest = helm(&["install", &kubeconfig, SYSTEM, RELEASE, chart.to_str().unwrap(), &values.to_string()])
        .unwrap_or_else(|e| panic!("helm install: {e}\n{}", cluster.plane.logs()));
    assert!(manifest.contains("kind: Deployment"), "{manifest}");
    values["operator"] = serde_json::json!({"concurrency": 4});
    helm(&["upgrade", &kubeconfig, SYSTEM, RELEASE, chart.to_str().unwrap(), &values.to_string()])
        .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let release = Release::read(&cluster, SYSTEM, RELEASE);
    let state = cluster.scratch.path().join("operator-state");
    let args = release.args(ports, &state);
    assert!(args.contains(&"--concurrency=4".to_owned()), "the upgrade reached the Deployment: {args:?}");
    let sa = release.service_account.clone();

    // The replica's pod object; the operator runs as the chart's ServiceAccount.
    let pod_name = format!("{RELEASE}-test-0");
    release.create_pod(&cluster, &pod_name);
    let mut op = release.start(&cluster, &pod_name, ports, &state);
    let op_log = || -> String {
        let mut logs: Vec<_> = std::fs::read_dir(cluster.scratch.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&pod_name))
            .collect();
        logs.sort();
        logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
    };
    wait_ready(&op, op_log).await;

    // The operator wrote the webhook's caBundle (a patch: RBAC grants `patch`).
    let webhook_name = format!("{SYSTEM}-{RELEASE}");
    eventually(
        60,
        "the webhook caBundle",
        || {
            let w = cluster.get_json(&["get", "validatingwebhookconfiguration", &webhook_name]);
            w["webhooks"][0]["clientConfig"]["caBundle"].as_str().is_some_and(|b| !b.is_empty())
        },
        op_log,
    )
    .await;
    // It leads and labels its pod.
    eventually(
        60,
        "the leader label on the pod",
        || {
            let p = cluster.get_json(&["-n", SYSTEM, "get", "pod", &pod_name]);
            p["metadata"]["labels"]["vrouter.kojuro.date/leader"] == "true"
        },
        op_log,
    )
    .await;

    // The quick start, through the webhook.
    let quickstart = repo_root().join("examples/quickstart");
    cluster.must(&["apply", "-n", ROUTERS, "--server-side", "-f", quickstart.to_str().unwrap()], None);

    // Routers enroll with tokens from `kubectl vrouter enroll`.
    let plugin = vrouter_tests::workspace_bin("kubectl-vrouter", "kubectl-vrouter");
    let endpoint = op.endpoint();
    let (routers_tokens, ca_file) = enroll(&cluster, ROUTERS, &["hub", "branch-1", "branch-2"], &endpoint);
    let server_name = release.flag("server-dns-name");
    let routers =
        Routers::start(&routers_tokens, &endpoint, &ca_file, server_name, &cluster.scratch.path().join("routers"));

    // Every target and binding becomes Ready (kubectl wait on the real conditions).
    for (kind, timeout) in [("vrt", "--timeout=180s"), ("vrb", "--timeout=120s")] {
        let waited = cluster.kubectl(&["-n", ROUTERS, "wait", "--for=condition=Ready", kind, "--all", timeout], None);
        assert!(
            waited.ok,
            "{kind} not Ready: {}\n{}\n{}",
            waited.stderr,
            cluster.must(&["-n", ROUTERS, "get", kind, "-o", "yaml"], None),
            op_log()
        );
    }
    assert_eq!(routers.connected(), 3);

    // Status: observedGeneration on the status and on each condition; printer columns; Events.
    for kind in ["vrt", "vrb"] {
        let list = cluster.get_json(&["-n", ROUTERS, "get", kind]);
        for item in list["items"].as_array().unwrap() {
            let generation = &item["metadata"]["generation"];
            assert_eq!(&item["status"]["observedGeneration"], generation, "{kind} {}", item["metadata"]["name"]);
            for c in item["status"]["conditions"].as_array().unwrap() {
                assert_eq!(
                    &c["observedGeneration"], generation,
                    "{kind} {} condition {}",
                    item["metadata"]["name"], c["type"]
                );
            }
        }
    }
    let table = cluster.must(&["-n", ROUTERS, "get", "vrt"], None);
    assert!(table.lines().skip(1).all(|l| l.contains("true")), "every router shows Connected: {table}");
    let events = cluster.must(&["-n", ROUTERS, "get", "events.events.k8s.io", "-o", "json"], None);
    assert!(events.contains("VRouter"), "the operator records Events: {events:.400}");

    // `kubectl vrouter` against the real API server.
    let vrouter = |args: &[&str]| {
        let out = std::process::Command::new(&plugin)
            .args(["-n", ROUTERS])
            .args(args)
            .env("KUBECONFIG", &cluster.plane.kubeconfig)
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "kubectl vrouter {}: {stderr}\n{stdout}", args.join(" "));
        stdout
    };
    let rendered = vrouter(&["render", "hub"]);
    assert!(rendered.contains("host-name \"hub\""), "{rendered}");
    let agents = vrouter(&["agents"]);
    assert_eq!(agents.lines().filter(|l| l.contains(" yes ")).count(), 3, "{agents}");
    let status = vrouter(&["status", "-o", "json"]);
    assert!(status.contains("branch-2"), "{status}");
    let diff = vrouter(&["diff", "hub"]);
    assert!(diff.contains("against the running configuration"), "{diff}");
    // No applied-record ConfigMap for an agent's router: --from-applied plans from the revision
    // the target reports applied, rendered again.
    let from_applied = vrouter(&["diff", "hub", "--from-applied"]);
    assert!(from_applied.contains("against the last applied revision"), "{from_applied}");

    // An operator restart (SIGKILL) keeps the CA in its Secret and every router's identity: the
    // routers reconnect with their certificates, nothing re-enrolls, nothing is committed again.
    let pki_secret = release.flag("pki-secret").unwrap();
    let ca_of = || cluster.get_json(&["-n", SYSTEM, "get", "secret", &pki_secret])["data"]["ca.crt"].clone();
    let ca_before = ca_of();
    assert!(ca_before.is_string(), "the PKI Secret holds the CA");
    let commits_before: Vec<_> = routers.fleets.iter().map(|(n, _)| routers.commits(n)).collect();
    op.proc.kill();
    op = release.start(&cluster, &pod_name, ports, &state);
    eventually(
        90,
        "every router back after the operator restart",
        || routers.connected() == 3 && op.log_text().matches("agent connected").count() >= 3,
        op_log,
    )
    .await;
    assert_eq!(ca_of(), ca_before, "the CA survived the restart");
    assert!(!op.log_text().contains("router enrolled"), "nothing re-enrolled:\n{}", op.log_text());
    let commits_after: Vec<_> = routers.fleets.iter().map(|(n, _)| routers.commits(n)).collect();
    assert_eq!(commits_after, commits_before, "a restart commits nothing");

    // A params change through kubectl apply: one new revision, one commit on every router.
    let before = revisions(&cluster);
    let params = std::fs::read_to_string(quickstart.join("10-params.yaml"))
        .unwrap()
        .replace("timezone: Europe/Paris", "timezone: UTC");
    cluster.must(&["apply", "-n", ROUTERS, "--server-side", "-f", "-"], Some(&params));
    eventually(
        120,
        "the new revision applied on every router",
        || all_moved(&before, &revisions(&cluster)),
        || format!("{:?}\n{}", revisions(&cluster), op_log()),
    )
    .await;
    for (name, _) in &routers.fleets {
        assert!(routers.active(name).contains("time-zone \"UTC\""), "{name}: {}", routers.active(name));
        for (rev, n) in routers.commits(name) {
            assert_eq!(n, 1, "{name}: revision {rev} committed {n} times");
        }
    }

    // A hand edit of a generated config is put back; another manager's label stays.
    let generated = "base.hub";
    let original = cluster.get_json(&["-n", ROUTERS, "get", "vrc", generated])["spec"].clone();
    cluster.must(&["-n", ROUTERS, "label", "vrc", generated, "team=net"], None);
    cluster.must(
        &[
            "-n",
            ROUTERS,
            "patch",
            "vrc",
            generated,
            "--type=merge",
            "-p",
            r#"{"spec":{"commands":"set system host-name hacked\n"}}"#,
        ],
        None,
    );
    eventually(
        60,
        "the hand edit restored",
        || cluster.get_json(&["-n", ROUTERS, "get", "vrc", generated])["spec"] == original,
        op_log,
    )
    .await;
    let labels = &cluster.get_json(&["-n", ROUTERS, "get", "vrc", generated])["metadata"]["labels"];
    assert_eq!(labels["team"], "net", "a field of another manager is left alone: {labels}");

    // Deleting a binding: the garbage collector removes its configs, Merge removes their paths.
    assert!(routers.active("branch-1").contains("bgp"), "{}", routers.active("branch-1"));
    cluster.must(&["-n", ROUTERS, "delete", "vrb", "overlay"], None);
    eventually(
        90,
        "the overlay configs collected",
        || !cluster.must(&["-n", ROUTERS, "get", "vrc", "-o", "name"], None).contains("overlay."),
        || cluster.plane.logs(),
    )
    .await;
    eventually(
        120,
        "the overlay paths removed from the routers",
        || routers.fleets.iter().all(|(n, _)| !routers.active(n).contains("bgp")),
        || format!("{}\n{}", routers.active("branch-1"), op_log()),
    )
    .await;

    // Every revision went through the agents, which keep their own durable records: the
    // operator wrote no applied-record ConfigMap (one API write less per router and revision).
    let records =
        cluster.must(&["-n", ROUTERS, "get", "configmaps", "-l", "vrouter.kojuro.date/target", "-o", "name"], None);
    assert!(records.trim().is_empty(), "applied records written for agent deliveries: {records}");

    // Real RBAC judged every call: no 403 in the operator's log; least privilege.
    let log = op_log();
    assert!(
        !log.to_lowercase().contains("forbidden") && !log.contains("code: 403"),
        "the operator was refused:\n{log}"
    );
    let who = format!("--as=system:serviceaccount:{SYSTEM}:{sa}");
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.push(&who);
        cluster.kubectl(&all, None).stdout.trim().to_owned()
    };
    assert_eq!(can(&["get", "secrets", "-n", ROUTERS]), "yes");
    assert_eq!(can(&["get", "secrets", "-n", "kube-system"]), "no", "Secrets outside the routers' namespaces");
    assert_eq!(can(&["list", "secrets", "-n", ROUTERS]), "no", "Secrets are never listed");
    assert_eq!(can(&["update", "validatingwebhookconfigurations"]), "no");
    assert_eq!(can(&["delete", "vroutertargets", "-n", ROUTERS]), "no");

    // Admission: the real API server calls the operator's webhook, which refuses bad input with
    // a message naming the template, line and key.
    let refused = |manifest: &str, want: &[&str]| {
        let r = cluster.kubectl(&["apply", "-n", ROUTERS, "--server-side", "-f", "-"], Some(manifest));
        assert!(!r.ok, "admitted, must be refused:\n{manifest}");
        assert!(
            r.stderr.contains("admission webhook \"validate.vrouter.kojuro.date\" denied the request"),
            "{}",
            r.stderr
        );
        for w in want {
            assert!(r.stderr.contains(w), "the refusal lacks {w:?}: {}", r.stderr);
        }
    };
    let template = |name: &str, commands: &str| {
        format!(
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {{name: {name}}}\nspec:\n  commands: |\n    {}\n",
            commands.replace('\n', "\n    ")
        )
    };
    refused(&template("broken", "set system host-name {{ hostname"), &["template \"broken\"", "line 1"]);
    // `system` feeds the `base` binding: a missing param there would break every router.
    let system = std::fs::read_to_string(quickstart.join("20-templates.yaml")).unwrap();
    let system = system.split("\n---").find(|d| d.contains("name: system")).unwrap().to_owned();
    let with_missing = system.replacen("{{ target.name }}", "{{ no_such_param }}", 1);
    assert_ne!(with_missing, system, "the system template names the host");
    refused(&with_missing, &["template \"system\" (config) line 2", "no_such_param"]);
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterConfig\nmetadata: {name: shell}\nspec:\n  targetRef: {name: hub}\n  commands: |\n    set system host-name x; reboot\n",
        &["line 1"],
    );
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterConfig\nmetadata: {name: op-mode}\nspec:\n  targetRef: {name: hub}\n  commands: |\n    run show version\n",
        &["run"],
    );
    refused(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: dangling}\nspec:\n  templateRefs: [{name: nowhere}]\n  targetRefs: [{name: hub}]\n",
        &["VRouterTemplate \"nowhere\" not found"],
    );

    // With the operator down, failurePolicy Fail (the chart's default) refuses vrouter writes.
    drop(op);
    let r = cluster.kubectl(
        &["apply", "-n", ROUTERS, "--server-side", "-f", "-"],
        Some(&template("later", "set system host-name later")),
    );
    assert!(
        !r.ok && r.stderr.contains("failed calling webhook"),
        "failurePolicy Fail while the operator is down: {}",
        r.stderr
    );

    // Uninstall: the release's objects go, the CRDs and the routers' resources stay.
    helm(&["uninstall", &kubeconfig, SYSTEM, RELEASE]).unwrap_or_else(|e| panic!("helm uninstall: {e}"));
    let left = cluster.kubectl(&["-n", SYSTEM, "get", "deployment", RELEASE], None);
    assert!(!left.ok, "the Deployment is gone after uninstall");
    cluster.must(&["get", "crd", "vroutertargets.vrouter.kojuro.date"], None);
    drop(routers);
}
