//! The pieces of the file API (`guest-file-open`/`-read`/`-write`/`-close`) that need no I/O:
//! open modes, request arguments and reply parsing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::QgaError;

/// How [`QgaClient::write_file`](super::QgaClient::write_file) opens the file.
///
/// QGA cannot set permissions or owners, nor create parent directories: a new file gets mode
/// `0666` minus the agent's umask, owned by the agent's user. An existing file keeps its mode
/// and owner when truncated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Create or truncate (`fopen` mode `w`).
    #[default]
    Truncate,
    /// Create or append (`fopen` mode `a`).
    Append,
}

impl WriteMode {
    /// The `fopen` mode string sent to `guest-file-open`.
    pub fn as_fopen_mode(self) -> &'static str {
        match self {
            WriteMode::Truncate => "w",
            WriteMode::Append => "a",
        }
    }
}

/// Arguments of `guest-file-open`.
pub fn open_args(path: &str, mode: &str) -> Value {
    json!({ "path": path, "mode": mode })
}

/// Arguments of `guest-file-write` for one chunk.
pub fn write_args(handle: i64, chunk: &[u8]) -> Value {
    json!({ "handle": handle, "buf-b64": STANDARD.encode(chunk) })
}

/// Arguments of `guest-file-read`.
pub fn read_args(handle: i64, count: usize) -> Value {
    json!({ "handle": handle, "count": count })
}

/// Arguments of `guest-file-close` (and other commands that take only a handle).
pub fn handle_args(handle: i64) -> Value {
    json!({ "handle": handle })
}

/// Parses the handle returned by `guest-file-open`.
pub fn parse_handle(value: &Value) -> Result<i64, QgaError> {
    value.as_i64().ok_or_else(|| QgaError::protocol("guest-file-open", format!("handle is not an integer: {value}")))
}

/// One chunk returned by `guest-file-read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunk {
    /// The decoded bytes.
    pub data: Vec<u8>,
    /// Whether the end of the file was reached.
    pub eof: bool,
}

#[derive(Deserialize)]
struct RawRead {
    count: u64,
    #[serde(rename = "buf-b64")]
    buf_b64: String,
    #[serde(default)]
    eof: bool,
}

/// Parses a `guest-file-read` reply to a request for at most `requested` bytes. Rejects replies
/// whose data does not decode, does not match their `count`, or is larger than requested.
pub fn parse_read(value: Value, requested: usize) -> Result<ReadChunk, QgaError> {
    const COMMAND: &str = "guest-file-read";
    let raw: RawRead =
        serde_json::from_value(value).map_err(|e| QgaError::protocol(COMMAND, format!("unexpected reply: {e}")))?;
    // Check the encoded size before decoding anything: 4 characters for every 3 bytes.
    if raw.buf_b64.len() / 4 > requested.div_ceil(3) {
        return Err(QgaError::protocol(
            COMMAND,
            format!("{} base64 characters for {requested} bytes", raw.buf_b64.len()),
        ));
    }
    let data =
        STANDARD.decode(raw.buf_b64.as_bytes()).map_err(|e| QgaError::protocol(COMMAND, format!("bad base64: {e}")))?;
    if u64::try_from(data.len()).ok() != Some(raw.count) {
        return Err(QgaError::protocol(COMMAND, format!("count {} but {} bytes of data", raw.count, data.len())));
    }
    if data.len() > requested {
        return Err(QgaError::protocol(COMMAND, format!("{} bytes returned for {requested} requested", data.len())));
    }
    if data.is_empty() && !raw.eof {
        return Err(QgaError::protocol(COMMAND, "no data and no end of file"));
    }
    Ok(ReadChunk { data, eof: raw.eof })
}

/// Parses a `guest-file-write` reply to a write of `sent` bytes: how many were written (at least
/// one, at most `sent`).
pub fn parse_write(value: &Value, sent: usize) -> Result<usize, QgaError> {
    const COMMAND: &str = "guest-file-write";
    let count = value
        .get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| QgaError::protocol(COMMAND, format!("unexpected reply: {value}")))?;
    match usize::try_from(count) {
        Ok(count) if count > 0 && count <= sent => Ok(count),
        _ => Err(QgaError::protocol(COMMAND, format!("wrote {count} of {sent} bytes"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(WriteMode::default().as_fopen_mode(), "w");
        assert_eq!(WriteMode::Append.as_fopen_mode(), "a");
    }

    #[test]
    fn arguments() {
        assert_eq!(open_args("/etc/x", "r"), json!({"path": "/etc/x", "mode": "r"}));
        assert_eq!(write_args(1000, b"hello"), json!({"handle": 1000, "buf-b64": "aGVsbG8="}));
        assert_eq!(write_args(1000, b""), json!({"handle": 1000, "buf-b64": ""}));
        assert_eq!(read_args(7, 4096), json!({"handle": 7, "count": 4096}));
        assert_eq!(handle_args(7), json!({"handle": 7}));
        assert_eq!(parse_handle(&json!(1000)).unwrap(), 1000);
        assert!(matches!(parse_handle(&json!("1000")), Err(QgaError::Protocol { .. })));
    }

    #[test]
    fn chunked_writes_reassemble_to_the_input() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk_size in [1, 3, 4, 48 * 1024, 200_000, 1 << 20] {
            let mut rebuilt = Vec::new();
            for chunk in data.chunks(chunk_size) {
                let args = write_args(1, chunk);
                rebuilt.extend(STANDARD.decode(args["buf-b64"].as_str().unwrap()).unwrap());
            }
            assert_eq!(rebuilt, data, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn read_replies() {
        let chunk = parse_read(json!({"count": 3, "buf-b64": "aGVs", "eof": false}), 3).unwrap();
        assert_eq!(chunk, ReadChunk { data: b"hel".to_vec(), eof: false });
        let chunk = parse_read(json!({"count": 0, "buf-b64": "", "eof": true}), 3).unwrap();
        assert_eq!(chunk, ReadChunk { data: vec![], eof: true });
        let chunk = parse_read(json!({"count": 2, "buf-b64": "bG8=", "eof": true}), 4096).unwrap();
        assert_eq!(chunk.data, b"lo");

        for bad in [
            json!({"count": 3, "buf-b64": "aGVs!", "eof": false}),
            json!({"count": 4, "buf-b64": "aGVs", "eof": false}),
            json!({"count": 3, "buf-b64": "aGVsbG8=", "eof": false}),
            json!({"count": 0, "buf-b64": "", "eof": false}),
            json!({"count": -1, "buf-b64": "", "eof": true}),
            json!({"buf-b64": "aGVs"}),
            json!({"count": 3, "buf-b64": 5}),
            json!([1]),
            json!({"count": 3, "buf-b64": "A".repeat(1 << 20), "eof": false}),
        ] {
            assert!(matches!(parse_read(bad.clone(), 3), Err(QgaError::Protocol { .. })), "{bad}");
        }
    }

    #[test]
    fn write_replies() {
        assert_eq!(parse_write(&json!({"count": 5, "eof": false}), 5).unwrap(), 5);
        assert_eq!(parse_write(&json!({"count": 2, "eof": false}), 5).unwrap(), 2);
        for bad in [json!({"count": 0}), json!({"count": 6}), json!({"count": -1}), json!({}), json!(5)] {
            assert!(matches!(parse_write(&bad, 5), Err(QgaError::Protocol { .. })), "{bad}");
        }
    }
}
