//! One session on the operator stream: Hello, Welcome, then requests, heartbeats, reports.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;
use vrouter_proto::RouterId;
use vrouter_proto::caps;
use vrouter_proto::v1::{
    AgentMessage, ApplyRequest, CloseCode, ControllerMessage, DriftSource, Hello, Ping, Pong, Rejected,
    RenewCertificateRequest, RunningConfig, agent_message, controller_message,
};
use vyos_config::{RenderOptions, digest, render_config};

use crate::agent::{Link, Observer, SessionCmd};
use crate::apply::Applier;
use crate::backend::{Backend, BackendEvent};
use crate::creds::{Creds, Loaded, unix_now};
use crate::transport;

/// Everything a session needs from the agent.
pub(crate) struct Context<'a> {
    pub(crate) id: &'a RouterId,
    pub(crate) creds: &'a Creds,
    pub(crate) loaded: Loaded,
    pub(crate) backend: &'a Arc<dyn Backend>,
    pub(crate) applier: &'a Arc<Applier>,
    pub(crate) apply_tx: &'a mpsc::Sender<ApplyRequest>,
    pub(crate) outbox_tx: &'a mpsc::UnboundedSender<AgentMessage>,
    pub(crate) outbox_rx: &'a mut mpsc::UnboundedReceiver<AgentMessage>,
    pub(crate) link: &'a watch::Sender<Link>,
    pub(crate) epoch: u64,
    pub(crate) observer: &'a Arc<Observer>,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) channel: Channel,
}

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The operator closed it.
    Closed {
        /// Its code.
        code: CloseCode,
        /// Its reason.
        reason: String,
    },
    /// The operator refused the stream (authentication, limits).
    Refused(Status),
    /// The stream broke.
    Error(String),
    /// Nothing heard from the operator within the heartbeat deadline.
    Heartbeat,
    /// The router's network path went down (simulated connectivity cut).
    NetworkDown,
    /// The agent is shutting down.
    Shutdown,
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Closed { code, reason } => {
                write!(f, "closed by the operator ({}): {reason}", code.as_str_name())
            }
            SessionEnd::Refused(s) => write!(f, "refused by the operator: {}", s.message()),
            SessionEnd::Error(e) => write!(f, "stream error: {e}"),
            SessionEnd::Heartbeat => f.write_str("no heartbeat from the operator within the deadline"),
            SessionEnd::NetworkDown => f.write_str("the network path to the operator went down"),
            SessionEnd::Shutdown => f.write_str("agent shutting down"),
        }
    }
}

fn msg(m: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(m) }
}

fn boxed(m: agent_message::Msg) -> Box<AgentMessage> {
    Box::new(msg(m))
}

fn duration_of(d: &Option<prost_types::Duration>, default: Duration) -> Duration {
    d.as_ref()
        .filter(|d| d.seconds >= 0 && d.nanos >= 0 && (d.seconds > 0 || d.nanos > 0))
        .map(|d| Duration::new(d.seconds as u64, d.nanos as u32))
        .unwrap_or(default)
}

