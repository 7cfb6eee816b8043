//! Reading what VyOS's tools print (pure).

use std::collections::BTreeMap;

/// Session variables from `cli-shell-api getSessionEnv <SID>` (the text is shell code to
/// `eval`; ConfigSession extracts the pairs with the same pattern, vyos.md §3.1).
pub fn session_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for token in text.split(|c: char| c == ';' || c.is_whitespace()) {
        if let Some((k, v)) = token.split_once('=')
            && !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && !v.is_empty()
        {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// The subtrees a failed commit names (`[[path]] failed`, `delete [ path ] failed`).
pub fn failed_paths(output: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("[[")
            && let Some((path, tail)) = rest.split_once("]]")
            && tail.trim_start().starts_with("failed")
        {
            out.push(path.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("delete [")
            && let Some((path, tail)) = rest.split_once(']')
            && tail.trim_start().starts_with("failed")
        {
            out.push(path.trim().to_owned());
        }
    }
    out
}

/// Whether the text is VyOS's "another commit holds the lock" refusal.
pub fn is_locked(output: &str) -> bool {
    output.contains("temporarily locked due to another commit in progress")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_env_is_read_like_configsession() {
        let text = "declare -x VYATTA_EDIT_LEVEL=/; declare -x VYATTA_TEMPLATE_LEVEL=/; umask 002; { declare -x -r \
                    VYATTA_ACTIVE_CONFIGURATION_DIR=/opt/vyatta/config/active declare -x -r \
                    VYATTA_CHANGES_ONLY_DIR=/opt/vyatta/config/tmp/changes_only_42; declare -x -r \
                    VYATTA_TEMP_CONFIG_DIR=/opt/vyatta/config/tmp/new_config_42; declare -x -r \
                    VYATTA_CONFIG_TMP=/opt/vyatta/config/tmp/tmp_42; declare -x -r \
                    VYATTA_CONFIG_TEMPLATE=/opt/vyatta/share/vyatta-cfg/templates; } >&/dev/null || true";
        let env = session_env(text);
        assert_eq!(env["VYATTA_ACTIVE_CONFIGURATION_DIR"], "/opt/vyatta/config/active");
        assert_eq!(env["VYATTA_TEMP_CONFIG_DIR"], "/opt/vyatta/config/tmp/new_config_42");
        assert_eq!(env["VYATTA_EDIT_LEVEL"], "/");
        assert_eq!(env.len(), 7);
    }

    #[test]
    fn failed_paths_and_lock() {
        let out = "Error: invalid MTU\n\n[[interfaces ethernet eth1]] failed\ndelete [ protocols bgp ] failed\nCommit failed\n";
        assert_eq!(failed_paths(out), ["interfaces ethernet eth1", "protocols bgp"]);
        assert!(failed_paths("Commit failed").is_empty());
        assert!(is_locked("Configuration system temporarily locked due to another commit in progress"));
    }
}
