//! Throttling (429) on the real API server: API Priority and Fairness rejecting the operator's
//! status writes.
//!
//! A priority level with no seats still runs one request when none is executing, so a `429`
//! needs a request that holds the level's one seat. Here that is a ConfigMap create, made with
//! the operator's own ServiceAccount and matched by the same FlowSchema, that waits 20 s in a
//! validating webhook this test serves. While it waits, every status write of the operator in
//! that level is rejected with `429 Too Many Requests`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use vrouter_tests::cluster::{eventually, metric_sum};

use super::{QuickStart, ROUTERS, SYSTEM};

/// How long the webhook holds the seat.
const HOLD: Duration = Duration::from_secs(20);

/// An HTTPS admission webhook on loopback that answers every review "allowed" after [`HOLD`].
struct SlowWebhook {
    port: u16,
    ca_pem: String,
    /// Reviews received.
    received: Arc<AtomicUsize>,
}

impl SlowWebhook {
    fn start() -> SlowWebhook {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let tls = Arc::new(tls);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicUsize::new(0));
        let seen = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (tls, seen) = (tls.clone(), seen.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(tls) else { return };
                    let mut s = rustls::StreamOwned::new(conn, stream);
                    if let Some(body) = read_request(&mut s) {
                        seen.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(HOLD);
                        let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let answer = serde_json::json!({
                            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": review["request"]["uid"], "allowed": true},
                        })
                        .to_string();
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                            answer.len()
                        );
                        let _ = s.flush();
                    }
                });
            }
        });
        SlowWebhook { port, ca_pem, received }
    }
}

/// One HTTP/1.1 request's body (by its Content-Length).
fn read_request(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}

/// The operator's status writes that API Priority and Fairness rejected, from its metrics.
async fn throttled(run: &QuickStart) -> f64 {
    let text = run.op.http_get("/metrics").await.unwrap_or_default();
    metric_sum(&text, "vrouter_reconcile_errors_total", &[("controller", "status"), ("kind", "api_429")])
}

/// While one request holds the only seat of the operator's priority level, its status writes
/// are answered `429`: each becomes a `Throttled` Warning Event on the target, retried with
/// backoff (a handful of attempts in the hold, not a hot loop), and once the seat is free every
/// target's status reaches the revision its router runs, one commit per revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
async fn throttled_status_writes_are_reported_and_retried_with_backoff() {
    let run = QuickStart::start(0).await;
    run.settle(60).await;
    let hook = SlowWebhook::start();
    let sa = format!("system:serviceaccount:{SYSTEM}:{}", run.release.service_account);
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&hook.ca_pem);
    let config = format!(
        r#"
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: vrouter-test-one-seat}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 0
    lendablePercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: vrouter-test-one-seat}}
spec:
  priorityLevelConfiguration: {{name: vrouter-test-one-seat}}
  matchingPrecedence: 500
  distinguisherMethod: {{type: ByUser}}
  rules:
    - subjects:
        - kind: ServiceAccount
          serviceAccount: {{namespace: {SYSTEM}, name: {account}}}
      resourceRules:
        - verbs: [patch]
          apiGroups: [vrouter.kojuro.date]
          resources: [vroutertargets/status]
          namespaces: [{ROUTERS}]
        - verbs: [create]
          apiGroups: [""]
          resources: [configmaps]
          namespaces: [{ROUTERS}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: vrouter-test-hold-a-seat}}
webhooks:
  - name: hold.vrouter-test.kojuro.date
    clientConfig:
      url: https://127.0.0.1:{port}/hold
      caBundle: {ca_bundle}
    rules:
      - operations: [CREATE]
        apiGroups: [""]
        apiVersions: [v1]
        resources: [configmaps]
    objectSelector:
      matchLabels: {{vrouter-test: hold-a-seat}}
    failurePolicy: Ignore
    sideEffects: None
    timeoutSeconds: 30
    admissionReviewVersions: [v1]
"#,
        account = run.release.service_account,
        port = hook.port,
    );
    run.cluster.must(&["apply", "-f", "-"], Some(&config));
    // Until the API server's flow control has the new level (it syncs its objects on its own).
    eventually(
        30,
        "the FlowSchema in force",
        || {
            let fs = run.cluster.get_json(&["get", "flowschema", "vrouter-test-one-seat"]);
            fs["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Dangling" && c["status"] == "False"))
        },
        String::new,
    )
    .await;
    let before = throttled(&run).await;
    let revisions_before = run.revisions();

    // The seat holder: a ConfigMap create by the operator's ServiceAccount, waiting in the webhook.
    let kubeconfig = run.release.kubeconfig.clone();
    let holder = std::thread::spawn(move || {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: seat, namespace: {ROUTERS}, labels: {{vrouter-test: hold-a-seat}}}}\n"
        );
        vrouter_tests::control_plane::kubectl(&kubeconfig, &["create", "-f", "-"], Some(&cm))
    });
    eventually(20, "the seat holder in the webhook", || hook.received.load(Ordering::SeqCst) > 0, String::new).await;
    run.change_params(&[("timezone: Europe/Paris", "timezone: Asia/Tokyo")]);
    eventually(
        15,
        "a Throttled Event on a target",
        || {
            super::NAMES.iter().any(|n| {
                run.warnings("VRouterTarget", n)
                    .iter()
                    .any(|(r, note)| r == "Throttled" && note.contains("write VRouterTarget status") && note.contains("429"))
            })
        },
        || format!("{:?}\n{}", run.revisions(), run.op.log_text()),
    )
    .await;
    let held = holder.join().expect("the seat holder");
    assert!(held.ok, "the seat holder's create failed: {}", held.stderr);
    let attempts = throttled(&run).await - before;
    // Three targets, backoff 5 s then 10 s within the 20 s hold (plus a retry per router event):
    // a handful each; a hot loop would make hundreds.
    assert!((1.0..=15.0).contains(&attempts), "{attempts} throttled status writes in {HOLD:?}");
    assert!(run.all_run("time-zone \"Asia/Tokyo\""), "the routers applied during the hold (delivery is not throttled)");

    // The seat free: the statuses catch up with the routers, with nothing applied twice.
    run.settle(60).await;
    assert!(super::all_moved(&revisions_before, &run.revisions()), "{:?}", run.revisions());
    run.wait_ready(30).await;
    run.assert_one_commit_per_revision();
    run.cluster.must(&["delete", "validatingwebhookconfiguration", "vrouter-test-hold-a-seat"], None);
}
