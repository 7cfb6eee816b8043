//! The simulated router: its configuration is a config.boot file, changed through the `vyos`
//! crate with the same semantics the real backend has.
//!
//! Files under `<state>/sim/`: the running and saved configurations in two-slot files
//! (`running.{a,b}`, `saved.{a,b}`, see [`crate::slots`]; the saved one starts as VyOS's factory
//! default), readable copies `active.boot` and `config.boot`, and `commits.log` (one line per
//! commit: Unix time, source, comment — tests count commits with it). A simulator needs no
//! fsync: its files survive process crashes, not power loss.
//!
//! Knobs (from the agent configuration, adjustable at run time through [`SimControl`]):
//! commit latency; paths whose commits fail entirely; paths whose subtrees fail in an otherwise
//! successful (partial) commit; paths whose change cuts the router off the network until the
//! commit-confirm timer reverts it; the length of a commit-confirm "minute"; a stall after a
//! commit is written and before it returns (to kill the agent mid-apply).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use vrouter_proto::caps;
use vrouter_proto::v1::{FailureKind, OsInfo, StatusReport};
use vyos_config::{Command, Config, Schema, Tree, apply_commands, digest};

use super::{Backend, BackendError, BackendEvent, CommitOptions, CommitReport, touches};
use crate::config::SimConfig;
use crate::creds::{create_private_dir, unix_now};
use crate::slots::SlotFile;

/// A factory-default configuration, modelled on VyOS's own.
pub const FACTORY_DEFAULT: &str = "\
interfaces {
    ethernet eth0 {
        hw-id \"00:53:00:00:00:01\"
    }
    loopback lo {
    }
}
service {
    ntp {
        allow-client {
            address \"127.0.0.0/8\"
            address \"169.254.0.0/16\"
            address \"10.0.0.0/8\"
            address \"172.16.0.0/12\"
            address \"192.168.0.0/16\"
            address \"::1/128\"
            address \"fe80::/10\"
            address \"fc00::/7\"
        }
        server time1.vyos.net {
        }
        server time2.vyos.net {
        }
        server time3.vyos.net {
        }
    }
}
system {
    config-management {
        commit-revisions \"100\"
    }
    console {
        device ttyS0 {
            speed \"115200\"
        }
    }
    host-name \"vyos\"
    login {
        user vyos {
            authentication {
                encrypted-password \"$6$QxPS.uk6mfo$9QBSo8u1FkH16gMyAVhus6fU3LOzvLR9Z9.82m3tiHFAxTtIkhaZSWssSgzt4v4dGAL8rhVQxTg0oAG9/q11h/\"
                plaintext-password \"\"
            }
        }
    }
    syslog {
        global {
            facility all {
                level \"info\"
            }
            facility local7 {
                level \"debug\"
            }
        }
    }
}
";

/// Run-time knobs of a simulated router.
#[derive(Debug, Clone, Default)]
pub struct SimKnobs {
    /// Time a commit takes.
    pub commit_latency: Duration,
    /// Commits touching these paths fail entirely.
    pub fail_paths: Vec<String>,
    /// Commits touching these paths fail for those subtrees only.
    pub partial_fail_paths: Vec<String>,
    /// Commits touching these paths cut connectivity until reverted.
    pub cut_connectivity_paths: Vec<String>,
    /// Length of one commit-confirm minute.
    pub confirm_minute: Duration,
    /// Time a commit hangs after it is written and recorded, before it returns (an agent killed
    /// in this window leaves a commit it never reported).
    pub stall_after_commit: Duration,
}

impl From<&SimConfig> for SimKnobs {
    fn from(c: &SimConfig) -> Self {
        SimKnobs {
            commit_latency: Duration::from_millis(c.commit_latency_ms),
            fail_paths: c.fail_paths.clone(),
            partial_fail_paths: c.partial_fail_paths.clone(),
            cut_connectivity_paths: c.cut_connectivity_paths.clone(),
            confirm_minute: Duration::from_millis(c.confirm_minute_ms.unwrap_or(60_000)),
            stall_after_commit: Duration::from_millis(c.stall_after_commit_ms),
        }
    }
}

