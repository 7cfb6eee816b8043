//! Untrusted input: arbitrary text never panics either parser, errors name a position inside the
//! input, and generated command lists survive render → parse unchanged. (Generated trees'
//! round trips and digests are in `properties.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use proptest::prelude::*;
use vyos_config::{
    Command, Config, Op, RenderOptions, Schema, Tree, Verb, apply_commands, digest, parse_commands, parse_tree,
    render_command_list, render_commands, render_config,
};

/// Text that looks like configuration, in either format, with the syntax characters both
/// parsers care about, plus anything at all.
fn hostile_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("set ".to_owned()),
        Just("delete ".to_owned()),
        Just("comment ".to_owned()),
        Just("interfaces ".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just("// Warning: Do not remove the following line.\n".to_owned()),
        Just("$(".to_owned()),
        "\\\\[0-9]{3}",
        "[ -~]{1,4}",
        "\\PC{1,3}",
    ];
    prop_oneof![
        3 => prop::collection::vec(token, 0..40).prop_map(|t| t.concat()),
        1 => any::<String>(),
        // Deep nesting, past the parser's depth limit.
        1 => (1usize..300).prop_map(|n| "a {\n".repeat(n) + &"}\n".repeat(n)),
    ]
}

/// Checks that a 1-based (line, column) lies inside `text` (or just past its end).
fn position_inside(text: &str, line: usize, column: usize) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(line >= 1 && line <= lines.len(), "line {line} outside 1..={}", lines.len());
    prop_assert!(column >= 1 && column <= lines[line - 1].len() + 1, "column {column} outside line {line}");
    Ok(())
}

fn path_word() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z0-9-]{0,8}", "[0-9]{1,4}", "eth[0-9](\\.[0-9]{1,3})?", "[a-zA-Z0-9._:/*@+=-]{1,10}"]
        .prop_filter("a valid node name", |w| vyos_config::tree::is_valid_name(w))
}

/// Values and comments: anything, including quotes, backslashes, newlines and control characters.
fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,12}", "[a'\"\\\\\n\t\r\u{1}\u{7f}é$`(]{0,8}", any::<String>()]
}

fn command() -> impl Strategy<Value = Command> {
    (0u8..3, prop::collection::vec(path_word(), 1..6), prop::option::of(value())).prop_map(|(op, path, value)| match op
    {
        0 => Command::set(path, value),
        1 => Command::delete(path, value),
        _ => Command::comment(path, value.unwrap_or_default()),
    })
}

/// The parts of a command that the text carries (not its source line).
fn key(c: &Command) -> (Op, Vec<String>, Option<String>) {
    (c.op, c.path.clone(), c.value.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Every reader accepts or refuses any text without panicking; refusals name a position in it.
    #[test]
    fn parsers_never_panic_and_errors_have_positions(text in hostile_text()) {
        if let Err(e) = parse_tree(&text) {
            position_inside(&text, e.line, e.column)?;
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = parse_commands(&text) {
            prop_assert!(e.line >= 1 && e.line <= text.split('\n').count());
            prop_assert!(e.column >= 1);
            prop_assert!(!e.message.is_empty());
        }
        if let Err(e) = Config::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
        let _ = Config::parse_hierarchical(&text);
    }

    /// What parses renders back to the same tree (hierarchical) or commands (command format).
    #[test]
    fn accepted_text_round_trips(text in hostile_text()) {
        if let Ok(tree) = parse_tree(&text) {
            let rendered = render_config(&tree, RenderOptions::default());
            let back = parse_tree(&rendered).map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?;
            prop_assert_eq!(&back, &tree, "{}", rendered);
        }
        if let Ok(commands) = parse_commands(&text) {
            let rendered = render_command_list(&commands);
            let back = parse_commands(&rendered).map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?;
            prop_assert_eq!(back.iter().map(key).collect::<Vec<_>>(), commands.iter().map(key).collect::<Vec<_>>());
            let mut tree = Tree::new();
            let _ = apply_commands(&mut tree, &commands, Schema::vyos());
        }
    }

    /// Generated commands (any values: quotes, newlines, shell characters) round-trip exactly.
    #[test]
    fn generated_commands_round_trip(commands in prop::collection::vec(command(), 0..12)) {
        let text = render_command_list(&commands);
        let back = parse_commands(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back.iter().map(key).collect::<Vec<_>>(), commands.iter().map(key).collect::<Vec<_>>(), "{}", text);
    }

    /// A tree built from generated `set` commands has the same digest whichever format it is
    /// read back from.
    #[test]
    fn both_formats_give_the_same_digest(commands in prop::collection::vec(command(), 0..12)) {
        let sets: Vec<Command> =
            commands.into_iter().filter(|c| c.op == Op::Set).collect();
        let mut tree = Tree::new();
        if apply_commands(&mut tree, &sets, &Schema::empty()).is_err() {
            return Ok(());
        }
        let hierarchical = Config::parse(&render_config(&tree, RenderOptions::default()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let commands = Config::from_commands(&render_commands(&tree, Verb::Set), &Schema::empty())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(digest(&hierarchical.tree), digest(&tree));
        prop_assert_eq!(digest(&commands.tree), digest(&tree));
    }
}
