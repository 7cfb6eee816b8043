//! The whole guest-agent story on a real VM (QEMU/TCG, qemu-ga on virtio-serial; docs/qga-vm.md):
//! the standalone operator, given only the VM's guest-agent socket, bootstraps the agent into the
//! VM; the agent dials the operator through QEMU's user networking (guestfwd to the host's
//! loopback, through an in-test proxy), enrolls over mTLS and converges the router. Then the
//! operator becomes unreachable from the VM and a new revision arrives through the guest-agent
//! fallback (`vrouter-agent apply` in the guest).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vrouter_operator::qga::{ExecRequest, QgaClient};
use vrouter_tests::Proxy;
use vrouter_tests::vm::{FAKE_VYOS_ROOT, FORWARD_ADDR, Vm, VmOptions};

/// Hang guards only: TCG on a shared 2-core machine is slow.
const BOOT_DEADLINE: Duration = Duration::from_secs(300);
const CONVERGE_DEADLINE: Duration = Duration::from_secs(300);

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn manifests(dir: &Path, socket: &Path, host_name: &str) {
    std::fs::write(
        dir.join("router.yaml"),
        format!(
            r#"apiVersion: vrouter.kojuro.date/v1
kind: VRouterTarget
metadata:
  name: vm1
spec:
  provider:
    type: libvirt
    libvirt: {{socket: "{}"}}
  delivery:
    commitConfirm: {{enabled: false}}
---
apiVersion: vrouter.kojuro.date/v1
kind: VRouterConfig
metadata:
  name: vm1-base
spec:
  targetRef: {{name: vm1}}
  commands: |
    set system host-name '{host_name}'
    set interfaces ethernet eth1 address '192.0.2.1/24'
"#,
            socket.display()
        ),
    )
    .unwrap();
}

/// `key: value` from status.yaml's target document.
fn field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

/// Waits until status.yaml satisfies `ok`; returns it.
async fn wait_status(dir: &Path, what: &str, vm: &Vm, ok: impl Fn(&str) -> bool) -> String {
    let path = dir.join(".vrouter/status.yaml");
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        if ok(&status) {
            return status;
        }
        if Instant::now() >= deadline
            || (!ok(&status) && status.contains("through the guest agent") && what.starts_with("agent"))
        {
            let log = std::fs::read_to_string(dir.parent().unwrap().join("operator.log")).unwrap_or_default();
            panic!("{what}: not reached\n{status}\noperator log:\n{log}\n{}", vm.diagnostics());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn running_host_name(qga: &QgaClient) -> String {
    let api = format!("{FAKE_VYOS_ROOT}/bin/cli-shell-api");
    let out =
        qga.exec(&ExecRequest::new(api, ["--show-active-only", "--show-ignore-edit", "showConfig"])).await.unwrap();
    assert!(out.success(), "{}", out.stderr_lossy());
    let config = vyos_config::Config::parse_hierarchical(&out.stdout_lossy()).unwrap();
    config.tree.values(&["system", "host-name"]).join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_bootstraps_the_agent_into_a_vm_then_falls_back_to_the_guest_agent() {
    // operator ← proxy ← guestfwd (10.0.2.100:PORT in the guest) ← agent.
    let operator_port = free_port();
    let proxy = Proxy::start(format!("127.0.0.1:{operator_port}").parse().unwrap()).await;
    let vm = Vm::boot(VmOptions { forward: Some(proxy.addr.port()), ..VmOptions::default() }).await;
    let qga = vm.wait_for_agent(BOOT_DEADLINE).await;
    // The harness's connection must not hold the channel: qemu-ga serves one client at a time.
    drop(qga);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    std::fs::create_dir_all(&dir).unwrap();
    manifests(&dir, vm.qga_socket(), "vm-one");
    let extra = tmp.path().join("guest-agent.toml");
    std::fs::write(
        &extra,
        format!(
            "[backend.vyos]\nroot = \"{FAKE_VYOS_ROOT}\"\nevents_file = \"{FAKE_VYOS_ROOT}/run/vrouter-agent/commit-events\"\npoll_ms = 200\n\n[operator]\nconnect_timeout_secs = 5\n"
        ),
    )
    .unwrap();
    let agent = vrouter_tests::workspace_bin("vrouter-agent", "vrouter-agent");
    let start = |fallback_after: &str| {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(tmp.path().join("operator.log")).unwrap();
        Operator(
            Command::new(vrouter_tests::workspace_bin("vrouter-operator", "vrouter-operator"))
                .args(["--log", "info", "standalone"])
                .arg(&dir)
                .args(["--listen", &format!("127.0.0.1:{operator_port}"), "--poll-ms", "200"])
                .args(["--qga", "--guest-poll", "1s", "--fallback-after", fallback_after, "--session-wait", "10m"])
                .args(["--guest-endpoint", &format!("https://{FORWARD_ADDR}:{}", proxy.addr.port())])
                .arg("--agent-binary")
                .arg(&agent)
                .arg("--guest-agent-config")
                .arg(&extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    // The bootstrapped agent gets two minutes to enroll (TCG is slow) before any fallback.
    let operator = start("120s");

    // 1. Bootstrap, enrollment through guestfwd, convergence over the agent's stream.
    let status = wait_status(&dir, "agent connected and applied", &vm, |s| {
        s.contains("connected: true")
            && field(s, "appliedRevision").is_some_and(|a| Some(a) == field(s, "desiredRevision"))
    })
    .await;
    if status.contains("through the guest agent") {
        let log = std::fs::read_to_string(tmp.path().join("operator.log")).unwrap_or_default();
        panic!("delivered through the guest agent although the agent was connected:\n{status}\n{log}");
    }
    let qga = QgaClient::unix_socket(vm.qga_socket());
    // The operator's transport holds the channel between its polls; retry until we get it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let name = loop {
        match tokio::time::timeout(Duration::from_secs(20), running_host_name(&qga)).await {
            Ok(n) => break n,
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => panic!("the guest agent channel stayed busy"),
        }
    };
    assert_eq!(name, "vm-one");
    drop(qga);

    // 2. The operator becomes unreachable from the VM (and restarts, with a short fallback
    // deadline and its state); a new revision still gets there.
    drop(operator);
    proxy.stop();
    manifests(&dir, vm.qga_socket(), "vm-two");
    let operator = start("3s");
    let status = wait_status(&dir, "second revision through the guest agent", &vm, |s| {
        s.contains("through the guest agent (vrouter-agent apply")
            && field(s, "appliedRevision").is_some_and(|a| Some(a) == field(s, "desiredRevision"))
    })
    .await;
    assert!(status.contains("outcome: Applied"), "{status}");
    drop(operator);
    let qga = vm.wait_for_agent(BOOT_DEADLINE).await;
    assert_eq!(running_host_name(&qga).await, "vm-two");
}
