//! One standalone operator process — the real `vrouter-operator standalone` binary (release
//! build) on a directory of N targets — with N simulated routers (`vrouter_agent::simulate`, in
//! this process) connected over mTLS with the agent's default reconnect settings. For each N:
//!
//! 1. first convergence: enrollment of every router and its first revision;
//! 2. the operator's resident memory per router (whole process: sessions, rendered configs,
//!    status) and CPU at idle over two heartbeat intervals;
//! 3. one template change fanned out end to end: from the manifest written to each router having
//!    applied (the directory poll, rendering N targets, the rollout, delivery, the routers' work);
//! 4. reconnect storm: the operator killed (SIGKILL) and restarted with every router connected:
//!    time until every session is back, and the commits and applies it caused (target 0);
//!
//! and the same steps on the baseline, measured in the same run: a bare tonic bidi echo server
//! (`vrouter_tests::echo`) in a child process, with the operator's own server certificate, on the
//! same port, and N echo clients in this process using the routers' own client certificates,
//! reconnecting 50 ms after a loss (as fast as is reasonable: the floor for a storm).
//!
//! Run: `cargo bench -p vrouter-tests --bench standalone` (sizes 1,000, 5,000 and 10,000;
//! `-- --quick` for 300; `-- --sizes=5000` for chosen sizes; `BENCH_OPERATOR_LOG=info` for the
//! operator's log, with the fan-out's start time).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vrouter_agent::config::OperatorConfig;
use vrouter_agent::creds::Creds;
use vrouter_agent::simulate;
use vrouter_operator::pki::{DirStore, Pki, PkiConfig};
use vrouter_tests::bench::{self, Row, StandaloneSite, applied_revisions, applies, commits, ratio, row, wait_moved_on};
use vrouter_tests::echo::{self, Echo};
use vrouter_tests::faults::Proc;
use vrouter_tests::measure::{cpu_secs, fmt, percentile, raise_fd_limit, rss_kib};
use vrouter_tests::wait_until;

/// CPU at idle is measured over two heartbeat intervals (15 s each).
const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// Hang guard for every wait.
const GUARD: Duration = Duration::from_secs(900);

