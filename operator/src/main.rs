//! `vrouter-operator`: the operator binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vrouter_operator::hub::{AgentServer, Hub, HubConfig, ServerConfig};
use vrouter_operator::metrics::Metrics;
use vrouter_operator::pki::{DirStore, Pki, PkiConfig};
use vrouter_proto::RouterId;

#[derive(Parser)]
#[command(name = "vrouter-operator", version, about = "The vrouter operator")]
struct Cli {
    /// Log filter (e.g. info, debug, vrouter_operator=debug).
    #[arg(long, global = true, env = "VROUTER_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

/// Guest-agent options of standalone mode.
#[derive(Args)]
struct QgaArgs {
    /// Enable guest-agent bootstrap and fallback for targets with a libvirt provider.
    #[arg(long)]
    qga: bool,
    /// The agent binary to copy into guests that have none.
    #[arg(long, requires = "qga")]
    agent_binary: Option<PathBuf>,
    /// The agent endpoint as guests reach it (default https://<listen address>).
    #[arg(long, requires = "qga")]
    guest_endpoint: Option<String>,
    /// The TLS server name guests expect (default localhost).
    #[arg(long, requires = "qga")]
    guest_server_name: Option<String>,
    /// A TOML file merged into every agent.toml written into a guest.
    #[arg(long, requires = "qga")]
    guest_agent_config: Option<PathBuf>,
    /// Prefix of the guest's paths (labs and tests).
    #[arg(long, default_value = "/")]
    guest_root: String,
    /// How long an agent may stay unreachable before the guest agent delivers.
    #[arg(long, default_value = "2m", value_parser = parse_go_duration)]
    fallback_after: Duration,
    /// How long a bootstrapped agent gets to connect before the bootstrap is repeated.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    session_wait: Duration,
    /// How often routers without an agent session are looked at.
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    guest_poll: Duration,
}

impl QgaArgs {
    fn options(self) -> Result<Option<vrouter_operator::standalone::QgaOptions>> {
        if !self.qga {
            return Ok(None);
        }
        let extra_agent_config = match &self.guest_agent_config {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            None => String::new(),
        };
        Ok(Some(vrouter_operator::standalone::QgaOptions {
            agent_binary: self.agent_binary,
            endpoint: self.guest_endpoint,
            server_name: self.guest_server_name,
            extra_agent_config,
            guest_root: self.guest_root,
            fallback_after: self.fallback_after,
            session_wait: self.session_wait,
            poll: self.guest_poll,
        }))
    }
}

#[derive(Args, Clone)]
struct PkiArgs {
    /// Directory for the operator's state (the PKI lives in <state-dir>/pki).
    #[arg(long, default_value = "./.vrouter")]
    state_dir: PathBuf,
    /// DNS names agents use to reach the operator (server certificate SANs).
    #[arg(long = "server-name", default_values_t = ["localhost".to_owned()])]
    server_names: Vec<String>,
    /// IP addresses agents use to reach the operator (server certificate SANs).
    #[arg(long = "server-ip", default_values_t = [IpAddr::from([127, 0, 0, 1])])]
    server_ips: Vec<IpAddr>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve agents only (the agent hub), without resources: for agent tests and simulations.
    Serve {
        #[command(flatten)]
        pki: PkiArgs,
        /// Agent endpoint address.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: SocketAddr,
        /// Metrics and health endpoint address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_listen: SocketAddr,
    },
    /// Issue a one-time enrollment token for a router.
    Token {
        #[command(flatten)]
        pki: PkiArgs,
        /// The router, <namespace>/<name>.
        #[arg(long)]
        identity: String,
        /// Validity, seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
    },
    /// Issue tokens for many routers, one "<namespace>/<name> <token>" line each
    /// (for `vrouter-agent simulate --tokens`).
    Tokens {
        #[command(flatten)]
        pki: PkiArgs,
        /// Namespace of the routers.
        #[arg(long, default_value = "sim")]
        namespace: String,
        /// Router names are <prefix><index>.
        #[arg(long, default_value = "router-")]
        prefix: String,
        /// Number of routers.
        #[arg(long)]
        count: usize,
        /// Validity, seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
    },
    /// Run the operator in a Kubernetes cluster (in-cluster config or KUBECONFIG): the binding
    /// and target controllers, the delivery engine and the agent endpoint.
    Run {
        #[command(flatten)]
        pki: PkiArgs,
        /// Agent endpoint address.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: SocketAddr,
        /// Metrics and health endpoint address.
        #[arg(long, default_value = "0.0.0.0:9464")]
        metrics_listen: SocketAddr,
        /// Reconciles run at once, per controller.
        #[arg(long, default_value_t = 8)]
        concurrency: u16,
    },
    /// Run the operator on a directory of manifests instead of Kubernetes (GitOps checkout, edge
    /// sites, demos). With --simulate, every target is an in-process simulated router.
    Standalone {
        /// Directory of YAML manifests (read recursively; re-read on change).
        dir: PathBuf,
        /// State directory (PKI, applied records, status.yaml); default <DIR>/.vrouter.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Agent endpoint address.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Run a simulated router for every VRouterTarget.
        #[arg(long)]
        simulate: bool,
        /// Exit with status 0 once every router runs its desired revision.
        #[arg(long)]
        until_synced: bool,
        /// Give up after this long, e.g. `90s` or `5m` (non-zero exit with --until-synced).
        #[arg(long, value_parser = parse_go_duration)]
        timeout: Option<Duration>,
        /// How often the directory is checked for changes, milliseconds.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Seconds before a failed apply is retried (doubling up to 10x).
        #[arg(long, default_value_t = 30)]
        retry_secs: u64,
        #[command(flatten)]
        qga: QgaArgs,
    },
    /// Print, per router, the commands that would run against its last known running config
    /// (the simulated router's, or the last revision delivered to it), without delivering.
    Diff {
        /// Directory of YAML manifests.
        dir: PathBuf,
        /// State directory; default <DIR>/.vrouter.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Render a directory of manifests (generated configs and each router's desired config)
    /// without delivering anything.
    Render {
        /// Directory of YAML manifests.
        dir: PathBuf,
    },
    /// Print the CustomResourceDefinitions (YAML).
    Crds,
    /// Print the operator's CA certificate (agents' `ca_file`).
    Ca {
        #[command(flatten)]
        pki: PkiArgs,
    },
    /// Talk to a QEMU guest agent directly, for diagnosing VMs on KVM hosts.
    Qga(vrouter_operator::qga::cli::QgaArgs),
}

/// A Go duration (`90s`, `1m30s`) or a number of seconds.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => vrouter_operator::crd::parse_duration(text),
    }
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

async fn open_pki(args: &PkiArgs) -> Result<Arc<Pki>> {
    let store = DirStore::new(args.state_dir.join("pki"))?;
    let config = PkiConfig {
        server_dns_names: args.server_names.clone(),
        server_ips: args.server_ips.clone(),
        ..PkiConfig::default()
    };
    Ok(Arc::new(Pki::open(Arc::new(store), config).await?))
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        t.cancel();
    });
    token
}

