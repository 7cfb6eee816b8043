//! `kubectl-vrouter`: the `kubectl vrouter` plugin.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kubectl_vrouter::output::show;
use kubectl_vrouter::request::Wait;
use kubectl_vrouter::{Format, agents, diff, enroll, fetch, render, status};

#[derive(Parser)]
#[command(name = "kubectl-vrouter", bin_name = "kubectl vrouter", version, about = "vrouter routers from kubectl")]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Output format: table, yaml or json.
    #[arg(short = 'o', long, global = true, default_value = "table", value_parser = parse_format)]
    output: Format,
    #[command(subcommand)]
    command: Cmd,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a router's composed configuration (secret values stay placeholders).
    Render {
        /// The VRouterTarget.
        target: String,
    },
    /// Print the commands from the router's running configuration (fetched through the operator)
    /// to the desired one, and reported drift.
    Diff {
        /// The VRouterTarget.
        target: String,
        /// Plan from the last applied revision instead (no operator round trip, no live read).
        #[arg(long)]
        from_applied: bool,
        /// Seconds to wait for the operator's answer.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// List the routers' agent sessions.
    Agents {
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Summarise the fleet: applied, pending, failed, drifted, paused; agents connected.
    Status {
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Print an agent.toml with a fresh single-use enrollment token (bare-metal routers).
    Enroll {
        /// The VRouterTarget.
        target: String,
        /// The agent endpoint the router dials (default: the one the operator advertises).
        #[arg(long)]
        endpoint: Option<String>,
        /// The TLS server name the agent expects, if it differs from the endpoint's host.
        #[arg(long)]
        server_name: Option<String>,
        /// Write agent.toml and the CA into this directory instead of printing them.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Seconds to wait for the operator.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

fn print<T: serde::Serialize>(value: &T, format: Format, table: impl FnOnce() -> String) -> Result<()> {
    print!("{}", show(value, format, table)?);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client = kube::Client::try_default().await.context("cannot build a Kubernetes client from the kubeconfig")?;
    let ns = cli.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let format = cli.output;
    match cli.command {
        Cmd::Render { target } => {
            let r = render::render_target(&client, &ns, &target).await?;
            print(&r, format, || render::text(&r))?;
        }
        Cmd::Diff { target, from_applied, timeout_secs } => {
            let source = if from_applied {
                diff::Source::Applied
            } else {
                diff::Source::Running(Wait { timeout: Duration::from_secs(timeout_secs), ..Wait::default() })
            };
            let d = diff::diff_target(&client, &ns, &target, source).await?;
            print(&d, format, || diff::text(&d))?;
        }
        Cmd::Agents { all_namespaces } => {
            let targets = fetch::targets(&client, (!all_namespaces).then_some(ns.as_str())).await?;
            let rows = agents::rows(&targets);
            print(&rows, format, || agents::text(&rows, SystemTime::now()))?;
        }
        Cmd::Status { all_namespaces } => {
            let targets = fetch::targets(&client, (!all_namespaces).then_some(ns.as_str())).await?;
            let r = status::report(&targets);
            print(&r, format, || status::text(&r, SystemTime::now()))?;
        }
        Cmd::Enroll { target, endpoint, server_name, out_dir, timeout_secs } => {
            let options = enroll::Options {
                endpoint,
                server_name,
                wait: Wait { timeout: Duration::from_secs(timeout_secs), ..Wait::default() },
            };
            let e = enroll::enroll(&client, &ns, &target, &options).await?;
            match out_dir {
                Some(dir) => {
                    let (config, ca) = enroll::write_files(&e, &dir)?;
                    eprintln!(
                        "wrote {} and {}: copy them to the router as /config/vrouter-agent/agent.toml and {}",
                        config.display(),
                        ca.display(),
                        e.ca_file
                    );
                }
                None => print(&e, format, || enroll::text(&e))?,
            }
        }
    }
    Ok(())
}
