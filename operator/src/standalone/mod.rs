//! Standalone mode: the operator without Kubernetes. Manifests come from a directory (a GitOps
//! checkout), generated configs and statuses live in memory and in `<state>/status.yaml`, and
//! routers connect to the agent endpoint as usual — or, with `simulate`, run in-process as
//! simulated routers (the quick start).

mod cadence;
pub mod manifests;
mod status_files;
pub mod world;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
#[cfg(feature = "simulate")]
use vrouter_proto::RouterId;

use crate::delivery::{self, Engine, EngineConfig};
use crate::hub::{AgentServer, Hub, HubConfig, ServerConfig};
use crate::metrics::Metrics;
use crate::pki::{Pki, PkiConfig};
use crate::qga::guest::{BootstrapSettings, GuestLayout};
use crate::qga::route::{LibvirtResolver, QgaSupport};
use manifests::{Manifests, load_dir};
use world::World;

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The manifests.
    pub dir: PathBuf,
    /// State (PKI, applied records, status, simulated routers).
    pub state_dir: PathBuf,
    /// Agent endpoint address.
    pub listen: SocketAddr,
    /// Run a simulated router for every target.
    pub simulate: bool,
    /// Exit once every router runs its desired revision (status 0), or when `timeout` passes.
    pub until_synced: bool,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// How often the directory is re-read.
    pub poll: Duration,
    /// Print the target table on changes.
    pub table: bool,
    /// Delivery retry timing.
    pub engine: EngineConfig,
    /// Hub settings.
    pub hub: HubConfig,
    /// Agent endpoint settings (connection limits and deadlines).
    pub server: ServerConfig,
    /// Guest-agent bootstrap and fallback for targets with a `libvirt` provider.
    pub qga: Option<QgaOptions>,
}

/// Guest-agent settings of standalone mode (libvirt sockets on this host).
#[derive(Clone, Debug, Default)]
pub struct QgaOptions {
    /// The agent binary copied into guests that have none.
    pub agent_binary: Option<PathBuf>,
    /// The endpoint guests dial (default `https://<listen address>`).
    pub endpoint: Option<String>,
    /// TLS server name guests expect (default `localhost`, which the standalone server
    /// certificate carries).
    pub server_name: Option<String>,
    /// TOML merged into every `agent.toml` written into a guest.
    pub extra_agent_config: String,
    /// Prefix of the guest paths (tests).
    pub guest_root: String,
    /// How long an agent may stay unreachable before the guest agent delivers.
    pub fallback_after: Duration,
    /// How long a bootstrapped agent gets to connect before the bootstrap is repeated.
    pub session_wait: Duration,
    /// How often routers without a session are looked at.
    pub poll: Duration,
}

/// Errors of standalone mode.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The manifests cannot be used.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Manifests(Vec<manifests::ManifestError>),
    /// Setup failed.
    #[error("{0}")]
    Setup(String),
    /// `until_synced` ran out of time.
    #[error("not synced after {after:?}:\n  {}", pending.join("\n  "))]
    NotSynced {
        /// The timeout.
        after: Duration,
        /// What was still pending.
        pending: Vec<String>,
    },
}

/// After delivery events, the pause between two reconcile passes, in multiples of the last
/// pass's duration.
const STEP_PAUSE_FACTOR: u32 = 4;

/// Reads (or creates) the key of the secrets fingerprint (`<state>/revision.key`).
pub fn secret_key(state: &Path) -> Result<Vec<u8>, String> {
    let path = state.join("revision.key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => Ok(k),
        _ => {
            let key: [u8; 32] = rand::random();
            std::fs::write(&path, key).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key.to_vec())
        }
    }
}

/// The manifests with every rollout turned off (render and diff show the whole change).
fn without_rollouts(mut m: Manifests) -> Manifests {
    for ns in m.namespaces.values_mut() {
        for b in ns.bindings.values_mut() {
            b.spec.rollout = None;
        }
    }
    m
}

