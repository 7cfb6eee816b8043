//! Golden tests of the `vyos` crate against real VyOS configurations and what VyOS's own config
//! library prints for them (`../shared/fixtures/vyos`, named by `VYOS_FIXTURES`).
//!
//! The corpus is not part of the repository. Without `VYOS_FIXTURES` these tests are compiled
//! as ignored; with it set, a missing folder is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vyos_config::{
    Config, RenderOptions, Schema, Tree, Verb, apply_commands, diff, digest, parse_commands, parse_tree,
    render_commands, render_config,
};

const IGNORE: &str = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time";

fn corpus() -> PathBuf {
    let dir = std::env::var("VYOS_FIXTURES")
        .ok()
        .or_else(|| option_env!("VYOS_FIXTURES").map(str::to_owned))
        .expect("VYOS_FIXTURES is not set");
    let path = PathBuf::from(&dir);
    let path = if path.is_absolute() { path } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path) };
    assert!(
        path.join("configs").is_dir(),
        "VYOS_FIXTURES={dir} does not hold the VyOS fixture corpus (no configs/ in {})",
        path.display()
    );
    path
}

fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "README.md" {
                continue;
            }
            out.insert(name, std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    out
}

/// The body VyOS loads: the text before the footer's "Warning" line.
fn body(text: &str) -> &str {
    for marker in ["// Warning: Do not remove the following line.", "/* Warning: Do not remove the following line. */"]
    {
        if let Some(i) = text.find(marker) {
            return &text[..i];
        }
    }
    text
}

/// A tree with values sorted and tag flags cleared: equal iff VyOS holds the same configuration.
fn normalized(tree: &Tree) -> String {
    vyos_config::canonical_text(tree)
}

#[test]
#[cfg_attr(not(vyos_fixtures), ignore = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time")]
fn raw_files_render_and_fail_like_vyos() {
    let root = corpus();
    let configs = files(&root.join("configs"));
    let fmt = files(&root.join("oracle/fmt"));
    let commands = files(&root.join("oracle/commands"));
    let errors = files(&root.join("oracle/errors"));
    assert!(configs.len() >= 30, "corpus too small: {}", configs.len());
    let mut checked = 0;
    for (name, text) in &configs {
        match parse_tree(text) {
            Err(e) => {
                let expected = errors.get(name).unwrap_or_else(|| panic!("{name}: we reject it, VyOS does not: {e}"));
                assert_eq!(&e.vyos_message(), expected, "{name}");
            }
            Ok(tree) => {
                assert!(!errors.contains_key(name), "{name}: VyOS rejects it, we do not");
                let render = render_config(&tree, RenderOptions::default());
                assert_eq!(&render, fmt.get(name).unwrap(), "{name}: fmt differs from VyOS");
                assert_eq!(&render_commands(&tree, Verb::Set), commands.get(name).unwrap(), "{name}: commands differ");
                checked += 1;
            }
        }
    }
    assert_eq!(checked + errors.len(), configs.len());
    let _ = IGNORE;
}

#[test]
#[cfg_attr(not(vyos_fixtures), ignore = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time")]
fn bodies_render_like_vyos() {
    let root = corpus();
    let configs = files(&root.join("configs"));
    for (kind, oracle) in
        [("fmt", files(&root.join("oracle/body/fmt"))), ("commands", files(&root.join("oracle/body/commands")))]
    {
        assert!(!oracle.is_empty());
        for (name, expected) in &oracle {
            let tree = parse_tree(body(configs.get(name).unwrap())).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = if kind == "fmt" {
                render_config(&tree, RenderOptions::default())
            } else {
                render_commands(&tree, Verb::Set)
            };
            assert_eq!(&got, expected, "{name}: body {kind} differs");
        }
    }
}

#[test]
#[cfg_attr(not(vyos_fixtures), ignore = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time")]
fn diffs_match_vyos() {
    let root = corpus();
    let configs = files(&root.join("configs"));
    let mut count = 0;
    for (dir, use_body) in [("oracle/diff", false), ("oracle/body/diff", true)] {
        for (pair, expected) in files(&root.join(dir)) {
            let (a, b) = pair.split_once("__").unwrap();
            let load = |n: &str| {
                let text = configs.get(n).unwrap();
                parse_tree(if use_body { body(text) } else { text }).unwrap_or_else(|e| panic!("{n}: {e}"))
            };
            let d = diff(&load(a), &load(b));
            assert_eq!(d.vyos_string(), expected, "{dir}/{pair}");
            count += 1;
        }
    }
    assert!(count >= 30, "only {count} diffs checked");
}

