//! Delivering a revision through the guest agent when the router's agent cannot be reached.
//!
//! With the agent binary in the guest, its one-shot `vrouter-agent apply` runs on files the
//! operator writes (same planning, validation and reporting as the stream path, without the
//! reachability proof). Without it, the operator plans the commands itself against the running
//! configuration it reads through the guest agent, and a fixed script (`apply.sh`) that never
//! evaluates the data runs them through VyOS's configuration session. Either way the staged
//! files (which carry secret values) are removed afterwards.

use std::time::Duration;

use vyos_config::{Command, Config, Plan, PlanInput, Policy, Schema, Tree, path_from_str};

use super::guest::{GuestLayout, run};
use super::{ExecRequest, QgaClient, QgaError, WriteMode};

/// The fixed apply script for guests without the agent.
pub const APPLY_SCRIPT: &str = include_str!("apply.sh");

/// A revision to deliver, with secrets substituted.
#[derive(Debug, Clone)]
pub struct FallbackRequest {
    /// Revision id (recorded by the agent, so it does not apply it again later).
    pub revision: String,
    /// Desired configuration.
    pub desired: String,
    /// The configuration last applied, if known, and its revision.
    pub previous: Option<(String, String)>,
    /// Explicit `delete …` lines.
    pub deletions: Vec<String>,
    /// Merge or Replace.
    pub replace: bool,
    /// Managed scopes (Merge).
    pub scopes: Vec<String>,
    /// Save after commit.
    pub save: bool,
    /// Deadline of the apply.
    pub deadline: Duration,
}

/// The result of a fallback delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackResult {
    /// `Applied`, `NoChange`, `Failed`, `Partial`, `Unknown`.
    pub outcome: String,
    /// Commands run.
    pub commands: Vec<String>,
    /// What the router said (output or error text).
    pub message: String,
    /// Digest of the running configuration afterwards (empty when unknown).
    pub running_digest: String,
    /// Whether the configuration was saved.
    pub saved: bool,
    /// Which path delivered it: `agent` (one-shot apply) or `script`.
    pub via: &'static str,
}

/// Why a fallback delivery could not be carried out (as opposed to the router refusing it).
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// The guest agent failed.
    #[error("{what}: {source}")]
    Qga {
        /// The step.
        what: String,
        /// The guest agent's error.
        #[source]
        source: QgaError,
    },
    /// The router's output could not be understood.
    #[error("{0}")]
    Output(String),
}

fn qga(what: &str) -> impl FnOnce(QgaError) -> FallbackError + '_ {
    move |source| FallbackError::Qga { what: what.to_owned(), source }
}

/// A short, file-name-safe form of a revision id.
fn file_stem(revision: &str) -> String {
    let s: String = revision.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    if s.is_empty() { "revision".to_owned() } else { s }
}

async fn stage(client: &QgaClient, layout: &GuestLayout, files: &[(String, Vec<u8>)]) -> Result<(), FallbackError> {
    let dir = layout.qga_dir();
    run(client, "/bin/mkdir", &["-p", "-m", "0700", &dir], Duration::from_secs(60)).await.map_err(qga("mkdir"))?;
    for (path, data) in files {
        client.write_file(path, data, WriteMode::Truncate).await.map_err(qga("stage"))?;
    }
    Ok(())
}

async fn unstage(client: &QgaClient, files: &[String]) {
    let mut args = vec!["-f"];
    args.extend(files.iter().map(String::as_str));
    if let Err(e) = run(client, "/bin/rm", &args, Duration::from_secs(60)).await {
        tracing::warn!(error = %e, "cannot remove staged files from the guest");
    }
}

/// Delivers through the agent binary in the guest (`vrouter-agent apply --json`).
pub async fn apply_with_agent(
    client: &QgaClient,
    layout: &GuestLayout,
    binary: &str,
    request: &FallbackRequest,
) -> Result<FallbackResult, FallbackError> {
    let dir = layout.qga_dir();
    let stem = file_stem(&request.revision);
    let desired = format!("{dir}/{stem}.config");
    let mut files = vec![(desired.clone(), request.desired.clone().into_bytes())];
    let config = layout.config();
    let mut args: Vec<String> = ["apply", "--config", &config, "--json", "--revision", &request.revision]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--policy".to_owned(), if request.replace { "replace" } else { "merge" }.to_owned()]);
    for s in &request.scopes {
        args.extend(["--scope".to_owned(), s.clone()]);
    }
    if let Some((revision, text)) = &request.previous {
        let path = format!("{dir}/{stem}.previous");
        files.push((path.clone(), text.clone().into_bytes()));
        args.extend(["--previous".to_owned(), path, "--previous-revision".to_owned(), revision.clone()]);
    }
    if !request.deletions.is_empty() {
        let path = format!("{dir}/{stem}.deletions");
        files.push((path.clone(), request.deletions.join("\n").into_bytes()));
        args.extend(["--deletions".to_owned(), path]);
    }
    if !request.save {
        args.push("--no-save".to_owned());
    }
    args.push(desired);
    stage(client, layout, &files).await?;
    let out = client.exec(&ExecRequest::new(binary, args).deadline(request.deadline)).await;
    unstage(client, &files.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()).await;
    let out = out.map_err(qga("vrouter-agent apply"))?;
    parse_agent_result(&out.stdout_lossy(), &out.stderr_lossy())
}

