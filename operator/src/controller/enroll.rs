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

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use vrouter_proto::RouterId;

use super::{Context, Error};
use crate::crd::{LABEL_TARGET, VRouterTarget};
use crate::naming::label_value;
use crate::pki::Pki;

/// Annotation on a VRouterTarget asking for an enrollment token; the value is the request id.
pub const ANNOTATION_ENROLL_REQUEST: &str = "vrouter.kojuro.date/enroll-request";
/// Secret key: the single-use enrollment token.
pub const KEY_TOKEN: &str = "token";
/// Secret key: the operator's CA (PEM), for the agent's `ca_file`.
pub const KEY_CA: &str = "ca.crt";
/// Secret key: the request id the Secret answers.
pub const KEY_REQUEST_ID: &str = "request-id";
/// Secret key: the router's identity, `<namespace>/<name>`.
pub const KEY_IDENTITY: &str = "identity";
/// Secret key (optional): the agent endpoint routers dial, when the operator knows it.
pub const KEY_ENDPOINT: &str = "endpoint";
/// Secret key (optional): the TLS server name agents expect, when it differs from the endpoint's.
pub const KEY_SERVER_NAME: &str = "server-name";
/// Longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Name of the enrollment Secret of a target: `vrouter-enroll-<target>` (hashed when too long
/// for an object name).
pub fn secret_name(target: &str) -> String {
    let plain = format!("vrouter-enroll-{target}");
    if plain.len() <= 253 { plain } else { format!("vrouter-enroll-{}", label_value(target)) }
}

/// Whether `id` is an acceptable request id: 1–64 ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A text value of a Secret (`data`, else `stringData`).
pub fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    match secret.data.as_ref().and_then(|d| d.get(key)) {
        Some(v) => std::str::from_utf8(&v.0).ok(),
        None => secret.string_data.as_ref().and_then(|d| d.get(key)).map(String::as_str),
    }
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
    let Some(request) = target.annotations().get(ANNOTATION_ENROLL_REQUEST).cloned() else {
        return Ok(Outcome::NoRequest);
    };
    let name = target.name_any();
    let ns = target.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let failed = |message: String| Error::Enroll { target: format!("{ns}/{name}"), message };
    let targets: Api<VRouterTarget> = Api::namespaced(client.clone(), &ns);
    let rejected = if !valid_request_id(&request) {
        Some(format!(
            "annotation {ANNOTATION_ENROLL_REQUEST}: {request:?} is not a request id (1-{MAX_REQUEST_ID_LEN} letters, digits, '-', '_', '.')"
        ))
    } else {
        RouterId::new(ns.clone(), name.clone()).err().map(|e| format!("not a router identity: {e}"))
    };
    if let Some(why) = rejected {
        remove_annotation(&targets, target, &request).await?;
        return Ok(Outcome::Rejected(why));
    }
    let id = RouterId::new(ns.clone(), name.clone()).map_err(|e| failed(e.to_string()))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let sname = secret_name(&name);
    let outcome = match secrets.get_opt(&sname).await.map_err(Error::kube("read enrollment Secret"))? {
        Some(s) if secret_value(&s, KEY_REQUEST_ID) == Some(request.as_str()) => Outcome::AlreadyIssued,
        Some(s) => {
            // Another request's Secret not yet collected: never overwrite it (the operator may
            // only create Secrets). The plugin deletes it before asking; retried with backoff.
            let other = secret_value(&s, KEY_REQUEST_ID).unwrap_or("?");
            return Err(failed(format!(
                "Secret {sname} already holds request {other:?}, not {request:?}; delete it to enroll again"
            )));
        }
        None => {
            let token = pki.issue_token(&id, None).await.map_err(|e| failed(format!("cannot issue a token: {e}")))?;
            let secret = enrollment_secret(target, &sname, &request, &token, pki.ca_pem(), advertised);
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => Outcome::Issued,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(failed(format!("Secret {sname} was created concurrently; will look again")));
                }
                Err(e) => return Err(Error::kube("create enrollment Secret")(e)),
            }
        }
    };
    remove_annotation(&targets, target, &request).await?;
    Ok(outcome)
}

/// The enrollment Secret answering `request`.
fn enrollment_secret(
    target: &VRouterTarget,
    name: &str,
    request: &str,
    token: &str,
    ca_pem: &str,
    advertised: &Advertised,
) -> Secret {
    let tname = target.name_any();
    let ns = target.namespace().unwrap_or_default();
    let mut data = BTreeMap::from([
        (KEY_TOKEN.to_owned(), token.to_owned()),
        (KEY_CA.to_owned(), ca_pem.to_owned()),
        (KEY_REQUEST_ID.to_owned(), request.to_owned()),
        (KEY_IDENTITY.to_owned(), format!("{ns}/{tname}")),
    ]);
    if let Some(e) = &advertised.endpoint {
        data.insert(KEY_ENDPOINT.to_owned(), e.clone());
    }
    if let Some(s) = &advertised.server_name {
        data.insert(KEY_SERVER_NAME.to_owned(), s.clone());
    }
    let mut secret = Secret {
        type_: Some("Opaque".to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = Some(ns);
    secret.metadata.labels = Some(BTreeMap::from([(LABEL_TARGET.to_owned(), label_value(&tname))]));
    secret.metadata.owner_references = target.controller_owner_ref(&()).map(|o| vec![o]);
    secret
}

/// Removes the request annotation, unless it changed meanwhile (a newer request, which gets its
/// own reconcile). A merge patch conditional on the resourceVersion; on a conflict the target is
/// read again once.
async fn remove_annotation(api: &Api<VRouterTarget>, target: &VRouterTarget, request: &str) -> Result<(), Error> {
    let name = target.name_any();
    let mut version = target.resource_version();
    for attempt in 0..2 {
        let mut meta = json!({"annotations": {ANNOTATION_ENROLL_REQUEST: null}});
        if let Some(v) = &version {
            meta["resourceVersion"] = v.clone().into();
        }
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": meta}))).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt == 0 => {
                let Some(fresh) = api.get_opt(&name).await.map_err(Error::kube("read VRouterTarget"))? else {
                    return Ok(());
                };
                if fresh.annotations().get(ANNOTATION_ENROLL_REQUEST).map(String::as_str) != Some(request) {
                    return Ok(());
                }
                version = fresh.resource_version();
            }
            Err(e) => return Err(Error::kube("remove the enroll-request annotation")(e)),
        }
    }
    Err(Error::Enroll {
        target: format!("{}/{name}", target.namespace().unwrap_or_default()),
        message: "the target keeps changing; will remove the request annotation later".to_owned(),
    })
}

#[cfg(test)]
mod tests;
