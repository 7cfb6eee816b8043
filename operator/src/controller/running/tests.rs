//! Running-configuration requests against kube's mock API service: every call asserted, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube::runtime::reflector;
use serde_json::{Value, json};

use super::*;
use crate::controller::enroll::tests::{decode, mock, ok, status};
use crate::controller::{Delivery, Stores};
use crate::crd::VRouterTargetSpec;

const TARGET: &str = "/apis/vrouter.kojuro.date/v1/namespaces/net/vroutertargets/r1";
const SECRET: &str = "/api/v1/namespaces/net/secrets/vrouter-running-r1";
const SECRETS: &str = "/api/v1/namespaces/net/secrets?";
const RUNNING: &str = "system {\n    host-name \"r1\"\n    login {\n        user admin {\n            authentication {\n                encrypted-password \"$6$hash\"\n            }\n        }\n    }\n}\n";

fn target(request: Option<&str>) -> VRouterTarget {
    let mut t = VRouterTarget::new("r1", VRouterTargetSpec::default());
    t.metadata.namespace = Some("net".into());
    t.metadata.uid = Some("uid-r1".into());
    t.metadata.resource_version = Some("41".into());
    if let Some(r) = request {
        t.metadata.annotations = Some(BTreeMap::from([(ANNOTATION_RUNNING_REQUEST.to_owned(), r.to_owned())]));
    }
    t
}

fn answered() -> Value {
    serde_json::to_value(target(None)).unwrap()
}

/// A fetch that counts its calls and answers `RUNNING`, reporting revision `rev-7`.
fn agent(calls: &AtomicUsize) -> impl FnOnce(RouterId) -> std::future::Ready<Fetched> + '_ {
    move |id| {
        assert_eq!(id.to_string(), "net/r1");
        calls.fetch_add(1, Ordering::SeqCst);
        let running = RunningConfig { config: RUNNING.into(), digest: "d-123".into(), ..RunningConfig::default() };
        std::future::ready(Ok((running, Some(Revision { id: "rev-7".into(), digest: "x".into() }))))
    }
}

#[tokio::test]
async fn a_request_writes_the_running_config_into_an_owned_secret_then_drops_the_annotation() {
    let calls = AtomicUsize::new(0);
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), answered()),
    ]);
    let outcome = handle(&client, &target(Some("req-1")), agent(&calls)).await.unwrap();
    assert_eq!(outcome, Outcome::Fetched);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let bodies = api.await.unwrap();
    let s = &bodies[1];
    assert_eq!(s["metadata"]["name"], "vrouter-running-r1");
    assert_eq!(s["metadata"]["namespace"], "net");
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "uid-r1");
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "VRouterTarget");
    assert_eq!(s["metadata"]["labels"]["vrouter.kojuro.date/target"], "r1");
    assert_eq!(decode(s, KEY_CONFIG), RUNNING);
    assert_eq!(decode(s, KEY_DIGEST), "d-123");
    assert_eq!(decode(s, KEY_REQUEST_ID), "req-1");
    assert_eq!(decode(s, KEY_REVISION), "rev-7");
    let at = decode(s, KEY_FETCHED_AT);
    assert!(serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>(json!(at)).is_ok(), "{at}");
    let keys: Vec<&String> = s["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(
        bodies[2],
        json!({"metadata": {"annotations": {ANNOTATION_RUNNING_REQUEST: null}, "resourceVersion": "41"}})
    );
}

#[tokio::test]
async fn an_agent_that_is_not_connected_gets_an_error_secret() {
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), answered()),
    ]);
    let outcome = handle(&client, &target(Some("req-1")), |id: RouterId| {
        std::future::ready(Err(DeliveryError::NotConnected(id.to_string())))
    })
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Unavailable(NOT_CONNECTED.to_owned()));
    let bodies = api.await.unwrap();
    let s = &bodies[1];
    assert_eq!(decode(s, KEY_ERROR), "the router's agent is not connected");
    assert_eq!(decode(s, KEY_REQUEST_ID), "req-1");
    assert!(s["data"].get(KEY_CONFIG).is_none());
    assert!(s["data"].get(KEY_DIGEST).is_none());
}

