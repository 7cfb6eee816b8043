//! Helpers shared by the end-to-end tests in `tests/tests/`: an operator hub on loopback with
//! real TLS, simulated agents, a TCP proxy that can blackhole a connection, and polling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod cluster;
pub mod control_plane;
pub mod echo;
pub mod faults;
pub mod measure;
pub mod qga;
pub mod service;
pub mod vm;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use vrouter_agent::backend::sim::{SimBackend, SimControl};
use vrouter_agent::config::{
    AgentConfig, ApplyConfig, BackendConfig, BackendKind, OperatorConfig, ReconnectConfig, SimConfig, VyosConfig,
};
use vrouter_agent::{Agent, Observer};
use vrouter_operator::hub::{AgentServer, Hub, HubConfig, ServerConfig};
use vrouter_operator::metrics::Metrics;
use vrouter_operator::pki::{DirStore, Pki, PkiConfig};
use vrouter_proto::RouterId;
use vrouter_proto::v1::{ApplyRequest, CommitConfirm, ConfigPolicy, Revision};

/// Polls `check` every 20 ms until it is true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings that make heartbeats and reconnects fast enough for tests.
pub fn fast_hub() -> HubConfig {
    HubConfig {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_misses: 3,
        handshake_timeout: Duration::from_secs(5),
        status_interval: Duration::from_secs(30),
        drift_interval: Duration::from_secs(30),
        ..HubConfig::default()
    }
}

/// An operator hub serving on loopback with its own PKI directory.
pub struct TestOperator {
    /// The hub.
    pub hub: Hub,
    /// The bound address.
    pub addr: SocketAddr,
    /// The state directory.
    pub dir: PathBuf,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), vrouter_operator::hub::ServeError>>,
}

impl TestOperator {
    /// Starts a hub; `addr` lets a restarted operator take the same port.
    pub async fn start(dir: &Path, hub: HubConfig, pki: PkiConfig, addr: Option<SocketAddr>) -> TestOperator {
        TestOperator::start_with(dir, hub, ServerConfig::default(), pki, addr).await
    }

    /// Starts a hub with these endpoint settings.
    pub async fn start_with(
        dir: &Path,
        hub: HubConfig,
        server: ServerConfig,
        pki: PkiConfig,
        addr: Option<SocketAddr>,
    ) -> TestOperator {
        let store = DirStore::new(dir.join("pki")).unwrap();
        let pki = Arc::new(Pki::open(Arc::new(store), pki).await.unwrap());
        let hub = Hub::new(hub, pki, Metrics::new());
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let (addr, handle) =
            AgentServer::spawn(hub.clone(), server, bind, async move { s.cancelled().await }).await.unwrap();
        TestOperator { hub, addr, dir: dir.to_owned(), shutdown, handle }
    }

    /// `https://localhost:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Writes the CA bundle to `dir/ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, self.hub.pki().ca_pem()).unwrap();
        path
    }

    /// Stops serving and closes every session.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

/// A simulated router running the real agent code in this process.
pub struct TestAgent {
    /// The identity.
    pub id: RouterId,
    /// What the agent is doing.
    pub observer: Arc<Observer>,
    /// The simulated router (None with the VyOS backend).
    pub sim: Option<SimControl>,
    /// The agent's state directory.
    pub dir: PathBuf,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), vrouter_agent::AgentError>>,
}

/// How to start a test agent.
pub struct AgentOptions {
    /// Endpoint to dial (the operator, or a proxy in front of it).
    pub endpoint: String,
    /// Simulated router knobs.
    pub sim: SimConfig,
    /// Commit-confirm on.
    pub commit_confirm: bool,
    /// Issue a token (false: the state directory already holds credentials).
    pub enroll: bool,
    /// Use the VyOS backend with these settings (a fake VyOS root) instead of the simulator.
    pub vyos: Option<VyosConfig>,
}