/// Renders everything once, without routers: generated configs and each router's desired
/// config, as YAML (`vrouter-operator render DIR`). Rollouts are ignored: everything is shown.
pub fn render(dir: &Path) -> Result<String, StandaloneError> {
    let m = without_rollouts(load_dir(dir).map_err(StandaloneError::Manifests)?);
    let mut w = World::new(vec![0; 32]);
    let out = w.step(&m, SystemTime::now());
    let mut docs = String::new();
    for c in w.generated() {
        docs.push_str("---\n");
        docs.push_str(&serde_saphyr::to_string(c).map_err(|e| StandaloneError::Setup(e.to_string()))?);
    }
    for (id, desired) in &out.desired {
        if let Some(d) = desired {
            docs.push_str(&format!("---\n# router {id}, revision {}\n", d.revision));
            for line in d.config.lines() {
                docs.push_str("# ");
                docs.push_str(line);
                docs.push('\n');
            }
        }
    }
    for p in w.problems() {
        docs.push_str(&format!("# problem: {p}\n"));
    }
    for (namespace, ns) in &m.namespaces {
        for (name, t) in &ns.templates {
            let source = crate::render::TemplateSource {
                name: name.clone(),
                config: t.spec.config.clone(),
                commands: t.spec.commands.clone(),
            };
            for u in crate::render::raw_syntax_uses(&source) {
                docs.push_str(&format!("# warning: namespace {namespace:?}: {u}\n"));
            }
        }
    }
    Ok(docs)
}

/// Per router, the commands that would run against its last known running configuration: the
/// simulated router's (under `state`), else the config last delivered to it, else empty.
/// Secret values are substituted for the comparison and shown as placeholders.
pub fn diff(dir: &Path, state: &Path) -> Result<String, StandaloneError> {
    use vyos_config::{Config, PlanInput, Policy, Schema, Tree, path_from_str, plan};
    let m = without_rollouts(load_dir(dir).map_err(StandaloneError::Manifests)?);
    let mut w = World::new(vec![0; 32]);
    let out = w.step(&m, SystemTime::now());
    let mut text = String::new();
    for (id, desired) in &out.desired {
        let Some(d) = desired else { continue };
        let sim = simulated_router_dir(state, id).join("sim/active.boot");
        let record = std::fs::read(delivery::DirStore::file(&state.join("applied"), id))
            .ok()
            .and_then(|b| serde_json::from_slice::<delivery::AppliedRecord>(&b).ok());
        let substitute = |t: &str| d.substituted(t).map_err(|e| StandaloneError::Setup(format!("{id}: {e}")));
        let parse = |t: &str, what: &str| {
            Config::parse(t).map(|c| c.tree).map_err(|e| StandaloneError::Setup(format!("{id}: {what}: {e}")))
        };
        let (running, source) = match std::fs::read_to_string(&sim) {
            Ok(t) => (parse(&t, "simulated running config")?, "the simulated router's running config".to_owned()),
            Err(_) => match &record {
                Some(r) => (
                    parse(&substitute(&r.config)?, "last delivered config")?,
                    format!("revision {} as last delivered", r.revision),
                ),
                None => (Tree::new(), "an empty configuration (nothing known)".to_owned()),
            },
        };
        let desired_tree = parse(&substitute(&d.config)?, "desired config")?;
        let previous = match &record {
            Some(r) => Some(parse(&substitute(&r.config)?, "last delivered config")?),
            None => None,
        };
        let deletions: Vec<vyos_config::Command> =
            d.deletions.iter().filter_map(|l| vyos_config::commands::parse_line(l, 0).ok()).collect();
        let scopes: Vec<Vec<String>> = d.managed_scopes.iter().map(|s| path_from_str(s)).collect();
        let p = plan(PlanInput {
            running: &running,
            desired: &desired_tree,
            previous: previous.as_ref(),
            policy: if d.policy == crate::crd::ConfigPolicy::Replace { Policy::Replace } else { Policy::Merge },
            managed_scopes: &scopes,
            deletions: &deletions,
            protected: &Tree::new(),
            schema: Schema::vyos(),
        });
        text.push_str(&format!("# router {id}: revision {} against {source}\n", d.revision));
        if p.commands.is_empty() {
            text.push_str("# (no change)\n");
        }
        for c in &p.commands {
            text.push_str(&d.redact(&c.to_string()));
            text.push('\n');
        }
    }
    for p in w.problems() {
        text.push_str(&format!("# problem: {p}\n"));
    }
    Ok(text)
}

