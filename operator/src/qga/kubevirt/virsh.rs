//! The `virsh qemu-agent-command` invocation run in a virt-launcher pod, and how its outcome
//! reads (no I/O here).
//!
//! The command is an argv, never a shell line: the JSON request is one argument whatever it
//! contains. Linux limits one argument to `MAX_ARG_STRLEN` (32 pages, 128 KiB with its NUL), so
//! a request above [`MAX_REQUEST`] fails before anything runs; the client's 48 KiB file-write
//! chunks stay far below it.
//!
//! On success virsh prints the agent's whole reply (`{"return": …}`) on stdout. When the agent
//! answers with an error, libvirt turns it into its own error on stderr
//! (`error: internal error: unable to execute QEMU agent command 'guest-x': <desc>`) and virsh
//! exits 1; an unknown or disabled command has the agent's `The command … has not been found` /
//! `… has been disabled` as desc.

use std::time::Duration;

use serde_json::Value;

use crate::qga::QgaError;
use crate::qga::protocol;

/// The container of a virt-launcher pod that runs libvirt and QEMU.
pub const COMPUTE_CONTAINER: &str = "compute";

/// The longest request (one argv element): `MAX_ARG_STRLEN` less the terminating NUL.
pub const MAX_REQUEST: usize = 128 * 1024 - 1;

/// The libvirt domain name KubeVirt gives a VMI: `<namespace>_<name>`.
pub fn domain_name(namespace: &str, vm: &str) -> String {
    format!("{namespace}_{vm}")
}

/// The request as one line of JSON (no trailing newline), or [`QgaError::TooLarge`] when it
/// cannot be one argument.
pub fn request_json(command: &str, arguments: Option<&Value>) -> Result<String, QgaError> {
    let mut bytes = protocol::encode_request(command, arguments);
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() > MAX_REQUEST {
        return Err(QgaError::TooLarge {
            command: command.to_owned(),
            what: format!("request ({} bytes, one virsh argument)", bytes.len()),
            limit: MAX_REQUEST as u64,
        });
    }
    // encode_request writes serde_json output, which is UTF-8.
    String::from_utf8(bytes).map_err(|e| QgaError::protocol(command, format!("request is not UTF-8: {e}")))
}

/// virsh's `--timeout` for a command timeout: whole seconds, rounded up, at least 1.
pub fn timeout_secs(timeout: Duration) -> u64 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    secs.max(1)
}

/// The argv run in the compute container.
pub fn argv(domain: &str, request: &str, timeout: Duration) -> Vec<String> {
    vec![
        "virsh".to_owned(),
        "qemu-agent-command".to_owned(),
        "--timeout".to_owned(),
        timeout_secs(timeout).to_string(),
        domain.to_owned(),
        request.to_owned(),
    ]
}

/// How the exec'd process ended, as the Kubernetes exec status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecExit {
    /// Exit code 0.
    Success,
    /// A non-zero exit code.
    Code(i32),
    /// The process could not be run or was killed (the status message).
    Failed(String),
    /// No status arrived (the stream ended early).
    Unknown,
}

