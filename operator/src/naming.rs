//! Names and labels of generated VRouterConfigs (pure).
//!
//! A binding `b` generates `b.t` for target `t`: readable, and unique because neither part may
//! contain the separator's ambiguity — unless the binding name itself has a dot (`a.b` + `c`
//! and `a` + `b.c` would both give `a.b.c`) or the result is longer than 253 characters. Those
//! cases use `<binding-prefix>-<hash>.<target-prefix>`, where the hash covers both full names,
//! so distinct pairs never share a name. Label values are limited to 63 characters; longer
//! names are carried as `h-<hash>` in the label and in full in an annotation.

use sha2::{Digest as _, Sha256};

/// Maximum length of an object name.
pub const MAX_NAME: usize = 253;
/// Maximum length of a label value.
pub const MAX_LABEL: usize = 63;

fn hash_hex(parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()[..len].to_owned()
}

/// Cuts a DNS-1123 name to at most `max` characters, without a trailing `-` or `.`.
fn truncate(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches(['-', '.'])
}

/// The generated VRouterConfig's name for a (binding, target) pair.
pub fn config_name(binding: &str, target: &str) -> String {
    let plain = format!("{binding}.{target}");
    if !binding.contains('.') && plain.len() <= MAX_NAME {
        return plain;
    }
    let hash = hash_hex(&[binding, target], 10);
    // `<b>-<hash10>.<t>` with b and t cut so the whole fits.
    let dashed = binding.replace('.', "-");
    let b = truncate(&dashed, 100);
    let budget = MAX_NAME - b.len() - 1 - hash.len() - 1;
    let t = truncate(target, budget);
    let mut name = format!("{b}-{hash}");
    if !t.is_empty() {
        name.push('.');
        name.push_str(t);
    }
    name
}

/// A label value for an object name: the name itself when it fits, else `h-<hash>`.
pub fn label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL { name.to_owned() } else { format!("h-{}", hash_hex(&[name], 20)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::validate::check_name;
    use std::collections::HashSet;

    #[test]
    fn plain_names() {
        assert_eq!(config_name("core", "edge-1"), "core.edge-1");
        assert_eq!(config_name("core", "edge.site-1"), "core.edge.site-1");
    }

    #[test]
    fn dotted_bindings_are_hashed_and_collision_free() {
        let a = config_name("a.b", "c");
        let b = config_name("a", "b.c");
        assert_eq!(b, "a.b.c");
        assert_ne!(a, b);
        assert!(a.starts_with("a-b-") && a.ends_with(".c"), "{a}");
        check_name(&a).unwrap();
    }

    #[test]
    fn long_names_fit_and_stay_valid_and_distinct() {
        let long_b = "b".repeat(200);
        let long_t = "t".repeat(253);
        let mut seen = HashSet::new();
        for (b, t) in [
            (long_b.as_str(), long_t.as_str()),
            (long_b.as_str(), &long_t[..252]),
            (&long_b[..199], long_t.as_str()),
            ("x", long_t.as_str()),
            (long_b.as_str(), "t"),
        ] {
            let n = config_name(b, t);
            assert!(n.len() <= MAX_NAME, "{}", n.len());
            check_name(&n).unwrap();
            assert!(seen.insert(n), "collision for {b} {t}");
        }
    }

    #[test]
    fn truncation_never_ends_with_a_separator() {
        let n = config_name(&format!("{}.x", "a".repeat(99)), &format!("{}-{}", "t".repeat(150), "u".repeat(100)));
        check_name(&n).unwrap();
    }

    #[test]
    fn labels() {
        assert_eq!(label_value("core"), "core");
        let l = label_value(&"x".repeat(64));
        assert_eq!(l.len(), 22);
        assert!(l.starts_with("h-"));
        assert_eq!(l, label_value(&"x".repeat(64)));
    }
}
