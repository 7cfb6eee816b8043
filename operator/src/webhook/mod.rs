//! The validating admission webhook, served by the operator itself over HTTPS with a
//! certificate from its own CA (no cert-manager); it keeps the ValidatingWebhookConfiguration's
//! `caBundle` on that CA.
//!
//! - [`review`] (pure): the rules — [`crate::crd::validate`], references exist in the same
//!   namespace, templates compile and every binding they feed still renders for each selected
//!   target with its merged params, commands and configs parse, objects still referenced cannot
//!   be deleted, provider references exist.
//! - [`lookup`]: lists what a review needs from the API.
//! - [`ca_bundle`]: patches the caBundle.
//!
//! `POST /validate` answers AdmissionReview v1. When the objects cannot be read the answer is
//! HTTP 500, so the configuration's `failurePolicy` decides (Fail: closed; Ignore: open).

pub mod ca_bundle;
pub mod lookup;
pub mod review;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

pub use review::{Needs, Operation, Request, Snapshot, Verdict};

use crate::metrics::{Metrics, ReviewLabels};
use crate::pki::Pki;

/// Lifetime of the webhook's certificate; it is re-issued when a third is left.
pub const CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why the webhook cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Issuing or loading its certificate failed.
    #[error("webhook certificate: {0}")]
    Certificate(String),
    /// Its address cannot be bound.
    #[error("webhook: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Webhook settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// HTTPS address.
    pub listen: SocketAddr,
    /// The Service in front of it (certificate names `<service>.<namespace>.svc`, ...).
    pub service: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The ValidatingWebhookConfiguration whose caBundle is kept current (`None`: not managed).
    pub config_name: Option<String>,
    /// Longest a review may take (rendering); past it the request is denied.
    pub review_timeout: Duration,
    /// Other names or addresses the API server reaches the webhook by (a configuration with
    /// `clientConfig.url`, e.g. an operator outside the cluster); they join the certificate.
    pub extra_hosts: Vec<String>,
}

/// The names a Service is reached by from the API server.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Where reviews read the objects of a namespace.
#[async_trait]
pub trait Lookups: Send + Sync {
    /// The kinds `needs` names in `namespace`.
    async fn gather(&self, namespace: &str, needs: &Needs) -> Result<Snapshot, String>;
}

#[async_trait]
impl Lookups for Client {
    async fn gather(&self, namespace: &str, needs: &Needs) -> Result<Snapshot, String> {
        lookup::gather(self, namespace, needs).await.map_err(|e| e.to_string())
    }
}

/// Fixed objects (tests, standalone checks).
#[async_trait]
impl Lookups for Snapshot {
    async fn gather(&self, _namespace: &str, _needs: &Needs) -> Result<Snapshot, String> {
        Ok(self.clone())
    }
}

/// The webhook's certificate, re-issued from the CA before it expires.
struct Certs {
    pki: Arc<Pki>,
    names: Vec<String>,
    current: Mutex<(Arc<CertifiedKey>, Instant)>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").field("names", &self.names).finish_non_exhaustive()
    }
}

fn issue(pki: &Pki, names: &[String]) -> Result<(Arc<CertifiedKey>, Instant), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let id = pki.issue_server_cert(names, CERT_LIFETIME).map_err(|e| e.to_string())?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("key: {e}"))?;
    let renew_at = Instant::now() + CERT_LIFETIME * 2 / 3;
    Ok((Arc::new(CertifiedKey::new(certs, signer)), renew_at))
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().ok()?;
        if Instant::now() >= current.1 {
            match issue(&self.pki, &self.names) {
                Ok(next) => *current = next,
                Err(e) => tracing::warn!(error = %e, "cannot re-issue the webhook certificate"),
            }
        }
        Some(current.0.clone())
    }
}

