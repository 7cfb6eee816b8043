//! Enrollment requests against kube's mock API service: every call asserted, in order.

use std::sync::Arc;

use base64::Engine as _;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector;
use serde_json::{Value, json};

use super::*;
use crate::controller::{Delivery, Stores};
use crate::crd::VRouterTargetSpec;
use crate::pki::{DirStore, PkiConfig, PkiStore};

pub(crate) struct Expect {
    method: &'static str,
    uri: String,
    code: u16,
    respond: Value,
}

pub(crate) fn ok(method: &'static str, uri: impl Into<String>, respond: Value) -> Expect {
    Expect { method, uri: uri.into(), code: 200, respond }
}

pub(crate) fn status(method: &'static str, uri: impl Into<String>, code: u16, reason: &str) -> Expect {
    let respond = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code});
    Expect { method, uri: uri.into(), code, respond }
}

/// A client whose API server answers exactly `calls`, in order; yields the request bodies.
pub(crate) fn mock(calls: Vec<Expect>) -> (Client, tokio::task::JoinHandle<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for e in calls {
            let (req, send) = handle.next_request().await.expect("fewer calls than expected");
            assert_eq!(req.method().as_str(), e.method, "method of {}", req.uri());
            assert_eq!(req.uri().to_string(), e.uri);
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let respond = if e.respond.is_null() { body.clone() } else { e.respond };
            bodies.push(body);
            send.send_response(
                Response::builder().status(e.code).body(Body::from(serde_json::to_vec(&respond).unwrap())).unwrap(),
            );
        }
        if let Ok(Some((req, _))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), handle.next_request()).await
        {
            panic!("more calls than expected: {} {}", req.method(), req.uri());
        }
        bodies
    });
    (Client::new(service, "default"), task)
}

const TARGET: &str = "/apis/vrouter.kojuro.date/v1/namespaces/net/vroutertargets/r1";
const SECRET: &str = "/api/v1/namespaces/net/secrets/vrouter-enroll-r1";
const SECRETS: &str = "/api/v1/namespaces/net/secrets?";

fn target(request: Option<&str>) -> VRouterTarget {
    let mut t = VRouterTarget::new("r1", VRouterTargetSpec::default());
    t.metadata.namespace = Some("net".into());
    t.metadata.uid = Some("uid-r1".into());
    t.metadata.resource_version = Some("41".into());
    if let Some(r) = request {
        t.metadata.annotations = Some(BTreeMap::from([(ANNOTATION_ENROLL_REQUEST.to_owned(), r.to_owned())]));
    }
    t
}

async fn pki(dir: &std::path::Path) -> (Arc<Pki>, Arc<DirStore>) {
    let store = Arc::new(DirStore::new(dir.join("pki")).unwrap());
    let pki = Pki::open(store.clone(), PkiConfig::default()).await.unwrap();
    (Arc::new(pki), store)
}

async fn tokens(store: &DirStore) -> usize {
    store.list("token-").await.unwrap().len()
}

pub(crate) fn decode(secret: &Value, key: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.decode(secret["data"][key].as_str().unwrap()).unwrap();
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn a_request_issues_one_token_into_an_owned_secret_then_drops_the_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, store) = pki(dir.path()).await;
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), serde_json::to_value(target(None)).unwrap()),
    ]);
    let advertised =
        Advertised { endpoint: Some("https://vrouter.example.net:7443".into()), server_name: Some("vrouter".into()) };
    let outcome = handle(&client, &target(Some("req-1")), &pki, &advertised).await.unwrap();
    assert_eq!(outcome, Outcome::Issued);
    let bodies = api.await.unwrap();
    let s = &bodies[1];
    assert_eq!(s["metadata"]["name"], "vrouter-enroll-r1");
    assert_eq!(s["metadata"]["namespace"], "net");
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "uid-r1");
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "VRouterTarget");
    assert_eq!(s["metadata"]["labels"]["vrouter.kojuro.date/target"], "r1");
    assert!(decode(s, KEY_TOKEN).starts_with("vrt1."));
    assert_eq!(decode(s, KEY_CA), pki.ca_pem());
    assert_eq!(decode(s, KEY_REQUEST_ID), "req-1");
    assert_eq!(decode(s, KEY_IDENTITY), "net/r1");
    assert_eq!(decode(s, KEY_ENDPOINT), "https://vrouter.example.net:7443");
    assert_eq!(decode(s, KEY_SERVER_NAME), "vrouter");
    let keys: Vec<&String> = s["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    // The annotation goes, conditional on the version the reconcile saw.
    assert_eq!(
        bodies[2],
        json!({"metadata": {"annotations": {ANNOTATION_ENROLL_REQUEST: null}, "resourceVersion": "41"}})
    );
    assert_eq!(tokens(&store).await, 1);
    // The token is valid for this router (and only once).
    let token = decode(s, KEY_TOKEN);
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
    pki.enroll(&token, "net/r1", csr.der()).await.unwrap();
}

#[tokio::test]
async fn no_annotation_makes_no_call_and_issues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, store) = pki(dir.path()).await;
    let (client, api) = mock(vec![]);
    let outcome = handle(&client, &target(None), &pki, &Advertised::default()).await.unwrap();
    assert_eq!(outcome, Outcome::NoRequest);
    assert!(api.await.unwrap().is_empty());
    assert_eq!(tokens(&store).await, 0);
}

