//! The VyOS backend: the router's own configuration session, driven exactly as VyOS's
//! `ConfigSession` drives it (vyos.md §3, §10.1): `cli-shell-api getSessionEnv/setupSession`,
//! `my_set`/`my_delete`/`my_comment` with argv (never a shell), `my_commit`, `config-mgmt` for
//! commit-confirm, `vyos-save-config.py`. Every path is under a root prefix (`/` on a router; a
//! fake VyOS root in tests).
//!
//! The agent process runs as root with group `vyattacfg` and umask 002 (the systemd unit sets
//! both), as VyOS's own HTTP API does; files it creates under /opt/vyatta/config then stay usable
//! by interactive sessions.

mod output;
mod platform;
mod sysfs;
pub mod vrrp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use vrouter_proto::caps;
use vrouter_proto::v1::{BgpNeighborStatus, FailureKind, OsInfo, StatusReport, VrrpGroupStatus};
use vyos_config::{Command, Config, Op, Tree, digest};

use super::{Backend, BackendError, BackendEvent, CommitOptions, CommitReport};
use crate::config::VyosConfig;
pub use platform::Family;

const CLI_SHELL_API: &str = "bin/cli-shell-api";
const MY_SET: &str = "opt/vyatta/sbin/my_set";
const MY_DELETE: &str = "opt/vyatta/sbin/my_delete";
const MY_COMMENT: &str = "opt/vyatta/sbin/my_comment";
const MY_COMMIT: &str = "opt/vyatta/sbin/my_commit";
const MY_DISCARD: &str = "opt/vyatta/sbin/my_discard";
const CONFIG_MGMT: &str = "usr/bin/config-mgmt";
const SAVE_CONFIG: &str = "usr/libexec/vyos/vyos-save-config.py";
const VTYSH: &str = "usr/bin/vtysh";
const COMMIT_LOCK: &str = "opt/vyatta/config/.lock";
const BOOT_STATUS: &str = "tmp/vyos-config-status";
const SAVED_CONFIG: &str = "config/config.boot";
const HOOK_DIR: &str = "config/scripts/commit/post-hooks.d";
const HOOK_NAME: &str = "99-vrouter-agent";
/// Retries of an edit VyOS refused with a bare `Set failed`.
const SET_RETRIES: usize = 3;
/// Longest wait for keepalived's VRRP dump (VyOS's `show vrrp` waits 30 s; a status report
/// should not stall that long).
const VRRP_DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment `ConfigSession` adds (`inject_vyos_env`, vyos.md §3.1).
const VYOS_ENV: &[(&str, &str)] = &[
    ("VYATTA_CFG_GROUP_NAME", "vyattacfg"),
    ("VYATTA_USER_LEVEL_DIR", "/opt/vyatta/etc/shell/level/admin"),
    ("VYATTA_PROCESS_CLIENT", "gui2_rest"),
    ("VYOS_HEADLESS_CLIENT", "vyos_http_api"),
    ("vyatta_bindir", "/opt/vyatta/bin"),
    ("vyatta_cfg_templates", "/opt/vyatta/share/vyatta-cfg/templates"),
    ("vyatta_configdir", "/opt/vyatta/config"),
    ("vyatta_datadir", "/opt/vyatta/share"),
    ("vyatta_datarootdir", "/opt/vyatta/share"),
    ("vyatta_libdir", "/opt/vyatta/lib"),
    ("vyatta_libexecdir", "/opt/vyatta/libexec"),
    ("vyatta_op_templates", "/opt/vyatta/share/vyatta-op/templates"),
    ("vyatta_prefix", "/opt/vyatta"),
    ("vyatta_sbindir", "/opt/vyatta/sbin"),
    ("vyatta_sysconfdir", "/opt/vyatta/etc"),
    ("vyos_bin_dir", "/usr/bin"),
    ("vyos_cfg_templates", "/opt/vyatta/share/vyatta-cfg/templates"),
    ("vyos_completion_dir", "/usr/libexec/vyos/completion"),
    ("vyos_configdir", "/opt/vyatta/config"),
    ("vyos_conf_scripts_dir", "/usr/libexec/vyos/conf_mode"),
    ("vyos_datadir", "/opt/vyatta/share"),
    ("vyos_datarootdir", "/opt/vyatta/share"),
    ("vyos_libdir", "/opt/vyatta/lib"),
    ("vyos_libexec_dir", "/usr/libexec/vyos"),
    ("vyos_op_scripts_dir", "/usr/libexec/vyos/op_mode"),
    ("vyos_op_templates", "/opt/vyatta/share/vyatta-op/templates"),
    ("vyos_prefix", "/opt/vyatta"),
    ("vyos_sbin_dir", "/usr/sbin"),
    ("vyos_validators_dir", "/usr/libexec/vyos/validators"),
];

