//! The QGA wire protocol, without I/O: request encoding, splitting the agent's byte stream into
//! messages ([`FrameDecoder`]), the `guest-sync-delimited` resynchronisation ([`Resync`]) and the
//! interpretation of replies ([`interpret_reply`]).
//!
//! The agent writes one JSON object per reply (followed by a newline, which this module does not
//! rely on). After a `guest-sync-delimited` request it writes the byte `0xFF` first. `0xFF` can
//! never occur in UTF-8 JSON, so it is an unambiguous reset point: the decoder drops whatever
//! partial object it holds when it sees one. Sending `0xFF` to the agent likewise resets the
//! agent's JSON lexer (qemu-ga 7.2 answers it with a `JSON parse error, stray '\uFFFD'` error
//! reply, which arrives before its own `0xFF` and is therefore discarded).

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::QgaError;

/// The byte that delimits a `guest-sync-delimited` reply (and resets the agent's parser).
pub const DELIMITER: u8 = 0xFF;

/// The default limit for one message from the agent (64 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// The command used to resynchronise.
pub const SYNC_COMMAND: &str = "guest-sync-delimited";

/// Encodes a request: `{"execute":<command>,"arguments":<arguments>}` and a newline.
pub fn encode_request(command: &str, arguments: Option<&Value>) -> Vec<u8> {
    let message = match arguments {
        Some(arguments) => json!({ "execute": command, "arguments": arguments }),
        None => json!({ "execute": command }),
    };
    let mut bytes = message.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// One unit of the agent's byte stream, as split by [`FrameDecoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A `0xFF` byte: what the agent sends before a `guest-sync-delimited` reply.
    Delimiter,
    /// One complete top-level JSON object, raw (it may still fail to parse).
    Message(Vec<u8>),
    /// This many bytes that belong to no object (outside objects and not whitespace, or a
    /// partial object cut off by a delimiter).
    Garbage(usize),
    /// An object grew beyond the limit; it was dropped, and everything up to the next
    /// delimiter is dropped too.
    Oversized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between objects.
    Idle,
    /// Inside a top-level object.
    Object { depth: u32, in_string: bool, escaped: bool },
    /// After an oversized object: drop everything until a delimiter.
    Discard,
}

/// Splits the agent's byte stream into [`Frame`]s. Feed it whatever was read
/// ([`push`](Self::push)), then take frames ([`next_frame`](Self::next_frame)). Memory use is
/// bounded by the message limit.
#[derive(Debug)]
pub struct FrameDecoder {
    state: State,
    current: Vec<u8>,
    max_message: usize,
    garbage_run: usize,
    frames: VecDeque<Frame>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl FrameDecoder {
    /// A decoder that accepts messages of up to `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self { state: State::Idle, current: Vec::new(), max_message, garbage_run: 0, frames: VecDeque::new() }
    }

    /// The message limit.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Whether the decoder is between objects (not inside one, not discarding).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Whether anything but whitespace arrived that was not taken yet: a frame, or part of an
    /// object.
    pub fn has_pending(&self) -> bool {
        !self.frames.is_empty() || !self.is_idle()
    }

