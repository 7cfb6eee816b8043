//! Backends: what actually changes the router's configuration.
//!
//! The agent core (planning, idempotency, commit-confirm with a reachability proof, recording)
//! is the same for every backend; a backend provides the primitives a VyOS configuration
//! session offers: read the running config, stage and commit commands (optionally starting the
//! commit-confirm timer first), confirm, save, and report status.

pub mod sim;
pub mod vyos;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use vrouter_proto::v1::{FailureKind, OsInfo, StatusReport};
use vyos_config::{Command, Tree};

/// A backend failure that is not a commit outcome (cannot read the config, not ready, ...).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// The failure's kind, as reported to the operator.
    pub kind: FailureKind,
    /// What went wrong, with the router's own text where there is one.
    pub message: String,
}

impl BackendError {
    /// An error of a kind.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        BackendError { kind, message: message.into() }
    }
}

/// How to commit.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Start the commit-confirm timer (minutes) before committing.
    pub confirm_minutes: Option<u32>,
    /// Recorded with the commit (VyOS's commit archive comment).
    pub comment: String,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitReport {
    /// Everything was committed.
    Committed {
        /// The router's output (warnings).
        output: String,
    },
    /// The staged changes left the configuration as it was; nothing committed.
    NoChange,
    /// Some subtrees were committed, others failed and stay pending.
    Partial {
        /// The router's output.
        output: String,
        /// The paths that failed.
        failed_paths: Vec<String>,
    },
    /// Nothing was committed.
    Failed {
        /// Why, as reported to the operator.
        kind: FailureKind,
        /// The router's output.
        output: String,
    },
}

/// Something that happened on the router on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// Someone other than this agent committed (a human, another tool): the agent's own commits
    /// are not reported, since a drift check during its own apply would compare against the
    /// revision being replaced.
    Committed {
        /// Who committed, as far as the router knows.
        source: String,
    },
    /// The commit-confirm timer expired and the router reverted.
    Reverted {
        /// How (reload, reboot).
        how: String,
    },
}

/// The primitives of a router's configuration system.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `vyos` or `sim`.
    fn kind(&self) -> &'static str;

    /// Capabilities beyond the basic ones (e.g. commit-confirm).
    fn capabilities(&self) -> Vec<String>;

    /// The platform.
    async fn os_info(&self) -> OsInfo;

    /// An id that changes on every boot.
    async fn boot_id(&self) -> String;

    /// Fails with `NOT_READY` until the router has loaded its boot configuration.
    async fn ready(&self) -> Result<(), BackendError>;

    /// The running (active) configuration.
    async fn running(&self) -> Result<Tree, BackendError>;

    /// Stages the commands in a configuration session and commits them.
    async fn commit(&self, commands: &[Command], options: &CommitOptions) -> Result<CommitReport, BackendError>;

    /// Stops a pending commit-confirm timer (keeps the committed configuration).
    async fn confirm(&self) -> Result<(), BackendError>;

    /// Saves the running configuration as the boot configuration.
    async fn save(&self) -> Result<(), BackendError>;

    /// Whether the running configuration equals the saved one.
    async fn saved(&self) -> Result<bool, BackendError>;

    /// Interfaces, routing state, uptime.
    async fn status(&self) -> Result<StatusReport, BackendError>;

    /// Events from the router (commits by anyone, reverts).
    fn events(&self) -> broadcast::Receiver<BackendEvent>;

    /// Whether the router's network path to the operator is up. Real routers report `true`;
    /// the simulator turns it off when a commit "cuts connectivity".
    fn network(&self) -> watch::Receiver<bool>;
}

/// Whether any command touches a path at or below one of `prefixes` (words separated by spaces).
pub fn touches(commands: &[Command], prefixes: &[String]) -> Vec<String> {
    let mut hits = Vec::new();
    for prefix in prefixes {
        let words: Vec<&str> = prefix.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if commands.iter().any(|c| c.path.len() >= words.len() && c.path.iter().zip(&words).all(|(a, b)| a == b)) {
            hits.push(prefix.clone());
        }
    }
    hits
}

/// Interfaces as the configuration declares them (name, addresses, admin state, MTU).
/// `oper_up` is the operational state to report for interfaces that are not disabled (the
/// simulator knows it is "up"; the VyOS backend reports "unknown" until it reads the kernel).
pub fn configured_interfaces(config: &Tree, oper_up: &str) -> Vec<vrouter_proto::v1::InterfaceStatus> {
    let mut out = Vec::new();
    let Some(ifaces) = config.get(&["interfaces"]) else { return out };
    for kind in ifaces.children() {
        for iface in kind.children() {
            let disabled = iface.child("disable").is_some();
            out.push(vrouter_proto::v1::InterfaceStatus {
                name: iface.name().to_owned(),
                addresses: iface.child("address").map(|a| a.values().to_vec()).unwrap_or_default(),
                oper_state: if disabled { "down" } else { oper_up }.to_owned(),
                admin_up: !disabled,
                mtu: iface.child("mtu").and_then(|m| m.values().first()).and_then(|v| v.parse().ok()).unwrap_or(1500),
                ..Default::default()
            });
        }
    }
    out
}