/// Reads `vrouter-agent apply --json` output.
pub fn parse_agent_result(stdout: &str, stderr: &str) -> Result<FallbackResult, FallbackError> {
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let Some(v) = line.and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) else {
        return Err(FallbackError::Output(format!(
            "vrouter-agent apply printed no result: {}",
            format!("{stdout}{stderr}").trim()
        )));
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
    let outcome = match text("outcome").as_str() {
        "APPLY_OUTCOME_APPLIED" => "Applied",
        "APPLY_OUTCOME_NO_CHANGE" => "NoChange",
        "APPLY_OUTCOME_FAILED" => "Failed",
        "APPLY_OUTCOME_PARTIAL" => "Partial",
        "APPLY_OUTCOME_ROLLED_BACK" => "RolledBack",
        _ => "Unknown",
    };
    let commands = v
        .get("commands")
        .and_then(|c| c.as_array())
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let error = text("error");
    Ok(FallbackResult {
        outcome: outcome.to_owned(),
        commands,
        message: if error.is_empty() { text("output") } else { error },
        running_digest: text("runningDigest"),
        saved: v.get("saved").and_then(|s| s.as_bool()).unwrap_or(false),
        via: "agent",
    })
}

/// Encodes commands for `apply.sh`: NUL-terminated operation, word count, words.
pub fn encode_commands(commands: &[Command]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in commands {
        let argv = c.argv();
        for field in [c.op.as_str(), &argv.len().to_string()].into_iter().chain(argv) {
            out.extend_from_slice(field.as_bytes());
            out.push(0);
        }
    }
    out
}

/// Plans the commands that bring `running` to the request's desired state (the same planning
/// the agent does, without protected paths: there is no agent-local file).
pub fn plan_for(running: &Tree, request: &FallbackRequest) -> Result<Plan, String> {
    let desired = Config::parse(&request.desired).map_err(|e| format!("desired configuration: {e}"))?.tree;
    let previous = match &request.previous {
        Some((_, text)) => Some(Config::parse(text).map_err(|e| format!("previous configuration: {e}"))?.tree),
        None => None,
    };
    let mut deletions = Vec::new();
    for line in &request.deletions {
        let parsed = vyos_config::parse_commands(line).map_err(|e| format!("deletion {line:?}: {e}"))?;
        deletions.extend(parsed);
    }
    let scopes: Vec<_> = request.scopes.iter().map(|s| path_from_str(s)).filter(|p| !p.is_empty()).collect();
    Ok(vyos_config::plan(PlanInput {
        running,
        desired: &desired,
        previous: previous.as_ref(),
        policy: if request.replace { Policy::Replace } else { Policy::Merge },
        managed_scopes: &scopes,
        deletions: &deletions,
        protected: &Tree::default(),
        schema: &Schema::default(),
    }))
}

async fn running_config(client: &QgaClient, layout: &GuestLayout) -> Result<Tree, FallbackError> {
    let api = layout.at("/bin/cli-shell-api");
    let out = run(client, &api, &["--show-active-only", "--show-ignore-edit", "showConfig"], Duration::from_secs(120))
        .await
        .map_err(qga("read the running configuration"))?;
    Config::parse_hierarchical(&out.stdout_lossy())
        .map(|c| c.tree)
        .map_err(|e| FallbackError::Output(format!("running configuration: {e}")))
}

