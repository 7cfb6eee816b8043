//! Running-configuration requests: how `kubectl vrouter diff` reads a router's live running
//! configuration without reaching the router itself.
//!
//! The plugin annotates a VRouterTarget with [`ANNOTATION_RUNNING_REQUEST`]` = <request id>`. The
//! target reconcile sees it and, when the router's agent is connected, fetches the running
//! configuration over the agent stream (at most [`FETCH_TIMEOUT`]) into the Secret
//! [`secret_name`] (same namespace, owned by the target, keys [`KEY_CONFIG`], [`KEY_DIGEST`],
//! [`KEY_REQUEST_ID`], [`KEY_FETCHED_AT`] and, when the agent reported them, [`KEY_REVISION`] and
//! [`KEY_APPLIED_CONFIG`]).
//! When it cannot (agent not connected, no answer, the agent's own error) the Secret carries
//! [`KEY_ERROR`] instead, so the plugin does not wait in vain. Then the annotation goes; the
//! plugin reads the Secret carrying its request id and deletes it.
//!
//! A Secret, not a ConfigMap: a running configuration carries secret values (keys, password
//! hashes). Idempotent per request id like [`super::enroll`] (the shared [`super::request`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};
use vrouter_proto::RouterId;
use vrouter_proto::v1::{Revision, RunningConfig};

use super::request::{Kind, Served, serve};
use super::{Context, Error};
use crate::crd::VRouterTarget;
use crate::hub::DeliveryError;

pub use super::request::KEY_REQUEST_ID;

/// Annotation on a VRouterTarget asking for its running configuration; the value is the request id.
pub const ANNOTATION_RUNNING_REQUEST: &str = "vrouter.kojuro.date/running-request";
/// Secret key: the running configuration, as the agent sent it (hierarchical format).
pub const KEY_CONFIG: &str = "config";
/// Secret key: the agent's canonical digest of that configuration.
pub const KEY_DIGEST: &str = "digest";
/// Secret key: when the operator received it (RFC 3339).
pub const KEY_FETCHED_AT: &str = "fetched-at";
/// Secret key (optional): the applied revision the agent reported.
pub const KEY_REVISION: &str = "revision";
/// Secret key: the configuration the agent's record holds as last applied (what Merge removes
/// paths of; set when the agent has a record).
pub const KEY_APPLIED_CONFIG: &str = "applied-config";
/// Secret key: why there is no configuration (set instead of [`KEY_CONFIG`]).
pub const KEY_ERROR: &str = "error";
/// Longest wait for the agent's answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// The error when the router has no session.
pub const NOT_CONNECTED: &str = "the router's agent is not connected";

const KIND: Kind = Kind {
    annotation: ANNOTATION_RUNNING_REQUEST,
    secret_prefix: "vrouter-running-",
    error: |target, message| Error::Running { target, message },
};

/// Name of the running-configuration Secret of a target: `vrouter-running-<target>` (hashed
/// when too long for an object name).
pub fn secret_name(target: &str) -> String {
    super::request::secret_name(KIND.secret_prefix, target)
}

/// What the hub answered: the running configuration and the revision the router reported as
/// applied, or why not.
pub type Fetched = Result<(RunningConfig, Option<Revision>), DeliveryError>;

/// What one look at a target's running-configuration request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No request annotation.
    NoRequest,
    /// The running configuration was written into the Secret.
    Fetched,
    /// The Secret says why there is none (the router's agent is not connected, …).
    Unavailable(String),
    /// The Secret already answers this request: nothing fetched, the annotation removed.
    AlreadyAnswered,
    /// The request cannot be served (why); the annotation was removed.
    Rejected(String),
}

/// Serves the target's running-configuration request, if any, through the hub of the
/// context's delivery. Publishes an Event for rejected requests.
pub async fn reconcile(target: &VRouterTarget, ctx: &Context) -> Result<Outcome, Error> {
    if !target.annotations().contains_key(ANNOTATION_RUNNING_REQUEST) {
        return Ok(Outcome::NoRequest);
    }
    let Some(delivery) = ctx.delivery.as_ref() else { return Ok(Outcome::NoRequest) };
    let hub = delivery.engine.hub();
    let outcome = handle(&ctx.client, target, |id| async move {
        let running = hub.running_config(&id, FETCH_TIMEOUT).await?;
        Ok((running, hub.session(&id).and_then(|s| s.applied)))
    })
    .await?;
    if let Outcome::Rejected(why) = &outcome {
        ctx.event(&target.object_ref(&()), EventType::Warning, "RunningConfigRejected", "RunningConfig", why.clone())
            .await;
    }
    Ok(outcome)
}

/// Serves a target's running-configuration request with `fetch` (called at most once, and not
/// when the Secret already answers this request id); then removes the annotation.
pub async fn handle<F, Fut>(client: &Client, target: &VRouterTarget, fetch: F) -> Result<Outcome, Error>
where
    F: FnOnce(RouterId) -> Fut,
    Fut: Future<Output = Fetched>,
{
    let mut unavailable = None;
    let served = serve(client, target, &KIND, |id, _request| {
        let unavailable = &mut unavailable;
        async move {
            let fetched_at = crate::time::to_k8s(SystemTime::now()).0.to_string();
            let mut data = BTreeMap::from([(KEY_FETCHED_AT.to_owned(), fetched_at)]);
            match fetch(id).await {
                Ok((running, _)) if !running.error.is_empty() => {
                    let why = format!("the agent could not read the running configuration: {}", running.error);
                    data.insert(KEY_ERROR.to_owned(), why.clone());
                    *unavailable = Some(why);
                }
                Ok((running, revision)) => {
                    data.insert(KEY_CONFIG.to_owned(), running.config);
                    data.insert(KEY_DIGEST.to_owned(), running.digest);
                    if !running.applied_config.is_empty() {
                        data.insert(KEY_APPLIED_CONFIG.to_owned(), running.applied_config);
                    }
                    if let Some(r) = revision.filter(|r| !r.id.is_empty()) {
                        data.insert(KEY_REVISION.to_owned(), r.id);
                    }
                }
                Err(e) => {
                    let why = match e {
                        DeliveryError::NotConnected(_) => NOT_CONNECTED.to_owned(),
                        other => other.to_string(),
                    };
                    data.insert(KEY_ERROR.to_owned(), why.clone());
                    *unavailable = Some(why);
                }
            }
            Ok(data)
        }
    })
    .await?;
    Ok(match served {
        Served::NoRequest => Outcome::NoRequest,
        Served::Answered => match unavailable {
            Some(why) => Outcome::Unavailable(why),
            None => Outcome::Fetched,
        },
        Served::AlreadyAnswered => Outcome::AlreadyAnswered,
        Served::Rejected(why) => Outcome::Rejected(why),
    })
}

#[cfg(test)]
mod tests;