/// The TLS settings of the webhook: a certificate from the operator's CA for `names`.
pub fn tls_config(pki: Arc<Pki>, names: Vec<String>) -> Result<rustls::ServerConfig, WebhookError> {
    let first = issue(&pki, &names).map_err(WebhookError::Certificate)?;
    let certs = Certs { pki, names, current: Mutex::new(first) };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

struct AppState {
    lookups: Arc<dyn Lookups>,
    metrics: Metrics,
    timeout: Duration,
}

fn convert(req: &AdmissionRequest<DynamicObject>) -> Request {
    use kube::core::admission::Operation as Op;
    let operation = match req.operation {
        Op::Create => Operation::Create,
        Op::Update => Operation::Update,
        Op::Delete => Operation::Delete,
        Op::Connect => Operation::Connect,
    };
    Request {
        kind: req.kind.kind.clone(),
        operation,
        namespace: req.namespace.clone().unwrap_or_default(),
        name: req.name.clone(),
        object: req.object.as_ref().and_then(|o| serde_json::to_value(o).ok()),
        old_object: req.old_object.as_ref().and_then(|o| serde_json::to_value(o).ok()),
    }
}

async fn validate(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not an AdmissionReview: {e}")).into_response(),
    };
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("no request in the AdmissionReview: {e}")).into_response(),
    };
    let request = convert(&req);
    let labels = |result: &str| ReviewLabels {
        kind: request.kind.clone(),
        operation: request.operation.as_str().to_owned(),
        result: result.to_owned(),
    };
    let needs = Needs::for_request(&request);
    let snapshot = match s.lookups.gather(&request.namespace, &needs).await {
        Ok(snap) => snap,
        Err(e) => {
            s.metrics.admission_reviews.get_or_create(&labels("error")).inc();
            tracing::warn!(kind = %request.kind, name = %request.name, error = %e, "cannot read what the review needs");
            // The failurePolicy decides.
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the namespace's objects: {e}"))
                .into_response();
        }
    };
    let r = request.clone();
    let verdict =
        match tokio::time::timeout(s.timeout, tokio::task::spawn_blocking(move || review::review(&r, &snapshot))).await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                s.metrics.admission_reviews.get_or_create(&labels("error")).inc();
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("review failed: {e}")).into_response();
            }
            Err(_) => Verdict {
                allowed: false,
                problems: vec![format!("the review (rendering) took longer than {:?}", s.timeout)],
                warnings: Vec::new(),
            },
        };
    s.metrics.admission_reviews.get_or_create(&labels(if verdict.allowed { "allowed" } else { "denied" })).inc();
    let mut response = AdmissionResponse::from(&req);
    if !verdict.allowed {
        tracing::info!(kind = %request.kind, namespace = %request.namespace, name = %request.name, operation = request.operation.as_str(), reason = %verdict.message(), "admission denied");
        response = response.deny(verdict.message());
    }
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    match serde_json::to_vec(&response.into_review()) {
        Ok(body) => ([("content-type", "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the response: {e}")).into_response(),
    }
}

/// The webhook's routes (`POST /validate`).
pub fn router(lookups: Arc<dyn Lookups>, metrics: Metrics, timeout: Duration) -> Router {
    Router::new().route("/validate", post(validate)).with_state(Arc::new(AppState { lookups, metrics, timeout }))
}

/// Serves `app` over TLS on `listen` until `shutdown`; returns the bound address.
pub async fn serve_tls(
    listen: SocketAddr,
    tls: rustls::ServerConfig,
    app: Router,
    shutdown: CancellationToken,
) -> Result<SocketAddr, WebhookError> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| WebhookError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| WebhookError::Listen { addr: listen, source })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            // Each connection on its own task, bounded in time: a slow client holds only itself.
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "webhook TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "webhook TLS handshake timed out"),
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                match tokio::time::timeout(Duration::from_secs(120), conn).await {
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "webhook connection failed"),
                    Err(_) => tracing::debug!(%peer, "webhook connection closed after 120 s"),
                    Ok(Ok(())) => {}
                }
            });
        }
    });
    Ok(addr)
}

/// Starts the webhook: issues its certificate, serves `/validate` with reviews reading the
/// API, and keeps the caBundle of `config.config_name` current.
pub async fn spawn(
    client: Client,
    pki: Arc<Pki>,
    metrics: Metrics,
    config: WebhookConfig,
    shutdown: CancellationToken,
) -> Result<SocketAddr, WebhookError> {
    let mut names = service_dns_names(&config.service, &config.namespace);
    names.extend(config.extra_hosts.iter().cloned());
    let tls = tls_config(pki.clone(), names)?;
    let app = router(Arc::new(client.clone()), metrics, config.review_timeout);
    let addr = serve_tls(config.listen, tls, app, shutdown.clone()).await?;
    if let Some(name) = config.config_name {
        let ca = pki.ca_pem().to_owned();
        tokio::spawn(ca_bundle::keep_ca_bundle(client, name, ca, Duration::from_secs(60), shutdown));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests;
