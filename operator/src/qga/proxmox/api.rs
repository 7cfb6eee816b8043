//! [`ProxmoxApi`]: a small client of the Proxmox VE REST API (`/api2/json`) with an API token,
//! endpoint failover, timeouts and a bounded answer size.
//!
//! Failover: endpoints are tried in order, starting with the one that last answered. The next
//! endpoint is tried after a connection failure (including TLS), and, for requests that are safe
//! to repeat, after a timeout, a broken connection or a 5xx answer other than 500/501 (502–504,
//! and pveproxy's 595/596 when it cannot reach the node). A request that may already have had an
//! effect (an exec) moves on only when it cannot have: the connection failed, or the answer is
//! 503 or 595. A 500 is the API handler's own error and would be the same everywhere; 4xx answers
//! never fail over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::tls::{self, Trust};
use crate::crd::ProxmoxClusterSpec;
use crate::qga::QgaError;

/// The largest answer read (a 16 MiB file-read of binary data is up to six times larger as JSON).
pub const MAX_ANSWER: usize = 112 * 1024 * 1024;

/// A Proxmox API token: `api-token-id` (`user@realm!name`) and `api-token-secret` from the
/// ProxmoxCluster's Secret. Its `Debug` does not show the secret.
#[derive(Clone)]
pub struct ApiToken {
    id: String,
    secret: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

impl ApiToken {
    /// A token from the Secret's two values; empty values or characters that cannot go in a
    /// header are refused.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Result<Self, QgaError> {
        let (id, secret) = (id.into().trim().to_owned(), secret.into().trim().to_owned());
        let invalid = |key: &str, why: &str| QgaError::Transport {
            target: "proxmox credentials".to_owned(),
            message: format!("Secret key {key} {why}"),
        };
        for (key, value) in [("api-token-id", &id), ("api-token-secret", &secret)] {
            if value.is_empty() {
                return Err(invalid(key, "is empty"));
            }
            if value.chars().any(|c| c.is_control() || c.is_whitespace() || !c.is_ascii()) {
                return Err(invalid(key, "contains whitespace, control or non-ASCII characters"));
            }
        }
        if !id.contains('!') {
            return Err(invalid("api-token-id", "is not of the form user@realm!tokenname"));
        }
        Ok(Self { id, secret })
    }

    /// The token id (`user@realm!name`).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn header(&self) -> Result<HeaderValue, QgaError> {
        let mut value = HeaderValue::from_str(&format!("PVEAPIToken={}={}", self.id, self.secret)).map_err(|_| {
            QgaError::Transport {
                target: "proxmox credentials".to_owned(),
                message: "token is not a valid header".to_owned(),
            }
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Timeouts of a [`ProxmoxApi`].
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The longest a connection (TCP and TLS) to one endpoint may take.
    pub connect_timeout: Duration,
    /// The longest one call may take when the caller gives no deadline of its own.
    pub request_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(5), request_timeout: Duration::from_secs(30) }
    }
}

/// One VM as `/cluster/resources?type=vm` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterVm {
    /// The VM id.
    pub vmid: u32,
    /// The node it is on.
    pub node: String,
    /// `running`, `stopped`, ...
    #[serde(default)]
    pub status: String,
    /// Seconds since it started (0 when stopped).
    #[serde(default)]
    pub uptime: u64,
    /// `qemu` or `lxc`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No endpoint gave an answer that counts (each attempt listed).
    #[error("no Proxmox API endpoint answered: {}", attempts.join("; "))]
    Unreachable {
        /// What happened at each endpoint tried.
        attempts: Vec<String>,
        /// Whether every endpoint answered 595/596: pveproxy could not reach the node asked
        /// (it may be down, and the VM elsewhere).
        node_unreachable: bool,
    },
    /// No answer in time (for a request that may have had an effect, it was not repeated).
    #[error("{endpoint}: no answer within the deadline")]
    Timeout {
        /// The endpoint.
        endpoint: String,
    },
    /// An HTTP error answer that failover does not help with.
    #[error("{endpoint}: HTTP {status}: {message}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The status code.
        status: u16,
        /// PVE's message.
        message: String,
    },
    /// A success answer that is not what the API documents, or a request that could not be made.
    #[error("{endpoint}: {message}")]
    Invalid {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
}

