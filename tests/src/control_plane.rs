//! A private, real Kubernetes control plane for tests: etcd, kube-apiserver and
//! kube-controller-manager (garbage collector and namespace controller), built from Go modules by
//! `tests/kube/build.sh`, on free loopback ports, with certificates made here with rcgen.
//!
//! Tests that need it are compiled as ignored unless `VROUTER_KUBE_BIN` names the binaries at build
//! time (`cfg(kube_plane)`, see `tests/build.rs`; `.ci/run` sets it after building them). Every
//! process is stopped by its pid and every directory removed when the [`ControlPlane`] is dropped,
//! also when a test panics (`VROUTER_KUBE_KEEP=1` keeps the directory, with the logs).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{Proc, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};

/// The variable naming the directory with `etcd`, `kube-apiserver` and `kube-controller-manager`.
pub const BIN_VAR: &str = "VROUTER_KUBE_BIN";

/// Why the control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// A component did not become ready.
    #[error("{component} did not become ready within {timeout:?}; its log ends with:\n{log}")]
    NotReady {
        /// etcd, kube-apiserver, ...
        component: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlPlaneError {
    let what = what.into();
    move |source| ControlPlaneError::Io { what, source }
}

/// The directory holding the binaries, if the environment names one that has all three.
pub fn binaries() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(BIN_VAR)?);
    ["etcd", "kube-apiserver", "kube-controller-manager"].iter().all(|b| dir.join(b).is_file()).then_some(dir)
}

fn tail(p: &Proc) -> String {
    let text = p.output();
    let lines: Vec<&str> = text.lines().collect();
    format!("--- {} ---\n{}", p.name, lines[lines.len().saturating_sub(30)..].join("\n"))
}

