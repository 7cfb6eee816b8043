//! [`QgaClient`]: typed guest agent calls over any [`QgaTransport`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use super::exec::{self, ExecOutput, ExecRequest};
use super::file::{self, WriteMode};
use super::info::{self, GuestInfo, OsInfo};
use super::{QgaError, QgaTransport, UnixSocketTransport};

/// Settings of a [`QgaClient`].
#[derive(Debug, Clone)]
pub struct QgaClientConfig {
    /// How long one agent command may take (each chunk of a file transfer and each
    /// `guest-exec-status` poll is one command).
    pub command_timeout: Duration,
    /// Bytes per `guest-file-write` (48 KiB: 64 KiB of base64, which also fits one command
    /// line argument for transports that go through `virsh`).
    pub write_chunk: usize,
    /// Bytes per `guest-file-read` (the reply is a third larger; keep it well below the
    /// transport's message limit).
    pub read_chunk: usize,
    /// The largest file [`QgaClient::read_file`] accepts.
    pub max_file_size: u64,
    /// The most bytes of standard input [`QgaClient::exec`] sends. They travel base64-encoded
    /// inside the single `guest-exec` request; write larger inputs to a file first.
    pub max_exec_input: usize,
}

impl Default for QgaClientConfig {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(30),
            write_chunk: 48 * 1024,
            read_chunk: 1024 * 1024,
            max_file_size: 64 * 1024 * 1024,
            max_exec_input: 1024 * 1024,
        }
    }
}

/// os-release locations tried when `guest-get-osinfo` is unavailable.
const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
const OS_RELEASE_MAX: u64 = 64 * 1024;

/// A guest agent client: typed calls on top of a [`QgaTransport`]. Cheap to clone (the transport
/// is shared); calls from several tasks are serialised by the transport.
///
/// Operations made of several commands (file transfers, [`exec`](Self::exec)) first check with
/// `guest-info` that every command they need is enabled, so a blocked `guest-file-write` fails
/// before the file is truncated and a blocked `guest-exec-status` before a program is started
/// that could not be waited for. The `guest-info` answer is kept (per client and its clones)
/// until a call reports [`QgaError::NotSupported`] or [`info`](Self::info) is called again.
#[derive(Clone)]
pub struct QgaClient {
    transport: Arc<dyn QgaTransport>,
    config: QgaClientConfig,
    commands: Arc<Mutex<Option<Arc<GuestInfo>>>>,
}

impl std::fmt::Debug for QgaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QgaClient").field("target", &self.transport.target()).field("config", &self.config).finish()
    }
}

impl QgaClient {
    /// A client with default settings.
    pub fn new(transport: impl QgaTransport + 'static) -> Self {
        Self::with_config(Arc::new(transport), QgaClientConfig::default())
    }

    /// A client with these settings.
    pub fn with_config(transport: Arc<dyn QgaTransport>, config: QgaClientConfig) -> Self {
        Self { transport, config, commands: Arc::default() }
    }

    /// A client for an agent listening on a unix socket, with default settings.
    pub fn unix_socket(path: impl Into<PathBuf>) -> Self {
        Self::new(UnixSocketTransport::new(path))
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn QgaTransport> {
        &self.transport
    }

    /// The settings.
    pub fn config(&self) -> &QgaClientConfig {
        &self.config
    }

    /// Executes any command with the configured timeout and returns its `return` value.
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QgaError> {
        self.execute_with_timeout(command, arguments, self.config.command_timeout).await
    }

    /// Executes any command with its own timeout.
    pub async fn execute_with_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        let result = self.transport.execute(command, arguments, timeout).await;
        if let Err(QgaError::NotSupported { .. }) = result {
            // The agent changed (restarted with other commands blocked?): ask again next time.
            self.forget_commands();
        }
        result
    }

    async fn call<T: DeserializeOwned>(&self, command: &str, arguments: Option<Value>) -> Result<T, QgaError> {
        let value = self.execute(command, arguments).await?;
        serde_json::from_value(value).map_err(|e| QgaError::protocol(command, format!("unexpected reply: {e}")))
    }

    /// `guest-ping`: succeeds when the agent answers.
    pub async fn ping(&self) -> Result<(), QgaError> {
        self.execute("guest-ping", None).await.map(drop)
    }

