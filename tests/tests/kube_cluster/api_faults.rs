//! API faults on the real control plane: the API server restarted mid-rollout (its fresh watch
//! cache answers every resumed watch with `410 Gone`), and writes refused by RBAC (403) and by
//! an admission policy (422).

use std::time::Duration;

use vrouter_tests::cluster::{eventually, metric_sum};

use super::{NAMES, QuickStart, ROUTERS, SYSTEM};

const PARIS: &str = "timezone: Europe/Paris";
const TROLL: &str = "timezone: Antarctica/Troll";
const OVERLAY: (&str, &str) = ("overlay: 10.255.0.0/24", "overlay: 10.254.0.0/24");

/// [`QuickStart::diagnose`] from a synchronous context.
fn diagnose(run: &QuickStart) -> String {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(run.diagnose()))
}

/// The operator's binding reconcile errors of `kind` (`api_403`, ...) from its metrics.
async fn binding_errors(run: &QuickStart, kind: &str) -> f64 {
    let text = run.op.http_get("/metrics").await.unwrap_or_default();
    metric_sum(&text, "vrouter_reconcile_errors_total", &[("controller", "binding"), ("kind", kind)])
}

/// A ValidatingAdmissionPolicy refusing generated configs that set time zone Antarctica/Troll,
/// with reason Invalid (HTTP 422).
const NO_TROLL: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-troll}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [vrouter.kojuro.date]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE]
        resources: [vrouterconfigs]
  validations:
    - expression: >-
        !(has(object.spec.commands) && object.spec.commands.contains('Antarctica/Troll')) &&
        !(has(object.spec.config) && object.spec.config.contains('Antarctica/Troll'))
      message: "time zone Antarctica/Troll is not allowed on routers"
      reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-troll}
spec:
  policyName: no-troll
  validationActions: [Deny]
"#;