impl TestAgent {
    /// Starts an agent for `name` (namespace `test`) with its state in `dir`.
    pub async fn start(op: &TestOperator, name: &str, dir: &Path, options: AgentOptions) -> TestAgent {
        let id = RouterId::new("test", name).unwrap();
        let ca = op.write_ca(dir);
        let token = if options.enroll { Some(op.hub.pki().issue_token(&id, None).await.unwrap()) } else { None };
        let config = AgentConfig {
            identity: id.to_string(),
            state_dir: dir.to_owned(),
            operator: OperatorConfig {
                endpoint: options.endpoint,
                ca_file: ca,
                server_name: Some("localhost".to_owned()),
                token_file: None,
                token,
                connect_timeout_secs: 2,
            },
            backend: BackendConfig {
                kind: if options.vyos.is_some() { BackendKind::Vyos } else { BackendKind::Sim },
                sim: options.sim,
                vyos: options.vyos.clone().unwrap_or_default(),
            },
            reconnect: ReconnectConfig { min_delay_ms: 50, max_delay_ms: 500, healthy_after_secs: 2 },
            apply: ApplyConfig {
                commit_confirm: options.commit_confirm,
                proof_deadline_secs: 5,
                ..ApplyConfig::default()
            },
        };
        let (backend, sim): (Arc<dyn vrouter_agent::backend::Backend>, _) = match options.vyos {
            Some(v) => {
                let backend = vrouter_agent::backend::vyos::VyosBackend::open(v).unwrap();
                backend.watch();
                (backend, None)
            }
            None => {
                let backend = SimBackend::open(dir, &config.backend.sim).unwrap();
                let control = backend.control();
                (Arc::new(backend), Some(control))
            }
        };
        let agent = Agent::new(config, backend).unwrap();
        let observer = agent.observer();
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let handle = tokio::spawn(async move { agent.run(s).await });
        TestAgent { id, observer, sim, dir: dir.to_owned(), shutdown, handle }
    }

    /// Stops the agent.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }

    /// The simulated router's controls (panics for a VyOS-backend agent).
    pub fn sim(&self) -> &SimControl {
        self.sim.as_ref().expect("a simulated agent")
    }

    /// Whether a session is open.
    pub fn connected(&self) -> bool {
        self.observer.connected.load(Ordering::SeqCst)
    }
}

/// Default agent options against an operator.
pub fn agent_options(op: &TestOperator) -> AgentOptions {
    AgentOptions {
        endpoint: op.endpoint(),
        sim: SimConfig { confirm_minute_ms: Some(200), ..SimConfig::default() },
        commit_confirm: true,
        enroll: true,
        vyos: None,
    }
}

/// An apply request for a revision.
pub fn apply_request(revision: &str, desired: &str, policy: ConfigPolicy) -> ApplyRequest {
    let tree = vyos_config::Config::parse(desired).unwrap().tree;
    ApplyRequest {
        request_id: String::new(),
        revision: Some(Revision { id: revision.to_owned(), digest: vyos_config::digest(&tree).to_string() }),
        desired_config: desired.to_owned(),
        policy: policy as i32,
        save: true,
        commit_confirm: Some(CommitConfirm {
            enabled: true,
            timeout_minutes: 1,
            proof_deadline: Some(prost_types::Duration { seconds: 5, nanos: 0 }),
        }),
        deadline: Some(prost_types::Duration { seconds: 30, nanos: 0 }),
        ..ApplyRequest::default()
    }
}