    /// Consumes bytes read from the agent.
    pub fn push(&mut self, data: &[u8]) {
        for &byte in data {
            self.push_byte(byte);
        }
        self.flush_garbage();
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Drops all state: partial objects and undelivered frames.
    pub fn reset(&mut self) {
        self.state = State::Idle;
        self.current = Vec::new();
        self.garbage_run = 0;
        self.frames.clear();
    }

    fn flush_garbage(&mut self) {
        if self.garbage_run > 0 {
            self.frames.push_back(Frame::Garbage(self.garbage_run));
            self.garbage_run = 0;
        }
    }

    fn push_byte(&mut self, byte: u8) {
        if byte == DELIMITER {
            if matches!(self.state, State::Object { .. }) {
                self.garbage_run += self.current.len();
                self.current = Vec::new();
            }
            self.flush_garbage();
            self.frames.push_back(Frame::Delimiter);
            self.state = State::Idle;
            return;
        }
        match self.state {
            State::Discard => {}
            State::Idle => match byte {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'{' => {
                    self.flush_garbage();
                    self.current.push(byte);
                    self.state = State::Object { depth: 1, in_string: false, escaped: false };
                    self.check_size();
                }
                _ => self.garbage_run += 1,
            },
            State::Object { mut depth, mut in_string, mut escaped } => {
                self.current.push(byte);
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if byte == b'\\' {
                        escaped = true;
                    } else if byte == b'"' {
                        in_string = false;
                    }
                } else {
                    match byte {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth = depth.saturating_add(1),
                        b'}' | b']' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
                self.state = State::Object { depth, in_string, escaped };
                // The closing byte counts too: a complete object one byte over the limit is oversized.
                self.check_size();
                if depth == 0 && self.state != State::Discard {
                    self.frames.push_back(Frame::Message(std::mem::take(&mut self.current)));
                    self.state = State::Idle;
                }
            }
        }
    }

    fn check_size(&mut self) {
        if self.current.len() > self.max_message {
            self.current = Vec::new();
            self.frames.push_back(Frame::Oversized);
            self.state = State::Discard;
        }
    }
}

/// The `guest-sync-delimited` handshake: send [`request`](Self::request), then feed every frame
/// read to [`feed`](Self::feed) until it returns `true`. Everything before the agent's delimiter
/// is dropped, and so is any delimited reply with another id (left over from an earlier,
/// abandoned handshake).
#[derive(Debug, Clone)]
pub struct Resync {
    id: u64,
    after_delimiter: bool,
}

impl Resync {
    /// A handshake with this id (use a random one).
    pub fn new(id: u64) -> Self {
        Self { id, after_delimiter: false }
    }

    /// A handshake with a random id (below 2^53, so that every JSON implementation keeps it exact).
    pub fn random() -> Self {
        Self::new(rand::random_range(1..(1u64 << 53)))
    }

    /// The id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The bytes to send: `0xFF` (resets the agent's parser) and the sync request.
    pub fn request(&self) -> Vec<u8> {
        let mut bytes = vec![DELIMITER];
        bytes.extend(encode_request(SYNC_COMMAND, Some(&json!({ "id": self.id }))));
        bytes
    }

    /// Takes one frame; `true` once the agent's answer to this handshake has arrived.
    pub fn feed(&mut self, frame: &Frame) -> bool {
        match frame {
            Frame::Delimiter => {
                self.after_delimiter = true;
                false
            }
            Frame::Message(raw) => {
                let answered = self.after_delimiter && self.is_our_reply(raw);
                self.after_delimiter = false;
                answered
            }
            Frame::Garbage(_) | Frame::Oversized => {
                self.after_delimiter = false;
                false
            }
        }
    }

    fn is_our_reply(&self, raw: &[u8]) -> bool {
        let Ok(value) = serde_json::from_slice::<Value>(raw) else { return false };
        value.get("return").and_then(Value::as_u64) == Some(self.id)
    }
}

/// Parses one raw reply to `command` (see [`interpret_reply`]).
pub fn parse_reply(command: &str, raw: &[u8]) -> Result<Value, QgaError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| QgaError::protocol(command, format!("bad JSON ({e}): {}", preview(raw))))?;
    interpret_reply(command, value)
}

