//! The router guest as the operator's guest-agent paths see it: where the agent lives, how to
//! probe it, and the bootstrap that installs and enrolls an agent in a VM that has none.
//!
//! Every step is idempotent: the binary is copied under a temporary name and renamed, files are
//! rewritten whole, and `vrouter-agent install` restarts the service. Programs run in the guest
//! with fixed argv (never through a shell); the data (configuration, token) travels as file
//! contents only, in a directory only root can read (qemu-ga creates files world-readable).

use std::time::Duration;

use super::{ExecOutput, ExecRequest, QgaClient, QgaError, WriteMode};

/// Paths in a router guest, under a root prefix (`/` on routers; a directory in tests, where
/// the "guest" is a qemu-ga on the test machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLayout {
    root: String,
}

impl Default for GuestLayout {
    fn default() -> Self {
        Self { root: "/".to_owned() }
    }
}

/// Where the agent keeps its configuration and state: survives VyOS image upgrades.
pub const AGENT_DIR: &str = "/config/vrouter-agent";

impl GuestLayout {
    /// A layout under `root`.
    pub fn new(root: impl Into<String>) -> Self {
        let root = root.into();
        Self { root: if root.is_empty() { "/".to_owned() } else { root } }
    }

    /// The root prefix.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `path` (absolute in the guest's view) under the root prefix.
    pub fn at(&self, path: &str) -> String {
        format!("{}/{}", self.root.trim_end_matches('/'), path.trim_start_matches('/'))
    }

    /// The agent's directory (mode 0700: it holds the token, keys and desired configs).
    pub fn agent_dir(&self) -> String {
        self.at(AGENT_DIR)
    }

    /// The binary the `.deb` installs.
    pub fn packaged_binary(&self) -> String {
        self.at("/usr/bin/vrouter-agent")
    }

    /// The binary a bootstrap copies in (no `.deb`), kept under /config so it survives upgrades.
    pub fn copied_binary(&self) -> String {
        self.at(&format!("{AGENT_DIR}/bin/vrouter-agent"))
    }

    /// The agent's configuration.
    pub fn config(&self) -> String {
        self.at(&format!("{AGENT_DIR}/agent.toml"))
    }

