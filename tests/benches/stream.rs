//! Agent-stream benchmarks, each beside a bare tonic bidi echo over the same mTLS setup:
//!
//! 1. round trip of a no-change apply (forced through to the agent) vs the echo round trip;
//! 2. operator resident memory per idle session at 1k, 5k and 10k sessions (agents in another
//!    process) vs the echo server's per idle stream;
//! 3. one revision to 1,000 simulated routers until all acknowledged vs the echo fan-out.
//!
//! Run: `cargo bench -p vrouter-tests --bench stream` (add `-- --quick` for smaller sizes).
//! The binary re-executes itself for child roles, so every figure comes from a fresh process.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vrouter_agent::config::{OperatorConfig, ReconnectConfig, SimConfig};
use vrouter_agent::creds::Creds;
use vrouter_agent::simulate::{self, SimulateOptions};
use vrouter_agent::transport;
use vrouter_operator::hub::HubConfig;
use vrouter_operator::pki::PkiConfig;
use vrouter_proto::RouterId;
use vrouter_proto::v1::{ApplyOutcome, ConfigPolicy};

use vrouter_tests::echo::{self, Echo, to_baseline};
use vrouter_tests::measure::{cpu_secs, fmt, percentile, raise_fd_limit, rss_kib, wait_for_stdin_close};
use vrouter_tests::{TestAgent, TestOperator, agent_options, apply_request, wait_until};

const DESIRED: &str = "interfaces {\n    ethernet eth0 {\n        address 192.0.2.10/24\n        description uplink\n    }\n    loopback lo {\n    }\n}\nprotocols {\n    static {\n        route 0.0.0.0/0 {\n            next-hop 192.0.2.1 {\n            }\n        }\n    }\n}\nsystem {\n    host-name edge\n    name-server 192.0.2.53\n}\n";

/// How long the idle CPU is measured: two heartbeat intervals.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The baseline: a bare bidi echo (`vrouter_tests::echo`) over the same mTLS, same server identity.

async fn start_echo_server(op: &TestOperator) -> (Echo, std::net::SocketAddr) {
    let pki = op.hub.pki();
    let id = pki.server_identity().clone();
    let echo = Echo::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    echo.serve(listener, pki.ca_pem(), &id.cert_pem, &id.key_pem);
    (echo, addr)
}

/// One echo client: answers every ApplyRequest at once.
async fn echo_client(cfg: OperatorConfig, creds: vrouter_agent::creds::Loaded) {
    echo::echo_session(&cfg, &creds, None).await;
}

async fn echo_credentials(op: &TestOperator, dir: &Path) -> (OperatorConfig, vrouter_agent::creds::Loaded) {
    let ca_file = op.write_ca(dir);
    let ca = std::fs::read_to_string(&ca_file).unwrap();
    let cfg = OperatorConfig {
        endpoint: op.endpoint(),
        ca_file,
        server_name: Some("localhost".into()),
        token_file: None,
        token: None,
        connect_timeout_secs: 10,
    };
    let id = RouterId::new("bench", "echo").unwrap();
    let token = op.hub.pki().issue_token(&id, None).await.unwrap();
    let loaded = transport::enroll(&cfg, &ca, &id, &token, &Creds::new(dir.join("echo-creds"))).await.unwrap();
    (cfg, loaded)
}

// ---------------------------------------------------------------------------
// 1. Round trip.

