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
