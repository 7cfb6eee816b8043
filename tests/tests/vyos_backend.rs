//! The agent's VyOS backend against the `fakevyos` test double: a real hub over mTLS, the real
//! agent with `backend.kind = "vyos"` on a fake VyOS root, and the double's own tools doing the
//! session, validation, commit, commit-confirm, save and hooks.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use vrouter_operator::pki::PkiConfig;
use vrouter_proto::v1::{ApplyOutcome, ConfigPolicy, FailureKind};
use vrouter_tests::*;

const SECS: Duration = Duration::from_secs(30);

const DESIRED: &str = "interfaces {\n    ethernet eth1 {\n        address \"10.0.1.1/24\"\n        description \"lan\"\n    }\n}\nsystem {\n    host-name \"edge-1\"\n}\n";

async fn setup(profile: &str, tmp: &std::path::Path) -> (TestOperator, FakeVyos, TestAgent) {
    let op = TestOperator::start(&tmp.join("op"), fast_hub(), PkiConfig::default(), None).await;
    let fake = FakeVyos::install(&tmp.join("router"), profile);
    let mut options = agent_options(&op);
    options.vyos = Some(fake.backend());
    let agent = TestAgent::start(&op, "r1", &tmp.join("agent"), options).await;
    wait_until(SECS, "connected", || async { agent.connected() }).await;
    (op, fake, agent)
}

