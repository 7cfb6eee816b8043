//! Many simulated routers in one process, each with its own identity, key, state and simulated
//! configuration: for demos and scale tests (`vrouter-agent simulate --count N`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vrouter_proto::RouterId;

use crate::agent::{Agent, Observer};
use crate::backend::sim::SimBackend;
use crate::config::{AgentConfig, ApplyConfig, BackendConfig, BackendKind, OperatorConfig, ReconnectConfig, SimConfig};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Number of routers.
    pub count: usize,
    /// Their namespace.
    pub namespace: String,
    /// Router names are `<prefix><index>`.
    pub prefix: String,
    /// The operator endpoint.
    pub endpoint: String,
    /// CA bundle to trust before enrollment.
    pub ca_file: PathBuf,
    /// TLS server name override.
    pub server_name: Option<String>,
    /// Lines `<namespace>/<name> <token>`: enrollment tokens of routers not enrolled yet.
    pub tokens_file: Option<PathBuf>,
    /// Each router keeps its state in `<state_dir>/<namespace>_<name>` ([`router_state_dir`]).
    pub state_dir: PathBuf,
    /// Simulated router knobs, the same for all.
    pub sim: SimConfig,
    /// Commit-confirm on the simulated routers.
    pub commit_confirm: bool,
    /// Reconnect backoff.
    pub reconnect: ReconnectConfig,
}

/// Reads `<identity> <token>` lines (blank lines and `#` comments ignored).
pub fn read_tokens(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(id), Some(token), None) => {
                out.insert(id.to_owned(), token.to_owned());
            }
            _ => return Err(format!("{}:{}: expected \"<namespace>/<name> <token>\"", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// A running fleet of simulated routers.
pub struct Fleet {
    /// Each router's identity and observer.
    pub routers: Vec<(String, Arc<Observer>)>,
    /// Each router's simulated backend controls, same order.
    pub controls: Vec<crate::backend::sim::SimControl>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Routers with an open session.
    pub fn connected(&self) -> usize {
        self.routers.iter().filter(|(_, o)| o.connected.load(Ordering::SeqCst)).count()
    }

    /// Routers whose last applied revision is `revision`.
    pub fn applied(&self, revision: &str) -> usize {
        self.routers.iter().filter(|(_, o)| o.applied_revision().as_deref() == Some(revision)).count()
    }

    /// Waits for every router task to finish (after shutdown).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A simulated router's state directory: `<state_dir>/<namespace>_<name>`
/// ([`RouterId::file_name`]: one directory per identity; `<namespace>-<name>` gave `a-b/c` and
/// `a/b-c` the same one). Directories of the older layout are not migrated: such a router enrolls
/// again with a new token.
pub fn router_state_dir(state_dir: &Path, id: &RouterId) -> PathBuf {
    state_dir.join(id.file_name())
}

/// Starts the fleet; routers stop when `shutdown` is cancelled.
pub fn start(options: &SimulateOptions, shutdown: &CancellationToken) -> Result<Fleet, String> {
    let tokens = match &options.tokens_file {
        Some(p) => read_tokens(p)?,
        None => HashMap::new(),
    };
    let identities: Vec<String> =
        (0..options.count).map(|i| format!("{}/{}{}", options.namespace, options.prefix, i)).collect();
    start_routers(options, &identities, &tokens, shutdown)
}

/// Starts one simulated router per identity (`<namespace>/<name>`; `options.count`,
/// `namespace` and `prefix` are not used), with enrollment tokens by identity.
pub fn start_routers(
    options: &SimulateOptions,
    identities: &[String],
    tokens: &HashMap<String, String>,
    shutdown: &CancellationToken,
) -> Result<Fleet, String> {
    let mut routers = Vec::with_capacity(identities.len());
    let mut controls = Vec::with_capacity(identities.len());
    let mut tasks = Vec::with_capacity(identities.len());
    for identity in identities {
        let identity = identity.clone();
        let id: RouterId = identity.parse().map_err(|e: vrouter_proto::IdentityError| e.to_string())?;
        let name = id.name();
        let state_dir = router_state_dir(&options.state_dir, &id);
        let config = AgentConfig {
            identity: identity.clone(),
            state_dir: state_dir.clone(),
            operator: OperatorConfig {
                endpoint: options.endpoint.clone(),
                ca_file: options.ca_file.clone(),
                server_name: options.server_name.clone(),
                token_file: None,
                token: tokens.get(&identity).cloned(),
                connect_timeout_secs: 10,
            },
            backend: BackendConfig {
                kind: BackendKind::Sim,
                sim: SimConfig { hostname: Some(name.to_owned()), ..options.sim.clone() },
                ..BackendConfig::default()
            },
            reconnect: options.reconnect.clone(),
            apply: ApplyConfig { commit_confirm: options.commit_confirm, ..ApplyConfig::default() },
        };
        config.router_id().map_err(|e| e.to_string())?;
        let backend = SimBackend::open(&state_dir, &config.backend.sim).map_err(|e| e.to_string())?;
        controls.push(backend.control());
        let agent = Agent::new(config, Arc::new(backend)).map_err(|e| e.to_string())?;
        routers.push((identity.clone(), agent.observer()));
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = agent.run(stop).await {
                tracing::error!(router = %identity, error = %e, "simulated router stopped");
            }
        }));
    }
    Ok(Fleet { routers, controls, tasks })
}

/// Runs a fleet with a live progress display until `shutdown`.
pub async fn run(options: SimulateOptions, shutdown: CancellationToken) -> Result<(), String> {
    let fleet = start(&options, &shutdown)?;
    let bar = indicatif::ProgressBar::new(options.count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} routers connected  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let connected = fleet.connected();
                let applies: u64 = fleet.routers.iter().map(|(_, o)| o.applies.load(Ordering::SeqCst)).sum();
                let commits: u64 = fleet.controls.iter().map(|c| c.commits()).sum();
                bar.set_position(connected as u64);
                bar.set_message(format!("{applies} applies, {commits} commits"));
            }
        }
    }
    bar.finish_with_message("stopping");
    fleet.join().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_identity_gets_its_own_state_directory() {
        let root = Path::new("/state");
        let dir = |s: &str| router_state_dir(root, &s.parse().unwrap());
        // `<namespace>-<name>` mapped both to `/state/a-b-c`.
        assert_ne!(dir("a-b/c"), dir("a/b-c"));
        assert_eq!(dir("a-b/c"), Path::new("/state/a-b_c"));
        assert_eq!(dir("default/r-1"), Path::new("/state/default_r-1"));
    }
}