/// What happened at one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The connection (TCP or TLS) could not be made: nothing was sent.
    ConnectFailed(String),
    /// The connection broke after the request was (maybe) sent.
    Broken(String),
    /// No answer before the deadline.
    TimedOut,
    /// An HTTP answer.
    Answered {
        /// The status code.
        status: u16,
        /// PVE's message (the body's `message`, else the reason phrase).
        message: String,
        /// The body's `data` on success.
        data: Value,
    },
}

/// Whether to try the next endpoint after `attempt` (see the module doc).
pub fn fail_over(attempt: &Attempt, idempotent: bool) -> bool {
    match attempt {
        Attempt::ConnectFailed(_) => true,
        Attempt::Broken(_) | Attempt::TimedOut => idempotent,
        Attempt::Answered { status, .. } => match status {
            503 | 595 => true,
            500 | 501 => false,
            500..=599 => idempotent,
            _ => false,
        },
    }
}

/// A Proxmox VE API client for one cluster.
pub struct ProxmoxApi {
    endpoints: Vec<String>,
    token: ApiToken,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    settings: ApiSettings,
    /// The endpoint that answered last: tried first.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for ProxmoxApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxApi")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An endpoint as `scheme://host[:port]`, from the forms a ProxmoxCluster may list
/// (`https://pve1:8006`, with or without a trailing `/` or `/api2/json`).
pub fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/api2/json").unwrap_or(trimmed);
    let uri: http::Uri = trimmed.parse().map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(format!("{endpoint:?} must start with https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{endpoint:?} must be scheme://host[:port] (the API path is added)"));
    }
    Ok(trimmed.to_owned())
}

impl ProxmoxApi {
    /// A client for the cluster `spec` describes, with `token`, default settings.
    pub fn new(spec: &ProxmoxClusterSpec, token: ApiToken) -> Result<Self, QgaError> {
        Self::with_settings(spec, token, ApiSettings::default())
    }