fn outcome(r: &vrouter_proto::v1::ApplyResult) -> ApplyOutcome {
    ApplyOutcome::try_from(r.outcome).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_confirms_and_saves_through_the_config_session() {
    let tmp = tempfile::tempdir().unwrap();
    let (op, fake, agent) = setup("rolling", tmp.path()).await;
    let archived_before = fake.status()["archive_revisions"].as_u64().unwrap();

    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    assert!(r.commands.contains(&"set interfaces ethernet eth1 address '10.0.1.1/24'".to_owned()), "{r:?}");
    assert!(r.saved);
    let active = fake.active();
    assert_eq!(active.values(&["system", "host-name"]), ["edge-1"]);
    // Merge left the rest of the router alone.
    assert!(active.exists(&["service", "ssh"]));
    let s = fake.status();
    assert_eq!(s["confirm_pending"], false, "the agent proved reachability and confirmed: {s}");
    assert_eq!(s["saved"], true);
    assert!(s["archive_revisions"].as_u64().unwrap() > archived_before, "{s}");
    assert!(s["sessions"].as_array().unwrap().is_empty(), "session torn down: {s}");

    // The same revision again: no session, no commit.
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::NoChange);
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_vyos_refuses_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (op, fake, agent) = setup("sagitta", tmp.path()).await;
    let before = vyos_config::digest(&fake.active());
    let bad =
        "interfaces {\n    ethernet eth1 {\n        mtu \"99999\"\n    }\n}\nsystem {\n    host-name \"edge-1\"\n}\n";
    let r = op.hub.apply(&agent.id, apply_request("rev-bad", bad, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Failed, "{r:?}");
    assert_eq!(FailureKind::try_from(r.failure_kind).unwrap(), FailureKind::Validation, "{r:?}");
    assert!(r.error.contains("mtu"), "VyOS's own text: {}", r.error);
    assert_eq!(vyos_config::digest(&fake.active()), before, "nothing committed");
    let s = fake.status();
    assert!(s["sessions"].as_array().unwrap().is_empty(), "session discarded and torn down: {s}");
    assert_eq!(s["confirm_pending"], false);
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_another_commits_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let (op, fake, agent) = setup("circinus", tmp.path()).await;
    // A human's commit holds the lock for 2 s.
    let mut holder = std::process::Command::new(fakevyos_bin())
        .arg("ctl")
        .arg(&fake.root)
        .args(["hold-lock", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    assert!(holder.wait().unwrap().success());
    assert_eq!(fake.active().values(&["system", "host-name"]), ["edge-1"]);
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_set_failed_is_retried_and_a_persistent_one_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (op, fake, agent) = setup("rolling", tmp.path()).await;
    fake.ctl(&["set-failures", "2"]);
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    fake.ctl(&["set-failures", "10"]);
    let other = "system {\n    host-name \"edge-2\"\n}\n";
    let r = op.hub.apply(&agent.id, apply_request("rev-2", other, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Failed, "{r:?}");
    assert!(r.error.contains("Set failed"), "{}", r.error);
    assert_eq!(fake.active().values(&["system", "host-name"]), ["edge-1"]);
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_commit_is_reported_with_vyos_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (op, fake, agent) = setup("rolling", tmp.path()).await;
    fake.ctl(&["fail", "interfaces ethernet eth1"]);
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Partial, "{r:?}");
    assert!(r.failed_paths.iter().any(|p| p.contains("interfaces ethernet eth1")), "{r:?}");
    let active = fake.active();
    assert_eq!(active.values(&["system", "host-name"]), ["edge-1"], "the other subtree is committed");
    assert!(!active.exists(&["interfaces", "ethernet", "eth1"]));
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_commit_is_reported_as_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let (op, fake, agent) = setup("rolling", tmp.path()).await;
    let mut events = op.hub.subscribe();
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    fake.ctl(&["manual-commit", "set system host-name 'hand-edited'"]);
    let drift = tokio::time::timeout(SECS, async {
        loop {
            if let Ok(vrouter_operator::hub::HubEvent::Drift { report, .. }) = events.recv().await
                && report.drifted
            {
                return report;
            }
        }
    })
    .await
    .expect("a drift report after the manual commit");
    assert!(drift.paths.iter().any(|p| p.path.contains("system host-name")), "{drift:?}");
    agent.stop().await;
    op.stop().await;
}

/// An agent behind a proxy whose commit of `rev-cut` lands on the fake router, after which the
/// network is cut before the agent can prove reachability: a post-commit hook holds the agent's
/// commit until the cut is made. The confirm timer is still running when this returns.
struct CutAfterCommit {
    op: TestOperator,
    proxy: Proxy,
    fake: FakeVyos,
    agent: TestAgent,
    /// The router's `ctl status` before the commit.
    before: serde_json::Value,
    /// The session epoch before the cut.
    epoch: u64,
}

impl CutAfterCommit {
    async fn start(tmp: &std::path::Path, profile: &str, prepare: &[&str]) -> CutAfterCommit {
        let op = TestOperator::start(&tmp.join("op"), fast_hub(), PkiConfig::default(), None).await;
        let proxy = Proxy::start(op.addr).await;
        let fake = FakeVyos::install(&tmp.join("router"), profile);
        if !prepare.is_empty() {
            fake.ctl(prepare);
        }
        let marker = tmp.join("committed");
        let go = tmp.join("go");
        let hook = fake.root.join("config/scripts/commit/post-hooks.d/00-test");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\n[ \"$COMMIT_VIA\" = vrouter-agent ] || exit 0\ntouch '{}'\nwhile [ ! -f '{}' ]; do sleep 0.05; done\n",
                marker.display(),
                go.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut options = agent_options(&op);
        options.endpoint = proxy.endpoint();
        options.vyos = Some(fake.backend());
        let agent = TestAgent::start(&op, "r1", &tmp.join("agent"), options).await;
        wait_until(SECS, "connected", || async { agent.connected() }).await;
        let before = fake.status();

        let hub = op.hub.clone();
        let id = agent.id.clone();
        let apply =
            tokio::spawn(
                async move { hub.apply(&id, apply_request("rev-cut", DESIRED, ConfigPolicy::Merge), SECS).await },
            );
        wait_until(SECS, "commit", || async { marker.exists() }).await;
        let epoch = op.hub.session(&agent.id).map(|s| s.epoch).unwrap_or(0);
        proxy.blackhole();
        std::fs::write(&go, "").unwrap();
        let _ = apply.await.unwrap();
        CutAfterCommit { op, proxy, fake, agent, before, epoch }
    }

    /// Heals the network, waits for a new session, and re-delivers `rev-cut`.
    async fn heal_and_redeliver(&self) -> vrouter_proto::v1::ApplyResult {
        self.proxy.heal();
        // A new session (the old one died with the cut).
        wait_until(SECS, "reconnected", || async {
            self.op.hub.session(&self.agent.id).is_some_and(|s| s.epoch > self.epoch) && self.agent.connected()
        })
        .await;
        self.op.hub.apply(&self.agent.id, apply_request("rev-cut", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap()
    }

    async fn stop(self) {
        self.agent.stop().await;
        self.op.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_commit_on_1_4_reverts_by_reboot_and_is_reported_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = CutAfterCommit::start(tmp.path(), "sagitta", &[]).await;
    // VyOS 1.4's timer expires: reboot into the saved config (the unconfirmed commit is gone).
    cut.fake.ctl(&["advance", "600"]);
    cut.fake.ctl(&["boot-complete"]);
    assert_eq!(cut.fake.status()["saved_digest"], cut.before["saved_digest"]);
    assert!(!cut.fake.active().exists(&["interfaces", "ethernet", "eth1"]), "the reboot reverted the commit");
    // Re-delivering the revision reports the rollback instead of cutting the router off again.
    let again = cut.heal_and_redeliver().await;
    assert_eq!(outcome(&again), ApplyOutcome::RolledBack, "{again:?}");
    cut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_commit_on_rolling_with_reload_action_is_reverted_softly() {
    let tmp = tempfile::tempdir().unwrap();
    let reload = ["manual-commit", "set system config-management commit-confirm action 'reload'"];
    let cut = CutAfterCommit::start(tmp.path(), "dozenos", &reload).await;
    // The timer expires: a reload (no reboot) puts the last confirmed configuration back.
    cut.fake.ctl(&["advance", "600"]);
    assert_eq!(cut.fake.status()["boot_id"], cut.before["boot_id"], "reload, not reboot");
    assert!(!cut.fake.active().exists(&["interfaces", "ethernet", "eth1"]), "the reload reverted the commit");
    let again = cut.heal_and_redeliver().await;
    assert_eq!(outcome(&again), ApplyOutcome::RolledBack, "{again:?}");
    assert!(again.error.contains("reload"), "the agent saw the soft revert: {}", again.error);
    cut.stop().await;
}

#[test]
fn one_shot_local_apply_and_show_with_the_real_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeVyos::install(&tmp.path().join("router"), "circinus");
    let backend = fake.backend();
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "identity = \"edge/r1\"\nstate_dir = \"{}\"\n[operator]\nendpoint = \"https://localhost:1\"\nca_file = \"/nonexistent\"\n\
             [backend]\nkind = \"vyos\"\n[backend.vyos]\nroot = \"{}\"\nevents_file = \"{}\"\n",
            tmp.path().join("state").display(),
            backend.root.display(),
            backend.events_file.display()
        ),
    )
    .unwrap();
    let desired = tmp.path().join("desired.cmds");
    std::fs::write(&desired, "set system host-name 'edge-1'\nset interfaces ethernet eth1 address '10.0.1.1/24'\n")
        .unwrap();
    let agent = workspace_bin("vrouter-agent", "vrouter-agent");
    let out = std::process::Command::new(&agent)
        .args(["apply", "--json", "--config"])
        .arg(&config)
        .arg(&desired)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "APPLY_OUTCOME_APPLIED", "{v}");
    assert_eq!(v["saved"], true);
    assert_eq!(fake.active().values(&["interfaces", "ethernet", "eth1", "address"]), ["10.0.1.1/24"]);
    assert_eq!(fake.status()["saved"], true);
    let out = std::process::Command::new(&agent).args(["show", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("host-name \"edge-1\"") && text.contains("// digest: sha256:"), "{text}");
    // Boot not complete: refused, nothing touched.
    std::fs::remove_file(fake.root.join("tmp/vyos-config-status")).unwrap();
    std::fs::write(&desired, "set system host-name 'edge-2'\n").unwrap();
    let out =
        std::process::Command::new(&agent).args(["apply", "--config"]).arg(&config).arg(&desired).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vyos-config-status"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.active().values(&["system", "host-name"]), ["edge-1"]);
}

/// Two VRRP groups (IPv4, and IPv6 with an RFC 3768 macvlan) plus a disabled one.
const VRRP: &str = "high-availability {\n    vrrp {\n        group LAN {\n            address 192.0.2.1/24 {\n            }\n            \
interface \"eth1\"\n            priority \"200\"\n            vrid \"10\"\n        }\n        group LAN6 {\n            \
address 2001:db8::1/64 {\n            }\n            interface \"eth1\"\n            rfc3768-compatibility\n            vrid \"11\"\n        }\n        \
group OFF {\n            disable\n            interface \"eth2\"\n            vrid \"12\"\n        }\n    }\n}\n\
interfaces {\n    ethernet eth1 {\n        address \"192.0.2.2/24\"\n    }\n}\n";

/// Waits for a status report from the agent whose VRRP groups are `want`
/// (name, interface, vrid, state).
async fn vrrp_status(
    events: &mut tokio::sync::broadcast::Receiver<vrouter_operator::hub::HubEvent>,
    want: &[(&str, &str, u32, &str)],
) -> vrouter_proto::v1::StatusReport {
    let mut last = None;
    let found = tokio::time::timeout(SECS, async {
        loop {
            match events.recv().await {
                Ok(vrouter_operator::hub::HubEvent::Status { report, .. }) => {
                    let got: Vec<(&str, &str, u32, &str)> = report
                        .vrrp_groups
                        .iter()
                        .map(|g| (g.name.as_str(), g.interface.as_str(), g.vrid, g.state.as_str()))
                        .collect();
                    if got == want {
                        return *report;
                    }
                    last = Some(report.vrrp_groups.clone());
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("hub events: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no status with VRRP groups {want:?}; the last had {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_vrrp_groups_from_keepalived() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = vrouter_operator::hub::HubConfig { status_interval: Duration::from_secs(1), ..fast_hub() };
    let op = TestOperator::start(&tmp.path().join("op"), hub, PkiConfig::default(), None).await;
    let mut events = op.hub.subscribe();
    let fake = FakeVyos::install(&tmp.path().join("router"), "rolling");
    let mut options = agent_options(&op);
    options.vyos = Some(fake.backend());
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("agent"), options).await;
    wait_until(SECS, "connected", || async { agent.connected() }).await;

    // No VRRP configured: no keepalived, an empty list (and a report all the same).
    let report = vrrp_status(&mut events, &[]).await;
    assert!(!report.running_digest.is_empty());
    assert!(fake.status()["keepalived_pid"].is_null());

    let r = op.hub.apply(&agent.id, apply_request("rev-vrrp", VRRP, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    assert!(fake.status()["keepalived_pid"].is_u64(), "the commit started keepalived: {}", fake.status());
    let backup = [("LAN", "eth1", 10, "BACKUP"), ("LAN6", "eth1", 11, "BACKUP"), ("OFF", "eth2", 12, "DISABLED")];
    vrrp_status(&mut events, &backup).await;

    fake.ctl(&["vrrp-state", "LAN", "MASTER"]);
    fake.ctl(&["vrrp-state", "LAN6", "FAULT"]);
    vrrp_status(
        &mut events,
        &[("LAN", "eth1", 10, "MASTER"), ("LAN6", "eth1", 11, "FAULT"), ("OFF", "eth2", 12, "DISABLED")],
    )
    .await;
    // A state number keepalived may add later.
    fake.ctl(&["vrrp-state", "LAN", "7"]);
    vrrp_status(
        &mut events,
        &[("LAN", "eth1", 10, "UNKNOWN"), ("LAN6", "eth1", 11, "FAULT"), ("OFF", "eth2", 12, "DISABLED")],
    )
    .await;

    // keepalived gone (config removed by hand): the list empties, the reports go on.
    fake.ctl(&["manual-commit", "delete high-availability"]);
    assert!(fake.status()["keepalived_pid"].is_null());
    vrrp_status(&mut events, &[]).await;
    agent.stop().await;
    op.stop().await;
}
