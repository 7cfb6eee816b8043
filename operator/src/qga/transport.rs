//! [`QgaTransport`]: how a command reaches a guest agent, and [`UnixSocketTransport`], which talks
//! to the agent over a unix socket (qemu-ga's `unix-listen` mode, or libvirt's / QEMU's
//! chardev socket for the VM's `org.qemu.guest_agent.0` channel).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};

use super::QgaError;
use super::protocol::{self, Frame, FrameDecoder, Resync, SYNC_COMMAND};

/// Executes QGA commands somewhere: one command with its arguments and a timeout gives the
/// command's `return` value or a [`QgaError`].
///
/// Implementations own framing and connection management: the unix socket transport here
/// resynchronises a raw byte stream; transports that go through libvirt
/// (`virsh qemu-agent-command`) or the Proxmox API get whole replies and only need
/// [`protocol::interpret_reply`].
#[async_trait]
pub trait QgaTransport: Send + Sync {
    /// Executes `command` with `arguments` (a JSON object, or `None` for none) and waits at most
    /// `timeout` for the answer.
    async fn execute(&self, command: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value, QgaError>;

    /// Where commands go (socket path, VM name), for logs and error messages.
    fn target(&self) -> String;
}

#[async_trait]
impl<T: QgaTransport + ?Sized> QgaTransport for Arc<T> {
    async fn execute(&self, command: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value, QgaError> {
        (**self).execute(command, arguments, timeout).await
    }

    fn target(&self) -> String {
        (**self).target()
    }
}

/// Settings of a [`UnixSocketTransport`].
#[derive(Debug, Clone)]
pub struct UnixSocketConfig {
    /// The longest a connection attempt may take (it is also bounded by the command's timeout).
    pub connect_timeout: Duration,
    /// The largest single message accepted from the agent; a larger one fails the command with
    /// [`QgaError::TooLarge`] and is skipped.
    pub max_message: usize,
}

impl Default for UnixSocketConfig {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(5), max_message: protocol::DEFAULT_MAX_MESSAGE }
    }
}

/// A QGA transport over a unix stream socket (also called the "libvirt" transport: libvirt and
/// QEMU expose the VM's agent channel as such a socket; `qemu-ga -m unix-listen` serves one
/// directly).
///
/// It holds one connection and runs one command at a time (a mutex serialises callers). It
/// resynchronises with `0xFF` + `guest-sync-delimited` after connecting and whenever the stream
/// is in doubt (a timeout, garbage, a reply that does not parse, unsolicited data), so replies
/// left over from abandoned commands are never taken for the answer to a new one. A broken
/// connection is dropped and re-established on the next command; if a reused connection turns
/// out to be dead before the request was sent, the command is retried once on a new connection.
#[derive(Debug)]
pub struct UnixSocketTransport {
    path: PathBuf,
    config: UnixSocketConfig,
    connection: Mutex<Option<Connection>>,
}

#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    decoder: FrameDecoder,
    /// Whether the next message on the stream is known to be the answer to the next request.
    synced: bool,
    buf: Vec<u8>,
}

const READ_BUFFER: usize = 64 * 1024;

