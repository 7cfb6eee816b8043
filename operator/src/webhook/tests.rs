use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::mock_api::{expect, failure, mock};

const CONFIG: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/vrouter-operator";

fn webhook_config(bundles: &[Option<&str>], rv: &str) -> Value {
    let webhooks: Vec<Value> = bundles
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut client_config =
                json!({"service": {"name": "vrouter-webhook", "namespace": "sys", "path": "/validate"}});
            if let Some(b) = b {
                client_config["caBundle"] = json!(b);
            }
            json!({"name": format!("w{i}.vrouter.kojuro.date"), "clientConfig": client_config,
                   "sideEffects": "None", "admissionReviewVersions": ["v1"]})
        })
        .collect();
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "vrouter-operator", "resourceVersion": rv}, "webhooks": webhooks})
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[tokio::test]
async fn the_ca_bundle_of_every_webhook_is_set_with_a_fenced_write() {
    let (client, api) = mock(vec![
        expect("GET", CONFIG, webhook_config(&[None, Some(&b64("old"))], "5")),
        expect("PATCH", format!("{CONFIG}?"), Value::Null),
    ]);
    assert_eq!(ca_bundle::patch_ca_bundle(&client, "vrouter-operator", CA).await.unwrap(), 2);
    let bodies = api.await.unwrap();
    // A strategic merge patch (RBAC: `patch`, never `update`) naming only what changes.
    let patch = &bodies[1];
    assert_eq!(patch["metadata"]["resourceVersion"], "5");
    let webhooks = patch["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 2);
    for (i, w) in webhooks.iter().enumerate() {
        assert_eq!(w["name"], format!("w{i}.vrouter.kojuro.date"));
        assert_eq!(w["clientConfig"], json!({"caBundle": b64(CA)}), "nothing else is written");
    }
}

#[tokio::test]
async fn a_current_ca_bundle_is_not_written_and_conflicts_are_retried() {
    let (client, api) = mock(vec![expect("GET", CONFIG, webhook_config(&[Some(&b64(CA))], "5"))]);
    assert_eq!(ca_bundle::patch_ca_bundle(&client, "vrouter-operator", CA).await.unwrap(), 0);
    api.await.unwrap();

    let (client, api) = mock(vec![
        expect("GET", CONFIG, webhook_config(&[None], "5")),
        failure("PATCH", format!("{CONFIG}?"), 409, "Conflict"),
        expect("GET", CONFIG, webhook_config(&[None, None], "6")),
        expect("PATCH", format!("{CONFIG}?"), Value::Null),
    ]);
    assert_eq!(ca_bundle::patch_ca_bundle(&client, "vrouter-operator", CA).await.unwrap(), 2);
    let bodies = api.await.unwrap();
    assert_eq!(bodies[3]["metadata"]["resourceVersion"], "6");
}

#[tokio::test]
async fn a_missing_configuration_is_a_clear_error() {
    let (client, api) = mock(vec![failure("GET", CONFIG, 404, "NotFound")]);
    let e = ca_bundle::patch_ca_bundle(&client, "vrouter-operator", CA).await.unwrap_err();
    assert_eq!(e.to_string(), "ValidatingWebhookConfiguration \"vrouter-operator\" not found");
    api.await.unwrap();
}

#[tokio::test]
async fn a_config_review_reads_its_one_target() {
    let target = json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTarget",
                        "metadata": {"name": "r1", "namespace": "net"}, "spec": {}});
    let (client, api) =
        mock(vec![expect("GET", "/apis/vrouter.kojuro.date/v1/namespaces/net/vroutertargets/r1", target)]);
    let request = Request {
        kind: "VRouterConfig".into(),
        operation: Operation::Create,
        namespace: "net".into(),
        name: "c".into(),
        object: Some(json!({"spec": {"targetRef": {"name": "r1"}}})),
        old_object: None,
    };
    let needs = Needs::for_request(&request);
    assert_eq!(needs, Needs { target: Some("r1".into()), ..Needs::default() });
    let s = lookup::gather(&client, "net", &needs).await.unwrap();
    api.await.unwrap();
    assert_eq!(s.targets.keys().collect::<Vec<_>>(), ["r1"]);
    // A name that cannot exist is not looked up.
    let (client, api) = mock(vec![]);
    let s =
        lookup::gather(&client, "net", &Needs { target: Some("Bad Name".into()), ..Needs::default() }).await.unwrap();
    api.await.unwrap();
    assert!(s.targets.is_empty());
}

#[tokio::test]
async fn gather_lists_only_the_kinds_needed_in_the_namespace() {
    let list = json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTargetList", "metadata": {},
                      "items": [{"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTarget",
                                 "metadata": {"name": "r1", "namespace": "net"}, "spec": {}}]});
    let (client, api) = mock(vec![expect("GET", "/apis/vrouter.kojuro.date/v1/namespaces/net/vroutertargets?", list)]);
    let s = lookup::gather(&client, "net", &Needs::of("VRouterConfig", Operation::Create)).await.unwrap();
    api.await.unwrap();
    assert_eq!(s.targets.keys().collect::<Vec<_>>(), ["r1"]);
    assert!(s.bindings.is_empty() && s.templates.is_empty());
}

