//! `vrouter-operator qga …`: a debugging command line for the guest agent client, for people
//! diagnosing VMs on KVM hosts (see `docs/qga.md`).
//!
//! Examples: `vrouter-operator qga --socket /run/qga.sock ping`,
//! `... exec -- /bin/sh -c 'uname -a'`, `... push ./config.boot /config/config.boot`,
//! `... pull /etc/os-release ./os-release`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{ExecRequest, OsInfoSource, QgaClient, QgaClientConfig, QgaError, UnixSocketTransport, WriteMode};

/// `vrouter-operator qga`: talk to a QEMU guest agent directly, for debugging.
#[derive(Debug, Clone, Args)]
pub struct QgaArgs {
    /// The agent's unix socket (qemu-ga `-m unix-listen`, or the VM's agent channel socket).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Timeout of each agent command, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: QgaCommand,
}

/// The `vrouter-operator qga` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum QgaCommand {
    /// Check that the agent answers.
    Ping,
    /// Show the agent's version and its commands.
    Info,
    /// Show the guest's operating system.
    Osinfo,
    /// Run a program in the guest (an argv, no shell) and print its output; exit with its
    /// status.
    Exec {
        /// How long to wait for the program, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        deadline: u64,
        /// Environment variable for the program (repeatable). When given, these are its
        /// entire environment.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Local file to feed to the program's standard input (`-` for this process's stdin).
        #[arg(long, value_name = "FILE")]
        stdin: Option<PathBuf>,
        /// The program and its arguments (after `--`).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Copy a local file into the guest (the directory must exist there).
    Push {
        /// The local file.
        local: PathBuf,
        /// The path in the guest.
        remote: String,
        /// Append instead of replacing.
        #[arg(long)]
        append: bool,
    },
    /// Copy a file from the guest.
    Pull {
        /// The path in the guest.
        remote: String,
        /// The local file.
        local: PathBuf,
        /// Refuse files larger than this many bytes.
        #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024)]
        max_size: u64,
    },
}

/// The exit code when the agent could not be used (as `ssh` does for its own failures).
pub const FAILURE_EXIT: i32 = 255;

/// Runs a `vrouter-operator qga` command, printing to this process's stdout and stderr, and
/// returns the exit code for `std::process::exit`: 0, or for `exec` the guest program's status
/// (its exit code, or 128 + the signal that killed it). When the agent could not be used, the
/// error is printed and the code is [`FAILURE_EXIT`].
pub async fn run(args: QgaArgs) -> i32 {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match run_with_output(args, &mut out, &mut err).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vrouter-operator qga: {e}");
            if let QgaError::Timeout { .. } = e {
                eprintln!(
                    "hint: an agent channel serves one client at a time; while another one (libvirt, an operator) \
                     holds it, this command waits in vain"
                );
            }
            FAILURE_EXIT
        }
    }
}

