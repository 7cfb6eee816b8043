//! What the fleet benchmarks share (`benches/standalone.rs`, `benches/kube.rs`): the report's
//! rows, the size flags, a standalone operator on a directory of N targets, simulated fleets with
//! the agent's defaults, and waiting for a fan-out to reach every router.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vrouter_agent::config::{ReconnectConfig, SimConfig};
use vrouter_agent::simulate::{Fleet, SimulateOptions};

use crate::faults::{free_port, issue_tokens, write_fleet};

/// The namespace of the benchmarks' routers.
pub const NAMESPACE: &str = "default";
/// Their names are `<PREFIX><index>`.
pub const PREFIX: &str = "r-";

/// One row of a report table.
pub struct Row {
    /// What is measured.
    pub label: String,
    /// Our figure.
    pub ours: String,
    /// The baseline's figure (empty: none).
    pub base: String,
    /// ours / baseline (empty: none).
    pub ratio: String,
}

/// A row; `ratio` is printed as `1.23×`.
pub fn row(label: &str, ours: String, base: String, ratio: Option<f64>) -> Row {
    Row { label: label.to_owned(), ours, base, ratio: ratio.map(|r| format!("{r:.2}×")).unwrap_or_default() }
}

/// ours / base, if the base is not zero.
pub fn ratio(ours: Duration, base: Duration) -> Option<f64> {
    (base > Duration::ZERO).then(|| ours.as_secs_f64() / base.as_secs_f64())
}

/// Prints rows as a Markdown table with these column headers.
pub fn print_table(ours: &str, base: &str, rows: &[Row]) {
    println!("| | {ours} | {base} | ratio |");
    println!("|---|---:|---:|---:|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.label, r.ours, r.base, r.ratio);
    }
}

/// The benchmark's arguments without cargo's `--bench`.
pub fn args() -> Vec<String> {
    std::env::args().skip(1).filter(|a| a != "--bench").collect()
}

/// `--sizes=N,M` if given, else `quick` with `--quick`, else `full`; and whether `--quick` was given.
pub fn sizes(args: &[String], quick: usize, full: &[usize]) -> (bool, Vec<usize>) {
    let is_quick = args.iter().any(|a| a == "--quick");
    let sizes = match args.iter().find_map(|a| a.strip_prefix("--sizes=")) {
        Some(list) => list.split(',').filter_map(|s| s.parse().ok()).collect(),
        None if is_quick => vec![quick],
        None => full.to_vec(),
    };
    (is_quick, sizes)
}

/// Simulated routers `default/r-0 … r-<n-1>` (the `vrouter-agent simulate` code, in this
/// process) with the agent's default reconnect settings and default safety (commit-confirm,
/// reachability proof, save), dialing `https://localhost:<port>`.
pub fn fleet_options(n: usize, port: u16, ca_file: &Path, tokens: &Path, state_dir: &Path) -> SimulateOptions {
    SimulateOptions {
        count: n,
        namespace: NAMESPACE.into(),
        prefix: PREFIX.into(),
        endpoint: format!("https://localhost:{port}"),
        ca_file: ca_file.to_owned(),
        server_name: Some("localhost".into()),
        tokens_file: Some(tokens.to_owned()),
        state_dir: state_dir.to_owned(),
        sim: SimConfig { confirm_minute_ms: Some(60_000), ..SimConfig::default() },
        commit_confirm: true,
        reconnect: ReconnectConfig::default(),
    }
}

/// A standalone operator's site: a directory of N targets (one template, one binding rolling
/// out to all N in one batch), its state directory with the PKI, tokens for every router.
pub struct StandaloneSite {
    /// Routers.
    pub n: usize,
    /// The release `vrouter-operator` binary, brought up to date.
    pub bin: PathBuf,
    /// The manifests.
    pub site: PathBuf,
    /// The operator's state (PKI, status).
    pub state: PathBuf,
    /// The simulated routers' state.
    pub sims: PathBuf,
    /// The agent endpoint's port.
    pub port: u16,
    /// `simulate --tokens` lines.
    pub tokens: PathBuf,
}

impl StandaloneSite {
    /// Writes the site under `dir` with the template's description `first` and issues the tokens.
    pub fn prepare(n: usize, dir: &Path) -> StandaloneSite {
        let bin = crate::fresh_bin("vrouter-operator", "vrouter-operator");
        let (site, state, sims) = (dir.join("site"), dir.join("state"), dir.join("sims"));
        write_fleet(&site, n, PREFIX, "first", n);
        let tokens = issue_tokens(&bin, &state, PREFIX, n, dir);
        StandaloneSite { n, bin, site, state, sims, port: free_port(), tokens }
    }

    /// `vrouter-operator standalone` on the site (directory poll every 100 ms); `log` is the
    /// operator's log filter (`warn` without it).
    pub fn command(&self, log: Option<&str>) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["--log", log.unwrap_or("warn"), "standalone"])
            .arg(&self.site)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--poll-ms", "100"]);
        c
    }

    /// The CA file the operator writes on start.
    pub fn ca_file(&self) -> PathBuf {
        self.state.join("ca.pem")
    }

    /// The simulated fleet's options (see [`fleet_options`]).
    pub fn fleet_options(&self) -> SimulateOptions {
        fleet_options(self.n, self.port, &self.ca_file(), &self.tokens, &self.sims)
    }

    /// Rewrites the site with the template's description `description` (one new revision for
    /// every router).
    pub fn change(&self, description: &str) {
        write_fleet(&self.site, self.n, PREFIX, description, self.n);
    }
}

/// Every router's last applied revision, by index.
pub fn applied_revisions(fleet: &Fleet) -> Vec<Option<String>> {
    fleet.routers.iter().map(|(_, o)| o.applied_revision()).collect()
}

/// Removes from `pending` the routers whose last applied revision differs from `old` (by index),
/// recording the time since `start` for each.
pub fn moved_on(
    fleet: &Fleet,
    old: &[Option<String>],
    pending: &mut Vec<usize>,
    start: Instant,
    lat: &mut Vec<Duration>,
) {
    pending.retain(|&i| {
        let now = fleet.routers[i].1.applied_revision();
        if now.is_some() && now != old[i] {
            lat.push(start.elapsed());
            false
        } else {
            true
        }
    });
}

/// Waits (polling every 10 ms, up to `guard`) until every router applied a revision other than
/// `old`: each router's time since `start`, sorted.
pub async fn wait_moved_on(fleet: &Fleet, old: &[Option<String>], start: Instant, guard: Duration) -> Vec<Duration> {
    let mut pending: Vec<usize> = (0..fleet.routers.len()).collect();
    let mut lat = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        assert!(start.elapsed() < guard, "fan-out: {} routers never applied the change", pending.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
        moved_on(fleet, old, &mut pending, start, &mut lat);
    }
    lat.sort();
    lat
}

/// Commits made by the fleet's simulated routers so far.
pub fn commits(fleet: &Fleet) -> u64 {
    fleet.controls.iter().map(|c| c.commits()).sum()
}

/// Apply requests the fleet's agents received so far.
pub fn applies(fleet: &Fleet) -> u64 {
    fleet.routers.iter().map(|(_, o)| o.applies.load(Ordering::SeqCst)).sum()
}
