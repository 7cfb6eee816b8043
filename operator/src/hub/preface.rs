//! The deadline for a connection's first request: a client must send the HTTP/2 connection
//! preface and the complete headers of a first request within a deadline after the TLS
//! handshake, or the connection is closed. Without it a client that completes TLS and then
//! says nothing holds its descriptor for ever (HTTP/2 keepalive does not help: the peer answers
//! PINGs, or the server never starts pinging a connection without a preface).
//!
//! [`PrefaceScan`] follows the client's bytes (pure); [`Deadlined`] wraps the connection and
//! fails its reads once the deadline passes without the scan completing. After the first
//! request's headers it only forwards.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use super::conn_limit::Permit;
use super::refusals::{Reason, Refusals};

/// The client connection preface (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `matched` bytes of the preface seen.
    Preface { matched: usize },
    /// Collecting a frame header.
    FrameHeader { header: [u8; FRAME_HEADER], have: usize },
    /// Skipping a frame's payload; `ends_headers`: the frame completes a header block.
    Payload { left: usize, ends_headers: bool },
    /// Preface and a complete header block seen.
    Done,
    /// Not HTTP/2: the server closes it by itself; the deadline stays as a backstop.
    NotHttp2,
}

/// Follows what a client sends until the preface and a complete header block (a HEADERS frame,
/// and its CONTINUATION frames, up to END_HEADERS) have arrived.
#[derive(Clone, Debug)]
pub(crate) struct PrefaceScan {
    state: State,
}

impl Default for PrefaceScan {
    fn default() -> Self {
        PrefaceScan { state: State::Preface { matched: 0 } }
    }
}

impl PrefaceScan {
    /// Takes the next bytes from the client; true once the first request's headers are complete.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            self.state = match self.state {
                State::Preface { matched } => {
                    let n = (PREFACE.len() - matched).min(data.len());
                    if data[..n] != PREFACE[matched..matched + n] {
                        State::NotHttp2
                    } else {
                        data = &data[n..];
                        if matched + n == PREFACE.len() {
                            State::FrameHeader { header: [0; FRAME_HEADER], have: 0 }
                        } else {
                            State::Preface { matched: matched + n }
                        }
                    }
                }
                State::FrameHeader { mut header, have } => {
                    let n = (FRAME_HEADER - have).min(data.len());
                    header[have..have + n].copy_from_slice(&data[..n]);
                    data = &data[n..];
                    if have + n < FRAME_HEADER {
                        State::FrameHeader { header, have: have + n }
                    } else {
                        let length =
                            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
                        let ends_headers = matches!(header[3], HEADERS | CONTINUATION) && header[4] & END_HEADERS != 0;
                        after_payload(length, ends_headers)
                    }
                }
                State::Payload { left, ends_headers } => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    after_payload(left - n, ends_headers)
                }
                State::Done | State::NotHttp2 => break,
            };
        }
        self.done()
    }

    /// Whether the preface and the first request's headers have arrived.
    pub(crate) fn done(&self) -> bool {
        self.state == State::Done
    }
}

fn after_payload(left: usize, ends_headers: bool) -> State {
    match (left, ends_headers) {
        (0, true) => State::Done,
        (0, false) => State::FrameHeader { header: [0; FRAME_HEADER], have: 0 },
        (left, ends_headers) => State::Payload { left, ends_headers },
    }
}

/// What a connection carries along besides its bytes.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The client, for the log.
    pub(crate) peer: Option<SocketAddr>,
    /// Where a missed deadline is counted.
    pub(crate) refusals: Arc<Refusals>,
    /// The connection's place among unauthenticated connections (none with a verified
    /// certificate); given back when the connection closes.
    pub(crate) _permit: Option<Permit>,
}

/// A connection whose reads fail once `deadline` passes before its first request's headers.
pub(crate) struct Deadlined<S> {
    inner: S,
    scan: PrefaceScan,
    /// Pending until the first request's headers arrived; `None` after.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
    expired: bool,
    guard: Guard,
}

impl<S> Deadlined<S> {
    /// Wraps `inner`; the deadline runs from now.
    pub(crate) fn new(inner: S, limit: Duration, guard: Guard) -> Self {
        Deadlined {
            inner,
            scan: PrefaceScan::default(),
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            limit,
            expired: false,
            guard,
        }
    }