/// [`run`], printing to `out` and `err`, and returning errors instead of printing them.
pub async fn run_with_output(
    args: QgaArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<i32, QgaError> {
    let config = QgaClientConfig { command_timeout: Duration::from_secs(args.timeout), ..QgaClientConfig::default() };
    let transport = UnixSocketTransport::new(&args.socket);
    let client = QgaClient::with_config(std::sync::Arc::new(transport), config);
    let print = |w: &mut (dyn Write + Send), bytes: &[u8], name: &str| {
        w.write_all(bytes).and_then(|()| w.flush()).map_err(|source| QgaError::LocalIo { path: name.into(), source })
    };
    match args.command {
        QgaCommand::Ping => {
            client.ping().await?;
            print(out, format!("guest agent at {} answered\n", args.socket.display()).as_bytes(), "<stdout>")?;
        }
        QgaCommand::Info => {
            let info = client.info().await?;
            let mut text = format!("version: {}\ncommands:\n", info.version);
            let mut commands = info.commands;
            commands.sort_by(|a, b| a.name.cmp(&b.name));
            for command in commands {
                let state = if command.enabled { "" } else { "  (disabled)" };
                text.push_str(&format!("  {}{state}\n", command.name));
            }
            print(out, text.as_bytes(), "<stdout>")?;
        }
        QgaCommand::Osinfo => {
            let info = client.os_info().await?;
            let mut text = String::new();
            for (key, value) in [
                ("id", &info.id),
                ("name", &info.name),
                ("pretty-name", &info.pretty_name),
                ("version", &info.version),
                ("version-id", &info.version_id),
                ("variant", &info.variant),
                ("variant-id", &info.variant_id),
                ("kernel-release", &info.kernel_release),
                ("kernel-version", &info.kernel_version),
                ("machine", &info.machine),
            ] {
                if let Some(value) = value {
                    text.push_str(&format!("{key}: {value}\n"));
                }
            }
            let source = match info.source {
                OsInfoSource::Agent => "guest-get-osinfo",
                OsInfoSource::OsRelease => "os-release (guest-get-osinfo unavailable)",
            };
            text.push_str(&format!("source: {source}\n"));
            print(out, text.as_bytes(), "<stdout>")?;
        }
        QgaCommand::Exec { deadline, env, stdin, command } => {
            let Some((program, rest)) = command.split_first() else {
                return Err(QgaError::protocol("guest-exec", "no program given"));
            };
            let mut request =
                ExecRequest::new(program.clone(), rest.iter().cloned()).deadline(Duration::from_secs(deadline));
            if !env.is_empty() {
                request = request.env(env);
            }
            if let Some(path) = stdin {
                request = request.stdin(read_local(&path).await?);
            }
            let output = client.exec(&request).await?;
            print(out, &output.stdout, "<stdout>")?;
            print(err, &output.stderr, "<stderr>")?;
            let mut notes = String::new();
            if output.stdout_truncated {
                notes.push_str("qga: stdout was truncated by the agent\n");
            }
            if output.stderr_truncated {
                notes.push_str("qga: stderr was truncated by the agent\n");
            }
            if let Some(signal) = output.signal {
                notes.push_str(&format!("qga: {program} was killed by signal {signal}\n"));
            }
            print(err, notes.as_bytes(), "<stderr>")?;
            return Ok(output.exit_status());
        }
        QgaCommand::Push { local, remote, append } => {
            let data = read_local(&local).await?;
            let mode = if append { WriteMode::Append } else { WriteMode::Truncate };
            client.write_file(&remote, &data, mode).await?;
            print(out, format!("wrote {} bytes to {remote}\n", data.len()).as_bytes(), "<stdout>")?;
        }
        QgaCommand::Pull { remote, local, max_size } => {
            let data = client.read_file_limited(&remote, max_size).await?;
            tokio::fs::write(&local, &data)
                .await
                .map_err(|source| QgaError::LocalIo { path: local.clone(), source })?;
            print(
                out,
                format!("read {} bytes from {remote} into {}\n", data.len(), local.display()).as_bytes(),
                "<stdout>",
            )?;
        }
    }
    Ok(0)
}

async fn read_local(path: &Path) -> Result<Vec<u8>, QgaError> {
    let local = |source| QgaError::LocalIo { path: path.to_owned(), source };
    if path == Path::new("-") {
        let read = tokio::task::spawn_blocking(|| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).map(|_| data)
        });
        return read.await.map_err(std::io::Error::other).and_then(|r| r).map_err(local);
    }
    tokio::fs::read(path).await.map_err(local)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        qga: QgaArgs,
    }

    fn parse(args: &[&str]) -> QgaArgs {
        Cli::try_parse_from(std::iter::once("qga").chain(args.iter().copied())).unwrap().qga
    }

    #[test]
    fn parses_exec_with_an_argv_after_the_separator() {
        let args = parse(&["--socket", "/s", "exec", "--env", "A=1", "--", "/bin/sh", "-c", "echo $A", "--x"]);
        assert_eq!(args.socket, PathBuf::from("/s"));
        assert_eq!(args.timeout, 30);
        let QgaCommand::Exec { deadline, env, stdin, command } = args.command else { panic!() };
        assert_eq!(deadline, 60);
        assert_eq!(env, ["A=1"]);
        assert_eq!(stdin, None);
        assert_eq!(command, ["/bin/sh", "-c", "echo $A", "--x"]);

        let args = parse(&["--socket", "/s", "exec", "ls", "-la"]);
        let QgaCommand::Exec { command, .. } = args.command else { panic!() };
        assert_eq!(command, ["ls", "-la"]);
    }

    #[test]
    fn parses_the_other_commands() {
        assert!(matches!(parse(&["--socket", "/s", "ping"]).command, QgaCommand::Ping));
        assert!(matches!(parse(&["--socket", "/s", "--timeout", "5", "info"]).command, QgaCommand::Info));
        assert!(matches!(parse(&["--socket", "/s", "osinfo"]).command, QgaCommand::Osinfo));
        let QgaCommand::Push { local, remote, append } = parse(&["--socket", "/s", "push", "a", "/b"]).command else {
            panic!()
        };
        assert_eq!((local, remote.as_str(), append), (PathBuf::from("a"), "/b", false));
        let QgaCommand::Pull { remote, local, max_size } =
            parse(&["--socket", "/s", "pull", "/b", "a", "--max-size", "10"]).command
        else {
            panic!()
        };
        assert_eq!((remote.as_str(), local, max_size), ("/b", PathBuf::from("a"), 10));
        assert!(Cli::try_parse_from(["qga", "--socket", "/s", "exec"]).is_err());
        assert!(Cli::try_parse_from(["qga", "ping"]).is_err());
    }
}
