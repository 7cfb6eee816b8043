use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::mock_api::{expect, failure, mock};

const SECS_15: Duration = Duration::from_secs(15);

fn held_by(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
    LeaseSpec { holder_identity: holder.map(str::to_owned), lease_duration_seconds: duration, ..LeaseSpec::default() }
}

#[test]
fn no_lease_is_created() {
    assert_eq!(decide(None, Duration::ZERO, "me", SECS_15), Decision::Create);
}

#[test]
fn a_lease_without_holder_is_taken_at_once() {
    for holder in [None, Some("")] {
        let spec = held_by(holder, Some(15));
        assert_eq!(decide(Some(&spec), Duration::ZERO, "me", SECS_15), Decision::TakeOver, "{holder:?}");
    }
}

#[test]
fn my_own_lease_is_renewed_even_when_it_looks_expired() {
    let spec = held_by(Some("me"), Some(15));
    assert_eq!(decide(Some(&spec), Duration::ZERO, "me", SECS_15), Decision::Renew);
    assert_eq!(decide(Some(&spec), Duration::from_secs(3600), "me", SECS_15), Decision::Renew);
}

#[test]
fn a_live_lease_of_another_is_followed_until_it_expires() {
    let spec = held_by(Some("other"), Some(15));
    assert_eq!(
        decide(Some(&spec), Duration::ZERO, "me", SECS_15),
        Decision::Follow { holder: "other".into(), expires_in: SECS_15 }
    );
    assert_eq!(
        decide(Some(&spec), Duration::from_secs(14), "me", SECS_15),
        Decision::Follow { holder: "other".into(), expires_in: Duration::from_secs(1) }
    );
    // Expired at exactly its duration.
    assert_eq!(decide(Some(&spec), SECS_15, "me", SECS_15), Decision::TakeOver);
    assert_eq!(decide(Some(&spec), Duration::from_secs(16), "me", SECS_15), Decision::TakeOver);
}

#[test]
fn the_lease_own_duration_wins_and_a_missing_or_invalid_one_falls_back() {
    let long = held_by(Some("other"), Some(60));
    assert!(matches!(decide(Some(&long), Duration::from_secs(30), "me", SECS_15), Decision::Follow { .. }));
    assert_eq!(decide(Some(&long), Duration::from_secs(60), "me", SECS_15), Decision::TakeOver);
    for d in [None, Some(0), Some(-5)] {
        let spec = held_by(Some("other"), d);
        assert!(matches!(decide(Some(&spec), Duration::from_secs(14), "me", SECS_15), Decision::Follow { .. }));
        assert_eq!(decide(Some(&spec), SECS_15, "me", SECS_15), Decision::TakeOver, "{d:?}");
    }
}

#[test]
fn a_leader_leads_until_its_renew_deadline() {
    let deadline = Duration::from_secs(10);
    assert!(still_leading(Duration::ZERO, deadline));
    assert!(still_leading(Duration::from_millis(9_999), deadline));
    assert!(!still_leading(deadline, deadline));
}

#[test]
fn settings_are_checked() {
    let ok = LeaseConfig::new("vrouter-operator", "sys", "pod-0");
    assert_eq!(ok.validate(), Ok(()));
    let mut c = ok.clone();
    c.identity = String::new();
    assert!(c.validate().unwrap_err().contains("identity"));
    let mut c = ok.clone();
    c.renew_deadline = c.lease_duration;
    assert!(c.validate().unwrap_err().contains("lease duration"));
    let mut c = ok.clone();
    c.retry_period = c.renew_deadline;
    assert!(c.validate().unwrap_err().contains("renew deadline"));
    let mut c = ok;
    c.retry_period = Duration::ZERO;
    assert!(c.validate().unwrap_err().contains("retry period"));
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/sys/leases/vrouter-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/sys/leases?";

fn lease(holder: Option<&str>, rv: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "vrouter-operator", "namespace": "sys", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions,
                 "renewTime": "2026-01-01T00:00:00.000000Z"}
    })
}

fn elector(client: kube::Client) -> Elector {
    Elector::new(client, LeaseConfig::new("vrouter-operator", "sys", "pod-0")).unwrap()
}

