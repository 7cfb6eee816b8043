//! End to end: the real `vrouter-operator standalone` binary reaches a "router" only through a
//! real `qemu-ga` (libvirt provider: the agent's unix socket). The guest is this machine under
//! the guest agent's user (`nobody` when the tests run as root), and its VyOS is a fake root
//! (`fakevyos`) that the guest layout and the agent's backend both point at.
//!
//! - bootstrap: no agent in the guest; the operator copies its agent binary in, writes
//!   `agent.toml` with a fresh token, starts it; the agent enrolls, connects and converges.
//! - fallback through the agent binary: an agent that is installed but cannot reach the
//!   operator; after the deadline the operator runs `vrouter-agent apply` in the guest.
//! - fallback through the fixed script: no agent and no bootstrap (mode QGA); the operator plans
//!   against the running config read over the guest agent and runs `apply.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vrouter_tests::FakeVyos;
use vrouter_tests::qga::{AGENT_ID, QemuGa};

/// A guest: qemu-ga plus a fake VyOS root it can write, and cleanup of agents it started.
struct Guest {
    qga: QemuGa,
    vyos: FakeVyos,
}

impl Guest {
    fn start() -> Guest {
        let qga = QemuGa::start();
        let vyos = FakeVyos::install(qga.scratch(), "sagitta");
        chown_tree(vyos.root.as_path());
        Guest { qga, vyos }
    }

    fn root(&self) -> &Path {
        &self.vyos.root
    }

    /// `[backend.vyos]` settings for agents in this guest (fake root, fast polling).
    fn agent_extra(&self) -> String {
        format!(
            "[backend.vyos]\nroot = \"{}\"\nevents_file = \"{}\"\npoll_ms = 100\nlock_wait_secs = 10\n",
            self.root().display(),
            self.root().join("run/vrouter-agent/commit-events").display()
        )
    }