#[test]
#[cfg_attr(not(vyos_fixtures), ignore = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time")]
fn render_is_a_fixpoint_and_formats_agree() {
    let root = corpus();
    for (name, text) in files(&root.join("configs")) {
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Hierarchical: render → parse gives the same tree; render again gives the same bytes.
        let rendered = config.render();
        let again = Config::parse(&rendered).unwrap_or_else(|e| panic!("{name} (re-parse): {e}"));
        assert_eq!(again, config, "{name}: parse(render(x)) != x");
        assert_eq!(again.render(), rendered, "{name}: render is not a fixpoint");
        // Footer kept.
        assert_eq!(config.footer.is_some(), text.contains("Warning: Do not remove"), "{name}: footer");
        // Commands: render → parse → same configuration, same digest, same command render.
        let cmds = render_commands(&config.tree, Verb::Set);
        let from_cmds =
            Config::from_commands(&cmds, Schema::vyos()).unwrap_or_else(|e| panic!("{name} (commands): {e}"));
        assert_eq!(digest(&from_cmds.tree), digest(&config.tree), "{name}: digest differs between formats");
        assert_eq!(render_commands(&from_cmds.tree, Verb::Set), cmds, "{name}: commands round trip");
        assert_eq!(normalized(&from_cmds.tree), normalized(&config.tree), "{name}");
    }
}

#[test]
#[cfg_attr(not(vyos_fixtures), ignore = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time")]
fn diff_between_every_pair_applies_cleanly() {
    let root = corpus();
    let trees: Vec<(String, Tree)> = files(&root.join("configs"))
        .into_iter()
        .map(|(n, t)| {
            let c = Config::parse(&t).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, c.tree)
        })
        .collect();
    let mut pairs = 0;
    for (an, a) in &trees {
        for (bn, b) in &trees {
            let d = diff(a, b);
            let mut applied = a.clone();
            apply_commands(&mut applied, &d.commands(), &Schema::additive())
                .unwrap_or_else(|e| panic!("{an} -> {bn}: {e}"));
            assert_eq!(digest(&applied), digest(b), "{an} -> {bn}: applying the diff does not give NEW");
            assert!(diff(&applied, b).commands().is_empty(), "{an} -> {bn}: residual diff");
            // Through text too: the commands print and parse back to the same list.
            let text = vyos_config::render_command_list(&d.commands());
            assert_eq!(parse_commands(&text).unwrap().len(), d.commands().len(), "{an} -> {bn}");
            pairs += 1;
        }
    }
    assert_eq!(pairs, trees.len() * trees.len());
}

#[test]
#[cfg_attr(not(vyos_fixtures), ignore = "needs VYOS_FIXTURES=<path to shared/fixtures/vyos> at build time")]
fn config_tests_command_lists_round_trip() {
    let root = corpus();
    let lists = files(&root.join("config-tests"));
    assert!(lists.len() >= 30);
    for (name, text) in lists {
        let commands = parse_commands(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let config = Config::from_commands(&text, Schema::vyos()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every input line is in the canonical render, and nothing else is.
        let rendered = render_commands(&config.tree, Verb::Set);
        let mut got: Vec<&str> = rendered.lines().collect();
        let mut want: Vec<String> = commands.iter().map(ToString::to_string).collect();
        got.sort_unstable();
        want.sort_unstable();
        want.dedup();
        assert_eq!(got, want, "{name}: lines differ");
        // Hierarchical round trip of a tree built from commands.
        let fmt = render_config(&config.tree, RenderOptions::default());
        let back = parse_tree(&fmt).unwrap_or_else(|e| panic!("{name}: {e}\n{fmt}"));
        assert_eq!(back, config.tree, "{name}: hierarchical round trip");
        assert_eq!(digest(&back), digest(&config.tree));
    }
}
