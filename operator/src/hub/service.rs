//! The gRPC service agents talk to, and the TLS server it runs in.
//!
//! TLS: the server certificate from the PKI; client certificates are optional at the TLS layer
//! (Enroll runs before a router has one) and required by `Connect`, which maps the verified
//! certificate to a router identity and checks every `Hello` against it. Connections reach tonic
//! through [`super::listener`]: handshake deadline, first-request deadline, and the cap on
//! connections without a verified certificate.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use vrouter_proto::caps;
use vrouter_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use vrouter_proto::v1::{
    AgentMessage, ControllerMessage, EnrollRequest, EnrollResponse, Welcome, agent_message, controller_message,
};

use super::session::{self, Session};
use super::{Hub, HubEvent};
use crate::metrics::LabelKind;

/// Transport settings of the agent endpoint.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// HTTP/2 PING interval (keeps NATs open, detects dead peers at the transport).
    pub http2_keepalive_interval: Duration,
    /// How long to wait for the HTTP/2 PING acknowledgement.
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive.
    pub tcp_keepalive: Duration,
    /// TLS handshake deadline (from TCP accept; includes the client certificate check).
    pub tls_handshake_timeout: Duration,
    /// Deadline, from the end of the TLS handshake, for the HTTP/2 client preface and the
    /// complete headers of a first request; a connection that misses it is closed.
    pub preface_timeout: Duration,
    /// Most connections without a verified client certificate (enrollment, scanners) from one
    /// source (IPv4 address or IPv6 /64); more are refused.
    pub max_unauthenticated_per_source: usize,
    /// Most connections without a verified client certificate in all; more are refused.
    pub max_unauthenticated: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            preface_timeout: Duration::from_secs(10),
            max_unauthenticated_per_source: 32,
            max_unauthenticated: 512,
        }
    }
}

/// Why the agent endpoint stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS settings could not be built from the PKI's certificates.
    #[error("agent endpoint TLS settings: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

struct Service {
    hub: Hub,
}

type ConnectStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

impl Service {
    fn refuse(&self, reason: &'static str, status: Status) -> Status {
        self.hub.metrics().session_refusals.get_or_create(&LabelKind::of(reason)).inc();
        tracing::debug!(reason, message = status.message(), "agent stream refused");
        status
    }
}

