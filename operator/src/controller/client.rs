//! The operator's Kubernetes client: kube-rs's own stack with a short retry of throttled
//! requests.
//!
//! kube-client retries `429`, `503` and `504` by itself, honouring `Retry-After`, up to 15
//! times with a delay doubling to 1,000 s. Under sustained throttling by API Priority and
//! Fairness a status write then waits minutes inside the client, invisible to the user and
//! holding the status writer's slots. Found on the real API server (the throttling test): no
//! `Throttled` Event ever appeared. Here a short burst of throttling (a few seconds) is still
//! absorbed by the client, and anything longer reaches the controllers as a `429`: a
//! `Throttled` Warning Event on the object and the controllers' own per-object backoff.

use std::time::Duration;

use kube::client::ClientBuilder;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tower::ServiceBuilder;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;

/// Retries of a throttled request inside the client before it fails with its `429`.
pub const THROTTLE_RETRIES: u32 = 3;
/// The first retry's delay (doubling; a server's `Retry-After` wins when longer).
const THROTTLE_FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay between two retries.
const THROTTLE_MAX_DELAY: Duration = Duration::from_secs(4);
/// Requests waiting for the client's service (the buffer that makes it cloneable for retries).
const BUFFER: usize = 1024;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No kubeconfig or in-cluster configuration.
    #[error("no Kubernetes configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The configuration could not make a client (TLS, auth).
    #[error("cannot build the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
    /// The retry policy's parameters (constants here) were refused.
    #[error("retry policy: {0}")]
    Retry(#[from] kube::client::retry::InvalidBackoff),
}

/// A client from the inferred configuration (in-cluster or kubeconfig) with
/// [`THROTTLE_RETRIES`] retries of a throttled request instead of kube-rs's fifteen.
pub async fn client() -> Result<Client, ClientError> {
    let mut config = Config::infer().await?;
    config.default_retry = false;
    let policy = RetryPolicy::new(THROTTLE_FIRST_DELAY, THROTTLE_MAX_DELAY, THROTTLE_RETRIES, true)?;
    let builder = ClientBuilder::try_from(config)?;
    let layers = ServiceBuilder::new().layer(RetryLayer::new(policy)).layer(BufferLayer::new(BUFFER));
    Ok(builder.with_layer(&layers).build())
}
