//! Enrollment requests: how `kubectl vrouter enroll` gets a single-use token without holding
//! the operator's PKI.
//!
//! The plugin annotates a VRouterTarget with [`ANNOTATION_ENROLL_REQUEST`]` = <request id>`. The
//! target reconcile sees it, issues a token for `<namespace>/<name>` with the hub's PKI, writes
//! it with the CA (and the agent endpoint, when the operator knows it) into the Secret
//! [`secret_name`] (same namespace, owned by the target, keys [`KEY_TOKEN`], [`KEY_CA`],
//! [`KEY_REQUEST_ID`], [`KEY_IDENTITY`], [`KEY_ENDPOINT`], [`KEY_SERVER_NAME`]) and removes the
//! annotation. The plugin reads the Secret carrying its request id and deletes it.
//!
//! Idempotent per request id: when the Secret already carries the request (the annotation's
//! removal failed, or the event came twice), no second token is issued. The operator only
//! creates these Secrets; an older one is deleted by the plugin before it asks again.

use std::collections::BTreeMap;

use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};

use super::request::{Kind, Served, serve};
use super::{Context, Error};
use crate::crd::VRouterTarget;
use crate::pki::Pki;

pub use super::request::{KEY_REQUEST_ID, MAX_REQUEST_ID_LEN, secret_value, valid_request_id};

/// Annotation on a VRouterTarget asking for an enrollment token; the value is the request id.
pub const ANNOTATION_ENROLL_REQUEST: &str = "vrouter.kojuro.date/enroll-request";
/// Secret key: the single-use enrollment token.
pub const KEY_TOKEN: &str = "token";
/// Secret key: the operator's CA (PEM), for the agent's `ca_file`.
pub const KEY_CA: &str = "ca.crt";
/// Secret key: the router's identity, `<namespace>/<name>`.
pub const KEY_IDENTITY: &str = "identity";
/// Secret key (optional): the agent endpoint routers dial, when the operator knows it.
pub const KEY_ENDPOINT: &str = "endpoint";
/// Secret key (optional): the TLS server name agents expect, when it differs from the endpoint's.
pub const KEY_SERVER_NAME: &str = "server-name";

const KIND: Kind = Kind {
    annotation: ANNOTATION_ENROLL_REQUEST,
    secret_prefix: "vrouter-enroll-",
    error: |target, message| Error::Enroll { target, message },
};

/// Name of the enrollment Secret of a target: `vrouter-enroll-<target>` (hashed when too long
/// for an object name).
pub fn secret_name(target: &str) -> String {
    super::request::secret_name(KIND.secret_prefix, target)
}

/// What the operator tells enrolling agents besides the token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertised {
    /// The agent endpoint routers dial (`https://host:port`), if known.
    pub endpoint: Option<String>,
    /// The TLS server name agents expect, if it differs from the endpoint's host.
    pub server_name: Option<String>,
}

/// What one look at a target's enrollment request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No request annotation.
    NoRequest,
    /// A token was issued and its Secret created.
    Issued,
    /// The Secret already answers this request: nothing issued, the annotation removed.
    AlreadyIssued,
    /// The request cannot be served (why); the annotation was removed.
    Rejected(String),
}

/// Serves the target's enrollment request, if any, with the PKI and endpoint of the context's
/// delivery (the target controller's). Publishes an Event for issued and rejected requests.
pub async fn reconcile(target: &VRouterTarget, ctx: &Context) -> Result<Outcome, Error> {
    if !target.annotations().contains_key(ANNOTATION_ENROLL_REQUEST) {
        return Ok(Outcome::NoRequest);
    }
    let Some(delivery) = ctx.delivery.as_ref() else { return Ok(Outcome::NoRequest) };
    let engine = &delivery.engine;
    let advertised = Advertised {
        endpoint: engine.qga().map(|q| q.bootstrap.endpoint.clone()).filter(|e| !e.is_empty()),
        server_name: engine.qga().and_then(|q| q.bootstrap.server_name.clone()),
    };
    let outcome = handle(&ctx.client, target, engine.hub().pki(), &advertised).await?;
    let oref = target.object_ref(&());
    match &outcome {
        Outcome::Issued => {
            let note = format!("enrollment token issued into Secret {}", secret_name(&target.name_any()));
            ctx.event(&oref, EventType::Normal, "EnrollmentIssued", "Enroll", note).await;
        }
        Outcome::Rejected(why) => {
            ctx.event(&oref, EventType::Warning, "EnrollmentRejected", "Enroll", why.clone()).await;
        }
        Outcome::NoRequest | Outcome::AlreadyIssued => {}
    }
    Ok(outcome)
}

/// Serves a target's enrollment request: issues a token with `pki` and creates the Secret,
/// unless the Secret already answers this request id; then removes the annotation.
pub async fn handle(
    client: &Client,
    target: &VRouterTarget,
    pki: &Pki,
    advertised: &Advertised,
) -> Result<Outcome, Error> {
    let served = serve(client, target, &KIND, |id, _request| async move {
        let token = pki
            .issue_token(&id, None)
            .await
            .map_err(|e| Error::Enroll { target: id.to_string(), message: format!("cannot issue a token: {e}") })?;
        let mut data = BTreeMap::from([
            (KEY_TOKEN.to_owned(), token),
            (KEY_CA.to_owned(), pki.ca_pem().to_owned()),
            (KEY_IDENTITY.to_owned(), id.to_string()),
        ]);
        if let Some(e) = &advertised.endpoint {
            data.insert(KEY_ENDPOINT.to_owned(), e.clone());
        }
        if let Some(s) = &advertised.server_name {
            data.insert(KEY_SERVER_NAME.to_owned(), s.clone());
        }
        Ok(data)
    })
    .await?;
    Ok(match served {
        Served::NoRequest => Outcome::NoRequest,
        Served::Answered => Outcome::Issued,
        Served::AlreadyAnswered => Outcome::AlreadyIssued,
        Served::Rejected(why) => Outcome::Rejected(why),
    })
}

#[cfg(test)]
pub(crate) mod tests;
