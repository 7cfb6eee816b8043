//! The parts of the Proxmox transport that need no I/O: how QGA arguments and replies map onto
//! the PVE API's shapes, how much data fits one request, and what PVE's error messages mean.
//!
//! Verified against the PVE sources (qemu-server `PVE/API2/Qemu/Agent.pm` and
//! `PVE/QemuServer/Agent.pm`, pve-http-server `PVE/APIServer/AnyEvent.pm`):
//!
//! - Binary data travels as strings of Latin-1 characters, one per byte: PVE base64-*decodes*
//!   `out-data`/`err-data` of exec-status and file-read's `content` before answering (JSON with
//!   code points U+0000–U+00FF), and base64-*encodes* exec's `input-data` itself. So bytes go in
//!   and come out as Latin-1 strings here.
//! - file-write's `content` is at most 60 KiB (61 440 characters); with `encode=0` it is sent as
//!   base64 already, so one file-write carries at most 46 080 bytes. exec's `input-data` is at
//!   most 64 KiB.
//! - pveproxy refuses request bodies above 64 KiB (512 KiB since libpve-http-server-perl 5.2.1)
//!   and forwards requests for another node as `application/x-www-form-urlencoded`, where a
//!   non-ASCII character takes 6 bytes. Every request body is therefore kept within
//!   [`BODY_BUDGET`] counted in the larger of its JSON and its form encoding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::qga::QgaError;

/// The most a request body may take, in the larger of its JSON and form encodings (below
/// pveproxy's 64 KiB limit, with room for the field names).
pub const BODY_BUDGET: usize = 60 * 1024;

/// file-write's limit on `content`, in characters.
pub const FILE_WRITE_CONTENT_MAX: usize = 60 * 1024;

/// exec's limit on `input-data`, in characters.
pub const INPUT_DATA_MAX: usize = 64 * 1024;

/// The most file-read returns; longer files come back `truncated`.
pub const FILE_READ_MAX: u64 = 16 * 1024 * 1024;

/// Room left in a body for field names, punctuation and the other parameters.
const BODY_OVERHEAD: usize = 256;

/// The program that appends a chunk to a file in the guest (data on stdin, path as an argument;
/// no shell).
pub fn append_argv(path: &str) -> Vec<String> {
    vec![
        "/bin/dd".to_owned(),
        format!("of={path}"),
        "oflag=append".to_owned(),
        "conv=notrunc".to_owned(),
        "status=none".to_owned(),
    ]
}

/// The program that creates or empties a file in the guest (no input: its stdin is
/// `/dev/null`).
pub fn truncate_argv(path: &str) -> Vec<String> {
    vec!["/bin/dd".to_owned(), format!("of={path}"), "status=none".to_owned()]
}

/// Bytes as a string of Latin-1 characters (byte `b` → `U+00bb`).
pub fn latin1_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The bytes of a string of Latin-1 characters; `None` if a character is above U+00FF.
pub fn latin1_bytes(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// What one byte of data (sent as a Latin-1 character) costs in a request body: the larger of
/// its JSON escape and its form encoding (as UTF-8, percent-encoded).
pub fn byte_cost(b: u8) -> usize {
    let form = match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b' ' => 1,
        0x00..=0x7f => 3,
        // Two UTF-8 bytes, each %XX.
        _ => 6,
    };
    let json = match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0x00..=0x1f => 6,
        0x80..=0xff => 2,
        _ => 1,
    };
    form.max(json)
}

/// What a UTF-8 string (a path, a program argument) costs in a request body.
pub fn str_cost(text: &str) -> usize {
    // Non-ASCII UTF-8 bytes are %XX in a form and raw in JSON: 3 each.
    text.bytes().map(|b| if b.is_ascii() { byte_cost(b) } else { 3 }).sum()
}

/// The longest prefix of `data` whose cost fits `budget`.
pub fn prefix_within(data: &[u8], budget: usize) -> usize {
    let mut spent = 0;
    for (i, &b) in data.iter().enumerate() {
        spent += byte_cost(b);
        if spent > budget {
            return i;
        }
    }
    data.len()
}

