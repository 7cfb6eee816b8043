//! Reconcile cost for a fleet: the quick start's templates and bindings, plus a third binding
//! (a `services` template, built here), over N routers: every router gets three generated
//! configs.
//!
//! - `step_first`: one full standalone reconcile pass from nothing — render every binding for
//!   every router, check the output with the VyOS model, compose each router's configs, compute
//!   revision ids;
//! - `step_unchanged`: the same pass when nothing changed (the steady-state cost of a resync);
//! - `render_only`: the bindings' rendering alone (templates, output checks), and `compose_only`:
//!   composing each router's generated configs alone — the two halves of a pass;
//! - `baseline_parse_render_digest`: parse, render and digest each router's desired config once —
//!   the floor for any pipeline that validates what it delivers.
//!
//! After the criterion runs, a summary prints each size's median full pass, unchanged pass and
//! baseline per pass, and the ratio full pass / baseline (from the same samples criterion took).
//!
//! Run with `cargo bench -p vrouter-operator --bench fleet`; results go to docs/performance.md.
//! `FLEET_PROFILE=SECS` runs unchanged passes at 10,000 routers for a profiler instead.

#![allow(missing_docs, clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// The operator binary's allocator, so the bench measures what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Bencher, BenchmarkId, Criterion, criterion_group};
use vrouter_operator::compose::{Part, compose};
use vrouter_operator::crd::VRouterConfig;
use vrouter_operator::generate::{Inputs, generate};
use vrouter_operator::standalone::manifests::{Manifests, add_text};
use vrouter_operator::standalone::world::World;
use vyos_config::{Config, RenderOptions, Schema, digest, render_config};

const SIZES: &[usize] = &[10, 100, 1000, 10_000];

/// The third binding: SSH, syslog and a login banner on every router (hub and branches).
const SERVICES: &str = "\
apiVersion: vrouter.kojuro.date/v1
kind: VRouterTemplate
metadata: {name: services}
spec:
  commands: |
    set service ssh port '22'
    set service ssh listen-address '{{ loopback }}'
    set system syslog global facility all level 'info'
    set system login banner pre-login 'vrouter {{ target.name }} (AS {{ asn }})'
---
apiVersion: vrouter.kojuro.date/v1
kind: VRouterBinding
metadata: {name: services}
spec:
  templateRefs: [{name: services}]
  paramsRefs: [{name: common}]
  targetSelector:
    matchExpressions:
      - {key: role, operator: In, values: [hub, branch]}
  priority: 5
";

/// The quick start plus the `services` binding, with `n` more branch routers (rollouts off, so
/// every router is rendered).
fn fleet(n: usize) -> Manifests {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let mut m = Manifests::default();
    for f in ["20-templates.yaml", "10-params.yaml", "30-routers.yaml", "40-bindings.yaml"] {
        add_text(&mut m, &dir.join(f), &std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
    }
    // In files of 500 routers: the YAML reader takes at most 1,024 documents per file.
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut routers = String::new();
        for &i in chunk {
            routers.push_str(&format!(
                "---\napiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {{name: edge-{i}, labels: {{role: branch}}}}\n\
                 spec:\n  params:\n    asn: {asn}\n    loopback: 10.{a}.{b}.1\n    overlay_index: {idx}\n    wan: {{address: 198.51.{a}.{b}/24}}\n    \
                 peers: [{{name: hub, index: 1, public_key: HUBpublicKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0=, endpoint: 203.0.113.1}}]\n    \
                 bgp_neighbors: [{{name: hub, address: 10.255.0.1, asn: 65000}}]\n",
                asn = 65100 + i,
                a = i / 250,
                b = i % 250,
                idx = 2 + (i % 250),
            ));
        }
        add_text(&mut m, Path::new("fleet.yaml"), &routers).unwrap();
    }
    add_text(&mut m, Path::new("services.yaml"), SERVICES).unwrap();
    let ns = m.namespaces.get_mut("default").unwrap();
    // Every router rendered in one pass.
    for b in ns.bindings.values_mut() {
        b.spec.rollout = None;
    }
    // The quick start's Secret names three routers; give every branch a key.
    let keys = ns.secrets.get_mut("wireguard-keys").unwrap();
    for i in 0..n {
        keys.insert(format!("edge-{i}"), format!("key{i}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx="));
    }
    m
}

/// Per-iteration times of every sample criterion took, by (function, size).
type Samples = BTreeMap<(&'static str, usize), Vec<Duration>>;

/// Times `f` like `Bencher::iter`, and records the per-iteration time of the sample.
fn timed<O>(b: &mut Bencher<'_>, samples: &RefCell<Samples>, id: (&'static str, usize), mut f: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        let elapsed = start.elapsed();
        samples.borrow_mut().entry(id).or_default().push(elapsed / iters.max(1) as u32);
        elapsed
    })
}