impl UnixSocketTransport {
    /// A transport for the socket at `path`, with default settings. Nothing is connected yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_config(path, UnixSocketConfig::default())
    }

    /// A transport for the socket at `path`.
    pub fn with_config(path: impl Into<PathBuf>, config: UnixSocketConfig) -> Self {
        Self { path: path.into(), config, connection: Mutex::new(None) }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the connection (if any); the next command reconnects.
    pub async fn disconnect(&self) {
        *self.connection.lock().await = None;
    }

    fn io_error(&self, context: impl Into<String>, source: std::io::Error) -> QgaError {
        QgaError::Io { target: self.target(), context: context.into(), source }
    }

    async fn connect(&self, deadline: Instant) -> Result<Connection, QgaError> {
        let limit = deadline.min(Instant::now() + self.config.connect_timeout);
        let stream = match timeout_at(limit, UnixStream::connect(&self.path)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(self.io_error("connect", e)),
            Err(_) => return Err(self.io_error("connect", std::io::Error::from(ErrorKind::TimedOut))),
        };
        tracing::debug!(socket = %self.path.display(), "connected to the guest agent");
        Ok(Connection {
            stream,
            decoder: FrameDecoder::new(self.config.max_message),
            synced: false,
            buf: vec![0; READ_BUFFER],
        })
    }

    /// Makes `conn` ready for a request: notices a closed or chattering stream, and
    /// resynchronises when needed.
    async fn prepare(
        &self,
        conn: &mut Connection,
        command: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), QgaError> {
        let was_synced = conn.synced;
        conn.check_idle().map_err(|e| self.io_error("connection check", e))?;
        if conn.synced {
            return Ok(());
        }
        if was_synced {
            tracing::warn!(socket = %self.path.display(), "unsolicited data from the guest agent");
        }
        let mut sync = Resync::random();
        tracing::debug!(socket = %self.path.display(), id = sync.id(), "resynchronising with the guest agent");
        conn.write(&sync.request(), deadline)
            .await
            .map_err(|e| self.stream_error(e, &format!("{SYNC_COMMAND} (before {command})"), timeout, "write"))?;
        loop {
            while let Some(frame) = conn.decoder.next_frame() {
                if sync.feed(&frame) {
                    if conn.decoder.has_pending() {
                        tracing::warn!(socket = %self.path.display(), "unsolicited data after the sync reply, dropped");
                        conn.decoder.reset();
                    }
                    conn.synced = true;
                    return Ok(());
                }
                if let Frame::Oversized = frame {
                    tracing::warn!(socket = %self.path.display(), "oversized stale message dropped while resynchronising");
                }
            }
            conn.read_more(deadline)
                .await
                .map_err(|e| self.stream_error(e, &format!("{SYNC_COMMAND} (before {command})"), timeout, "read"))?;
        }
    }

    /// Reads the reply to `command` (already sent).
    async fn read_reply(
        &self,
        conn: &mut Connection,
        command: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Value, QgaError> {
        let mut doubt = false;
        loop {
            while let Some(frame) = conn.decoder.next_frame() {
                match frame {
                    Frame::Message(raw) => {
                        let reply = protocol::parse_reply(command, &raw);
                        let clean =
                            !doubt && !matches!(reply, Err(QgaError::Protocol { .. })) && !conn.decoder.has_pending();
                        if clean {
                            conn.synced = true;
                        } else {
                            conn.decoder.reset();
                        }
                        return reply;
                    }
                    Frame::Garbage(n) => {
                        tracing::warn!(socket = %self.path.display(), command, bytes = n, "garbage from the guest agent");
                        doubt = true;
                    }
                    Frame::Delimiter => {
                        // Only a sync reply is delimited, and we sent none: what follows is stale.
                        conn.decoder.reset();
                        return Err(QgaError::protocol(command, "unexpected 0xFF delimiter instead of a reply"));
                    }
                    Frame::Oversized => {
                        return Err(QgaError::TooLarge {
                            command: command.to_owned(),
                            what: "reply".to_owned(),
                            limit: u64::try_from(conn.decoder.max_message()).unwrap_or(u64::MAX),
                        });
                    }
                }
            }
            conn.read_more(deadline).await.map_err(|e| self.stream_error(e, command, timeout, "read"))?;
        }
    }

    fn stream_error(&self, error: StreamError, command: &str, timeout: Duration, context: &str) -> QgaError {
        match error {
            StreamError::TimedOut => QgaError::Timeout { command: command.to_owned(), after: timeout },
            StreamError::Io(e) => self.io_error(format!("{context} ({command})"), e),
        }
    }
}

enum StreamError {
    TimedOut,
    Io(std::io::Error),
}

impl Connection {
    /// Fails if the agent closed the connection; marks the stream as in doubt if unsolicited
    /// data is waiting (which is consumed into the decoder, for the resync to drop). Whitespace,
    /// such as the newline after the last reply arriving late, is no doubt.
    fn check_idle(&mut self) -> Result<(), std::io::Error> {
        // Bounded: a stream that never stops talking is resynchronised (and times out) instead.
        for _ in 0..16 {
            match self.stream.try_read(&mut self.buf) {
                Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed by the agent")),
                Ok(n) => {
                    self.decoder.push(&self.buf[..n]);
                    if self.decoder.has_pending() {
                        self.synced = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), StreamError> {
        match timeout_at(deadline, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StreamError::Io(e)),
            Err(_) => Err(StreamError::TimedOut),
        }
    }

    async fn read_more(&mut self, deadline: Instant) -> Result<(), StreamError> {
        match timeout_at(deadline, self.stream.read(&mut self.buf)).await {
            Ok(Ok(0)) => Err(StreamError::Io(std::io::Error::new(ErrorKind::UnexpectedEof, "closed by the agent"))),
            Ok(Ok(n)) => {
                self.decoder.push(&self.buf[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(StreamError::Io(e)),
            Err(_) => Err(StreamError::TimedOut),
        }
    }
}

#[async_trait]
impl QgaTransport for UnixSocketTransport {
    async fn execute(&self, command: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value, QgaError> {
        let request = protocol::encode_request(command, arguments.as_ref());
        let mut slot = self.connection.lock().await;
        // The timeout covers this command on the wire, not the wait for earlier callers' commands.
        let deadline = Instant::now() + timeout;
        let mut retried = false;
        loop {
            let reused = slot.is_some();
            let conn = match slot.as_mut() {
                Some(conn) => conn,
                None => slot.insert(self.connect(deadline).await?),
            };

            // Until a clean reply arrives, the stream is in doubt (also if this future is
            // dropped half-way).
            let prepared = self.prepare(conn, command, timeout, deadline).await;
            let sent = match prepared {
                Ok(()) => {
                    conn.synced = false;
                    conn.write(&request, deadline).await.map_err(|e| self.stream_error(e, command, timeout, "write"))
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => {}
                Err(e @ QgaError::Io { .. }) => {
                    *slot = None;
                    if reused && !retried {
                        tracing::debug!(socket = %self.path.display(), error = %e, "reconnecting to the guest agent");
                        retried = true;
                        continue;
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }

            let reply = self.read_reply(conn, command, timeout, deadline).await;
            if let Err(QgaError::Io { .. }) = reply {
                *slot = None;
            }
            return reply;
        }
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}
