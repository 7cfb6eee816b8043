//! The agent stream end to end: real TLS over loopback, the real hub and the real agent code
//! with the simulated backend. No mocks of our own code.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use vrouter_agent::config::OperatorConfig;
use vrouter_agent::creds::Creds;
use vrouter_agent::transport;
use vrouter_operator::metrics::Metrics;
use vrouter_operator::pki::PkiConfig;
use vrouter_proto::RouterId;
use vrouter_proto::v1::{AgentMessage, ApplyOutcome, ConfigPolicy, Hello, agent_message, controller_message};
use vrouter_tests::{AgentOptions, Proxy, TestAgent, TestOperator, agent_options, apply_request, fast_hub, wait_until};

const DESIRED: &str =
    "interfaces {\n    ethernet eth0 {\n        address 192.0.2.10/24\n    }\n}\nsystem {\n    host-name edge-1\n}\n";
const SECS: Duration = Duration::from_secs(10);

fn operator_config(endpoint: String, ca: std::path::PathBuf) -> OperatorConfig {
    OperatorConfig {
        endpoint,
        ca_file: ca,
        server_name: Some("localhost".into()),
        token_file: None,
        token: None,
        connect_timeout_secs: 5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_accepts_once_and_refuses_bad_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let ca = std::fs::read_to_string(op.write_ca(tmp.path())).unwrap();
    let cfg = operator_config(op.endpoint(), tmp.path().join("ca.pem"));
    let a = RouterId::new("test", "a").unwrap();
    let creds = Creds::new(tmp.path().join("a"));

    // Happy path.
    let token = op.hub.pki().issue_token(&a, None).await.unwrap();
    let loaded = transport::enroll(&cfg, &ca, &a, &token, &creds).await.unwrap();
    assert!(loaded.not_after > loaded.not_before);
    // The same token again.
    let e = transport::enroll(&cfg, &ca, &a, &token, &Creds::new(tmp.path().join("a2"))).await.unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    // A token for another router.
    let b = RouterId::new("test", "b").unwrap();
    let for_b = op.hub.pki().issue_token(&b, None).await.unwrap();
    let e = transport::enroll(&cfg, &ca, &a, &for_b, &Creds::new(tmp.path().join("a3"))).await.unwrap_err();
    assert!(e.to_string().contains("not for test/a"), "{e}");
    // An expired token.
    let expired = op.hub.pki().issue_token(&b, Some(Duration::ZERO)).await.unwrap();
    let e = transport::enroll(&cfg, &ca, &b, &expired, &Creds::new(tmp.path().join("b"))).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // A made-up token.
    let e = transport::enroll(&cfg, &ca, &b, "vrt1.invented", &Creds::new(tmp.path().join("b2"))).await.unwrap_err();
    assert!(e.to_string().contains("unknown"), "{e}");
    // Every refusal counted by reason.
    let m = op.hub.metrics();
    assert_eq!(Metrics::count(&m.enrollments, "ok"), 1);
    assert_eq!(Metrics::count(&m.enrollments, "token_used"), 1);
    assert_eq!(Metrics::count(&m.enrollments, "wrong_identity"), 1);
    assert_eq!(Metrics::count(&m.enrollments, "token_expired"), 1);
    assert_eq!(Metrics::count(&m.enrollments, "unknown_token"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_a_cannot_say_hello_as_b() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let ca = std::fs::read_to_string(op.write_ca(tmp.path())).unwrap();
    let cfg = operator_config(op.endpoint(), tmp.path().join("ca.pem"));
    let a = RouterId::new("test", "a").unwrap();
    let token = op.hub.pki().issue_token(&a, None).await.unwrap();
    let loaded = transport::enroll(&cfg, &ca, &a, &token, &Creds::new(tmp.path().join("a"))).await.unwrap();

    let channel = transport::connect(&cfg, &loaded.ca_pem, Some(&loaded)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello { identity: "test/b".into(), ..Hello::default() })),
    })
    .await
    .unwrap();
    let err = transport::client(channel).connect(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("certificate is for test/a"), "{}", err.message());
    assert_eq!(Metrics::count(&op.hub.metrics().session_refusals, "identity_mismatch"), 1);

    // Without a client certificate the stream is refused outright.
    let plain = transport::connect(&cfg, &ca, None).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello { identity: "test/a".into(), ..Hello::default() })),
    })
    .await
    .unwrap();
    let err = transport::client(plain).connect(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(op.hub.session_count(), 0);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_round_trip_and_the_same_revision_twice_commits_once() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "agent connected", || async { op.hub.session(&agent.id).is_some() }).await;

    let result = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(result.outcome).unwrap(), ApplyOutcome::Applied, "{result:?}");
    assert!(result.saved);
    assert!(result.commands.iter().any(|c| c == "set system host-name 'edge-1'"), "{:?}", result.commands);
    let running = agent.sim().running().await;
    let desired = vyos_config::Config::parse(DESIRED).unwrap().tree;
    assert_eq!(vyos_config::digest(&running), vyos_config::digest(&desired));
    assert_eq!(result.running_digest, vyos_config::digest(&desired).to_string());
    assert_eq!(agent.sim().commits(), 1);

    // The same revision again: acknowledged, not committed (by the hub's record)...
    let again = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(again.outcome).unwrap(), ApplyOutcome::NoChange);
    // ...and forced through to the agent it is still not committed (nothing to change).
    let mut forced = apply_request("rev-1", DESIRED, ConfigPolicy::Replace);
    forced.force = true;
    let forced = op.hub.apply(&agent.id, forced, SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(forced.outcome).unwrap(), ApplyOutcome::NoChange);
    assert_eq!(agent.sim().commits(), 1);

    // The running config can be fetched through the operator.
    let rc = op.hub.running_config(&agent.id, SECS).await.unwrap();
    assert!(rc.config.contains("host-name \"edge-1\""), "{}", rc.config);
    assert_eq!(rc.digest, vyos_config::digest(&desired).to_string());
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_reconnects_without_recommitting() {
    let tmp = tempfile::tempdir().unwrap();
    let op_dir = tmp.path().join("op");
    let op = TestOperator::start(&op_dir, fast_hub(), PkiConfig::default(), None).await;
    let addr = op.addr;
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "agent connected", || async { op.hub.session(&agent.id).is_some() }).await;
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::Applied);
    assert_eq!(agent.sim().commits(), 1);

    op.stop().await;
    wait_until(SECS, "agent notices", || async { !agent.connected() }).await;
    // A new operator process: same PKI, same port, no memory of sessions.
    let op = TestOperator::start(&op_dir, fast_hub(), PkiConfig::default(), Some(addr)).await;
    wait_until(SECS, "agent reconnected", || async { op.hub.session(&agent.id).is_some() }).await;
    let info = op.hub.session(&agent.id).unwrap();
    assert_eq!(info.hello.last_applied.as_ref().map(|r| r.id.as_str()), Some("rev-1"));
    // Delivering the revision again (what a restarted controller does) commits nothing.
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::NoChange);
    assert_eq!(agent.sim().commits(), 1);
    // A new revision still applies.
    let next = DESIRED.replace("edge-1", "edge-2");
    let r = op.hub.apply(&agent.id, apply_request("rev-2", &next, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::Applied);
    assert_eq!(agent.sim().commits(), 2);
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_for_the_same_router_fences_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let first = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "first connected", || async { op.hub.session(&first.id).is_some() }).await;
    wait_until(SECS, "first agent has its Welcome", || async { first.connected() }).await;
    let first_epoch = op.hub.session(&first.id).unwrap().epoch;

    // A second process with the same credentials (a cloned VM, a restarted agent whose old
    // process lingers): copy the state directory.
    let second_dir = tmp.path().join("r1-copy");
    std::fs::create_dir_all(&second_dir).unwrap();
    for f in ["identity.pem", "ca.pem"] {
        std::fs::copy(first.dir.join(f), second_dir.join(f)).unwrap();
    }
    let second = TestAgent::start(&op, "r1", &second_dir, AgentOptions { enroll: false, ..agent_options(&op) }).await;
    wait_until(SECS, "second took over", || async { op.hub.session(&first.id).is_some_and(|s| s.epoch > first_epoch) })
        .await;
    wait_until(SECS, "first fenced", || async { !first.connected() }).await;
    wait_until(SECS, "second has its Welcome", || async { second.connected() }).await;
    let why = first.observer.last_error.lock().unwrap().clone().unwrap_or_default();
    assert!(why.contains("FENCED"), "first session ended for another reason: {why}");
    assert!(Metrics::count(&op.hub.metrics().session_refusals, "identity_mismatch") == 0);
    assert!(op.hub.metrics().sessions_fenced.get() >= 1);
    // Applies go to the winner only.
    let r = op.hub.apply(&second.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::Applied);
    assert_eq!(second.sim().commits(), 1);
    assert_eq!(first.sim().commits(), 0);
    // The fenced agent backs off (maximum delay) instead of fighting for the session.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(op.hub.session(&second.id).unwrap().epoch, op.hub.session(&first.id).unwrap().epoch);
    first.stop().await;
    second.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_path_is_detected_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let proxy = Proxy::start(op.addr).await;
    let agent = TestAgent::start(
        &op,
        "r1",
        &tmp.path().join("r1"),
        AgentOptions { endpoint: proxy.endpoint(), ..agent_options(&op) },
    )
    .await;
    wait_until(SECS, "connected through the proxy", || async { agent.connected() }).await;

    proxy.blackhole();
    let cut = std::time::Instant::now();
    // Heartbeat deadline: 200 ms × 3 misses on the operator; the agent's is about the same.
    wait_until(Duration::from_secs(3), "operator drops the session", || async { op.hub.session(&agent.id).is_none() })
        .await;
    wait_until(Duration::from_secs(3), "agent drops the session", || async { !agent.connected() }).await;
    let detected = cut.elapsed();
    let why = agent.observer.last_error.lock().unwrap().clone().unwrap_or_default();
    assert!(why.contains("heartbeat") || why.contains("stream error"), "agent ended its session because: {why}");
    assert!(detected < Duration::from_secs(3), "detected after {detected:?}");
    assert!(op.hub.metrics().heartbeat_timeouts.get() >= 1);

    proxy.heal();
    wait_until(SECS, "reconnected after healing", || async { op.hub.session(&agent.id).is_some() }).await;
    let r = op.hub.apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::Applied);
    agent.stop().await;
    proxy.stop();
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_only_its_own_session() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = vrouter_operator::hub::HubConfig { max_message_bytes: 64 * 1024, ..fast_hub() };
    let op = TestOperator::start(&tmp.path().join("op"), hub, PkiConfig::default(), None).await;
    let good = TestAgent::start(&op, "good", &tmp.path().join("good"), agent_options(&op)).await;
    wait_until(SECS, "good agent connected", || async { op.hub.session(&good.id).is_some() }).await;

    // A hostile client: valid credentials, then a 1 MiB frame.
    let ca = std::fs::read_to_string(op.write_ca(tmp.path())).unwrap();
    let cfg = operator_config(op.endpoint(), tmp.path().join("ca.pem"));
    let bad = RouterId::new("test", "bad").unwrap();
    let token = op.hub.pki().issue_token(&bad, None).await.unwrap();
    let loaded = transport::enroll(&cfg, &ca, &bad, &token, &Creds::new(tmp.path().join("bad"))).await.unwrap();
    let channel = transport::connect(&cfg, &loaded.ca_pem, Some(&loaded)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello { identity: "test/bad".into(), ..Hello::default() })),
    })
    .await
    .unwrap();
    let mut inbound = transport::client(channel).connect(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(matches!(inbound.message().await.unwrap().unwrap().msg, Some(controller_message::Msg::Welcome(_))));
    wait_until(SECS, "bad session registered", || async { op.hub.session(&bad).is_some() }).await;
    let huge = vrouter_proto::v1::DriftReport {
        paths: vec![vrouter_proto::v1::DriftPath { path: "x".repeat(1024 * 1024), kind: 1 }],
        ..Default::default()
    };
    tx.send(AgentMessage { msg: Some(agent_message::Msg::Drift(huge)) }).await.unwrap();
    wait_until(SECS, "bad session ended", || async { op.hub.session(&bad).is_none() }).await;
    assert_eq!(Metrics::count(&op.hub.metrics().stream_errors, "oversized"), 1);

    // The other router never noticed.
    assert!(good.connected());
    let r = op.hub.apply(&good.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::Applied);
    good.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_over_the_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let op_dir = tmp.path().join("op");
    let pki =
        PkiConfig { client_cert_lifetime: Duration::from_secs(6), clock_skew: Duration::ZERO, ..PkiConfig::default() };
    let op = TestOperator::start(&op_dir, fast_hub(), pki.clone(), None).await;
    let addr = op.addr;
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "connected", || async { op.hub.session(&agent.id).is_some() }).await;
    let first = Creds::new(&agent.dir).load().unwrap().unwrap();
    // Renewal is due when a third of the lifetime is left (after 4 s).
    wait_until(Duration::from_secs(8), "certificate renewed", || async {
        Creds::new(&agent.dir).load().unwrap().is_some_and(|c| c.not_after > first.not_after)
    })
    .await;
    assert!(vrouter_operator::metrics::Metrics::count(&op.hub.metrics().renewals, "ok") >= 1);
    // Wait until the first certificate has expired, then force a reconnect: only the renewed
    // certificate can open a session now.
    let wait = u64::try_from(first.not_after - vrouter_agent::creds::unix_now() + 1).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    op.stop().await;
    let op = TestOperator::start(&op_dir, fast_hub(), pki, Some(addr)).await;
    wait_until(SECS, "reconnected with the renewed certificate", || async { op.hub.session(&agent.id).is_some() })
        .await;
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_router_ends_its_session_and_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "connected", || async { op.hub.session(&agent.id).is_some() }).await;
    op.hub.revoke(&agent.id).await.unwrap();
    wait_until(SECS, "session ended", || async { op.hub.session(&agent.id).is_none() }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(op.hub.session(&agent.id).is_none(), "a revoked router must not reconnect");
    assert!(Metrics::count(&op.hub.metrics().session_refusals, "certificate") >= 1);
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_does_not_serve_refuses_sessions_until_it_does() {
    // A follower's hub: an agent that reaches it is refused at once and keeps retrying.
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    op.hub.set_serving(false);
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    let refused = || Metrics::count(&op.hub.metrics().session_refusals, "not_leader");
    wait_until(SECS, "refused twice", || async { refused() >= 2 }).await;
    assert!(op.hub.session(&agent.id).is_none() && !agent.connected());
    // It leads now: the agent's next attempt opens a session.
    op.hub.set_serving(true);
    wait_until(SECS, "connected", || async { op.hub.session(&agent.id).is_some() }).await;
    agent.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_cuts_the_router_off_is_rolled_back_and_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), fast_hub(), PkiConfig::default(), None).await;
    let mut options = agent_options(&op);
    options.sim.cut_connectivity_paths = vec!["interfaces ethernet eth0".into()];
    options.sim.confirm_minute_ms = Some(300);
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), options).await;
    wait_until(SECS, "connected", || async { agent.connected() }).await;
    let before = agent.sim().running().await;

    // This revision changes the management interface: the simulated router loses its path to
    // the operator as soon as it commits.
    let first = op.hub.apply(&agent.id, apply_request("rev-cut", DESIRED, ConfigPolicy::Merge), SECS).await;
    // The session dies with the path, so the operator loses this answer...
    assert!(first.is_err() || first.as_ref().is_ok_and(|r| r.outcome == ApplyOutcome::RolledBack as i32), "{first:?}");
    // ...the agent could not prove reachability, did not confirm, and the timer reverted it.
    wait_until(SECS, "reverted and reconnected", || async { agent.connected() && agent.sim().network_up() }).await;
    assert_eq!(vyos_config::digest(&agent.sim().running().await), vyos_config::digest(&before));
    assert_eq!(agent.sim().commits(), 2, "the commit and its revert");

    // Re-delivering the same revision (what a controller does after a lost answer) reports the
    // rollback instead of cutting the router off again.
    let again = op.hub.apply(&agent.id, apply_request("rev-cut", DESIRED, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(again.outcome).unwrap(), ApplyOutcome::RolledBack, "{again:?}");
    assert!(again.error.contains("rolled back"), "{}", again.error);
    assert_eq!(agent.sim().commits(), 2);

    // A revision that leaves the management interface alone applies.
    let safe = "system {\n    host-name edge-1\n}\n";
    let r = op.hub.apply(&agent.id, apply_request("rev-safe", safe, ConfigPolicy::Merge), SECS).await.unwrap();
    assert_eq!(ApplyOutcome::try_from(r.outcome).unwrap(), ApplyOutcome::Applied, "{r:?}");
    assert_eq!(agent.sim().commits(), 3);
    agent.stop().await;
    op.stop().await;
}

