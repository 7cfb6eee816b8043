//! The agent's configuration file (TOML). See `packaging/agent.toml.example`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vrouter_proto::RouterId;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This router's identity, `<namespace>/<name>` of its VRouterTarget.
    pub identity: String,
    /// Where the agent keeps its key, certificate and applied-revision record.
    pub state_dir: PathBuf,
    /// How to reach the operator.
    pub operator: OperatorConfig,
    /// What drives the router's configuration.
    #[serde(default)]
    pub backend: BackendConfig,
    /// Reconnect backoff.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// Apply safety.
    #[serde(default)]
    pub apply: ApplyConfig,
}

/// The operator endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// `https://host:port` of the operator's agent endpoint.
    pub endpoint: String,
    /// CA bundle (PEM) to trust for the operator's certificate. Replaced by the bundle the
    /// operator returns at enrollment.
    pub ca_file: PathBuf,
    /// TLS server name, if it differs from the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// File holding the one-time enrollment token (used only while the agent has no
    /// certificate; deleted after a successful enrollment).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The token itself, instead of a file.
    #[serde(default)]
    pub token: Option<String>,
    /// Deadline for a whole connection (TCP, TLS and HTTP/2 handshakes), seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_connect_timeout() -> u64 {
    10
}

/// Which backend, and its settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `vyos` (a real router) or `sim` (a configuration file; demos and tests).
    #[serde(default)]
    pub kind: BackendKind,
    /// Settings of the simulated router.
    #[serde(default)]
    pub sim: SimConfig,
    /// Settings of the VyOS backend.
    #[serde(default)]
    pub vyos: VyosConfig,
}

/// Settings of the VyOS backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VyosConfig {
    /// Root of the VyOS filesystem (`/`; a fake VyOS root in tests).
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Configuration session id (unique on the router; default: the agent's process id).
    #[serde(default = "default_session_id")]
    pub session_id: u32,
    /// `COMMIT_VIA` recorded in VyOS's commit archive; commits reported by the hook with another
    /// value are someone else's (drift).
    #[serde(default = "default_commit_via")]
    pub commit_via: String,
    /// File the post-commit hook appends to (tmpfs: it only needs to live as long as the boot).
    #[serde(default = "default_events_file")]
    pub events_file: PathBuf,
    /// How long to wait for another commit to release VyOS's commit lock, seconds.
    #[serde(default = "default_lock_wait")]
    pub lock_wait_secs: u64,
    /// Longest a VyOS tool may run (a big commit takes minutes; VyOS allows 20), seconds.
    #[serde(default = "default_tool_timeout")]
    pub tool_timeout_secs: u64,
    /// How often the hook's events file and the boot id are checked, milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

impl Default for VyosConfig {
    fn default() -> Self {
        VyosConfig {
            root: default_root(),
            session_id: default_session_id(),
            commit_via: default_commit_via(),
            events_file: default_events_file(),
            lock_wait_secs: default_lock_wait(),
            tool_timeout_secs: default_tool_timeout(),
            poll_ms: default_poll_ms(),
        }
    }
}

impl VyosConfig {
    /// The tool timeout.
    pub fn tool_timeout(&self) -> Duration {
        Duration::from_secs(self.tool_timeout_secs.max(1))
    }
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}
fn default_session_id() -> u32 {
    std::process::id()
}
fn default_commit_via() -> String {
    "vrouter-agent".to_owned()
}
fn default_events_file() -> PathBuf {
    PathBuf::from("/run/vrouter-agent/commit-events")
}
fn default_lock_wait() -> u64 {
    120
}
fn default_tool_timeout() -> u64 {
    1200
}
fn default_poll_ms() -> u64 {
    1000
}

/// Backend kinds.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The real VyOS configuration session.
    #[default]
    Vyos,
    /// A simulated router.
    Sim,
}

/// Knobs of the simulated router.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Time a commit takes, milliseconds.
    #[serde(default)]
    pub commit_latency_ms: u64,
    /// Commits touching any of these paths fail entirely (nothing committed).
    #[serde(default)]
    pub fail_paths: Vec<String>,
    /// Commits touching these paths commit everything else (a partial commit).
    #[serde(default)]
    pub partial_fail_paths: Vec<String>,
    /// Commits changing these paths cut the router off from the operator until reverted.
    #[serde(default)]
    pub cut_connectivity_paths: Vec<String>,
    /// Length of one commit-confirm "minute", milliseconds (default 60000).
    #[serde(default)]
    pub confirm_minute_ms: Option<u64>,
    /// The hostname to report.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Time the commit call hangs after the configuration is written and the commit recorded,
    /// before it returns, milliseconds (fault tests kill the agent in this window).
    #[serde(default)]
    pub stall_after_commit_ms: u64,
}

