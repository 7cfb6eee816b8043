//! The operator on a real control plane ([`crate::control_plane`]): the CRDs installed, the chart
//! installed with the real Helm library, ServiceAccount tokens from the TokenRequest API, and
//! operator processes started out of cluster with the flags the chart's Deployment gives them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::control_plane::{ControlPlane, KubeUser, KubectlResult, write_kubeconfig};
use crate::faults::{Proc, free_port};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/vrouter-operator")
}

/// A control plane with the vrouter CRDs installed (from `vrouter-operator crds`) and Established.
pub struct Cluster {
    /// The control plane.
    pub plane: ControlPlane,
    /// A scratch directory for the test (kubeconfigs, state directories, logs).
    pub scratch: tempfile::TempDir,
}

impl Cluster {
    /// Starts a control plane from `bin` and installs the CRDs the operator prints.
    pub fn start(bin: &Path) -> Cluster {
        let plane = ControlPlane::start(bin).unwrap_or_else(|e| panic!("control plane: {e}"));
        let scratch = tempfile::Builder::new().prefix("vrouter-cluster-").tempdir().expect("scratch dir");
        let cluster = Cluster { plane, scratch };
        let crds = operator_crds();
        cluster.must(&["apply", "--server-side", "--field-manager=vrouter-test", "-f", "-"], Some(&crds));
        cluster.must(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"], None);
        cluster
    }

    /// kubectl as the admin; panics with both outputs and the control plane's logs on failure.
    pub fn must(&self, args: &[&str], stdin: Option<&str>) -> String {
        let r = self.plane.kubectl(args, stdin);
        assert!(r.ok, "kubectl {}: {}\n{}\n{}", args.join(" "), r.stderr, r.stdout, self.plane.logs());
        r.stdout
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> KubectlResult {
        self.plane.kubectl(args, stdin)
    }

    /// A kubeconfig for ServiceAccount `namespace/name`, with a token from the TokenRequest API.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.must(&["-n", namespace, "create", "token", name, "--duration=2h"], None);
        let path = self.scratch.path().join(format!("{namespace}-{name}.kubeconfig"));
        write_kubeconfig(&path, &self.plane.server(), self.plane.ca_pem(), KubeUser::Token(token.trim()))
            .expect("write the ServiceAccount kubeconfig");
        path
    }

    /// A JSON object from `kubectl get -o json`.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.must(&all, None)).expect("kubectl printed JSON")
    }
}

/// Waits (polling every 500 ms) until `check` is true; panics with `what` and `context()` after
/// `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The chart as installed in the cluster: what an operator replica needs from it.
pub struct Release {
    /// The Deployment, as the API server holds it.
    pub deployment: serde_json::Value,
    /// The operator's ServiceAccount.
    pub service_account: String,
    /// A kubeconfig with a token of that ServiceAccount (TokenRequest API).
    pub kubeconfig: PathBuf,
    /// The release namespace.
    pub namespace: String,
}

impl Release {
    /// Reads Deployment `namespace/name` of an installed release and makes its ServiceAccount's
    /// kubeconfig.
    pub fn read(cluster: &Cluster, namespace: &str, name: &str) -> Release {
        let deployment = cluster.get_json(&["-n", namespace, "get", "deployment", name]);
        let service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("the Deployment names its ServiceAccount")
            .to_owned();
        let kubeconfig = cluster.service_account_kubeconfig(namespace, &service_account);
        Release { deployment, service_account, kubeconfig, namespace: namespace.to_owned() }
    }

    /// A replica's arguments (see [`chart_operator_args`]).
    pub fn args(&self, ports: Ports, state_dir: &Path) -> Vec<String> {
        chart_operator_args(&self.deployment, ports, state_dir)
    }

    /// The value of `--<flag>=` in the Deployment's arguments.
    pub fn flag(&self, flag: &str) -> Option<String> {
        let prefix = format!("--{flag}=");
        self.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str())
            .find_map(|a| a.strip_prefix(&prefix))
            .map(str::to_owned)
    }

    /// Creates the object of replica pod `name` from the Deployment's pod template (no kubelet
    /// runs it; the leader label goes on it).
    pub fn create_pod(&self, cluster: &Cluster, name: &str) {
        let template = &self.deployment["spec"]["template"];
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": template["metadata"]["labels"]},
            "spec": {
                "serviceAccountName": self.service_account,
                "containers": [{"name": "operator", "image": template["spec"]["containers"][0]["image"]}],
            },
        });
        cluster.must(&["apply", "-f", "-"], Some(&pod.to_string()));
    }

    /// Starts replica `pod` (its object must exist) as the chart's ServiceAccount, logging to
    /// `<scratch>/<pod>.log`.
    pub fn start(&self, cluster: &Cluster, pod: &str, ports: Ports, state_dir: &Path) -> OperatorProc {
        let args = self.args(ports, state_dir);
        OperatorProc::start(&args, &self.kubeconfig, &self.namespace, pod, ports, cluster.scratch.path())
    }
}

