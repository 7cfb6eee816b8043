//! Running programs in the guest (`guest-exec` + `guest-exec-status`): the request, the result,
//! and the parts that need no I/O (arguments, status parsing, the polling schedule).

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::QgaError;

/// A program to run in the guest. The program and its arguments are an argv: they are passed to
/// the agent as separate strings and never through a shell. The agent looks a program without a
/// `/` up in its `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The program (`argv[0]`).
    pub program: String,
    /// The arguments after the program.
    pub args: Vec<String>,
    /// `KEY=VALUE` strings. When set, they are the program's entire environment (the agent's
    /// own environment is not inherited).
    pub env: Option<Vec<String>>,
    /// Bytes for the program's standard input (sent in the `guest-exec` request itself, so
    /// keep it moderate; push a file for large inputs). Without it, stdin is empty.
    pub stdin: Option<Vec<u8>>,
    /// How long to wait for the program to exit (default 60 s).
    pub deadline: Duration,
}

/// The default [`ExecRequest::deadline`].
pub const DEFAULT_EXEC_DEADLINE: Duration = Duration::from_secs(60);

impl ExecRequest {
    /// Runs `program` with `args`, no environment override, no stdin, the default deadline.
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: None,
            stdin: None,
            deadline: DEFAULT_EXEC_DEADLINE,
        }
    }

    /// Replaces the environment with these `KEY=VALUE` strings.
    pub fn env<I, S>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env = Some(vars.into_iter().map(Into::into).collect());
        self
    }

    /// Feeds these bytes to standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets the deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The `guest-exec` arguments (output is always captured).
    pub fn to_arguments(&self) -> Value {
        let mut args = Map::new();
        args.insert("path".into(), json!(self.program));
        args.insert("arg".into(), json!(self.args));
        if let Some(env) = &self.env {
            args.insert("env".into(), json!(env));
        }
        if let Some(stdin) = &self.stdin {
            args.insert("input-data".into(), json!(STANDARD.encode(stdin)));
        }
        args.insert("capture-output".into(), json!(true));
        Value::Object(args)
    }
}

/// What a program run in the guest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its process id in the guest.
    pub pid: i64,
    /// Its exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Whether the agent cut standard output short (qemu-ga keeps at most 16 MiB).
    pub stdout_truncated: bool,
    /// Whether the agent cut standard error short.
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && self.signal.is_none()
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// A shell-style status for `std::process::exit`: the exit code (0..=255), `128 + signal`
    /// for a killed program, 255 when neither is known.
    pub fn exit_status(&self) -> i32 {
        match (self.signal, self.exit_code) {
            (Some(signal), _) => 128 + signal.clamp(0, 127),
            (None, Some(code)) => code.clamp(0, 255),
            (None, None) => 255,
        }
    }
}

const EXEC: &str = "guest-exec";
const STATUS: &str = "guest-exec-status";

/// Parses the pid returned by `guest-exec`.
pub fn parse_pid(value: &Value) -> Result<i64, QgaError> {
    value.get("pid").and_then(Value::as_i64).ok_or_else(|| QgaError::protocol(EXEC, format!("no pid in {value}")))
}

/// Arguments of `guest-exec-status`.
pub fn status_args(pid: i64) -> Value {
    json!({ "pid": pid })
}

#[derive(Deserialize)]
struct RawStatus {
    exited: bool,
    exitcode: Option<i64>,
    signal: Option<i64>,
    #[serde(rename = "out-data")]
    out_data: Option<String>,
    #[serde(rename = "err-data")]
    err_data: Option<String>,
    #[serde(rename = "out-truncated", default)]
    out_truncated: bool,
    #[serde(rename = "err-truncated", default)]
    err_truncated: bool,
}

/// Parses a `guest-exec-status` reply: `None` while the program runs, its output once it
/// exited.
pub fn parse_status(pid: i64, value: Value) -> Result<Option<ExecOutput>, QgaError> {
    let raw: RawStatus =
        serde_json::from_value(value).map_err(|e| QgaError::protocol(STATUS, format!("unexpected reply: {e}")))?;
    if !raw.exited {
        return Ok(None);
    }
    let small = |n: Option<i64>, what: &str| {
        n.map(|n| i32::try_from(n).map_err(|_| QgaError::protocol(STATUS, format!("{what} {n} out of range"))))
            .transpose()
    };
    let decode = |data: Option<String>, what: &str| match data {
        None => Ok(Vec::new()),
        Some(text) => STANDARD
            .decode(text.as_bytes())
            .map_err(|e| QgaError::protocol(STATUS, format!("bad base64 in {what}: {e}"))),
    };
    Ok(Some(ExecOutput {
        pid,
        exit_code: small(raw.exitcode, "exit code")?,
        signal: small(raw.signal, "signal")?,
        stdout: decode(raw.out_data, "out-data")?,
        stderr: decode(raw.err_data, "err-data")?,
        stdout_truncated: raw.out_truncated,
        stderr_truncated: raw.err_truncated,
    }))
}

