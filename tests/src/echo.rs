//! The benchmarks' baseline: a bare tonic bidi stream with the hub's exchange pattern. The same
//! protocol compiled with tonic's default codec (`vrouter_proto::baseline`), the same messages and
//! the same mTLS setup; the server pushes an `ApplyRequest`, the client answers at once with an
//! `ApplyResult`. Nothing else: no sessions table, no heartbeats, no state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use vrouter_agent::config::OperatorConfig;
use vrouter_agent::creds::Loaded;
use vrouter_agent::transport;
use vrouter_proto::baseline::agent_service_server::{AgentService, AgentServiceServer};
use vrouter_proto::baseline::{
    AgentMessage, ApplyRequest, ApplyResult, ControllerMessage, EnrollRequest, EnrollResponse, agent_message,
    controller_message,
};
use vrouter_proto::prost::Message;
use vrouter_proto::v1::ApplyOutcome;

/// The same request as the baseline's message type.
pub fn to_baseline(r: &vrouter_proto::v1::ApplyRequest) -> ApplyRequest {
    ApplyRequest::decode(r.encode_to_vec().as_slice()).unwrap()
}

/// The echo service: every stream it accepted, in order.
#[derive(Clone, Default)]
pub struct Echo {
    /// The open streams.
    pub streams: Arc<Mutex<Vec<EchoStream>>>,
}

/// One accepted stream: push requests down it and wait for their results.
#[derive(Clone)]
pub struct EchoStream {
    tx: mpsc::Sender<Result<ControllerMessage, Status>>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<ApplyResult>>>>,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

impl EchoStream {
    /// Sends `req` (with a fresh request id) and waits for the client's answer.
    pub async fn roundtrip(&self, mut req: ApplyRequest) -> ApplyResult {
        req.request_id = format!("e{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(req.request_id.clone(), tx);
        self.tx.send(Ok(ControllerMessage { msg: Some(controller_message::Msg::Apply(req)) })).await.unwrap();
        rx.await.unwrap()
    }
}

impl Echo {
    /// Streams accepted so far.
    pub fn count(&self) -> usize {
        self.streams.lock().unwrap().len()
    }

    /// Sends `request` down every open stream at once and waits for every answer: the total
    /// time and each stream's round trip, sorted.
    pub async fn fan_out(&self, request: &ApplyRequest) -> (Duration, Vec<Duration>) {
        let streams = self.streams.lock().unwrap().clone();
        let start = std::time::Instant::now();
        let mut lat = futures::future::join_all(streams.iter().map(|s| {
            let request = request.clone();
            async move {
                let t = std::time::Instant::now();
                s.roundtrip(request).await;
                t.elapsed()
            }
        }))
        .await;
        let total = start.elapsed();
        lat.sort();
        (total, lat)
    }

    /// Serves on `listener` with the operator's server identity, requiring nothing more of
    /// clients than the hub does (a client certificate from `ca_pem`, optional at the TLS layer).
    pub fn serve(&self, listener: tokio::net::TcpListener, ca_pem: &str, cert_pem: &str, key_pem: &str) {
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            .client_ca_root(Certificate::from_pem(ca_pem))
            .client_auth_optional(true);
        let svc = self.clone();
        tokio::spawn(async move {
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .tcp_nodelay(true)
                .add_service(AgentServiceServer::new(svc))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    }
}

#[tonic::async_trait]
impl AgentService for Echo {
    async fn enroll(&self, _: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    type ConnectStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        // Like the hub: read the Hello, answer with a Welcome-sized frame.
        let _ = inbound.next().await;
        let welcome = vrouter_proto::baseline::Welcome {
            session_epoch: 1,
            heartbeat_interval: Some(prost_types::Duration { seconds: 15, nanos: 0 }),
            heartbeat_misses_allowed: 3,
            capabilities: vrouter_proto::caps::ALL.iter().map(|c| (*c).to_owned()).collect(),
            operator_version: "0.1.0".into(),
            ..Default::default()
        };
        let _ = tx.send(Ok(ControllerMessage { msg: Some(controller_message::Msg::Welcome(welcome)) })).await;
        let stream = EchoStream { tx, pending: Arc::default() };
        self.streams.lock().unwrap().push(stream.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = inbound.next().await {
                if let Some(agent_message::Msg::ApplyResult(r)) = m.msg
                    && let Some(tx) = stream.pending.lock().unwrap().remove(&r.request_id)
                {
                    let _ = tx.send(r);
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The Hello an agent sends first, so both sides have exchanged data before idling.
fn hello() -> AgentMessage {
    let hello = vrouter_proto::baseline::Hello {
        identity: "bench/echo".into(),
        agent_version: "0.1.0".into(),
        capabilities: vrouter_proto::caps::ALL.iter().map(|c| (*c).to_owned()).collect(),
        os: Some(vrouter_proto::baseline::OsInfo { id: "vyos".into(), version: "1.4.0".into(), ..Default::default() }),
        boot_id: "0123456789abcdef".into(),
        running_digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
        backend: "sim".into(),
        ..Default::default()
    };
    AgentMessage { msg: Some(agent_message::Msg::Hello(hello)) }
}

/// One session of an echo client: connects (retrying every 50 ms until it does), says hello,
/// answers every request at once; returns when the stream ends. `connected` counts open streams
/// (incremented once the server's first frame arrived).
pub async fn echo_session(cfg: &OperatorConfig, creds: &Loaded, connected: Option<&AtomicUsize>) {
    let channel = loop {
        match transport::connect(cfg, &creds.ca_pem, Some(creds)).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (tx, rx) = mpsc::channel(16);
    let _ = tx.send(hello()).await;
    let client = vrouter_proto::baseline::agent_service_client::AgentServiceClient::new(channel);
    let Ok(response) = client.clone().connect(ReceiverStream::new(rx)).await else { return };
    let mut inbound = response.into_inner();
    let mut counted = false;
    while let Ok(Some(m)) = inbound.message().await {
        if !counted && let Some(c) = connected {
            c.fetch_add(1, Ordering::SeqCst);
            counted = true;
        }
        if let Some(controller_message::Msg::Apply(req)) = m.msg {
            let result = ApplyResult {
                request_id: req.request_id,
                revision: req.revision,
                outcome: ApplyOutcome::NoChange as i32,
                output: "revision already applied".into(),
                ..ApplyResult::default()
            };
            if tx.send(AgentMessage { msg: Some(agent_message::Msg::ApplyResult(result)) }).await.is_err() {
                break;
            }
        }
    }
    if counted && let Some(c) = connected {
        c.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An echo client that opens a new session whenever the last one ended, `retry` after it, until
/// `stop`: the baseline for a reconnect storm.
pub async fn echo_client_reconnecting(
    cfg: OperatorConfig,
    creds: Loaded,
    retry: Duration,
    connected: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = echo_session(&cfg, &creds, Some(&connected)) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// An echo server's address for clients: `https://localhost:<port>`.
pub fn endpoint(addr: SocketAddr) -> String {
    format!("https://localhost:{}", addr.port())
}
