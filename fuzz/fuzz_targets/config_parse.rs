//! Hierarchical configuration text (config.boot) from an untrusted source: never panics, errors
//! carry a position, and whatever parses renders back to the same tree, in the hierarchical
//! format and as commands (parsed and applied to an empty tree; tag flags copied back, as
//! commands do not carry them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vyos_config::{
    Config, RenderOptions, Schema, Tree, Verb, apply_commands, digest, parse_commands, parse_tree, render_commands,
    render_config,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::parse(text);
    match parse_tree(text) {
        Ok(tree) => {
            let rendered = render_config(&tree, RenderOptions::default());
            let back =
                parse_tree(&rendered).unwrap_or_else(|e| panic!("rendered tree does not parse: {e}\n{rendered}"));
            assert_eq!(back, tree, "round trip changed the tree:\n{rendered}");
            let commands = render_commands(&tree, Verb::Set);
            let parsed =
                parse_commands(&commands).unwrap_or_else(|e| panic!("rendered commands do not parse: {e}\n{commands}"));
            let mut applied = Tree::new();
            apply_commands(&mut applied, &parsed, &Schema::empty())
                .unwrap_or_else(|e| panic!("rendered commands do not apply: {e}\n{commands}"));
            assert_eq!(digest(&applied), digest(&tree), "digest differs through commands:\n{commands}");
            applied.conform_to(&tree);
            assert_eq!(applied, tree, "round trip through commands changed the tree:\n{commands}");
        }
        Err(e) => assert!(e.line >= 1 && e.column >= 1, "error without a position: {e}"),
    }
});