fn median(samples: &Samples, id: (&'static str, usize)) -> Option<Duration> {
    let mut v = samples.get(&id)?.clone();
    v.sort();
    v.get(v.len() / 2).copied()
}

fn bench(c: &mut Criterion) {
    let samples = RefCell::new(Samples::new());
    let mut g = c.benchmark_group("fleet");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for &n in SIZES {
        // The largest size takes seconds per pass: criterion's minimum of 10 samples is enough.
        g.measurement_time(Duration::from_secs(if n >= 10_000 { 20 } else { 5 }));
        let m = fleet(n);
        let now = SystemTime::now();
        // Sanity: every router gets a revision, from three generated configs.
        let mut w = World::new(vec![1; 32]);
        let out = w.step(&m, now);
        let configs: Vec<String> =
            out.desired.iter().filter_map(|(_, d)| d.as_ref().map(|d| d.config.clone())).collect();
        assert_eq!(configs.len(), n + 3, "{:?}", w.problems());
        assert_eq!(w.generated().count(), 3 * (n + 3), "{:?}", w.problems());

        g.bench_with_input(BenchmarkId::new("step_first", n), &m, |b, m| {
            timed(b, &samples, ("step_first", n), || {
                let mut w = World::new(vec![1; 32]);
                w.step(m, now)
            })
        });
        g.bench_with_input(BenchmarkId::new("step_unchanged", n), &m, |b, m| {
            let mut w = World::new(vec![1; 32]);
            w.step(m, now);
            timed(b, &samples, ("step_unchanged", n), || w.step(m, now))
        });
        let ns = &m.namespaces["default"];
        let inputs = Inputs { templates: &ns.templates, params: &ns.params, targets: &ns.targets };
        g.bench_with_input(BenchmarkId::new("render_only", n), &m, |b, _| {
            timed(b, &samples, ("render_only", n), || {
                for binding in ns.bindings.values() {
                    black_box(generate(binding, inputs).unwrap());
                }
            })
        });
        let generated: Vec<VRouterConfig> = w.generated().cloned().collect();
        g.bench_with_input(BenchmarkId::new("compose_only", n), &generated, |b, gen_| {
            let mut by_target: BTreeMap<&str, Vec<&VRouterConfig>> = Default::default();
            for c in gen_ {
                by_target.entry(c.spec.target_ref.name.as_str()).or_default().push(c);
            }
            timed(b, &samples, ("compose_only", n), || {
                for configs in by_target.values() {
                    let parts: Vec<Part<'_>> = configs
                        .iter()
                        .map(|c| Part {
                            name: c.metadata.name.as_deref().unwrap(),
                            generation: 1,
                            priority: c.spec.priority,
                            config: c.spec.config.as_deref(),
                            commands: c.spec.commands.as_deref(),
                            save: true,
                        })
                        .collect();
                    black_box(compose(&parts, Schema::vyos()).unwrap());
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("baseline_parse_render_digest", n), &configs, |b, cs| {
            timed(b, &samples, ("baseline", n), || {
                for c in cs {
                    let t = Config::parse(c).unwrap().tree;
                    black_box(render_config(&t, RenderOptions::default()));
                    black_box(digest(&t));
                }
            })
        });
    }
    g.finish();

    let samples = samples.into_inner();
    println!("\nfleet summary (medians of the samples above; {} generated configs per router)", 3);
    println!("{:>8} {:>12} {:>14} {:>12} {:>16}", "routers", "full pass", "unchanged", "baseline", "full/baseline");
    for &n in SIZES {
        let (Some(first), Some(base)) = (median(&samples, ("step_first", n)), median(&samples, ("baseline", n))) else {
            continue; // filtered out on the command line
        };
        let unchanged = median(&samples, ("step_unchanged", n)).map_or("-".to_owned(), |d| format!("{d:.2?}"));
        let ratio = first.as_secs_f64() / base.as_secs_f64();
        println!("{:>8} {:>12.2?} {:>14} {:>12.2?} {:>15.1}x", n + 3, first, unchanged, base, ratio);
    }
}

/// `FLEET_PROFILE=SECS`: no criterion; one full pass over 10,000 routers, then unchanged passes
/// for SECS seconds, each timed, for attaching a profiler (`perf record -p`) to the steady state.
fn profile(secs: u64) {
    let m = fleet(10_000);
    let now = SystemTime::now();
    let mut w = World::new(vec![1; 32]);
    let t = Instant::now();
    w.step(&m, now);
    eprintln!("first pass: {:.2?}", t.elapsed());
    eprintln!("pid {}: first pass done, unchanged passes for {secs} s", std::process::id());
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        black_box(w.step(&m, now));
        eprintln!("unchanged pass: {:.2?}", t.elapsed());
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(secs) = std::env::var("FLEET_PROFILE").ok().and_then(|s| s.parse().ok()) {
        return profile(secs);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
