//! One agent session: its shared state and the task that runs its stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use vrouter_proto::RouterId;
use vrouter_proto::v1::{
    AgentMessage, ApplyResult, Close, CloseCode, ControllerMessage, Hello, Ping, Pong, RenewCertificateResponse,
    Revision, RunningConfig, agent_message, controller_message,
};

use super::{Hub, HubEvent};
use crate::metrics::LabelKind;

/// A request waiting for the agent's answer.
pub(crate) enum Pending {
    Apply(oneshot::Sender<Result<ApplyResult, String>>),
    Running(oneshot::Sender<Result<RunningConfig, String>>),
}

/// What the rest of the operator can see of a session.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The router.
    pub id: RouterId,
    /// The stream epoch (higher is newer).
    pub epoch: u64,
    /// When the session started.
    pub since: SystemTime,
    /// When the agent was last heard from.
    pub last_seen: SystemTime,
    /// The agent's Hello.
    pub hello: Hello,
    /// The revision the router runs, as last reported.
    pub applied: Option<Revision>,
}

pub(crate) struct Session {
    id: RouterId,
    epoch: u64,
    serial: String,
    hello: Hello,
    since: SystemTime,
    /// Milliseconds since hub start when the agent was last heard from.
    last_seen_ms: AtomicU64,
    /// Frames for the agent, boxed: the queue's slots stay pointer-sized (the message enum is
    /// hundreds of bytes, and every session holds a queue).
    tx: mpsc::Sender<Box<ControllerMessage>>,
    pending: Mutex<HashMap<String, Pending>>,
    applied: Mutex<Option<Revision>>,
    cancel: CancellationToken,
    close_reason: Mutex<Option<(CloseCode, String)>>,
}

impl Session {
    pub(crate) fn new(
        id: RouterId,
        epoch: u64,
        serial: String,
        hello: Hello,
        tx: mpsc::Sender<Box<ControllerMessage>>,
        started: Instant,
    ) -> Self {
        let applied = hello.last_applied.clone().filter(|r| !r.id.is_empty());
        Session {
            id,
            epoch,
            serial,
            hello,
            since: SystemTime::now(),
            last_seen_ms: AtomicU64::new(started.elapsed().as_millis() as u64),
            tx,
            pending: Mutex::new(HashMap::new()),
            applied: Mutex::new(applied),
            cancel: CancellationToken::new(),
            close_reason: Mutex::new(None),
        }
    }

    pub(crate) fn id(&self) -> &RouterId {
        &self.id
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn hello(&self) -> &Hello {
        &self.hello
    }

    pub(crate) fn applied(&self) -> Option<Revision> {
        self.applied.lock().ok().and_then(|a| a.clone())
    }

    pub(crate) fn set_applied(&self, revision: Revision) {
        if let Ok(mut a) = self.applied.lock() {
            *a = Some(revision);
        }
    }

    pub(crate) fn info(&self, started: Instant) -> SessionInfo {
        let seen = self.last_seen_ms.load(Ordering::Relaxed);
        let now_ms = started.elapsed().as_millis() as u64;
        SessionInfo {
            id: self.id.clone(),
            epoch: self.epoch,
            since: self.since,
            last_seen: SystemTime::now() - std::time::Duration::from_millis(now_ms.saturating_sub(seen)),
            hello: self.hello.clone(),
            applied: self.applied(),
        }
    }

    pub(crate) fn add_pending(&self, request_id: String, pending: Pending) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(request_id, pending);
        }
    }

    pub(crate) fn take_pending(&self, request_id: &str) -> Option<Pending> {
        self.pending.lock().ok().and_then(|mut p| p.remove(request_id))
    }

    /// Queues a frame for the agent; false if the session is gone.
    pub(crate) async fn send(&self, message: ControllerMessage) -> bool {
        if self.cancel.is_cancelled() {
            return false;
        }
        self.tx.send(Box::new(message)).await.is_ok()
    }

    /// Ends the session: the stream task sends `Close` and stops.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        if let Ok(mut r) = self.close_reason.lock()
            && r.is_none()
        {
            *r = Some((code, reason.to_owned()));
        }
        self.cancel.cancel();
    }

    fn touch(&self, started: Instant) {
        self.last_seen_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn fail_all_pending(&self) {
        let drained: Vec<Pending> =
            self.pending.lock().map(|mut p| p.drain().map(|(_, v)| v).collect()).unwrap_or_default();
        // Dropping the senders wakes the waiters with "session lost".
        drop(drained);
    }
}

