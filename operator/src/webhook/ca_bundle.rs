//! Keeping the ValidatingWebhookConfiguration's `caBundle` on the operator's CA (no
//! cert-manager). Checked periodically, since a chart upgrade may reset it.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Writes attempted when they conflict with other writers.
const MAX_ATTEMPTS: usize = 5;

/// Why the caBundle could not be set.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// The configuration does not exist.
    #[error("ValidatingWebhookConfiguration {0:?} not found")]
    NotFound(String),
    /// An API call failed.
    #[error("ValidatingWebhookConfiguration {name:?}: {source}")]
    Api {
        /// The configuration.
        name: String,
        /// The error.
        source: Box<kube::Error>,
    },
    /// Every attempt conflicted.
    #[error("ValidatingWebhookConfiguration {0:?}: {MAX_ATTEMPTS} conflicting writes in a row")]
    Conflicts(String),
}

/// The strategic merge patch that sets `caBundle` of the webhooks named `names` (the list is
/// merged by webhook name), conditional on `resource_version`. A patch, not a replace: RBAC grants
/// the operator `patch` on its configuration, never `update`, and a patch leaves every other
/// field as the chart wrote it.
pub fn ca_bundle_patch(names: &[&str], ca: &ByteString, resource_version: Option<&str>) -> serde_json::Value {
    let webhooks: Vec<serde_json::Value> =
        names.iter().map(|n| serde_json::json!({"name": n, "clientConfig": {"caBundle": ca}})).collect();
    let mut patch = serde_json::json!({ "webhooks": webhooks });
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    patch
}

/// Sets `caBundle` of every webhook in configuration `name` to `ca_pem`; how many webhooks
/// changed (0: all were current, nothing written). Writes are conditional on the version read.
pub async fn patch_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> Result<usize, CaBundleError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let err = |e: kube::Error| CaBundleError::Api { name: name.to_owned(), source: Box::new(e) };
    let want = ByteString(ca_pem.as_bytes().to_vec());
    for _ in 0..MAX_ATTEMPTS {
        let config = api.get_opt(name).await.map_err(err)?.ok_or_else(|| CaBundleError::NotFound(name.to_owned()))?;
        let stale: Vec<&str> = config
            .webhooks
            .iter()
            .flatten()
            .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&want))
            .map(|w| w.name.as_str())
            .collect();
        if stale.is_empty() {
            return Ok(0);
        }
        let changed = stale.len();
        let patch = ca_bundle_patch(&stale, &want, config.metadata.resource_version.as_deref());
        match api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => return Ok(changed),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(CaBundleError::Conflicts(name.to_owned()))
}

/// Keeps the caBundle current until `shutdown`: at once, then every `period`.
pub async fn keep_ca_bundle(
    client: Client,
    name: String,
    ca_pem: String,
    period: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match patch_ca_bundle(&client, &name, &ca_pem).await {
            Ok(0) => tracing::debug!(config = %name, "webhook caBundle is current"),
            Ok(n) => tracing::info!(config = %name, webhooks = n, "set the webhook caBundle"),
            Err(e) => tracing::warn!(error = %e, "cannot set the webhook caBundle"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
