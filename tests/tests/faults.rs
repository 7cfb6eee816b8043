//! Fault injection: the operator SIGKILLed mid fan-out, an agent SIGKILLed mid-apply after a
//! partial commit, a blackholed then slow then healed path, corrupt or lost PKI state, and
//! clock skew against certificate validity. Real processes, sockets and files; see
//! docs/performance.md, "Fault injection".

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use vrouter_operator::pki::{DirStore, Pki, PkiConfig};
use vrouter_proto::RouterId;
use vrouter_proto::v1::{ApplyOutcome, ConfigPolicy};
use vrouter_tests::Proxy;
use vrouter_tests::faults::{Proc, commit_log, commits_per_revision, free_port, issue_tokens, write_fleet};
use vrouter_tests::{AgentOptions, TestAgent, TestOperator, agent_options, apply_request, wait_until, workspace_bin};

const SECS: Duration = Duration::from_secs(10);

fn outcome(r: &vrouter_proto::v1::ApplyResult) -> ApplyOutcome {
    ApplyOutcome::try_from(r.outcome).unwrap()
}

fn running_boot(state: &Path) -> String {
    std::fs::read_to_string(state.join("sim/active.boot")).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 1. The operator SIGKILLed in the middle of a fan-out.

fn standalone(op_bin: &Path, site: &Path, state: &Path, port: u16, extra: &[&str]) -> Command {
    let mut c = Command::new(op_bin);
    c.args(["--log", "warn", "standalone"])
        .arg(site)
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--poll-ms", "200", "--retry-secs", "1"])
        .args(extra);
    c
}

fn routers_with(sims: &Path, count: usize, commits: usize) -> usize {
    (0..count).filter(|i| commit_log(&sims.join(format!("default_r-{i}"))).len() >= commits).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_sigkilled_mid_fan_out_converges_with_one_commit_per_revision() {
    let large = std::env::var("VROUTER_FAULTS_LARGE").is_ok_and(|v| v == "1");
    let count = if large { 1000 } else { 100 };
    // A rollout in ten batches makes "some but not all routers applied" a window, not a race.
    let batch = count / 10;
    let guard = if large { Duration::from_secs(600) } else { Duration::from_secs(120) };
    let tmp = tempfile::tempdir().unwrap();
    let (site, state, sims) = (tmp.path().join("site"), tmp.path().join("state"), tmp.path().join("sims"));
    write_fleet(&site, count, "r-", "first", batch);
    let op_bin = workspace_bin("vrouter-operator", "vrouter-operator");
    let agent_bin = workspace_bin("vrouter-agent", "vrouter-agent");

    let tokens = issue_tokens(&op_bin, &state, "r-", count, tmp.path());

    let port = free_port();
    let mut operator =
        Proc::spawn("operator", standalone(&op_bin, &site, &state, port, &[]), &tmp.path().join("op1.log"));
    wait_until(SECS, "the operator wrote ca.pem", || async { state.join("ca.pem").exists() }).await;
    // The routers live in their own process: they survive the operator's death.
    let mut fleet = Command::new(&agent_bin);
    fleet
        .args(["--log", "warn", "simulate", "--count", &count.to_string()])
        .args(["--operator", &format!("https://localhost:{port}"), "--ca"])
        .arg(state.join("ca.pem"))
        .arg("--tokens")
        .arg(&tokens)
        .args(["--namespace", "default", "--prefix", "r-", "--state-dir"])
        .arg(&sims)
        // Without commit-confirm: a router whose operator is gone for longer than the proof
        // deadline would (rightly) revert, which is a second commit for the revision.
        .arg("--no-commit-confirm");
    let mut fleet = Proc::spawn("simulate", fleet, &tmp.path().join("sims.log"));

    wait_until(guard, "every router applied the first revision", || async { routers_with(&sims, count, 1) == count })
        .await;
    for i in 0..count {
        assert_eq!(commit_log(&sims.join(format!("default_r-{i}"))).len(), 1, "r-{i} before the change");
    }

    // A template change: every router gets a new revision, ten at a time.
    write_fleet(&site, count, "r-", "second", batch);
    wait_until(guard, "the fan-out started", || async { routers_with(&sims, count, 2) >= 1 }).await;
    operator.kill();
    assert!(fleet.running(), "the simulated routers died with the operator:\n{}", fleet.output());
    let before_restart = routers_with(&sims, count, 2);
    assert!(
        before_restart < count,
        "the fan-out had finished when the operator was killed ({before_restart}/{count}): nothing was tested"
    );

    // Restarted on the same state directory and port: it finishes the rollout.
    let mut operator = Proc::spawn(
        "operator",
        standalone(&op_bin, &site, &state, port, &["--until-synced", "--timeout", &format!("{}s", guard.as_secs())]),
        &tmp.path().join("op2.log"),
    );
    wait_until(guard, "every router applied the second revision", || async {
        (0..count).all(|i| running_boot(&sims.join(format!("default_r-{i}"))).contains("second"))
    })
    .await;
    assert!(operator.wait(guard).await, "the restarted operator did not report synced:\n{}", operator.output());
    for i in 0..count {
        let dir = sims.join(format!("default_r-{i}"));
        let log = commit_log(&dir);
        let per_revision = commits_per_revision(&dir);
        assert!(log.iter().all(|l| l.source == "agent"), "r-{i}: {log:?}");
        assert_eq!(per_revision.len(), 2, "r-{i}: expected two revisions: {log:?}");
        assert!(per_revision.values().all(|&n| n == 1), "r-{i}: a revision committed twice: {per_revision:?}");
        let running = running_boot(&dir);
        assert!(running.contains("description \"second\""), "r-{i} runs:\n{running}");
        assert!(running.contains(&format!("host-name \"r-{i}\"")), "r-{i} runs:\n{running}");
    }
    assert!(fleet.running(), "the simulated routers died:\n{}", fleet.output());
    eprintln!("{count} routers; operator killed after {before_restart} had applied the new revision; all converged");
    fleet.kill();
}

// ---------------------------------------------------------------------------------------------
// 2. The agent SIGKILLed mid-apply, after a partial commit.

const WITH_DNS: &str = "interfaces {\n    ethernet eth0 {\n        address 192.0.2.10/24\n    }\n}\nservice {\n    \
                        dns {\n        forwarding {\n            listen-address 192.0.2.10\n        }\n    }\n}\n\
                        system {\n    host-name edge-1\n}\n";

/// An agent process (`vrouter-agent run`) with the simulated backend and the given `[backend.sim]`
/// lines; enrolls with `token` when given.
fn agent_process(tmp: &Path, op: &TestOperator, token: Option<&str>, sim: &str, run: usize) -> Proc {
    let state = tmp.join("r1");
    let ca = op.write_ca(&tmp.join("conf"));
    let token = token.map(|t| format!("token = \"{t}\"\n")).unwrap_or_default();
    let config = format!(
        "identity = \"test/r1\"\nstate_dir = \"{}\"\n\n[operator]\nendpoint = \"{}\"\nca_file = \"{}\"\n\
         server_name = \"localhost\"\nconnect_timeout_secs = 2\n{token}\n[backend]\nkind = \"sim\"\n\n\
         [backend.sim]\n{sim}\n\n[reconnect]\nmin_delay_ms = 50\nmax_delay_ms = 500\nhealthy_after_secs = 2\n\n\
         [apply]\ncommit_confirm = false\n",
        state.display(),
        op.endpoint(),
        ca.display()
    );
    let path = tmp.join(format!("agent-{run}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut c = Command::new(workspace_bin("vrouter-agent", "vrouter-agent"));
    c.args(["--log", "warn", "run", "--config"]).arg(&path);
    Proc::spawn("agent", c, &tmp.join(format!("agent-{run}.log")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkilled_mid_apply_after_a_partial_commit_is_retried_to_the_desired_state() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), vrouter_tests::fast_hub(), PkiConfig::default(), None).await;
    let id = RouterId::new("test", "r1").unwrap();
    let state = tmp.path().join("r1");
    let token = op.hub.pki().issue_token(&id, None).await.unwrap();
    let partial = "partial_fail_paths = [\"service dns\"]";

    // Run 1: the commit is written (all but `service dns`), then the agent hangs and is killed
    // before it can report or record anything.
    let mut agent =
        agent_process(tmp.path(), &op, Some(&token), &format!("{partial}\nstall_after_commit_ms = 60000"), 1);
    wait_until(SECS, "agent connected", || async { op.hub.session(&id).is_some() }).await;
    let hub = op.hub.clone();
    let first = tokio::spawn({
        let id = id.clone();
        async move { hub.apply(&id, apply_request("rev-1", WITH_DNS, ConfigPolicy::Replace), SECS * 3).await }
    });
    wait_until(SECS, "the partial commit is on the router", || async { commit_log(&state).len() == 1 }).await;
    agent.kill();
    let lost = first.await.unwrap();
    assert!(lost.as_ref().map_or(true, |r| outcome(r) != ApplyOutcome::Applied), "{lost:?}");
    let on_router = running_boot(&state);
    assert!(on_router.contains("host-name \"edge-1\""), "{on_router}");
    assert!(!on_router.contains("dns"), "{on_router}");

    // Run 2: restarted with the fault still there. The router did not record rev-1; the retry
    // reports the partial commit with the failed path.
    let mut agent = agent_process(tmp.path(), &op, None, partial, 2);
    wait_until(SECS, "agent reconnected", || async { op.hub.session(&id).is_some() }).await;
    let hello = op.hub.session(&id).unwrap().hello;
    assert_ne!(hello.last_applied.as_ref().map(|r| r.id.as_str()), Some("rev-1"), "{hello:?}");
    let r = op.hub.apply(&id, apply_request("rev-1", WITH_DNS, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Partial, "{r:?}");
    assert!(format!("{r:?}").contains("service dns"), "the failed path is not reported: {r:?}");
    agent.kill();

    // Run 3: the fault is gone. The same revision is retried and completes.
    let mut agent = agent_process(tmp.path(), &op, None, "", 3);
    wait_until(SECS, "agent reconnected", || async { op.hub.session(&id).is_some() }).await;
    let r = op.hub.apply(&id, apply_request("rev-1", WITH_DNS, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    let desired = vyos_config::digest(&vyos_config::Config::parse(WITH_DNS).unwrap().tree).to_string();
    assert_eq!(r.running_digest, desired);
    let on_router = vyos_config::Config::parse(&running_boot(&state)).unwrap().tree;
    assert_eq!(vyos_config::digest(&on_router).to_string(), desired, "the router's own files");
    // Recorded: delivering it again commits nothing.
    let commits = commit_log(&state).len();
    let again = op.hub.apply(&id, apply_request("rev-1", WITH_DNS, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&again), ApplyOutcome::NoChange, "{again:?}");
    assert_eq!(commit_log(&state).len(), commits);
    agent.kill();
    op.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Blackhole, then slow, then heal (agent_stream.rs covers blackhole → heal → apply).

const DESIRED: &str =
    "interfaces {\n    ethernet eth0 {\n        address 192.0.2.10/24\n    }\n}\nsystem {\n    host-name edge-1\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_then_slow_then_heal_loses_and_duplicates_no_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = vrouter_tests::fast_hub();
    let deadline = hub.heartbeat_interval * hub.heartbeat_misses;
    let op = TestOperator::start(&tmp.path().join("op"), hub, PkiConfig::default(), None).await;
    let proxy = Proxy::start(op.addr).await;
    let agent = TestAgent::start(
        &op,
        "r1",
        &tmp.path().join("r1"),
        AgentOptions { endpoint: proxy.endpoint(), ..agent_options(&op) },
    )
    .await;
    wait_until(SECS, "connected through the proxy", || async { agent.connected() }).await;
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied);

    // Blackhole with a revision in flight: it never arrives, and the hub says so.
    proxy.blackhole();
    let rev2 = DESIRED.replace("edge-1", "edge-2");
    let in_flight = tokio::spawn({
        let (hub, id, rev2) = (op.hub.clone(), agent.id.clone(), rev2.clone());
        async move { hub.apply(&id, apply_request("rev-2", &rev2, ConfigPolicy::Replace), SECS).await }
    });
    // Detected within the heartbeat deadline (plus a margin for a loaded machine).
    wait_until(deadline + Duration::from_secs(2), "the operator drops the blackholed session", || async {
        op.hub.session(&agent.id).is_none()
    })
    .await;
    assert!(op.hub.metrics().heartbeat_timeouts.get() >= 1);
    let lost = in_flight.await.unwrap();
    assert!(lost.is_err(), "an apply over a blackholed path reported {lost:?}");
    assert!(!commits_per_revision(&agent.dir).contains_key("rev-2"), "rev-2 reached the router");

    // Slow (each chunk delayed, well under the heartbeat deadline): the agent reconnects on a
    // new connection and the lost revision is delivered again, once.
    let before = proxy.accepted();
    proxy.slow(Duration::from_millis(40));
    wait_until(SECS * 2, "reconnected over the slow path", || async {
        op.hub.session(&agent.id).is_some() && agent.connected()
    })
    .await;
    assert!(proxy.accepted() > before, "no new connection through the proxy");
    let r = op.hub.apply(&agent.id, apply_request("rev-2", &rev2, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");

    // Healed: a re-delivery of rev-2 (the answer could have been lost) commits nothing; the
    // router catches up with the next revision.
    proxy.heal();
    let r = op.hub.apply(&agent.id, apply_request("rev-2", &rev2, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::NoChange, "rev-2 committed again: {r:?}");
    let rev3 = DESIRED.replace("edge-1", "edge-3");
    let r = op.hub.apply(&agent.id, apply_request("rev-3", &rev3, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::Applied, "{r:?}");
    let r = op.hub.apply(&agent.id, apply_request("rev-3", &rev3, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(outcome(&r), ApplyOutcome::NoChange, "rev-3 committed again: {r:?}");
    let per_revision = commits_per_revision(&agent.dir);
    assert_eq!(
        per_revision.into_iter().collect::<Vec<_>>(),
        [("rev-1".to_owned(), 1), ("rev-2".to_owned(), 1), ("rev-3".to_owned(), 1)]
    );
    assert_eq!(agent.sim().running().await.values(&["system", "host-name"]), ["edge-3"]);
    agent.stop().await;
    proxy.stop();
    op.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Corrupt or lost PKI state: a clear error naming the file, never a new CA.

/// Runs the standalone operator on `state` until it exits (a started operator gives up after
/// a few seconds, which the caller sees as success); returns (success, stderr).
fn start_standalone(site: &Path, state: &Path) -> (bool, String) {
    let out = Command::new(workspace_bin("vrouter-operator", "vrouter-operator"))
        .args(["--log", "warn", "standalone"])
        .arg(site)
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", "127.0.0.1:0", "--timeout", "3s"])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_lost_pki_state_is_refused_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_fleet(&site, 1, "r-", "first", 1);
    // A PKI that has enrolled a router (the layout standalone uses: <state>/pki).
    let good = tmp.path().join("good");
    let op = TestOperator::start(&good, vrouter_tests::fast_hub(), PkiConfig::default(), None).await;
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "router enrolled", || async { op.hub.session(&agent.id).is_some() }).await;
    agent.stop().await;
    op.stop().await;
    let (ok, err) = start_standalone(&site, &good);
    assert!(ok, "the intact state does not start: {err}");

    let case = |name: &str, damage: &dyn Fn(&Path)| {
        let state = tmp.path().join(name);
        copy_dir(&good, &state);
        damage(&state.join("pki"));
        let before = std::fs::read(state.join("pki/ca.crt")).ok();
        let (ok, err) = start_standalone(&site, &state);
        assert!(!ok, "{name}: the operator started on damaged PKI state");
        assert!(err.contains(&state.join("pki").display().to_string()), "{name}: the directory is not named: {err}");
        // Nothing replaced: no new CA was written.
        assert!(std::fs::read(state.join("pki/ca.crt")).ok() == before, "{name}: the CA was replaced");
        err
    };
    let err = case("truncated-key", &|pki| {
        let key = std::fs::read(pki.join("ca.key")).unwrap();
        std::fs::write(pki.join("ca.key"), &key[..key.len() / 2]).unwrap();
    });
    assert!(err.contains("ca.key"), "{err}");
    let err = case("garbage-cert", &|pki| std::fs::write(pki.join("ca.crt"), "not a certificate\n").unwrap());
    assert!(err.contains("ca.crt"), "{err}");
    let err = case("lost-ca", &|pki| {
        std::fs::remove_file(pki.join("ca.crt")).unwrap();
        std::fs::remove_file(pki.join("ca.key")).unwrap();
    });
    assert!(err.contains("ca.crt and ca.key are missing"), "{err}");
    assert!(err.contains("router-test_r1"), "{err}");
    assert!(!tmp.path().join("lost-ca/pki/ca.crt").exists(), "a new CA was created");
}

// ---------------------------------------------------------------------------------------------
// 5. Clock skew: certificates start `clock_skew` before issuance.

#[tokio::test]
async fn a_router_clock_behind_within_the_tolerance_accepts_the_operator_certificate() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    let tmp = tempfile::tempdir().unwrap();
    let skew = Duration::from_secs(300);
    let config = PkiConfig { clock_skew: skew, ..PkiConfig::default() };
    let pki = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), config).await.unwrap();
    // The agent's TLS client: rustls with ring and the operator CA as the only root. Its clock
    // cannot be faked through the harness, so the verification time is given explicitly.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let server = CertificateDer::from_pem_slice(pki.server_identity().cert_pem.as_bytes()).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let now = UnixTime::now().as_secs();
    let behind = |secs: u64| {
        verifier.verify_server_cert(
            &server,
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(now - secs)),
        )
    };

    assert!(behind(0).is_ok());
    assert!(behind(skew.as_secs() - 60).is_ok(), "{:?}", behind(skew.as_secs() - 60));
    let err = behind(skew.as_secs() + 60).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidYet | rustls::CertificateError::NotValidYetContext { .. }
            )
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not valid yet"), "{err}");
}