    /// The same with these settings.
    pub fn with_settings(spec: &ProxmoxClusterSpec, token: ApiToken, settings: ApiSettings) -> Result<Self, QgaError> {
        let invalid = |message: String| QgaError::Transport { target: "proxmox cluster".to_owned(), message };
        if spec.endpoints.is_empty() {
            return Err(invalid("the ProxmoxCluster lists no endpoints".to_owned()));
        }
        let endpoints = spec
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, endpoint)| normalize_endpoint(endpoint).map_err(|e| invalid(format!("endpoints[{i}]: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        for endpoint in endpoints.iter().filter(|e| e.starts_with("http://")) {
            tracing::warn!(%endpoint, "Proxmox endpoint without TLS: the API token travels in clear text");
        }
        let trust = Trust::from_spec(spec.ca_bundle.as_deref(), spec.insecure_skip_tls_verify);
        if trust == Trust::Insecure {
            tracing::warn!("ProxmoxCluster has insecureSkipTLSVerify: endpoint certificates are not verified");
        }
        let tls = tls::client_config(&trust).map_err(invalid)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        Ok(Self { endpoints, token, client, settings, preferred: AtomicUsize::new(0) })
    }

    /// The endpoints, normalised.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// `GET /cluster/resources?type=vm`: the VMs the token may see (`VM.Audit`).
    pub async fn cluster_vms(&self, deadline: Instant) -> Result<Vec<ClusterVm>, ApiError> {
        let data = self.call(Method::GET, "/cluster/resources?type=vm", None, true, deadline).await?;
        let Value::Array(items) = data else {
            return Err(self.invalid(format!("cluster/resources answered {}", short(&data))));
        };
        // Entries that do not parse (other types, odd fields) are skipped, not fatal.
        Ok(items.into_iter().filter_map(|item| serde_json::from_value::<ClusterVm>(item).ok()).collect())
    }

    /// The QEMU VM `vmid` in `/cluster/resources`, if the token can see it.
    pub async fn cluster_vm(&self, vmid: u32, deadline: Instant) -> Result<Option<ClusterVm>, ApiError> {
        let vms = self.cluster_vms(deadline).await?;
        Ok(vms.into_iter().find(|vm| vm.vmid == vmid && (vm.kind.is_empty() || vm.kind == "qemu")))
    }

    fn invalid(&self, message: String) -> ApiError {
        let endpoint = self.endpoints.get(self.preferred.load(Ordering::Relaxed)).cloned().unwrap_or_default();
        ApiError::Invalid { endpoint, message }
    }

    /// Calls `method path` (relative to `/api2/json`, with its query) with a JSON `body`, failing
    /// over between endpoints, and returns the answer's `data`. `idempotent` says whether the
    /// request may be repeated on another endpoint after it may have reached one.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        let body = match body {
            Some(body) => {
                Some(Bytes::from(serde_json::to_vec(body).map_err(|e| self.invalid(format!("request body: {e}")))?))
            }
            None => None,
        };
        let count = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % count.max(1);
        let mut attempts = Vec::new();
        let mut node_unreachable = true;
        let mut timed_out = None;
        for (tried, i) in (0..count).map(|k| (k, (first + k) % count)) {
            let endpoint = &self.endpoints[i];
            if Instant::now() >= deadline {
                // Out of time: a timeout, if that is what used the time up.
                if let Some(endpoint) = timed_out {
                    return Err(ApiError::Timeout { endpoint });
                }
                attempts.push(format!("{endpoint}: not tried, deadline reached"));
                node_unreachable = false;
                break;
            }
            // A request that may fail over leaves the endpoints after this one their share of the
            // time, so a silent endpoint does not use it all up.
            let until = if idempotent {
                let now = Instant::now();
                let left = u32::try_from(count - tried).unwrap_or(1).max(1);
                now + (deadline - now) / left
            } else {
                deadline
            };
            let attempt = self.attempt(endpoint, &method, path, body.clone(), until).await;
            match attempt {
                Attempt::Answered { status, data, .. } if (200..300).contains(&status) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(data);
                }
                ref other if fail_over(other, idempotent) => {
                    tracing::debug!(%endpoint, %path, attempt = ?other, "Proxmox endpoint failed, trying the next");
                    node_unreachable &= matches!(other, Attempt::Answered { status: 595 | 596, .. });
                    if *other == Attempt::TimedOut {
                        timed_out = Some(endpoint.clone());
                    }
                    attempts.push(describe(endpoint, other));
                }
                Attempt::Answered { status, message, .. } => {
                    // An answer: the endpoint works.
                    self.preferred.store(i, Ordering::Relaxed);
                    return Err(ApiError::Status { endpoint: endpoint.clone(), status, message });
                }
                Attempt::TimedOut => return Err(ApiError::Timeout { endpoint: endpoint.clone() }),
                Attempt::Broken(message) | Attempt::ConnectFailed(message) => {
                    return Err(ApiError::Invalid {
                        endpoint: endpoint.clone(),
                        message: format!("{message} (the request may have been carried out; not repeated)"),
                    });
                }
            }
        }
        match timed_out {
            Some(endpoint) if Instant::now() >= deadline => Err(ApiError::Timeout { endpoint }),
            _ => Err(ApiError::Unreachable { attempts, node_unreachable }),
        }
    }

    async fn attempt(
        &self,
        endpoint: &str,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        deadline: Instant,
    ) -> Attempt {
        let uri = format!("{endpoint}/api2/json{path}");
        let header = match self.token.header() {
            Ok(header) => header,
            Err(e) => return Attempt::ConnectFailed(e.to_string()),
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(AUTHORIZATION, header)
            .header(ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = match request.body(Full::new(body.unwrap_or_default())) {
            Ok(request) => request,
            Err(e) => return Attempt::ConnectFailed(format!("bad request URI {uri}: {e}")),
        };
        let exchange = async {
            let response = match self.client.request(request).await {
                Ok(response) => response,
                Err(e) if e.is_connect() => return Attempt::ConnectFailed(error_chain(&e)),
                Err(e) => return Attempt::Broken(error_chain(&e)),
            };
            let status = response.status();
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
            let bytes = match Limited::new(response.into_body(), MAX_ANSWER).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return Attempt::Broken(format!("reading the answer: {e}")),
            };
            answered(status, reason, &bytes)
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::TimedOut,
        }
    }
}