/// Delivers through the fixed apply script (no agent in the guest).
pub async fn apply_with_script(
    client: &QgaClient,
    layout: &GuestLayout,
    request: &FallbackRequest,
) -> Result<FallbackResult, FallbackError> {
    let before = running_config(client, layout).await?;
    let plan = plan_for(&before, request).map_err(FallbackError::Output)?;
    let commands: Vec<String> = plan.commands.iter().map(ToString::to_string).collect();
    let result = |outcome: &str, message: String, running: &Tree, saved: bool| FallbackResult {
        outcome: outcome.to_owned(),
        commands: commands.clone(),
        message,
        running_digest: vyos_config::digest(running).to_string(),
        saved,
        via: "script",
    };
    if plan.is_noop() {
        return Ok(result("NoChange", "the router already runs this configuration".into(), &before, false));
    }
    let dir = layout.qga_dir();
    let stem = file_stem(&request.revision);
    let (script, staged) = (format!("{dir}/apply.sh"), format!("{dir}/{stem}.commands"));
    stage(
        client,
        layout,
        &[(script.clone(), APPLY_SCRIPT.as_bytes().to_vec()), (staged.clone(), encode_commands(&plan.commands))],
    )
    .await?;
    let save = if request.save { "1" } else { "0" };
    let out = client
        .exec(
            &ExecRequest::new("/bin/bash", [script.as_str(), layout.root(), staged.as_str(), save, "4242"])
                .deadline(request.deadline),
        )
        .await;
    unstage(client, &[staged]).await;
    let out = out.map_err(qga("apply script"))?;
    let text = format!("{}{}", out.stdout_lossy(), out.stderr_lossy()).trim().to_owned();
    let after = running_config(client, layout).await?;
    let code = out.exit_status();
    Ok(match code {
        0 => result("Applied", text, &after, request.save),
        3 => result("Applied", format!("committed but not saved: {text}"), &after, false),
        _ if after != before => result("Partial", text, &after, false),
        _ => result("Failed", text, &after, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(desired: &str) -> FallbackRequest {
        FallbackRequest {
            revision: "r-1".into(),
            desired: desired.into(),
            previous: None,
            deletions: vec![],
            replace: false,
            scopes: vec![],
            save: true,
            deadline: Duration::from_secs(60),
        }
    }

    #[test]
    fn commands_are_encoded_as_nul_fields_with_counts() {
        let cmds = vyos_config::parse_commands("set system host-name 'a b'\ndelete service ssh").unwrap();
        let bytes = encode_commands(&cmds);
        let fields: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        assert_eq!(
            fields,
            vec![&b"set"[..], b"3", b"system", b"host-name", b"a b", b"delete", b"2", b"service", b"ssh", b""]
        );
    }

    #[test]
    fn hostile_values_stay_single_words() {
        let cmds = vyos_config::parse_commands("set system host-name '$(reboot); `id`\"'").unwrap();
        let bytes = encode_commands(&cmds);
        assert!(bytes.split(|b| *b == 0).any(|f| f == b"$(reboot); `id`\""));
    }

    #[test]
    fn plan_merges_and_removes_what_left_the_previous_revision() {
        let running = Config::parse("system {\n host-name old\n}\nservice {\n ssh\n}\n").unwrap().tree;
        let mut r = request("system {\n host-name new\n}\n");
        r.previous = Some(("r-0".into(), "service {\n ssh\n}\n".into()));
        let plan = plan_for(&running, &r).unwrap();
        let text: Vec<String> = plan.commands.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|c| c.starts_with("delete service")), "{text:?}");
        assert!(text.iter().any(|c| c.starts_with("set system host-name")), "{text:?}");
    }

    #[test]
    fn bad_desired_config_is_reported() {
        let running = Tree::default();
        let e = plan_for(&running, &request("system { host-name")).unwrap_err();
        assert!(e.starts_with("desired configuration"), "{e}");
    }

    #[test]
    fn agent_json_is_read() {
        let out = r#"{"outcome":"APPLY_OUTCOME_APPLIED","revision":"r-1","commands":["set a b"],"output":"ok","error":"","failedPaths":[],"saved":true,"runningDigest":"abc"}"#;
        let r = parse_agent_result(out, "").unwrap();
        assert_eq!((r.outcome.as_str(), r.saved, r.running_digest.as_str()), ("Applied", true, "abc"));
        assert_eq!(r.commands, vec!["set a b"]);
        let e = parse_agent_result("", "error: cannot read agent.toml").unwrap_err();
        assert!(e.to_string().contains("cannot read agent.toml"));
    }

    #[test]
    fn revision_file_names_are_safe() {
        assert_eq!(file_stem("../../etc/passwd"), "etcpasswd");
        assert_eq!(file_stem("r-abc123"), "r-abc123");
        assert_eq!(file_stem("///"), "revision");
    }

    #[test]
    fn the_script_is_valid_bash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("apply.sh");
        std::fs::write(&p, APPLY_SCRIPT).unwrap();
        let st = std::process::Command::new("bash").arg("-n").arg(&p).status().unwrap();
        assert!(st.success());
    }
}