/// What a tool printed (stdout, then stderr) and how it exited.
#[derive(Debug)]
struct Output {
    ok: bool,
    text: String,
}

/// The VyOS backend.
pub struct VyosBackend {
    config: VyosConfig,
    family: Family,
    os: OsInfo,
    /// One configuration session at a time from this agent.
    serial: tokio::sync::Mutex<()>,
    events: broadcast::Sender<BackendEvent>,
    network: watch::Sender<bool>,
    /// A commit-confirm timer this agent started is running (a soft revert shows up as someone
    /// else's commit while it runs).
    confirm_pending: std::sync::atomic::AtomicBool,
    /// One keepalived dump at a time (each removes the dump file before signalling).
    vrrp_dump: tokio::sync::Mutex<()>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError::new(FailureKind::Internal, format!("{what} {}: {e}", path.display()))
}

impl VyosBackend {
    /// Detects the platform under `config.root` and refuses unsupported setups. Installs the
    /// post-commit hook that reports commits (by anyone) to the agent.
    pub fn open(config: VyosConfig) -> Result<Arc<VyosBackend>, BackendError> {
        let root = &config.root;
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        let os_release = read("etc/os-release")
            .ok_or_else(|| BackendError::new(FailureKind::Unsupported, "no /etc/os-release: not a VyOS router"))?;
        let (family, mut os) = platform::detect(&os_release, read("usr/share/vyos/version.json").as_deref())
            .map_err(|e| BackendError::new(FailureKind::Unsupported, e))?;
        if root.join("run/vyconf_backend").exists() {
            return Err(BackendError::new(
                FailureKind::Unsupported,
                "the vyconf test backend is switched on (/run/vyconf_backend); the agent drives the default backend only",
            ));
        }
        for tool in [CLI_SHELL_API, MY_SET, MY_DELETE, MY_COMMIT, MY_DISCARD, CONFIG_MGMT, SAVE_CONFIG] {
            if !root.join(tool).exists() {
                return Err(BackendError::new(FailureKind::Unsupported, format!("/{tool} is missing")));
            }
        }
        os.hostname = read("etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        os.kernel = read("proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()).unwrap_or_default();
        let (events, _) = broadcast::channel(64);
        let (network, _) = watch::channel(true);
        let backend = Arc::new(VyosBackend {
            config,
            family,
            os,
            serial: Default::default(),
            events,
            network,
            confirm_pending: Default::default(),
            vrrp_dump: Default::default(),
        });
        backend.install_hook()?;
        Ok(backend)
    }

    /// The release family.
    pub fn family(&self) -> Family {
        self.family
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.config.root.join(rel)
    }