/// Reads an HTTP answer: `{"data": …}` on success; on errors PVE's `message` (and `errors`, per
/// parameter), else the reason phrase, which PVE sets to the message too.
fn answered(status: StatusCode, reason: Option<String>, body: &[u8]) -> Attempt {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status.is_success() {
        return match parsed {
            Some(Value::Object(mut fields)) if fields.contains_key("data") => Attempt::Answered {
                status: status.as_u16(),
                message: String::new(),
                data: fields.remove("data").unwrap_or(Value::Null),
            },
            _ => Attempt::Answered {
                status: 502,
                message: format!(
                    "answer {} is not a Proxmox API answer: {}",
                    status.as_u16(),
                    crate::qga::protocol::preview(body)
                ),
                data: Value::Null,
            },
        };
    }
    let mut message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .or(reason.filter(|r| !r.is_empty()))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    if let Some(Value::Object(errors)) = parsed.as_ref().and_then(|v| v.get("errors")) {
        let details: Vec<String> = errors
            .iter()
            .map(|(param, why)| {
                format!("{param}: {}", why.as_str().map_or_else(|| why.to_string(), |s| s.trim().to_owned()))
            })
            .collect();
        if !details.is_empty() {
            message = format!("{message} ({})", details.join(", "));
        }
    }
    Attempt::Answered { status: status.as_u16(), message, data: Value::Null }
}

