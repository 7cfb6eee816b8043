//! Requests from `kubectl vrouter` served through the API: the plugin annotates a VRouterTarget
//! with a request id, the target reconcile answers it in a Secret owned by the target (carrying
//! the request id under [`KEY_REQUEST_ID`]) and removes the annotation. Shared by [`super::enroll`]
//! and [`super::running`].
//!
//! Idempotent per request id: when the Secret already carries the request (the annotation's
//! removal failed, or the event came twice), nothing is produced again. The operator only
//! creates these Secrets; an older one is deleted by the plugin before it asks again.

use std::collections::BTreeMap;
use std::future::Future;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use vrouter_proto::RouterId;

use super::Error;
use crate::crd::{LABEL_TARGET, VRouterTarget};
use crate::naming::label_value;

/// Secret key: the request id the Secret answers.
pub const KEY_REQUEST_ID: &str = "request-id";
/// Longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// One kind of request.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The annotation carrying the request id.
    pub annotation: &'static str,
    /// The answering Secret's name prefix (`vrouter-enroll-`).
    pub secret_prefix: &'static str,
    /// How a failure is reported: `(target "<namespace>/<name>", message)`.
    pub error: fn(String, String) -> Error,
}

/// What one look at a target's request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// No request annotation.
    NoRequest,
    /// The answer was produced and its Secret created; the annotation removed.
    Answered,
    /// The Secret already answers this request: nothing produced, the annotation removed.
    AlreadyAnswered,
    /// The request cannot be served (why); the annotation was removed.
    Rejected(String),
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

/// `<prefix><target>`, hashed when too long for an object name.
pub fn secret_name(prefix: &str, target: &str) -> String {
    let plain = format!("{prefix}{target}");
    if plain.len() <= 253 { plain } else { format!("{prefix}{}", label_value(target)) }
}

/// Serves the target's request of `kind`: unless the Secret already answers this request id,
/// `answer(router, request id)` produces the Secret's data ([`KEY_REQUEST_ID`] is added) and the
/// Secret is created; then the annotation is removed. A bad request id is rejected.
pub async fn serve<F, Fut>(client: &Client, target: &VRouterTarget, kind: &Kind, answer: F) -> Result<Served, Error>
where
    F: FnOnce(RouterId, String) -> Fut,
    Fut: Future<Output = Result<BTreeMap<String, String>, Error>>,
{
    let Some(request) = target.annotations().get(kind.annotation).cloned() else {
        return Ok(Served::NoRequest);
    };
    let name = target.name_any();
    let ns = target.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let failed = |message: String| (kind.error)(format!("{ns}/{name}"), message);
    let targets: Api<VRouterTarget> = Api::namespaced(client.clone(), &ns);
    let id = match RouterId::new(ns.clone(), name.clone()) {
        Ok(id) if valid_request_id(&request) => id,
        Ok(_) => {
            remove_annotation(&targets, target, kind, &request).await?;
            return Ok(Served::Rejected(format!(
                "annotation {}: {request:?} is not a request id (1-{MAX_REQUEST_ID_LEN} letters, digits, '-', '_', '.')",
                kind.annotation
            )));
        }
        Err(e) => {
            remove_annotation(&targets, target, kind, &request).await?;
            return Ok(Served::Rejected(format!("not a router identity: {e}")));
        }
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let sname = secret_name(kind.secret_prefix, &name);
    let served = match secrets.get_opt(&sname).await.map_err(Error::kube("read a request's Secret"))? {
        Some(s) if secret_value(&s, KEY_REQUEST_ID) == Some(request.as_str()) => Served::AlreadyAnswered,
        Some(s) => {
            // Another request's Secret not yet collected: never overwrite it (the operator may
            // only create Secrets). The plugin deletes it before asking; retried with backoff.
            let other = secret_value(&s, KEY_REQUEST_ID).unwrap_or("?");
            return Err(failed(format!(
                "Secret {sname} already holds request {other:?}, not {request:?}; delete it to ask again"
            )));
        }
        None => {
            let mut data = answer(id, request.clone()).await?;
            data.insert(KEY_REQUEST_ID.to_owned(), request.clone());
            let secret = owned_secret(target, &sname, data);
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => Served::Answered,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(failed(format!("Secret {sname} was created concurrently; will look again")));
                }
                Err(e) => return Err(Error::kube("create a request's Secret")(e)),
            }
        }
    };
    remove_annotation(&targets, target, kind, &request).await?;
    Ok(served)
}

/// An Opaque Secret `name` in the target's namespace, labelled with and owned by the target.
pub fn owned_secret(target: &VRouterTarget, name: &str, data: BTreeMap<String, String>) -> Secret {
    let mut secret = Secret {
        type_: Some("Opaque".to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = target.namespace();
    secret.metadata.labels = Some(BTreeMap::from([(LABEL_TARGET.to_owned(), label_value(&target.name_any()))]));
    secret.metadata.owner_references = target.controller_owner_ref(&()).map(|o| vec![o]);
    secret
}

/// Removes the request annotation, unless it changed meanwhile (a newer request, which gets its
/// own reconcile). A merge patch conditional on the resourceVersion; on a conflict the target is
/// read again once.
async fn remove_annotation(
    api: &Api<VRouterTarget>,
    target: &VRouterTarget,
    kind: &Kind,
    request: &str,
) -> Result<(), Error> {
    let name = target.name_any();
    let mut version = target.resource_version();
    for attempt in 0..2 {
        let mut meta = json!({"annotations": {kind.annotation: null}});
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
                if fresh.annotations().get(kind.annotation).map(String::as_str) != Some(request) {
                    return Ok(());
                }
                version = fresh.resource_version();
            }
            Err(e) => return Err(Error::kube("remove a request annotation")(e)),
        }
    }
    Err((kind.error)(
        format!("{}/{name}", target.namespace().unwrap_or_default()),
        "the target keeps changing; will remove the request annotation later".to_owned(),
    ))
}