    /// The operator's CA bundle as the agent trusts it before enrollment.
    pub fn ca_file(&self) -> String {
        self.at(&format!("{AGENT_DIR}/operator-ca.pem"))
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> String {
        self.at(&format!("{AGENT_DIR}/state"))
    }

    /// Staging directory of guest-agent deliveries (desired configs carry secrets).
    pub fn qga_dir(&self) -> String {
        self.at(&format!("{AGENT_DIR}/qga"))
    }

    /// The kernel's boot id.
    pub fn boot_id(&self) -> String {
        self.at("/proc/sys/kernel/random/boot_id")
    }
}

/// What the operator needs to bootstrap agents (one setting for all routers).
#[derive(Debug, Clone, Default)]
pub struct BootstrapSettings {
    /// The agent binary the operator carries (copied into guests that have none). `None`:
    /// bootstrap only configures agents that are already installed (baked into the image).
    pub agent_binary: Option<std::path::PathBuf>,
    /// The agent endpoint as guests reach it (`https://host:port`).
    pub endpoint: String,
    /// TLS server name, when it differs from the endpoint's host.
    pub server_name: Option<String>,
    /// The operator's CA (PEM), trusted by the agent before enrollment.
    pub ca_pem: String,
    /// TOML merged into every written `agent.toml` (e.g. a management VRF or, in labs and
    /// tests, the VyOS backend's root prefix).
    pub extra_config: String,
    /// The guest layout.
    pub layout: GuestLayout,
}

/// Renders `agent.toml` for a router: identity, endpoint, CA, a single-use token, the VyOS
/// backend, with `extra` (TOML) merged over it table by table.
pub fn agent_config(identity: &str, settings: &BootstrapSettings, token: &str) -> Result<String, toml::de::Error> {
    let layout = &settings.layout;
    let mut operator = toml::Table::new();
    operator.insert("endpoint".into(), settings.endpoint.clone().into());
    operator.insert("ca_file".into(), layout.ca_file().into());
    if let Some(name) = &settings.server_name {
        operator.insert("server_name".into(), name.clone().into());
    }
    operator.insert("token".into(), token.into());
    let mut backend = toml::Table::new();
    backend.insert("kind".into(), "vyos".into());
    let mut doc = toml::Table::new();
    doc.insert("identity".into(), identity.into());
    doc.insert("state_dir".into(), layout.state_dir().into());
    doc.insert("operator".into(), operator.into());
    doc.insert("backend".into(), backend.into());
    let extra: toml::Table = settings.extra_config.parse()?;
    merge(&mut doc, extra);
    Ok(toml::to_string(&doc).unwrap_or_default())
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// What a look into the guest found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestProbe {
    /// The guest kernel's boot id (changes on every boot, soft reboots included).
    pub boot_id: Option<String>,
    /// The agent binary that runs in the guest, if any (packaged first).
    pub agent_binary: Option<String>,
    /// Its `--version` output.
    pub agent_version: Option<String>,
    /// Whether `agent.toml` exists.
    pub configured: bool,
}

/// Deadline of the small helper programs run in the guest.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `program args` in the guest; a non-zero exit is an error with the program's output.
pub async fn run(client: &QgaClient, program: &str, args: &[&str], deadline: Duration) -> Result<ExecOutput, QgaError> {
    let out = client.exec(&ExecRequest::new(program, args.iter().copied()).deadline(deadline)).await?;
    if !out.success() {
        let text = format!("{}{}", out.stdout_lossy(), out.stderr_lossy());
        return Err(QgaError::Transport {
            target: client.transport().target(),
            message: format!("{program} {}: exit {}: {}", args.join(" "), out.exit_status(), text.trim()),
        });
    }
    Ok(out)
}

/// Looks into the guest: boot id, agent binary and version, configuration.
pub async fn probe(client: &QgaClient, layout: &GuestLayout) -> Result<GuestProbe, QgaError> {
    client.ping().await?;
    let boot_id = client
        .read_file_limited(&layout.boot_id(), 128)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|s| !s.is_empty());
    let mut probe = GuestProbe { boot_id, ..GuestProbe::default() };
    for binary in [layout.packaged_binary(), layout.copied_binary()] {
        match client.exec(&ExecRequest::new(binary.as_str(), ["--version"]).deadline(STEP_DEADLINE)).await {
            Ok(out) if out.success() => {
                probe.agent_version = Some(out.stdout_lossy().trim().to_owned());
                probe.agent_binary = Some(binary);
                break;
            }
            // Missing or not runnable: guest-exec fails, or the program exits non-zero.
            Ok(_) | Err(QgaError::Agent { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    probe.configured = client.read_file_limited(&layout.config(), 1024 * 1024).await.is_ok();
    Ok(probe)
}

/// One bootstrap step, for status and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step(pub String);

/// Makes the guest run a configured agent: copies the binary when the guest has none,
/// writes the CA and `agent.toml` (with `token`), and starts the service. Returns the steps
/// taken.
pub async fn bootstrap(
    client: &QgaClient,
    settings: &BootstrapSettings,
    probe: &GuestProbe,
    identity: &str,
    token: &str,
) -> Result<Vec<Step>, BootstrapError> {
    let layout = &settings.layout;
    let mut steps = Vec::new();
    let dir = layout.agent_dir();
    run(client, "/bin/mkdir", &["-p", "-m", "0700", &dir], STEP_DEADLINE).await.map_err(|e| step("mkdir", e))?;
    run(client, "/bin/chmod", &["0700", &dir], STEP_DEADLINE).await.map_err(|e| step("chmod", e))?;
    let binary = match &probe.agent_binary {
        Some(b) => b.clone(),
        None => {
            let Some(local) = &settings.agent_binary else {
                return Err(BootstrapError::NoBinary);
            };
            let data = tokio::fs::read(local)
                .await
                .map_err(|e| BootstrapError::Local(format!("cannot read {}: {e}", local.display())))?;
            let target = layout.copied_binary();
            let staging = format!("{target}.new");
            let bin_dir = format!("{dir}/bin");
            run(client, "/bin/mkdir", &["-p", &bin_dir], STEP_DEADLINE).await.map_err(|e| step("mkdir", e))?;
            client.write_file(&staging, &data, WriteMode::Truncate).await.map_err(|e| step("copy the agent", e))?;
            run(client, "/bin/chmod", &["0755", &staging], STEP_DEADLINE).await.map_err(|e| step("chmod", e))?;
            run(client, "/bin/mv", &["-f", &staging, &target], STEP_DEADLINE).await.map_err(|e| step("mv", e))?;
            steps.push(Step(format!("copied the agent binary ({} bytes) to {target}", data.len())));
            target
        }
    };
    let config = agent_config(identity, settings, token)
        .map_err(|e| BootstrapError::Local(format!("extra agent configuration: {e}")))?;
    for (path, data) in [(layout.ca_file(), settings.ca_pem.as_bytes()), (layout.config(), config.as_bytes())] {
        client.write_file(&path, data, WriteMode::Truncate).await.map_err(|e| step("write", e))?;
        run(client, "/bin/chmod", &["0600", &path], STEP_DEADLINE).await.map_err(|e| step("chmod", e))?;
    }
    steps.push(Step(format!("wrote {} with a new enrollment token", layout.config())));
    let out = run(client, &binary, &["install", "--config", &layout.config(), "--root", layout.root()], STEP_DEADLINE)
        .await
        .map_err(|e| step("vrouter-agent install", e))?;
    steps.push(Step(format!("vrouter-agent install: {}", out.stdout_lossy().trim())));
    Ok(steps)
}

fn step(what: &str, source: QgaError) -> BootstrapError {
    BootstrapError::Step { step: what.to_owned(), source }
}

/// Why a bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The guest has no agent and the operator carries none.
    #[error("the guest has no vrouter agent and the operator has no agent binary to copy in (set --agent-binary)")]
    NoBinary,
    /// Something on the operator's side.
    #[error("{0}")]
    Local(String),
    /// A step in the guest failed.
    #[error("{step}: {source}")]
    Step {
        /// The step.
        step: String,
        /// The guest agent's error.
        #[source]
        source: QgaError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_prefixes_every_path() {
        let l = GuestLayout::new("/tmp/g/");
        assert_eq!(l.config(), "/tmp/g/config/vrouter-agent/agent.toml");
        assert_eq!(l.packaged_binary(), "/tmp/g/usr/bin/vrouter-agent");
        let d = GuestLayout::default();
        assert_eq!(d.config(), "/config/vrouter-agent/agent.toml");
        assert_eq!(d.boot_id(), "/proc/sys/kernel/random/boot_id");
        assert_eq!(GuestLayout::new("").root(), "/");
    }

    #[test]
    fn agent_config_is_valid_toml_with_extra_tables_merged() {
        let settings = BootstrapSettings {
            endpoint: "https://10.0.2.100:7443".into(),
            server_name: Some("vrouter-operator".into()),
            extra_config: "[backend.vyos]\nroot = \"/vyos\"\n[operator]\nconnect_timeout_secs = 5\n".into(),
            ..BootstrapSettings::default()
        };
        let text = agent_config("edge/r1", &settings, "tok\"en").unwrap();
        let v: toml::Table = text.parse().unwrap();
        assert_eq!(v["identity"].as_str(), Some("edge/r1"));
        assert_eq!(v["operator"]["token"].as_str(), Some("tok\"en"));
        assert_eq!(v["operator"]["endpoint"].as_str(), Some("https://10.0.2.100:7443"));
        assert_eq!(v["operator"]["connect_timeout_secs"].as_integer(), Some(5));
        assert_eq!(v["backend"]["kind"].as_str(), Some("vyos"));
        assert_eq!(v["backend"]["vyos"]["root"].as_str(), Some("/vyos"));
        assert_eq!(v["operator"]["ca_file"].as_str(), Some("/config/vrouter-agent/operator-ca.pem"));
    }

    #[test]
    fn bad_extra_config_is_an_error() {
        let settings = BootstrapSettings { extra_config: "[backend".into(), ..BootstrapSettings::default() };
        assert!(agent_config("a/b", &settings, "t").is_err());
    }
}