/// Many sessions need many file descriptors: raise the soft limit to the hard limit.
fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Starts the metrics/health endpoint and the agent endpoint (ready once both listen).
async fn serve_agents(
    pki: Arc<Pki>,
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(Hub, ServerTask)> {
    let metrics = Metrics::new();
    let hub = Hub::new(HubConfig::default(), pki, metrics.clone());
    let ready = vrouter_operator::http::Readiness::default();
    let s = shutdown.clone();
    let http =
        vrouter_operator::http::spawn(metrics_listen, metrics, ready.clone(), async move { s.cancelled().await })
            .await?;
    let s = shutdown.clone();
    let (addr, server) =
        AgentServer::spawn(hub.clone(), ServerConfig::default(), listen, async move { s.cancelled().await })
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
    ready.set(true);
    tracing::info!(%addr, metrics = %http, "serving agents");
    Ok((hub, server))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Serve { pki, listen, metrics_listen } => {
            raise_fd_limit();
            let pki = open_pki(&pki).await?;
            let shutdown = shutdown_on_signal();
            let (_, server) = serve_agents(pki, listen, metrics_listen, &shutdown).await?;
            server.await.context("agent endpoint")??;
        }
        Cmd::Token { pki, identity, ttl_secs } => {
            let id: RouterId = identity.parse().map_err(anyhow::Error::msg)?;
            let pki = open_pki(&pki).await?;
            println!("{}", pki.issue_token(&id, Some(Duration::from_secs(ttl_secs))).await?);
        }
        Cmd::Tokens { pki, namespace, prefix, count, ttl_secs } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let pki = open_pki(&pki).await?;
            for i in 0..count {
                let id = RouterId::new(namespace.clone(), format!("{prefix}{i}")).map_err(anyhow::Error::msg)?;
                let token = pki.issue_token(&id, Some(Duration::from_secs(ttl_secs))).await?;
                println!("{id} {token}");
            }
        }
        Cmd::Crds => print!("{}", vrouter_operator::crd::crds_yaml()?),
        Cmd::Run { pki, listen, metrics_listen, concurrency } => {
            raise_fd_limit();
            let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
            std::fs::create_dir_all(&pki.state_dir)
                .with_context(|| format!("cannot create {}", pki.state_dir.display()))?;
            let secret_key = vrouter_operator::standalone::secret_key(&pki.state_dir).map_err(anyhow::Error::msg)?;
            let pki = open_pki(&pki).await?;
            let shutdown = shutdown_on_signal();
            let (hub, server) = serve_agents(pki, listen, metrics_listen, &shutdown).await?;
            vrouter_operator::controller::run(client, hub, secret_key, concurrency.max(1), shutdown).await;
            server.await.context("agent endpoint")??;
        }
        Cmd::Diff { state_dir, dir } => {
            let state = state_dir.unwrap_or_else(|| dir.join(".vrouter"));
            print!("{}", vrouter_operator::standalone::diff(&dir, &state)?);
        }
        Cmd::Render { dir } => print!("{}", vrouter_operator::standalone::render(&dir)?),
        Cmd::Standalone { dir, state_dir, listen, simulate, until_synced, timeout, poll_ms, retry_secs, qga } => {
            raise_fd_limit();
            let retry = Duration::from_secs(retry_secs.max(1));
            let options = vrouter_operator::standalone::Options {
                state_dir: state_dir.unwrap_or_else(|| dir.join(".vrouter")),
                dir,
                listen,
                simulate,
                until_synced,
                timeout,
                poll: Duration::from_millis(poll_ms.max(50)),
                table: true,
                engine: vrouter_operator::delivery::EngineConfig {
                    retry_min: retry,
                    retry_max: retry * 10,
                    ..Default::default()
                },
                hub: HubConfig::default(),
                qga: qga.options()?,
            };
            vrouter_operator::standalone::run(options, shutdown_on_signal()).await?;
        }
        Cmd::Ca { pki } => {
            let pki = open_pki(&pki).await?;
            print!("{}", pki.ca_pem());
        }
        Cmd::Qga(args) => {
            // Prints its own errors; `exec` exits with the guest program's status.
            let code = vrouter_operator::qga::cli::run(args).await;
            if code != 0 {
                std::process::exit(code);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vrouter-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vrouter-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