    fn expired_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no HTTP/2 preface and request headers within {:?}", self.limit),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(this.expired_error()));
        }
        // Polled before the read so that its timer wakes this task even while the client is silent.
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            this.expired = true;
            this.guard.refusals.record(Reason::PrefaceTimeout, this.guard.peer, "");
            return Poll::Ready(Err(this.expired_error()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() && matches!(polled, Poll::Ready(Ok(()))) && this.scan.feed(&buf.filled()[before..]) {
            this.deadline = None;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The wrapped stream's connection info, unchanged: for the TLS stream, `Request::peer_certs()`
/// and `remote_addr()` read exactly what they read without the wrapper.
impl<S: Connected> Connected for Deadlined<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::metrics::{Counters, LabelKind};

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    /// Preface, SETTINGS, WINDOW_UPDATE, HEADERS without END_HEADERS, CONTINUATION with it.
    fn client_start() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(0x8, 0, &[0, 0, 0x10, 0]));
        bytes.extend(frame(HEADERS, 0, &[0x82; 300]));
        bytes.extend(frame(CONTINUATION, END_HEADERS, &[0x86; 20]));
        bytes
    }

    #[test]
    fn done_only_after_the_end_of_the_first_header_block_in_any_split() {
        let bytes = client_start();
        for chunk in [1, 2, 7, 9, 24, 25, 100, bytes.len()] {
            let mut scan = PrefaceScan::default();
            let mut done_at = None;
            let mut fed = 0;
            for c in bytes.chunks(chunk) {
                fed += c.len();
                if scan.feed(c) && done_at.is_none() {
                    done_at = Some(fed);
                }
            }
            // Done exactly when the last byte of the CONTINUATION payload arrived.
            assert_eq!(done_at, Some(bytes.len()), "chunk {chunk}");
            assert!(scan.done());
        }
        // Everything but the last byte: not done.
        let mut scan = PrefaceScan::default();
        assert!(!scan.feed(&bytes[..bytes.len() - 1]));
        assert!(scan.feed(&bytes[bytes.len() - 1..]));
    }

    #[test]
    fn frames_other_than_headers_and_not_http2_never_complete() {
        let mut scan = PrefaceScan::default();
        let mut bytes = PREFACE.to_vec();
        for _ in 0..100 {
            bytes.extend(frame(0x6, 0, &[0; 8])); // PING
            bytes.extend(frame(0x4, 0, &[])); // SETTINGS
            bytes.extend(frame(HEADERS, 0, &[])); // a header block that never ends…
            bytes.extend(frame(0x0, END_HEADERS, &[1, 2])); // …and DATA with 0x4 set
        }
        assert!(!scan.feed(&bytes));
        let mut scan = PrefaceScan::default();
        assert!(!scan.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!scan.feed(&client_start()));
        let mut scan = PrefaceScan::default();
        assert!(!scan.feed(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        // An empty HEADERS frame with END_HEADERS completes (the server judges its content).
        let mut scan = PrefaceScan::default();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, END_HEADERS | 0x1, &[]));
        assert!(scan.feed(&bytes));
    }

    fn guard(counters: &Counters) -> Guard {
        Guard { peer: None, refusals: Arc::new(Refusals::new(counters.clone())), _permit: None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_at_the_deadline() {
        let counters = Counters::default();
        let (client, server) = tokio::io::duplex(4096);
        let mut conn = Deadlined::new(server, Duration::from_secs(10), guard(&counters));
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 64];
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(conn.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(counters.get_or_create(&LabelKind::of("preface_timeout")).get(), 1);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_preface_alone_is_not_enough_but_a_first_request_disarms_the_deadline() {
        let counters = Counters::default();
        let (mut client, server) = tokio::io::duplex(4096);
        let mut conn = Deadlined::new(server, Duration::from_secs(10), guard(&counters));
        client.write_all(PREFACE).await.unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(conn.read(&mut buf).await.unwrap(), PREFACE.len());
        assert_eq!(conn.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(4096);
        let mut conn = Deadlined::new(server, Duration::from_secs(10), guard(&counters));
        client.write_all(&client_start()).await.unwrap();
        let mut got = 0;
        while got < client_start().len() {
            got += conn.read(&mut buf).await.unwrap();
        }
        // Long after the deadline the connection still reads and writes.
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"more").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 4);
        conn.write_all(b"answer").await.unwrap();
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
        assert_eq!(counters.get_or_create(&LabelKind::of("preface_timeout")).get(), 1);
    }
}
