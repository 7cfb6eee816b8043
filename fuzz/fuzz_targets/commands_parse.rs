//! VyOS command lists (`set`/`delete`/`comment`) from an untrusted source: never panic; whatever
//! parses renders back to the same commands and applies to a tree without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vyos_config::{Schema, Tree, apply_commands, parse_commands, render_command_list};

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
    let mut tree = Tree::new();
    let _ = apply_commands(&mut tree, &commands, Schema::vyos());
});
