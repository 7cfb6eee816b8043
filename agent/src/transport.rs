//! Connections to the operator: TLS channels (server-authenticated for enrollment, mutual for
//! the session) and the enrollment call.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};
use vrouter_proto::RouterId;
use vrouter_proto::v1::EnrollRequest;
use vrouter_proto::v1::agent_service_client::AgentServiceClient;

use crate::config::OperatorConfig;
use crate::creds::{Creds, Loaded};

/// Largest message the agent accepts from the operator.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A connection or enrollment failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint or TLS settings are invalid.
    #[error("operator endpoint {endpoint}: {message}")]
    Config {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// The connection failed.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The operator refused the enrollment.
    #[error("enrollment refused: {0}")]
    EnrollRefused(String),
    /// Storing the credentials failed.
    #[error(transparent)]
    Creds(#[from] crate::creds::CredsError),
}

fn server_name(config: &OperatorConfig) -> Result<String, TransportError> {
    if let Some(name) = &config.server_name {
        return Ok(name.clone());
    }
    let uri: Uri = config.endpoint.parse().map_err(|e: tonic::codegen::http::uri::InvalidUri| {
        TransportError::Config { endpoint: config.endpoint.clone(), message: e.to_string() }
    })?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| TransportError::Config { endpoint: config.endpoint.clone(), message: "no host".to_owned() })
}

/// A channel to the operator. With `identity`, the client certificate is presented (mTLS).
pub async fn connect(
    config: &OperatorConfig,
    ca_pem: &str,
    identity: Option<&Loaded>,
) -> Result<Channel, TransportError> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(server_name(config)?);
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    let wrap = |message: String| TransportError::Config { endpoint: config.endpoint.clone(), message };
    let endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| wrap(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| wrap(e.to_string()))?
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .tcp_nodelay(true);
    // `connect_timeout` covers only the TCP connect; a path that accepts TCP but swallows the
    // TLS handshake (a blackhole) must not hang the agent, so bound the whole connection.
    let limit = Duration::from_secs(config.connect_timeout_secs.max(1));
    match tokio::time::timeout(limit, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(TransportError::Connect { endpoint: config.endpoint.clone(), message: error_chain(&e) }),
        Err(_) => Err(TransportError::Connect {
            endpoint: config.endpoint.clone(),
            message: format!("no TLS/HTTP2 connection within {limit:?}"),
        }),
    }
}

/// The message of an error and its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A client for a channel, with the agent's message limits.
pub fn client(channel: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Trades the bootstrap token for a certificate and stores it. `ca_pem` is the bundle from the
/// bootstrap configuration; the operator's answer replaces it.
pub async fn enroll(
    config: &OperatorConfig,
    ca_pem: &str,
    id: &RouterId,
    token: &str,
    creds: &Creds,
) -> Result<Loaded, TransportError> {
    let request = creds.enrollment_request(id)?;
    let channel = connect(config, ca_pem, None).await?;
    let mut request_with_deadline = tonic::Request::new(EnrollRequest {
        token: token.trim().to_owned(),
        identity: id.to_string(),
        csr_der: request.csr_der,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    });
    request_with_deadline.set_timeout(Duration::from_secs(30));
    let response = client(channel)
        .enroll(request_with_deadline)
        .await
        .map_err(|s| TransportError::EnrollRefused(s.message().to_owned()))?
        .into_inner();
    creds.store(&request.key_pem, &response.certificate_pem, &response.ca_bundle_pem)?;
    creds.clear_pending();
    creds.mark_token_spent(token);
    creds.load()?.ok_or_else(|| TransportError::EnrollRefused("credentials vanished after storing them".to_owned()))
}