async fn bench_round_trip(iterations: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), HubConfig::default(), PkiConfig::default(), None).await;
    let agent = TestAgent::start(&op, "rtt", &tmp.path().join("agent"), agent_options(&op)).await;
    wait_until(Duration::from_secs(10), "agent", || async { agent.connected() }).await;
    let first = op
        .hub
        .apply(&agent.id, apply_request("rev-1", DESIRED, ConfigPolicy::Replace), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first.outcome, ApplyOutcome::Applied as i32);

    let (echo, echo_addr) = start_echo_server(&op).await;
    let (mut cfg, creds) = echo_credentials(&op, tmp.path()).await;
    cfg.endpoint = format!("https://localhost:{}", echo_addr.port());
    tokio::spawn(echo_client(cfg, creds));
    wait_until(Duration::from_secs(10), "echo client", || async { !echo.streams.lock().unwrap().is_empty() }).await;
    let echo_stream = echo.streams.lock().unwrap()[0].clone();

    let plain = apply_request("rev-1", DESIRED, ConfigPolicy::Replace);
    let mut forced = plain.clone();
    forced.force = true;
    let other = vrouter_proto::v1::Revision { id: "not-rev-1".into(), digest: String::new() };
    // (a) The idempotent re-delivery: the hub does not know the router runs rev-1 (as after a
    // QGA delivery or a lost result), forwards it, and the agent acknowledges it by revision id.
    // (b) A forced re-apply: the agent reads the running config and plans; nothing changes.
    let mut a = Vec::with_capacity(iterations);
    let mut b = Vec::with_capacity(iterations);
    let mut base = Vec::with_capacity(iterations);
    for round in 0..iterations + 50 {
        let warm = round < 50;
        op.hub.record_applied(&agent.id, other.clone());
        let t = Instant::now();
        let r = op.hub.apply(&agent.id, plain.clone(), Duration::from_secs(10)).await.unwrap();
        let da = t.elapsed();
        assert_eq!(r.outcome, ApplyOutcome::NoChange as i32);
        assert_eq!(r.output, "revision already applied", "must have reached the agent");
        let t = Instant::now();
        let r = op.hub.apply(&agent.id, forced.clone(), Duration::from_secs(10)).await.unwrap();
        let db = t.elapsed();
        assert_eq!(r.outcome, ApplyOutcome::NoChange as i32);
        let t = Instant::now();
        echo_stream.roundtrip(to_baseline(&plain)).await;
        let de = t.elapsed();
        if !warm {
            a.push(da);
            b.push(db);
            base.push(de);
        }
    }
    assert_eq!(agent.sim().commits(), 1, "no-change applies must not commit");
    for v in [&mut a, &mut b, &mut base] {
        v.sort();
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let row = |label: &str, v: &[Duration]| {
        println!(
            "| {label} | {} | {} | {} | **{:.2}×** |",
            fmt(mean(v)),
            fmt(percentile(v, 0.5)),
            fmt(percentile(v, 0.99)),
            mean(v).as_secs_f64() / mean(&base).as_secs_f64()
        )
    };
    println!("\n## 1. No-change apply round trip over mTLS ({iterations} iterations each, interleaved)\n");
    println!("| | mean | p50 | p99 | vs echo (mean) |");
    println!("|---|---:|---:|---:|---:|");
    row("(a) re-delivered revision, acknowledged by the agent by revision id", &a);
    row("(b) forced: the agent reads the running config and plans (nothing to commit)", &b);
    row("bare tonic bidi echo: same request and result messages, same mTLS (baseline)", &base);
    agent.stop().await;
    op.stop().await;
}

// ---------------------------------------------------------------------------
// Child processes.

fn spawn_self(args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// `simulate-child ENDPOINT CA TOKENS COUNT STATE`: simulated agents until stdin closes.
async fn simulate_child(args: &[String]) {
    raise_fd_limit();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let options = SimulateOptions {
        count: args[4].parse().unwrap(),
        namespace: "bench".into(),
        prefix: "r".into(),
        endpoint: args[1].clone(),
        ca_file: PathBuf::from(&args[2]),
        server_name: Some("localhost".into()),
        tokens_file: Some(PathBuf::from(&args[3])),
        state_dir: PathBuf::from(&args[5]),
        sim: SimConfig { confirm_minute_ms: Some(60_000), ..SimConfig::default() },
        commit_confirm: true,
        reconnect: ReconnectConfig { min_delay_ms: 200, max_delay_ms: 5000, healthy_after_secs: 30 },
    };
    let fleet = simulate::start(&options, &shutdown).unwrap();
    wait_for_stdin_close().await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), fleet.join()).await;
}

