//! Controller tests against kube's mock API service: each test states the exact API calls a
//! reconcile must make, in order, and what they carry.

use std::sync::Arc;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::*;
use crate::crd::{
    ConfigPhase, NameRef, VRouterBindingSpec, VRouterConfigStatus, VRouterTargetSpec, VRouterTemplateSpec,
};

/// One expected call: method, path and query, and the response body.
struct Expect {
    method: &'static str,
    uri: String,
    code: u16,
    respond: Value,
}

fn expect(method: &'static str, uri: impl Into<String>, respond: Value) -> Expect {
    Expect { method, uri: uri.into(), code: 200, respond }
}

fn expect_failure(method: &'static str, uri: impl Into<String>, code: u16, reason: &str) -> Expect {
    let respond = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code});
    Expect { method, uri: uri.into(), code, respond }
}

/// A client whose API server answers exactly `calls`, in order; the join handle yields the
/// request bodies.
fn mock(calls: Vec<Expect>) -> (Client, tokio::task::JoinHandle<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for e in calls {
            let (req, send) = handle.next_request().await.expect("the reconcile made fewer calls than expected");
            assert_eq!(req.method().as_str(), e.method, "method of {}", req.uri());
            assert_eq!(req.uri().to_string(), e.uri);
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            // `null`: answer with the object as sent (what an apply returns).
            let respond = if e.respond.is_null() { body.clone() } else { e.respond };
            bodies.push(body);
            let body = Body::from(serde_json::to_vec(&respond).unwrap());
            send.send_response(Response::builder().status(e.code).body(body).unwrap());
        }
        // No further call may come.
        if let Ok(Some((req, _))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), handle.next_request()).await
        {
            panic!("the reconcile made more calls than expected: {} {}", req.method(), req.uri());
        }
        bodies
    });
    (Client::new(service, "default"), task)
}

fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    reader
}

fn ns<K: kube::Resource>(mut k: K) -> K {
    k.meta_mut().namespace = Some("net".into());
    k
}

fn template() -> VRouterTemplate {
    ns(VRouterTemplate::new(
        "base",
        VRouterTemplateSpec { config: None, commands: Some("set system host-name '{{ target.name }}'\n".into()) },
    ))
}

fn target(name: &str) -> VRouterTarget {
    ns(VRouterTarget::new(name, VRouterTargetSpec::default()))
}

fn binding(targets: &[&str]) -> VRouterBinding {
    let mut b = ns(VRouterBinding::new(
        "core",
        VRouterBindingSpec {
            template_refs: vec![NameRef::new("base")],
            target_refs: targets.iter().map(|t| NameRef::new(*t)).collect(),
            save: true,
            ..Default::default()
        },
    ));
    b.metadata.uid = Some("uid-core".into());
    b.metadata.generation = Some(3);
    b
}

fn ctx(client: Client, configs: Vec<VRouterConfig>) -> Arc<Context> {
    let stores = Stores::new(
        store_of(vec![template()]),
        store_of(vec![]),
        store_of(vec![target("r1"), target("r2")]),
        store_of(configs),
    );
    Arc::new(Context::new(client, stores, None))
}

const CONFIGS: &str = "/apis/vrouter.kojuro.date/v1/namespaces/net/vrouterconfigs";
const SSA: &str = "?&force=true&fieldManager=vrouter-operator";