/// How many bytes of `data` one file-write to `path` can carry (as base64 with `encode=0`): at
/// most [`FILE_WRITE_CONTENT_MAX`] base64 characters within [`BODY_BUDGET`]. Zero only when the
/// path alone leaves no room.
pub fn file_write_take(path: &str, data: &[u8]) -> usize {
    let budget = BODY_BUDGET.saturating_sub(BODY_OVERHEAD + str_cost(path));
    let b64_cost = |c: u8| if c.is_ascii_alphanumeric() { 1 } else { 3 };
    let mut taken = 0;
    let mut chars = 0;
    let mut spent = 0;
    let mut encoded = [0u8; 4];
    for group in data.chunks(3) {
        let n = STANDARD.encode_slice(group, &mut encoded).unwrap_or(0);
        let cost: usize = encoded[..n].iter().map(|&c| b64_cost(c)).sum();
        if chars + n > FILE_WRITE_CONTENT_MAX || spent + cost > budget {
            break;
        }
        chars += n;
        spent += cost;
        taken += group.len();
    }
    taken
}

/// The cost of an exec request's `command` array.
pub fn argv_cost(argv: &[String]) -> usize {
    argv.iter().map(|arg| str_cost(arg) + 16).sum()
}

/// How many bytes of `data` one exec of `argv` can take as input.
pub fn input_take(argv: &[String], data: &[u8]) -> usize {
    let budget = BODY_BUDGET.saturating_sub(BODY_OVERHEAD + argv_cost(argv)).min(INPUT_DATA_MAX);
    prefix_within(data, budget)
}

/// The body of an exec request.
pub fn exec_body(argv: &[String], input: Option<&[u8]>) -> Value {
    let mut body = Map::new();
    body.insert("command".into(), json!(argv));
    if let Some(input) = input {
        body.insert("input-data".into(), json!(latin1_string(input)));
    }
    Value::Object(body)
}

/// The PVE exec request for `guest-exec` arguments (`path`, `arg`, `env`, `input-data` in
/// base64): the argv (with `env` through `/usr/bin/env -i -- VAR=… program …`, since PVE has no
/// environment parameter) and the decoded stdin. Arguments PVE cannot carry are errors.
pub fn exec_request(arguments: Option<&Value>) -> Result<(Vec<String>, Option<Vec<u8>>), QgaError> {
    const COMMAND: &str = "guest-exec";
    let bad = |message: String| QgaError::protocol(COMMAND, message);
    let arguments = arguments.and_then(Value::as_object).ok_or_else(|| bad("arguments are not an object".into()))?;
    let path = arguments.get("path").and_then(Value::as_str).ok_or_else(|| bad("no \"path\"".into()))?;
    let strings = |key: &str| -> Result<Vec<String>, QgaError> {
        match arguments.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| bad(format!("\"{key}\" holds a non-string")))
                })
                .collect(),
            Some(_) => Err(bad(format!("\"{key}\" is not an array"))),
        }
    };
    let args = strings("arg")?;
    let mut argv = Vec::new();
    if arguments.get("env").is_some_and(|env| !env.is_null()) {
        let env = strings("env")?;
        if let Some(var) = env.iter().find(|var| !var.contains('=') || var.starts_with('=')) {
            return Err(bad(format!("environment entry {var:?} is not NAME=VALUE")));
        }
        if path.contains('=') {
            return Err(bad(format!("program {path:?} contains '=', which env(1) would take for a variable")));
        }
        argv.extend(["/usr/bin/env", "-i", "--"].map(str::to_owned));
        argv.extend(env);
    }
    argv.push(path.to_owned());
    argv.extend(args);
    let input = match arguments.get("input-data") {
        None | Some(Value::Null) => None,
        Some(Value::String(b64)) => {
            Some(STANDARD.decode(b64.as_bytes()).map_err(|e| bad(format!("input-data is not base64: {e}")))?)
        }
        Some(_) => return Err(bad("input-data is not a string".into())),
    };
    if let Some(input) = &input
        && input_take(&argv, input) < input.len()
    {
        return Err(QgaError::TooLarge {
            command: COMMAND.to_owned(),
            what: "standard input through the Proxmox API (write a file instead)".to_owned(),
            limit: BODY_BUDGET.saturating_sub(BODY_OVERHEAD + argv_cost(&argv)).min(INPUT_DATA_MAX) as u64,
        });
    }
    Ok((argv, input))
}

fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => s == "1" || s == "true",
        _ => false,
    }
}

/// A PVE exec-status answer as a QGA `guest-exec-status` reply: `exited` and the truncation
/// flags as booleans (PVE sends 0/1), output back in base64 (PVE sends it decoded).
pub fn exec_status_reply(data: &Value) -> Result<Value, QgaError> {
    const COMMAND: &str = "guest-exec-status";
    let fields = data.as_object().ok_or_else(|| QgaError::protocol(COMMAND, format!("unexpected answer: {data}")))?;
    let mut reply = Map::new();
    reply.insert("exited".into(), json!(flag(fields.get("exited"))));
    for key in ["exitcode", "signal"] {
        if let Some(value) = fields.get(key).filter(|v| !v.is_null()) {
            reply.insert(key.into(), value.clone());
        }
    }
    for key in ["out-data", "err-data"] {
        match fields.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                let bytes = latin1_bytes(text)
                    .ok_or_else(|| QgaError::protocol(COMMAND, format!("{key} has characters above U+00FF")))?;
                reply.insert(key.into(), json!(STANDARD.encode(bytes)));
            }
            Some(other) => return Err(QgaError::protocol(COMMAND, format!("{key} is not a string: {other}"))),
        }
    }
    for key in ["out-truncated", "err-truncated"] {
        if fields.contains_key(key) {
            reply.insert(key.into(), json!(flag(fields.get(key))));
        }
    }
    Ok(Value::Object(reply))
}

/// A file-read answer: the content's bytes and whether PVE cut it at [`FILE_READ_MAX`].
pub fn file_read_content(data: &Value) -> Result<(Vec<u8>, bool), QgaError> {
    const COMMAND: &str = "guest-file-open";
    let content = data
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| QgaError::protocol(COMMAND, format!("file-read answer without content: {}", preview(data))))?;
    let bytes = latin1_bytes(content)
        .ok_or_else(|| QgaError::protocol(COMMAND, "file-read content has characters above U+00FF"))?;
    Ok((bytes, flag(data.get("truncated"))))
}

fn preview(value: &Value) -> String {
    crate::qga::protocol::preview(value.to_string().as_bytes())
}

/// `%XX`-encodes everything but unreserved characters, for query strings.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a PVE error message says, for the QGA error it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PveFailure {
    /// The VM's configuration is not on the node asked: it moved (or is gone).
    NotOnNode,
    /// The guest agent answered with an error (its desc).
    Agent(String),
    /// The agent does not know the command or it is disabled (its desc).
    Unsupported(String),
    /// QEMU did not get the agent's answer in time.
    AgentTimeout,
    /// The VM or its agent is not there to answer (VM stopped, agent not configured or not
    /// running).
    Unavailable,
    /// Anything else.
    Other,
}

/// Whether an agent error desc says the command is unknown or disabled (qemu-ga's
/// `The command … has not been found` / `… has been disabled for this instance`).
pub fn is_unsupported(desc: &str) -> bool {
    let lower = desc.to_ascii_lowercase();
    lower.contains("has not been found") || lower.contains("has been disabled")
}