/// `echo-child ENDPOINT CA CREDS-DIR COUNT`: echo clients until stdin closes.
async fn echo_child(args: &[String]) {
    raise_fd_limit();
    let cfg = OperatorConfig {
        endpoint: args[1].clone(),
        ca_file: PathBuf::from(&args[2]),
        server_name: Some("localhost".into()),
        token_file: None,
        token: None,
        connect_timeout_secs: 30,
    };
    let creds = Creds::new(&args[3]).load().unwrap().unwrap();
    let count: usize = args[4].parse().unwrap();
    for i in 0..count {
        tokio::spawn(echo_client(cfg.clone(), creds.clone()));
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_for_stdin_close().await;
}

async fn write_tokens(op: &TestOperator, count: usize, path: &Path) {
    let mut text = String::new();
    for i in 0..count {
        let id = RouterId::new("bench", format!("r{i}")).unwrap();
        let token = op.hub.pki().issue_token(&id, None).await.unwrap();
        text.push_str(&format!("{id} {token}\n"));
    }
    std::fs::write(path, text).unwrap();
}

// ---------------------------------------------------------------------------
// 2. Memory per idle session (run in a fresh process per size).

/// `rss-run N hub|echo`: in a fresh process, the resident memory added per idle session
/// (agents or echo clients in a child process). Prints "RSS <kib per session> <child kib per client>".
async fn rss_run(count: usize, mode: &str) {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let hub = HubConfig { max_sessions: count + 100, ..HubConfig::default() };
    let op = TestOperator::start(&tmp.path().join("op"), hub, PkiConfig::default(), None).await;
    let ca = op.write_ca(tmp.path());
    let me = std::process::id();
    let (before, mut child, echo) = if mode == "hub" {
        let tokens = tmp.path().join("tokens.txt");
        write_tokens(&op, count, &tokens).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(me);
        let child = spawn_self(&[
            "simulate-child".into(),
            op.endpoint(),
            ca.display().to_string(),
            tokens.display().to_string(),
            count.to_string(),
            tmp.path().join("agents").display().to_string(),
        ]);
        (before, child, None)
    } else {
        let (echo, echo_addr) = start_echo_server(&op).await;
        let _ = echo_credentials(&op, tmp.path()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(me);
        let child = spawn_self(&[
            "echo-child".into(),
            format!("https://localhost:{}", echo_addr.port()),
            ca.display().to_string(),
            tmp.path().join("echo-creds").display().to_string(),
            count.to_string(),
        ]);
        (before, child, Some(echo))
    };
    let waited = Instant::now();
    loop {
        let n = match &echo {
            None => op.hub.session_count(),
            Some(e) => e.streams.lock().unwrap().len(),
        };
        if n >= count || waited.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Idle with heartbeats running.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(me);
    let child_rss = rss_kib(child.id());
    // CPU at idle over two heartbeat intervals (15 s each), for both sides.
    let (cpu0, child_cpu0) = (cpu_secs(me), cpu_secs(child.id()));
    tokio::time::sleep(IDLE_WINDOW).await;
    let cpu = (cpu_secs(me) - cpu0) / IDLE_WINDOW.as_secs_f64() * 100.0;
    let child_cpu = (cpu_secs(child.id()) - child_cpu0) / IDLE_WINDOW.as_secs_f64() * 100.0;
    drop(child.stdin.take());
    let _ = child.wait();
    println!(
        "RSS {:.1} {:.1} {cpu:.2} {child_cpu:.2}",
        after.saturating_sub(before) as f64 / count as f64,
        child_rss as f64 / count as f64
    );
}

// ---------------------------------------------------------------------------
// 3. Fan-out.

async fn bench_fanout(count: usize) {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let op = TestOperator::start(&tmp.path().join("op"), HubConfig::default(), PkiConfig::default(), None).await;
    let ca = op.write_ca(tmp.path());
    let tokens = tmp.path().join("tokens.txt");
    write_tokens(&op, count, &tokens).await;
    let mut child = spawn_self(&[
        "simulate-child".into(),
        op.endpoint(),
        ca.display().to_string(),
        tokens.display().to_string(),
        count.to_string(),
        tmp.path().join("agents").display().to_string(),
    ]);
    wait_until(Duration::from_secs(300), "all sessions", || async { op.hub.session_count() == count }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Ok(marker) = std::env::var("BENCH_MARKER") {
        // Lets a profiler attach for the fan-out only.
        std::fs::write(&marker, format!("{} {}", std::process::id(), child.id())).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let ids: Vec<RouterId> = (0..count).map(|i| RouterId::new("bench", format!("r{i}")).unwrap()).collect();

    println!("\n## 3. One revision to {count} simulated routers (agents in another process)\n");
    println!("| variant | all acknowledged | p50 per router | p99 per router | outcomes |");
    println!("|---|---:|---:|---:|---|");
    for (label, rev, save, confirm) in [
        ("first revision to freshly enrolled routers (creates their state files); default safety", "rev-0", true, true),
        ("next revision, default safety: commit-confirm, reachability proof, save", "rev-a", true, true),
        ("next revision, commit only (no confirm, no save)", "rev-b", false, false),
    ] {
        let desired = DESIRED.replace("host-name edge", &format!("host-name {rev}"));
        let mut request = apply_request(rev, &desired, ConfigPolicy::Replace);
        request.save = save;
        if let Some(cc) = request.commit_confirm.as_mut() {
            cc.enabled = confirm;
        }
        let start = Instant::now();
        let results = futures::future::join_all(ids.iter().map(|id| {
            let hub = op.hub.clone();
            let request = request.clone();
            async move {
                let t = Instant::now();
                let r = hub.apply(id, request, Duration::from_secs(120)).await;
                (t.elapsed(), r)
            }
        }))
        .await;
        let total = start.elapsed();
        let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
        lat.sort();
        let applied =
            results.iter().filter(|(_, r)| r.as_ref().is_ok_and(|r| r.outcome == ApplyOutcome::Applied as i32)).count();
        println!(
            "| {label} | **{}** | {} | {} | {applied}/{count} applied |",
            fmt(total),
            fmt(percentile(&lat, 0.5)),
            fmt(percentile(&lat, 0.99))
        );
        // What the others got, by kind (the first words of the message), most common first.
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for (_, r) in &results {
            let kind = match r {
                Ok(r) if r.outcome == ApplyOutcome::Applied as i32 => continue,
                Ok(r) => format!(
                    "{:?}: {} / {}",
                    ApplyOutcome::try_from(r.outcome),
                    r.error.chars().take(120).collect::<String>(),
                    r.output.chars().take(80).collect::<String>()
                ),
                Err(e) => format!("error: {}", e.to_string().chars().take(120).collect::<String>()),
            };
            *kinds.entry(kind).or_default() += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        for (kind, n) in kinds.iter().take(5) {
            eprintln!("  not applied ({n}): {kind}");
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    op.stop().await;

    // Baseline: the same fan-out over bare echo streams.
    let op = TestOperator::start(&tmp.path().join("op"), HubConfig::default(), PkiConfig::default(), None).await;
    let (echo, echo_addr) = start_echo_server(&op).await;
    let (_, _) = echo_credentials(&op, tmp.path()).await;
    let mut child = spawn_self(&[
        "echo-child".into(),
        format!("https://localhost:{}", echo_addr.port()),
        ca.display().to_string(),
        tmp.path().join("echo-creds").display().to_string(),
        count.to_string(),
    ]);
    wait_until(Duration::from_secs(300), "all echo streams", || async { echo.streams.lock().unwrap().len() == count })
        .await;
    let request = to_baseline(&apply_request("rev-e", DESIRED, ConfigPolicy::Replace));
    let (total, lat) = echo.fan_out(&request).await;
    println!(
        "| bare tonic bidi echo (baseline) | **{}** | {} | {} | {count}/{count} answered |",
        fmt(total),
        fmt(percentile(&lat, 0.5)),
        fmt(percentile(&lat, 0.99))
    );
    drop(child.stdin.take());
    let _ = child.wait();
    op.stop().await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match args.first().map(String::as_str) {
        Some("simulate-child") => runtime.block_on(simulate_child(&args)),
        Some("echo-child") => runtime.block_on(echo_child(&args)),
        Some("rss-run") => runtime.block_on(rss_run(args[1].parse().unwrap(), &args[2])),
        _ => {
            let quick = args.iter().any(|a| a == "--quick");
            let only = |name: &str| {
                !args.iter().any(|a| a.starts_with("--only=")) || args.iter().any(|a| a == &format!("--only={name}"))
            };
            println!("# Agent stream benchmarks ({})", if quick { "quick" } else { "full" });
            if only("rtt") {
                runtime.block_on(bench_round_trip(if quick { 300 } else { 3000 }));
            }
            if only("rss") {
                println!(
                    "\n## 2. Operator memory per idle session and CPU at idle (agents in another process; \
                     RSS after 5 s idle, then CPU over {} s with heartbeats every 15 s)\n",
                    IDLE_WINDOW.as_secs()
                );
                println!(
                    "| sessions | vrouter hub, KiB per session | bare echo server, KiB per stream | ratio | \
                     hub CPU at idle | echo CPU at idle | simulated agents, KiB per router | agents' CPU at idle |"
                );
                println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
                let sizes: &[usize] = if quick { &[200, 1000] } else { &[1000, 5000, 10_000] };
                let measure = |n: usize, mode: &str| -> Option<[f64; 4]> {
                    let out = Command::new(std::env::current_exe().unwrap())
                        .args(["rss-run", &n.to_string(), mode])
                        .output()
                        .ok()?;
                    let text = String::from_utf8_lossy(&out.stdout);
                    let line = text.lines().find(|l| l.starts_with("RSS "))?;
                    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                    Some([*v.first()?, *v.get(1)?, *v.get(2)?, *v.get(3)?])
                };
                for &n in sizes {
                    match (measure(n, "hub"), measure(n, "echo")) {
                        (Some([ours, agents, cpu, agents_cpu]), Some([base, _, base_cpu, _])) => println!(
                            "| {n} | **{ours:.1}** | {base:.1} | {:.2}× | **{cpu:.2} %** | {base_cpu:.2} % | {agents:.1} | {agents_cpu:.2} % |",
                            ours / base.max(0.1)
                        ),
                        _ => println!("| {n} | failed | | | | | | |"),
                    }
                }
            }
            if only("fanout") {
                let chosen: Vec<usize> = args
                    .iter()
                    .find_map(|a| a.strip_prefix("--fanout="))
                    .map_or_else(Vec::new, |l| l.split(',').filter_map(|n| n.parse().ok()).collect());
                let sizes = if !chosen.is_empty() {
                    chosen
                } else if quick {
                    vec![200]
                } else {
                    vec![1000, 10_000]
                };
                for n in sizes {
                    runtime.block_on(bench_fanout(n));
                }
            }
        }
    }
}
