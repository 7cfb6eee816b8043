//! A lost PKI Secret: when the whole Secret is gone (deleted, or its namespace recreated), the
//! store itself holds no trace of earlier use, and a new CA would silently cut off every enrolled
//! router. The cluster still shows it: VRouterTargets whose agent connected, or that run a
//! revision. This module finds them ([`enrolled_targets`], the pure part [`enrolled`]), names
//! them in the refusal ([`LostCa`]), and records the refusal as an Event on the operator's pod
//! ([`publish`]). The decision itself is [`Pki::open`](super::Pki::open)'s, on plain data
//! ([`PkiConfig::enrolled_elsewhere`](super::PkiConfig::enrolled_elsewhere)).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, ResourceExt};

use crate::crd::VRouterTarget;
use crate::event_note::MAX_NOTE;

/// The Event's reason.
pub const REASON: &str = "PKISecretLost";
/// The Event's action.
pub const ACTION: &str = "CreateCA";
/// Targets listed per page.
const PAGE: u32 = 500;

/// Why listing the evidence failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list VRouterTargets (checked for enrolled routers before a new CA may be created): {0}")]
pub struct EvidenceError(#[source] pub kube::Error);

/// `namespace/name` of the targets that show an enrolled router: an agent session was recorded
/// (`status.agent`: the agent authenticated with a certificate from the CA) or a revision was
/// applied (`status.appliedRevision`). Sorted.
pub fn enrolled<'a>(targets: impl IntoIterator<Item = &'a VRouterTarget>) -> Vec<String> {
    let mut out: Vec<String> = targets
        .into_iter()
        .filter(|t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.agent.is_some() || s.applied_revision.as_deref().is_some_and(|r| !r.is_empty()))
        })
        .map(|t| format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()))
        .collect();
    out.sort();
    out
}

/// The targets, cluster-wide, that show an enrolled router ([`enrolled`]), listed page by page.
/// No VRouterTarget resource (CRDs not installed, 404) means none.
pub async fn enrolled_targets(client: &Client) -> Result<Vec<String>, EvidenceError> {
    let api: Api<VRouterTarget> = Api::all(client.clone());
    let mut found = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::debug!("no VRouterTarget resource: no enrolled routers to look for");
                return Ok(Vec::new());
            }
            Err(e) => return Err(EvidenceError(e)),
        };
        found.extend(enrolled(&page.items));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    found.sort();
    Ok(found)
}

/// No CA in the store while targets show enrolled routers: what was found, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostCa {
    /// The store ("Secret namespace/name").
    pub store: String,
    /// `namespace/name` of the targets that show enrolled routers (sorted, not empty).
    pub enrolled: Vec<String>,
}

impl LostCa {
    /// The message naming up to `examples` targets.
    fn message(&self, examples: usize) -> String {
        let n = self.enrolled.len();
        let shown = self.enrolled.iter().take(examples).cloned().collect::<Vec<_>>().join(", ");
        let more = n.saturating_sub(examples.min(n));
        let examples = match (shown.is_empty(), more) {
            (true, _) => String::new(),
            (false, 0) => format!(" ({shown})"),
            (false, m) => format!(" ({shown} and {m} more)"),
        };
        let targets = if n == 1 {
            "1 VRouterTarget shows an enrolled router".to_owned()
        } else {
            format!("{n} VRouterTargets show enrolled routers")
        };
        let store = &self.store;
        format!(
            "{store} holds no CA, but {targets}{examples}: the PKI state was lost (Secret deleted, or its namespace \
             recreated), and a new CA would cut off every enrolled router. Restore the Secret from a backup \
             (kubectl apply -f <saved Secret>) and restart the operator; or, to start over deliberately, run it once with \
             --allow-new-ca and then re-enroll every router (kubectl vrouter enroll <target>)"
        )
    }

    /// The same text for an Event note: as many examples (two at most) as fit the API server's
    /// limit.
    pub fn note(&self) -> String {
        (0..=2).rev().map(|k| self.message(k)).find(|m| m.len() <= MAX_NOTE).unwrap_or_else(|| {
            // Only a store name longer than any valid Secret's (63 + 253 characters) gets here.
            crate::event_note::fit(self.message(0))
        })
    }

    /// The Warning Event that records the refusal.
    pub fn event(&self) -> Event {
        Event {
            type_: EventType::Warning,
            reason: REASON.to_owned(),
            note: Some(self.note()),
            action: ACTION.to_owned(),
            secondary: None,
        }
    }
}

impl std::fmt::Display for LostCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(2))
    }
}

/// A reference to the operator's pod (the Event's `regarding`). Without `uid` the Event is still
/// recorded, but `kubectl describe pod` (which selects by uid) does not show it.
pub fn pod_reference(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: uid.filter(|u| !u.is_empty()),
        ..ObjectReference::default()
    }
}

