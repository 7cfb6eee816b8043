//! Hierarchical configuration text (config.boot) from an untrusted source: never panics, errors
//! carry a position, and whatever parses renders back to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vyos_config::{Config, RenderOptions, parse_tree, render_config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::parse(text);
    match parse_tree(text) {
        Ok(tree) => {
            let rendered = render_config(&tree, RenderOptions::default());
            let back = parse_tree(&rendered).unwrap_or_else(|e| panic!("rendered tree does not parse: {e}\n{rendered}"));
            assert_eq!(back, tree, "round trip changed the tree:\n{rendered}");
        }
        Err(e) => assert!(e.line >= 1 && e.column >= 1, "error without a position: {e}"),
    }
});