    /// Writes the post-commit hook: it appends `<COMMIT_STATUS> <COMMIT_VIA>` to the events file,
    /// which [`VyosBackend::watch`] follows. Under /config, so it survives image upgrades.
    fn install_hook(&self) -> Result<(), BackendError> {
        let dir = self.path(HOOK_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
        let events = &self.config.events_file;
        if let Some(parent) = events.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
        }
        let script = format!(
            "#!/bin/sh\n# Installed by vrouter-agent: tells the agent about every commit (drift detection).\n\
             echo \"${{COMMIT_STATUS:-UNKNOWN}} ${{COMMIT_VIA:-other}}\" >> '{}' 2>/dev/null || true\n",
            events.display()
        );
        let hook = dir.join(HOOK_NAME);
        if std::fs::read_to_string(&hook).ok().as_deref() != Some(script.as_str()) {
            std::fs::write(&hook, &script).map_err(|e| io_error("cannot write", &hook, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_error("cannot chmod", &hook, e))?;
        }
        Ok(())
    }

    /// Follows the events file and the boot id; sends `Committed` for commits not made by this
    /// agent and `Reverted` when the router rebooted (a commit-confirm reboot revert, or any
    /// reboot). Runs until the backend is dropped by everyone else.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let events = self.config.events_file.clone();
        let boot_path = self.path("proc/sys/kernel/random/boot_id");
        let interval = Duration::from_millis(self.config.poll_ms.max(50));
        tokio::spawn(async move {
            let mut offset = std::fs::metadata(&events).map(|m| m.len()).unwrap_or(0);
            let mut boot = std::fs::read_to_string(&boot_path).unwrap_or_default();
            loop {
                tokio::time::sleep(interval).await;
                let Some(me) = weak.upgrade() else { return };
                if let Ok(text) = std::fs::read(&events) {
                    let len = text.len() as u64;
                    if len < offset {
                        offset = 0;
                    }
                    let new = String::from_utf8_lossy(&text[offset as usize..]).into_owned();
                    offset = len;
                    for line in new.lines() {
                        let via = line.split_whitespace().nth(1).unwrap_or("other");
                        if via != me.config.commit_via {
                            // A commit by someone else while our confirm timer runs: VyOS's soft
                            // revert (reload) committing the last confirmed revision back.
                            if me.confirm_pending.swap(false, std::sync::atomic::Ordering::SeqCst) {
                                let _ = me.events.send(BackendEvent::Reverted { how: "reload".to_owned() });
                            }
                            let _ = me.events.send(BackendEvent::Committed { source: via.to_owned() });
                        }
                    }
                }
                let now = std::fs::read_to_string(&boot_path).unwrap_or_default();
                if now != boot && !now.is_empty() {
                    boot = now;
                    me.confirm_pending.store(false, std::sync::atomic::Ordering::SeqCst);
                    let _ = me.events.send(BackendEvent::Reverted { how: "reboot".to_owned() });
                }
            }
        });
    }