/// The pause before the next `guest-exec-status` poll: doubling from 10 ms up to 500 ms, so
/// short commands return quickly and long ones cost few requests.
pub fn next_poll_delay(previous: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(500);
    match previous {
        None => FIRST,
        Some(previous) => (previous * 2).min(MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_an_argv_never_a_command_line() {
        let request = ExecRequest::new("/bin/echo", ["a b", "$(reboot)", "'; rm -rf /"]);
        assert_eq!(
            request.to_arguments(),
            json!({"path": "/bin/echo", "arg": ["a b", "$(reboot)", "'; rm -rf /"], "capture-output": true})
        );
        let request = ExecRequest::new("cat", Vec::<String>::new())
            .env(["A=1"])
            .stdin(b"hello".to_vec())
            .deadline(Duration::from_secs(3));
        assert_eq!(
            request.to_arguments(),
            json!({"path": "cat", "arg": [], "env": ["A=1"], "input-data": "aGVsbG8=", "capture-output": true})
        );
        assert_eq!(request.deadline, Duration::from_secs(3));
        assert_eq!(ExecRequest::new("x", [""; 0]).deadline, DEFAULT_EXEC_DEADLINE);
    }

    #[test]
    fn status_while_running_and_after_exit() {
        assert_eq!(parse_status(5, json!({"exited": false})).unwrap(), None);
        let done = parse_status(
            5,
            json!({"exitcode": 3, "err-data": "ZXJyCg==", "out-data": "aGkK", "err-truncated": false,
                   "out-truncated": true, "exited": true}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(done.pid, 5);
        assert_eq!(done.exit_code, Some(3));
        assert_eq!(done.signal, None);
        assert_eq!(done.stdout, b"hi\n");
        assert_eq!(done.stderr_lossy(), "err\n");
        assert!(done.stdout_truncated && !done.stderr_truncated);
        assert!(!done.success());
        assert_eq!(done.exit_status(), 3);

        let killed = parse_status(6, json!({"signal": 9, "exited": true})).unwrap().unwrap();
        assert_eq!((killed.exit_code, killed.signal), (None, Some(9)));
        assert!(killed.stdout.is_empty());
        assert_eq!(killed.exit_status(), 137);

        let ok = parse_status(7, json!({"exitcode": 0, "exited": true})).unwrap().unwrap();
        assert!(ok.success());
        assert_eq!(ok.exit_status(), 0);
        assert_eq!(ExecOutput::default().exit_status(), 255);
    }

    #[test]
    fn bad_status_replies_are_protocol_errors() {
        for bad in [
            json!({}),
            json!({"exited": "yes"}),
            json!({"exited": true, "out-data": "!!"}),
            json!({"exited": true, "exitcode": 1u64 << 40}),
            json!({"exited": true, "signal": -1i64 << 40}),
            json!(null),
        ] {
            assert!(matches!(parse_status(1, bad.clone()), Err(QgaError::Protocol { .. })), "{bad}");
        }
        assert!(matches!(parse_pid(&json!({"pid": "x"})), Err(QgaError::Protocol { .. })));
        assert_eq!(parse_pid(&json!({"pid": 26184})).unwrap(), 26184);
        assert_eq!(status_args(3), json!({"pid": 3}));
    }

    #[test]
    fn non_utf8_output_is_lossy_text() {
        let out = ExecOutput { stdout: vec![b'a', 0xff, b'b'], ..ExecOutput::default() };
        assert_eq!(out.stdout_lossy(), "a\u{fffd}b");
    }

    #[test]
    fn polling_backs_off_to_a_ceiling() {
        let mut delay = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let next = next_poll_delay(delay);
            seen.push(next.as_millis());
            delay = Some(next);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 320, 500, 500, 500, 500]);
    }
}
