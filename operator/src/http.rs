//! The operator's plain HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process
//! runs: always OK), `/readyz` (the endpoints listen: every serving replica is ready; agents
//! reach the leader through the leader label the agent Service selects, see `leader::label_pod`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Whether the operator is ready to serve (its endpoints listen).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the operator ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether it is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    ready: Readiness,
}

async fn serve_metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.get() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}

/// Serves the endpoints on `addr` until `shutdown`; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "HTTP endpoint failed");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, out)
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_health_stays_ok() {
        let ready = Readiness::default();
        let metrics = Metrics::new();
        metrics.leader.set(1);
        let token = tokio_util::sync::CancellationToken::new();
        let t = token.clone();
        let addr = spawn("127.0.0.1:0".parse().unwrap(), metrics, ready.clone(), async move { t.cancelled().await })
            .await
            .unwrap();
        assert_eq!(get(addr, "/readyz").await.0, 503, "a follower is not ready");
        assert_eq!(get(addr, "/healthz").await.0, 200, "a follower is healthy");
        ready.set(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        ready.set(false);
        assert_eq!(get(addr, "/readyz").await.0, 503, "lost leadership: not ready again");
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("vrouter_leader 1"), "{body}");
        token.cancel();
    }
}