    async fn run(&self, tool: &str, args: &[&str], env: &BTreeMap<String, String>) -> Result<Output, BackendError> {
        let program = self.path(tool);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args).envs(env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Never kill a running commit (it would leave a half-applied router): wait it out.
        cmd.kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| io_error("cannot run", &program, e))?;
        let out = tokio::time::timeout(self.config.tool_timeout(), child.wait_with_output())
            .await
            .map_err(|_| {
                BackendError::new(
                    FailureKind::Deadline,
                    format!("/{tool} did not finish within {:?}", self.config.tool_timeout()),
                )
            })?
            .map_err(|e| io_error("cannot run", &program, e))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Output { ok: out.status.success(), text })
    }

    /// VRRP groups of the running configuration with keepalived's state (see [`vrrp`]). Without
    /// configured groups keepalived is not asked; when it cannot answer, only disabled groups
    /// are listed.
    async fn vrrp_status(&self, active: &Tree) -> Vec<VrrpGroupStatus> {
        let configured = vrrp::configured_groups(active);
        let mut live = Vec::new();
        if configured.iter().any(|g| !g.disabled) {
            let _one = self.vrrp_dump.lock().await;
            match vrrp::dump(&self.config.root, VRRP_DUMP_TIMEOUT).await {
                Ok(json) => live = vrrp::vrrp_groups(&json),
                Err(e @ vrrp::DumpError::NotRunning(_)) => tracing::debug!(error = %e, "no VRRP state"),
                Err(e) => tracing::warn!(error = %e, "no VRRP state"),
            }
        }
        vrrp::with_config_names(live, &configured)
    }

    /// Waits until no commit holds VyOS's commit lock (vyos.md §9.1).
    async fn wait_for_commit_lock(&self) -> Result<(), BackendError> {
        let path = self.path(COMMIT_LOCK);
        let deadline = Instant::now() + Duration::from_secs(self.config.lock_wait_secs);
        loop {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                // Probe with a non-blocking lock, released at once (dropping the file unlocks).
                Ok(f) => match f.try_lock() {
                    Ok(()) => return Ok(()),
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => return Err(io_error("cannot probe", &path, e)),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error("cannot open", &path, e)),
            }
            if Instant::now() >= deadline {
                return Err(BackendError::new(
                    FailureKind::Locked,
                    format!("another commit held the configuration lock for more than {}s", self.config.lock_wait_secs),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Opens a configuration session; returns its environment.
    async fn open_session(&self, comment: &str) -> Result<BTreeMap<String, String>, BackendError> {
        let sid = self.config.session_id.to_string();
        let out = self.run(CLI_SHELL_API, &["getSessionEnv", &sid], &BTreeMap::new()).await?;
        if !out.ok {
            return Err(BackendError::new(FailureKind::Internal, format!("getSessionEnv: {}", out.text.trim())));
        }
        let mut env = output::session_env(&out.text);
        if !env.contains_key("VYATTA_TEMP_CONFIG_DIR") {
            return Err(BackendError::new(
                FailureKind::Internal,
                format!("getSessionEnv printed no session: {}", out.text.trim()),
            ));
        }
        for (k, v) in VYOS_ENV {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env.insert("COMMIT_VIA".to_owned(), self.config.commit_via.clone());
        env.insert("COMMIT_COMMENT".to_owned(), comment.to_owned());
        if self.family.soft_revert() {
            env.insert("SESSION_PID".to_owned(), sid.clone());
            env.insert("_OFR_CONFIGURE".to_owned(), "ok".to_owned());
        }
        let configd = std::fs::read_to_string(self.path("etc/default/vyos-configd-env")).ok();
        if platform::configd_active(configd.as_deref()) {
            env.insert("vyshim".to_owned(), "/usr/sbin/vyshim".to_owned());
        }
        let out = self.run(CLI_SHELL_API, &["setupSession"], &env).await?;
        if !out.ok {
            return Err(BackendError::new(FailureKind::Internal, format!("setupSession: {}", out.text.trim())));
        }
        Ok(env)
    }

    async fn close_session(&self, env: &BTreeMap<String, String>, discard: bool) {
        if discard && let Err(e) = self.run(MY_DISCARD, &[], env).await {
            tracing::warn!(error = %e, "my_discard failed");
        }
        match self.run(CLI_SHELL_API, &["teardownSession"], env).await {
            Ok(o) if !o.text.trim().is_empty() => tracing::debug!(output = %o.text.trim(), "teardownSession"),
            Err(e) => tracing::warn!(error = %e, "teardownSession failed"),
            _ => {}
        }
    }

    async fn stage(&self, commands: &[Command], env: &BTreeMap<String, String>) -> Result<(), BackendError> {
        for cmd in commands {
            let tool = match cmd.op {
                Op::Set => MY_SET,
                Op::Delete => MY_DELETE,
                Op::Comment => MY_COMMENT,
            };
            let mut out = self.run(tool, &cmd.argv(), env).await?;
            // Right after a commit VyOS may refuse edits with a bare "Set failed" while the lock
            // is still held (vyos.md §9.1): wait for the lock and try again, a few times.
            for _ in 0..SET_RETRIES {
                if out.ok || out.text.trim() != "Set failed" {
                    break;
                }
                tracing::debug!(command = %cmd, "transient \"Set failed\"; retrying");
                self.wait_for_commit_lock().await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                out = self.run(tool, &cmd.argv(), env).await?;
            }
            if !out.ok {
                return Err(BackendError::new(FailureKind::Validation, format!("{cmd}: {}", out.text.trim())));
            }
            if !out.text.trim().is_empty() {
                tracing::debug!(command = %cmd, output = %out.text.trim(), "staged");
            }
        }
        Ok(())
    }

    async fn read_active(&self) -> Result<Tree, BackendError> {
        let out = self
            .run(CLI_SHELL_API, &["--show-active-only", "--show-ignore-edit", "showConfig"], &BTreeMap::new())
            .await?;
        if !out.ok {
            return Err(BackendError::new(FailureKind::Internal, format!("showConfig: {}", out.text.trim())));
        }
        Config::parse_hierarchical(&out.text).map(|c| c.tree).map_err(|e| {
            BackendError::new(FailureKind::Internal, format!("the running configuration does not parse: {e}"))
        })
    }
}

#[async_trait]
impl Backend for VyosBackend {
    fn kind(&self) -> &'static str {
        "vyos"
    }

    fn capabilities(&self) -> Vec<String> {
        vec![caps::COMMIT_CONFIRM.to_owned()]
    }

    async fn os_info(&self) -> OsInfo {
        self.os.clone()
    }

    async fn boot_id(&self) -> String {
        std::fs::read_to_string(self.path("proc/sys/kernel/random/boot_id"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    async fn ready(&self) -> Result<(), BackendError> {
        match std::fs::read_to_string(self.path(BOOT_STATUS)) {
            Ok(_) => Ok(()),
            Err(_) => Err(BackendError::new(
                FailureKind::NotReady,
                "VyOS has not finished loading its boot configuration (/tmp/vyos-config-status is missing)",
            )),
        }
    }

    async fn running(&self) -> Result<Tree, BackendError> {
        self.read_active().await
    }

    async fn commit(&self, commands: &[Command], options: &CommitOptions) -> Result<CommitReport, BackendError> {
        let _serial = self.serial.lock().await;
        self.ready().await?;
        self.wait_for_commit_lock().await?;
        let env = self.open_session(&options.comment).await?;
        if let Err(e) = self.stage(commands, &env).await {
            self.close_session(&env, true).await;
            return Ok(CommitReport::Failed { kind: e.kind, output: e.message });
        }
        let changed = self.run(CLI_SHELL_API, &["sessionChanged"], &env).await?;
        if !changed.ok {
            self.close_session(&env, false).await;
            return Ok(CommitReport::NoChange);
        }
        let before = self.read_active().await?;
        let mut commit_env = env.clone();
        if let Some(minutes) = options.confirm_minutes {
            let t = minutes.max(1).to_string();
            let out = self.run(CONFIG_MGMT, &["commit_confirm", "-y", "-t", &t], &env).await?;
            if !out.ok {
                self.close_session(&env, true).await;
                let kind = if out.text.contains("Another confirm is pending") {
                    FailureKind::Locked
                } else {
                    FailureKind::Commit
                };
                return Ok(CommitReport::Failed { kind, output: out.text });
            }
            commit_env.insert("IN_COMMIT_CONFIRM".to_owned(), "t".to_owned());
            self.confirm_pending.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // Right after another commit, VyOS may still hold the lock briefly (vyos.md §9.1).
        self.wait_for_commit_lock().await?;
        let out = self.run(MY_COMMIT, &[], &commit_env).await?;
        if out.ok {
            self.close_session(&env, false).await;
            return Ok(CommitReport::Committed { output: out.text });
        }
        // Failed: the session keeps the failed parts; discard them.
        self.close_session(&env, true).await;
        if output::is_locked(&out.text) {
            return Ok(CommitReport::Failed { kind: FailureKind::Locked, output: out.text });
        }
        let after = self.read_active().await?;
        if after != before {
            let failed_paths = output::failed_paths(&out.text);
            return Ok(CommitReport::Partial { output: out.text, failed_paths });
        }
        Ok(CommitReport::Failed { kind: FailureKind::Commit, output: out.text })
    }

    async fn confirm(&self) -> Result<(), BackendError> {
        let out = self.run(CONFIG_MGMT, &["confirm"], &BTreeMap::new()).await?;
        if out.ok {
            self.confirm_pending.store(false, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        } else {
            Err(BackendError::new(FailureKind::Commit, format!("config-mgmt confirm: {}", out.text.trim())))
        }
    }

    async fn save(&self) -> Result<(), BackendError> {
        let out = self.run(SAVE_CONFIG, &[], &BTreeMap::new()).await?;
        if out.ok {
            Ok(())
        } else {
            Err(BackendError::new(FailureKind::Internal, format!("vyos-save-config.py: {}", out.text.trim())))
        }
    }

    async fn saved(&self) -> Result<bool, BackendError> {
        let path = self.path(SAVED_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| io_error("cannot read", &path, e))?;
        let saved = Config::parse_hierarchical(&text)
            .map_err(|e| BackendError::new(FailureKind::Internal, format!("{}: {e}", path.display())))?;
        Ok(saved.tree == self.read_active().await?)
    }

    async fn status(&self) -> Result<StatusReport, BackendError> {
        let active = self.read_active().await?;
        let mut interfaces = super::configured_interfaces(&active, "unknown");
        let sys = self.path("sys/class/net");
        for i in &mut interfaces {
            sysfs::fill(&sys, i);
        }
        let mut bgp_neighbors = Vec::new();
        if self.path(VTYSH).exists()
            && let Ok(out) = self.run(VTYSH, &["-c", "show bgp summary json"], &BTreeMap::new()).await
            && out.ok
        {
            bgp_neighbors = bgp_summary(&out.text);
        }
        let vrrp_groups = self.vrrp_status(&active).await;
        let uptime = std::fs::read_to_string(self.path("proc/uptime"))
            .ok()
            .and_then(|u| u.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()))
            .map(|s| prost_types::Duration { seconds: s as i64, nanos: 0 });
        Ok(StatusReport {
            at: Some(std::time::SystemTime::now().into()),
            os: Some(self.os.clone()),
            uptime,
            boot_id: self.boot_id().await,
            interfaces,
            bgp_neighbors,
            vrrp_groups,
            running_digest: digest(&active).to_string(),
            config_saved: self.saved().await.unwrap_or(false),
            boot_complete: self.ready().await.is_ok(),
            ..StatusReport::default()
        })
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.events.subscribe()
    }

    fn network(&self) -> watch::Receiver<bool> {
        self.network.subscribe()
    }
}

/// BGP neighbours from FRR's `show bgp summary json` (the `ipv4Unicast`/`ipv6Unicast` peers).
pub fn bgp_summary(json: &str) -> Vec<BgpNeighborStatus> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let mut out = Vec::new();
    for family in ["ipv4Unicast", "ipv6Unicast"] {
        let Some(peers) = v.get(family).and_then(|f| f.get("peers")).and_then(|p| p.as_object()) else { continue };
        for (address, p) in peers {
            out.push(BgpNeighborStatus {
                address: address.clone(),
                vrf: "default".to_owned(),
                remote_as: p.get("remoteAs").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
                state: p.get("state").and_then(|x| x.as_str()).unwrap_or_default().to_owned(),
                uptime: p
                    .get("peerUptimeMsec")
                    .and_then(|x| x.as_u64())
                    .map(|ms| prost_types::Duration { seconds: (ms / 1000) as i64, nanos: 0 }),
                prefixes_received: p.get("pfxRcd").and_then(|x| x.as_u64()).unwrap_or(0),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_summary_reads_frr_json() {
        let j = r#"{"ipv4Unicast":{"peers":{"10.0.0.2":{"remoteAs":65002,"state":"Established","peerUptimeMsec":61000,"pfxRcd":12}}}}"#;
        let n = bgp_summary(j);
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].address.as_str(), n[0].remote_as, n[0].state.as_str()), ("10.0.0.2", 65002, "Established"));
        assert_eq!(n[0].uptime.as_ref().unwrap().seconds, 61);
        assert!(bgp_summary("not json").is_empty());
    }
}