/// Records `lost` as a Warning Event regarding `pod`, reported by instance `pod`'s name.
pub async fn publish(client: Client, lost: &LostCa, pod: &ObjectReference) -> Result<(), kube::Error> {
    crate::controller::recorder(client, pod.name.clone()).publish(&lost.event(), pod).await
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::mock_api::{expect, failure, mock};

    fn target(namespace: &str, name: &str, status: Value) -> Value {
        json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTarget",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {}, "status": status})
    }

    fn parse(v: Value) -> VRouterTarget {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn targets_with_an_agent_or_an_applied_revision_are_evidence() {
        let targets = [
            parse(target("edge", "connected", json!({"agent": {"connected": true}}))),
            // Disconnected now: it did connect, so it holds a certificate from the CA.
            parse(target("edge", "gone", json!({"agent": {"connected": false}}))),
            parse(target("core", "applied", json!({"appliedRevision": "0123456789abcdef"}))),
            parse(target("edge", "new", json!({"desiredRevision": "0123456789abcdef", "configs": ["a"]}))),
            parse(target("edge", "empty", json!({"appliedRevision": ""}))),
            parse(json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTarget",
                         "metadata": {"name": "bare", "namespace": "edge"}, "spec": {}})),
        ];
        assert_eq!(enrolled(&targets), ["core/applied", "edge/connected", "edge/gone"]);
        assert!(enrolled(&targets[3..]).is_empty());
    }

    const LIST: &str = "/apis/vrouter.kojuro.date/v1/vroutertargets?&limit=500";

    fn list(items: Vec<Value>, next: &str) -> Value {
        json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTargetList",
               "metadata": {"continue": next, "resourceVersion": "7"}, "items": items})
    }

    #[tokio::test]
    async fn every_page_is_listed() {
        let (client, api) = mock(vec![
            expect("GET", LIST, list(vec![target("b", "r1", json!({"agent": {"connected": true}}))], "page2")),
            expect(
                "GET",
                format!("{LIST}&continue=page2"),
                list(vec![target("a", "r2", json!({"appliedRevision": "1"})), target("a", "r3", json!({}))], ""),
            ),
        ]);
        assert_eq!(enrolled_targets(&client).await.unwrap(), ["a/r2", "b/r1"]);
        api.await.unwrap();
    }

    #[tokio::test]
    async fn no_resource_is_no_evidence_but_a_refusal_is_an_error() {
        let (client, api) = mock(vec![failure("GET", LIST, 404, "NotFound")]);
        assert!(enrolled_targets(&client).await.unwrap().is_empty());
        api.await.unwrap();
        let (client, api) = mock(vec![failure("GET", LIST, 403, "Forbidden")]);
        let err = enrolled_targets(&client).await.unwrap_err();
        assert!(err.to_string().contains("cannot list VRouterTargets"), "{err}");
        api.await.unwrap();
    }

    #[test]
    fn the_message_counts_names_examples_and_says_what_to_do() {
        let lost = LostCa {
            store: "Secret sys/vrouter-pki".to_owned(),
            enrolled: vec!["edge/a".to_owned(), "edge/b".to_owned(), "edge/c".to_owned()],
        };
        let text = lost.to_string();
        for part in [
            "Secret sys/vrouter-pki holds no CA",
            "3 VRouterTargets show enrolled routers (edge/a, edge/b and 1 more)",
            "kubectl apply -f",
            "--allow-new-ca",
            "kubectl vrouter enroll <target>",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
        let one = LostCa { enrolled: vec!["edge/a".to_owned()], ..lost.clone() };
        assert!(one.to_string().contains("1 VRouterTarget shows an enrolled router (edge/a):"), "{one}");
        let event = lost.event();
        assert_eq!((event.type_, event.reason.as_str()), (EventType::Warning, REASON));
        assert_eq!(event.note.as_deref(), Some(text.as_str()));
    }

    #[test]
    fn the_note_fits_an_event_with_long_names() {
        let long = |i: usize| format!("{}/{}{i}", "n".repeat(63), "r".repeat(250));
        let lost = LostCa {
            store: format!("Secret {}/{}", "n".repeat(63), "s".repeat(253)),
            enrolled: (0..3).map(long).collect(),
        };
        assert!(lost.to_string().len() > MAX_NOTE, "the case must need shortening");
        let note = lost.note();
        assert!(note.len() <= MAX_NOTE, "{} bytes", note.len());
        assert!(note.contains("3 VRouterTargets") && note.contains("--allow-new-ca"), "{note}");
    }

    #[tokio::test]
    async fn the_event_regards_the_operator_pod() {
        let (client, api) = mock(vec![expect("POST", "/apis/events.k8s.io/v1/namespaces/sys/events?", Value::Null)]);
        let lost = LostCa { store: "Secret sys/vrouter-pki".to_owned(), enrolled: vec!["edge/a".to_owned()] };
        let pod = pod_reference("sys", "op-0", Some("uid-1".to_owned()));
        publish(client, &lost, &pod).await.unwrap();
        let bodies = api.await.unwrap();
        let ev = &bodies[0];
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["reason"], REASON);
        assert_eq!(ev["action"], ACTION);
        assert_eq!(ev["note"], lost.note());
        assert_eq!(
            ev["regarding"],
            json!({"apiVersion": "v1", "kind": "Pod", "namespace": "sys", "name": "op-0", "uid": "uid-1"})
        );
        assert_eq!(ev["reportingController"], crate::crd::FIELD_MANAGER);
        assert_eq!(ev["reportingInstance"], "op-0");
    }
}
