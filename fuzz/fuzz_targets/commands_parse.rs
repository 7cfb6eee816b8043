//! VyOS command lists (`set`/`delete`/`comment`) from an untrusted source: never panic; whatever
//! parses renders back to the same commands and applies to a tree without panicking, and a tree
//! they build renders in the hierarchical format and parses back to itself (tag flags copied
//! back, as with the VyOS schema they come from the schema, not the text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vyos_config::{
    RenderOptions, Schema, Tree, apply_commands, digest, parse_commands, parse_tree, render_command_list, render_config,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(commands) = parse_commands(text) else { return };
    let rendered = render_command_list(&commands);
    let back = parse_commands(&rendered).unwrap_or_else(|e| panic!("rendered commands do not parse: {e}\n{rendered}"));
    // Line numbers differ (blank and comment lines are gone); everything else must not.
    let key = |c: &vyos_config::Command| (c.op, c.path.clone(), c.value.clone());
    assert_eq!(
        back.iter().map(key).collect::<Vec<_>>(),
        commands.iter().map(key).collect::<Vec<_>>(),
        "round trip changed the commands:\n{rendered}"
    );
    for schema in [Schema::vyos(), &Schema::empty()] {
        let mut tree = Tree::new();
        if apply_commands(&mut tree, &commands, schema).is_err() {
            continue;
        }
        let text = render_config(&tree, RenderOptions::default());
        let mut back = parse_tree(&text).unwrap_or_else(|e| panic!("rendered tree does not parse: {e}\n{text}"));
        assert_eq!(digest(&back), digest(&tree), "digest differs through the hierarchical format:\n{text}");
        back.conform_to(&tree);
        assert_eq!(back, tree, "round trip through the hierarchical format changed the tree:\n{text}");
    }
});
