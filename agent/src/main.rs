//! `vrouter-agent`: the on-router agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vrouter_agent::backend::sim::SimBackend;
use vrouter_agent::config::{BackendKind, ReconnectConfig, SimConfig};
use vrouter_agent::simulate::{self, SimulateOptions};
use vrouter_agent::{Agent, AgentConfig};

#[derive(Parser)]
#[command(name = "vrouter-agent", version, about = "The vrouter on-router agent")]
struct Cli {
    /// Log filter (e.g. info, debug, vrouter_agent=debug).
    #[arg(long, global = true, env = "VROUTER_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent: enroll on first start, then keep a session with the operator.
    Run {
        /// The agent's configuration file (TOML).
        #[arg(long, short, default_value = "/config/vrouter-agent/agent.toml")]
        config: PathBuf,
    },
    /// Run many simulated routers in this process (demos, scale tests).
    Simulate(SimulateArgs),
    /// Apply a configuration file now, without the operator (recovery, and the guest-agent
    /// fallback path): the same planning, validation, commit and reporting as a pushed revision,
    /// without commit-confirm (there is no operator to prove reachability to).
    Apply {
        /// The agent's configuration file (TOML).
        #[arg(long, short, default_value = "/config/vrouter-agent/agent.toml")]
        config: PathBuf,
        /// The desired configuration (config.boot format or set commands).
        file: PathBuf,
        /// `merge` (default) or `replace`.
        #[arg(long, default_value = "merge")]
        policy: String,
        /// Under merge: a configuration path owned entirely by the file (repeatable).
        #[arg(long)]
        scope: Vec<String>,
        /// Record the result as this revision (the operator's id, when it delivers this way).
        #[arg(long)]
        revision: Option<String>,
        /// Do not save the configuration after the commit.
        #[arg(long)]
        no_save: bool,
        /// Print the commands without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The configuration the operator last applied: Merge removals are computed from it
        /// only when the agent has no record of its own (its record is the truth on the router).
        #[arg(long, requires = "previous_revision")]
        previous: Option<PathBuf>,
        /// The revision id of `--previous`.
        #[arg(long)]
        previous_revision: Option<String>,
        /// Explicit deletions, one `delete …` line per line.
        #[arg(long)]
        deletions: Option<PathBuf>,
    },
    /// Install and start this binary as the router's agent service (the operator's guest-agent
    /// bootstrap runs this after copying the binary and writing the configuration).
    Install {
        /// The agent's configuration file (TOML).
        #[arg(long, short, default_value = "/config/vrouter-agent/agent.toml")]
        config: PathBuf,
        /// Prefix of the system paths (tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Print the router's running configuration and its digest.
    Show {
        /// The agent's configuration file (TOML).
        #[arg(long, short, default_value = "/config/vrouter-agent/agent.toml")]
        config: PathBuf,
    },
}

/// A local apply has no operator to reach: the proof is trivially true, and commit-confirm is off.
struct Local;

#[async_trait::async_trait]
impl vrouter_agent::apply::Reachability for Local {
    async fn prove(&self, _: std::time::Duration) -> bool {
        true
    }
}

fn make_backend(config: &AgentConfig) -> Result<Arc<dyn vrouter_agent::backend::Backend>> {
    Ok(match config.backend.kind {
        BackendKind::Sim => Arc::new(SimBackend::open(&config.state_dir, &config.backend.sim)?),
        BackendKind::Vyos => {
            let backend = vrouter_agent::backend::vyos::VyosBackend::open(config.backend.vyos.clone())
                .map_err(|e| anyhow::anyhow!("VyOS backend: {e}"))?;
            backend.watch();
            backend
        }
    })
}

#[derive(Args)]
struct SimulateArgs {
    /// Number of simulated routers.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// The operator's agent endpoint, https://host:port.
    #[arg(long)]
    operator: String,
    /// CA bundle (PEM) to trust for the operator before enrollment.
    #[arg(long)]
    ca: PathBuf,
    /// TLS server name, if it differs from the endpoint's host.
    #[arg(long)]
    server_name: Option<String>,
    /// Enrollment tokens, one "<namespace>/<name> <token>" per line (`vrouter-operator tokens`).
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Namespace of the simulated routers.
    #[arg(long, default_value = "sim")]
    namespace: String,
    /// Router names are <prefix><index>.
    #[arg(long, default_value = "router-")]
    prefix: String,
    /// Directory for the routers' keys, certificates and simulated configurations (one
    /// `<namespace>_<name>` directory per router).
    #[arg(long, default_value = "./sim-state")]
    state_dir: PathBuf,
    /// Simulated commit latency, milliseconds.
    #[arg(long, default_value_t = 0)]
    commit_latency_ms: u64,
    /// Disable commit-confirm on the simulated routers.
    #[arg(long)]
    no_commit_confirm: bool,
}

fn init_logging(filter: &str, json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to a file or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        t.cancel();
    });
    token
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Run { config } => {
            let config = AgentConfig::load(&config)?;
            let backend = make_backend(&config)?;
            let agent = Agent::new(config, backend)?;
            agent.run(shutdown_on_signal()).await?;
        }
        Cmd::Install { config, root } => {
            let binary = std::env::current_exe().context("cannot find this program's path")?;
            let config = std::path::absolute(&config).with_context(|| format!("{}", config.display()))?;
            let installed =
                vrouter_agent::install::install(&vrouter_agent::install::InstallOptions { root, binary, config })?;
            match installed {
                vrouter_agent::install::Installed::Systemd { written } => println!(
                    "started {} ({} unit)",
                    vrouter_agent::install::UNIT,
                    if written { "new" } else { "packaged" }
                ),
                vrouter_agent::install::Installed::Detached { pid, replaced } => match replaced {
                    Some(old) => println!("started pid {pid} (replaced pid {old})"),
                    None => println!("started pid {pid}"),
                },
            }
        }
        Cmd::Apply {
            config,
            file,
            policy,
            scope,
            revision,
            no_save,
            dry_run,
            json,
            previous,
            previous_revision,
            deletions,
        } => {
            use vrouter_proto::v1::{ApplyOutcome, ApplyRequest, ConfigPolicy, Revision};
            let config = AgentConfig::load(&config)?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let desired = vyos_config::Config::parse(&text).with_context(|| format!("{}", file.display()))?;
            let policy = match policy.as_str() {
                "merge" => ConfigPolicy::Merge,
                "replace" => ConfigPolicy::Replace,
                other => bail!("--policy must be merge or replace, not {other:?}"),
            };
            let digest = vyos_config::digest(&desired.tree).to_string();
            let id = revision.unwrap_or_else(|| format!("local-{}", &digest[digest.len().saturating_sub(12)..]));
            let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
            let previous_config = previous.as_ref().map(read).transpose()?.unwrap_or_default();
            let deletions: Vec<String> = match &deletions {
                Some(p) => read(p)?.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(),
                None => Vec::new(),
            };
            let backend = make_backend(&config)?;
            let agent = Agent::new(config, backend)?;
            let request = ApplyRequest {
                previous_config,
                previous_revision: previous_revision.map(|id| Revision { id, digest: String::new() }),
                deletions,
                request_id: "local".to_owned(),
                revision: Some(Revision { id, digest }),
                desired_config: text,
                policy: policy as i32,
                managed_scopes: scope,
                save: !no_save,
                dry_run,
                force: true,
                ..ApplyRequest::default()
            };
            let result = agent.applier().apply(request, &|_| {}, &Local).await;
            let outcome = ApplyOutcome::try_from(result.outcome).unwrap_or(ApplyOutcome::Unspecified);
            if json {
                let v = serde_json::json!({
                    "outcome": outcome.as_str_name(),
                    "revision": result.revision.as_ref().map(|r| r.id.clone()),
                    "commands": result.commands,
                    "output": result.output,
                    "error": result.error,
                    "failedPaths": result.failed_paths,
                    "saved": result.saved,
                    "runningDigest": result.running_digest,
                });
                println!("{v}");
            } else {
                for c in &result.commands {
                    println!("{c}");
                }
                eprintln!(
                    "{}{}",
                    outcome.as_str_name(),
                    if result.error.is_empty() { String::new() } else { format!(": {}", result.error) }
                );
            }
            if !matches!(outcome, ApplyOutcome::Applied | ApplyOutcome::NoChange) {
                return Err(anyhow::anyhow!("the configuration was not applied ({})", outcome.as_str_name()));
            }
        }
        Cmd::Show { config } => {
            let config = AgentConfig::load(&config)?;
            let backend = make_backend(&config)?;
            let running = backend.running().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{}", vyos_config::render_config(&running, vyos_config::RenderOptions::default()));
            println!("// digest: {}", vyos_config::digest(&running));
        }
        Cmd::Simulate(a) => {
            if a.count == 0 {
                bail!("--count must be at least 1");
            }
            raise_fd_limit();
            let options = SimulateOptions {
                count: a.count,
                namespace: a.namespace,
                prefix: a.prefix,
                endpoint: a.operator,
                ca_file: a.ca,
                server_name: a.server_name,
                tokens_file: a.tokens,
                state_dir: a.state_dir,
                sim: SimConfig { commit_latency_ms: a.commit_latency_ms, ..SimConfig::default() },
                commit_confirm: !a.no_commit_confirm,
                reconnect: ReconnectConfig::default(),
            };
            simulate::run(options, shutdown_on_signal()).await.map_err(anyhow::Error::msg).context("simulate")?;
        }
    }
    Ok(())
}

/// Many sessions need many file descriptors: raise the soft limit to the hard limit.
fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vrouter-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vrouter-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