/// The API server SIGKILLed and restarted (etcd kept) while a rollout runs: the operator's
/// watches resume through `410 Gone` and a re-list, without an operator restart, and the rollout
/// converges with every status written and one commit per revision. Then a write RBAC refuses
/// (403) and one an admission policy refuses (422): each becomes a Warning Event on the binding
/// naming the cause, retried with backoff (a handful of attempts, not a hot loop), and the
/// binding converges once the cause is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
async fn the_operator_rides_out_an_api_server_restart_and_refused_writes() {
    let mut run = QuickStart::start(1_500).await;

    // 1. RBAC refuses the generated configs' writes (403).
    let roles = run.cluster.get_json(&["get", "clusterroles"]);
    let role = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(SYSTEM) && n.ends_with("-resources")))
        .expect("the chart's resources ClusterRole")
        .clone();
    let mut original = role.clone();
    original["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    let mut reduced = original.clone();
    for rule in reduced["rules"].as_array_mut().unwrap() {
        if rule["resources"] == serde_json::json!(["vrouterconfigs"]) {
            rule["verbs"].as_array_mut().unwrap().retain(|v| v != "patch" && v != "create");
        }
    }
    assert_ne!(reduced, original, "the role grants vrouterconfigs patch");
    run.cluster.must(&["replace", "-f", "-"], Some(&reduced.to_string()));
    let forbidden_before = binding_errors(&run, "api_403").await;
    run.change_params(&[(PARIS, "timezone: UTC")]);
    eventually(
        60,
        "a Forbidden Event on binding base",
        || run.warnings("VRouterBinding", "base").iter().any(|(r, n)| r == "Forbidden" && n.contains("forbidden")),
        || format!("{:?}\n{}", run.warnings("VRouterBinding", "base"), diagnose(&run)),
    )
    .await;
    let first = binding_errors(&run, "api_403").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let attempts = binding_errors(&run, "api_403").await - forbidden_before;
    assert!(first > forbidden_before, "the refusal is counted");
    // Backoff 5 s, 10 s, 20 s..., plus a retry per change of a watched object: a handful in
    // ~35 s (a hot loop would make hundreds).
    assert!(attempts <= 8.0, "{attempts} refused attempts in 35 s: not backing off");
    assert!(run.none_run("time-zone \"UTC\""), "a router changed without its config");
    run.cluster.must(&["replace", "-f", "-"], Some(&original.to_string()));
    eventually(
        150,
        "UTC on every router once RBAC allows the writes",
        || run.all_run("time-zone \"UTC\""),
        || diagnose(&run),
    )
    .await;

    // 2. An admission policy refuses them (422).
    run.cluster.must(&["apply", "-f", "-"], Some(NO_TROLL));
    let probe = "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterConfig\nmetadata: {name: probe}\nspec:\n  targetRef: {name: hub}\n  commands: |\n    set system time-zone 'Antarctica/Troll'\n";
    eventually(
        30,
        "the policy in force",
        || {
            let r = run.cluster.kubectl(&["-n", ROUTERS, "apply", "--dry-run=server", "-f", "-"], Some(probe));
            !r.ok && r.stderr.contains("Antarctica/Troll is not allowed")
        },
        String::new,
    )
    .await;
    let invalid_before = binding_errors(&run, "api_422").await;
    run.change_params(&[(PARIS, TROLL)]);
    eventually(
        60,
        "an Invalid Event on binding base naming the policy",
        || {
            run.warnings("VRouterBinding", "base")
                .iter()
                .any(|(r, n)| r == "Invalid" && n.contains("Antarctica/Troll is not allowed"))
        },
        || format!("{:?}\n{}", run.warnings("VRouterBinding", "base"), diagnose(&run)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let attempts = binding_errors(&run, "api_422").await - invalid_before;
    // Backoff, plus a retry per change of a watched object (the routers' status): a handful.
    assert!((1.0..=8.0).contains(&attempts), "{attempts} refused attempts in ~25 s: not backing off");
    let hub = run.cluster.get_json(&["-n", ROUTERS, "get", "vrc", "base.hub"]);
    assert!(!hub["spec"].to_string().contains("Troll"), "the refused write is not stored: {}", hub["spec"]);
    run.cluster.must(&["delete", "validatingadmissionpolicybinding", "no-troll"], None);
    eventually(
        150,
        "Antarctica/Troll on every router once the policy is gone",
        || run.all_run("Antarctica/Troll"),
        || diagnose(&run),
    )
    .await;
    // 3. The API server restarted mid-rollout.
    run.settle(30).await;
    let before = run.revisions();
    // The overlay only (its binding rolls out one router at a time); the time zone stays.
    run.change_params(&[(PARIS, TROLL), OVERLAY]);
    eventually(
        90,
        "the rollout under way",
        || {
            let n = super::moved(&before, &run.revisions());
            n >= 1 && n < NAMES.len()
        },
        || diagnose(&run),
    )
    .await;
    run.cluster.plane.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(5)).await;
    run.cluster.plane.start_apiserver().unwrap_or_else(|e| panic!("API server restart: {e}"));
    eventually(
        180,
        "every router at the new revision after the API server restart",
        || super::all_moved(&before, &run.revisions()),
        || format!("{:?}\n{}", run.revisions(), run.op.log_text()),
    )
    .await;
    run.wait_ready(60).await;
    assert!(run.op.proc.running(), "the operator restarted:\n{}", run.op.log_text());
    let log = run.op.log_text();
    assert!(log.contains("watch error"), "the watches never broke (was the API server down?):\n{log}");
    assert!(
        log.contains("too old resource version") || log.contains("410"),
        "no watch resumed through 410 Gone:\n{log}"
    );
    for name in NAMES {
        assert!(run.routers.active(name).contains("10.254.0."), "{name}: {}", run.routers.active(name));
    }
    run.assert_one_commit_per_revision();
    // No status lost: every target and binding reports its current generation.
    for kind in ["vrt", "vrb"] {
        for item in run.cluster.get_json(&["-n", ROUTERS, "get", kind])["items"].as_array().unwrap() {
            assert_eq!(
                item["status"]["observedGeneration"], item["metadata"]["generation"],
                "{kind} {}",
                item["metadata"]["name"]
            );
        }
    }

    // 4. After the restart, the controllers still react to changes.
    run.change_params(&[(PARIS, "timezone: Asia/Tokyo"), OVERLAY]);
    eventually(
        120,
        "Asia/Tokyo on every router after the API server restart",
        || run.all_run("Asia/Tokyo"),
        || diagnose(&run),
    )
    .await;
    run.wait_ready(60).await;
    run.assert_one_commit_per_revision();
    // Events fail while the API server is down; none may be refused as invalid (too long).
    let log = run.op.log_text();
    assert!(
        !log.lines().any(|l| l.contains("cannot publish an Event") && l.contains("is invalid")),
        "an Event was refused:\n{log}"
    );
}
