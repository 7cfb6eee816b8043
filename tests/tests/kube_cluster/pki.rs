//! The PKI in a real Secret: lost with enrolled routers, it is refused, not replaced.

use std::time::{Duration, Instant};

use vrouter_tests::cluster::{eventually, wait_ready};

use super::{NAMES, QuickStart, SYSTEM};

/// The PKI Secret (its CA) deleted while routers are enrolled, their records kept in the bucket
/// Secrets: the operator refuses to create a new CA
/// (exit non-zero, nothing written, a `PKISecretLost` Warning Event on its pod saying what to
/// do); the Secret restored from a backup, the operator starts with the same CA and every router
/// reconnects with its certificate, nothing re-enrolled and nothing committed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(kube_plane),
    ignore = "needs VROUTER_KUBE_BIN=<dir with etcd, kube-apiserver, kube-controller-manager> at build time"
)]
async fn a_lost_pki_secret_is_refused_and_a_restored_one_keeps_every_router() {
    let mut run = QuickStart::start(0).await;
    let secret = run.release.flag("pki-secret").expect("the chart keeps the PKI in a Secret");
    let mut backup = run.cluster.get_json(&["-n", SYSTEM, "get", "secret", &secret]);
    let meta = backup["metadata"].as_object_mut().unwrap();
    for field in ["resourceVersion", "uid", "creationTimestamp", "managedFields"] {
        meta.remove(field);
    }
    // The routers' records are in the bucket Secrets beside it (pki/buckets.rs), not in it.
    let keys: Vec<&String> = backup["data"].as_object().unwrap().keys().collect();
    assert!(keys.iter().any(|k| *k == "ca.crt") && !keys.iter().any(|k| k.starts_with("router-")), "{keys:?}");
    let all = run.cluster.get_json(&["-n", SYSTEM, "get", "secrets"]);
    let records: usize = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(&format!("{secret}-"))))
        .flat_map(|s| s["data"].as_object().into_iter().flat_map(|d| d.keys()))
        .filter(|k| k.starts_with("router-"))
        .count();
    assert_eq!(records, NAMES.len(), "one record per router in the buckets: {all}");
    let commits_before: Vec<_> = NAMES.iter().map(|n| run.routers.commits(n)).collect();

    // Lost: the operator stops, the Secret is deleted, the operator starts again.
    run.op.proc.kill();
    run.cluster.must(&["-n", SYSTEM, "delete", "secret", &secret], None);
    let pod = run.op.pod.clone();
    let mut refused = run.release.start(&run.cluster, &pod, run.ports, &run.state);
    let started = Instant::now();
    let ok = refused.proc.wait(Duration::from_secs(60)).await;
    let log = refused.log_text();
    assert!(!ok && started.elapsed() < Duration::from_secs(60), "the operator did not refuse to start:\n{log}");
    for want in ["holds no CA, but 3 VRouterTargets show enrolled routers", "--allow-new-ca", "Restore the Secret"] {
        assert!(log.contains(want), "the refusal lacks {want:?}:\n{log}");
    }
    let gone = run.cluster.kubectl(&["-n", SYSTEM, "get", "secret", &secret], None);
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "a refused start wrote the Secret: {}", gone.stdout);
    let events = run.cluster.get_json(&["-n", SYSTEM, "get", "events.events.k8s.io"]);
    let event = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "PKISecretLost")
        .unwrap_or_else(|| panic!("no PKISecretLost Event: {events}"));
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "Pod");
    assert_eq!(event["regarding"]["name"], pod.as_str());
    let note = event["note"].as_str().unwrap_or_default();
    assert!(note.contains("kubectl vrouter enroll") && note.contains("Restore the Secret"), "{note}");

    // Restored from the backup: the same CA, every router back with its certificate.
    run.cluster.must(&["apply", "-f", "-"], Some(&backup.to_string()));
    let op = run.release.start(&run.cluster, &pod, run.ports, &run.state);
    wait_ready(&op, || op.log_text()).await;
    eventually(
        90,
        "every router reconnected",
        || run.routers.connected() == NAMES.len() && op.log_text().matches("agent connected").count() >= NAMES.len(),
        || op.log_text(),
    )
    .await;
    let restored = run.cluster.get_json(&["-n", SYSTEM, "get", "secret", &secret]);
    assert_eq!(restored["data"]["ca.crt"], backup["data"]["ca.crt"], "the restored CA is the one in use");
    assert!(!op.log_text().contains("router enrolled"), "a router re-enrolled:\n{}", op.log_text());
    run.wait_ready(60).await;
    let commits_after: Vec<_> = NAMES.iter().map(|n| run.routers.commits(n)).collect();
    assert_eq!(commits_after, commits_before, "nothing committed again");
    run.op = op;
}
