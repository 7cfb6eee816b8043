//! `vrouter-agent install`: makes this binary the router's running agent service. The operator's
//! guest-agent bootstrap runs it after copying the binary and writing `agent.toml` into a VM
//! that had no agent; it is idempotent, so a repeated bootstrap only restarts the service with
//! the new configuration.
//!
//! With systemd (`/run/systemd/system` exists) the packaged unit is used when the `.deb` is
//! installed; otherwise a unit for this binary is written to `/etc/systemd/system`, then the
//! unit is enabled and (re)started. Without systemd (minimal guests, tests) the agent is started
//! detached in its own process group, with a pid file so the next install replaces it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why installing failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct InstallError {
    /// The step that failed.
    pub step: String,
    /// What went wrong.
    pub message: String,
}

fn err(step: impl Into<String>, message: impl std::fmt::Display) -> InstallError {
    InstallError { step: step.into(), message: message.to_string() }
}

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Prefix of every guest path (`/` on a router; a directory in tests).
    pub root: PathBuf,
    /// The agent binary to run (normally this process's own executable).
    pub binary: PathBuf,
    /// The agent's configuration file.
    pub config: PathBuf,
}

/// The unit name.
pub const UNIT: &str = "vrouter-agent.service";

/// How the service was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// A systemd unit was enabled and (re)started; `written` when the unit file was ours.
    Systemd {
        /// Whether this install wrote the unit file (no packaged unit).
        written: bool,
    },
    /// Started detached (no systemd); the process id.
    Detached {
        /// The new agent's pid.
        pid: u32,
        /// The pid of the agent it replaced, if one was running.
        replaced: Option<u32>,
    },
}

/// The systemd unit for a binary-only install (no `.deb`): the packaged unit's settings with
/// this binary and configuration.
pub fn unit_text(binary: &Path, config: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=vrouter agent (installed by the operator's guest-agent bootstrap)\n\
         After=vyos-router.service network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} run --config {}\n\
         User=root\n\
         Group=vyattacfg\n\
         UMask=0002\n\
         Restart=on-failure\n\
         RestartSec=5s\n\
         TimeoutStopSec=20min\n\
         KillMode=mixed\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        binary.display(),
        config.display()
    )
}

fn at(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Installs and starts the service.
pub fn install(options: &InstallOptions) -> Result<Installed, InstallError> {
    if !options.config.is_file() {
        return Err(err("check", format!("{} does not exist", options.config.display())));
    }
    if at(&options.root, "/run/systemd/system").is_dir() { install_systemd(options) } else { start_detached(options) }
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("systemctl {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(err(
            format!("systemctl {}", args.join(" ")),
            format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(())
}

fn install_systemd(options: &InstallOptions) -> Result<Installed, InstallError> {
    let packaged = at(&options.root, "/lib/systemd/system").join(UNIT);
    let written = !packaged.exists();
    if written {
        let path = at(&options.root, "/etc/systemd/system").join(UNIT);
        std::fs::write(&path, unit_text(&options.binary, &options.config))
            .map_err(|e| err(format!("write {}", path.display()), e))?;
        systemctl(&["daemon-reload"])?;
    }
    systemctl(&["enable", UNIT])?;
    systemctl(&["restart", UNIT])?;
    Ok(Installed::Systemd { written })
}

fn pid_file(root: &Path) -> PathBuf {
    at(root, "/run/vrouter-agent.pid")
}

/// The pid in `pid_file` if that process is alive and runs `binary`.
fn running_agent(root: &Path, binary: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(root)).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // argv[0] for the binary itself; argv[1] when it is a script run by its interpreter.
    let wanted = binary.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).take(2).any(|a| a == wanted).then_some(pid)
}

/// Whether `pid` runs (a zombie has exited).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn start_detached(options: &InstallOptions) -> Result<Installed, InstallError> {
    let replaced = running_agent(&options.root, &options.binary);
    if let Some(pid) = replaced {
        let status = Command::new("kill")
            .arg(pid.to_string())
            .status()
            .map_err(|e| err(format!("stop the running agent (pid {pid})"), e))?;
        if !status.success() {
            return Err(err(format!("stop the running agent (pid {pid})"), status));
        }
        // Wait for it to finish its commit, if any, and exit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let log_path = at(&options.root, "/var/log/vrouter-agent.log");
    for dir in [at(&options.root, "/var/log"), at(&options.root, "/run")] {
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("create {}", dir.display()), e))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| err(format!("open {}", log_path.display()), e))?;
    let log2 = log.try_clone().map_err(|e| err("log", e))?;
    // Own process group: the guest agent that ran `install` waits only for this process, and
    // the service must outlive it.
    let child = std::os::unix::process::CommandExt::process_group(
        Command::new(&options.binary).arg("run").arg("--config").arg(&options.config),
        0,
    )
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(log2)
    .spawn()
    .map_err(|e| err(format!("start {}", options.binary.display()), e))?;
    let pid = child.id();
    let pid_path = pid_file(&options.root);
    std::fs::write(&pid_path, format!("{pid}\n")).map_err(|e| err(format!("write {}", pid_path.display()), e))?;
    Ok(Installed::Detached { pid, replaced })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_given_binary_with_its_config() {
        let u = unit_text(Path::new("/config/vrouter-agent/bin/vrouter-agent"), Path::new("/config/a.toml"));
        assert!(u.contains("\nExecStart=/config/vrouter-agent/bin/vrouter-agent run --config /config/a.toml\n"));
        assert!(u.contains("\nGroup=vyattacfg\n") && u.contains("\nUMask=0002\n"));
    }

    #[test]
    fn missing_config_is_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let e = install(&InstallOptions {
            root: dir.path().to_owned(),
            binary: "/bin/true".into(),
            config: dir.path().join("nope.toml"),
        })
        .unwrap_err();
        assert_eq!(e.step, "check");
        assert!(e.message.contains("nope.toml"), "{e}");
    }

    #[test]
    fn detached_start_replaces_the_previous_agent() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["run", "var/log"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, "").unwrap();
        // Stands in for the agent: runs until SIGTERM, whatever its arguments.
        let bin = dir.path().join("fake-agent");
        std::fs::write(&bin, "#!/bin/sh\ntrap 'exit 0' TERM\nsleep 30 &\nwait\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let options = InstallOptions { root: dir.path().to_owned(), binary: bin.clone(), config };
        let Installed::Detached { pid: first, replaced: None } = install(&options).unwrap() else { panic!() };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let Installed::Detached { pid: second, replaced } = install(&options).unwrap() else { panic!() };
        assert_eq!(replaced, Some(first));
        assert_ne!(second, first);
        assert!(!alive(first), "the old agent still runs");
        let _ = Command::new("kill").arg(second.to_string()).status();
    }
}
