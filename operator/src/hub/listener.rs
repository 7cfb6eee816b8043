//! The agent endpoint's connections, before tonic sees them: TCP accept (keepalive, nodelay),
//! the TLS handshake under its deadline, the cap on connections without a verified client
//! certificate, and the deadline for the first request ([`super::preface`]).
//!
//! Client certificates are optional at the TLS layer (Enroll runs before a router has one). A
//! connection counts as authenticated when the chain verifies against the CA (rustls) and the
//! PKI accepts the certificate (not revoked); only the others take a place in the
//! [`ConnLimiter`]. The `Connect` handler still checks the certificate itself, exactly as before.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

use super::conn_limit::{ConnLimiter, Exceeded};
use super::preface::{Deadlined, Guard};
use super::refusals::{Reason, Refusals};
use super::{Hub, ServerConfig};

/// A connection as tonic gets it.
pub(crate) type AgentStream = Deadlined<TlsStream<TcpStream>>;

/// Refused connections answered at once; beyond this a refused connection is closed without
/// an answer (a flood gets no more than this many descriptors held by refusals).
const MAX_ANSWERING: usize = 64;
/// How long a refused connection is kept to answer its requests.
const ANSWER_FOR: Duration = Duration::from_secs(2);

/// The rustls settings: the server certificate from the PKI, client certificates optional and,
/// when presented, verified against the CA; ALPN h2.
pub(crate) fn tls_config(hub: &Hub) -> Result<Arc<rustls::ServerConfig>, String> {
    let pki = hub.pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA bundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("the CA bundle: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))?;
    let server = pki.server_identity();
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the server certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(|e| format!("the server key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("the server certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

struct Context {
    hub: Hub,
    acceptor: TlsAcceptor,
    config: ServerConfig,
    limiter: Arc<ConnLimiter>,
    refusals: Arc<Refusals>,
    answering: AtomicUsize,
}

/// Accepts on `listener` in a background task and yields connections ready for tonic; stops
/// (and closes the listener) when the stream is dropped.
pub(crate) fn incoming(
    hub: Hub,
    config: ServerConfig,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> ReceiverStream<io::Result<AgentStream>> {
    let metrics = hub.metrics();
    let cx = Arc::new(Context {
        limiter: ConnLimiter::new(
            config.max_unauthenticated_per_source,
            config.max_unauthenticated,
            metrics.unauthenticated_connections.clone(),
        ),
        refusals: Arc::new(Refusals::new(metrics.connection_refusals.clone())),
        acceptor: TlsAcceptor::from(tls),
        answering: AtomicUsize::new(0),
        hub,
        config,
    });
    let (tx, rx) = mpsc::channel(64);
    let mut tcp = TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(cx.config.tcp_keepalive));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = tcp.next() => a,
            };
            match accepted {
                None => return,
                Some(Ok(stream)) => {
                    tokio::spawn(handshake(cx.clone(), stream, tx.clone()));
                }
                Some(Err(e)) if transient(&e) => {}
                Some(Err(e)) => {
                    // Out of descriptors and the like: counted, logged, and no busy loop.
                    cx.refusals.record(Reason::Accept, None, &e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Accept errors that concern one connection only.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// TLS, classification, the cap; hands the connection to tonic or refuses it.
async fn handshake(cx: Arc<Context>, tcp: TcpStream, tx: mpsc::Sender<io::Result<AgentStream>>) {
    let peer = tcp.peer_addr().ok();
    let limit = cx.config.tls_handshake_timeout;
    // The handshake and the certificate check together get the handshake deadline.
    let accepted = tokio::time::timeout(limit, async {
        let tls = cx.acceptor.accept(tcp).await?;
        let authenticated = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => cx.hub.pki().verify_client(cert.as_ref()).await.is_ok(),
            None => false,
        };
        Ok::<_, io::Error>((tls, authenticated))
    })
    .await;
    let (tls, authenticated) = match accepted {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return cx.refusals.record(Reason::Tls, peer, &e.to_string()),
        Err(_) => return cx.refusals.record(Reason::HandshakeTimeout, peer, &format!("{limit:?}")),
    };
    let permit = match (authenticated, peer) {
        (true, _) => None,
        (false, Some(peer)) => match cx.limiter.try_acquire(peer.ip()) {
            Ok(permit) => Some(permit),
            Err(exceeded) => return refuse(&cx, tls, peer, exceeded).await,
        },
        // No peer address: the client is already gone.
        (false, None) => return cx.refusals.record(Reason::Tls, None, "no peer address"),
    };
    let guard = Guard { peer, refusals: cx.refusals.clone(), _permit: permit };
    let conn = Deadlined::new(tls, cx.config.preface_timeout, guard);
    // Fails only when the server stopped: the connection is dropped (closed).
    let _ = tx.send(Ok(conn)).await;
}

/// Answers a connection over the cap: every request on it gets the gRPC status
/// RESOURCE_EXHAUSTED with the reason (so the client's error names it), for at most
/// [`ANSWER_FOR`]; then it is closed.
async fn refuse(cx: &Context, tls: TlsStream<TcpStream>, peer: SocketAddr, exceeded: Exceeded) {
    let (reason, text) = match exceeded {
        Exceeded::PerSource => (
            Reason::PerSource,
            format!(
                "too many connections without a client certificate from this address (at most {})",
                cx.config.max_unauthenticated_per_source
            ),
        ),
        Exceeded::Total => (
            Reason::Total,
            format!("too many connections without a client certificate (at most {})", cx.config.max_unauthenticated),
        ),
    };
    cx.refusals.record(reason, Some(peer), "");
    if cx.answering.fetch_add(1, Ordering::SeqCst) >= MAX_ANSWERING {
        cx.answering.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let text: Arc<str> = text.into();
    let service = hyper::service::service_fn(move |_: http::Request<hyper::body::Incoming>| {
        let response = refusal(&text);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
    let _ = tokio::time::timeout(ANSWER_FOR, conn).await;
    cx.answering.fetch_sub(1, Ordering::SeqCst);
}

/// A trailers-only gRPC response: RESOURCE_EXHAUSTED, `text` as the message.
pub(crate) fn refusal(text: &str) -> http::Response<http_body_util::Empty<bytes::Bytes>> {
    let mut response = http::Response::new(http_body_util::Empty::new());
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", http::HeaderValue::from(tonic::Code::ResourceExhausted as i32));
    // Printable ASCII needs no percent-encoding in grpc-message.
    let printable: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if let Ok(v) = http::HeaderValue::from_str(&printable) {
        headers.insert("grpc-message", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_trailers_only_resource_exhausted() {
        let r = refusal("too many (at most 3)\n");
        assert_eq!(r.status(), http::StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["grpc-message"], "too many (at most 3)?");
    }
}