    /// `guest-info`: the agent's version and commands (asked every time; the answer also
    /// replaces the one kept for the enabled-command checks).
    pub async fn info(&self) -> Result<GuestInfo, QgaError> {
        let info: GuestInfo = self.call("guest-info", None).await?;
        *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(info.clone()));
        Ok(info)
    }

    fn forget_commands(&self) {
        *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Fails with [`QgaError::NotSupported`] unless the agent knows and enables every command in
    /// `commands`. An agent that does not answer `guest-info` (blocked) is not checked: the
    /// commands themselves will tell.
    async fn require(&self, commands: &[&str]) -> Result<(), QgaError> {
        let known = self.commands.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let info = match known {
            Some(info) => info,
            None => match self.info().await {
                Ok(info) => Arc::new(info),
                Err(QgaError::NotSupported { .. }) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        for &name in commands {
            let desc = match info.command(name) {
                Some(command) if command.enabled => continue,
                Some(_) => "disabled in this guest agent (guest-info)".to_owned(),
                None => format!("unknown to guest agent {}", info.version),
            };
            return Err(QgaError::NotSupported { command: name.to_owned(), desc });
        }
        Ok(())
    }

    /// `guest-get-osinfo`; when the agent does not know the command or it is disabled, the
    /// guest's os-release file, read with the file API (see [`OsInfo::source`]).
    pub async fn os_info(&self) -> Result<OsInfo, QgaError> {
        match self.call::<OsInfo>("guest-get-osinfo", None).await {
            Err(QgaError::NotSupported { desc, .. }) => {
                tracing::debug!(target = %self.transport.target(), %desc, "guest-get-osinfo unavailable, reading os-release");
                let mut last = None;
                for path in OS_RELEASE_PATHS {
                    match self.read_file_limited(path, OS_RELEASE_MAX).await {
                        Ok(text) => return Ok(OsInfo::from_os_release(&info::parse_os_release(&text))),
                        // Missing: try the next location.
                        Err(e @ QgaError::Agent { .. }) => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Err(last.unwrap_or_else(|| QgaError::protocol("guest-get-osinfo", "no os-release file")))
            }
            other => other,
        }
    }

    /// Reads a whole file from the guest, up to [`QgaClientConfig::max_file_size`] bytes.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, QgaError> {
        self.read_file_limited(path, self.config.max_file_size).await
    }

    /// Reads a whole file from the guest in chunks of [`QgaClientConfig::read_chunk`] bytes
    /// until the agent reports the end of the file, failing with [`QgaError::TooLarge`] (without
    /// reading further) once it is longer than `max_len` bytes. The handle is always closed.
    /// Errors name the guest path.
    pub async fn read_file_limited(&self, path: &str, max_len: u64) -> Result<Vec<u8>, QgaError> {
        let result = async {
            self.require(&["guest-file-open", "guest-file-read", "guest-file-close"]).await?;
            let handle = self.open(path, "r").await?;
            let result = self.read_handle(handle, max_len).await;
            self.finish(handle, result).await
        };
        result.await.map_err(|e| e.about(path))
    }

    async fn read_handle(&self, handle: i64, max_len: u64) -> Result<Vec<u8>, QgaError> {
        let chunk = self.config.read_chunk.max(1);
        let mut data = Vec::new();
        loop {
            let room = max_len.saturating_sub(u64::try_from(data.len()).unwrap_or(u64::MAX));
            // Ask for one byte more than allowed, to tell "exactly max_len" from "longer".
            let want = usize::try_from(room.saturating_add(1)).unwrap_or(usize::MAX).min(chunk);
            let reply = self.execute("guest-file-read", Some(file::read_args(handle, want))).await?;
            let piece = file::parse_read(reply, want)?;
            data.extend_from_slice(&piece.data);
            if u64::try_from(data.len()).unwrap_or(u64::MAX) > max_len {
                return Err(QgaError::TooLarge {
                    command: "guest-file-read".to_owned(),
                    what: "the file".to_owned(),
                    limit: max_len,
                });
            }
            if piece.eof {
                return Ok(data);
            }
        }
    }

    /// Writes `data` to a file in the guest, in chunks of [`QgaClientConfig::write_chunk`] bytes
    /// (there is no limit on the total size). The handle is always closed, and a failing close
    /// (which is where delayed write errors show) fails the call. Errors name the guest path.
    ///
    /// Not atomic: a failure part-way leaves a partial file (write elsewhere and rename with
    /// [`exec`](Self::exec) where that matters). QGA does not create parent directories and
    /// cannot set permissions or owners: see [`WriteMode`].
    pub async fn write_file(&self, path: &str, data: &[u8], mode: WriteMode) -> Result<(), QgaError> {
        let result = async {
            // Checked first: opening with `w` truncates the file.
            self.require(&["guest-file-open", "guest-file-write", "guest-file-close"]).await?;
            let handle = self.open(path, mode.as_fopen_mode()).await?;
            let result = self.write_handle(handle, data).await;
            self.finish(handle, result).await
        };
        result.await.map_err(|e| e.about(path))
    }

    async fn write_handle(&self, handle: i64, data: &[u8]) -> Result<(), QgaError> {
        for chunk in data.chunks(self.config.write_chunk.max(1)) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let reply = self.execute("guest-file-write", Some(file::write_args(handle, rest))).await?;
                let written = file::parse_write(&reply, rest.len())?;
                rest = rest.get(written..).unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn open(&self, path: &str, mode: &str) -> Result<i64, QgaError> {
        let reply = self.execute("guest-file-open", Some(file::open_args(path, mode))).await?;
        file::parse_handle(&reply)
    }

    /// Closes `handle` whatever `result` is: a close failure is returned when `result` is a
    /// success, and only logged otherwise.
    async fn finish<T>(&self, handle: i64, result: Result<T, QgaError>) -> Result<T, QgaError> {
        let closed = self.execute("guest-file-close", Some(file::handle_args(handle))).await;
        match (result, closed) {
            (Ok(value), Ok(_)) => Ok(value),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Err(e), Err(close)) => {
                tracing::warn!(target = %self.transport.target(), handle, error = %close, "guest file handle not closed");
                Err(e)
            }
        }
    }

    /// Runs a program in the guest (`guest-exec`, never through a shell) and waits for it to
    /// exit, polling `guest-exec-status`. A program still running at the request's deadline
    /// gives [`QgaError::ExecDeadline`]; it may go on running in the guest, and the client stays
    /// usable. A non-zero exit code is not an error: check [`ExecOutput::success`]. Errors name
    /// the program.
    pub async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, QgaError> {
        let program = request.program.as_str();
        if let Some(stdin) = &request.stdin
            && stdin.len() > self.config.max_exec_input
        {
            return Err(QgaError::TooLarge {
                command: format!("guest-exec {program}"),
                what: format!("standard input ({} bytes; write it to a file instead)", stdin.len()),
                limit: u64::try_from(self.config.max_exec_input).unwrap_or(u64::MAX),
            });
        }
        self.require(&["guest-exec", "guest-exec-status"]).await.map_err(|e| e.about(program))?;
        let deadline = Instant::now() + request.deadline;
        let reply = self.execute("guest-exec", Some(request.to_arguments())).await.map_err(|e| e.about(program))?;
        let pid = exec::parse_pid(&reply)?;
        let mut delay = None;
        loop {
            let status = self
                .execute("guest-exec-status", Some(exec::status_args(pid)))
                .await
                .map_err(|e| e.about(&format!("{program} (guest pid {pid})")))?;
            if let Some(output) = exec::parse_status(pid, status)? {
                return Ok(output);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(QgaError::ExecDeadline { program: program.to_owned(), pid, after: request.deadline });
            }
            let pause = exec::next_poll_delay(delay);
            delay = Some(pause);
            tokio::time::sleep(pause.min(deadline - now)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::qga::protocol;

    /// A transport that gets whole replies (like the virsh and Proxmox ones): it answers each
    /// command with the next scripted reply and records what was asked.
    #[derive(Default)]
    struct Script {
        replies: Mutex<VecDeque<Value>>,
        calls: Mutex<Vec<(String, Option<Value>)>>,
    }

    #[async_trait]
    impl QgaTransport for Script {
        async fn execute(&self, command: &str, arguments: Option<Value>, _: Duration) -> Result<Value, QgaError> {
            self.calls.lock().unwrap().push((command.to_owned(), arguments));
            let reply = self.replies.lock().unwrap().pop_front().expect("no scripted reply left");
            protocol::interpret_reply(command, reply)
        }

        fn target(&self) -> String {
            "script".to_owned()
        }
    }

    fn scripted(replies: Vec<Value>) -> (QgaClient, Arc<Script>) {
        let script = Arc::new(Script { replies: Mutex::new(replies.into()), ..Script::default() });
        (
            QgaClient::with_config(script.clone(), QgaClientConfig { read_chunk: 3, ..QgaClientConfig::default() }),
            script,
        )
    }

    fn info(disabled: &[&str]) -> Value {
        let names = ["guest-exec", "guest-exec-status", "guest-file-open", "guest-file-read", "guest-file-write"];
        let commands: Vec<Value> = names
            .iter()
            .chain(["guest-file-close"].iter())
            .map(|name| json!({"name": name, "enabled": !disabled.contains(name), "success-response": true}))
            .collect();
        json!({"return": {"version": "7.2.22", "supported_commands": commands}})
    }

    fn commands(script: &Script) -> Vec<String> {
        script.calls.lock().unwrap().iter().map(|(command, _)| command.clone()).collect()
    }

    #[tokio::test]
    async fn reads_in_chunks_until_eof_and_closes() {
        let (client, script) = scripted(vec![
            info(&[]),
            json!({"return": 7}),
            json!({"return": {"count": 3, "buf-b64": "YWJj", "eof": false}}),
            json!({"return": {"count": 1, "buf-b64": "ZA==", "eof": true}}),
            json!({"return": {}}),
        ]);
        assert_eq!(client.read_file("/etc/x").await.unwrap(), b"abcd");
        assert_eq!(
            commands(&script),
            ["guest-info", "guest-file-open", "guest-file-read", "guest-file-read", "guest-file-close"]
        );
        let calls = script.calls.lock().unwrap();
        assert_eq!(calls[1].1, Some(json!({"path": "/etc/x", "mode": "r"})));
        assert_eq!(calls[2].1, Some(json!({"handle": 7, "count": 3})));
        assert_eq!(calls[4].1, Some(json!({"handle": 7})));
    }

    #[tokio::test]
    async fn a_failed_read_still_closes_and_names_the_path() {
        let (client, script) = scripted(vec![
            info(&[]),
            json!({"return": 7}),
            json!({"error": {"class": "GenericError", "desc": "failed to read file: Input/output error"}}),
            json!({"return": {}}),
        ]);
        let err = client.read_file("/etc/x").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest-file-read /etc/x: guest agent error (GenericError): failed to read file: Input/output error"
        );
        assert_eq!(commands(&script).last().map(String::as_str), Some("guest-file-close"));
    }

    #[tokio::test]
    async fn writes_in_chunks_and_refuses_before_opening_when_write_is_disabled() {
        let (client, script) = scripted(vec![info(&["guest-file-write"])]);
        let err = client.write_file("/config/x", b"data", WriteMode::Truncate).await.unwrap_err();
        assert!(matches!(err, QgaError::NotSupported { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "guest-file-write /config/x: not supported by this guest agent: disabled in this guest agent (guest-info)"
        );
        assert_eq!(commands(&script), ["guest-info"]);

        let config = QgaClientConfig { write_chunk: 2, ..QgaClientConfig::default() };
        let script = Arc::new(Script::default());
        script.replies.lock().unwrap().extend([
            info(&[]),
            json!({"return": 8}),
            json!({"return": {"count": 2, "eof": false}}),
            json!({"return": {"count": 1, "eof": false}}),
            json!({"return": {}}),
        ]);
        let client = QgaClient::with_config(script.clone(), config);
        client.write_file("/config/x", b"abc", WriteMode::Append).await.unwrap();
        let calls = script.calls.lock().unwrap();
        assert_eq!(calls[1].1, Some(json!({"path": "/config/x", "mode": "a"})));
        assert_eq!(calls[2].1, Some(json!({"handle": 8, "buf-b64": "YWI="})));
        assert_eq!(calls[3].1, Some(json!({"handle": 8, "buf-b64": "Yw=="})));
        assert_eq!(calls[4].0, "guest-file-close");
    }

    #[tokio::test]
    async fn exec_polls_until_the_program_exits() {
        let (client, script) = scripted(vec![
            info(&[]),
            json!({"return": {"pid": 42}}),
            json!({"return": {"exited": false}}),
            json!({"return": {"exited": true, "exitcode": 0, "out-data": "b2sK"}}),
        ]);
        let output = client.exec(&ExecRequest::new("/bin/true", ["x"]).stdin(b"in".to_vec())).await.unwrap();
        assert!(output.success());
        assert_eq!((output.pid, output.stdout.as_slice()), (42, &b"ok\n"[..]));
        assert_eq!(commands(&script), ["guest-info", "guest-exec", "guest-exec-status", "guest-exec-status"]);
        assert_eq!(script.calls.lock().unwrap()[1].1.as_ref().unwrap()["input-data"], "aW4=");

        // guest-info is asked once per client.
        script
            .replies
            .lock()
            .unwrap()
            .extend([json!({"return": {"pid": 43}}), json!({"return": {"exited": true, "signal": 15}})]);
        let output = client.exec(&ExecRequest::new("/bin/true", ["y"])).await.unwrap();
        assert_eq!(output.signal, Some(15));
        assert_eq!(commands(&script).len(), 6);
    }

    #[tokio::test]
    async fn without_guest_info_the_commands_themselves_decide() {
        let (client, script) = scripted(vec![
            json!({"error": {"class": "CommandNotFound", "desc": "Command guest-info has been disabled"}}),
            json!({"error": {"class": "CommandNotFound", "desc": "Command guest-exec has been disabled"}}),
        ]);
        let err = client.exec(&ExecRequest::new("/bin/true", [""; 0])).await.unwrap_err();
        assert!(matches!(&err, QgaError::NotSupported { desc, .. } if desc.contains("guest-exec has been disabled")));
        assert_eq!(commands(&script), ["guest-info", "guest-exec"]);
    }
}