struct Pending {
    before: Tree,
    timer: tokio::task::JoinHandle<()>,
}

struct Inner {
    dir: PathBuf,
    running_slots: SlotFile,
    saved_slots: SlotFile,
    knobs: Mutex<SimKnobs>,
    active: tokio::sync::Mutex<Tree>,
    /// Whether the running configuration differs from the saved one.
    unsaved: std::sync::atomic::AtomicBool,
    pending: Mutex<Option<Pending>>,
    events: broadcast::Sender<BackendEvent>,
    net: watch::Sender<bool>,
    commits: AtomicU64,
    boot_id: String,
    hostname: String,
    started: Instant,
}

/// A simulated router.
#[derive(Clone)]
pub struct SimBackend {
    inner: Arc<Inner>,
}

/// A handle for tests and demos to turn knobs and act "behind the agent's back".
#[derive(Clone)]
pub struct SimControl {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBackend").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BackendError {
    BackendError::new(FailureKind::Internal, format!("{}: {e}", path.display()))
}

fn read_config(slots: &SlotFile, dir: &Path, name: &str) -> Result<Option<Tree>, BackendError> {
    let path = dir.join(name);
    match slots.load() {
        Ok(Some(bytes)) => {
            let text = String::from_utf8(bytes).map_err(|e| io_err(&path, e))?;
            Config::parse(&text).map(|c| Some(c.tree)).map_err(|e| io_err(&path, e))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Stores a configuration in its slots and refreshes the readable copy (written in place: no
/// file is created per write, which matters when thousands of simulated routers commit).
fn write_config(slots: &SlotFile, mirror: &Path, tree: &Tree) -> Result<(), BackendError> {
    let text = vyos_config::render_config(tree, vyos_config::RenderOptions::default());
    slots.store(text.as_bytes()).map_err(|e| io_err(mirror, e))?;
    write_in_place(mirror, text.as_bytes()).map_err(|e| io_err(mirror, e))
}

fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)
}

impl SimBackend {
    /// A simulated router keeping its files in `state_dir/sim`.
    pub fn open(state_dir: &Path, config: &SimConfig) -> Result<Self, BackendError> {
        let dir = state_dir.join("sim");
        create_private_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let saved_slots = SlotFile::new(&dir, "saved", false, 0o644);
        let running_slots = SlotFile::new(&dir, "running", false, 0o644);
        let saved = match read_config(&saved_slots, &dir, "saved")? {
            Some(t) => t,
            None => {
                let t = Config::parse(FACTORY_DEFAULT).map(|c| c.tree).map_err(|e| io_err(&dir, e))?;
                write_config(&saved_slots, &dir.join("config.boot"), &t)?;
                t
            }
        };
        // An agent restart is not a reboot: the running configuration survives it.
        let active = match read_config(&running_slots, &dir, "running")? {
            Some(t) => t,
            None => {
                write_config(&running_slots, &dir.join("active.boot"), &saved)?;
                saved.clone()
            }
        };
        let commits = std::fs::read_to_string(dir.join("commits.log")).map(|t| t.lines().count() as u64).unwrap_or(0);
        let unsaved = digest(&active) != digest(&saved);
        let (events, _) = broadcast::channel(64);
        let (net, _) = watch::channel(true);
        let hostname = config.hostname.clone().unwrap_or_else(|| "vyos-sim".to_owned());
        Ok(SimBackend {
            inner: Arc::new(Inner {
                dir,
                running_slots,
                saved_slots,
                knobs: Mutex::new(SimKnobs::from(config)),
                active: tokio::sync::Mutex::new(active),
                unsaved: std::sync::atomic::AtomicBool::new(unsaved),
                pending: Mutex::new(None),
                events,
                net,
                commits: AtomicU64::new(commits),
                boot_id: format!("sim-{:016x}", rand::random::<u64>()),
                hostname,
                started: Instant::now(),
            }),
        })
    }

    /// The control handle.
    pub fn control(&self) -> SimControl {
        SimControl { inner: self.inner.clone() }
    }
}

impl SimControl {
    /// Changes the knobs.
    pub fn set_knobs(&self, f: impl FnOnce(&mut SimKnobs)) {
        if let Ok(mut k) = self.inner.knobs.lock() {
            f(&mut k);
        }
    }

    /// Commits made so far (across agent restarts).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::SeqCst)
    }

    /// The running configuration.
    pub async fn running(&self) -> Tree {
        self.inner.active.lock().await.clone()
    }

    /// A commit made on the router by someone else (a human at the console): drift.
    pub async fn manual_commit(&self, commands: &[Command]) -> Result<(), BackendError> {
        let mut active = self.inner.active.lock().await;
        let mut next = active.clone();
        apply_commands(&mut next, commands, Schema::vyos())
            .map_err(|e| BackendError::new(FailureKind::Validation, e.to_string()))?;
        write_config(&self.inner.running_slots, &self.inner.dir.join("active.boot"), &next)?;
        *active = next;
        drop(active);
        record_commit(&self.inner, "manual", "console");
        let _ = self.inner.events.send(BackendEvent::Committed { source: "manual".to_owned() });
        Ok(())
    }

    /// Whether the simulated network is up.
    pub fn network_up(&self) -> bool {
        *self.inner.net.borrow()
    }
}

fn record_commit(inner: &Inner, source: &str, comment: &str) {
    inner.commits.fetch_add(1, Ordering::SeqCst);
    inner.unsaved.store(true, Ordering::SeqCst);
    let path = inner.dir.join("commits.log");
    let line = format!("{} {} {}\n", unix_now(), source, comment.replace('\n', " "));
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
}

#[async_trait]
impl Backend for SimBackend {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> Vec<String> {
        vec![caps::COMMIT_CONFIRM.to_owned()]
    }

    async fn os_info(&self) -> OsInfo {
        OsInfo {
            id: "vyos".to_owned(),
            version: "1.4.0 (simulated)".to_owned(),
            pretty_name: "VyOS 1.4.0 (vrouter simulator)".to_owned(),
            family: "sim".to_owned(),
            kernel: String::new(),
            hostname: self.inner.hostname.clone(),
        }
    }

    async fn boot_id(&self) -> String {
        self.inner.boot_id.clone()
    }

    async fn ready(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn running(&self) -> Result<Tree, BackendError> {
        Ok(self.inner.active.lock().await.clone())
    }

    async fn commit(&self, commands: &[Command], options: &CommitOptions) -> Result<CommitReport, BackendError> {
        let knobs = self.inner.knobs.lock().map(|k| k.clone()).unwrap_or_default();
        if !knobs.commit_latency.is_zero() {
            tokio::time::sleep(knobs.commit_latency).await;
        }
        let mut active = self.inner.active.lock().await;
        if let Some(path) = touches(commands, &knobs.fail_paths).into_iter().next() {
            return Ok(CommitReport::Failed {
                kind: FailureKind::Commit,
                output: format!("[[{path}]] failed\nCommit failed"),
            });
        }
        let partial = touches(commands, &knobs.partial_fail_paths);
        let to_apply: Vec<Command> = if partial.is_empty() {
            commands.to_vec()
        } else {
            commands.iter().filter(|c| touches(std::slice::from_ref(c), &partial).is_empty()).cloned().collect()
        };
        let mut next = active.clone();
        // Computed diffs delete a value before setting its replacement: apply additively.
        apply_commands(&mut next, &to_apply, &Schema::additive())
            .map_err(|e| BackendError::new(FailureKind::Validation, e.to_string()))?;
        if next == *active && partial.is_empty() {
            return Ok(CommitReport::NoChange);
        }
        if let Some(minutes) = options.confirm_minutes {
            let mut pending =
                self.inner.pending.lock().map_err(|_| BackendError::new(FailureKind::Internal, "lock"))?;
            if pending.is_some() {
                return Ok(CommitReport::Failed {
                    kind: FailureKind::Locked,
                    output: "Another confirm is pending".to_owned(),
                });
            }
            let inner = self.inner.clone();
            let wait = knobs.confirm_minute * minutes.max(1);
            let timer = tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                revert(&inner).await;
            });
            *pending = Some(Pending { before: active.clone(), timer });
        }
        write_config(&self.inner.running_slots, &self.inner.dir.join("active.boot"), &next)?;
        *active = next;
        drop(active);
        record_commit(&self.inner, "agent", &options.comment);
        if !touches(&to_apply, &knobs.cut_connectivity_paths).is_empty() {
            tracing::warn!("simulated router: this commit cut the network path to the operator");
            self.inner.net.send_replace(false);
        }
        if !knobs.stall_after_commit.is_zero() {
            tokio::time::sleep(knobs.stall_after_commit).await;
        }
        if partial.is_empty() {
            Ok(CommitReport::Committed { output: String::new() })
        } else {
            let output = partial.iter().map(|p| format!("[[{p}]] failed\n")).collect::<String>() + "Commit failed";
            Ok(CommitReport::Partial { output, failed_paths: partial })
        }
    }

    async fn confirm(&self) -> Result<(), BackendError> {
        let pending = self.inner.pending.lock().map_err(|_| BackendError::new(FailureKind::Internal, "lock"))?.take();
        if let Some(p) = pending {
            p.timer.abort();
        }
        Ok(())
    }

    async fn save(&self) -> Result<(), BackendError> {
        let active = self.inner.active.lock().await;
        write_config(&self.inner.saved_slots, &self.inner.dir.join("config.boot"), &active)?;
        self.inner.unsaved.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn saved(&self) -> Result<bool, BackendError> {
        Ok(!self.inner.unsaved.load(Ordering::SeqCst))
    }

    async fn status(&self) -> Result<StatusReport, BackendError> {
        let active = self.inner.active.lock().await.clone();
        let interfaces = super::configured_interfaces(&active, "up");
        Ok(StatusReport {
            at: Some(std::time::SystemTime::now().into()),
            os: Some(self.os_info().await),
            uptime: Some(prost_types::Duration { seconds: self.inner.started.elapsed().as_secs() as i64, nanos: 0 }),
            boot_id: self.inner.boot_id.clone(),
            interfaces,
            running_digest: digest(&active).to_string(),
            config_saved: self.saved().await.unwrap_or(false),
            boot_complete: true,
            ..StatusReport::default()
        })
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.inner.events.subscribe()
    }

    fn network(&self) -> watch::Receiver<bool> {
        self.inner.net.subscribe()
    }
}

/// The confirm timer expired: reload the configuration from before the commit (VyOS's soft
/// revert) and bring the network back.
async fn revert(inner: &Arc<Inner>) {
    let pending = inner.pending.lock().ok().and_then(|mut p| p.take());
    let Some(pending) = pending else { return };
    let mut active = inner.active.lock().await;
    if write_config(&inner.running_slots, &inner.dir.join("active.boot"), &pending.before).is_ok() {
        *active = pending.before;
    }
    drop(active);
    record_commit(inner, "commit-confirm", "revert");
    inner.net.send_replace(true);
    tracing::warn!("simulated router: commit-confirm expired, configuration reverted");
    let _ = inner.events.send(BackendEvent::Reverted { how: "reload".to_owned() });
}

#[cfg(test)]
mod tests {
    use super::*;
    use vyos_config::parse_commands;

    fn cmds(text: &str) -> Vec<Command> {
        parse_commands(text).unwrap()
    }

    #[tokio::test]
    async fn commit_save_and_count() {
        let tmp = tempfile::tempdir().unwrap();
        let sim = SimBackend::open(tmp.path(), &SimConfig::default()).unwrap();
        let ctl = sim.control();
        assert!(sim.running().await.unwrap().exists(&["system", "host-name"]));
        let r = sim
            .commit(&cmds("delete system host-name 'vyos'\nset system host-name 'r1'\n"), &CommitOptions::default())
            .await
            .unwrap();
        assert_eq!(r, CommitReport::Committed { output: String::new() });
        assert_eq!(ctl.commits(), 1);
        assert!(!sim.saved().await.unwrap());
        sim.save().await.unwrap();
        assert!(sim.saved().await.unwrap());
        // Re-opened (agent restart): same running config, same commit count.
        let again = SimBackend::open(tmp.path(), &SimConfig::default()).unwrap();
        assert_eq!(again.running().await.unwrap(), sim.running().await.unwrap());
        assert_eq!(again.control().commits(), 1);
        // Setting what is there changes nothing.
        let r = sim.commit(&cmds("set system host-name 'r1'\n"), &CommitOptions::default()).await.unwrap();
        assert_eq!(r, CommitReport::NoChange);
    }

    #[tokio::test]
    async fn failures_and_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            fail_paths: vec!["protocols bgp".into()],
            partial_fail_paths: vec!["service dns".into()],
            ..Default::default()
        };
        let sim = SimBackend::open(tmp.path(), &cfg).unwrap();
        let before = sim.running().await.unwrap();
        // Commits receive planner output: a changed single value is deleted before it is set.
        let r = sim
            .commit(
                &cmds("delete system host-name 'vyos'\nset system host-name 'x'\nset protocols bgp system-as '1'\n"),
                &CommitOptions::default(),
            )
            .await
            .unwrap();
        assert!(matches!(r, CommitReport::Failed { kind: FailureKind::Commit, .. }));
        assert_eq!(sim.running().await.unwrap(), before);
        let r = sim
            .commit(
                &cmds("delete system host-name 'vyos'\nset system host-name 'x'\nset service dns forwarding listen-address '1.1.1.1'\n"),
                &CommitOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            matches!(r, CommitReport::Partial { ref failed_paths, .. } if failed_paths == &vec!["service dns".to_owned()])
        );
        let now = sim.running().await.unwrap();
        assert_eq!(now.values(&["system", "host-name"]), ["x"]);
        assert!(!now.exists(&["service", "dns"]));
    }

    #[tokio::test]
    async fn confirm_timer_reverts_and_cut_restores() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            cut_connectivity_paths: vec!["interfaces ethernet eth0".into()],
            confirm_minute_ms: Some(50),
            ..Default::default()
        };
        let sim = SimBackend::open(tmp.path(), &cfg).unwrap();
        let mut events = sim.events();
        let before = sim.running().await.unwrap();
        let opts = CommitOptions { confirm_minutes: Some(1), comment: "rev-1".into() };
        sim.commit(&cmds("set interfaces ethernet eth0 address '10.9.9.9/24'\n"), &opts).await.unwrap();
        assert!(!*sim.network().borrow());
        // A second confirm while one is pending is refused, like VyOS.
        let r = sim.commit(&cmds("set system host-name 'y'\n"), &opts).await.unwrap();
        assert!(matches!(r, CommitReport::Failed { kind: FailureKind::Locked, .. }));
        loop {
            if let BackendEvent::Reverted { .. } = events.recv().await.unwrap() {
                break;
            }
        }
        assert_eq!(sim.running().await.unwrap(), before);
        assert!(*sim.network().borrow());
        // Confirmed commits stay.
        sim.commit(&cmds("delete system host-name 'vyos'\nset system host-name 'z'\n"), &opts).await.unwrap();
        sim.confirm().await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(sim.running().await.unwrap().values(&["system", "host-name"]), ["z"]);
    }
}