#[tonic::async_trait]
impl AgentService for Service {
    async fn enroll(&self, request: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        match self.hub.pki().enroll(&req.token, &req.identity, &req.csr_der).await {
            Ok(issued) => {
                self.hub.metrics().enrollments.get_or_create(&LabelKind::of("ok")).inc();
                tracing::info!(router = %issued.identity, ?peer, version = %req.agent_version, "router enrolled");
                Ok(Response::new(EnrollResponse {
                    certificate_pem: issued.cert_pem,
                    ca_bundle_pem: issued.ca_pem,
                    not_after: Some(prost_types::Timestamp { seconds: issued.not_after, nanos: 0 }),
                    identity: issued.identity.to_string(),
                }))
            }
            Err(e) => {
                self.hub.metrics().enrollments.get_or_create(&LabelKind::of(e.label())).inc();
                self.hub.metrics().enrollment_refusals.get_or_create(&LabelKind::of(e.label())).inc();
                tracing::warn!(identity = %req.identity, ?peer, error = %e, "enrollment refused");
                Err(match e {
                    crate::pki::EnrollError::Pki(_) => Status::internal(e.to_string()),
                    crate::pki::EnrollError::BadCsr(_)
                    | crate::pki::EnrollError::BadIdentity(_)
                    | crate::pki::EnrollError::UnsupportedKey => Status::invalid_argument(e.to_string()),
                    _ => Status::permission_denied(e.to_string()),
                })
            }
        }
    }

    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let hub = &self.hub;
        let Some(cert) = request.peer_certs().and_then(|c| c.first().cloned()) else {
            return Err(self
                .refuse("no_certificate", Status::unauthenticated("a client certificate is required; enroll first")));
        };
        let (id, serial) = match hub.pki().verify_client(&cert).await {
            Ok(v) => v,
            Err(e) => return Err(self.refuse("certificate", Status::unauthenticated(e.to_string()))),
        };
        if !hub.serving() {
            return Err(self.refuse("not_leader", Status::unavailable("this replica does not lead; reconnect")));
        }
        if hub.session_count() >= hub.config().max_sessions && hub.session(&id).is_none() {
            return Err(self.refuse(
                "max_sessions",
                Status::resource_exhausted(format!(
                    "the operator holds its maximum of {} sessions",
                    hub.config().max_sessions
                )),
            ));
        }
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(hub.config().handshake_timeout, inbound.message()).await {
            Err(_) => {
                return Err(self.refuse(
                    "handshake_timeout",
                    Status::deadline_exceeded(format!("no Hello within {:?}", hub.config().handshake_timeout)),
                ));
            }
            Ok(Err(status)) => return Err(self.refuse("handshake_error", status)),
            Ok(Ok(None)) => return Err(self.refuse("handshake_error", Status::cancelled("stream ended before Hello"))),
            Ok(Ok(Some(m))) => m,
        };
        let Some(agent_message::Msg::Hello(hello)) = first.msg else {
            return Err(self.refuse("bad_hello", Status::failed_precondition("the first frame must be Hello")));
        };
        if hello.identity != id.to_string() {
            return Err(self.refuse(
                "identity_mismatch",
                Status::permission_denied(format!(
                    "Hello says {:?} but the client certificate is for {id}",
                    hello.identity
                )),
            ));
        }
        let (tx, rx) = mpsc::channel(hub.config().outbound_queue.max(4));
        let epoch = hub.next_epoch();
        let session = Arc::new(Session::new(id.clone(), epoch, serial, hello.clone(), tx.clone(), hub.started()));
        let welcome = Welcome {
            session_epoch: epoch,
            heartbeat_interval: Some(duration(hub.config().heartbeat_interval)),
            heartbeat_misses_allowed: hub.config().heartbeat_misses,
            capabilities: caps::ALL.iter().map(|c| (*c).to_owned()).collect(),
            operator_version: env!("CARGO_PKG_VERSION").to_owned(),
            status_interval: Some(duration(hub.config().status_interval)),
            drift_interval: Some(duration(hub.config().drift_interval)),
            recorded_applied: None,
        };
        hub.register(session.clone());
        let welcome = Welcome { recorded_applied: session.applied(), ..welcome };
        // Capacity is at least 4 and the queue is new: this cannot be full.
        let _ = tx.try_send(Box::new(ControllerMessage { msg: Some(controller_message::Msg::Welcome(welcome)) }));
        tracing::info!(router = %id, epoch, version = %hello.agent_version, "agent connected");
        hub.emit(HubEvent::Connected { id, epoch, hello: Box::new(hello) });
        tokio::spawn(session::run(hub.clone(), session, inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(|m| Ok(*m)))))
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// The agent endpoint: a tonic server with TLS from the PKI.
pub struct AgentServer;

impl AgentServer {
    /// Serves agents on `listener` until `shutdown` completes; then closes every session.
    pub async fn serve(
        hub: Hub,
        config: ServerConfig,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let tls = super::listener::tls_config(&hub).map_err(ServeError::Tls)?;
        let limit = hub.config().max_message_bytes;
        let service = AgentServiceServer::new(Service { hub: hub.clone() })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let (keepalive_interval, keepalive_timeout) = (config.http2_keepalive_interval, config.http2_keepalive_timeout);
        // TCP keepalive and nodelay are set by the listener on every accepted socket.
        let incoming = super::listener::incoming(hub.clone(), config, listener, tls);
        let closer = hub.clone();
        Server::builder()
            .http2_keepalive_interval(Some(keepalive_interval))
            .http2_keepalive_timeout(Some(keepalive_timeout))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                closer.close_all("operator shutting down");
            })
            .await?;
        Ok(())
    }

    /// Binds `addr` and serves in a background task; returns the bound address.
    pub async fn spawn(
        hub: Hub,
        config: ServerConfig,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<Result<(), ServeError>>)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let handle = tokio::spawn(AgentServer::serve(hub, config, listener, shutdown));
        Ok((local, handle))
    }
}
