//! Untrusted input: arbitrary text never panics either parser, errors name a position inside the
//! input, generated command lists survive render → parse unchanged, and whatever either parser
//! accepts round-trips through the other format (same tree, same digest). (Generated trees'
//! round trips and digests are in `properties.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use proptest::prelude::*;
use vyos_config::{
    Command, Config, Op, ParseErrorKind, RenderOptions, Schema, Tree, Verb, apply_commands, digest, parse_commands,
    parse_tree, render_command_list, render_commands, render_config,
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

/// Words for node and tag instance names: a few common ones (so siblings merge and collide),
/// and hostile ones with shell, control, comment-like and non-ASCII characters.
fn name_word() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => prop::sample::select(vec!["a", "b", "eth0", "eth1", "2", "10", "x-y", "10.0.0.0/8", "set", "#c"])
            .prop_map(str::to_owned),
        1 => "[a-z]{0,2}[;|&<>$`\\\\()#*/!%~?=+,.:@\\[\\]-][a-z0-9]{0,2}",
        1 => "[a-z]{0,2}[\u{1}\u{b}\u{c}\u{7f}é\u{a0}\u{2028}][a-z]{0,2}",
        1 => prop::sample::select(vec!["//x", "/*", "/*x", "*/", "/", "-"]).prop_map(str::to_owned),
    ]
}

/// A word as written in hierarchical text: bare, or quoted (then it may hold anything).
fn written(word: String, quote: u8) -> String {
    match quote {
        0 => word,
        1 => {
            let mut out = String::from("\"");
            vyos_config::render::escape(&word, &mut out);
            out.push('"');
            out
        }
        _ => format!("'{}'", word.replace('\\', "\\\\").replace('\'', "\\'")),
    }
}

/// Hierarchical text built from nodes, tag nodes, leaves with values and comments, with hostile
/// names and values, and repeated names (merges, duplicates, tag and plain forms of one node).
fn hierarchical_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (name_word(), Just(None::<(String, u8)>)),
        (name_word(), prop_oneof![(name_word(), 0u8..3), (value(), 1u8..3)].prop_map(Some)),
    ]
    .prop_map(|(name, value)| match value {
        None => format!("{name}\n"),
        Some((v, q)) => {
            let q = if v.is_empty() { 1 } else { q };
            format!("{name} {}\n", written(v, q))
        }
    });
    let tree = leaf.prop_recursive(6, 64, 6, |inner| {
        let children = prop::collection::vec(inner, 0..6).prop_map(|c| c.concat());
        prop_oneof![
            (name_word(), children.clone()).prop_map(|(n, c)| format!("{n} {{\n{c}}}\n")),
            (name_word(), prop_oneof![4 => (name_word(), 0u8..3), 1 => (value(), 1u8..3)], children)
                .prop_map(|(n, (t, q), c)| format!("{n} {} {{\n{c}}}\n", written(t, q))),
        ]
    });
    let commented = (prop::option::of(prop_oneof![Just(String::new()), "[ -~&&[^*]]{0,8}", "\\PC{0,4}"]), tree)
        .prop_map(|(comment, node)| match comment {
            Some(c) if !c.contains("*/") => format!("/* {c} */\n{node}"),
            _ => node,
        });
    prop::collection::vec(commented, 0..8).prop_map(|n| n.concat())
}

/// Command lines with hostile path words, quoted or not, and any values.
fn command_text() -> impl Strategy<Value = String> {
    let word = (name_word(), 0u8..4).prop_map(|(w, q)| written(w, q.saturating_sub(1)));
    let line = (
        prop::sample::select(vec!["set", "set", "set", "delete", "comment"]),
        prop::collection::vec(word, 1..6),
        prop::option::of((value(), 1u8..3).prop_map(|(v, q)| written(v, q))),
    )
        .prop_map(|(verb, path, value)| {
            let mut line = format!("{verb} {}", path.join(" "));
            if let Some(v) = value {
                line.push(' ');
                line.push_str(&v);
            }
            line
        });
    prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

/// `tree` written as commands, read back and applied to an empty tree; tag flags are copied
/// back from `tree` (commands do not carry them).
fn through_commands(tree: &Tree) -> Result<Tree, TestCaseError> {
    let text = render_commands(tree, Verb::Set);
    let commands = parse_commands(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    let mut back = Tree::new();
    apply_commands(&mut back, &commands, &Schema::empty()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    back.conform_to(tree);
    Ok(back)
}

/// `tree` rendered hierarchically and parsed back, tag flags copied back from `tree`.
fn through_hierarchical(tree: &Tree) -> Result<Tree, TestCaseError> {
    let text = render_config(tree, RenderOptions::default());
    let mut back = parse_tree(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    back.conform_to(tree);
    Ok(back)
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

    /// Every tree the hierarchical parser accepts can be written as commands that parse and
    /// apply back to the same tree (same digest), and renders back to itself; names it refuses
    /// are named with a position in the text.
    #[test]
    fn accepted_trees_round_trip_through_commands(text in prop_oneof![3 => hierarchical_text(), 1 => hostile_text()]) {
        match parse_tree(&text) {
            Ok(tree) => {
                let back = through_commands(&tree)?;
                prop_assert_eq!(digest(&back), digest(&tree), "{}", text);
                prop_assert_eq!(&back, &tree, "{}", text);
                let rendered = render_config(&tree, RenderOptions::default());
                prop_assert_eq!(&parse_tree(&rendered).map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?, &tree);
            }
            Err(e) => {
                position_inside(&text, e.line, e.column)?;
                if let ParseErrorKind::InvalidName { name, .. } = &e.kind {
                    prop_assert!(!vyos_config::tree::is_valid_name(name), "{}", e);
                    prop_assert!(e.to_string().contains("invalid node name"), "{}", e);
                }
            }
        }
    }

    /// The reverse: every command list that parses and applies gives a tree that renders in the
    /// hierarchical format, parses back to the same tree (same digest), and renders as commands
    /// that apply back to it too.
    #[test]
    fn accepted_commands_round_trip_through_hierarchical(text in command_text(), vyos_schema: bool) {
        let Ok(commands) = parse_commands(&text) else { return Ok(()) };
        let empty = Schema::empty();
        let schema = if vyos_schema { Schema::vyos() } else { &empty };
        let mut tree = Tree::new();
        if apply_commands(&mut tree, &commands, schema).is_err() {
            return Ok(());
        }
        let back = through_hierarchical(&tree)?;
        prop_assert_eq!(digest(&back), digest(&tree), "{}", text);
        prop_assert_eq!(&back, &tree, "{}", text);
        prop_assert_eq!(&through_commands(&tree)?, &tree, "{}", text);
    }
}