/// A simulated router's state directory: `<state>/routers/<namespace>_<name>`
/// ([`RouterId::file_name`](vrouter_proto::RouterId::file_name)), as the agent's `simulate`
/// lays them out under `<state>/routers`.
pub fn simulated_router_dir(state: &Path, id: &vrouter_proto::RouterId) -> PathBuf {
    state.join("routers").join(id.file_name())
}

fn fingerprint(dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, SystemTime, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), out);
            } else {
                out.push((e.path(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Runs until `shutdown` (or until synced with `until_synced`).
pub async fn run(options: Options, shutdown: CancellationToken) -> Result<(), StandaloneError> {
    let setup = |e: String| StandaloneError::Setup(e);
    std::fs::create_dir_all(&options.state_dir).map_err(|e| setup(format!("{}: {e}", options.state_dir.display())))?;
    let mut manifests = load_dir(&options.dir).map_err(StandaloneError::Manifests)?;
    let store = crate::pki::DirStore::new(options.state_dir.join("pki")).map_err(|e| setup(e.to_string()))?;
    let pki = Pki::open(Arc::new(store), PkiConfig::default()).await.map_err(|e| setup(e.to_string()))?;
    let pki = Arc::new(pki);
    let ca_path = options.state_dir.join("ca.pem");
    std::fs::write(&ca_path, pki.ca_pem()).map_err(|e| setup(format!("{}: {e}", ca_path.display())))?;
    let hub = Hub::new(options.hub.clone(), pki.clone(), Metrics::new());
    let mut hub_events = hub.subscribe();
    let s = shutdown.clone();
    let mut endpoint = options.server.clone();
    if options.simulate {
        // The simulated routers all dial from loopback and enroll at once on a first start:
        // one source, so the per-source cap would throttle them; the total cap still holds.
        endpoint.max_unauthenticated_per_source =
            endpoint.max_unauthenticated_per_source.max(endpoint.max_unauthenticated);
    }
    let (addr, server) = AgentServer::spawn(hub.clone(), endpoint, options.listen, async move { s.cancelled().await })
        .await
        .map_err(|e| setup(format!("cannot listen on {}: {e}", options.listen)))?;
    tracing::info!(%addr, dir = %options.dir.display(), "standalone operator: serving agents");
    let applied = delivery::DirStore::new(options.state_dir.join("applied")).map_err(|e| setup(e.to_string()))?;
    let (engine, mut events) = Engine::new(hub.clone(), Arc::new(applied), options.engine.clone(), shutdown.clone());
    if let Some(q) = &options.qga {
        engine.enable_qga(QgaSupport {
            resolver: Arc::new(LibvirtResolver),
            bootstrap: BootstrapSettings {
                agent_binary: q.agent_binary.clone(),
                endpoint: q.endpoint.clone().unwrap_or_else(|| format!("https://{addr}")),
                server_name: Some(q.server_name.clone().unwrap_or_else(|| "localhost".to_owned())),
                ca_pem: pki.ca_pem().to_owned(),
                extra_config: q.extra_agent_config.clone(),
                layout: GuestLayout::new(q.guest_root.clone()),
            },
            fallback_after: q.fallback_after,
            session_wait: q.session_wait,
            poll: q.poll,
        });
    }
    let mut world = World::new(secret_key(&options.state_dir).map_err(setup)?);
    let generated_path = options.state_dir.join("generated.json");
    world.restore_generated(load_generated(&generated_path).map_err(setup)?);
    let mut saved_generated = None;

    let sims = Simulated::new(&options, addr, &ca_path);
    let mut sims = match sims {
        Some(s) => Some(s?),
        None => None,
    };

    let started = tokio::time::Instant::now();
    let mut last_fp = fingerprint(&options.dir);
    let mut last_table = String::new();
    // Reconcile (render, compose, deliver) only when the manifests changed, a delivery finished
    // or a rollout timer is due; agent events only change status, which is rewritten alone.
    let mut wake_at: Option<tokio::time::Instant> = None;
    let mut dirty = true;
    // Delivery events only move rollouts and binding counts on: while they stream in (a fan-out
    // to thousands of routers), a pass runs at most every STEP_PAUSE_FACTOR × the last pass's
    // duration, so passes cannot take the whole loop.
    let mut delivered = false;
    let mut last_step = (tokio::time::Instant::now(), Duration::ZERO);
    // The directory poll keeps its cadence however often events wake the loop.
    let mut poll = cadence::Cadence::new(options.poll, tokio::time::Instant::now());
    let mut status_dirty = false;
    let mut status = status_files::StatusFiles::new(&options.state_dir.join("status.yaml"), status_files::STATUS_EVERY);
    let result = loop {
        if dirty {
            dirty = false;
            status_dirty = true;
            if let Some(s) = sims.as_mut() {
                s.ensure(&manifests, &pki, &shutdown).await.map_err(setup)?;
            }
            delivered = false;
            let began = tokio::time::Instant::now();
            let out = world.step(&manifests, SystemTime::now());
            save_generated(&world, &generated_path, &mut saved_generated);
            last_step = (tokio::time::Instant::now(), began.elapsed());
            tracing::debug!(took = ?last_step.1, desired = out.desired.len(), "reconcile pass");
            for (id, desired) in out.desired {
                engine.set_desired(&id, desired);
            }
            wake_at = out.wake_after.map(|w| tokio::time::Instant::now() + w);
        }
        if status_dirty {
            status_dirty = false;
            status.changed();
            if options.until_synced && world.unsynced(&manifests).is_empty() {
                break Ok(());
            }
        }
        let timeout_left = options.timeout.map(|t| t.saturating_sub(started.elapsed()));
        if timeout_left.is_some_and(|t| t.is_zero()) {
            if options.until_synced {
                break Err(StandaloneError::NotSynced {
                    after: options.timeout.unwrap_or_default(),
                    pending: world.unsynced(&manifests),
                });
            }
            break Ok(());
        }
        // The table lists every router and status changes arrive all the time from a large
        // fleet: it is built and printed at the status files' cadence, not on every change.
        if status.flush(&world) && options.table {
            let table = world.table();
            if table != last_table {
                println!("{table}");
                last_table = table;
            }
        }
        let wake_in = wake_at.map(|w| w.saturating_duration_since(tokio::time::Instant::now()));
        let status_in = status.due_in(std::time::Instant::now());
        let step_at = last_step.0 + last_step.1 * STEP_PAUSE_FACTOR;
        let delivered_in = delivered.then(|| step_at.saturating_duration_since(tokio::time::Instant::now()));
        if delivered_in.is_some_and(|d| d.is_zero()) {
            dirty = true;
            continue;
        }
        let sleep_for = [Some(poll.left(tokio::time::Instant::now())), wake_in, timeout_left, status_in, delivered_in]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(options.poll);
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            ev = events.recv() => {
                let Some(ev) = ev else { break Ok(()) };
                // Take every delivery event already queued: one reconcile for the lot.
                let mut next = Some(ev);
                while let Some(ev) = next {
                    tracing::debug!(router = %ev.id, phase = ?ev.phase, message = %ev.message, "delivery");
                    world.on_delivery(&ev);
                    next = events.try_recv().ok();
                }
                delivered = true;
                status_dirty = true;
            }
            ev = hub_events.recv() => {
                if let Ok(ev) = ev {
                    world.on_hub(&ev);
                    while let Ok(ev) = hub_events.try_recv() {
                        world.on_hub(&ev);
                    }
                    status_dirty = true;
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
        // Whatever woke the loop, the directory poll and the rollout timers run when due.
        let now = tokio::time::Instant::now();
        if poll.due(now) {
            let fp = fingerprint(&options.dir);
            if fp != last_fp {
                last_fp = fp;
                match load_dir(&options.dir) {
                    Ok(m) => {
                        tracing::info!("manifests changed");
                        manifests = m;
                    }
                    Err(errors) => {
                        // Keep running on the last good manifests.
                        for e in errors {
                            tracing::error!(error = %e, "manifests not reloaded");
                        }
                    }
                }
                dirty = true;
            }
        }
        if wake_at.is_some_and(|w| now >= w) {
            dirty = true;
        }
    };
    status.finish(&world).await;
    if options.table {
        println!("{}", world.table());
    }
    shutdown.cancel();
    if let Some(s) = sims {
        s.join().await;
    }
    let _ = server.await;
    result
}

/// Generated configs saved by an earlier run (`<state>/generated.json`; none if absent).
fn load_generated(path: &Path) -> Result<Vec<crate::crd::VRouterConfig>, String> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Saves the generated configs when they changed: a restarted operator resumes rollouts from
/// them (targets a rollout has not reached keep their previous config). `saved` is the
/// [`World::generated_version`] last saved; a failed write is tried again on the next pass.
fn save_generated(world: &World, path: &Path, saved: &mut Option<u64>) {
    let version = world.generated_version();
    if *saved == Some(version) {
        return;
    }
    let configs: Vec<&crate::crd::VRouterConfig> = world.generated().collect();
    let Ok(text) = serde_json::to_string(&configs) else { return };
    match status_files::write_atomic(path, &text) {
        Ok(()) => *saved = Some(version),
        Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot save generated configs"),
    }
}

/// In-process simulated routers, one per target.
struct Simulated {
    #[cfg(feature = "simulate")]
    options: vrouter_agent::simulate::SimulateOptions,
    #[cfg(feature = "simulate")]
    running: std::collections::BTreeSet<String>,
    #[cfg(feature = "simulate")]
    fleets: Vec<vrouter_agent::simulate::Fleet>,
}

impl Simulated {
    #[cfg(feature = "simulate")]
    fn new(options: &Options, addr: SocketAddr, ca: &Path) -> Option<Result<Simulated, StandaloneError>> {
        use vrouter_agent::config::{ReconnectConfig, SimConfig};
        if !options.simulate {
            return None;
        }
        let sim = vrouter_agent::simulate::SimulateOptions {
            count: 0,
            namespace: String::new(),
            prefix: String::new(),
            endpoint: format!("https://localhost:{}", addr.port()),
            ca_file: ca.to_owned(),
            server_name: Some("localhost".to_owned()),
            tokens_file: None,
            state_dir: options.state_dir.join("routers"),
            sim: SimConfig { confirm_minute_ms: Some(1000), ..SimConfig::default() },
            commit_confirm: true,
            reconnect: ReconnectConfig { min_delay_ms: 100, max_delay_ms: 2000, healthy_after_secs: 5 },
        };
        Some(Ok(Simulated { options: sim, running: Default::default(), fleets: Vec::new() }))
    }

    #[cfg(not(feature = "simulate"))]
    fn new(options: &Options, _: SocketAddr, _: &Path) -> Option<Result<Simulated, StandaloneError>> {
        options
            .simulate
            .then(|| Err(StandaloneError::Setup("this build has no simulated routers (feature `simulate`)".to_owned())))
    }

    /// Starts a simulated router for every target that has none.
    #[cfg(feature = "simulate")]
    async fn ensure(&mut self, m: &Manifests, pki: &Pki, shutdown: &CancellationToken) -> Result<(), String> {
        let mut new = Vec::new();
        let mut tokens = std::collections::HashMap::new();
        for (ns, n) in &m.namespaces {
            for t in n.targets.keys() {
                let identity = format!("{ns}/{t}");
                if self.running.contains(&identity) {
                    continue;
                }
                let id = RouterId::new(ns.clone(), t.clone()).map_err(|e| e.to_string())?;
                // Routers enrolled in an earlier run reuse their certificate; a token is only
                // spent by a router that has none.
                let token = pki.issue_token(&id, Some(Duration::from_secs(3600))).await.map_err(|e| e.to_string())?;
                tokens.insert(identity.clone(), token);
                new.push(identity);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let fleet = vrouter_agent::simulate::start_routers(&self.options, &new, &tokens, shutdown)?;
        self.running.extend(new);
        self.fleets.push(fleet);
        Ok(())
    }

    #[cfg(not(feature = "simulate"))]
    async fn ensure(&mut self, _: &Manifests, _: &Pki, _: &CancellationToken) -> Result<(), String> {
        Ok(())
    }

    async fn join(self) {
        #[cfg(feature = "simulate")]
        for f in self.fleets {
            f.join().await;
        }
    }
}
