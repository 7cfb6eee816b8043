//! Leader election on a real Lease: two replicas of the chart's Deployment, one delivering.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use vrouter_tests::cluster::{
    Cluster, OperatorProc, Ports, Release, Routers, chart_dir, enroll, eventually, helm, metric, repo_root, wait_ready,
};
use vrouter_tests::service::{Service, follow_label};

use super::{RELEASE, ROUTERS, SYSTEM, bin};

const LEADER_LABEL: &str = "vrouter.kojuro.date/leader";
/// The chart's (and client-go's) lease timings: 15 s lease, 2 s retry period.
const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(2);

/// What the sampler saw: moments when both replicas led or both held agent sessions.
#[derive(Default)]
struct Overlaps {
    samples: usize,
    both_leading: Vec<String>,
    both_serving: Vec<String>,
    /// The longest run of samples with sessions on both, and when the current run began.
    both_serving_longest: Duration,
    both_serving_since: Option<Instant>,
}

/// Samples both replicas' `/metrics` every 250 ms: `vrouter_leader` and `vrouter_agent_sessions`
/// (a replica that does not answer counts as 0).
fn sample(ports: [u16; 2], out: Arc<Mutex<Overlaps>>, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let started = Instant::now();
        while !stop.is_cancelled() {
            let mut leading = [0.0; 2];
            let mut sessions = [0.0; 2];
            for (i, port) in ports.iter().enumerate() {
                if let Some(text) = vrouter_tests::cluster::http_get(*port, "/metrics").await {
                    leading[i] = metric(&text, "vrouter_leader").unwrap_or(0.0);
                    sessions[i] = metric(&text, "vrouter_agent_sessions").unwrap_or(0.0);
                }
            }
            {
                let mut o = out.lock().unwrap();
                o.samples += 1;
                let at = format!("{:?}: leader {leading:?}, sessions {sessions:?}", started.elapsed());
                if leading.iter().all(|l| *l > 0.0) {
                    o.both_leading.push(at.clone());
                }
                if sessions.iter().all(|s| *s > 0.0) {
                    o.both_serving.push(at);
                    let since = *o.both_serving_since.get_or_insert_with(Instant::now);
                    o.both_serving_longest = o.both_serving_longest.max(since.elapsed());
                } else {
                    o.both_serving_since = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

/// The Lease's holder, acquire time and transitions.
fn lease(cluster: &Cluster, name: &str) -> (String, String, i64) {
    let r = cluster.kubectl(&["-n", SYSTEM, "get", "lease", name, "-o", "json"], None);
    if !r.ok {
        return Default::default();
    }
    let l: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let spec = &l["spec"];
    (
        spec["holderIdentity"].as_str().unwrap_or_default().to_owned(),
        spec["acquireTime"].as_str().unwrap_or_default().to_owned(),
        spec["leaseTransitions"].as_i64().unwrap_or(0),
    )
}

fn has_leader_label(cluster: &Cluster, pod: &str) -> bool {
    cluster.get_json(&["-n", SYSTEM, "get", "pod", pod])["metadata"]["labels"][LEADER_LABEL] == "true"
}

/// RFC 3339 (as the API server prints MicroTime) to a SystemTime, to the second.
fn parse_time(t: &str) -> SystemTime {
    let out = std::process::Command::new("date").args(["-u", "-d", t, "+%s.%N"]).output().unwrap();
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("time {t:?}"));
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// Two replicas of the chart's Deployment on one real Lease (the chart's timings), behind
/// stand-ins for the chart's agent Service (the leader label) and webhook Service (every
/// replica): only the leader runs controllers and holds agent sessions; the leader is SIGKILLed
/// mid-rollout (one router at a time, slow commits); the standby takes over once the lease
/// expires, finishes the rollout with exactly one commit per revision per router; at no sampled
/// moment do both lead or both hold sessions; a replica restarted in the killed pod removes the
/// stale leader label and follows; a graceful stop (SIGTERM) hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
async fn two_replicas_on_a_real_lease_one_delivers_and_the_standby_takes_over() {
    let cluster = Cluster::start(&bin());
    let kubeconfig = cluster.plane.kubeconfig.to_str().unwrap().to_owned();
    cluster.must(&["create", "namespace", ROUTERS], None);
    let webhook_service = Service::start().await;
    let agent_service = Service::start().await;
    let values = serde_json::json!({
        "replicaCount": 2,
        "webhook": {"url": format!("https://127.0.0.1:{}/validate", webhook_service.port())},
        "rbac": {"namespaces": [ROUTERS]},
    });
    helm(&["install", &kubeconfig, SYSTEM, RELEASE, chart_dir().to_str().unwrap(), &values.to_string()])
        .unwrap_or_else(|e| panic!("helm install: {e}\n{}", cluster.plane.logs()));
    let release = Release::read(&cluster, SYSTEM, RELEASE);
    let lease_name = release.flag("lease-name").expect("the chart enables leader election");

    let (pod_a, pod_b) = (format!("{RELEASE}-7c9d5-aaaaa"), format!("{RELEASE}-7c9d5-bbbbb"));
    let (ports_a, ports_b) = (Ports::free(), Ports::free());
    let (state_a, state_b) = (cluster.scratch.path().join("state-a"), cluster.scratch.path().join("state-b"));
    release.create_pod(&cluster, &pod_a);
    release.create_pod(&cluster, &pod_b);
    webhook_service.set_backends(&[ports_a.webhook, ports_b.webhook]);
    let ports_by_pod = BTreeMap::from([(pod_a.clone(), ports_a.agent), (pod_b.clone(), ports_b.agent)]);
    let _endpoints = follow_label(
        &agent_service,
        cluster.plane.kubeconfig.clone(),
        SYSTEM,
        LEADER_LABEL,
        ports_by_pod,
        Duration::from_millis(300),
    );
    let overlaps = Arc::new(Mutex::new(Overlaps::default()));
    let stop_sampling = tokio_util::sync::CancellationToken::new();
    sample([ports_a.metrics, ports_b.metrics], overlaps.clone(), stop_sampling.clone());

    // A starts first and leads; B starts and follows.
    let mut a = release.start(&cluster, &pod_a, ports_a, &state_a);
    wait_ready(&a, || a.log_text()).await;
    eventually(60, "A holds the lease", || lease(&cluster, &lease_name).0 == pod_a, || a.log_text()).await;
    let mut b = release.start(&cluster, &pod_b, ports_b, &state_b);
    wait_ready(&b, || b.log_text()).await;
    let logs =
        |ops: &[&OperatorProc]| ops.iter().map(|o| format!("== {}\n{}", o.pod, o.log_text())).collect::<String>();
    eventually(60, "A labelled as the leader", || has_leader_label(&cluster, &pod_a), || logs(&[&a, &b])).await;
    assert!(!has_leader_label(&cluster, &pod_b), "the follower is not labelled");

    // The quick start (through the webhook Service), routers through the agent Service; commits
    // take 2 s, so the overlay binding (one router at a time) takes a while to roll out.
    let quickstart = repo_root().join("examples/quickstart");
    cluster.must(&["apply", "-n", ROUTERS, "--server-side", "-f", quickstart.to_str().unwrap()], None);
    let endpoint = format!("https://127.0.0.1:{}", agent_service.port());
    let names = ["hub", "branch-1", "branch-2"];
    let (tokens, ca_file) = enroll(&cluster, ROUTERS, &names, &endpoint);
    let sim = vrouter_agent::config::SimConfig { commit_latency_ms: 2_000, ..Default::default() };
    let routers = Routers::start_with(
        &tokens,
        &endpoint,
        &ca_file,
        release.flag("server-dns-name"),
        &cluster.scratch.path().join("routers"),
        &sim,
    );
    for kind in ["vrt", "vrb"] {
        let waited =
            cluster.kubectl(&["-n", ROUTERS, "wait", "--for=condition=Ready", kind, "--all", "--timeout=180s"], None);
        assert!(waited.ok, "{kind} not Ready: {}\n{}", waited.stderr, logs(&[&a, &b]));
    }
    let b_log = b.log_text();
    assert!(
        !b_log.contains("caches synced: reconciling") && !b_log.contains("agent connected"),
        "the follower ran controllers or held sessions:\n{b_log}"
    );

    // A change the overlay rolls out one router at a time. A is SIGKILLed once some routers
    // have the new revision and others do not.
    let revisions = || super::revisions(&cluster);
    let before = revisions();
    let params = std::fs::read_to_string(quickstart.join("10-params.yaml"))
        .unwrap()
        .replace("overlay: 10.255.0.0/24", "overlay: 10.254.0.0/24");
    cluster.must(&["apply", "-n", ROUTERS, "--server-side", "-f", "-"], Some(&params));
    eventually(
        90,
        "the rollout under way (some routers at the new revision, not all)",
        || {
            let n = super::moved(&before, &revisions());
            n >= 1 && n < names.len()
        },
        || format!("{:?}\n{}", revisions(), logs(&[&a, &b])),
    )
    .await;
    let killed_at = (Instant::now(), SystemTime::now());
    a.proc.kill();

    // B takes over once the lease expires: within the lease duration plus two retry periods
    // (one to see the last renewal, one to act; client-go's bound), with 2 s for this machine.
    eventually(60, "B holds the lease", || lease(&cluster, &lease_name).0 == pod_b, || logs(&[&a, &b])).await;
    let took_over = killed_at.0.elapsed();
    let (_, acquired, transitions) = lease(&cluster, &lease_name);
    assert!(transitions >= 1, "the takeover is a lease transition");
    let acquired = parse_time(&acquired);
    assert!(
        acquired + Duration::from_secs(1) >= killed_at.1,
        "B acquired the lease before A was killed: {acquired:?} vs {:?}",
        killed_at.1
    );
    let bound = LEASE + RETRY * 2 + Duration::from_secs(2);
    assert!(took_over <= bound, "B took over after {took_over:?}, more than {bound:?}\n{}", b.log_text());
    eprintln!("leader election: the standby took over {took_over:?} after the leader was killed");

    // B finishes the rollout: every router at the new revision, each revision committed once.
    eventually(
        180,
        "every router at the new revision",
        || super::all_moved(&before, &revisions()),
        || format!("{:?}\n{}", revisions(), b.log_text()),
    )
    .await;
    for name in names {
        assert!(routers.active(name).contains("10.254.0."), "{name}: {}", routers.active(name));
        for (rev, n) in routers.commits(name) {
            assert_eq!(n, 1, "{name}: revision {rev} committed {n} times");
        }
    }
    let b_log = b.log_text();
    let acquired_line = b_log.find("acquired the lease").expect("B logs its acquisition");
    for work in ["caches synced: reconciling", "agent connected"] {
        let at = b_log.find(work).unwrap_or_else(|| panic!("B never logged {work:?}:\n{b_log}"));
        assert!(at > acquired_line, "B logged {work:?} before it acquired the lease:\n{b_log}");
    }
    eventually(30, "B labelled as the leader", || has_leader_label(&cluster, &pod_b), || b.log_text()).await;

    // A replica restarted in A's pod (a container restart keeps the pod and its labels) removes
    // the stale leader label before it serves, and follows.
    let a2 = release.start(&cluster, &pod_a, ports_a, &state_a);
    wait_ready(&a2, || a2.log_text()).await;
    assert!(
        !has_leader_label(&cluster, &pod_a),
        "the restarted follower still carries the leader label:\n{}\n{}",
        cluster.must(&["-n", SYSTEM, "get", "pod", &pod_a, "-o", "yaml", "--show-managed-fields"], None),
        a2.log_text()
    );
    tokio::time::sleep(RETRY * 2).await;
    assert_eq!(lease(&cluster, &lease_name).0, pod_b, "the restarted replica follows");

    // A graceful stop releases the lease: A takes over at once, not after the lease expires,
    // and the routers reconnect to it with nothing committed again.
    let commits_before: Vec<_> = names.iter().map(|n| routers.commits(n)).collect();
    let stopping = Instant::now();
    b.proc.terminate(Duration::from_secs(30)).await;
    eventually(30, "A holds the lease again", || lease(&cluster, &lease_name).0 == pod_a, || logs(&[&a2, &b])).await;
    let handed_over = stopping.elapsed();
    assert!(handed_over < LEASE, "a released lease was taken only after {handed_over:?}");
    assert!(b.log_text().contains("released the lease"), "{}", b.log_text());
    eventually(
        90,
        "every router connected to A",
        || routers.connected() == names.len() && a2.log_text().matches("agent connected").count() >= names.len(),
        || logs(&[&a2, &b]),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let commits_after: Vec<_> = names.iter().map(|n| routers.commits(n)).collect();
    assert_eq!(commits_after, commits_before, "a handover commits nothing");
    eprintln!("leader election: a graceful stop handed over in {handed_over:?}");

    stop_sampling.cancel();
    let o = overlaps.lock().unwrap();
    assert!(o.samples > 100, "the sampler ran ({} samples)", o.samples);
    assert!(o.both_leading.is_empty(), "both replicas led at once: {:?}", o.both_leading);
    // A router that reconnects through stale endpoints may reach a follower, which accepts the
    // stream and delivers nothing (no controllers, no engine); it sends such sessions away every
    // 5 s. So sessions on both may overlap briefly, never for longer than that sweep.
    let longest = o.both_serving_longest;
    assert!(longest < Duration::from_secs(7), "a follower held agent sessions for {longest:?}: {:?}", o.both_serving);
    drop(routers);
}