fn describe(endpoint: &str, attempt: &Attempt) -> String {
    match attempt {
        Attempt::ConnectFailed(e) => format!("{endpoint}: cannot connect: {e}"),
        Attempt::Broken(e) => format!("{endpoint}: {e}"),
        Attempt::TimedOut => format!("{endpoint}: no answer in time"),
        Attempt::Answered { status, message, .. } => format!("{endpoint}: HTTP {status}: {message}"),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn short(value: &Value) -> String {
    crate::qga::protocol::preview(value.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_secret_never_shows() {
        let token = ApiToken::new("root@pam!vrouter", "6f1c-very-secret").unwrap();
        let text = format!("{token:?}");
        assert!(text.contains("root@pam!vrouter") && !text.contains("very-secret"), "{text}");
        assert!(token.header().unwrap().is_sensitive());
        let spec = ProxmoxClusterSpec { endpoints: vec!["https://pve1:8006".into()], ..Default::default() };
        let api = ProxmoxApi::new(&spec, token).unwrap();
        assert!(!format!("{api:?}").contains("very-secret"));
    }

    #[test]
    fn bad_tokens_name_the_secret_key() {
        for (id, secret, key) in [
            ("", "s", "api-token-id"),
            ("root@pam!t", " ", "api-token-secret"),
            ("root@pam", "s", "api-token-id"),
            ("root@pam!t", "a b", "api-token-secret"),
            ("root@pam!t\n", "s\u{7f}", "api-token-secret"),
        ] {
            let err = ApiToken::new(id, secret).unwrap_err().to_string();
            assert!(err.contains(key), "{id:?} {secret:?}: {err}");
        }
    }

    #[test]
    fn endpoints_are_normalised_or_refused() {
        assert_eq!(normalize_endpoint("https://pve1:8006").unwrap(), "https://pve1:8006");
        assert_eq!(normalize_endpoint(" https://pve1:8006/ ").unwrap(), "https://pve1:8006");
        assert_eq!(normalize_endpoint("https://10.0.0.1:8006/api2/json/").unwrap(), "https://10.0.0.1:8006");
        assert_eq!(normalize_endpoint("http://127.0.0.1:1").unwrap(), "http://127.0.0.1:1");
        for bad in ["pve1:8006", "ftp://pve1", "https://", "https://pve1:8006/other", "https://pve1/?a=b", "not a url"]
        {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
        let spec =
            ProxmoxClusterSpec { endpoints: vec!["https://ok:8006".into(), "nope".into()], ..Default::default() };
        let token = ApiToken::new("a@pam!b", "c").unwrap();
        let err = ProxmoxApi::new(&spec, token.clone()).unwrap_err().to_string();
        assert!(err.contains("endpoints[1]") && err.contains("nope"), "{err}");
        let err = ProxmoxApi::new(&ProxmoxClusterSpec::default(), token).unwrap_err().to_string();
        assert!(err.contains("no endpoints"), "{err}");
    }

    #[test]
    fn failover_rules() {
        let answered = |status| Attempt::Answered { status, message: String::new(), data: Value::Null };
        for idempotent in [true, false] {
            assert!(fail_over(&Attempt::ConnectFailed("refused".into()), idempotent));
            assert!(fail_over(&answered(595), idempotent));
            assert!(fail_over(&answered(503), idempotent));
            for status in [200, 400, 401, 403, 404, 500, 501] {
                assert!(!fail_over(&answered(status), idempotent), "{status}");
            }
        }
        for attempt in [Attempt::TimedOut, Attempt::Broken("reset".into()), answered(502), answered(504), answered(596)]
        {
            assert!(fail_over(&attempt, true), "{attempt:?}");
            assert!(!fail_over(&attempt, false), "{attempt:?}");
        }
    }

    #[test]
    fn answers_are_read_as_pve_writes_them() {
        let ok = answered(StatusCode::OK, None, br#"{"data":{"result":{}}}"#);
        assert_eq!(ok, Attempt::Answered { status: 200, message: String::new(), data: json!({"result": {}}) });
        let null = answered(StatusCode::OK, None, br#"{"data":null}"#);
        assert!(matches!(null, Attempt::Answered { status: 200, data: Value::Null, .. }));
        // A 200 that is not the API (a portal, a proxy page) counts as a bad gateway.
        let html = answered(StatusCode::OK, None, b"<html>login</html>");
        assert!(
            matches!(html, Attempt::Answered { status: 502, ref message, .. } if message.contains("not a Proxmox API answer"))
        );

        let err = answered(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("Configuration file does not exist".into()),
            br#"{"data":null,"message":"Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist\n"}"#,
        );
        assert!(
            matches!(err, Attempt::Answered { status: 500, ref message, .. } if message == "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist")
        );
        // Older PVE: the message only in the reason phrase.
        let err = answered(StatusCode::UNAUTHORIZED, Some("authentication failure".into()), b"");
        assert!(
            matches!(err, Attempt::Answered { status: 401, ref message, .. } if message == "authentication failure")
        );
        let err = answered(
            StatusCode::BAD_REQUEST,
            Some("Parameter verification failed.".into()),
            br#"{"data":null,"errors":{"content":"value may only be 61440 characters long\n"}}"#,
        );
        assert!(
            matches!(err, Attempt::Answered { status: 400, ref message, .. }
            if message == "Parameter verification failed. (content: value may only be 61440 characters long)"),
            "{err:?}"
        );
        let err = answered(StatusCode::FORBIDDEN, None, b"");
        assert!(matches!(err, Attempt::Answered { status: 403, ref message, .. } if message == "Forbidden"));
    }
}