/// A TLS connection to the operator without a client certificate that completes the
/// handshake and then sends nothing.
struct Silent {
    /// When the handshake completed.
    opened: tokio::time::Instant,
    /// When the operator closed it.
    closed: tokio::sync::oneshot::Receiver<tokio::time::Instant>,
}

impl Silent {
    /// Opens one from `source` (a loopback address).
    async fn open(op: &TestOperator, source: &str) -> Silent {
        use rustls_pki_types::pem::PemObject;
        use tokio::io::AsyncReadExt;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(op.hub.pki().ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let tcp = socket.connect(op.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
        let opened = tokio::time::Instant::now();
        let (tx, closed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            // EOF, or an error (closed without close_notify, reset): closed either way.
            while let Ok(1..) = tls.read(&mut buf).await {}
            let _ = tx.send(tokio::time::Instant::now());
        });
        Silent { opened, closed }
    }

    /// How long after the handshake the operator closed it (`None`: not within `within`).
    async fn lifetime(self, within: Duration) -> Option<Duration> {
        let closed = tokio::time::timeout(within, self.closed).await.ok()?.ok()?;
        Some(closed - self.opened)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_are_capped_and_closed_while_agents_get_through() {
    let tmp = tempfile::tempdir().unwrap();
    let deadline = Duration::from_secs(6);
    let server = vrouter_operator::hub::ServerConfig {
        preface_timeout: deadline,
        max_unauthenticated_per_source: 10,
        max_unauthenticated: 15,
        ..Default::default()
    };
    let op = TestOperator::start_with(&tmp.path().join("op"), fast_hub(), server, PkiConfig::default(), None).await;
    let m = op.hub.metrics().clone();
    let refusals = |reason: &str| Metrics::count(&m.connection_refusals, reason);
    let unauthenticated = || m.unauthenticated_connections.get();

    // 12 silent connections from one address: 10 are held, 2 refused for the source.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(Silent::open(&op, "127.0.0.2").await);
    }
    wait_until(SECS, "2 refused for their source", || async { refusals("unauthenticated_per_source") == 2 }).await;
    assert_eq!(unauthenticated(), 10);

    // A real agent enrolls (a connection without a certificate: there is room) and connects.
    let agent = TestAgent::start(&op, "r1", &tmp.path().join("r1"), agent_options(&op)).await;
    wait_until(SECS, "agent connected", || async { op.hub.session(&agent.id).is_some() }).await;
    wait_until(SECS, "the enrollment connection is gone", || async { unauthenticated() == 10 }).await;

    // 7 more from another address: 5 fill the total of 15, 2 are refused for the total.
    for _ in 0..7 {
        silent.push(Silent::open(&op, "127.0.0.3").await);
    }
    wait_until(SECS, "2 refused for the total", || async { refusals("unauthenticated_total") == 2 }).await;
    assert_eq!(unauthenticated(), 15);

    // The cap is full. A verified certificate is not subject to it: the agent reconnects...
    let epoch = op.hub.session(&agent.id).unwrap().epoch;
    op.hub.close_all("test: reconnect");
    wait_until(SECS, "agent reconnected", || async { op.hub.session(&agent.id).is_some_and(|s| s.epoch > epoch) })
        .await;
    let epoch = op.hub.session(&agent.id).unwrap().epoch;
    // ...while an enrollment is refused, and says why.
    let ca = std::fs::read_to_string(op.write_ca(tmp.path())).unwrap();
    let cfg = operator_config(op.endpoint(), tmp.path().join("ca.pem"));
    let r2 = RouterId::new("test", "r2").unwrap();
    let token = op.hub.pki().issue_token(&r2, None).await.unwrap();
    let e = transport::enroll(&cfg, &ca, &r2, &token, &Creds::new(tmp.path().join("r2"))).await.unwrap_err();
    assert!(e.to_string().contains("too many connections without a client certificate (at most 15)"), "{e}");
    assert_eq!(refusals("unauthenticated_total"), 3);
    assert_eq!(Metrics::count(&m.enrollments, "ok"), 1);

    // The 15 held connections are closed at the deadline after their handshake, not before; the
    // 4 refused ones were closed long before.
    let lifetimes = futures::future::join_all(silent.into_iter().map(|s| s.lifetime(deadline * 2))).await;
    let lifetimes: Vec<Duration> =
        lifetimes.into_iter().map(|l| l.expect("a silent connection still open long after the deadline")).collect();
    let at_deadline = lifetimes.iter().filter(|l| **l >= deadline - Duration::from_millis(100)).count();
    let early = lifetimes.iter().filter(|l| **l < deadline / 2).count();
    assert_eq!((at_deadline, early), (15, 4), "{lifetimes:?}");
    assert_eq!(refusals("preface_timeout"), 15);
    wait_until(SECS, "no unauthenticated connection left", || async { unauthenticated() == 0 }).await;
    let text = m.encode();
    for line in [
        "vrouter_agent_connections_refused_total{reason=\"preface_timeout\"} 15",
        "vrouter_agent_connections_refused_total{reason=\"unauthenticated_per_source\"} 2",
        "vrouter_agent_connections_refused_total{reason=\"unauthenticated_total\"} 3",
        "vrouter_agent_unauthenticated_connections 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    // The agent's connection sent its first request in time: the deadline left it alone.
    assert_eq!(op.hub.session(&agent.id).map(|s| s.epoch), Some(epoch));
    // With room again, the enrollment goes through.
    transport::enroll(&cfg, &ca, &r2, &token, &Creds::new(tmp.path().join("r2"))).await.unwrap();
    agent.stop().await;
    op.stop().await;
}