async fn run_size(n: usize) -> Vec<Row> {
    raise_fd_limit();
    let mut rows = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    // With the operator's log asked for, its logs (op1.log, op2.log after the restart) are kept.
    let operator_log = std::env::var("BENCH_OPERATOR_LOG").ok();
    let logs = match operator_log {
        Some(_) => std::env::temp_dir().join(format!("vrouter-bench-{n}-{}", std::process::id())),
        None => tmp.path().to_owned(),
    };
    std::fs::create_dir_all(&logs).unwrap();
    let site = StandaloneSite::prepare(n, tmp.path());
    let (state, sims, port) = (&site.state, &site.sims, site.port);
    let mut operator = Proc::spawn("operator", site.command(operator_log.as_deref()), &logs.join("op1.log"));
    wait_until(Duration::from_secs(60), "the operator wrote ca.pem", || async { site.ca_file().exists() }).await;
    assert!(operator.running(), "the operator stopped:\n{}", operator.output());
    // The operator's own footprint before any router connects (manifests read, PKI open).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_kib(operator.pid().unwrap());

    // 1. First convergence.
    let shutdown = CancellationToken::new();
    let options = site.fleet_options();
    let start = Instant::now();
    let fleet = simulate::start(&options, &shutdown).unwrap();
    wait_until(GUARD, "every router connected and applied its first revision", || async {
        fleet.routers.iter().all(|(_, o)| o.applied_revision().is_some())
    })
    .await;
    let first = start.elapsed();
    eprintln!("{n}: first convergence in {}", fmt(first));
    rows.push(row(
        "first convergence: enroll every router, deliver its first revision",
        fmt(first),
        String::new(),
        None,
    ));
    // Let the rollout record every result and the sessions become "healthy" (30 s) so the
    // routers' reconnect backoff starts from its minimum, as in a fleet that ran for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // 2. Memory and idle CPU.
    let pid = operator.pid().unwrap();
    let rss = rss_kib(pid);
    let (cpu0, me0) = (cpu_secs(pid), cpu_secs(std::process::id()));
    tokio::time::sleep(IDLE_WINDOW).await;
    let cpu = (cpu_secs(pid) - cpu0) / IDLE_WINDOW.as_secs_f64() * 100.0;
    let agents_cpu = (cpu_secs(std::process::id()) - me0) / IDLE_WINDOW.as_secs_f64() * 100.0;
    eprintln!("{n}: operator RSS {rss} KiB, idle CPU {cpu:.2} %, agents {agents_cpu:.2} %");

    if let Ok(marker) = std::env::var("BENCH_MARKER") {
        // Lets a profiler attach to the operator for the fan-out only.
        std::fs::write(&marker, format!("{pid}")).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // 3. One template change, end to end.
    let old = applied_revisions(&fleet);
    let commits_before = commits(&fleet);
    let start = Instant::now();
    if operator_log.is_some() {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{n}: fan-out starts at unix {:.3}; operator logs in {}", unix.as_secs_f64(), logs.display());
    }
    site.change("second");
    let lat = wait_moved_on(&fleet, &old, start, GUARD).await;
    let fan_total = start.elapsed();
    let fan_commits = commits(&fleet) - commits_before;
    eprintln!("{n}: fan-out in {} ({fan_commits} commits)", fmt(fan_total));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 4. Reconnect storm.
    let (commits_before, applies_before) = (commits(&fleet), applies(&fleet));
    operator.kill();
    wait_until(GUARD, "every router noticed the operator is gone", || async { fleet.connected() == 0 }).await;
    let start = Instant::now();
    let mut operator = Proc::spawn("operator", site.command(operator_log.as_deref()), &logs.join("op2.log"));
    wait_until(GUARD, "the first session back", || async { fleet.connected() > 0 }).await;
    let storm_first = start.elapsed();
    wait_until(GUARD, "every session back", || async { fleet.connected() == n }).await;
    let storm = start.elapsed();
    // Give the restarted operator time to reconcile every router (and to do anything it wrongly would).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (storm_commits, storm_applies) = (commits(&fleet) - commits_before, applies(&fleet) - applies_before);
    eprintln!("{n}: storm {} ({storm_commits} commits, {storm_applies} applies)", fmt(storm));
    assert!(operator.running(), "the restarted operator died:\n{}", operator.output());
    operator.kill();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet.join()).await;

    // The baseline, on the same port with the same certificates.
    let base = baseline(n, state, sims, port).await;
    let per_router = rss.saturating_sub(rss0) as f64 / n as f64;
    rows.push(row(
        "operator resident memory per router: growth from start (session, rendered configs, status)",
        format!("**{per_router:.1} KiB**"),
        format!("{:.1} KiB", base.rss_per_stream),
        Some(per_router / base.rss_per_stream.max(0.1)),
    ));
    rows.push(row(
        "operator resident memory, whole process",
        format!("{:.1} MiB", rss as f64 / 1024.0),
        String::new(),
        None,
    ));
    rows.push(row(
        "operator CPU at idle (heartbeats, status reports; % of one core)",
        format!("**{cpu:.2} %**"),
        format!("{:.2} %", base.idle_cpu),
        None,
    ));
    rows.push(row("routers' CPU at idle (all N in one process)", format!("{agents_cpu:.2} %"), String::new(), None));
    rows.push(row(
        "one template change until every router applied it (end to end)",
        format!("**{}**", fmt(fan_total)),
        fmt(base.fan_total),
        ratio(fan_total, base.fan_total),
    ));
    rows.push(row(
        "— p50 per router",
        fmt(percentile(&lat, 0.5)),
        fmt(base.fan_p50),
        ratio(percentile(&lat, 0.5), base.fan_p50),
    ));
    rows.push(row(
        "— p99 per router",
        fmt(percentile(&lat, 0.99)),
        fmt(base.fan_p99),
        ratio(percentile(&lat, 0.99), base.fan_p99),
    ));
    rows.push(row("— commits (one per router expected)", fan_commits.to_string(), String::new(), None));
    rows.push(row(
        "reconnect storm: restart (SIGKILL) until every session is back",
        format!("**{}**", fmt(storm)),
        fmt(base.storm),
        ratio(storm, base.storm),
    ));
    rows.push(row("— until the first session is back (operator start-up)", fmt(storm_first), String::new(), None));
    rows.push(row(
        "— commits / applies caused by the restart (target 0)",
        format!("**{storm_commits}** / {storm_applies}"),
        String::new(),
        None,
    ));
    rows
}

struct Baseline {
    rss_per_stream: f64,
    idle_cpu: f64,
    fan_total: Duration,
    fan_p50: Duration,
    fan_p99: Duration,
    storm: Duration,
}