/// A TCP proxy in front of a server that can stop forwarding (a blackholed path), slow every
/// chunk down, and heal. Stops when dropped.
pub struct Proxy {
    /// Where to connect instead of the server.
    pub addr: SocketAddr,
    /// 0: forward; [`BLACKHOLE`]: swallow; otherwise the delay per chunk in milliseconds.
    mode: Arc<AtomicU64>,
    accepted: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

const BLACKHOLE: u64 = u64::MAX;

impl Proxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let (m, a, s) = (mode.clone(), accepted.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => return },
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (m, s) = (m.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = s.cancelled() => {}
                        _ = pump(cr, sw, m.clone()) => {}
                        _ = pump(sr, cw, m) => {}
                    }
                });
            }
        });
        Proxy { addr, mode, accepted, shutdown }
    }

    /// `https://localhost:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Stops forwarding: bytes are swallowed, connections stay open.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Forwards every chunk after `delay` (a slow path).
    pub fn slow(&self, delay: Duration) {
        self.mode
            .store(u64::try_from(delay.as_millis()).unwrap_or(BLACKHOLE - 1).clamp(1, BLACKHOLE - 1), Ordering::SeqCst);
    }

    /// Forwards again at full speed (connections opened from now on work).
    pub fn heal(&self) {
        self.mode.store(0, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops the proxy: every connection through it is closed and new ones are refused.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, mode: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut poisoned = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match mode.load(Ordering::SeqCst) {
            BLACKHOLE => {
                // Lost on the way; this connection never recovers (its TLS stream is broken).
                poisoned = true;
                continue;
            }
            0 => {}
            ms => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        if poisoned {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A fake VyOS root (the `fakevyos` test double) for the VyOS backend.
pub struct FakeVyos {
    /// The root directory.
    pub root: PathBuf,
    bin: PathBuf,
}

/// A binary of this workspace from the same build as the running test (built on demand when the
/// test binary was built alone, e.g. `cargo test -p vrouter-tests`).
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    build_bin(package, name, false)
}

/// Like [`workspace_bin`], but always asks cargo to bring the binary up to date (benchmarks:
/// `cargo bench` builds no binaries, and a stale one would measure old code).
pub fn fresh_bin(package: &str, name: &str) -> PathBuf {
    build_bin(package, name, true)
}

fn build_bin(package: &str, name: &str, always: bool) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> (tests, benches) or target/<profile>/<bin> (kube-up)
    // → target/<profile>/<name>
    let dir = exe.parent().unwrap();
    let profile_dir = if dir.ends_with("deps") { dir.parent().unwrap() } else { dir }.to_owned();
    let bin = profile_dir.join(name);
    if always || !bin.exists() {
        let target = profile_dir.parent().unwrap();
        let mut cargo = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "-q", "-p", package, "--bin", name]).env("CARGO_TARGET_DIR", target);
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        assert!(cargo.status().unwrap().success(), "cannot build {name}");
    }
    bin
}

/// The `fakevyos` binary.
pub fn fakevyos_bin() -> PathBuf {
    workspace_bin("vrouter-fakevyos", "fakevyos")
}

impl FakeVyos {
    /// Installs a fake root under `dir` for `profile` (sagitta, circinus, rolling, dozenos), boot
    /// complete.
    pub fn install(dir: &Path, profile: &str) -> FakeVyos {
        let bin = fakevyos_bin();
        let root = dir.join("root");
        let out = std::process::Command::new(&bin)
            .arg("install")
            .arg(&root)
            .args(["--profile", profile, "--boot-complete"])
            .output()
            .unwrap();
        assert!(out.status.success(), "fakevyos install: {}", String::from_utf8_lossy(&out.stderr));
        FakeVyos { root, bin }
    }

    /// `fakevyos ctl ROOT args…`; returns stdout (panics on failure).
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(&self.bin).arg("ctl").arg(&self.root).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "fakevyos ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctl status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl(&["status"])).unwrap()
    }

    /// The running configuration, as VyOS shows it.
    pub fn active(&self) -> vyos_config::Tree {
        let out = std::process::Command::new(self.root.join("bin/cli-shell-api"))
            .args(["--show-active-only", "--show-ignore-edit", "showConfig"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        vyos_config::Config::parse_hierarchical(&String::from_utf8_lossy(&out.stdout)).unwrap().tree
    }

    /// Backend settings for this root (fast polling, events file inside the test directory).
    pub fn backend(&self) -> VyosConfig {
        VyosConfig {
            root: self.root.clone(),
            events_file: self.root.join("run/vrouter-agent/commit-events"),
            poll_ms: 100,
            lock_wait_secs: 10,
            ..VyosConfig::default()
        }
    }
}