/// Runs a registered session's stream until it ends.
pub(crate) async fn run(hub: Hub, session: Arc<Session>, mut inbound: Streaming<AgentMessage>) {
    let started = hub.started();
    let interval = hub.config().heartbeat_interval;
    let deadline_ms = interval.as_millis() as u64 * u64::from(hub.config().heartbeat_misses.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let reason: String = loop {
        tokio::select! {
            biased;
            _ = session.cancel.cancelled() => {
                let (code, reason) = session
                    .close_reason
                    .lock()
                    .ok()
                    .and_then(|r| r.clone())
                    .unwrap_or((CloseCode::Shutdown, "closed".to_owned()));
                let close = ControllerMessage { msg: Some(controller_message::Msg::Close(Close { code: code as i32, reason: reason.clone() })) };
                // Best effort: the agent may already be gone.
                let _ = session.tx.try_send(Box::new(close));
                break reason;
            }
            frame = inbound.message() => match frame {
                Ok(Some(message)) => {
                    session.touch(started);
                    if let Err(reason) = handle(&hub, &session, message).await {
                        session.close(CloseCode::ProtocolError, &reason);
                    }
                }
                Ok(None) => break "agent closed the stream".to_owned(),
                Err(status) => {
                    let kind = if status.code() == tonic::Code::OutOfRange || status.message().contains("too large") {
                        "oversized"
                    } else {
                        "stream"
                    };
                    hub.metrics().stream_errors.get_or_create(&LabelKind::of(kind)).inc();
                    if kind == "oversized" {
                        // Tell the agent why before the stream goes.
                        let close = ControllerMessage { msg: Some(controller_message::Msg::Close(Close {
                            code: CloseCode::ProtocolError as i32,
                            reason: format!("frame refused: {}", status.message()),
                        })) };
                        let _ = session.tx.try_send(Box::new(close));
                    }
                    break format!("stream error: {}", status.message());
                }
            },
            _ = ticker.tick() => {
                let now_ms = started.elapsed().as_millis() as u64;
                if now_ms.saturating_sub(session.last_seen_ms.load(Ordering::Relaxed)) > deadline_ms {
                    hub.metrics().heartbeat_timeouts.inc();
                    let close = ControllerMessage { msg: Some(controller_message::Msg::Close(Close {
                        code: CloseCode::HeartbeatTimeout as i32,
                        reason: "heartbeat deadline missed".to_owned(),
                    })) };
                    let _ = session.tx.try_send(Box::new(close));
                    break "heartbeat deadline missed".to_owned();
                }
                seq += 1;
                let ping = ControllerMessage { msg: Some(controller_message::Msg::Ping(Ping {
                    seq,
                    sent_at: Some(SystemTime::now().into()),
                })) };
                // A full queue means the agent is not reading; the deadline above will catch it.
                let _ = session.tx.try_send(Box::new(ping));
            }
        }
    };
    session.cancel.cancel();
    session.fail_all_pending();
    hub.unregister(&session, &reason);
    tracing::debug!(router = %session.id, epoch = session.epoch, %reason, "session ended");
}

/// Handles one frame from the agent. An error ends the session as a protocol error.
async fn handle(hub: &Hub, session: &Session, message: AgentMessage) -> Result<(), String> {
    let Some(msg) = message.msg else {
        // An unknown message type from a newer agent: ignore it.
        return Ok(());
    };
    match msg {
        agent_message::Msg::Hello(_) => return Err("second Hello on the same stream".to_owned()),
        agent_message::Msg::Pong(_) => {}
        agent_message::Msg::Ping(p) => {
            let pong = ControllerMessage { msg: Some(controller_message::Msg::Pong(Pong { seq: p.seq })) };
            let _ = session.tx.try_send(Box::new(pong));
        }
        agent_message::Msg::ApplyProgress(_) => {}
        agent_message::Msg::ApplyResult(result) => match session.take_pending(&result.request_id) {
            Some(Pending::Apply(tx)) => {
                let _ = tx.send(Ok(result));
            }
            Some(other) => session.add_pending(result.request_id.clone(), other),
            None => {
                tracing::debug!(router = %session.id, request = %result.request_id, "result for no pending request")
            }
        },
        agent_message::Msg::RunningConfig(rc) => match session.take_pending(&rc.request_id) {
            Some(Pending::Running(tx)) => {
                let _ = tx.send(Ok(rc));
            }
            Some(other) => session.add_pending(rc.request_id.clone(), other),
            None => {}
        },
        agent_message::Msg::Rejected(r) => match session.take_pending(&r.request_id) {
            Some(Pending::Apply(tx)) => {
                let _ = tx.send(Err(r.reason));
            }
            Some(Pending::Running(tx)) => {
                let _ = tx.send(Err(r.reason));
            }
            None => {}
        },
        agent_message::Msg::Status(report) => {
            if let Some(r) = report.last_applied.clone().filter(|r| !r.id.is_empty()) {
                session.set_applied(r);
            }
            hub.emit(HubEvent::Status { id: session.id.clone(), report: Box::new(report) });
        }
        agent_message::Msg::Drift(report) => {
            hub.metrics()
                .drift_reports
                .get_or_create(&LabelKind::of(if report.drifted { "drifted" } else { "clean" }))
                .inc();
            hub.metrics().set_drifted(&session.id.to_string(), report.drifted);
            hub.emit(HubEvent::Drift { id: session.id.clone(), report: Box::new(report) });
        }
        agent_message::Msg::RenewCertificate(req) => {
            let response = match hub.pki().renew(&session.id, &session.serial, &req.csr_der).await {
                Ok(issued) => {
                    hub.metrics().renewals.get_or_create(&LabelKind::of("ok")).inc();
                    RenewCertificateResponse {
                        request_id: req.request_id,
                        certificate_pem: issued.cert_pem,
                        ca_bundle_pem: issued.ca_pem,
                        not_after: Some(prost_types::Timestamp { seconds: issued.not_after, nanos: 0 }),
                        error: String::new(),
                    }
                }
                Err(e) => {
                    hub.metrics().renewals.get_or_create(&LabelKind::of(e.label())).inc();
                    RenewCertificateResponse { request_id: req.request_id, error: e.to_string(), ..Default::default() }
                }
            };
            let msg = ControllerMessage { msg: Some(controller_message::Msg::Certificate(response)) };
            if session.tx.send(Box::new(msg)).await.is_err() {
                return Err("session closed".to_owned());
            }
        }
    }
    Ok(())
}