#[tokio::test]
async fn acquires_by_creating_an_absent_lease() {
    let mut created = lease(Some("pod-0"), "1", 0);
    created["metadata"]["resourceVersion"] = json!("1");
    let (client, api) = mock(vec![failure("GET", LEASE, 404, "NotFound"), expect("POST", LEASES, created)]);
    let mut e = elector(client);
    assert!(e.step(Instant::now()).await);
    let bodies = api.await.unwrap();
    let spec = &bodies[1]["spec"];
    assert_eq!(spec["holderIdentity"], "pod-0");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["leaseTransitions"], 0);
    assert!(spec["renewTime"].is_string() && spec["acquireTime"].is_string());
    assert_eq!(bodies[1]["metadata"]["name"], "vrouter-operator");
}

#[tokio::test]
async fn losing_the_create_race_follows() {
    let (client, api) =
        mock(vec![failure("GET", LEASE, 404, "NotFound"), failure("POST", LEASES, 409, "AlreadyExists")]);
    let mut e = elector(client);
    assert!(!e.step(Instant::now()).await);
    api.await.unwrap();
}

#[tokio::test]
async fn does_not_take_a_live_lease_and_takes_it_over_once_expired() {
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(Some("pod-1"), "7", 2)),
        expect("GET", LEASE, lease(Some("pod-1"), "7", 2)),
        expect("GET", LEASE, lease(Some("pod-1"), "7", 2)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "8", 3)),
    ]);
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(!e.step(t0).await, "first sight: live");
    assert!(!e.step(t0 + Duration::from_secs(14)).await, "unchanged for 14 s of 15: still live");
    // Unchanged for its whole duration: expired, taken over with a write fenced by its version.
    assert!(e.step(t0 + Duration::from_secs(15)).await);
    let bodies = api.await.unwrap();
    let put = &bodies[3];
    assert_eq!(put["metadata"]["resourceVersion"], "7");
    assert_eq!(put["spec"]["holderIdentity"], "pod-0");
    assert_eq!(put["spec"]["leaseTransitions"], 3);
    assert_ne!(put["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
}

#[tokio::test]
async fn a_renewed_lease_of_another_stays_live() {
    // The holder renews (new resourceVersion): the expiry clock starts again.
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(Some("pod-1"), "7", 0)),
        expect("GET", LEASE, lease(Some("pod-1"), "9", 0)),
        expect("GET", LEASE, lease(Some("pod-1"), "9", 0)),
    ]);
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(!e.step(t0).await);
    assert!(!e.step(t0 + Duration::from_secs(14)).await);
    assert!(!e.step(t0 + Duration::from_secs(20)).await, "seen unchanged for 6 s only");
    api.await.unwrap();
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(None, "4", 1)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "5", 2)),
    ]);
    let mut e = elector(client);
    assert!(e.step(Instant::now()).await);
    let bodies = api.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "4");
    assert_eq!(bodies[1]["spec"]["leaseTransitions"], 2);
}

#[tokio::test]
async fn the_leader_renews_from_its_own_write_without_reading() {
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(None, "4", 1)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "5", 2)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "6", 2)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "7", 2)),
    ]);
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(e.step(t0).await);
    assert!(e.step(t0 + Duration::from_secs(2)).await);
    assert!(e.step(t0 + Duration::from_secs(4)).await);
    let bodies = api.await.unwrap();
    assert_eq!(bodies[2]["metadata"]["resourceVersion"], "5", "renewal fenced by the version it wrote");
    assert_eq!(bodies[3]["metadata"]["resourceVersion"], "6");
    assert_eq!(bodies[3]["spec"]["leaseTransitions"], 2, "a renewal is not a transition");
    assert_eq!(bodies[3]["spec"]["holderIdentity"], "pod-0");
}

#[tokio::test]
async fn a_conflicting_renewal_steps_down_at_once_then_reads_again() {
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(None, "4", 1)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "5", 2)),
        failure("PUT", format!("{LEASE}?"), 409, "Conflict"),
        expect("GET", LEASE, lease(Some("pod-1"), "6", 3)),
    ]);
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(e.step(t0).await);
    assert!(!e.step(t0 + Duration::from_secs(2)).await, "stale write: lost");
    assert!(!e.leading());
    assert!(!e.step(t0 + Duration::from_secs(4)).await, "pod-1 holds it now");
    api.await.unwrap();
}

