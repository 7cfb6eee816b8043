//! The operator in Kubernetes mode on a real API server: the real `vrouter-operator run`
//! (release build, out of cluster with the admin kubeconfig, no leader election, no webhook, the
//! PKI in a Secret) against a private etcd + kube-apiserver + kube-controller-manager
//! (`vrouter_tests::control_plane`), with N VRouterTargets, one VRouterTemplate and one
//! VRouterBinding selecting them all (the standalone bench's fleet, `faults::write_fleet`'s
//! documents), and N simulated routers (`vrouter_agent::simulate`, in this process) over mTLS with
//! the agent's defaults. For each N:
//!
//! 1. setup: N enrollment tokens in the PKI Secret, N targets created with `kubectl apply
//!    --server-side`, the operator started until every target has a desired revision, then the
//!    routers until every target's status shows `appliedRevision == desiredRevision` (first
//!    convergence);
//! 2. one template change (`kubectl apply --server-side`) until every VRouterTarget in the API
//!    server reports the new revision applied, observed with a kube-rs watcher in this process;
//! 3. the API requests the operator made per router per revision, by verb and resource, from the
//!    API server's own `apiserver_request_total` (before the change and 10 s after convergence,
//!    less the background rate measured over 30 s at idle just before, less this bench's own
//!    requests: the `kubectl apply` and its namespaced watch);
//! 4. the operator's memory (nothing to manage, N targets without routers, converged) and the API
//!    server's, etcd's and the operator's CPU during the fan-out;
//!
//! and the baselines, in the same run: (a) a plain kube-rs reflector over the same N targets, in a
//! child process: its memory, and the time until it observes N status writes made by a plain
//! kube-rs client (server-side apply on `status`, 8 at a time: the operator's `--concurrency`),
//! with the operator stopped; (b) the standalone operator on the same fleet (`bench::StandaloneSite`,
//! as `benches/standalone.rs` runs it): first convergence and the same template change fanned out.
//!
//! Run: `cargo bench -p vrouter-tests --bench kube -- --sizes=1000` (default 1,000 and 5,000;
//! `--quick` for 200) with `VROUTER_KUBE_BIN` naming the control plane's binaries
//! (`tests/kube/build.sh`). `--pki=dir` keeps the PKI in the operator's state directory instead
//! of the Secret (which holds about 2,300 enrolled routers). `BENCH_OPERATOR_LOG=info` sets the
//! operator's log level (`warn` without it); `BENCH_OPERATOR_BIN=<path>` runs another build of
//! the operator in Kubernetes mode (an experiment); `BENCH_MARKER=<file>` writes the operator's
//! pid there and waits 3 s before the idle window (for `perf record -p`); `VROUTER_KUBE_KEEP=1`
//! keeps the control plane's directory and logs. A wait that takes longer than 30 minutes ends
//! the size with what was measured so far and where it stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use vrouter_agent::simulate;
use vrouter_operator::crd::{VRouterConfig, VRouterTarget};
use vrouter_tests::bench::{self, NAMESPACE, PREFIX, Row, StandaloneSite, fleet_options, ratio, row};
use vrouter_tests::cluster::{Cluster, Ports, http_get};
use vrouter_tests::faults::{Proc, fleet_binding, fleet_targets, fleet_template};
use vrouter_tests::measure::{cpu_secs, fmt, percentile, raise_fd_limit, rss_kib};
use vrouter_tests::{control_plane, fresh_bin, wait_until};

/// Hang guard for every wait.
const GUARD: Duration = Duration::from_secs(1800);
/// Background requests (and CPU at idle) are measured over one status-report interval of the
/// agents (60 s: every router reports once) and four heartbeats.
const IDLE_WINDOW: Duration = Duration::from_secs(65);
/// Requests are counted until this long after convergence (trailing status writes, Events).
const SETTLE: Duration = Duration::from_secs(10);
/// The operator's reconciles in flight per controller (`--concurrency`, the chart's default);
/// the plain client's status writes use as many.
const CONCURRENCY: usize = 8;
/// Targets per `kubectl apply`.
const CHUNK: usize = 500;
/// The PKI Secret.
const PKI_NAMESPACE: &str = "vrouter-system";
const PKI_SECRET: &str = "vrouter-pki";
/// The plain client's revision.
const BASELINE_REVISION: &str = "baseline-1";

// ---------------------------------------------------------------------------------------------
// The API server's request counters.

/// One `apiserver_request_total` series, without the response code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    verb: String,
    /// `resource[.group][/subresource]` (no group for the core and vrouter groups).
    resource: String,
    /// `resource` (one named object), `namespace` or `cluster`.
    scope: String,
}

impl Key {
    fn write(&self) -> bool {
        matches!(self.verb.as_str(), "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION")
    }
}

/// Requests by series: (all, answered with a code outside 2xx).
type Requests = BTreeMap<Key, (f64, f64)>;

/// `key="value"` pairs of a Prometheus series (values unescaped).
fn labels(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// The resource requests of an API server's `/metrics` (non-resource requests, e.g. discovery
/// and these scrapes, are left out).
fn parse_requests(metrics: &str) -> Requests {
    let mut out = Requests::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else { continue };
        let Some((set, value)) = rest.rsplit_once("} ") else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let l = labels(set);
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        let resource = get("resource");
        if resource.is_empty() {
            continue;
        }
        let group = get("group");
        let mut name = match group.as_str() {
            "" | "vrouter.kojuro.date" => resource,
            g => format!("{resource}.{g}"),
        };
        let sub = get("subresource");
        if !sub.is_empty() {
            name = format!("{name}/{sub}");
        }
        let key = Key { verb: get("verb"), resource: name, scope: get("scope") };
        let failed = !get("code").starts_with('2');
        let e = out.entry(key).or_default();
        e.0 += value;
        if failed {
            e.1 += value;
        }
    }
    out
}

/// Writes to resources named `resource` (any scope).
fn writes_to(requests: &Requests, resource: &str) -> f64 {
    requests.iter().filter(|(k, _)| k.write() && k.resource == resource).map(|(_, (n, _))| n).sum()
}