#[tokio::test]
async fn an_agent_error_or_a_timeout_is_written_as_the_error() {
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), answered()),
    ]);
    let outcome = handle(&client, &target(Some("req-1")), |_| {
        let rc = RunningConfig { error: "cli-shell-api: permission denied".into(), ..RunningConfig::default() };
        std::future::ready(Ok((rc, None)))
    })
    .await
    .unwrap();
    let why = "the agent could not read the running configuration: cli-shell-api: permission denied";
    assert_eq!(outcome, Outcome::Unavailable(why.to_owned()));
    assert_eq!(decode(&api.await.unwrap()[1], KEY_ERROR), why);

    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), answered()),
    ]);
    let after = Duration::from_secs(20);
    let outcome = handle(&client, &target(Some("req-2")), |id: RouterId| {
        std::future::ready(Err(DeliveryError::Timeout { id: id.to_string(), after }))
    })
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Unavailable("router net/r1 did not answer within 20s".to_owned()));
    api.await.unwrap();
}

#[tokio::test]
async fn the_same_request_again_fetches_once() {
    let calls = AtomicUsize::new(0);
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), answered()),
    ]);
    let t = target(Some("req-1"));
    assert_eq!(handle(&client, &t, agent(&calls)).await.unwrap(), Outcome::Fetched);
    let created = api.await.unwrap().swap_remove(1);

    // The annotation's removal was not seen yet: the same request comes again.
    let (client, api) = mock(vec![ok("GET", SECRET, created), ok("PATCH", format!("{TARGET}?"), answered())]);
    assert_eq!(handle(&client, &t, agent(&calls)).await.unwrap(), Outcome::AlreadyAnswered);
    api.await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn another_requests_secret_is_never_overwritten() {
    let calls = AtomicUsize::new(0);
    let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vrouter-running-r1", "namespace": "net"},
        "data": {KEY_REQUEST_ID: "b2xk"}});
    let (client, api) = mock(vec![ok("GET", SECRET, other)]);
    let e = handle(&client, &target(Some("req-2")), agent(&calls)).await.unwrap_err();
    api.await.unwrap();
    assert!(matches!(&e, Error::Running { target, .. } if target == "net/r1"), "{e}");
    assert!(e.to_string().contains("already holds request \"old\""), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_bad_request_id_is_rejected_and_its_annotation_removed() {
    let calls = AtomicUsize::new(0);
    let (client, api) = mock(vec![ok("PATCH", format!("{TARGET}?"), answered())]);
    let outcome = handle(&client, &target(Some("two words")), agent(&calls)).await.unwrap();
    let bodies = api.await.unwrap();
    let Outcome::Rejected(why) = outcome else { panic!("{outcome:?}") };
    assert!(why.contains("running-request: \"two words\" is not a request id"), "{why}");
    assert_eq!(bodies[0]["metadata"]["annotations"], json!({ANNOTATION_RUNNING_REQUEST: null}));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_annotation_makes_no_call() {
    let calls = AtomicUsize::new(0);
    let (client, api) = mock(vec![]);
    assert_eq!(handle(&client, &target(None), agent(&calls)).await.unwrap(), Outcome::NoRequest);
    assert!(api.await.unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_target_reconcile_asks_the_hub_and_reports_an_agent_that_is_not_connected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::pki::DirStore::new(dir.path().join("pki")).unwrap());
    let pki = Arc::new(crate::pki::Pki::open(store, crate::pki::PkiConfig::default()).await.unwrap());
    let hub = crate::hub::Hub::new(crate::hub::HubConfig::default(), pki, crate::metrics::Metrics::new());
    let (engine, _events) = crate::delivery::Engine::new(
        hub,
        Arc::new(crate::delivery::MemoryStore::default()),
        crate::delivery::EngineConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let t = target(Some("req-9"));
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), answered()),
        // The router's status is the status writer's (controller::status), not the reconcile's.
    ]);
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(t.clone()));
    let stores = Stores::new(reflector::store().0, reflector::store().0, reader, reflector::store().0);
    let (delivery, _marks) = Delivery::new(crate::tracker::Tracker::new(vec![7; 32]), engine);
    let ctx = Arc::new(Context::new(client, stores, None).with_delivery(delivery));
    crate::controller::target::reconcile(Arc::new(t), ctx).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(decode(&bodies[1], KEY_ERROR), NOT_CONNECTED);
    assert_eq!(decode(&bodies[1], KEY_REQUEST_ID), "req-9");
}

#[test]
fn secret_names() {
    assert_eq!(secret_name("r1"), "vrouter-running-r1");
    assert!(secret_name(&"a".repeat(250)).len() <= 253);
}