    fn host_name(&self) -> Vec<String> {
        self.vyos.active().values(&["system", "host-name"]).to_vec()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // A bootstrapped agent runs detached: stop it with the guest.
        if let Ok(pid) = std::fs::read_to_string(self.vyos.root.join("run/vrouter-agent.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn chown_tree(path: &Path) {
    if !is_root() {
        return;
    }
    let st = Command::new("chown").args(["-R", &format!("{AGENT_ID}:{AGENT_ID}")]).arg(path).status().unwrap();
    assert!(st.success());
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn manifests(dir: &Path, socket: &Path, mode: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("router.yaml"),
        format!(
            r#"apiVersion: vrouter.kojuro.date/v1
kind: VRouterTarget
metadata:
  name: r1
spec:
  provider:
    type: libvirt
    libvirt: {{socket: "{}"}}
  delivery:
    mode: {mode}
    commitConfirm: {{enabled: false}}
---
apiVersion: vrouter.kojuro.date/v1
kind: VRouterConfig
metadata:
  name: r1-base
spec:
  targetRef: {{name: r1}}
  commands: |
    set system host-name 'edge-1'
    set interfaces ethernet eth1 address '192.0.2.1/24'
"#,
            socket.display()
        ),
    )
    .unwrap();
}

/// The standalone operator on `dir` with the guest-agent path to `guest` (listening on a free
/// port, polling fast); callers add their own flags.
fn operator(dir: &Path, guest: &Guest, log: &str) -> Command {
    let agent_config = dir.join("guest-agent.toml");
    std::fs::write(&agent_config, guest.agent_extra()).unwrap();
    let mut command = Command::new(vrouter_tests::workspace_bin("vrouter-operator", "vrouter-operator"));
    command
        .args(["--log", log, "standalone"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--poll-ms", "200"])
        .args(["--qga", "--guest-poll", "1s", "--guest-root"])
        .arg(guest.root())
        .arg("--guest-agent-config")
        .arg(&agent_config);
    command
}

/// Runs the standalone operator with the guest-agent path until the router is synced.
fn sync(dir: &Path, guest: &Guest, extra: &[&str]) -> String {
    let out = operator(dir, guest, "info").args(["--until-synced", "--timeout", "150s"]).args(extra).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "not synced:\n{stdout}\n{stderr}\nqemu-ga log:\n{}\nagent log:\n{}",
        guest.qga.log(),
        std::fs::read_to_string(guest.root().join("var/log/vrouter-agent.log")).unwrap_or_default()
    );
    format!("{stdout}\n{stderr}")
}

fn agent_bin() -> PathBuf {
    vrouter_tests::workspace_bin("vrouter-agent", "vrouter-agent")
}

fn status(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".vrouter/status.yaml")).unwrap()
}

#[test]
fn bootstrap_copies_configures_and_starts_the_agent_which_then_converges() {
    let guest = Guest::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    manifests(&dir, guest.qga.socket(), "Auto");
    let agent = agent_bin();
    sync(&dir, &guest, &["--agent-binary", agent.to_str().unwrap(), "--fallback-after", "120s"]);

    assert_eq!(guest.host_name(), ["edge-1"]);
    // The agent was copied in, configured with a token and enrolled over mTLS.
    let root = guest.root();
    let copied = root.join("config/vrouter-agent/bin/vrouter-agent");
    assert_eq!(std::fs::read(&copied).unwrap().len(), std::fs::read(&agent).unwrap().len());
    assert_eq!(std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o755);
    let config = std::fs::read_to_string(root.join("config/vrouter-agent/agent.toml")).unwrap();
    assert!(config.contains("identity = \"default/r1\""), "{config}");
    assert_eq!(std::fs::metadata(root.join("config/vrouter-agent")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::metadata(root.join("config/vrouter-agent/agent.toml")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Delivered over the agent's stream, not the fallback.
    let status = status(&dir);
    assert!(!status.contains("through the guest agent"), "{status}");
    assert!(status.contains("connected: true"), "{status}");
}

#[test]
fn an_agent_that_cannot_connect_gets_the_revision_through_its_one_shot_apply() {
    let guest = Guest::start();
    let root = guest.root().to_owned();
    // Installed and configured (as if baked into the image), but pointed at a dead endpoint.
    let bin = root.join("usr/bin/vrouter-agent");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(agent_bin(), &bin).unwrap();
    let agent_dir = root.join("config/vrouter-agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("ca.pem"), "").unwrap();
    std::fs::write(
        agent_dir.join("agent.toml"),
        format!(
            "identity = \"default/r1\"\nstate_dir = \"{}\"\n[operator]\nendpoint = \"https://127.0.0.1:1\"\nca_file = \"{}\"\n[backend]\nkind = \"vyos\"\n{}",
            agent_dir.join("state").display(),
            agent_dir.join("ca.pem").display(),
            guest.agent_extra()
        ),
    )
    .unwrap();
    chown_tree(&root);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    manifests(&dir, guest.qga.socket(), "Auto");
    // No binary to copy and bootstrap off: only the fallback can deliver, after 2 s.
    std::fs::write(
        dir.join("router.yaml"),
        std::fs::read_to_string(dir.join("router.yaml"))
            .unwrap()
            .replace("mode: Auto", "mode: Auto\n    bootstrap: false"),
    )
    .unwrap();
    let out = sync(&dir, &guest, &["--fallback-after", "2s"]);

    assert_eq!(guest.host_name(), ["edge-1"]);
    assert_eq!(guest.vyos.active().values(&["interfaces", "ethernet", "eth1", "address"]), ["192.0.2.1/24"]);
    let status = status(&dir);
    assert!(status.contains("through the guest agent (vrouter-agent apply"), "{status}\n{out}");
    // The agent recorded the operator's revision, so its next session will not commit again.
    let state = std::fs::read_dir(agent_dir.join("state"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect::<String>();
    let revision = status_field(&status, "appliedRevision");
    assert!(state.contains(&revision), "agent state lacks {revision}: {state}");
    // The staged files (they carry secret values) are gone.
    let staged: Vec<_> = std::fs::read_dir(agent_dir.join("qga")).unwrap().collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn without_any_agent_the_fixed_script_applies_and_saves() {
    let guest = Guest::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    manifests(&dir, guest.qga.socket(), "QGA");
    let out = sync(&dir, &guest, &[]);

    assert_eq!(guest.host_name(), ["edge-1"]);
    let status = status(&dir);
    assert!(status.contains("through the guest agent (apply script"), "{status}\n{out}");
    // Committed through VyOS's session (the fake's commit log) and saved.
    let saved = std::fs::read_to_string(guest.root().join("config/config.boot")).unwrap();
    assert!(saved.contains("edge-1"), "{saved}");
    let events = std::fs::read_to_string(guest.root().join("fake/events")).unwrap();
    assert!(events.contains("commit"), "no commit event: {events}");

    // A second run changes nothing: the plan against the running config is empty.
    let out = sync(&dir, &guest, &[]);
    let status = self::status(&dir);
    assert!(status.contains("already runs this revision"), "{status}\n{out}");
}

#[test]
fn a_refused_command_leaves_the_router_untouched_and_is_reported() {
    let guest = Guest::start();
    let before = guest.vyos.active();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    manifests(&dir, guest.qga.socket(), "QGA");
    // A path VyOS does not know: my_set refuses it, nothing is committed.
    std::fs::write(
        dir.join("router.yaml"),
        std::fs::read_to_string(dir.join("router.yaml"))
            .unwrap()
            .replace("set system host-name 'edge-1'", "set system host-name 'edge-1'\n    set protocols nosuch thing"),
    )
    .unwrap();
    let out = operator(&dir, &guest, "warn").args(["--until-synced", "--timeout", "20s"]).output().unwrap();
    assert!(!out.status.success(), "synced with an invalid command");
    let status = status(&dir);
    assert!(status.contains("Failed through the guest agent"), "{status}");
    assert!(status.contains("nosuch"), "the error names the command: {status}");
    assert_eq!(guest.vyos.active(), before, "something was committed");
}

/// The value of `key:` in status.yaml (first occurrence).
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[test]
fn a_reboot_that_lost_unsaved_state_is_delivered_again_once() {
    let guest = Guest::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    manifests(&dir, guest.qga.socket(), "QGA");
    // Not saved: a reboot brings back the saved configuration.
    std::fs::write(
        dir.join("router.yaml"),
        std::fs::read_to_string(dir.join("router.yaml"))
            .unwrap()
            .replace("  commands: |", "  save: false\n  commands: |"),
    )
    .unwrap();
    let operator = operator(&dir, &guest, "warn")
        .args(["--retry-secs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut operator = KillOnDrop(operator);
    let commits = || {
        std::fs::read_to_string(guest.root().join("fake/events"))
            .unwrap()
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("commit"))
            .count()
    };
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "{what}\n{}", status(&dir));
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait("first delivery", &|| guest.host_name() == ["edge-1"]);
    let after_first = commits();
    assert!(!std::fs::read_to_string(guest.root().join("config/config.boot")).unwrap().contains("edge-1"));

    // The next boot completes only when the test says so.
    guest.vyos.ctl(&["boot-time", "manual"]);
    guest.vyos.ctl(&["reboot"]);
    chown_tree(guest.root());
    assert_eq!(guest.host_name(), ["vyos"], "the reboot did not bring back the saved config");
    // Nothing is applied before VyOS has loaded its boot configuration; then it is.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(guest.host_name(), ["vyos"], "applied before the boot completed");
    guest.vyos.ctl(&["boot-complete"]);
    // The double ran as this test's user: give what it wrote back to the guest agent's.
    chown_tree(guest.root());
    wait("delivery after the reboot", &|| guest.host_name() == ["edge-1"]);
    // Once per boot: a few more polls commit nothing more.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = operator.0.kill();
    let _ = operator.0.wait();
    assert_eq!(commits(), after_first + 1, "{}", std::fs::read_to_string(guest.root().join("fake/events")).unwrap());
}

/// A child process killed when the test ends, panicking or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