/// Reads a PVE error message.
pub fn classify_message(message: &str) -> PveFailure {
    let lower = message.to_ascii_lowercase();
    if lower.contains("does not exist") || lower.contains("no such vm") {
        return PveFailure::NotOnNode;
    }
    // qemu-server: "Agent error: <desc>" (check_agent_error), or from the QMP layer
    // "VM 101 qmp command 'guest-x' failed - <desc>".
    let desc = message
        .split_once("Agent error: ")
        .map(|(_, desc)| desc)
        .or_else(|| message.split_once("' failed - ").map(|(_, desc)| desc))
        .map(str::trim);
    if lower.contains("got timeout") {
        return PveFailure::AgentTimeout;
    }
    if let Some(desc) = desc {
        return if is_unsupported(desc) {
            PveFailure::Unsupported(desc.to_owned())
        } else {
            PveFailure::Agent(desc.to_owned())
        };
    }
    if lower.contains("not running") || lower.contains("no qemu guest agent configured") {
        return PveFailure::Unavailable;
    }
    PveFailure::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = latin1_string(&all);
        assert_eq!(text.chars().count(), 256);
        assert_eq!(latin1_bytes(&text).unwrap(), all);
        // Through JSON and back, as the API carries it.
        let parsed: String = serde_json::from_str(&serde_json::to_string(&text).unwrap()).unwrap();
        assert_eq!(latin1_bytes(&parsed).unwrap(), all);
        assert_eq!(latin1_bytes("caf\u{e9}").unwrap(), b"caf\xe9");
        assert_eq!(latin1_bytes("\u{20ac}"), None);
    }

    #[test]
    fn costs_bound_both_encodings() {
        for b in 0..=255u8 {
            let text = latin1_string(&[b]);
            let json = serde_json::to_string(&text).unwrap().len() - 2;
            let form = text
                .bytes()
                .map(|c| if c.is_ascii_alphanumeric() || b"-_.~ ".contains(&c) { 1 } else { 3 })
                .sum::<usize>();
            assert!(
                byte_cost(b) >= json && byte_cost(b) >= form,
                "byte {b}: cost {} json {json} form {form}",
                byte_cost(b)
            );
        }
        assert_eq!(str_cost("/tmp/a b"), 12);
        assert_eq!(str_cost("é"), 6);
        assert_eq!(prefix_within(b"abc\xff", 3), 3);
        assert_eq!(prefix_within(b"abc\xff", 9), 4);
        assert_eq!(prefix_within(b"", 0), 0);
    }

    #[test]
    fn file_writes_fit_the_content_limit_and_the_body_budget() {
        let text = vec![b'a'; 200_000];
        let n = file_write_take("/config/x", &text);
        assert_eq!(n % 3, 0);
        assert!(STANDARD.encode(&text[..n]).len() <= FILE_WRITE_CONTENT_MAX, "{n}");
        assert!(n >= 40_000, "{n}");
        // Binary data: base64 has more '+' and '/', which cost 3 in a form.
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let n = file_write_take("/config/x", &binary);
        let encoded = STANDARD.encode(&binary[..n]);
        let cost: usize = encoded.bytes().map(|c| if c.is_ascii_alphanumeric() { 1 } else { 3 }).sum();
        assert!(encoded.len() <= FILE_WRITE_CONTENT_MAX && cost + BODY_OVERHEAD <= BODY_BUDGET, "{n} {cost}");
        assert!(n > 30_000, "{n}");
        // A short remainder goes whole; nothing fits behind an absurd path.
        assert_eq!(file_write_take("/x", b"hello"), 5);
        assert_eq!(file_write_take(&"/".repeat(BODY_BUDGET), b"hello"), 0);
    }

    #[test]
    fn appends_fit_the_input_limit_and_the_body_budget() {
        let argv = append_argv("/config/x");
        assert_eq!(argv, ["/bin/dd", "of=/config/x", "oflag=append", "conv=notrunc", "status=none"]);
        let text = vec![b'a'; 100_000];
        let n = input_take(&argv, &text);
        assert!(n > 50_000 && n <= INPUT_DATA_MAX, "{n}");
        let binary = vec![0xffu8; 100_000];
        let n = input_take(&argv, &binary);
        let body = serde_json::to_vec(&exec_body(&argv, Some(&binary[..n]))).unwrap();
        assert!(body.len() <= BODY_BUDGET && n * 6 <= BODY_BUDGET, "{n} {}", body.len());
        assert!(n > 9_000, "{n}");
    }

    #[test]
    fn exec_arguments_become_a_pve_command() {
        let (argv, input) =
            exec_request(Some(&json!({"path": "/bin/echo", "arg": ["a b", "$(x)"], "capture-output": true}))).unwrap();
        assert_eq!(argv, ["/bin/echo", "a b", "$(x)"]);
        assert_eq!(input, None);
        let (argv, input) =
            exec_request(Some(&json!({"path": "cat", "env": ["A=1", "B=x y"], "input-data": "aGVsbG8="}))).unwrap();
        assert_eq!(argv, ["/usr/bin/env", "-i", "--", "A=1", "B=x y", "cat"]);
        assert_eq!(input.as_deref(), Some(&b"hello"[..]));
        assert_eq!(exec_body(&argv, input.as_deref())["input-data"], "hello");
        assert!(exec_body(&argv, None).get("input-data").is_none());

        for bad in [
            json!(null),
            json!({"arg": []}),
            json!({"path": "/bin/x", "arg": "a"}),
            json!({"path": "/bin/x", "arg": [1]}),
            json!({"path": "/bin/x", "env": ["NOEQUALS"]}),
            json!({"path": "/bin/x", "env": ["=x"]}),
            json!({"path": "/bin/a=b", "env": ["A=1"]}),
            json!({"path": "/bin/x", "input-data": "!!"}),
            json!({"path": "/bin/x", "input-data": 5}),
        ] {
            assert!(matches!(exec_request(Some(&bad)), Err(QgaError::Protocol { .. })), "{bad}");
        }
        let big = STANDARD.encode(vec![0u8; 70_000]);
        assert!(matches!(
            exec_request(Some(&json!({"path": "cat", "input-data": big}))),
            Err(QgaError::TooLarge { .. })
        ));
    }

    #[test]
    fn exec_status_is_put_back_into_qga_shape() {
        let reply = exec_status_reply(&json!({"exited": 1, "exitcode": 3, "out-data": "hi\n\u{ff}", "err-data": "",
                                               "out-truncated": 0}))
        .unwrap();
        assert_eq!(
            reply,
            json!({"exited": true, "exitcode": 3, "out-data": STANDARD.encode(b"hi\n\xff"), "err-data": "",
                   "out-truncated": false})
        );
        assert_eq!(exec_status_reply(&json!({"exited": 0})).unwrap(), json!({"exited": false}));
        assert_eq!(
            exec_status_reply(&json!({"exited": true, "signal": 9})).unwrap(),
            json!({"exited": true, "signal": 9})
        );
        assert!(exec_status_reply(&json!("x")).is_err());
        assert!(exec_status_reply(&json!({"exited": 1, "out-data": "\u{20ac}"})).is_err());
        assert!(exec_status_reply(&json!({"exited": 1, "out-data": 5})).is_err());
        // And the client's parser takes it.
        let output = crate::qga::exec::parse_status(7, reply).unwrap().unwrap();
        assert_eq!((output.exit_code, output.stdout), (Some(3), b"hi\n\xff".to_vec()));
    }

    #[test]
    fn file_read_content_is_bytes() {
        assert_eq!(
            file_read_content(&json!({"content": "a\u{e9}", "bytes-read": 2})).unwrap(),
            (b"a\xe9".to_vec(), false)
        );
        assert!(file_read_content(&json!({"content": "", "truncated": 1})).unwrap().1);
        assert!(file_read_content(&json!({"bytes-read": 2})).is_err());
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("/etc/os-release"), "%2Fetc%2Fos-release");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(query_escape("é"), "%C3%A9");
    }

    #[test]
    fn pve_messages() {
        use PveFailure::*;
        let cases = [
            ("Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist", NotOnNode),
            ("no such VM ('101')", NotOnNode),
            (
                "Agent error: failed to open file '/x': No such file or directory",
                Agent("failed to open file '/x': No such file or directory".into()),
            ),
            (
                "VM 101 qmp command 'guest-get-osinfo' failed - The command guest-get-osinfo has not been found",
                Unsupported("The command guest-get-osinfo has not been found".into()),
            ),
            (
                "Agent error: The command guest-exec has been disabled for this instance",
                Unsupported("The command guest-exec has been disabled for this instance".into()),
            ),
            ("VM 101 qmp command 'guest-ping' failed - got timeout", AgentTimeout),
            ("VM 101 is not running", Unavailable),
            ("QEMU guest agent is not running", Unavailable),
            ("No QEMU guest agent configured", Unavailable),
            ("something else", Other),
        ];
        for (message, expected) in cases {
            assert_eq!(classify_message(message), expected, "{message}");
        }
    }
}
