//! `vrouter-operator`: the operator binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vrouter_operator::http::Readiness;
use vrouter_operator::hub::{AgentServer, Hub, HubConfig, ServerConfig};
use vrouter_operator::leader::{Elector, LeaseConfig};
use vrouter_operator::metrics::Metrics;
use vrouter_operator::pki::{
    BucketedStore, DirStore, LostCa, Pki, PkiConfig, PkiError, PkiStore, SecretStore, buckets, lost_ca,
};
use vrouter_proto::RouterId;

// Reconcile passes build and drop many small strings and trees; with glibc's allocator half of
// a pass over a large fleet was malloc/free (docs/performance.md, "Reconcile").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Directory for the operator's state (the PKI lives in <state-dir>/pki unless --pki-secret).
    #[arg(long, default_value = "./.vrouter")]
    state_dir: PathBuf,
    /// Keep the PKI (CA, server certificate, enrollment state, revision key) in this Secret,
    /// created on first start (or provided with ca.crt and ca.key), instead of the state directory.
    #[arg(long)]
    pki_secret: Option<String>,
    /// Namespace of the --pki-secret Secret.
    #[arg(long, env = "POD_NAMESPACE")]
    pki_namespace: Option<String>,
    /// DNS names agents use to reach the operator (server certificate SANs; repeatable).
    #[arg(long = "server-dns-name", visible_alias = "server-name", default_values_t = ["localhost".to_owned()])]
    server_names: Vec<String>,
    /// IP addresses agents use to reach the operator (server certificate SANs; repeatable).
    #[arg(long = "server-ip", default_values_t = [IpAddr::from([127, 0, 0, 1])])]
    server_ips: Vec<IpAddr>,
    /// With --pki-secret: create a new CA even though the Secret holds none while VRouterTargets
    /// show enrolled routers (their agent connected, or they run a revision). Without it that
    /// start is refused: the Secret was lost, and a new CA cuts off every router. Use it once,
    /// to start over deliberately; then re-enroll every router (`kubectl vrouter enroll`).
    #[arg(long)]
    allow_new_ca: bool,
}

/// Connection limits of the agent endpoint.
#[derive(Args, Clone)]
struct EndpointArgs {
    /// Close agent-endpoint connections that have not sent the HTTP/2 preface and a first
    /// request this long after their TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    agent_preface_timeout: Duration,
    /// Most agent-endpoint connections without a verified client certificate (enrollment,
    /// scanners) from one address (IPv6: one /64).
    #[arg(long, default_value_t = ServerConfig::default().max_unauthenticated_per_source)]
    agent_max_unauthenticated_per_source: usize,
    /// Most agent-endpoint connections without a verified client certificate in all.
    #[arg(long, default_value_t = ServerConfig::default().max_unauthenticated)]
    agent_max_unauthenticated: usize,
}

impl EndpointArgs {
    fn config(&self) -> ServerConfig {
        ServerConfig {
            preface_timeout: self.agent_preface_timeout,
            max_unauthenticated_per_source: self.agent_max_unauthenticated_per_source,
            max_unauthenticated: self.agent_max_unauthenticated,
            ..ServerConfig::default()
        }
    }
}

/// Leader election options of `run`.
#[derive(Args)]
struct ElectionArgs {
    /// Run the controllers only on the holder of a Lease (`--leader-election=false`: always).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "vrouter-operator")]
    lease_name: String,
    /// The Lease's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    lease_identity: Option<String>,
    /// How long a lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    lease_duration: Duration,
    /// How long the leader keeps leading while renewals fail (shorter than the lease).
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    renew_deadline: Duration,
    /// Time between renewals, or between reads while following.
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    retry_period: Duration,
}