/// Enrolls routers `names` of `namespace` with `kubectl vrouter enroll` against `endpoint`:
/// their `(namespace/name, token)` and the operator CA file the plugin wrote.
pub fn enroll(cluster: &Cluster, namespace: &str, names: &[&str], endpoint: &str) -> (Vec<(String, String)>, PathBuf) {
    let plugin = crate::workspace_bin("kubectl-vrouter", "kubectl-vrouter");
    let mut tokens = Vec::new();
    let mut ca_file = PathBuf::new();
    for name in names {
        let dir = cluster.scratch.path().join(format!("enroll-{namespace}-{name}"));
        let out = Command::new(&plugin)
            .args(["-n", namespace, "enroll", name, "--endpoint", endpoint, "--out-dir"])
            .arg(&dir)
            .env("KUBECONFIG", &cluster.plane.kubeconfig)
            .output()
            .expect("run kubectl-vrouter");
        assert!(out.status.success(), "kubectl vrouter enroll {name}: {}", String::from_utf8_lossy(&out.stderr));
        let toml = std::fs::read_to_string(dir.join("agent.toml")).expect("agent.toml");
        let token = toml
            .lines()
            .find_map(|l| l.trim().strip_prefix("token = "))
            .expect("agent.toml has a token")
            .trim_matches('"')
            .to_owned();
        tokens.push((format!("{namespace}/{name}"), token));
        ca_file = dir.join("operator-ca.pem");
    }
    (tokens, ca_file)
}

/// Waits up to a minute for `/readyz` on the operator's metrics port.
pub async fn wait_ready(op: &OperatorProc, log: impl Fn() -> String) {
    for _ in 0..120 {
        if op.http_get("/readyz").await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("operator {} never became ready:\n{}", op.pod, log());
}

/// The value of an unlabelled metric in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of metric `name` over the series whose labels include every `key="value"` of
/// `labels` (0 when none does).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (set, value) = rest.split_once("} ")?;
            labels.iter().all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\""))).then_some(value)
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// `vrouter-operator crds`.
pub fn operator_crds() -> String {
    let out = Command::new(crate::workspace_bin("vrouter-operator", "vrouter-operator"))
        .arg("crds")
        .output()
        .expect("run vrouter-operator crds");
    assert!(out.status.success(), "vrouter-operator crds: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The Python that has helm-python-sdk (`VROUTER_HELM_PYTHON`, or the chart check's virtualenv).
pub fn helm_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VROUTER_HELM_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var_os("VROUTER_CHART_VENV").map(PathBuf::from)?;
    Some(venv.join("bin/python"))
}

/// Runs `tests/kube/helm.py` (the real Helm library) and returns the manifest it prints.
pub fn helm(args: &[&str]) -> Result<String, String> {
    let python = helm_python().ok_or("set VROUTER_HELM_PYTHON or VROUTER_CHART_VENV (charts/check.sh builds it)")?;
    let out = Command::new(python)
        .arg(repo_root().join("tests/kube/helm.py"))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run helm.py: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Where a chart-configured operator process listens.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The agent endpoint.
    pub agent: u16,
    /// Metrics and health.
    pub metrics: u16,
    /// The admission webhook.
    pub webhook: u16,
}

impl Ports {
    /// Free loopback ports.
    pub fn free() -> Ports {
        Ports { agent: free_port(), metrics: free_port(), webhook: free_port() }
    }
}

/// The operator's arguments from the chart's Deployment in the cluster, with the addresses moved
/// to loopback `ports` and the state directory to `state_dir` (no pod, no volume here).
pub fn chart_operator_args(deployment: &serde_json::Value, ports: Ports, state_dir: &Path) -> Vec<String> {
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the Deployment's container has args");
    args.iter()
        .filter_map(|a| a.as_str())
        .map(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            match flag {
                "--listen" => format!("--listen=127.0.0.1:{}", ports.agent),
                "--metrics-listen" => format!("--metrics-listen=127.0.0.1:{}", ports.metrics),
                "--webhook-listen" => format!("--webhook-listen=127.0.0.1:{}", ports.webhook),
                "--state-dir" => format!("--state-dir={}", state_dir.display()),
                _ => a.to_owned(),
            }
        })
        .collect()
}

/// An operator process running out of cluster as one replica of the chart's Deployment.
pub struct OperatorProc {
    /// Its log file.
    pub log: PathBuf,
    /// The process.
    pub proc: Proc,
    /// Its ports.
    pub ports: Ports,
    /// Its pod's name (POD_NAME).
    pub pod: String,
}

