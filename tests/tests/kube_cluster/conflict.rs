//! A write overtaken by another (`409 Conflict`) on the real API server: the operator's PKI
//! Secret, written read-modify-write with its resourceVersion (or created), changed (or
//! created) by someone else while the operator's write waits in admission.

use std::time::Duration;

use vrouter_tests::cluster::{eventually, metric_sum};

use super::slow_webhook::SlowWebhook;
use super::{QuickStart, ROUTERS, SYSTEM};

/// How long the webhook holds the operator's first Secret write.
const HOLD: Duration = Duration::from_secs(6);

/// The API server's `409` answers to Secret writes, from its own metrics.
fn secret_conflicts(run: &QuickStart) -> f64 {
    let text = run.cluster.must(&["get", "--raw", "/metrics"], None);
    metric_sum(&text, "apiserver_request_total", &[("resource", "secrets"), ("code", "409")])
}

/// The operator issues an enrollment token into a PKI bucket Secret while an administrator
/// writes that same Secret (annotates it, or creates it when the operator's write is the
/// bucket's first): the operator's write, sent with the resourceVersion it read, or a create, is
/// answered `409`; it reads the Secret again and writes once more. The token is issued, the
/// administrator's annotation stays, and nothing the operator held in that Secret is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
async fn an_overtaken_pki_write_is_read_again_and_retried() {
    let run = QuickStart::start(0).await;
    let hook = SlowWebhook::start(HOLD, 1);
    let operator = format!("system:serviceaccount:{SYSTEM}:{}", run.release.service_account);
    let config = format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: vrouter-test-overtake}}
webhooks:
  - name: overtake.vrouter-test.kojuro.date
    clientConfig: {client}
    rules:
      - operations: [CREATE, UPDATE]
        apiGroups: [""]
        apiVersions: [v1]
        resources: [secrets]
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {SYSTEM}}}
    objectSelector:
      matchLabels: {{app.kubernetes.io/managed-by: vrouter-operator}}
    matchConditions:
      # The operator's writes, and the test's dry-run probes.
      - name: operator-or-probe
        expression: "request.userInfo.username == '{operator}' || request.dryRun == true"
    failurePolicy: Fail
    sideEffects: None
    timeoutSeconds: 20
    admissionReviewVersions: [v1]
"#,
        client = hook.client_config(),
    );
    run.cluster.must(&["apply", "-f", "-"], Some(&config));
    let pki = run.release.flag("pki-secret").expect("the chart names the PKI Secret");
    // Until the API server calls the webhook (a dry-run update is reviewed, never held).
    eventually(
        20,
        "the webhook called",
        || {
            run.cluster.kubectl(
                &["-n", SYSTEM, "annotate", "secret", &pki, "vrouter-test/probe=1", "--overwrite", "--dry-run=server"],
                None,
            );
            hook.probes() > 0
        },
        String::new,
    )
    .await;
    let conflicts_before = secret_conflicts(&run);

    // A new token for `hub`: the operator writes its record into a bucket Secret.
    let (kubeconfig, endpoint) = (run.cluster.plane.kubeconfig.clone(), run.op.endpoint());
    let enroll = std::thread::spawn(move || {
        let plugin = vrouter_tests::workspace_bin("kubectl-vrouter", "kubectl-vrouter");
        std::process::Command::new(plugin)
            .args(["-n", ROUTERS, "enroll", "hub", "--endpoint", &endpoint])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("run kubectl-vrouter")
    });
    eventually(30, "the operator's Secret write in the webhook", || hook.review(0).is_some(), || run.op.log_text())
        .await;
    let (operation, held) = hook.review(0).unwrap();
    // Overtaken: an administrator's write lands while the operator's waits.
    let before = if operation == "CREATE" {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {held}, namespace: {SYSTEM}, labels: {{app.kubernetes.io/managed-by: vrouter-operator}}, annotations: {{vrouter-test/overtaken: 'yes'}}}}\n"
        );
        run.cluster.must(&["create", "-f", "-"], Some(&secret));
        serde_json::Value::Null
    } else {
        let before = run.cluster.get_json(&["-n", SYSTEM, "get", "secret", &held]);
        run.cluster.must(&["-n", SYSTEM, "annotate", "secret", &held, "vrouter-test/overtaken=yes"], None);
        before
    };
    let out = enroll.join().expect("the enroll thread");
    assert!(
        out.status.success(),
        "kubectl vrouter enroll: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.op.log_text()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("token"), "no token printed");

    assert!(secret_conflicts(&run) > conflicts_before, "the operator's write was not answered 409");
    assert!(hook.received() >= 2, "the operator did not write again after the conflict");
    let after = run.cluster.get_json(&["-n", SYSTEM, "get", "secret", &held]);
    assert_eq!(after["metadata"]["annotations"]["vrouter-test/overtaken"], "yes", "the administrator's write was lost");
    let keys = |s: &serde_json::Value| {
        s["data"].as_object().map(|d| d.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
    };
    let (old, new) = (keys(&before), keys(&after));
    assert!(old.iter().all(|k| new.contains(k)), "records lost: {old:?} -> {new:?}");
    assert!(new.len() > old.len(), "the token's record is not in {held} ({operation}): {new:?}");
    // Every router still connected and at its revision (the PKI write disturbed nothing).
    run.settle(60).await;
    run.assert_one_commit_per_revision();
    run.cluster.must(&["delete", "validatingwebhookconfiguration", "vrouter-test-overtake"], None);
}