/// Whether the operator writes this resource (the API server's own leases and endpoints are not).
fn operators(k: &Key) -> bool {
    k.resource.starts_with("vrouter")
        || k.resource.starts_with("configmaps")
        || k.resource.starts_with("events")
        || k.resource.starts_with("secrets")
}

/// `after - before` per series.
fn delta(before: &Requests, after: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, (a, af))| {
            let (b, bf) = before.get(k).copied().unwrap_or_default();
            (k.clone(), (a - b, af - bf))
        })
        .filter(|(_, (d, _))| *d > 0.0)
        .collect()
}

/// One series of a window: (series, requests, non-2xx, other clients', this bench's own, counted).
type SeriesRow = (Key, f64, f64, f64, f64, f64);

/// A window's requests, and whose they are: those on the resources the operator uses
/// ([`operators`]) are counted, less this bench's own ([`Share::own`]); the rest are other
/// clients' (the API server's leases and endpoints, the controller manager's watches).
#[derive(Default)]
struct Share {
    raw: Requests,
    /// Whether this bench's own requests are taken out (a fan-out window).
    bench: bool,
}

impl Share {
    /// This bench's own requests in a fan-out window: the template's `kubectl apply` and the
    /// requests of its namespaced watches of the targets and configs (the operator's watches are
    /// cluster-wide).
    fn own(k: &Key, raw: f64) -> f64 {
        if k.verb == "APPLY" && k.resource == "vroutertemplates" {
            return 1.0_f64.min(raw);
        }
        if matches!(k.resource.as_str(), "vroutertargets" | "vrouterconfigs")
            && k.scope == "namespace"
            && matches!(k.verb.as_str(), "LIST" | "WATCH")
        {
            return raw;
        }
        0.0
    }

    fn rows(&self) -> Vec<SeriesRow> {
        self.raw
            .iter()
            .map(|(k, (raw, failed))| {
                let others = if operators(k) { 0.0 } else { *raw };
                let own = if self.bench { Self::own(k, *raw) } else { 0.0 };
                (k.clone(), *raw, *failed, others, own, (raw - others - own).max(0.0))
            })
            .collect()
    }

    /// The counted writes and reads.
    fn totals(&self) -> (f64, f64) {
        let rows = self.rows();
        let sum = |w: bool| rows.iter().filter(|r| r.0.write() == w).map(|r| r.5).sum::<f64>();
        (sum(true), sum(false))
    }
}

// ---------------------------------------------------------------------------------------------
// Watching the targets' status.

/// What the bench's watcher saw of every target.
#[derive(Default)]
struct Seen {
    /// (desiredRevision, appliedRevision) as last seen.
    now: HashMap<String, (Option<String>, Option<String>)>,
    /// The revision last seen with `appliedRevision == desiredRevision`, and since when.
    done: HashMap<String, (String, Instant)>,
    /// When each target's desired revision last changed.
    desired_at: HashMap<String, Instant>,
    /// Changes seen (watch events: a write that changed nothing makes none).
    events: u64,
}