#[tokio::test]
async fn the_same_request_again_issues_no_second_token() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, store) = pki(dir.path()).await;
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), serde_json::to_value(target(None)).unwrap()),
    ]);
    let t = target(Some("req-1"));
    assert_eq!(handle(&client, &t, &pki, &Advertised::default()).await.unwrap(), Outcome::Issued);
    let created = api.await.unwrap().swap_remove(1);
    assert!(created["data"].get(KEY_ENDPOINT).is_none(), "no endpoint when none is known");

    // The annotation's removal was not seen yet: the same request comes again.
    let (client, api) = mock(vec![
        ok("GET", SECRET, created),
        ok("PATCH", format!("{TARGET}?"), serde_json::to_value(target(None)).unwrap()),
    ]);
    assert_eq!(handle(&client, &t, &pki, &Advertised::default()).await.unwrap(), Outcome::AlreadyIssued);
    api.await.unwrap();
    assert_eq!(tokens(&store).await, 1);
}

#[tokio::test]
async fn another_requests_secret_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, store) = pki(dir.path()).await;
    let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vrouter-enroll-r1", "namespace": "net"},
        "data": {KEY_REQUEST_ID: base64::engine::general_purpose::STANDARD.encode("old")}});
    let (client, api) = mock(vec![ok("GET", SECRET, other)]);
    let e = handle(&client, &target(Some("req-2")), &pki, &Advertised::default()).await.unwrap_err();
    api.await.unwrap();
    assert!(matches!(&e, Error::Enroll { target, .. } if target == "net/r1"), "{e}");
    assert!(e.to_string().contains("already holds request \"old\""), "{e}");
    assert_eq!(tokens(&store).await, 0);
}

#[tokio::test]
async fn a_bad_request_id_is_rejected_and_its_annotation_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, store) = pki(dir.path()).await;
    let (client, api) = mock(vec![ok("PATCH", format!("{TARGET}?"), serde_json::to_value(target(None)).unwrap())]);
    let outcome = handle(&client, &target(Some("two words")), &pki, &Advertised::default()).await.unwrap();
    api.await.unwrap();
    let Outcome::Rejected(why) = outcome else { panic!("{outcome:?}") };
    assert!(why.contains("\"two words\" is not a request id"), "{why}");
    assert_eq!(tokens(&store).await, 0);
}

#[tokio::test]
async fn a_conflicting_removal_reads_the_target_again_and_leaves_a_newer_request() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = pki(dir.path()).await;
    let mut newer = target(Some("req-2"));
    newer.metadata.resource_version = Some("42".into());
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        status("PATCH", format!("{TARGET}?"), 409, "Conflict"),
        ok("GET", TARGET, serde_json::to_value(&newer).unwrap()),
    ]);
    assert_eq!(handle(&client, &target(Some("req-1")), &pki, &Advertised::default()).await.unwrap(), Outcome::Issued);
    api.await.unwrap();

    // Same request still there after the conflict: removed with the fresh version.
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        status("PATCH", format!("{TARGET}?"), 409, "Conflict"),
        ok("GET", TARGET, serde_json::to_value(&newer).unwrap()),
        ok("PATCH", format!("{TARGET}?"), serde_json::to_value(target(None)).unwrap()),
    ]);
    assert_eq!(handle(&client, &target(Some("req-2")), &pki, &Advertised::default()).await.unwrap(), Outcome::Issued);
    let bodies = api.await.unwrap();
    assert_eq!(bodies[4]["metadata"]["resourceVersion"], "42");
}

#[tokio::test]
async fn the_target_reconcile_serves_the_request_with_the_hubs_pki_and_guest_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, store) = pki(dir.path()).await;
    let hub = crate::hub::Hub::new(crate::hub::HubConfig::default(), pki.clone(), crate::metrics::Metrics::new());
    let (engine, _events) = crate::delivery::Engine::new(
        hub,
        Arc::new(crate::delivery::MemoryStore::default()),
        crate::delivery::EngineConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    engine.enable_qga(crate::qga::route::QgaSupport {
        resolver: Arc::new(crate::qga::route::LibvirtResolver),
        bootstrap: crate::qga::guest::BootstrapSettings {
            endpoint: "https://10.0.0.1:7443".into(),
            ..Default::default()
        },
        fallback_after: std::time::Duration::from_secs(60),
        session_wait: std::time::Duration::from_secs(60),
        poll: std::time::Duration::from_secs(60),
    });
    let t = target(Some("req-9"));
    let (client, api) = mock(vec![
        status("GET", SECRET, 404, "NotFound"),
        ok("POST", SECRETS, Value::Null),
        ok("PATCH", format!("{TARGET}?"), serde_json::to_value(target(None)).unwrap()),
        // The router's status is the status writer's (controller::status), not the reconcile's.
    ]);
    let store_of = |t: Vec<VRouterTarget>| {
        let (reader, mut writer) = reflector::store();
        for o in t {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
        }
        reader
    };
    let stores =
        Stores::new(reflector::store().0, reflector::store().0, store_of(vec![t.clone()]), reflector::store().0);
    let (delivery, _marks) = Delivery::new(crate::tracker::Tracker::new(vec![7; 32]), engine);
    let ctx = Arc::new(Context::new(client, stores, None).with_delivery(delivery));
    crate::controller::target::reconcile(Arc::new(t), ctx).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(decode(&bodies[1], KEY_ENDPOINT), "https://10.0.0.1:7443");
    assert_eq!(decode(&bodies[1], KEY_CA), pki.ca_pem());
    assert!(bodies[1]["data"].get(KEY_SERVER_NAME).is_none());
    assert_eq!(tokens(&store).await, 1);
}

#[test]
fn names_and_request_ids() {
    assert_eq!(secret_name("r1"), "vrouter-enroll-r1");
    let long = "a".repeat(250);
    assert!(secret_name(&long).len() <= 253);
    assert!(valid_request_id("3f2a9c0d-1"));
    assert!(!valid_request_id(""));
    assert!(!valid_request_id("a/b"));
    assert!(!valid_request_id(&"a".repeat(65)));
}