#[tokio::test]
async fn new_binding_applies_one_owned_config_per_target_then_its_status() {
    let status_uri = format!("/apis/vrouter.kojuro.date/v1/namespaces/net/vrouterbindings/core/status{SSA}");
    let (client, api) = mock(vec![
        expect("PATCH", format!("{CONFIGS}/core.r1{SSA}"), Value::Null),
        expect("PATCH", format!("{CONFIGS}/core.r2{SSA}"), Value::Null),
        expect("PATCH", status_uri, serde_json::to_value(binding(&[])).unwrap()),
    ]);
    let action = binding::reconcile(Arc::new(binding(&["r1", "r2"])), ctx(client, vec![])).await.unwrap();
    assert_eq!(action, Action::await_change());
    let bodies = api.await.unwrap();
    let c = &bodies[0];
    assert_eq!(c["apiVersion"], "vrouter.kojuro.date/v1");
    assert_eq!(c["kind"], "VRouterConfig");
    assert_eq!(c["metadata"]["labels"]["vrouter.kojuro.date/binding"], "core");
    assert_eq!(c["metadata"]["ownerReferences"][0]["uid"], "uid-core");
    assert_eq!(c["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(c["spec"]["commands"], "set system host-name 'r1'\n");
    assert_eq!(c["spec"]["targetRef"]["name"], "r1");
    let s = &bodies[2];
    assert_eq!(s["kind"], "VRouterBinding");
    assert_eq!(s["status"]["targets"], 2);
    assert_eq!(s["status"]["observedGeneration"], 3);
    assert_eq!(s["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(s["status"]["conditions"][0]["reason"], "Applying");
}

fn generated(name: &str, target: &str, applied: bool) -> VRouterConfig {
    let b = binding(&[]);
    let mut c = ns(VRouterConfig::new(
        name,
        crate::crd::VRouterConfigSpec {
            target_ref: NameRef::new(target),
            commands: Some(format!("set system host-name '{target}'\n")),
            save: true,
            priority: 0,
            config: None,
        },
    ));
    c.metadata.generation = Some(1);
    c.metadata.labels = Some(
        [("vrouter.kojuro.date/binding", "core"), ("vrouter.kojuro.date/target", target)]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
    );
    c.metadata.annotations = c.metadata.labels.clone();
    c.metadata.owner_references = kube::Resource::controller_owner_ref(&b, &()).map(|o| vec![o]);
    if applied {
        c.status = Some(VRouterConfigStatus {
            phase: ConfigPhase::Applied,
            applied_generation: Some(1),
            ..Default::default()
        });
    }
    c
}

#[tokio::test]
async fn removed_target_deletes_its_config_and_unchanged_ones_are_not_rewritten() {
    let status_uri = format!("/apis/vrouter.kojuro.date/v1/namespaces/net/vrouterbindings/core/status{SSA}");
    let (client, api) = mock(vec![
        expect("DELETE", format!("{CONFIGS}/core.r2?"), json!({"kind": "Status", "status": "Success"})),
        expect("PATCH", status_uri, serde_json::to_value(binding(&[])).unwrap()),
    ]);
    let configs = vec![generated("core.r1", "r1", true), generated("core.r2", "r2", true)];
    binding::reconcile(Arc::new(binding(&["r1"])), ctx(client, configs)).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(bodies[0]["propagationPolicy"], "Background");
    assert_eq!(bodies[1]["status"]["applied"], 1);
    assert_eq!(bodies[1]["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    // First pass computes the status; a binding already carrying it makes no call at all.
    let configs = vec![generated("core.r1", "r1", true)];
    let stores_ctx =
        ctx(Client::new(tower_test::mock::pair::<Request<Body>, Response<Body>>().0, "default"), configs.clone());
    let inputs_binding = binding(&["r1"]);
    let templates = binding::in_namespace(&stores_ctx.stores.templates, "net");
    let params = binding::in_namespace(&stores_ctx.stores.params, "net");
    let targets = binding::in_namespace(&stores_ctx.stores.targets, "net");
    let cfgs = binding::in_namespace(&stores_ctx.stores.configs, "net");
    let p = crate::binding_plan::plan(
        &inputs_binding,
        crate::generate::Inputs { templates: &templates, params: &params, targets: &targets },
        &cfgs,
        std::time::SystemTime::now(),
    );
    let mut b = inputs_binding.clone();
    b.status = Some(p.status);
    let (client, api) = mock(vec![]);
    binding::reconcile(Arc::new(b), ctx(client, configs)).await.unwrap();
    assert!(api.await.unwrap().is_empty());
}

#[tokio::test]
async fn api_errors_are_typed_and_backed_off() {
    let (client, api) = mock(vec![expect_failure("PATCH", format!("{CONFIGS}/core.r1{SSA}"), 403, "Forbidden")]);
    let c = ctx(client, vec![]);
    let e = binding::reconcile(Arc::new(binding(&["r1"])), c.clone()).await.unwrap_err();
    api.await.unwrap();
    assert!(matches!(&e, Error::Kube { what: "apply VRouterConfig", .. }), "{e}");
    assert!(e.to_string().contains("Forbidden"), "{e}");
    assert_eq!(c.backoff("net/core"), std::time::Duration::from_secs(5));
    assert_eq!(c.backoff("net/core"), std::time::Duration::from_secs(10));
    c.succeeded("net/core");
    assert_eq!(c.backoff("net/core"), std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_config_already_gone_is_not_an_error() {
    let status_uri = format!("/apis/vrouter.kojuro.date/v1/namespaces/net/vrouterbindings/core/status{SSA}");
    let (client, api) = mock(vec![
        expect_failure("DELETE", format!("{CONFIGS}/core.r2?"), 404, "NotFound"),
        expect("PATCH", status_uri, serde_json::to_value(binding(&[])).unwrap()),
    ]);
    let configs = vec![generated("core.r1", "r1", true), generated("core.r2", "r2", true)];
    binding::reconcile(Arc::new(binding(&["r1"])), ctx(client, configs)).await.unwrap();
    api.await.unwrap();
}

async fn delivery_ctx(client: Client, configs: Vec<VRouterConfig>, dir: &std::path::Path) -> Arc<Context> {
    let pki_store = crate::pki::DirStore::new(dir.join("pki")).unwrap();
    let pki = crate::pki::Pki::open(Arc::new(pki_store), crate::pki::PkiConfig::default()).await.unwrap();
    let hub = crate::hub::Hub::new(crate::hub::HubConfig::default(), Arc::new(pki), crate::metrics::Metrics::new());
    let (engine, _events) = crate::delivery::Engine::new(
        hub,
        Arc::new(crate::delivery::MemoryStore::default()),
        crate::delivery::EngineConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let stores = Stores::new(store_of(vec![]), store_of(vec![]), store_of(vec![target("r1")]), store_of(configs));
    let (delivery, _marks) = Delivery::new(crate::tracker::Tracker::new(vec![7; 32]), engine);
    Arc::new(Context::new(client, stores, None).with_delivery(delivery))
}

fn hand_written(name: &str, commands: &str) -> VRouterConfig {
    let mut c = ns(VRouterConfig::new(
        name,
        crate::crd::VRouterConfigSpec {
            target_ref: NameRef::new("r1"),
            commands: Some(commands.into()),
            save: true,
            priority: 0,
            config: None,
        },
    ));
    c.metadata.generation = Some(4);
    c
}

const TARGETS: &str = "/apis/vrouter.kojuro.date/v1/namespaces/net/vroutertargets";

#[tokio::test]
async fn target_reconcile_composes_and_writes_target_then_config_status() {
    let dir = tempfile::tempdir().unwrap();
    let (client, api) = mock(vec![
        expect("PATCH", format!("{TARGETS}/r1/status{SSA}"), serde_json::to_value(target("r1")).unwrap()),
        expect(
            "PATCH",
            format!("{CONFIGS}/extra/status{SSA}"),
            serde_json::to_value(hand_written("extra", "")).unwrap(),
        ),
    ]);
    let c = delivery_ctx(client, vec![hand_written("extra", "set system host-name 'r1'")], dir.path()).await;
    let action = target::reconcile(Arc::new(target("r1")), c.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(target::RESYNC));
    // The reconcile only marks the target; the status writer writes both statuses, once.
    let written = std::sync::Mutex::new(status::Written::default());
    let r1 = crate::tracker::key("net", "r1");
    status::flush(&c, &r1, &written).await.unwrap();
    status::flush(&c, &r1, &written).await.unwrap();
    let bodies = api.await.unwrap();
    let t = &bodies[0]["status"];
    assert_eq!(bodies[0]["kind"], "VRouterTarget");
    assert_eq!(t["configs"], json!(["extra"]));
    assert_eq!(t["desiredRevision"].as_str().unwrap().len(), 16);
    assert_eq!(t["conditions"][0]["type"], "ConfigApplied");
    assert_eq!(t["conditions"][0]["status"], "False");
    assert_eq!(bodies[1]["status"]["conditions"][0]["type"], "Overlap");
    // The engine has the revision.
    assert_eq!(c.delivery.as_ref().unwrap().engine.routers().len(), 1);
}

#[tokio::test]
async fn target_reconcile_reads_only_the_secrets_it_needs_and_blocks_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (client, api) = mock(vec![
        expect_failure("GET", "/api/v1/namespaces/net/secrets/creds", 404, "NotFound"),
        expect("PATCH", format!("{TARGETS}/r1/status{SSA}"), serde_json::to_value(target("r1")).unwrap()),
        expect(
            "PATCH",
            format!("{CONFIGS}/extra/status{SSA}"),
            serde_json::to_value(hand_written("extra", "")).unwrap(),
        ),
    ]);
    let cfg = hand_written(
        "extra",
        "set system login user u authentication plaintext-password '@@vrouter-secret:creds/pw@@'",
    );
    let c = delivery_ctx(client, vec![cfg], dir.path()).await;
    target::reconcile(Arc::new(target("r1")), c.clone()).await.unwrap();
    let written = std::sync::Mutex::new(status::Written::default());
    status::flush(&c, &crate::tracker::key("net", "r1"), &written).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(bodies[1]["status"]["conditions"][0]["reason"], "ComposeFailed");
    assert_eq!(bodies[2]["status"]["phase"], "Failed");
    assert!(bodies[2]["status"]["message"].as_str().unwrap().contains("creds/pw"));
    assert!(c.delivery.as_ref().unwrap().engine.routers().is_empty(), "nothing may be delivered");
}

#[test]
fn watches_back_off_from_250_ms_to_at_most_5_s_and_reset() {
    use kube::runtime::utils::Backoff as _;
    let mut b = super::WatchBackoff::default();
    let delays: Vec<u128> = (0..8).map(|_| b.next().unwrap().as_millis()).collect();
    assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    b.reset();
    assert_eq!(b.next(), Some(std::time::Duration::from_millis(250)));
}