impl ExecExit {
    /// Reads a Kubernetes exec status (`metav1.Status` on the error channel): `Success`, or
    /// `Failure` with reason `NonZeroExitCode` and an `ExitCode` cause.
    pub fn from_status(status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> Self {
        let Some(status) = status else { return ExecExit::Unknown };
        if status.status.as_deref() == Some("Success") {
            return ExecExit::Success;
        }
        if status.reason.as_deref() == Some("NonZeroExitCode") {
            let code = status
                .details
                .as_ref()
                .and_then(|details| details.causes.as_ref())
                .and_then(|causes| causes.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                .and_then(|cause| cause.message.as_deref())
                .and_then(|message| message.trim().parse::<i32>().ok());
            if let Some(code) = code {
                return ExecExit::Code(code);
            }
        }
        ExecExit::Failed(status.message.clone().unwrap_or_else(|| "exec failed without a message".to_owned()))
    }
}

/// What one exec of virsh produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirshOutput {
    /// Standard output (the agent's reply on success).
    pub stdout: Vec<u8>,
    /// Standard error (libvirt's error on failure).
    pub stderr: Vec<u8>,
    /// How it ended.
    pub exit: ExecExit,
}

/// Turns virsh's outcome for `command` into the reply's `return` value or a [`QgaError`];
/// `target` names the pod and domain in transport errors.
pub fn interpret(command: &str, target: &str, output: &VirshOutput) -> Result<Value, QgaError> {
    let stdout = trim(&output.stdout);
    match &output.exit {
        ExecExit::Success => {
            if stdout.is_empty() {
                return Err(QgaError::protocol(command, "virsh succeeded but printed no reply"));
            }
            protocol::parse_reply(command, stdout)
        }
        // The stream ended without a status: trust a complete reply if there is one.
        ExecExit::Unknown if !stdout.is_empty() => protocol::parse_reply(command, stdout),
        exit => Err(classify_failure(command, target, exit, &stderr_text(&output.stderr))),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// virsh's stderr without the `error: ` prefixes, one line per message, joined with `; `.
fn stderr_text(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

const AGENT_ERROR: &str = "unable to execute QEMU agent command '";

fn classify_failure(command: &str, target: &str, exit: &ExecExit, stderr: &str) -> QgaError {
    if let Some(at) = stderr.find(AGENT_ERROR) {
        // "... command 'guest-x': <desc>" (the desc may be absent).
        let rest = &stderr[at + AGENT_ERROR.len()..];
        let desc = rest.split_once("': ").map_or(rest.trim_end_matches('\''), |(_, desc)| desc).trim();
        if is_unsupported(desc) {
            return QgaError::NotSupported { command: command.to_owned(), desc: desc.to_owned() };
        }
        return QgaError::Agent { command: command.to_owned(), class: "libvirt".to_owned(), desc: desc.to_owned() };
    }
    let lower = stderr.to_ascii_lowercase();
    let message = if lower.contains("guest agent is not responding") || lower.contains("guest agent is not connected") {
        format!("the guest agent does not answer (is qemu-ga running in the guest?): {stderr}")
    } else if lower.contains("domain is not running") {
        format!("the VM is not running: {stderr}")
    } else if lower.contains("domain not found") || lower.contains("failed to get domain") {
        format!("libvirt does not know the domain (wrong pod or VM name?): {stderr}")
    } else {
        match exit {
            ExecExit::Code(126 | 127) => format!("virsh could not be run in the compute container: {stderr}"),
            ExecExit::Code(code) => format!("virsh exited with status {code}: {}", or_nothing(stderr)),
            ExecExit::Failed(message) => format!("exec failed: {message}; stderr: {}", or_nothing(stderr)),
            ExecExit::Unknown => format!("exec ended without an exit status; stderr: {}", or_nothing(stderr)),
            ExecExit::Success => format!("virsh succeeded but {}", or_nothing(stderr)),
        }
    };
    QgaError::Transport { target: target.to_owned(), message: format!("{command}: {message}") }
}

fn or_nothing(text: &str) -> &str {
    if text.is_empty() { "(nothing on stderr)" } else { text }
}

/// Whether an agent error desc says the command is unknown or disabled.
pub fn is_unsupported(desc: &str) -> bool {
    let lower = desc.to_ascii_lowercase();
    lower.contains("has not been found")
        || lower.contains("has been disabled")
        || lower.contains("commandnotfound")
        || lower.contains("commanddisabled")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
    use serde_json::json;

    use super::*;

    fn out(stdout: &str, stderr: &str, exit: ExecExit) -> VirshOutput {
        VirshOutput { stdout: stdout.as_bytes().to_vec(), stderr: stderr.as_bytes().to_vec(), exit }
    }

    #[test]
    fn argv_has_the_request_as_one_argument() {
        let request =
            request_json("guest-exec", Some(&json!({"path": "/bin/sh", "arg": ["-c", "echo '$x'; reboot"]}))).unwrap();
        assert!(!request.ends_with('\n'));
        let argv = argv(&domain_name("net", "r1"), &request, Duration::from_millis(2500));
        assert_eq!(argv.len(), 6);
        assert_eq!(argv[..5], ["virsh", "qemu-agent-command", "--timeout", "3", "net_r1"]);
        let sent: Value = serde_json::from_str(&argv[5]).unwrap();
        assert_eq!(
            sent,
            json!({"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", "echo '$x'; reboot"]}})
        );
        assert_eq!(request_json("guest-ping", None).unwrap(), r#"{"execute":"guest-ping"}"#);
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(timeout_secs(Duration::ZERO), 1);
        assert_eq!(timeout_secs(Duration::from_millis(1)), 1);
        assert_eq!(timeout_secs(Duration::from_secs(30)), 30);
        assert_eq!(timeout_secs(Duration::from_millis(30_001)), 31);
    }

    #[test]
    fn requests_above_one_argument_are_refused() {
        // A 48 KiB chunk (64 KiB of base64) fits easily.
        let chunk = "A".repeat(64 * 1024);
        assert!(request_json("guest-file-write", Some(&json!({"handle": 1, "buf-b64": chunk}))).is_ok());
        let huge = "A".repeat(MAX_REQUEST);
        match request_json("guest-file-write", Some(&json!({"handle": 1, "buf-b64": huge}))) {
            Err(QgaError::TooLarge { command, what, limit }) => {
                assert_eq!(command, "guest-file-write");
                assert!(what.contains("virsh argument"), "{what}");
                assert_eq!(limit, 131_071);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stdout_is_the_whole_reply() {
        let value = interpret("guest-ping", "t", &out("{\"return\":{}}\n\n", "", ExecExit::Success)).unwrap();
        assert_eq!(value, json!({}));
        let value = interpret("guest-file-open", "t", &out("{\"return\":1000}", "", ExecExit::Success)).unwrap();
        assert_eq!(value, json!(1000));
        // An error object on stdout (not what virsh does, but a whole reply all the same).
        let err = interpret(
            "guest-x",
            "t",
            &out(
                r#"{"error":{"class":"CommandNotFound","desc":"The command guest-x has not been found"}}"#,
                "",
                ExecExit::Success,
            ),
        )
        .unwrap_err();
        assert!(matches!(err, QgaError::NotSupported { .. }), "{err:?}");
        let err = interpret("guest-ping", "t", &out("", "", ExecExit::Success)).unwrap_err();
        assert!(matches!(err, QgaError::Protocol { .. }), "{err:?}");
        let err = interpret("guest-ping", "t", &out("not json", "", ExecExit::Success)).unwrap_err();
        assert!(matches!(err, QgaError::Protocol { .. }), "{err:?}");
        // Without a status, a complete reply still counts.
        assert_eq!(interpret("guest-ping", "t", &out("{\"return\":{}}", "", ExecExit::Unknown)).unwrap(), json!({}));
    }

    #[test]
    fn agent_errors_keep_the_agent_desc() {
        let stderr = "error: internal error: unable to execute QEMU agent command 'guest-file-open': \
                      Failed to open file '/nope/x': No such file or directory\n";
        match interpret("guest-file-open", "t", &out("", stderr, ExecExit::Code(1))).unwrap_err() {
            QgaError::Agent { command, desc, .. } => {
                assert_eq!(command, "guest-file-open");
                assert_eq!(desc, "Failed to open file '/nope/x': No such file or directory");
            }
            other => panic!("{other:?}"),
        }
        // Newer libvirt words the error class differently; the part that matters is the same.
        let stderr = "error: guest agent command failed: unable to execute QEMU agent command 'guest-exec': \
                      Guest agent command failed, error was 'Failed to execute child process'";
        assert!(matches!(
            interpret("guest-exec", "t", &out("", stderr, ExecExit::Code(1))).unwrap_err(),
            QgaError::Agent { .. }
        ));
        let stderr = "error: internal error: unable to execute QEMU agent command 'guest-x'\n";
        match interpret("guest-x", "t", &out("", stderr, ExecExit::Code(1))).unwrap_err() {
            QgaError::Agent { desc, .. } => assert_eq!(desc, "guest-x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_or_disabled_commands_are_not_supported() {
        for desc in [
            "The command guest-get-osinfo has not been found",
            "The command guest-exec has been disabled for this instance",
            "The command has not been found",
        ] {
            let stderr =
                format!("error: internal error: unable to execute QEMU agent command 'guest-get-osinfo': {desc}");
            match interpret("guest-get-osinfo", "t", &out("", &stderr, ExecExit::Code(1))).unwrap_err() {
                QgaError::NotSupported { command, desc: got } => {
                    assert_eq!(command, "guest-get-osinfo");
                    assert_eq!(got, desc);
                }
                other => panic!("{desc}: {other:?}"),
            }
        }
    }

    #[test]
    fn virsh_and_exec_failures_are_transport_errors_that_say_why() {
        let cases = [
            (
                "error: Guest agent is not responding: QEMU guest agent is not connected",
                ExecExit::Code(1),
                "does not answer",
            ),
            ("error: Requested operation is not valid: domain is not running", ExecExit::Code(1), "not running"),
            (
                "error: failed to get domain 'net_r1'\nerror: Domain not found: no domain with matching name",
                ExecExit::Code(1),
                "does not know the domain",
            ),
            ("sh: virsh: not found", ExecExit::Code(127), "could not be run"),
            ("something odd", ExecExit::Code(3), "status 3: something odd"),
            ("", ExecExit::Code(2), "(nothing on stderr)"),
            ("", ExecExit::Failed("container not found (\"compute\")".into()), "container not found"),
            ("", ExecExit::Unknown, "without an exit status"),
        ];
        for (stderr, exit, expected) in cases {
            match interpret("guest-ping", "pod net/virt-launcher-r1-x", &out("", stderr, exit.clone())).unwrap_err() {
                QgaError::Transport { target, message } => {
                    assert_eq!(target, "pod net/virt-launcher-r1-x");
                    assert!(message.starts_with("guest-ping: "), "{message}");
                    assert!(message.contains(expected), "{stderr:?} {exit:?}: {message}");
                    assert!(!message.contains("error: "), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn exec_statuses() {
        let success = Status { status: Some("Success".into()), ..Status::default() };
        assert_eq!(ExecExit::from_status(Some(&success)), ExecExit::Success);
        let code = |message: &str| Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            message: Some("command terminated with non-zero exit code".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some(message.into()),
                    ..StatusCause::default()
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        };
        assert_eq!(ExecExit::from_status(Some(&code("1"))), ExecExit::Code(1));
        assert_eq!(
            ExecExit::from_status(Some(&code("x"))),
            ExecExit::Failed("command terminated with non-zero exit code".into())
        );
        let failed =
            Status { status: Some("Failure".into()), message: Some("container not found".into()), ..Status::default() };
        assert_eq!(ExecExit::from_status(Some(&failed)), ExecExit::Failed("container not found".into()));
        assert_eq!(
            ExecExit::from_status(Some(&Status::default())),
            ExecExit::Failed("exec failed without a message".into())
        );
        assert_eq!(ExecExit::from_status(None), ExecExit::Unknown);
    }
}