/// Interprets a parsed reply to `command`: `{"return": x}` gives `x`; `{"error": {"class",
/// "desc"}}` gives [`QgaError::NotSupported`] for the class `CommandNotFound` (unknown or disabled
/// commands) and [`QgaError::Agent`] otherwise; anything else is a protocol error. Transports that
/// get whole replies from elsewhere (libvirt, Proxmox) use this too.
pub fn interpret_reply(command: &str, reply: Value) -> Result<Value, QgaError> {
    let Value::Object(mut fields) = reply else {
        return Err(QgaError::protocol(command, format!("reply is not an object: {}", preview_value(&reply))));
    };
    if let Some(value) = fields.remove("return") {
        return Ok(value);
    }
    if let Some(error) = fields.remove("error") {
        let class = error.get("class").and_then(Value::as_str).unwrap_or("GenericError").to_owned();
        let desc = match error.get("desc") {
            Some(Value::String(desc)) => desc.clone(),
            Some(other) => other.to_string(),
            None => error.to_string(),
        };
        let command = command.to_owned();
        return Err(if class == "CommandNotFound" {
            QgaError::NotSupported { command, desc }
        } else {
            QgaError::Agent { command, class, desc }
        });
    }
    Err(QgaError::protocol(
        command,
        format!("reply has neither \"return\" nor \"error\": {}", preview_value(&Value::Object(fields))),
    ))
}

/// Up to 200 bytes of `raw` as text, for messages.
pub fn preview(raw: &[u8]) -> String {
    const MAX: usize = 200;
    let shown = &raw[..raw.len().min(MAX)];
    let mut text: String = String::from_utf8_lossy(shown).chars().flat_map(char::escape_debug).collect();
    if raw.len() > MAX {
        text.push_str(&format!("... ({} bytes)", raw.len()));
    }
    text
}