impl OperatorProc {
    /// Starts `vrouter-operator` with `args`, `kubeconfig` and the downward-API variables of pod
    /// `namespace/pod`; its log is `<log_dir>/<pod>.log` (`<pod>.<n>.log` after restarts).
    pub fn start(
        args: &[String],
        kubeconfig: &Path,
        namespace: &str,
        pod: &str,
        ports: Ports,
        log_dir: &Path,
    ) -> OperatorProc {
        let mut cmd = Command::new(crate::workspace_bin("vrouter-operator", "vrouter-operator"));
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", namespace)
            .env("VROUTER_LOG", "info,vrouter_operator=debug")
            .env_remove("KUBERNETES_SERVICE_HOST");
        // A restarted replica logs to a new file: `<pod>.log`, `<pod>.1.log`, ...
        let log = (0..)
            .map(|i| log_dir.join(if i == 0 { format!("{pod}.log") } else { format!("{pod}.{i}.log") }))
            .find(|p| !p.exists())
            .expect("a free log name");
        let proc = Proc::spawn(pod, cmd, &log);
        OperatorProc { log, proc, ports, pod: pod.to_owned() }
    }

    /// The agent endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.agent)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs `path` on the metrics endpoint (plain HTTP): the body, or None if it does not answer.
    pub async fn http_get(&self, path: &str) -> Option<String> {
        http_get(self.ports.metrics, path).await
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:`port` (the operator's metrics and health endpoint).
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The first file named `name` under `dir` (recursively), if any.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
        }
    }
    None
}

/// Simulated routers (the agent's own `simulate` code, in process, real mTLS), each with its
/// own state directory `<base>/<name>`.
pub struct Routers {
    /// Each router's fleet of one.
    pub fleets: Vec<(String, vrouter_agent::simulate::Fleet)>,
    /// Where their state lives.
    pub base: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Routers {
    /// Starts a router per `(namespace/name, token)`, dialing `endpoint` and trusting `ca_file`.
    pub fn start(
        routers: &[(String, String)],
        endpoint: &str,
        ca_file: &Path,
        server_name: Option<String>,
        base: &Path,
    ) -> Routers {
        Self::start_with(routers, endpoint, ca_file, server_name, base, &Default::default())
    }

    /// [`Routers::start`] with the simulated routers' knobs (`sim`: commit latency, failures).
    pub fn start_with(
        routers: &[(String, String)],
        endpoint: &str,
        ca_file: &Path,
        server_name: Option<String>,
        base: &Path,
        sim: &vrouter_agent::config::SimConfig,
    ) -> Routers {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut fleets = Vec::new();
        for (identity, token) in routers {
            let name = identity.split_once('/').map(|(_, n)| n).unwrap_or(identity);
            let options = vrouter_agent::simulate::SimulateOptions {
                count: 1,
                namespace: String::new(),
                prefix: String::new(),
                endpoint: endpoint.to_owned(),
                ca_file: ca_file.to_owned(),
                server_name: server_name.clone(),
                tokens_file: None,
                state_dir: base.join(name),
                sim: sim.clone(),
                commit_confirm: true,
                reconnect: vrouter_agent::config::ReconnectConfig {
                    min_delay_ms: 200,
                    max_delay_ms: 2_000,
                    ..Default::default()
                },
            };
            let tokens = std::collections::HashMap::from([(identity.clone(), token.clone())]);
            let fleet =
                vrouter_agent::simulate::start_routers(&options, std::slice::from_ref(identity), &tokens, &shutdown)
                    .expect("start a simulated router");
            fleets.push((name.to_owned(), fleet));
        }
        Routers { fleets, base: base.to_owned(), shutdown }
    }

    /// Routers with an open session.
    pub fn connected(&self) -> usize {
        self.fleets.iter().map(|(_, f)| f.connected()).sum()
    }

    /// The running configuration of router `name` (the simulated `active.boot`).
    pub fn active(&self, name: &str) -> String {
        find_file(&self.base.join(name), "active.boot")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The revision router `name` committed last (its commit log's last revision).
    pub fn last_commit(&self, name: &str) -> Option<String> {
        let log = find_file(&self.base.join(name), "commits.log")?;
        let dir = log.parent().and_then(Path::parent).unwrap_or(&self.base);
        crate::faults::commit_log(dir).iter().rev().find_map(|l| l.revision().map(str::to_owned))
    }

    /// The agent commits per revision of router `name`.
    pub fn commits(&self, name: &str) -> std::collections::BTreeMap<String, usize> {
        match find_file(&self.base.join(name), "commits.log") {
            Some(log) => crate::faults::commits_per_revision(log.parent().and_then(Path::parent).unwrap_or(&self.base)),
            None => Default::default(),
        }
    }
}

impl Drop for Routers {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