struct Unreachable;

#[async_trait]
impl Lookups for Unreachable {
    async fn gather(&self, _namespace: &str, _needs: &Needs) -> Result<Snapshot, String> {
        Err("connection refused".into())
    }
}

/// A PKI, and the webhook serving `lookups` on loopback; returns the address and the CA.
async fn serve(lookups: Arc<dyn Lookups>, dir: &std::path::Path) -> (SocketAddr, String, Metrics) {
    let store = crate::pki::DirStore::new(dir.join("pki")).unwrap();
    let pki = Arc::new(Pki::open(Arc::new(store), crate::pki::PkiConfig::default()).await.unwrap());
    let tls = tls_config(pki.clone(), service_dns_names("vrouter-webhook", "sys")).unwrap();
    let metrics = Metrics::new();
    let app = router(lookups, metrics.clone(), Duration::from_secs(30));
    let addr = serve_tls("127.0.0.1:0".parse().unwrap(), tls, app, CancellationToken::new()).await.unwrap();
    (addr, pki.ca_pem().to_owned(), metrics)
}

/// POSTs `body` to `/validate` over TLS, verifying the server as `server_name` against `ca`;
/// returns the status code and the body.
async fn post(addr: SocketAddr, ca: &str, server_name: &str, body: &str) -> Result<(u16, String), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Ok((code, body.to_owned()))
}

fn admission_review(operation: &str, kind: &str, name: &str, object: Option<Value>, old: Option<Value>) -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "uid-1",
        "kind": {"group": "vrouter.kojuro.date", "version": "v1", "kind": kind},
        "resource": {"group": "vrouter.kojuro.date", "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
        "name": name, "namespace": "net", "operation": operation, "userInfo": {"username": "alice"},
        "object": object, "oldObject": old, "dryRun": false}})
    .to_string()
}

fn namespace() -> Snapshot {
    let mut s = Snapshot::default();
    s.bindings.insert(
        "core".into(),
        serde_json::from_value(json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterBinding",
            "metadata": {"name": "core", "namespace": "net"},
            "spec": {"templateRefs": [{"name": "bgp"}], "targetRefs": [{"name": "r1"}]}}))
        .unwrap(),
    );
    s
}

#[tokio::test]
async fn the_https_endpoint_answers_admission_reviews_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca, metrics) = serve(Arc::new(namespace()), dir.path()).await;
    let target = json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "VRouterTarget",
                        "metadata": {"name": "r1", "namespace": "net"}, "spec": {}});

    let body = admission_review("DELETE", "VRouterTarget", "r1", None, Some(target.clone()));
    let (code, text) = post(addr, &ca, "vrouter-webhook.sys.svc", &body).await.unwrap();
    assert_eq!(code, 200, "{text}");
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"], "uid-1");
    assert_eq!(review["response"]["allowed"], false);
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("VRouterBinding \"core\" lists it in spec.targetRefs[0]"), "{message}");

    let body = admission_review("DELETE", "VRouterTarget", "r2", None, Some(target));
    let (_, text) = post(addr, &ca, "vrouter-webhook.sys.svc.cluster.local", &body).await.unwrap();
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["allowed"], true, "{text}");

    let text = metrics.encode();
    assert!(
        text.contains(
            "vrouter_admission_reviews_total{kind=\"VRouterTarget\",operation=\"DELETE\",result=\"denied\"} 1"
        )
    );
    assert!(
        text.contains(
            "vrouter_admission_reviews_total{kind=\"VRouterTarget\",operation=\"DELETE\",result=\"allowed\"} 1"
        )
    );

    // The certificate is for the Service's names only.
    let e = post(addr, &ca, "other.example", &admission_review("DELETE", "VRouterTarget", "r2", None, None)).await;
    assert!(e.unwrap_err().contains("certificate"), "a wrong name must fail verification");
    // Garbage is a bad request, not a verdict.
    let (code, _) = post(addr, &ca, "vrouter-webhook.sys.svc", "{\"not\": \"a review\"}").await.unwrap();
    assert_eq!(code, 400);
}

#[tokio::test]
async fn unreadable_objects_answer_500_so_the_failure_policy_decides() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca, metrics) = serve(Arc::new(Unreachable), dir.path()).await;
    let body = admission_review("DELETE", "VRouterTarget", "r1", None, None);
    let (code, text) = post(addr, &ca, "vrouter-webhook.sys", &body).await.unwrap();
    assert_eq!(code, 500);
    assert!(text.contains("connection refused"), "{text}");
    assert!(metrics.encode().contains("result=\"error\"} 1"));
}
