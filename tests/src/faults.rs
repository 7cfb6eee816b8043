//! Fault-injection helpers: processes that are killed when a test ends, the simulated routers'
//! commit logs, and generated fleet manifests for the standalone operator. (The TCP proxy that
//! blackholes or slows a path is [`crate::Proxy`].)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name: name.to_owned(), child: Some(child), log: log.to_owned() }
    }

    /// Kills the process with SIGKILL (no shutdown code runs) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop) and waits up to `timeout` for the exit; killed after that.
    pub async fn terminate(&mut self, timeout: Duration) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        let _ = self.wait(timeout).await;
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the process to exit by itself (polling, up to `timeout`; killed after that):
    /// whether it exited with status 0.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        false
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port free right now (for a server that must come back on the same port).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// Enrollment tokens for routers `default/<prefix><i>` from the PKI a standalone operator keeps
/// in `state` (`vrouter-operator tokens`), written to `dir/tokens.txt` for `simulate --tokens`.
pub fn issue_tokens(op_bin: &Path, state: &Path, prefix: &str, count: usize, dir: &Path) -> PathBuf {
    let out = Command::new(op_bin)
        .args(["--log", "warn", "tokens", "--state-dir"])
        .arg(state)
        .args(["--namespace", "default", "--prefix", prefix, "--count", &count.to_string()])
        .output()
        .expect("run vrouter-operator tokens");
    assert!(out.status.success(), "tokens: {}", String::from_utf8_lossy(&out.stderr));
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, &out.stdout).expect("write tokens.txt");
    tokens
}

/// One line of a simulated router's `sim/commits.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitLine {
    /// Who committed: `agent`, `manual` or `commit-confirm`.
    pub source: String,
    /// The commit comment (`vrouter revision <id>` for the agent's).
    pub comment: String,
}

impl CommitLine {
    /// The revision of an agent commit.
    pub fn revision(&self) -> Option<&str> {
        self.comment.strip_prefix("vrouter revision ")
    }
}

/// The commits a simulated router recorded (`<state>/sim/commits.log`; empty if none yet).
pub fn commit_log(state_dir: &Path) -> Vec<CommitLine> {
    let text = std::fs::read_to_string(state_dir.join("sim/commits.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let _time = parts.next()?;
            let source = parts.next()?.to_owned();
            let comment = parts.next().unwrap_or_default().to_owned();
            Some(CommitLine { source, comment })
        })
        .collect()
}

/// Agent commits per revision of a simulated router.
pub fn commits_per_revision(state_dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in commit_log(state_dir) {
        if let Some(r) = line.revision() {
            *out.entry(r.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// Writes a fleet of `count` targets named `<prefix><i>` (namespace `default`), one template
/// whose interface description is `description`, and one binding selecting them all that rolls
/// out `batch` routers at a time: `fleet.yaml` in `dir`.
pub fn write_fleet(dir: &Path, count: usize, prefix: &str, description: &str, batch: usize) {
    std::fs::create_dir_all(dir).expect("create the manifest directory");
    let mut text = fleet_targets(prefix, 0..count);
    text.push_str(&fleet_template(description));
    text.push_str(&fleet_binding(batch));
    // Replaced in one step: the operator polls the directory and must not read half a file.
    let tmp = dir.join(".fleet.yaml.tmp");
    std::fs::write(&tmp, text).expect("write fleet.yaml");
    std::fs::rename(&tmp, dir.join("fleet.yaml")).expect("replace fleet.yaml");
}

/// The fleet's targets `<prefix><i>` for `i` in `range` (label `fleet: faults`, no provider), as
/// YAML documents without a namespace.
pub fn fleet_targets(prefix: &str, range: std::ops::Range<usize>) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for i in range {
        let _ = write!(
            text,
            "---\napiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata:\n  name: {prefix}{i}\n  \
             labels: {{fleet: faults}}\nspec:\n  provider: {{type: none}}\n"
        );
    }
    text
}

/// The fleet's binding `fleet`: template `base` on every target labelled `fleet: faults`, rolled
/// out `batch` routers at a time.
pub fn fleet_binding(batch: usize) -> String {
    format!(
        "---\napiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata:\n  name: fleet\nspec:\n  \
         templateRefs: [{{name: base}}]\n  targetSelector:\n    matchLabels: {{fleet: faults}}\n  rollout:\n    \
         mode: WaitForApplied\n    maxUnavailable: {batch}\n    pollInterval: 300ms\n"
    )
}

/// The fleet's template `base` (host name, and an interface description: change it for a new
/// revision on every router).
pub fn fleet_template(description: &str) -> String {
    format!(
        "---\napiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata:\n  name: base\nspec:\n  config: |\n    \
         system {{\n        host-name \"{{{{ target.name }}}}\"\n    }}\n    interfaces {{\n        ethernet eth0 {{\n            \
         description \"{description}\"\n        }}\n    }}\n"
    )
}
