//! `vrouter-agent apply` and `show`: the one-shot local path, on the simulated backend.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

fn agent(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vrouter-agent"))
        .args(args)
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .output()
        .unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "identity = \"edge/r1\"\nstate_dir = \"{}\"\n[operator]\nendpoint = \"https://localhost:1\"\nca_file = \"/nonexistent\"\n\
         [backend]\nkind = \"sim\"\n",
        dir.path().join("state").display()
    );
    std::fs::write(dir.path().join("agent.toml"), toml).unwrap();
    dir
}

#[test]
fn apply_then_show_then_no_change() {
    let dir = setup();
    let file = dir.path().join("desired.boot");
    std::fs::write(&file, "system {\n    host-name \"r1\"\n    time-zone \"UTC\"\n}\n").unwrap();
    let out = agent(dir.path(), &["apply", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "APPLY_OUTCOME_APPLIED");
    assert!(v["commands"].as_array().unwrap().iter().any(|c| c == "set system time-zone 'UTC'"), "{v}");
    assert_eq!(v["saved"], true);

    let out = agent(dir.path(), &["show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("host-name \"r1\"") && text.contains("// digest: sha256:"), "{text}");

    let out = agent(dir.path(), &["apply", file.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "APPLY_OUTCOME_NO_CHANGE");
}

#[test]
fn bad_files_and_refused_commits_exit_non_zero() {
    let dir = setup();
    let file = dir.path().join("bad.cmds");
    std::fs::write(&file, "set system host-name r1\nrun reboot\n").unwrap();
    let out = agent(dir.path(), &["apply", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = agent(dir.path(), &["apply", file.to_str().unwrap(), "--policy", "sideways"]);
    assert!(!out.status.success());
}

/// The agent's own record decides Merge removals; the operator's `--previous` only stands in
/// when there is none (a stale copy from the operator must not hide what left the desired state).
#[test]
fn the_agents_record_wins_over_a_stale_previous() {
    let dir = setup();
    let first = dir.path().join("first.boot");
    std::fs::write(&first, "service {\n    ssh {\n        port \"22\"\n    }\n}\nsystem {\n    host-name \"r1\"\n}\n")
        .unwrap();
    let out = agent(dir.path(), &["apply", first.to_str().unwrap(), "--revision", "r-1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The operator's copy predates r-1: it knows nothing of ssh.
    let stale = dir.path().join("stale.boot");
    std::fs::write(&stale, "system {\n    host-name \"r1\"\n}\n").unwrap();
    let second = dir.path().join("second.boot");
    std::fs::write(&second, "system {\n    host-name \"r1\"\n}\n").unwrap();
    let args = ["apply", second.to_str().unwrap(), "--revision", "r-2", "--previous", stale.to_str().unwrap()];
    let out = agent(dir.path(), &[&args[..], &["--previous-revision", "r-0", "--dry-run", "--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["commands"].as_array().unwrap().iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("delete service"))),
        "{v}"
    );
}
