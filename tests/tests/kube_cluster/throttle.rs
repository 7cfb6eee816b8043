//! Throttling (429) on the real API server: API Priority and Fairness rejecting the operator's
//! status writes.
//!
//! A priority level with no seats still runs one request when none is executing, so a `429`
//! needs a request that holds the level's one seat. Here that is a ConfigMap create, made with
//! the operator's own ServiceAccount and matched by the same FlowSchema, that waits 20 s in a
//! validating webhook this test serves. While it waits, every status write of the operator in
//! that level is rejected with `429 Too Many Requests`.
//!
//! This test found that kube-rs's client retried those `429`s by itself for minutes, so no
//! `Throttled` Event ever appeared (`vrouter_operator::controller::client`).

use std::time::Duration;

use vrouter_tests::cluster::{eventually, metric_sum};

use super::slow_webhook::SlowWebhook;
use super::{QuickStart, ROUTERS, SYSTEM};

/// How long the webhook holds the seat.
const HOLD: Duration = Duration::from_secs(20);

/// The requests of the test's priority level that API Priority and Fairness rejected, from the
/// API server's own metrics.
fn rejected(run: &QuickStart) -> f64 {
    let text = run.cluster.must(&["get", "--raw", "/metrics"], None);
    metric_sum(&text, "apiserver_flowcontrol_rejected_requests_total", &[("priority_level", "vrouter-test-one-seat")])
}

/// The operator's status writes that failed with `429` (after the client's own retries), from
/// its metrics.
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
    let hook = SlowWebhook::start(HOLD, 1);
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
    borrowingLimitPercent: 0
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
    clientConfig: {client}
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
        client = hook.client_config(),
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
    let rejected_before = rejected(&run);
    let revisions_before = run.revisions();

    // The seat holder: a ConfigMap create by the operator's ServiceAccount, waiting in the webhook.
    let kubeconfig = run.release.kubeconfig.clone();
    let holder = std::thread::spawn(move || {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: seat, namespace: {ROUTERS}, labels: {{vrouter-test: hold-a-seat}}}}\n"
        );
        vrouter_tests::control_plane::kubectl(&kubeconfig, &["create", "-f", "-"], Some(&cm))
    });
    eventually(20, "the seat holder in the webhook", || hook.received() > 0, String::new).await;
    run.change_params(&[("timezone: Europe/Paris", "timezone: Asia/Tokyo")]);
    eventually(
        15,
        "a Throttled Event on a target",
        || {
            super::NAMES.iter().any(|n| {
                run.warnings("VRouterTarget", n).iter().any(|(r, note)| {
                    r == "Throttled" && note.contains("write VRouterTarget status") && note.contains("429")
                })
            })
        },
        || {
            let metrics = run.cluster.must(&["get", "--raw", "/metrics"], None);
            let flow: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("apiserver_flowcontrol_") && l.contains("vrouter-test"))
                .collect();
            let vrc = run.cluster.must(&["-n", ROUTERS, "get", "vrc", "-o", "yaml"], None);
            format!(
                "{:?}\nrouters run Tokyo: {}\nconfigs with Tokyo: {}\n{}\n{}",
                run.revisions(),
                run.all_run("time-zone \"Asia/Tokyo\""),
                vrc.matches("Tokyo").count(),
                flow.iter()
                    .filter(|l| l.contains("rejected") || l.contains("dispatched"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
                run.op.log_text()
            )
        },
    )
    .await;
    let held = holder.join().expect("the seat holder");
    assert!(held.ok, "the seat holder's create failed: {}", held.stderr);
    let attempts = throttled(&run).await - before;
    let requests = rejected(&run) - rejected_before;
    // Three targets, backoff 5 s then 10 s within the 20 s hold (plus a retry per router event):
    // a handful each; a hot loop would make hundreds.
    assert!((1.0..=15.0).contains(&attempts), "{attempts} throttled status writes in {HOLD:?}");
    // Each failed write is the client's first try and its retries (operator/src/controller/client.rs),
    // and each target's last write may have been retried before it went through.
    let tries = f64::from(vrouter_operator::controller::client::THROTTLE_RETRIES + 1);
    let most = (attempts + super::NAMES.len() as f64) * tries;
    assert!(requests <= most, "{requests} requests rejected for {attempts} failed writes");
    assert!(run.all_run("time-zone \"Asia/Tokyo\""), "the routers applied during the hold (delivery is not throttled)");

    // The seat free: the statuses catch up with the routers, with nothing applied twice.
    run.settle(60).await;
    assert!(super::all_moved(&revisions_before, &run.revisions()), "{:?}", run.revisions());
    run.wait_ready(30).await;
    run.assert_one_commit_per_revision();
    run.cluster.must(&["delete", "validatingwebhookconfiguration", "vrouter-test-hold-a-seat"], None);
}