fn preview_value(value: &Value) -> String {
    preview(value.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder) -> Vec<Frame> {
        std::iter::from_fn(|| decoder.next_frame()).collect()
    }

    fn msg(text: &str) -> Frame {
        Frame::Message(text.as_bytes().to_vec())
    }

    #[test]
    fn requests_are_one_json_object_and_a_newline() {
        assert_eq!(encode_request("guest-ping", None), b"{\"execute\":\"guest-ping\"}\n");
        let bytes = encode_request("guest-file-open", Some(&json!({"path": "/a\"b", "mode": "r"})));
        assert_eq!(bytes.last(), Some(&b'\n'));
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["execute"], "guest-file-open");
        assert_eq!(value["arguments"]["path"], "/a\"b");
    }

    #[test]
    fn splits_replies_without_relying_on_newlines() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"return\": {}}\n{\"return\": 5}{\"error\": {\"class\": \"X\", \"desc\": \"y\"}}");
        assert_eq!(
            frames(&mut d),
            vec![
                msg("{\"return\": {}}"),
                msg("{\"return\": 5}"),
                msg("{\"error\": {\"class\": \"X\", \"desc\": \"y\"}}")
            ]
        );
        assert!(d.is_idle());
    }

    #[test]
    fn reassembles_messages_split_at_every_byte() {
        let stream = b"{\"return\": {\"buf-b64\": \"a}{\\\"b\", \"x\": [1, {\"y\": \"]\"}]}}\n\xff{\"return\": 7}\n";
        let mut whole = FrameDecoder::default();
        whole.push(stream);
        let expected = frames(&mut whole);
        assert_eq!(expected.len(), 3);
        for split in 0..stream.len() {
            let mut d = FrameDecoder::default();
            d.push(&stream[..split]);
            d.push(&stream[split..]);
            assert_eq!(frames(&mut d), expected, "split at {split}");
        }
        let mut d = FrameDecoder::default();
        for byte in stream {
            d.push(std::slice::from_ref(byte));
        }
        assert_eq!(frames(&mut d), expected);
    }

    #[test]
    fn braces_and_escapes_inside_strings_do_not_end_objects() {
        let mut d = FrameDecoder::default();
        d.push(br#"{"return": "}}}\\"}"#);
        assert_eq!(frames(&mut d), vec![msg(r#"{"return": "}}}\\"}"#)]);
        d.push(br#"{"return": "\"}"}"#);
        assert_eq!(frames(&mut d), vec![msg(r#"{"return": "\"}"}"#)]);
    }

    #[test]
    fn garbage_between_messages_is_reported_and_skipped() {
        let mut d = FrameDecoder::default();
        d.push(b"junk\x00\x01 {\"return\": 1} ]]\"{\"return\": 2}");
        assert_eq!(
            frames(&mut d),
            vec![Frame::Garbage(6), msg("{\"return\": 1}"), Frame::Garbage(3), msg("{\"return\": 2}")]
        );
    }

    #[test]
    fn a_delimiter_cuts_off_a_partial_object() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"return\": {\"pid\"");
        assert!(frames(&mut d).is_empty());
        assert!(!d.is_idle());
        d.push(b"\xff{\"return\": 3}\n");
        assert_eq!(frames(&mut d), vec![Frame::Garbage(17), Frame::Delimiter, msg("{\"return\": 3}")]);
        // Even inside a string.
        d.push(b"{\"a\": \"unterminated\xff{\"return\": 4}");
        assert_eq!(frames(&mut d), vec![Frame::Garbage(19), Frame::Delimiter, msg("{\"return\": 4}")]);
    }

    #[test]
    fn oversized_objects_are_dropped_until_the_next_delimiter() {
        let mut d = FrameDecoder::new(16);
        d.push(b"{\"return\": 1}");
        assert_eq!(frames(&mut d), vec![msg("{\"return\": 1}")]);
        d.push(b"{\"return\": \"0123456789abcdef\"}{\"return\": 2}");
        assert_eq!(frames(&mut d), vec![Frame::Oversized]);
        // Still discarding: a later valid message is not trusted until a delimiter.
        d.push(b"{\"return\": 3}");
        assert!(frames(&mut d).is_empty());
        d.push(b"\xff{\"return\": 4}");
        assert_eq!(frames(&mut d), vec![Frame::Delimiter, msg("{\"return\": 4}")]);
        // Exactly at the limit is fine.
        let exact = b"{\"return\": 12345}";
        assert_eq!(exact.len(), 17);
        let mut d = FrameDecoder::new(17);
        d.push(exact);
        assert_eq!(frames(&mut d), vec![Frame::Message(exact.to_vec())]);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut d = FrameDecoder::new(1024);
        let flood = vec![b'['; 1 << 20];
        d.push(b"{");
        d.push(&flood);
        assert_eq!(frames(&mut d), vec![Frame::Oversized]);
        assert!(d.current.capacity() <= 2048);
    }

    #[test]
    fn mismatched_brackets_still_end_an_object_and_fail_to_parse() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"return\": ]");
        let got = frames(&mut d);
        assert_eq!(got, vec![msg("{\"return\": ]")]);
        let Frame::Message(raw) = &got[0] else { unreachable!() };
        assert!(matches!(parse_reply("guest-ping", raw), Err(QgaError::Protocol { .. })));
    }

    #[test]
    fn only_whitespace_leaves_nothing_pending() {
        let mut d = FrameDecoder::default();
        d.push(b" \r\n\t");
        assert!(!d.has_pending());
        d.push(b"{");
        assert!(d.has_pending());
        d.push(b"}");
        assert!(d.has_pending());
        assert_eq!(frames(&mut d), vec![msg("{}")]);
        d.push(b"x");
        assert!(d.has_pending());
    }

    #[test]
    fn reset_drops_everything() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"return\": 1}{\"partial");
        d.reset();
        assert!(d.is_idle());
        assert!(frames(&mut d).is_empty());
        d.push(b"\"x\": 1}");
        assert_eq!(frames(&mut d), vec![Frame::Garbage(6)]);
    }

    #[test]
    fn sync_request_starts_with_the_delimiter() {
        let sync = Resync::new(42);
        let bytes = sync.request();
        assert_eq!(bytes[0], DELIMITER);
        let value: Value = serde_json::from_slice(&bytes[1..]).unwrap();
        assert_eq!(value, json!({"execute": "guest-sync-delimited", "arguments": {"id": 42}}));
        let random = Resync::random();
        assert!(random.id() >= 1 && random.id() < (1 << 53));
    }

    fn run_sync(sync: &mut Resync, stream: &[u8]) -> Option<usize> {
        let mut d = FrameDecoder::default();
        d.push(stream);
        let all = frames(&mut d);
        all.iter().position(|frame| sync.feed(frame))
    }

    #[test]
    fn sync_accepts_only_its_own_delimited_reply() {
        // What qemu-ga 7.2 really sends: an error for the 0xFF, then the delimited reply.
        let real = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n\xff{\"return\": 42}\n";
        assert_eq!(run_sync(&mut Resync::new(42), real), Some(2));

        // Stale replies (a big read, a file handle that looks like a sync id, an older sync) come
        // first and are dropped.
        let stale = b"{\"return\": {\"count\": 3, \"buf-b64\": \"YWJj\", \"eof\": true}}{\"return\": 42}\xff{\"return\": 41}garbage\xff{\"return\": 42}";
        assert_eq!(run_sync(&mut Resync::new(42), stale), Some(6));

        // Undelimited: never accepted.
        assert_eq!(run_sync(&mut Resync::new(42), b"{\"return\": 42}\n"), None);
        // Something between the delimiter and the reply: not ours.
        assert_eq!(run_sync(&mut Resync::new(42), b"\xff{\"return\": {}}{\"return\": 42}"), None);
        assert_eq!(run_sync(&mut Resync::new(42), b"\xffxx{\"return\": 42}"), None);
        // An error to the sync itself.
        assert_eq!(run_sync(&mut Resync::new(42), b"\xff{\"error\": {\"class\": \"X\", \"desc\": \"42\"}}"), None);
        // A delimited reply cut off by another delimiter, then ours.
        assert_eq!(run_sync(&mut Resync::new(7), b"\xff{\"return\": \xff{\"return\": 7}"), Some(3));
    }

    #[test]
    fn replies_become_values_or_errors() {
        assert_eq!(parse_reply("guest-ping", b"{\"return\": {}}").unwrap(), json!({}));
        assert_eq!(parse_reply("guest-file-open", b"{\"return\": 1000}").unwrap(), json!(1000));

        let err = parse_reply(
            "guest-file-open",
            br#"{"error": {"class": "GenericError", "desc": "failed to open file '/nonexist' (mode: 'r'): No such file or directory"}}"#,
        )
        .unwrap_err();
        match &err {
            QgaError::Agent { command, class, desc } => {
                assert_eq!(command, "guest-file-open");
                assert_eq!(class, "GenericError");
                assert!(desc.contains("/nonexist"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("guest-file-open") && err.to_string().contains("/nonexist"));

        let err = parse_reply(
            "nope",
            br#"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, QgaError::NotSupported { ref command, .. } if command == "nope"), "{err:?}");

        // Malformed error objects still become errors, never panics.
        let err = parse_reply("x", br#"{"error": 5}"#).unwrap_err();
        assert!(matches!(err, QgaError::Agent { ref class, ref desc, .. } if class == "GenericError" && desc == "5"));
        let err = parse_reply("x", br#"{"error": {"class": 1, "desc": {"a": 1}}}"#).unwrap_err();
        assert!(matches!(err, QgaError::Agent { .. }));

        for bad in [&b"{\"event\": \"X\"}"[..], b"[1]", b"{", b"\xff\xfe", b"{\"return\": 1} trailing"] {
            let err = parse_reply("guest-ping", bad).unwrap_err();
            assert!(matches!(err, QgaError::Protocol { .. }), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn previews_are_short_and_printable() {
        let long = vec![0xffu8; 1000];
        let text = preview(&long);
        assert!(text.len() < 1000 && text.ends_with("(1000 bytes)"), "{text}");
        assert_eq!(preview(b"a\nb"), "a\\nb");
    }

    /// Found by the property tests: an object whose closing brace was its (limit + 1)th byte was
    /// delivered although it was over the limit.
    #[test]
    fn an_object_ending_one_byte_over_the_limit_is_oversized() {
        let mut d = FrameDecoder::new(8);
        d.push(b"{\"a\":12}");
        assert_eq!(frames(&mut d), [msg("{\"a\":12}")]);
        d.push(b"{\"a\":123}{\"b\":1}");
        assert_eq!(frames(&mut d), [Frame::Oversized]);
        d.push(&[DELIMITER]);
        d.push(b"{\"b\":1}");
        assert_eq!(frames(&mut d), [Frame::Delimiter, msg("{\"b\":1}")]);
    }

    /// Property tests: the agent's byte stream is untrusted (the VM writes it).
    mod properties {
        use proptest::prelude::*;

        use super::*;

        const MAX: usize = 64;

        /// Bytes the agent might send: JSON-ish fragments, delimiters, noise.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"{\"return\": {}}".to_vec()),
                Just(b"{\"return\": {\"id\": 7}}\n".to_vec()),
                Just(b"{\"error\": {\"class\": \"X\", \"desc\": \"y\"}}".to_vec()),
                Just(vec![DELIMITER]),
                Just(b"{".to_vec()),
                Just(b"}".to_vec()),
                Just(b"[".to_vec()),
                Just(b"]".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"\\".to_vec()),
                Just(b" \n".to_vec()),
                prop::collection::vec(any::<u8>(), 0..16),
                // Longer than the limit.
                (0usize..200).prop_map(|n| [b"{\"return\": \"".to_vec(), vec![b'a'; n], b"\"}".to_vec()].concat()),
            ];
            prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
        }

        /// Pushes `data` in chunks of the given sizes (cycled), draining frames after each push
        /// and checking the memory bound; returns the frames with garbage runs merged.
        fn run(data: &[u8], sizes: &[usize]) -> Result<Vec<Frame>, TestCaseError> {
            let mut decoder = FrameDecoder::new(MAX);
            let mut out: Vec<Frame> = Vec::new();
            let mut rest = data;
            let mut sizes = sizes.iter().cycle();
            while !rest.is_empty() {
                let n = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                decoder.push(chunk);
                // A partial object never holds more than the limit (plus the byte that broke it).
                prop_assert!(decoder.current.len() <= MAX);
                prop_assert!(decoder.current.capacity() <= 2 * (MAX + 1).next_power_of_two());
                while let Some(frame) = decoder.next_frame() {
                    match (&frame, out.last_mut()) {
                        (Frame::Garbage(n), Some(Frame::Garbage(m))) => *m += n,
                        _ => out.push(frame),
                    }
                }
            }
            Ok(out)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any bytes in any chunks: no panic, no message over the limit, memory bounded, and
            /// the same frames however the stream was split.
            #[test]
            fn chunking_does_not_matter(data in stream(), sizes in prop::collection::vec(1usize..40, 1..8)) {
                let whole = run(&data, &[data.len().max(1)])?;
                let chunked = run(&data, &sizes)?;
                prop_assert_eq!(&chunked, &whole);
                for frame in &whole {
                    if let Frame::Message(raw) = frame {
                        prop_assert!(raw.len() <= MAX);
                        prop_assert_eq!(raw.first(), Some(&b'{'));
                        let _ = parse_reply("guest-ping", raw);
                        let _ = preview(raw);
                    }
                }
            }

            /// Arbitrary bytes through the handshake and reply interpretation: no panic.
            #[test]
            fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512), id in any::<u64>()) {
                let mut decoder = FrameDecoder::new(MAX);
                let mut resync = Resync::new(id);
                decoder.push(&data);
                while let Some(frame) = decoder.next_frame() {
                    let _ = resync.feed(&frame);
                    if let Frame::Message(raw) = &frame {
                        let _ = parse_reply("guest-exec", raw);
                    }
                }
            }
        }
    }
}
