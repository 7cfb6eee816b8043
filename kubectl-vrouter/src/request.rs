//! Asking the operator through the API (see `vrouter_operator::controller::request`): annotate
//! the VRouterTarget with a fresh request id, wait for the Secret answering it, withdraw the
//! request if the operator has not removed it. Shared by [`crate::enroll`] and [`crate::diff`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use vrouter_operator::controller::request::{KEY_REQUEST_ID, secret_value};
use vrouter_operator::crd::VRouterTarget;

use crate::Error;

/// How long to wait for the operator's answer, and how often to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// How long to wait for the operator.
    pub timeout: Duration,
    /// How often to look for the Secret.
    pub poll: Duration,
}

impl Default for Wait {
    fn default() -> Self {
        Wait { timeout: Duration::from_secs(60), poll: Duration::from_secs(1) }
    }
}

/// A request and its answer.
#[derive(Clone, Debug)]
pub struct Asked {
    /// The request id sent.
    pub request: String,
    /// The Secret answering it; `None`: no answer in time (the request was withdrawn).
    pub secret: Option<Secret>,
}

/// A fresh random request id (16 hex digits).
pub fn new_request_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks the operator: deletes an older Secret `secret` (the operator never overwrites one),
/// annotates `target` with `annotation = <fresh id>`, and waits for the Secret carrying that id.
/// The request is withdrawn if still there. The Secret is left for the caller to delete.
pub async fn ask(
    client: &Client,
    ns: &str,
    target: &str,
    annotation: &str,
    secret: &str,
    wait: Wait,
) -> Result<Asked, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let targets: Api<VRouterTarget> = Api::namespaced(client.clone(), ns);
    delete_secret(&secrets, secret).await?;
    let request = new_request_id();
    let patch = json!({"metadata": {"annotations": {annotation: request}}});
    targets
        .patch(target, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("annotate VRouterTarget {ns}/{target}")))?;

    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        if let Some(s) = ours(&secrets, secret, &request).await? {
            // Normally the operator removed the request already; if that failed, a retry of its
            // reconcile after the Secret is gone would answer a second time.
            withdraw(&targets, target, annotation, &request).await?;
            return Ok(Asked { request, secret: Some(s) });
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(wait.poll).await;
    }
    withdraw(&targets, target, annotation, &request).await?;
    // The operator may have answered in between.
    let secret = ours(&secrets, secret, &request).await?;
    Ok(Asked { request, secret })
}

/// The Secret `name`, if it answers `request`.
async fn ours(secrets: &Api<Secret>, name: &str, request: &str) -> Result<Option<Secret>, Error> {
    let s = secrets.get_opt(name).await.map_err(Error::kube(format!("read Secret {name}")))?;
    Ok(s.filter(|s| secret_value(s, KEY_REQUEST_ID) == Some(request)))
}

/// Deletes the Secret `name` of `ns` (gone already is fine).
pub async fn delete(client: &Client, ns: &str, name: &str) -> Result<(), Error> {
    delete_secret(&Api::namespaced(client.clone(), ns), name).await
}

async fn delete_secret(secrets: &Api<Secret>, name: &str) -> Result<(), Error> {
    match secrets.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete Secret {name}"))(e)),
    }
}

/// Removes the request annotation if it is still ours (conditional on the version read).
async fn withdraw(targets: &Api<VRouterTarget>, name: &str, annotation: &str, request: &str) -> Result<(), Error> {
    let what = || format!("withdraw the request {annotation} on VRouterTarget {name}");
    let Some(t) = targets.get_opt(name).await.map_err(Error::kube(what()))? else { return Ok(()) };
    if t.annotations().get(annotation).map(String::as_str) != Some(request) {
        return Ok(());
    }
    let patch = json!({"metadata": {"resourceVersion": t.resource_version(), "annotations": {annotation: null}}});
    match targets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        // Changed meanwhile (answered, or another request): leave it.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(what())(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fresh_and_acceptable_to_the_operator() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(vrouter_operator::controller::request::valid_request_id(&a));
    }
}
