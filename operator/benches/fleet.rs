//! Reconcile cost for a fleet: the quick start's templates and bindings over N routers.
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
//! Run with `cargo bench -p vrouter-operator --bench fleet`; results go to docs/performance.md.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vrouter_operator::compose::{Part, compose};
use vrouter_operator::crd::VRouterConfig;
use vrouter_operator::generate::{Inputs, generate};
use vrouter_operator::standalone::manifests::{Manifests, add_text};
use vrouter_operator::standalone::world::World;
use vyos_config::{Config, RenderOptions, Schema, digest, render_config};

const SIZES: &[usize] = &[10, 100, 1000];

/// The quick start with `n` more branch routers (rollouts off, so every router is rendered).
fn fleet(n: usize) -> Manifests {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let mut m = Manifests::default();
    for f in ["templates.yaml", "params.yaml", "routers.yaml", "bindings.yaml"] {
        add_text(&mut m, &dir.join(f), &std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
    }
    let mut routers = String::new();
    for i in 0..n {
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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fleet");
    g.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    for &n in SIZES {
        let m = fleet(n);
        let now = SystemTime::now();
        // Sanity: every router gets a revision.
        let mut w = World::new(vec![1; 32]);
        let out = w.step(&m, now);
        let configs: Vec<String> =
            out.desired.iter().filter_map(|(_, d)| d.as_ref().map(|d| d.config.clone())).collect();
        assert_eq!(configs.len(), n + 3, "{:?}", w.problems());

        g.bench_with_input(BenchmarkId::new("step_first", n), &m, |b, m| {
            b.iter(|| {
                let mut w = World::new(vec![1; 32]);
                black_box(w.step(m, now))
            })
        });
        g.bench_with_input(BenchmarkId::new("step_unchanged", n), &m, |b, m| {
            let mut w = World::new(vec![1; 32]);
            w.step(m, now);
            b.iter(|| black_box(w.step(m, now)))
        });
        let ns = &m.namespaces["default"];
        let inputs = Inputs { templates: &ns.templates, params: &ns.params, targets: &ns.targets };
        g.bench_with_input(BenchmarkId::new("render_only", n), &m, |b, _| {
            b.iter(|| {
                for binding in ns.bindings.values() {
                    black_box(generate(binding, inputs).unwrap());
                }
            })
        });
        let generated: Vec<VRouterConfig> = w.generated().cloned().collect();
        g.bench_with_input(BenchmarkId::new("compose_only", n), &generated, |b, gen_| {
            let mut by_target: std::collections::BTreeMap<&str, Vec<&VRouterConfig>> = Default::default();
            for c in gen_ {
                by_target.entry(c.spec.target_ref.name.as_str()).or_default().push(c);
            }
            b.iter(|| {
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
            b.iter(|| {
                for c in cs {
                    let t = Config::parse(c).unwrap().tree;
                    black_box(render_config(&t, RenderOptions::default()));
                    black_box(digest(&t));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