/// Admission webhook options of `run`.
#[derive(Args)]
struct WebhookArgs {
    /// HTTPS address of the validating admission webhook (no webhook when not given).
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,
    /// The webhook's Service (its certificate is for <service>.<namespace>.svc).
    #[arg(long, default_value = "vrouter-operator-webhook")]
    webhook_service: String,
    /// The webhook Service's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    webhook_namespace: Option<String>,
    /// The ValidatingWebhookConfiguration whose caBundle the operator keeps on its CA.
    #[arg(long)]
    webhook_config_name: Option<String>,
    /// Longest a review may take (rendering); keep it below the configuration's timeoutSeconds.
    #[arg(long, default_value = "8s", value_parser = parse_go_duration)]
    webhook_timeout: Duration,
    /// Another DNS name or IP address the API server reaches the webhook by, when the
    /// configuration uses `clientConfig.url` instead of the Service (repeatable).
    #[arg(long)]
    webhook_host: Vec<String>,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Serve agents only (the agent hub), without resources: for agent tests and simulations.
    Serve {
        #[command(flatten)]
        pki: PkiArgs,
        /// Agent endpoint address.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: SocketAddr,
        #[command(flatten)]
        endpoint: EndpointArgs,
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
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Metrics and health endpoint address.
        #[arg(long, default_value = "0.0.0.0:9464")]
        metrics_listen: SocketAddr,
        /// Reconciles run at once, per controller.
        #[arg(long, default_value_t = 8)]
        concurrency: u16,
        #[command(flatten)]
        election: ElectionArgs,
        #[command(flatten)]
        webhook: WebhookArgs,
        #[command(flatten)]
        qga: QgaArgs,
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
        #[command(flatten)]
        endpoint: EndpointArgs,
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

/// The PKI's store: the --pki-secret Secret (through `client`), or <state-dir>/pki.
fn pki_store(args: &PkiArgs, client: Option<&kube::Client>) -> Result<Arc<dyn PkiStore>> {
    let Some(name) = &args.pki_secret else {
        return Ok(Arc::new(DirStore::new(args.state_dir.join("pki"))?));
    };
    let namespace = args.pki_namespace.as_deref().context("--pki-secret needs --pki-namespace (or POD_NAMESPACE)")?;
    let client = client.context("--pki-secret needs the Kubernetes API")?;
    // Router and token records in bucket Secrets beside it (pki/buckets.rs).
    let main: Arc<dyn PkiStore> = Arc::new(SecretStore::new(client.clone(), namespace, name)?);
    let buckets = (0..buckets::BUCKETS)
        .map(|i| {
            Ok(Arc::new(SecretStore::new(client.clone(), namespace, &buckets::bucket_name(name, i))?)
                as Arc<dyn PkiStore>)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(BucketedStore::new(main, buckets)?))
}

/// Opens the PKI. With the PKI in a Secret that holds no CA, the cluster's VRouterTargets are
/// looked at first: a Secret lost whole holds no trace of the routers enrolled with its CA, they
/// do. (A Secret with its CA, every start but the first, needs no list of the targets.)
async fn open_pki_in(args: &PkiArgs, store: Arc<dyn PkiStore>, client: Option<&kube::Client>) -> Result<Arc<Pki>> {
    let enrolled_elsewhere = match client {
        Some(c) if args.pki_secret.is_some() && !vrouter_operator::pki::has_ca(store.as_ref()).await? => {
            lost_ca::enrolled_targets(c).await?
        }
        _ => Vec::new(),
    };
    let config = PkiConfig {
        server_dns_names: args.server_names.clone(),
        server_ips: args.server_ips.clone(),
        enrolled_elsewhere,
        allow_new_ca: args.allow_new_ca,
        ..PkiConfig::default()
    };
    Ok(Arc::new(Pki::open(store, config).await?))
}

/// Opens the PKI of a command other than `run` (`serve`, `token`, `tokens`, `ca`).
async fn open_pki(args: &PkiArgs) -> Result<Arc<Pki>> {
    let client = match args.pki_secret {
        Some(_) => {
            Some(vrouter_operator::controller::client::client().await.context("cannot reach the Kubernetes API")?)
        }
        None => None,
    };
    open_pki_in(args, pki_store(args, client.as_ref())?, client.as_ref()).await
}

/// Records a refused lost CA as a Warning Event on the operator's pod (POD_NAME and
/// POD_NAMESPACE, POD_UID if set, from the downward API); without them, only the log says it.
/// A failure to record is logged: the refusal itself is the error the operator exits with.
async fn report_lost_ca(client: &kube::Client, lost: &LostCa) {
    let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) else {
        tracing::warn!("POD_NAME or POD_NAMESPACE is not set: the lost PKI Secret is reported in the log only");
        return;
    };
    let pod = lost_ca::pod_reference(&namespace, &name, std::env::var("POD_UID").ok());
    match tokio::time::timeout(Duration::from_secs(10), lost_ca::publish(client.clone(), lost, &pod)).await {
        Ok(Ok(())) => tracing::info!(%namespace, pod = %name, reason = lost_ca::REASON, "recorded an Event"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the lost PKI Secret as an Event"),
        Err(_) => tracing::warn!("recording the lost PKI Secret as an Event timed out"),
    }
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

type ServerTask = tokio::task::JoinHandle<Result<(), vrouter_operator::hub::ServeError>>;

/// Starts the metrics/health endpoint and the agent endpoint; the caller says when it is ready.
async fn serve_agents(
    pki: Arc<Pki>,
    listen: SocketAddr,
    endpoint: ServerConfig,
    metrics_listen: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(Hub, ServerTask, Readiness)> {
    let metrics = Metrics::new();
    let hub = Hub::new(HubConfig::default(), pki, metrics.clone());
    let ready = Readiness::default();
    let s = shutdown.clone();
    let http =
        vrouter_operator::http::spawn(metrics_listen, metrics, ready.clone(), async move { s.cancelled().await })
            .await?;
    let s = shutdown.clone();
    let (addr, server) = AgentServer::spawn(hub.clone(), endpoint, listen, async move { s.cancelled().await })
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%addr, metrics = %http, "serving agents");
    Ok((hub, server, ready))
}

/// Followers hold no agent sessions. A follower refuses new ones ([`Hub::set_serving`]); this
/// sweep ends any that slipped in as leadership was lost (a stream accepted just before).
async fn turn_away_agents(hub: Hub, leader: tokio::sync::watch::Receiver<bool>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if !*leader.borrow() && hub.session_count() > 0 {
            hub.close_all("this replica does not lead; reconnect");
        }
    }
}

/// `run`: the agent endpoint and the webhook on every replica; the controllers and the
/// delivery engine on the leader only, which labels its pod for the agent Service.
async fn run_in_cluster(
    pki_args: PkiArgs,
    (listen, endpoint): (SocketAddr, ServerConfig),
    metrics_listen: SocketAddr,
    concurrency: u16,
    election: ElectionArgs,
    webhook: WebhookArgs,
    qga: QgaArgs,
) -> Result<()> {
    let client = vrouter_operator::controller::client::client().await.context("cannot reach the Kubernetes API")?;
    let qga = qga.options()?;
    if qga.as_ref().is_some_and(|q| q.endpoint.is_none()) {
        bail!("--qga in a cluster needs --guest-endpoint (the agent endpoint as router VMs reach it)");
    }
    // The pod the leader label goes on (from the downward API, as the chart sets it).
    let labelled = election
        .leader_election
        .then(|| Some((std::env::var("POD_NAME").ok()?, std::env::var("POD_NAMESPACE").ok()?)))
        .flatten();
    if let Some((pod, namespace)) = &labelled {
        // A container restarted in the pod that led keeps the pod, and its leader label: remove
        // it before serving, or the agent Service would keep sending agents to a follower.
        if let Err(e) = vrouter_operator::leader::label_pod(&client, namespace, pod, false).await {
            tracing::error!(error = %e, %pod, "cannot remove a stale leader label: agents may be sent to this follower");
        }
    }
    let store = pki_store(&pki_args, Some(&client))?;
    // The PKI first: a refused start (a lost Secret) must write nothing, not even the revision key.
    let pki = match open_pki_in(&pki_args, store.clone(), Some(&client)).await {
        Ok(pki) => pki,
        Err(e) => {
            if let Some(PkiError::LostCa(lost)) = e.downcast_ref::<PkiError>() {
                report_lost_ca(&client, lost).await;
            }
            return Err(e);
        }
    };
    let secret_key = if pki_args.pki_secret.is_some() {
        vrouter_operator::pki::revision_key(store.as_ref()).await?
    } else {
        std::fs::create_dir_all(&pki_args.state_dir)
            .with_context(|| format!("cannot create {}", pki_args.state_dir.display()))?;
        vrouter_operator::standalone::secret_key(&pki_args.state_dir).map_err(anyhow::Error::msg)?
    };
    let shutdown = shutdown_on_signal();
    let (hub, server, ready) = serve_agents(pki.clone(), listen, endpoint, metrics_listen, &shutdown).await?;
    // Every replica that serves is ready (rolling updates, disruption budgets, webhook); agents
    // reach the leader through the leader label the agent Service selects.
    ready.set(true);
    let qga = qga.map(|q| vrouter_operator::qga::route::QgaSupport {
        resolver: Arc::new(vrouter_operator::qga::kube::KubeResolver::new(client.clone())),
        bootstrap: vrouter_operator::qga::guest::BootstrapSettings {
            agent_binary: q.agent_binary,
            endpoint: q.endpoint.unwrap_or_default(),
            server_name: q.server_name,
            ca_pem: pki.ca_pem().to_owned(),
            extra_config: q.extra_agent_config,
            layout: vrouter_operator::qga::guest::GuestLayout::new(q.guest_root),
        },
        fallback_after: q.fallback_after,
        session_wait: q.session_wait,
        poll: q.poll,
    });
    if let Some(addr) = webhook.webhook_listen {
        let config = vrouter_operator::webhook::WebhookConfig {
            listen: addr,
            service: webhook.webhook_service,
            namespace: webhook
                .webhook_namespace
                .context("--webhook-listen needs --webhook-namespace (or POD_NAMESPACE)")?,
            config_name: webhook.webhook_config_name,
            review_timeout: webhook.webhook_timeout,
            extra_hosts: webhook.webhook_host,
        };
        let bound =
            vrouter_operator::webhook::spawn(client.clone(), pki, hub.metrics().clone(), config, shutdown.clone())
                .await?;
        tracing::info!(addr = %bound, "serving the admission webhook");
    }
    // Always leading without election (one replica only).
    let (always, mut elector_task) = (tokio::sync::watch::channel(true), None);
    let election_stop = CancellationToken::new();
    let leader = if election.leader_election {
        let config = LeaseConfig {
            name: election.lease_name,
            namespace: election
                .lease_namespace
                .context("leader election needs --lease-namespace (or POD_NAMESPACE)")?,
            identity: election
                .lease_identity
                .context("leader election needs --lease-identity (or POD_NAME); or --leader-election=false")?,
            lease_duration: election.lease_duration,
            renew_deadline: election.renew_deadline,
            retry_period: election.retry_period,
        };
        // Stopped only once the controllers have: the lease is released after their last write.
        let (rx, task) = Elector::new(client.clone(), config)?.spawn(election_stop.clone());
        elector_task = Some(task);
        rx
    } else {
        always.1
    };
    // A follower refuses agent streams at once (UNAVAILABLE): an agent that reached it through
    // stale Service endpoints retries, rather than holding a session nothing is delivered on.
    hub.set_serving(*leader.borrow());
    tokio::spawn(turn_away_agents(hub.clone(), leader.clone(), shutdown.clone()));
    let metrics = hub.metrics().clone();
    let h = hub.clone();
    let label_client = client.clone();
    vrouter_operator::leader::lead(
        leader,
        shutdown.clone(),
        move |token| {
            vrouter_operator::controller::run(
                client.clone(),
                h.clone(),
                secret_key.clone(),
                concurrency,
                qga.clone(),
                token,
            )
        },
        move |leading| {
            if let Some((pod, namespace)) = labelled.clone() {
                let client = label_client.clone();
                tokio::spawn(async move {
                    if let Err(e) = vrouter_operator::leader::label_pod(&client, &namespace, &pod, leading).await {
                        tracing::error!(error = %e, %pod, "cannot set the leader label: agents may not reach this replica");
                    }
                });
            }
            metrics.leader.set(i64::from(leading));
            hub.set_serving(leading);
            if !leading {
                // Agents reconnect through the Service, to the new leader.
                hub.close_all("this replica no longer leads");
            }
        },
    )
    .await;
    drop(always.0);
    election_stop.cancel();
    if let Some(task) = elector_task {
        // Let it release the lease, so another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    server.await.context("agent endpoint")??;
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Serve { pki, listen, endpoint, metrics_listen } => {
            raise_fd_limit();
            let pki = open_pki(&pki).await?;
            let shutdown = shutdown_on_signal();
            let (_, server, ready) = serve_agents(pki, listen, endpoint.config(), metrics_listen, &shutdown).await?;
            ready.set(true);
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
        Cmd::Run { pki, listen, endpoint, metrics_listen, concurrency, election, webhook, qga } => {
            raise_fd_limit();
            let endpoint = endpoint.config();
            run_in_cluster(pki, (listen, endpoint), metrics_listen, concurrency.max(1), election, webhook, qga).await?;
        }
        Cmd::Diff { state_dir, dir } => {
            let state = state_dir.unwrap_or_else(|| dir.join(".vrouter"));
            print!("{}", vrouter_operator::standalone::diff(&dir, &state)?);
        }
        Cmd::Render { dir } => print!("{}", vrouter_operator::standalone::render(&dir)?),
        Cmd::Standalone {
            dir,
            state_dir,
            listen,
            endpoint,
            simulate,
            until_synced,
            timeout,
            poll_ms,
            retry_secs,
            qga,
        } => {
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
                server: endpoint.config(),
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
            // Errors quote values from manifests and routers: no control or bidi character reaches
            // the terminal.
            eprintln!("vrouter-operator: {}", vyos_config::escape_controls(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