/// A kube-rs watcher of the namespace's VRouterTargets.
struct TargetWatch {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl TargetWatch {
    fn start(client: Client) -> TargetWatch {
        let api: Api<VRouterTarget> = Api::namespaced(client, NAMESPACE);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff().applied_objects();
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let t = match item {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("bench watch: {e}");
                        continue;
                    }
                };
                let at = Instant::now();
                let status = t.status.as_ref();
                let desired = status.and_then(|s| s.desired_revision.clone());
                let applied = status.and_then(|s| s.applied_revision.clone());
                let mut seen = s.lock().unwrap();
                seen.events += 1;
                let name = t.name_any();
                if let (Some(d), Some(a)) = (&desired, &applied)
                    && d == a
                    && seen.done.get(&name).is_none_or(|(r, _)| r != a)
                {
                    seen.done.insert(name.clone(), (a.clone(), at));
                }
                if seen.now.get(&name).is_none_or(|(d, _)| *d != desired) {
                    seen.desired_at.insert(name.clone(), at);
                }
                seen.now.insert(name, (desired, applied));
            }
        });
        TargetWatch { seen, task }
    }

    /// Targets whose (desired, applied) satisfy `f`.
    fn count(&self, f: impl Fn(&Option<String>, &Option<String>) -> bool) -> usize {
        self.seen.lock().unwrap().now.values().filter(|(d, a)| f(d, a)).count()
    }

    /// A few targets that do not satisfy `f`, for a panic's message.
    fn example(&self, f: impl Fn(&Option<String>, &Option<String>) -> bool) -> String {
        let seen = self.seen.lock().unwrap();
        let mut bad: Vec<String> = seen
            .now
            .iter()
            .filter(|(_, (d, a))| !f(d, a))
            .take(3)
            .map(|(n, (d, a))| format!("{n}: desired {d:?}, applied {a:?}"))
            .collect();
        bad.sort();
        format!("{} targets seen; e.g. {}", seen.now.len(), bad.join("; "))
    }

    /// Waits until `n` targets satisfy `f`.
    async fn wait(
        &self,
        n: usize,
        what: &str,
        f: impl Fn(&Option<String>, &Option<String>) -> bool + Copy,
        context: impl Fn() -> String,
    ) -> Result<(), String> {
        let start = Instant::now();
        while self.count(f) < n {
            if start.elapsed() > GUARD {
                eprintln!("{}", context());
                return Err(format!(
                    "gave up waiting for {what} after {}: {}/{n}; {}",
                    fmt(GUARD),
                    self.count(f),
                    self.example(f)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Each target's desired revision.
    fn desired(&self) -> HashMap<String, Option<String>> {
        self.seen.lock().unwrap().now.iter().map(|(n, (d, _))| (n.clone(), d.clone())).collect()
    }

    /// For the targets whose desired revision is no longer `old`: how long after `start` it changed.
    fn desired_moved_on(&self, old: &HashMap<String, Option<String>>) -> Vec<Instant> {
        let seen = self.seen.lock().unwrap();
        seen.now
            .iter()
            .filter(|(n, (d, _))| d.is_some() && old.get(*n).is_none_or(|o| o != d))
            .filter_map(|(n, _)| seen.desired_at.get(n).copied())
            .collect()
    }

    /// Changes seen so far.
    fn events(&self) -> u64 {
        self.seen.lock().unwrap().events
    }

    /// Each target's applied revision.
    fn applied(&self) -> HashMap<String, Option<String>> {
        self.seen.lock().unwrap().now.iter().map(|(n, (_, a))| (n.clone(), a.clone())).collect()
    }

    /// For the targets that report a revision other than `old` applied (and desired): how long
    /// after `start` the watcher first saw it.
    fn moved_on(&self, old: &HashMap<String, Option<String>>, start: Instant) -> Vec<Duration> {
        self.moved_on_named(old, start).into_iter().map(|(d, _)| d).collect()
    }

    /// [`TargetWatch::moved_on`] with the targets' names.
    fn moved_on_named(&self, old: &HashMap<String, Option<String>>, start: Instant) -> Vec<(Duration, String)> {
        let seen = self.seen.lock().unwrap();
        seen.now
            .iter()
            .filter(|(n, (d, a))| a.is_some() && d == a && old.get(*n).is_none_or(|o| o != a))
            .filter_map(|(n, (_, a))| {
                let (rev, at) = seen.done.get(n)?;
                (Some(rev) == a.as_ref()).then(|| (at.saturating_duration_since(start), n.clone()))
            })
            .collect()
    }
}

impl Drop for TargetWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts the changes of the namespace's VRouterConfigs (a metadata watch: one event per change).
/// Also when each config's generation (its spec) last changed.
struct ConfigChanges {
    count: Arc<AtomicU64>,
    generations: Arc<Mutex<HashMap<String, (i64, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConfigChanges {
    fn start(client: Client) -> ConfigChanges {
        let api: Api<PartialObjectMeta<VRouterConfig>> = Api::namespaced(client, NAMESPACE);
        let count = Arc::new(AtomicU64::new(0));
        let generations = Arc::new(Mutex::new(HashMap::new()));
        let (c, g) = (count.clone(), generations.clone());
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff().applied_objects();
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let Ok(meta) = item else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let generation = meta.metadata.generation.unwrap_or(0);
                let mut g = g.lock().unwrap();
                let e = g.entry(meta.name_any()).or_insert((generation, Instant::now()));
                if e.0 != generation {
                    *e = (generation, Instant::now());
                }
            }
        });
        ConfigChanges { count, generations, task }
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Each config's generation.
    fn generations(&self) -> HashMap<String, i64> {
        self.generations.lock().unwrap().iter().map(|(n, (g, _))| (n.clone(), *g)).collect()
    }

    /// When the configs whose generation is no longer `old` changed.
    fn moved_on(&self, old: &HashMap<String, i64>) -> Vec<Instant> {
        let g = self.generations.lock().unwrap();
        g.iter().filter(|(n, (gen_, _))| old.get(*n).is_none_or(|o| o != gen_)).map(|(_, (_, at))| *at).collect()
    }
}

impl Drop for ConfigChanges {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn converged(d: &Option<String>, a: &Option<String>) -> bool {
    d.is_some() && d == a
}

fn has_desired(d: &Option<String>, _: &Option<String>) -> bool {
    d.is_some()
}

/// A kube-rs client with the admin kubeconfig.
async fn client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read the admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("the admin kubeconfig");
    Client::try_from(config).expect("a kube client")
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Where the PKI lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PkiMode {
    /// The Secret `vrouter-system/vrouter-pki` (as the chart runs it).
    Secret,
    /// `<state-dir>/pki` (when the Secret cannot hold N routers).
    Dir,
}

fn pki_args(mode: PkiMode, state: &Path) -> Vec<String> {
    let mut args = vec![format!("--state-dir={}", state.display())];
    if mode == PkiMode::Secret {
        args.push(format!("--pki-secret={PKI_SECRET}"));
        args.push(format!("--pki-namespace={PKI_NAMESPACE}"));
    }
    args
}

/// `vrouter-operator <cmd> <pki args> <extra>` with the admin kubeconfig: its stdout, or what went
/// wrong (with how many lines it printed before).
fn operator_cli(bin: &Path, kubeconfig: &Path, cmd: &str, pki: &[String], extra: &[&str]) -> Result<String, String> {
    let out = Command::new(bin)
        .args(["--log", "warn", cmd])
        .args(pki)
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap_or_else(|e| panic!("cannot run vrouter-operator {cmd}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "after {} lines of output: {}",
            stdout.lines().count(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    tokio::task::block_in_place(|| cluster.must(args, stdin))
}

fn scrape(cluster: &Cluster) -> Requests {
    parse_requests(&kubectl(cluster, &["get", "--raw", "/metrics"], None))
}

/// CPU seconds of (API server, etcd, operator).
fn cpus(cluster: &Cluster, operator: u32) -> [f64; 3] {
    let pid = |p: Option<u32>| p.map_or(0.0, cpu_secs);
    [pid(cluster.plane.apiserver_pid()), pid(cluster.plane.etcd_pid()), cpu_secs(operator)]
}

fn minus(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Everything measured for one N.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    /// The fan-out's requests by series.
    fan_out: Share,
    /// The first convergence's requests by series (raw, with enrollment).
    first: Requests,
    /// The plain client's writes by series.
    plain: Requests,
    notes: Vec<String>,
}

fn operator_args(mode: PkiMode, state: &Path, ports: Ports) -> Vec<String> {
    let log = std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into());
    let mut args = vec![format!("--log={log}"), "run".into(), "--leader-election=false".into()];
    args.extend(pki_args(mode, state));
    args.extend([
        format!("--listen=127.0.0.1:{}", ports.agent),
        format!("--metrics-listen=127.0.0.1:{}", ports.metrics),
        format!("--concurrency={CONCURRENCY}"),
    ]);
    args
}

/// `vrouter-operator run` out of cluster, as pod `vrouter-system/vrouter-operator-bench`.
fn start_operator(bin: &Path, args: &[String], kubeconfig: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", "vrouter-operator-bench")
        .env("POD_NAMESPACE", PKI_NAMESPACE)
        .env_remove("KUBERNETES_SERVICE_HOST");
    Proc::spawn("operator", cmd, log)
}

/// Waits for the operator's `/readyz`.
async fn operator_ready(op: &mut Proc, ports: Ports) {
    let start = Instant::now();
    while http_get(ports.metrics, "/readyz").await.is_none() {
        assert!(
            op.running() && start.elapsed() < Duration::from_secs(120),
            "the operator never became ready:\n{}",
            tail(&op.output(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ends a size early: what was measured so far, and why it stopped.
fn gave_up(n: usize, rows: Vec<Row>, mut notes: Vec<String>, why: String) -> Results {
    eprintln!("{n}: stopped: {why}");
    notes.push(format!("stopped: {why}"));
    Results { rows, notes, ..Results::default() }
}

/// The PKI Secrets' data in bytes (keys and decoded values, as the operator counts them against
/// its limit): the main Secret's, and each bucket Secret's that exists.
fn secret_bytes(cluster: &Cluster) -> Option<(usize, Vec<usize>)> {
    let r = cluster.kubectl(&["-n", PKI_NAMESPACE, "get", "secrets", "-o", "json"], None);
    let list: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
    let size = |secret: &serde_json::Value| -> usize {
        secret["data"].as_object().map_or(0, |data| {
            data.iter()
                .map(|(k, v)| {
                    let b64 = v.as_str().unwrap_or_default();
                    k.len() + b64.len() / 4 * 3 - b64.bytes().rev().take_while(|&c| c == b'=').count()
                })
                .sum()
        })
    };
    let items = list["items"].as_array()?;
    let main = items.iter().find(|s| s["metadata"]["name"] == PKI_SECRET).map(size)?;
    let buckets = (0..vrouter_operator::pki::buckets::BUCKETS)
        .filter_map(|i| {
            let name = vrouter_operator::pki::buckets::bucket_name(PKI_SECRET, i);
            items.iter().find(|s| s["metadata"]["name"] == name.as_str()).map(size)
        })
        .collect();
    Some((main, buckets))
}

/// The operator's limit on the PKI Secret's data (`pki::secret::MAX_SECRET_DATA`).
const MAX_SECRET_DATA: usize = vrouter_operator::pki::secret::MAX_SECRET_DATA;

async fn run_size(n: usize, pki: PkiMode) -> Results {
    raise_fd_limit();
    let plane_bin = control_plane::binaries().unwrap_or_else(|| {
        panic!(
            "set {}=<dir with etcd, kube-apiserver, kube-controller-manager> (tests/kube/build.sh)",
            control_plane::BIN_VAR
        )
    });
    // An operator built elsewhere (an experiment) can stand in for the workspace's.
    let op_bin = std::env::var_os("BENCH_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| fresh_bin("vrouter-operator", "vrouter-operator"));
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let cluster = tokio::task::block_in_place(|| Cluster::start(&plane_bin));
    let scratch = cluster.scratch.path().to_owned();
    let kubeconfig = cluster.plane.kubeconfig.clone();
    kubectl(&cluster, &["create", "namespace", PKI_NAMESPACE], None);
    let state = scratch.join("operator-state");
    // With the operator's log asked for, its logs are kept.
    let logs = match std::env::var("BENCH_OPERATOR_LOG") {
        Ok(_) => {
            let dir = std::env::temp_dir().join(format!("vrouter-bench-kube-{n}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }
        Err(_) => scratch.clone(),
    };

    // Tokens: in the PKI Secret, as the chart keeps it (unless `--pki=dir`); in a directory if
    // the Secret cannot hold them.
    let mut mode = pki;
    let start = Instant::now();
    let tokens_args = ["--namespace", NAMESPACE, "--prefix", PREFIX, "--count", &n.to_string()];
    let tokens = match tokio::task::block_in_place(|| {
        operator_cli(&op_bin, &kubeconfig, "tokens", &pki_args(mode, &state), &tokens_args)
    }) {
        Ok(t) => t,
        Err(e) => {
            let note = format!("the PKI Secret could not take {n} tokens ({e}); the PKI is in the state directory");
            eprintln!("{n}: {note}");
            notes.push(note);
            mode = PkiMode::Dir;
            kubectl(&cluster, &["-n", PKI_NAMESPACE, "delete", "secret", PKI_SECRET, "--ignore-not-found"], None);
            tokio::task::block_in_place(|| {
                operator_cli(&op_bin, &kubeconfig, "tokens", &pki_args(mode, &state), &tokens_args)
            })
            .unwrap_or_else(|e| panic!("tokens in the state directory: {e}"))
        }
    };
    let tokens_time = start.elapsed();
    let tokens_file = scratch.join("tokens.txt");
    std::fs::write(&tokens_file, tokens).unwrap();
    let ca = tokio::task::block_in_place(|| operator_cli(&op_bin, &kubeconfig, "ca", &pki_args(mode, &state), &[]))
        .unwrap_or_else(|e| panic!("vrouter-operator ca: {e}"));
    let ca_file = scratch.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let pki_where = match mode {
        PkiMode::Secret => {
            format!(
                "Secret, {} bytes of data",
                secret_bytes(&cluster).map_or("-".into(), |(m, b)| format!(
                    "{} + {} in buckets",
                    m,
                    b.iter().sum::<usize>()
                ))
            )
        }
        PkiMode::Dir => "state directory".into(),
    };
    eprintln!("{n}: {n} tokens in {} ({pki_where})", fmt(tokens_time));
    rows.push(row(&format!("issue {n} enrollment tokens (PKI: {pki_where})"), fmt(tokens_time), String::new(), None));

    // The operator with nothing to manage: its own footprint.
    let ports = Ports::free();
    let args = operator_args(mode, &state, ports);
    let mut empty = start_operator(&op_bin, &args, &kubeconfig, &logs.join("operator-empty.log"));
    operator_ready(&mut empty, ports).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_empty = rss_kib(empty.pid().unwrap());
    empty.kill();

    // N targets, the template and the binding.
    let start = Instant::now();
    for from in (0..n).step_by(CHUNK) {
        let docs = fleet_targets(PREFIX, from..(from + CHUNK).min(n));
        kubectl(
            &cluster,
            &["apply", "-n", NAMESPACE, "--server-side", "--field-manager=bench", "-f", "-"],
            Some(&docs),
        );
    }
    let create = start.elapsed();
    let mut docs = fleet_template("first");
    docs.push_str(&fleet_binding(n));
    kubectl(&cluster, &["apply", "-n", NAMESPACE, "--server-side", "--field-manager=bench", "-f", "-"], Some(&docs));
    eprintln!("{n}: created {n} targets in {}", fmt(create));
    rows.push(row(
        &format!("create {n} VRouterTargets (`kubectl apply --server-side`, {CHUNK} per call)"),
        fmt(create),
        String::new(),
        None,
    ));

    let kube = client(&kubeconfig).await;
    let watch = TargetWatch::start(kube.clone());
    let config_changes = ConfigChanges::start(kube.clone());
    if let Err(e) = watch.wait(n, "the bench's watch to list every target", |_, _| true, String::new).await {
        return gave_up(n, rows, notes, e);
    }

    // The operator, until every target has a desired revision (no router yet).
    let start = Instant::now();
    let mut op = start_operator(&op_bin, &args, &kubeconfig, &logs.join("operator.log"));
    operator_ready(&mut op, ports).await;
    let op_pid = op.pid().unwrap();
    let context = || format!("operator log:\n{}", tail(&op.output(), 40));
    if let Err(e) = watch.wait(n, "every target to have a desired revision", has_desired, context).await {
        return gave_up(n, rows, notes, e);
    }
    let desired_time = start.elapsed();
    eprintln!("{n}: every target has a desired revision {} after the operator started", fmt(desired_time));
    rows.push(row(
        "operator start until every target has a desired revision (no routers)",
        fmt(desired_time),
        String::new(),
        None,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_targets = rss_kib(op_pid);

    // First convergence.
    let before_first = scrape(&cluster);
    let shutdown = CancellationToken::new();
    let options = fleet_options(n, ports.agent, &ca_file, &tokens_file, &scratch.join("sims"));
    let start = Instant::now();
    let fleet = simulate::start(&options, &shutdown).unwrap();
    // The routers stop however this size ends.
    let _stop_routers = shutdown.clone().drop_guard();
    if let Err(e) =
        watch.wait(n, "every target's status to show its desired revision applied", converged, context).await
    {
        let pki = secret_bytes(&cluster)
            .map(|(m, b)| format!(" (the PKI Secrets hold {m} + {} bytes of data)", b.iter().sum::<usize>()));
        return gave_up(n, rows, notes, format!("first convergence: {e}{}", pki.unwrap_or_default()));
    }
    let first = start.elapsed();
    let first_requests = delta(&before_first, &scrape(&cluster));
    eprintln!("{n}: first convergence in {}", fmt(first));
    if mode == PkiMode::Secret
        && let Some((main, buckets)) = secret_bytes(&cluster)
    {
        let records: usize = buckets.iter().sum();
        let largest = buckets.iter().copied().max().unwrap_or(0);
        let per_router = (records / n).max(1);
        rows.push(row(
            &format!("PKI Secrets' data with {n} routers enrolled: main / records in {} bucket Secrets (largest)", buckets.len()),
            format!(
                "{main} / {records} bytes ({largest}); {per_router} per router: the fullest bucket at its {MAX_SECRET_DATA}-byte limit at ≈ {} routers",
                MAX_SECRET_DATA * n / largest.max(1)
            ),
            String::new(),
            None,
        ));
    }

    // Idle: the background requests and CPU.
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Ok(marker) = std::env::var("BENCH_MARKER") {
        // Lets a profiler attach to the operator for the idle window and the fan-out.
        std::fs::write(&marker, format!("{op_pid}")).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let (m0, c0, t0) = (scrape(&cluster), cpus(&cluster, op_pid), Instant::now());
    tokio::time::sleep(IDLE_WINDOW).await;
    let (m1, c1) = (scrape(&cluster), cpus(&cluster, op_pid));
    let idle_secs = t0.elapsed().as_secs_f64();
    let idle = delta(&m0, &m1);
    let idle_cpu = minus(c1, c0).map(|c| c / idle_secs * 100.0);
    let idle_writes: f64 = idle.iter().filter(|(k, _)| k.write()).map(|(_, (v, _))| v).sum();
    let idle_operator_writes: f64 = idle.iter().filter(|(k, _)| k.write() && operators(k)).map(|(_, (v, _))| v).sum();
    eprintln!("{n}: idle: {idle_writes} writes in {idle_secs:.1} s; CPU % apiserver/etcd/operator {idle_cpu:.2?}");

    // The fan-out.
    let old = watch.applied();
    let old_desired = watch.desired();
    let old_generations = config_changes.generations();
    let old_fleet = bench::applied_revisions(&fleet);
    let commits_before = bench::commits(&fleet);
    let (m2, c2) = (scrape(&cluster), cpus(&cluster, op_pid));
    let changes_before = (watch.events(), config_changes.get());
    let start = Instant::now();
    if std::env::var_os("BENCH_OPERATOR_LOG").is_some() {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{n}: fan-out starts at unix {:.3}; operator logs in {}", unix.as_secs_f64(), logs.display());
    }
    kubectl(
        &cluster,
        &["apply", "-n", NAMESPACE, "--server-side", "--field-manager=bench", "-f", "-"],
        Some(&fleet_template("second")),
    );
    let mut pending: Vec<usize> = (0..n).collect();
    let mut router_lat = Vec::with_capacity(n);
    let mut routers_done = None;
    loop {
        if start.elapsed() > GUARD {
            eprintln!("{}", context());
            let why = format!(
                "fan-out (first convergence took {}): after {}, {} of {n} targets report the new revision applied, {} routers still run the old one; {}",
                fmt(first),
                fmt(GUARD),
                watch.moved_on(&old, start).len(),
                pending.len(),
                watch.example(converged)
            );
            return gave_up(n, rows, notes, why);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        bench::moved_on(&fleet, &old_fleet, &mut pending, start, &mut router_lat);
        if pending.is_empty() && routers_done.is_none() {
            routers_done = Some(start.elapsed());
        }
        if watch.moved_on(&old, start).len() == n && routers_done.is_some() {
            break;
        }
    }
    let mut named = watch.moved_on_named(&old, start);
    named.sort();
    let slowest: Vec<String> = named.iter().rev().take(3).map(|(d, t)| format!("{t} {}", fmt(*d))).collect();
    eprintln!("{n}: slowest targets: {}", slowest.join(", "));
    let status_lat: Vec<Duration> = named.into_iter().map(|(d, _)| d).collect();
    router_lat.sort();
    let fan = status_lat.last().copied().unwrap_or_default();
    let fan_routers = routers_done.unwrap_or_default();
    let last = |times: Vec<Instant>| {
        (times.len() >= n).then(|| times.into_iter().max().map(|t| t.saturating_duration_since(start))).flatten()
    };
    let configs_written = last(config_changes.moved_on(&old_generations));
    let desired_moved = last(watch.desired_moved_on(&old_desired));
    let c3 = cpus(&cluster, op_pid);
    let m3 = scrape(&cluster);
    tokio::time::sleep(SETTLE).await;
    let (m4, c4) = (scrape(&cluster), cpus(&cluster, op_pid));
    let changes = (watch.events() - changes_before.0, config_changes.get() - changes_before.1);
    let window = start.elapsed().as_secs_f64();
    let fan_commits = bench::commits(&fleet) - commits_before;
    let rss_converged = rss_kib(op_pid);
    let fan_cpu = minus(c3, c2);
    let settle_cpu = minus(c4, c2);
    let fan_out = Share { raw: delta(&m2, &m4), bench: true };
    let until_converged = Share { raw: delta(&m2, &m3), bench: true };
    let (writes, reads) = fan_out.totals();
    let (writes_conv, _) = until_converged.totals();
    eprintln!(
        "{n}: fan-out: status in {}, routers in {}; {fan_commits} commits; {:.2} writes and {:.2} reads per router",
        fmt(fan),
        fmt(fan_routers),
        writes / n as f64,
        reads / n as f64
    );

    // Baseline (a): a plain reflector and a plain client, with the operator and routers stopped.
    drop(op);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), fleet.join()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut child = tokio::task::block_in_place(|| ReflectorChild::spawn(&kubeconfig, n));
    let listed = child.read();
    let l: Vec<u64> = listed.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    assert_eq!(l.len(), 3, "reflector child said {listed:?}");
    let reflector_per_target = l[1].saturating_sub(l[0]) as f64 / n as f64;
    let (m5, c5) = (scrape(&cluster), cpus(&cluster, 0));
    let observed = tokio::task::block_in_place(|| child.ask("go"));
    let (m6, c6) = (scrape(&cluster), cpus(&cluster, 0));
    child.finish();
    let o: Vec<u64> = observed.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    assert_eq!(o.len(), 4, "reflector child said {observed:?}");
    let [plain_writes_done, plain_observed, plain_p50, plain_p99] = [o[0], o[1], o[2], o[3]].map(Duration::from_micros);
    let plain = delta(&m5, &m6);
    let plain_cpu = minus(c6, c5);
    let plain_write_count = Share { raw: plain.clone(), bench: false }.totals().0;
    eprintln!(
        "{n}: plain client: {plain_write_count} writes done in {}, all observed in {}",
        fmt(plain_writes_done),
        fmt(plain_observed)
    );
    drop((watch, config_changes));
    drop(cluster);

    // Baseline (b): the standalone operator on the same fleet.
    let standalone = standalone(n).await;

    // The report.
    let nf = n as f64;
    rows.push(row(
        "first convergence: enroll every router, first revision, until every target's status shows it applied",
        format!("**{}**", fmt(first)),
        fmt(standalone.first),
        ratio(first, standalone.first),
    ));
    rows.push(row(
        "one template change (`kubectl apply`) until every VRouterTarget reports it applied",
        format!("**{}**", fmt(fan)),
        fmt(standalone.fan),
        ratio(fan, standalone.fan),
    ));
    let maybe = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), fmt);
    rows.push(row(
        "— until the binding had written every target's VRouterConfig (new generation seen)",
        maybe(configs_written),
        String::new(),
        None,
    ));
    rows.push(row(
        "— until every target's status showed the new desired revision",
        maybe(desired_moved),
        String::new(),
        None,
    ));
    rows.push(row(
        "— until every router applied it (the routers' own view)",
        fmt(fan_routers),
        fmt(standalone.fan),
        ratio(fan_routers, standalone.fan),
    ));
    rows.push(row(
        "— p50 / p99 per target (status; standalone: per router)",
        format!("{} / {}", fmt(percentile(&status_lat, 0.5)), fmt(percentile(&status_lat, 0.99))),
        format!("{} / {}", fmt(percentile(&standalone.lat, 0.5)), fmt(percentile(&standalone.lat, 0.99))),
        None,
    ));
    rows.push(row(
        "— p50 / p99 per router (routers' view)",
        format!("{} / {}", fmt(percentile(&router_lat, 0.5)), fmt(percentile(&router_lat, 0.99))),
        String::new(),
        None,
    ));
    rows.push(row(
        "— commits (one per router expected)",
        fan_commits.to_string(),
        standalone.commits.to_string(),
        None,
    ));
    rows.push(row(
        &format!("floor: {n} status writes (plain kube-rs client, SSA, {CONCURRENCY} at a time) until a plain reflector saw all"),
        String::new(),
        fmt(plain_observed),
        ratio(fan, plain_observed),
    ));
    rows.push(row(
        "— the plain client's writes done / p50 / p99 seen per target",
        String::new(),
        format!("{} / {} / {}", fmt(plain_writes_done), fmt(plain_p50), fmt(plain_p99)),
        None,
    ));
    rows.push(row(
        "**API writes per router per revision**: all the operator's, change → convergence + 10 s (goal ≤ 3)",
        format!("**{:.2}**", writes / nf),
        format!("{:.2} (plain client)", plain_write_count / nf),
        Some(writes / plain_write_count.max(1.0)),
    ));
    let idle_rate_writes = idle_operator_writes / idle_secs * window;
    rows.push(row(
        "— less the operator's idle write rate over the same window",
        format!("{:.2}", (writes - idle_rate_writes).max(0.0) / nf),
        String::new(),
        None,
    ));
    rows.push(row("— of which until convergence", format!("{:.2}", writes_conv / nf), String::new(), None));
    rows.push(row(
        "API reads per router per revision (GET/LIST/WATCH)",
        format!("{:.2}", reads / nf),
        String::new(),
        None,
    ));
    rows.push(row(
        "— VRouterTarget status writes / changes the bench's watch saw (a write that changed nothing makes none)",
        format!("{:.0} / {}", writes_to(&fan_out.raw, "vroutertargets/status"), changes.0),
        String::new(),
        None,
    ));
    rows.push(row(
        "— VRouterConfig writes (spec and status) / changes a metadata watch saw",
        format!(
            "{:.0} / {}",
            writes_to(&fan_out.raw, "vrouterconfigs") + writes_to(&fan_out.raw, "vrouterconfigs/status"),
            changes.1
        ),
        String::new(),
        None,
    ));
    rows.push(row(
        "API writes per router per minute at idle: the operator's resources / all (incl. the API server's leases)",
        format!("{:.3} / {:.3}", idle_operator_writes / nf / idle_secs * 60.0, idle_writes / nf / idle_secs * 60.0),
        String::new(),
        None,
    ));
    rows.push(row(
        "API server CPU: fan-out until convergence / + 10 s (plain: the N writes, observed)",
        format!("{:.2} s / {:.2} s", fan_cpu[0], settle_cpu[0]),
        format!("{:.2} s", plain_cpu[0]),
        Some(settle_cpu[0] / plain_cpu[0].max(0.01)),
    ));
    rows.push(row(
        "etcd CPU: fan-out until convergence / + 10 s",
        format!("{:.2} s / {:.2} s", fan_cpu[1], settle_cpu[1]),
        format!("{:.2} s", plain_cpu[1]),
        Some(settle_cpu[1] / plain_cpu[1].max(0.01)),
    ));
    rows.push(row(
        "operator CPU: fan-out until convergence / + 10 s",
        format!("{:.2} s / {:.2} s", fan_cpu[2], settle_cpu[2]),
        String::new(),
        None,
    ));
    rows.push(row(
        "CPU at idle, % of one core: API server / etcd / operator",
        format!("{:.2} / {:.2} / {:.2} %", idle_cpu[0], idle_cpu[1], idle_cpu[2]),
        format!("standalone operator {:.2} %", standalone.idle_cpu),
        None,
    ));
    rows.push(row(
        "operator resident memory, whole process: nothing to manage / N targets, no routers / converged",
        format!(
            "{:.1} / {:.1} / {:.1} MiB",
            rss_empty as f64 / 1024.0,
            rss_targets as f64 / 1024.0,
            rss_converged as f64 / 1024.0
        ),
        format!("standalone converged {:.1} MiB", standalone.rss as f64 / 1024.0),
        None,
    ));
    let per_target = rss_targets.saturating_sub(rss_empty) as f64 / nf;
    rows.push(row(
        "operator memory per target, no routers (reflectors, configs, desired revisions) vs a plain reflector",
        format!("{per_target:.1} KiB"),
        format!("{reflector_per_target:.1} KiB"),
        Some(per_target / reflector_per_target.max(0.1)),
    ));
    let per_router = rss_converged.saturating_sub(rss_targets) as f64 / nf;
    rows.push(row(
        "operator memory per router: converged − no routers (session, delivery, status)",
        format!("**{per_router:.1} KiB**"),
        format!("standalone, growth from start: {:.1} KiB", standalone.rss_per_router),
        None,
    ));
    rows.push(row(
        "operator memory per router, whole process ÷ N",
        format!("{:.1} KiB", rss_converged as f64 / nf),
        format!("{:.1} KiB", standalone.rss as f64 / nf),
        Some(rss_converged as f64 / standalone.rss.max(1) as f64),
    ));
    Results { rows, fan_out, first: first_requests, plain, notes }
}

/// The standalone operator on the same fleet.
struct Standalone {
    first: Duration,
    fan: Duration,
    lat: Vec<Duration>,
    commits: u64,
    idle_cpu: f64,
    rss: u64,
    rss_per_router: f64,
}

async fn standalone(n: usize) -> Standalone {
    let tmp = tempfile::tempdir().unwrap();
    let site = StandaloneSite::prepare(n, tmp.path());
    let mut operator = Proc::spawn("standalone operator", site.command(None), &tmp.path().join("op.log"));
    wait_until(Duration::from_secs(60), "the standalone operator wrote ca.pem", || async { site.ca_file().exists() })
        .await;
    assert!(operator.running(), "the standalone operator stopped:\n{}", operator.output());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = operator.pid().unwrap();
    let rss0 = rss_kib(pid);
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let fleet = simulate::start(&site.fleet_options(), &shutdown).unwrap();
    wait_until(GUARD, "every router applied its first revision (standalone)", || async {
        fleet.routers.iter().all(|(_, o)| o.applied_revision().is_some())
    })
    .await;
    let first = start.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu0 = cpu_secs(pid);
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu = (cpu_secs(pid) - cpu0) / IDLE_WINDOW.as_secs_f64() * 100.0;
    let rss = rss_kib(pid);
    let old = bench::applied_revisions(&fleet);
    let commits_before = bench::commits(&fleet);
    let start = Instant::now();
    site.change("second");
    let lat = bench::wait_moved_on(&fleet, &old, start, GUARD).await;
    let fan = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let commits = bench::commits(&fleet) - commits_before;
    eprintln!("{n}: standalone: first convergence {}, fan-out {} ({commits} commits)", fmt(first), fmt(fan));
    operator.kill();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), fleet.join()).await;
    Standalone { first, fan, lat, commits, idle_cpu, rss, rss_per_router: rss.saturating_sub(rss0) as f64 / n as f64 }
}

// ---------------------------------------------------------------------------------------------
// Baseline (a): a plain reflector and a plain client, in a child process.

/// The child, driven by lines on its stdin.
struct ReflectorChild {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ReflectorChild {
    fn spawn(kubeconfig: &Path, n: usize) -> ReflectorChild {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["reflector", &kubeconfig.display().to_string(), &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        ReflectorChild { child, lines }
    }

    fn read(&mut self) -> String {
        self.lines.next().and_then(Result::ok).unwrap_or_default()
    }

    fn ask(&mut self, command: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        self.read()
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `reflector KUBECONFIG N`: a plain kube-rs reflector over the namespace's VRouterTargets.
/// Prints `LISTED <RSS KiB before> <RSS KiB with N objects> <list µs>`; on `go`, a plain client
/// writes every target's `status.appliedRevision` (server-side apply, `CONCURRENCY` at a time)
/// and it prints `OBSERVED <writes done µs> <all seen µs> <p50 µs> <p99 µs>`.
async fn reflector_child(kubeconfig: &Path, n: usize) {
    raise_fd_limit();
    let me = std::process::id();
    let api: Api<VRouterTarget> = Api::namespaced(client(kubeconfig).await, NAMESPACE);
    // The connection and TLS state belong to the client, not to the store.
    api.get_opt(&format!("{PREFIX}0")).await.expect("read a target");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_kib(me);
    let (reader, writer) = reflector::store::<VRouterTarget>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Option<String>, Instant)>();
    let stream = watcher(api.clone(), watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(t) = item {
                let applied = t.status.as_ref().and_then(|s| s.applied_revision.clone());
                let _ = tx.send((t.name_any(), applied, Instant::now()));
            }
        }
    });
    let start = Instant::now();
    tokio::time::timeout(GUARD, reader.wait_until_ready()).await.expect("the reflector listed").expect("store");
    while reader.len() < n {
        assert!(start.elapsed() < GUARD, "the reflector holds {} of {n} targets", reader.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("LISTED {rss0} {} {}", rss_kib(me), listed.as_micros());
    std::io::stdout().flush().unwrap();
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        line
    })
    .await
    .unwrap();
    if go.trim() != "go" {
        return;
    }
    while rx.try_recv().is_ok() {}
    let start = Instant::now();
    let writes = tokio::spawn(async move {
        let ssa = PatchParams::apply("vrouter-bench-plain").force();
        let body = serde_json::json!({
            "apiVersion": "vrouter.kojuro.date/v1",
            "kind": "VRouterTarget",
            "status": {"appliedRevision": BASELINE_REVISION},
        });
        futures::stream::iter(0..n)
            .map(|i| {
                let (api, ssa, body) = (api.clone(), ssa.clone(), body.clone());
                async move { (i, api.patch_status(&format!("{PREFIX}{i}"), &ssa, &Patch::Apply(body)).await) }
            })
            .buffer_unordered(CONCURRENCY)
            .for_each(|(i, r)| {
                if let Err(e) = r {
                    eprintln!("plain client: status of {PREFIX}{i}: {e}");
                    std::process::exit(1);
                }
                std::future::ready(())
            })
            .await;
        start.elapsed()
    });
    let mut seen = HashSet::new();
    let mut lat = Vec::with_capacity(n);
    while seen.len() < n {
        let Ok(Some((name, applied, at))) = tokio::time::timeout(GUARD, rx.recv()).await else {
            panic!("the plain reflector saw {} of {n} status writes", seen.len());
        };
        if applied.as_deref() == Some(BASELINE_REVISION) && seen.insert(name) {
            lat.push(at.saturating_duration_since(start));
        }
    }
    let observed = start.elapsed();
    let done = writes.await.unwrap();
    lat.sort();
    println!(
        "OBSERVED {} {} {} {}",
        done.as_micros(),
        observed.as_micros(),
        percentile(&lat, 0.5).as_micros(),
        percentile(&lat, 0.99).as_micros()
    );
    std::io::stdout().flush().unwrap();
}

// ---------------------------------------------------------------------------------------------

/// Requests by series as a Markdown table, per router.
/// A window's requests as a Markdown table, per router: the counted series, then one line for
/// every other client's.
fn print_requests(title: &str, counted: &str, n: usize, share: &Share) {
    println!("\n### {title}\n");
    println!("| verb | resource | scope | requests | non-2xx | bench's own | {counted} | per router |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    let rows = share.rows();
    let mut sorted: Vec<&SeriesRow> = rows.iter().filter(|r| r.3 == 0.0).collect();
    sorted.sort_by(|a, b| (!a.0.write(), -a.5 as i64, &a.0).cmp(&(!b.0.write(), -b.5 as i64, &b.0)));
    for (k, raw, failed, _, own, ours) in sorted {
        println!(
            "| {} | {} | {} | {raw:.0} | {failed:.0} | {own:.0} | {ours:.0} | {:.3} |",
            k.verb,
            k.resource,
            k.scope,
            ours / n as f64
        );
    }
    let others: f64 = rows.iter().map(|r| r.3).sum();
    let other_writes: f64 = rows.iter().filter(|r| r.0.write()).map(|r| r.3).sum();
    println!("| | other clients (API server, controller manager) | | {others:.0} ({other_writes:.0} writes) | | | | |");
}

fn main() {
    let args = bench::args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.first().map(String::as_str) == Some("reflector") {
        runtime.block_on(reflector_child(&PathBuf::from(&args[1]), args[2].parse().unwrap()));
        return;
    }
    let (quick, sizes) = bench::sizes(&args, 200, &[1000, 5000]);
    let pki = match args.iter().find_map(|a| a.strip_prefix("--pki=")) {
        None | Some("secret") => PkiMode::Secret,
        Some("dir") => PkiMode::Dir,
        Some(other) => panic!("--pki={other}: expected secret or dir"),
    };
    println!(
        "# The operator in Kubernetes mode on a real API server, N VRouterTargets and N simulated routers ({})",
        if quick { "quick" } else { "full" }
    );
    for n in sizes {
        let r = runtime.block_on(run_size(n, pki));
        println!("\n## {n} routers\n");
        for note in &r.notes {
            println!("Note: {note}\n");
        }
        bench::print_table(
            "Kubernetes mode",
            "baseline (standalone operator; plain kube-rs client and reflector)",
            &r.rows,
        );
        print_requests(
            "API requests of the fan-out (change → convergence + 10 s), by series",
            "operator's",
            n,
            &r.fan_out,
        );
        print_requests(
            "API requests of the first convergence (enrollment, first revision)",
            "operator's",
            n,
            &Share { raw: r.first.clone(), bench: true },
        );
        print_requests(
            "API requests of the plain client's N status writes",
            "plain client's",
            n,
            &Share { raw: r.plain.clone(), bench: false },
        );
    }
}