#[tokio::test]
async fn failing_renewals_keep_leading_until_the_renew_deadline() {
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(None, "4", 1)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "5", 2)),
        failure("PUT", format!("{LEASE}?"), 500, "InternalError"),
        failure("PUT", format!("{LEASE}?"), 500, "InternalError"),
    ]);
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(e.step(t0).await);
    assert!(e.step(t0 + Duration::from_secs(9)).await, "9 s without renewal: within the 10 s deadline");
    assert!(!e.step(t0 + Duration::from_secs(10)).await, "deadline passed: step down");
    api.await.unwrap();
}

#[tokio::test]
async fn a_follower_that_cannot_read_does_not_lead() {
    let (client, api) = mock(vec![failure("GET", LEASE, 500, "InternalError")]);
    let mut e = elector(client);
    assert!(!e.step(Instant::now()).await);
    api.await.unwrap();
}

#[tokio::test]
async fn release_clears_the_holder_with_a_fenced_write() {
    let (client, api) = mock(vec![
        expect("GET", LEASE, lease(None, "4", 1)),
        expect("PUT", format!("{LEASE}?"), lease(Some("pod-0"), "5", 2)),
        expect("PUT", format!("{LEASE}?"), lease(None, "6", 2)),
    ]);
    let mut e = elector(client);
    assert!(e.step(Instant::now()).await);
    e.release().await;
    assert!(!e.leading());
    e.release().await; // not leading: no call
    let bodies = api.await.unwrap();
    assert_eq!(bodies[2]["metadata"]["resourceVersion"], "5");
    assert!(bodies[2]["spec"]["holderIdentity"].is_null());
}

#[tokio::test]
async fn run_publishes_leadership_and_releases_on_shutdown() {
    let (client, api) = mock(vec![
        failure("GET", LEASE, 404, "NotFound"),
        expect("POST", LEASES, lease(Some("pod-0"), "1", 0)),
        expect("PUT", format!("{LEASE}?"), lease(None, "2", 0)),
    ]);
    let shutdown = CancellationToken::new();
    let (mut rx, task) = elector(client).spawn(shutdown.clone());
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|l| *l)).await.unwrap().unwrap();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
    assert!(!*rx.borrow());
    api.await.unwrap();
}

/// Records the runs of `lead`'s work: (started, stopped) counts and the changes reported.
#[derive(Default)]
struct Runs {
    started: usize,
    stopped: usize,
    changes: Vec<bool>,
}

#[tokio::test]
async fn work_runs_only_while_leading_and_is_cancelled_on_loss() {
    let (tx, rx) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let runs = Arc::new(Mutex::new(Runs::default()));
    let (r1, r2) = (runs.clone(), runs.clone());
    let (running_tx, mut running) = watch::channel(0usize);
    let running_tx = Arc::new(running_tx);
    let task = tokio::spawn(lead(
        rx,
        shutdown.clone(),
        move |token: CancellationToken| {
            let runs = r1.clone();
            let running_tx = running_tx.clone();
            async move {
                runs.lock().unwrap().started += 1;
                running_tx.send_modify(|n| *n += 1);
                token.cancelled().await;
                runs.lock().unwrap().stopped += 1;
            }
        },
        move |l| r2.lock().unwrap().changes.push(l),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runs.lock().unwrap().started, 0, "not leading: nothing runs");
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.wait_for(|n| *n == 1)).await.unwrap().unwrap();
    tx.send(false).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while runs.lock().unwrap().changes.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.wait_for(|n| *n == 2)).await.unwrap().unwrap();
    {
        let r = runs.lock().unwrap();
        assert_eq!((r.started, r.stopped), (2, 1), "the first run was stopped before the second started");
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
    let r = runs.lock().unwrap();
    assert_eq!((r.started, r.stopped), (2, 2));
    assert_eq!(r.changes, vec![true, false, true, false]);
}