/// The echo server child, driven by lines on its stdin.
struct EchoChild {
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl EchoChild {
    fn spawn(state: &Path, port: u16) -> EchoChild {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["echo-server", &state.display().to_string(), &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = EchoChild { child, lines };
        assert_eq!(c.read(), "READY");
        c
    }

    fn read(&mut self) -> String {
        self.lines.next().and_then(Result::ok).unwrap_or_default()
    }

    fn ask(&mut self, command: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        self.read()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn baseline(n: usize, state: &Path, sims: &Path, port: u16) -> Baseline {
    let mut server = tokio::task::block_in_place(|| EchoChild::spawn(state, port));
    let rss0 = rss_kib(server.child.id());
    let cfg = OperatorConfig {
        endpoint: format!("https://localhost:{port}"),
        ca_file: state.join("ca.pem"),
        server_name: Some("localhost".into()),
        token_file: None,
        token: None,
        connect_timeout_secs: 10,
    };
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    for i in 0..n {
        let creds = Creds::new(sims.join(format!("default_r-{i}"))).load().unwrap().unwrap();
        tokio::spawn(echo::echo_client_reconnecting(
            cfg.clone(),
            creds,
            Duration::from_millis(50),
            connected.clone(),
            stop.clone(),
        ));
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_until(GUARD, "every echo stream", || async { connected.load(Ordering::SeqCst) == n }).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = server.child.id();
    let rss_per_stream = rss_kib(pid).saturating_sub(rss0) as f64 / n as f64;
    let cpu0 = cpu_secs(pid);
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu = (cpu_secs(pid) - cpu0) / IDLE_WINDOW.as_secs_f64() * 100.0;

    let answer = tokio::task::block_in_place(|| server.ask("fanout"));
    let us: Vec<u64> = answer.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    assert_eq!(us.len(), 3, "echo server said {answer:?}");
    let [fan_total, fan_p50, fan_p99] = [us[0], us[1], us[2]].map(Duration::from_micros);

    tokio::task::block_in_place(|| server.kill());
    wait_until(GUARD, "every echo client noticed", || async { connected.load(Ordering::SeqCst) == 0 }).await;
    let start = Instant::now();
    let server = tokio::task::block_in_place(|| EchoChild::spawn(state, port));
    wait_until(GUARD, "every echo stream back", || async { connected.load(Ordering::SeqCst) == n }).await;
    let storm = start.elapsed();
    stop.cancel();
    tokio::task::block_in_place(|| server.kill());
    Baseline { rss_per_stream, idle_cpu, fan_total, fan_p50, fan_p99, storm }
}

/// `echo-server STATE PORT`: the echo service with the operator's PKI (`STATE/pki`) on PORT.
/// Prints READY; answers `fanout` with `FANOUT <total µs> <p50 µs> <p99 µs>`; stops when stdin closes.
async fn echo_server(state: &Path, port: u16) {
    raise_fd_limit();
    let store = DirStore::new(state.join("pki")).unwrap();
    let pki = Pki::open(Arc::new(store), PkiConfig::default()).await.unwrap();
    let id = pki.server_identity().clone();
    let echo = Echo::default();
    let listener = loop {
        // The killed operator's port may linger for a moment.
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    echo.serve(listener, pki.ca_pem(), &id.cert_pem, &id.key_pem);
    println!("READY");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let request = echo::to_baseline(&vrouter_tests::apply_request(
        "rev-e",
        "system {\n    host-name edge\n}\n",
        vrouter_proto::v1::ConfigPolicy::Replace,
    ));
    while let Some(line) = rx.recv().await {
        if line == "fanout" {
            let (total, lat) = echo.fan_out(&request).await;
            println!(
                "FANOUT {} {} {}",
                total.as_micros(),
                percentile(&lat, 0.5).as_micros(),
                percentile(&lat, 0.99).as_micros()
            );
        }
    }
}

fn main() {
    let args = bench::args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.first().map(String::as_str) == Some("echo-server") {
        runtime.block_on(echo_server(&PathBuf::from(&args[1]), args[2].parse().unwrap()));
        return;
    }
    let (quick, sizes) = bench::sizes(&args, 300, &[1000, 5000, 10_000]);
    println!("# One standalone operator process with N simulated routers ({})", if quick { "quick" } else { "full" });
    for n in sizes {
        let rows = runtime.block_on(run_size(n));
        println!("\n## {n} routers\n");
        bench::print_table("vrouter", "bare tonic bidi echo (baseline)", &rows);
    }
}