/// Reconnect backoff.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// First delay, milliseconds.
    #[serde(default = "default_min_delay")]
    pub min_delay_ms: u64,
    /// Largest delay, milliseconds.
    #[serde(default = "default_max_delay")]
    pub max_delay_ms: u64,
    /// A session that lasted this long resets the backoff, seconds.
    #[serde(default = "default_healthy")]
    pub healthy_after_secs: u64,
}

fn default_min_delay() -> u64 {
    1000
}
fn default_max_delay() -> u64 {
    60_000
}
fn default_healthy() -> u64 {
    30
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            min_delay_ms: default_min_delay(),
            max_delay_ms: default_max_delay(),
            healthy_after_secs: default_healthy(),
        }
    }
}

/// Apply safety settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// Use commit-confirm unless the operator's request says otherwise.
    #[serde(default = "default_true")]
    pub commit_confirm: bool,
    /// VyOS's confirm timer, minutes.
    #[serde(default = "default_confirm_minutes")]
    pub confirm_minutes: u32,
    /// How long to try to prove reachability after a commit, seconds.
    #[serde(default = "default_proof_secs")]
    pub proof_deadline_secs: u64,
    /// Hierarchical or command-list file with configuration that always wins (management
    /// interface, its route, the agent's firewall hole).
    #[serde(default)]
    pub protected_file: Option<PathBuf>,
    /// Subtrees the agent never deletes under the Replace policy unless they are in the desired
    /// configuration (in addition to the protected file's).
    #[serde(default)]
    pub keep_paths: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_confirm_minutes() -> u32 {
    2
}
fn default_proof_secs() -> u64 {
    60
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            commit_confirm: true,
            confirm_minutes: default_confirm_minutes(),
            proof_deadline_secs: default_proof_secs(),
            protected_file: None,
            keep_paths: Vec::new(),
        }
    }
}

impl ReconnectConfig {
    /// The first delay.
    pub fn min_delay(&self) -> Duration {
        Duration::from_millis(self.min_delay_ms.max(1))
    }
    /// The largest delay.
    pub fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms.max(self.min_delay_ms).max(1))
    }
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(|e| err(e.message))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { path: "<config>".to_owned(), message };
        let config: AgentConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        config.router_id().map_err(|e| err(e.to_string()))?;
        let endpoint = config.operator.endpoint.trim();
        if !endpoint.starts_with("https://") {
            return Err(err(format!("operator.endpoint {endpoint:?} must start with https://")));
        }
        Ok(config)
    }

    /// The identity, parsed.
    pub fn router_id(&self) -> Result<RouterId, vrouter_proto::IdentityError> {
        self.identity.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_defaults() {
        let c = AgentConfig::parse(
            r#"
identity = "edge/r1"
state_dir = "/tmp/x"
[operator]
endpoint = "https://op:7443"
ca_file = "/tmp/ca.pem"
"#,
        )
        .unwrap();
        assert_eq!(c.backend.kind, BackendKind::Vyos);
        assert!(c.apply.commit_confirm);
        assert_eq!(c.reconnect.min_delay(), Duration::from_secs(1));
    }

    #[test]
    fn the_packaged_example_parses() {
        let text = include_str!("../../packaging/agent.toml.example");
        let c = AgentConfig::parse(text).unwrap();
        assert_eq!(c.identity, "edge/branch-1");
        assert_eq!(c.backend.kind, BackendKind::Vyos);
    }

    #[test]
    fn errors_are_clear() {
        let e = AgentConfig::parse(
            "identity = \"bad\"\nstate_dir=\"/x\"\n[operator]\nendpoint=\"https://a\"\nca_file=\"/c\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("<namespace>/<name>"), "{e}");
        let e = AgentConfig::parse(
            "identity = \"a/b\"\nstate_dir=\"/x\"\n[operator]\nendpoint=\"http://a\"\nca_file=\"/c\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("https://"), "{e}");
        let e = AgentConfig::parse(
            "identity = \"a/b\"\nstate_dir=\"/x\"\nbogus = 1\n[operator]\nendpoint=\"https://a\"\nca_file=\"/c\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
    }
}
