//! Parse, render, digest and diff of large synthetic configurations, each beside a baseline
//! measured in the same run: a pass that only splits the text into words (the floor for any
//! parser), a copy of the same number of bytes (the floor for rendering), and SHA-256 of the
//! same number of bytes (the floor for a digest).
//!
//! Run with `cargo bench -p vyos-config --bench model`; results go to docs/performance.md.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest as _, Sha256};
use vyos_config::{Config, RenderOptions, Verb, diff, digest, parse_tree, render_commands, render_config, synthetic};

/// Rule counts giving roughly 1k, 10k, 40k and 100k lines.
const SIZES: &[usize] = &[80, 800, 3300, 8300];

fn lines_of(rules: usize) -> usize {
    synthetic::config(rules, 0).lines().count()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vyos");
    g.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for &rules in SIZES {
        let text = synthetic::config(rules, 0);
        let changed_text = synthetic::config(rules, 1);
        let lines = lines_of(rules);
        let tree = parse_tree(&text).unwrap();
        let changed = parse_tree(&changed_text).unwrap();
        let commands = render_commands(&tree, Verb::Set);
        g.throughput(Throughput::Bytes(text.len() as u64));

        g.bench_with_input(BenchmarkId::new("baseline_split_words", lines), &text, |b, t| {
            b.iter(|| black_box(t.split_ascii_whitespace().count()))
        });
        g.bench_with_input(BenchmarkId::new("parse", lines), &text, |b, t| {
            b.iter(|| black_box(parse_tree(t).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("parse_commands", lines), &commands, |b, t| {
            b.iter(|| black_box(Config::from_commands(t, vyos_config::Schema::vyos()).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("baseline_copy", lines), &text, |b, t| b.iter(|| black_box(t.to_owned())));
        g.bench_with_input(BenchmarkId::new("render", lines), &tree, |b, t| {
            b.iter(|| black_box(render_config(t, RenderOptions::default())))
        });
        g.bench_with_input(BenchmarkId::new("baseline_sha256", lines), &text, |b, t| {
            b.iter(|| black_box(Sha256::digest(t.as_bytes())))
        });
        g.bench_with_input(BenchmarkId::new("digest", lines), &tree, |b, t| b.iter(|| black_box(digest(t))));
        g.bench_with_input(BenchmarkId::new("diff_1pct", lines), &(&tree, &changed), |b, (x, y)| {
            b.iter(|| black_box(diff(x, y).commands()))
        });
        g.bench_with_input(BenchmarkId::new("parse_render_digest", lines), &text, |b, t| {
            b.iter(|| {
                let tree = parse_tree(t).unwrap();
                black_box(render_config(&tree, RenderOptions::default()));
                black_box(digest(&tree))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