/// Runs one session to its end.
pub(crate) async fn run(mut cx: Context<'_>) -> SessionEnd {
    // Boxed frames keep the queue's slots small (thousands of simulated agents per process).
    let (out_tx, out_rx) = mpsc::channel::<Box<AgentMessage>>(64);
    let os = cx.backend.os_info().await;
    let mut capabilities: Vec<String> = [
        caps::APPLY_V1,
        caps::DRY_RUN,
        caps::DRIFT_V1,
        caps::STATUS_V1,
        caps::RENEW_V1,
        caps::RUNNING_CONFIG_V1,
        caps::PING_V1,
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    capabilities.extend(cx.backend.capabilities());
    let hello = Hello {
        identity: cx.id.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        capabilities,
        os: Some(os),
        boot_id: cx.backend.boot_id().await,
        last_applied: cx.applier.last_applied(),
        running_digest: cx.applier.running_digest().await,
        backend: cx.backend.kind().to_owned(),
        agent_started_at: Some(SystemTime::now().into()),
    };
    // The first frame is queued before the call: the operator reads Hello before answering.
    let _ = out_tx.try_send(boxed(agent_message::Msg::Hello(hello)));
    let mut client = transport::client(cx.channel.clone());
    // The operator answers after reading Hello; a silent path must not hang the agent.
    let response = tokio::select! {
        _ = cx.shutdown.cancelled() => return SessionEnd::Shutdown,
        r = tokio::time::timeout(Duration::from_secs(30), client.connect(ReceiverStream::new(out_rx).map(|m| *m))) => match r {
            Ok(r) => r,
            Err(_) => return SessionEnd::Error("no answer to Hello within 30s".to_owned()),
        },
    };
    let mut inbound = match response {
        Ok(r) => r.into_inner(),
        Err(status) => return SessionEnd::Refused(status),
    };
    let welcome = match tokio::time::timeout(Duration::from_secs(15), inbound.message()).await {
        Ok(Ok(Some(ControllerMessage { msg: Some(controller_message::Msg::Welcome(w)) }))) => w,
        Ok(Ok(Some(ControllerMessage { msg: Some(controller_message::Msg::Close(c)) }))) => {
            return SessionEnd::Closed {
                code: CloseCode::try_from(c.code).unwrap_or(CloseCode::Unspecified),
                reason: c.reason,
            };
        }
        Ok(Ok(_)) => return SessionEnd::Error("the operator did not answer Hello with Welcome".to_owned()),
        Ok(Err(s)) => return SessionEnd::Refused(s),
        Err(_) => return SessionEnd::Error("no Welcome within 15s".to_owned()),
    };
    let heartbeat = duration_of(&welcome.heartbeat_interval, Duration::from_secs(15));
    let deadline = heartbeat * welcome.heartbeat_misses_allowed.max(1) + heartbeat / 2;
    let status_every = duration_of(&welcome.status_interval, Duration::from_secs(60));
    let drift_every = duration_of(&welcome.drift_interval, Duration::from_secs(300));
    tracing::info!(router = %cx.id, epoch = welcome.session_epoch, "session established");

    let (cmd_tx, mut cmd_rx) = mpsc::channel::<SessionCmd>(8);
    cx.link.send_replace(Link { epoch: cx.epoch, session: Some(cmd_tx) });
    cx.observer.connected.store(true, Ordering::SeqCst);
    cx.observer.sessions.fetch_add(1, Ordering::SeqCst);

    let mut last_heard = Instant::now();
    let mut watchdog = tokio::time::interval(heartbeat.min(Duration::from_secs(5)).max(Duration::from_millis(50)));
    let mut status_timer = tokio::time::interval(status_every);
    let mut drift_timer = tokio::time::interval_at(Instant::now() + drift_every, drift_every);
    let mut events = cx.backend.events();
    let mut network = cx.backend.network();
    let mut proofs: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
    let mut ping_seq = 0u64;
    let mut renewal: Option<(String, String)> = None; // (request id, new key PEM)
    let mut renew_at = Instant::now() + cx.loaded.renewal_due_in(unix_now());
    // Session start: report drift once.
    send_drift(&cx, &out_tx, DriftSource::SessionStart).await;

    loop {
        tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => return SessionEnd::Shutdown,
            changed = network.changed() => {
                if changed.is_err() || !*network.borrow() {
                    return SessionEnd::NetworkDown;
                }
            }
            frame = inbound.message() => {
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return SessionEnd::Error("the operator ended the stream".to_owned()),
                    Err(s) => return SessionEnd::Error(s.message().to_owned()),
                };
                last_heard = Instant::now();
                let Some(m) = frame.msg else { continue };
                match m {
                    controller_message::Msg::Ping(p) => {
                        let _ = out_tx.try_send(boxed(agent_message::Msg::Pong(Pong { seq: p.seq })));
                    }
                    controller_message::Msg::Pong(p) => {
                        let (done, rest): (Vec<_>, Vec<_>) = proofs.drain(..).partition(|(s, _)| *s <= p.seq);
                        proofs = rest;
                        for (_, tx) in done {
                            let _ = tx.send(());
                        }
                    }
                    controller_message::Msg::Apply(request) => {
                        let request_id = request.request_id.clone();
                        if cx.apply_tx.try_send(request).is_err() {
                            let _ = out_tx.try_send(boxed(agent_message::Msg::Rejected(Rejected {
                                request_id,
                                reason: "too many applies queued on the agent".to_owned(),
                            })));
                        }
                    }
                    controller_message::Msg::GetRunningConfig(req) => {
                        let (backend, applier) = (cx.backend.clone(), cx.applier.clone());
                        let outbox = cx.outbox_tx.clone();
                        tokio::spawn(async move {
                            let rc = match backend.running().await {
                                Ok(t) => RunningConfig {
                                    request_id: req.request_id,
                                    config: render_config(&t, RenderOptions::default()),
                                    digest: digest(&t).to_string(),
                                    error: String::new(),
                                    // What the next Merge removes paths of (the plugin's diff).
                                    applied_config: applier.record().desired_config,
                                },
                                Err(e) => RunningConfig { request_id: req.request_id, error: e.to_string(), ..Default::default() },
                            };
                            let _ = outbox.send(msg(agent_message::Msg::RunningConfig(rc)));
                        });
                    }
                    controller_message::Msg::Certificate(c) => {
                        match renewal.take() {
                            Some((request_id, key_pem)) if request_id == c.request_id && c.error.is_empty() => {
                                match cx.creds.store(&key_pem, &c.certificate_pem, &c.ca_bundle_pem).and_then(|_| cx.creds.load()) {
                                    Ok(Some(l)) => {
                                        tracing::info!(router = %cx.id, not_after = l.not_after, "certificate renewed");
                                        renew_at = Instant::now() + l.renewal_due_in(unix_now());
                                        cx.loaded = l;
                                    }
                                    Ok(None) | Err(_) => {
                                        tracing::error!("could not store the renewed certificate");
                                        renew_at = Instant::now() + Duration::from_secs(60);
                                    }
                                }
                            }
                            _ => {
                                tracing::warn!(error = %c.error, "certificate renewal refused");
                                renew_at = Instant::now() + Duration::from_secs(60);
                            }
                        }
                    }
                    controller_message::Msg::Close(c) => {
                        return SessionEnd::Closed { code: CloseCode::try_from(c.code).unwrap_or(CloseCode::Unspecified), reason: c.reason };
                    }
                    controller_message::Msg::Welcome(_) => {}
                }
            }
            Some(m) = cx.outbox_rx.recv() => {
                if tokio::time::timeout(Duration::from_secs(10), out_tx.send(Box::new(m))).await.map(|r| r.is_err()).unwrap_or(true) {
                    return SessionEnd::Error("the operator stopped reading".to_owned());
                }
            }
            Some(cmd) = cmd_rx.recv() => match cmd {
                SessionCmd::Prove(tx) => {
                    ping_seq += 1;
                    proofs.push((ping_seq, tx));
                    let _ = out_tx.try_send(boxed(agent_message::Msg::Ping(Ping { seq: ping_seq, sent_at: Some(SystemTime::now().into()) })));
                }
            },
            _ = watchdog.tick() => {
                if last_heard.elapsed() > deadline {
                    return SessionEnd::Heartbeat;
                }
            }
            _ = status_timer.tick() => {
                if let Ok(mut report) = cx.backend.status().await {
                    report.last_applied = cx.applier.last_applied();
                    let _ = out_tx.try_send(boxed(agent_message::Msg::Status(report)));
                }
            }
            _ = drift_timer.tick() => send_drift(&cx, &out_tx, DriftSource::Periodic).await,
            event = events.recv() => match event {
                Ok(BackendEvent::Committed { .. }) => send_drift(&cx, &out_tx, DriftSource::CommitHook).await,
                Ok(BackendEvent::Reverted { .. }) => send_drift(&cx, &out_tx, DriftSource::Reboot).await,
                Err(_) => {}
            },
            _ = tokio::time::sleep_until(renew_at) => {
                // (Re)start a renewal; an unanswered one is replaced after a minute.
                match Creds::request(cx.id) {
                    Ok(req) => {
                        let request_id = format!("renew-{}", unix_now());
                        renewal = Some((request_id.clone(), req.key_pem));
                        let _ = out_tx.try_send(boxed(agent_message::Msg::RenewCertificate(RenewCertificateRequest { request_id, csr_der: req.csr_der })));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot make a key for renewal"),
                }
                renew_at = Instant::now() + Duration::from_secs(60);
            }
        }
    }
}

async fn send_drift(cx: &Context<'_>, out: &mpsc::Sender<Box<AgentMessage>>, source: DriftSource) {
    match cx.applier.drift(source).await {
        Ok(Some(report)) => {
            let _ = out.try_send(boxed(agent_message::Msg::Drift(report)));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "drift check failed"),
    }
}