/// The certificates of one control plane.
struct Certs {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Certs {
    fn new() -> Result<Certs, rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "vrouter test cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key)?;
        Ok(Certs { ca_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// A leaf certificate and its key (PEM).
    fn leaf(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a kubeconfig for `server` with either a client certificate or a bearer token.
pub fn write_kubeconfig(path: &Path, server: &str, ca_pem: &str, user: KubeUser<'_>) -> std::io::Result<()> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut text = String::new();
    let _ = write!(
        text,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\nusers:\n- name: user\n  user:\n",
        b64(ca_pem)
    );
    match user {
        KubeUser::Cert { cert_pem, key_pem } => {
            let _ =
                write!(text, "    client-certificate-data: {}\n    client-key-data: {}\n", b64(cert_pem), b64(key_pem));
        }
        KubeUser::Token(token) => {
            let _ = writeln!(text, "    token: {token}");
        }
    }
    text.push_str(
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n    namespace: default\ncurrent-context: test\n",
    );
    std::fs::write(path, text)
}

/// Who a kubeconfig authenticates as.
pub enum KubeUser<'a> {
    /// A client certificate.
    Cert {
        /// PEM certificate.
        cert_pem: &'a str,
        /// PEM key.
        key_pem: &'a str,
    },
    /// A bearer token (e.g. a ServiceAccount's, from the TokenRequest API).
    Token(&'a str),
}

/// At most this many control planes run at once in one test process (each is an etcd and two
/// Go servers; the tests of one binary run in parallel): `VROUTER_KUBE_PARALLEL`, default 2.
fn permit() -> Permit {
    static SLOTS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    static FREED: std::sync::Condvar = std::sync::Condvar::new();
    let max = std::env::var("VROUTER_KUBE_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(2usize).max(1);
    let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    while *used >= max {
        used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
    }
    *used += 1;
    Permit {
        release: || {
            let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
            *used = used.saturating_sub(1);
            FREED.notify_one();
        },
    }
}

/// A slot of [`permit`], given back on drop.
struct Permit {
    release: fn(),
}

impl Drop for Permit {
    fn drop(&mut self) {
        (self.release)();
    }
}

/// A running control plane. Dropping it stops every process and removes its directory.
pub struct ControlPlane {
    _permit: Permit,
    bin: PathBuf,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    etcd: Proc,
    apiserver: Proc,
    apiserver_args: Vec<String>,
    apiserver_starts: usize,
    controller_manager: Option<Proc>,
    apiserver_port: u16,
    certs_ca: String,
    /// The admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
}

/// How long each component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

impl ControlPlane {
    /// Starts etcd, the API server (RBAC, service-account tokens) and the controller manager from
    /// the binaries in `bin`, and waits for the API server's `/readyz`.
    pub fn start(bin: &Path) -> Result<ControlPlane, ControlPlaneError> {
        let permit = permit();
        let dir = tempfile::Builder::new().prefix("vrouter-kube-").tempdir().map_err(io("temp dir"))?;
        let root = dir.path();
        let certs = Certs::new()?;
        let write = |name: &str, text: &str| -> Result<PathBuf, ControlPlaneError> {
            let p = root.join(name);
            std::fs::write(&p, text).map_err(io(format!("write {}", p.display())))?;
            Ok(p)
        };
        let ca = write("ca.crt", &certs.ca_pem)?;
        let localhost = vec![
            SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName("localhost".try_into()?),
            SanType::DnsName("kubernetes.default.svc".try_into()?),
        ];
        let (serving_cert, serving_key) =
            certs.leaf("kube-apiserver", &[], localhost, ExtendedKeyUsagePurpose::ServerAuth)?;
        let serving_cert = write("apiserver.crt", &serving_cert)?;
        let serving_key = write("apiserver.key", &serving_key)?;
        let (admin_cert, admin_key) =
            certs.leaf("vrouter-test-admin", &["system:masters"], vec![], ExtendedKeyUsagePurpose::ClientAuth)?;
        let sa_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let sa_private = write("sa.key", &sa_key.serialize_pem())?;
        let sa_public = write("sa.pub", &sa_key.public_key_pem())?;

        let etcd_port = free_port();
        let peer_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd = Self::spawn_etcd(bin, root, &etcd_url, peer_port)?;

        let apiserver_port = free_port();
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = root.join("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server,
            &certs.ca_pem,
            KubeUser::Cert { cert_pem: &admin_cert, key_pem: &admin_key },
        )
        .map_err(io("write the admin kubeconfig"))?;

        let mut args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", sa_public.display()),
            format!("--service-account-signing-key-file={}", sa_private.display()),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            // etcd compaction every minute, so tests can reach `410 Gone` on old watches.
            "--etcd-compaction-interval=1m".into(),
            "--watch-cache=true".into(),
            "--profiling=false".into(),
            "-v=1".into(),
        ];
        args.push(format!("--api-audiences={}", "https://kubernetes.default.svc"));
        let apiserver = Self::spawn_apiserver(bin, &root.join("kube-apiserver.log"), &args)?;
        let mut plane = ControlPlane {
            _permit: permit,
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            dir: Some(dir),
            etcd,
            apiserver,
            apiserver_args: args,
            apiserver_starts: 1,
            controller_manager: None,
            apiserver_port,
            certs_ca: certs.ca_pem,
            kubeconfig,
        };
        plane.wait_ready()?;
        plane.controller_manager = Some(plane.spawn_controller_manager()?);
        Ok(plane)
    }

    fn spawn_etcd(bin: &Path, root: &Path, url: &str, peer_port: u16) -> Result<Proc, ControlPlaneError> {
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin.join("etcd"));
        cmd.arg(format!("--data-dir={}", root.join("etcd").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .arg("--name=default")
            .arg("--log-level=warn")
            .arg("--quota-backend-bytes=2147483648")
            // no fsync wait on a test machine's shared disk
            .arg("--unsafe-no-fsync");
        Ok(Proc::spawn("etcd", cmd, &root.join("etcd.log")))
    }

    fn spawn_apiserver(bin: &Path, log: &Path, args: &[String]) -> Result<Proc, ControlPlaneError> {
        let mut cmd = Command::new(bin.join("kube-apiserver"));
        cmd.args(args);
        Ok(Proc::spawn("kube-apiserver", cmd, log))
    }

    /// Stops the API server (SIGKILL: no graceful close of watches); etcd keeps the data.
    pub fn stop_apiserver(&mut self) {
        self.apiserver.kill();
    }

    /// Starts the API server again, same port, flags and etcd, and waits for `/readyz`. Its
    /// log is `kube-apiserver.<n>.log`.
    pub fn start_apiserver(&mut self) -> Result<(), ControlPlaneError> {
        let log = self.root.join(format!("kube-apiserver.{}.log", self.apiserver_starts));
        self.apiserver_starts += 1;
        self.apiserver = Self::spawn_apiserver(&self.bin, &log, &self.apiserver_args)?;
        self.wait_ready()
    }

    fn spawn_controller_manager(&self) -> Result<Proc, ControlPlaneError> {
        let mut cmd = Command::new(self.bin.join("kube-controller-manager"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--controllers=garbage-collector-controller,namespace-controller")
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg("--concurrent-gc-syncs=5")
            .arg("-v=1");
        Ok(Proc::spawn("kube-controller-manager", cmd, &self.root.join("kube-controller-manager.log")))
    }

    /// Waits for `/readyz` of the API server (through kubectl with the admin kubeconfig).
    pub fn wait_ready(&mut self) -> Result<(), ControlPlaneError> {
        let start = Instant::now();
        loop {
            if !self.etcd.running() {
                return Err(self.not_ready("etcd", start.elapsed()));
            }
            if !self.apiserver.running() {
                return Err(self.not_ready("kube-apiserver", start.elapsed()));
            }
            let out = self.kubectl_output(&["get", "--raw", "/readyz"]);
            if out.as_ref().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready("kube-apiserver", READY_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn not_ready(&self, component: &'static str, timeout: Duration) -> ControlPlaneError {
        let log = match component {
            "etcd" => tail(&self.etcd),
            _ => tail(&self.apiserver),
        };
        ControlPlaneError::NotReady { component, timeout, log }
    }

    /// The API server's URL.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The cluster CA (PEM): it signs the API server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.certs_ca
    }

    /// The API server's process id, while it runs (benchmarks read its CPU time).
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.apiserver.pid()
    }

    /// etcd's process id, while it runs.
    pub fn etcd_pid(&self) -> Option<u32> {
        self.etcd.pid()
    }

    /// The control plane's own directory (logs, certificates), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl_output(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("kubectl").arg(format!("--kubeconfig={}", self.kubeconfig.display())).args(args).output()
    }

    /// Runs kubectl with the admin kubeconfig and returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> KubectlResult {
        kubectl(&self.kubeconfig, args, stdin)
    }

    /// The logs of every component, for a failed test's output.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in [Some(&self.etcd), Some(&self.apiserver), self.controller_manager.as_ref()].into_iter().flatten() {
            let _ = writeln!(out, "{}", tail(p));
        }
        out
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Controllers first, etcd last; each is SIGKILLed and reaped by its pid.
        if let Some(p) = self.controller_manager.as_mut() {
            p.kill();
        }
        self.apiserver.kill();
        self.etcd.kill();
        if std::env::var_os("VROUTER_KUBE_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("control plane directory kept: {}", dir.keep().display());
        }
    }
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct KubectlResult {
    /// Exit status 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs kubectl with `kubeconfig`, optionally feeding `stdin`.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> KubectlResult {
    use std::io::Write as _;
    let mut cmd = Command::new("kubectl");
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return KubectlResult { ok: false, stdout: String::new(), stderr: format!("cannot run kubectl: {e}") };
        }
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => KubectlResult {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => KubectlResult { ok: false, stdout: String::new(), stderr: format!("kubectl: {e}") },
    }
}
