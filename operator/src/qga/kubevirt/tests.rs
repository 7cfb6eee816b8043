//! The KubeVirt provider and transport against kube's mock API service (the VMI read, the pod
//! list, the exec request) and a fake pod executor (virsh's outputs).

use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::virsh::{ExecExit, VirshOutput};
use super::*;
use crate::qga::{QgaClient, QgaClientConfig};

const VMI: &str = "/apis/kubevirt.io/v1/namespaces/net/virtualmachineinstances/r1";
const PODS: &str =
    "/api/v1/namespaces/net/pods?&labelSelector=kubevirt.io%3Dvirt-launcher%2Ckubevirt.io%2Fcreated-by%3Duid-r1";

/// One expected API call and the answer.
struct Expect {
    method: &'static str,
    uri: String,
    code: u16,
    respond: Value,
}

fn expect(method: &'static str, uri: &str, respond: Value) -> Expect {
    Expect { method, uri: uri.to_owned(), code: 200, respond }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code})
}

/// A client whose API server answers exactly `calls`, in order; the task yields the URIs seen.
fn mock(calls: Vec<Expect>) -> (Client, tokio::task::JoinHandle<Vec<String>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for e in calls {
            let (req, send) = handle.next_request().await.expect("fewer API calls than expected");
            assert_eq!(req.method().as_str(), e.method, "method of {}", req.uri());
            let uri = req.uri().to_string();
            if !e.uri.is_empty() {
                assert_eq!(uri, e.uri);
            }
            seen.push(uri);
            let body = Body::from(serde_json::to_vec(&e.respond).unwrap());
            send.send_response(Response::builder().status(e.code).body(body).unwrap());
        }
        if let Ok(Some((req, _))) = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await {
            panic!("more API calls than expected: {} {}", req.method(), req.uri());
        }
        seen
    });
    (Client::new(service, "default"), task)
}

fn vmi(phase: &str, node: &str, migration: Option<Value>) -> Value {
    let mut status = json!({
        "phase": phase,
        "nodeName": node,
        "activePods": {"uid-pod-a": "n1", "uid-pod-b": "n2"},
    });
    if let Some(migration) = migration {
        status["migrationState"] = migration;
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "r1", "namespace": "net", "uid": "uid-r1"},
        "spec": {},
        "status": status,
    })
}

fn launcher(name: &str, uid: &str, node: &str, phase: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "net", "uid": uid,
                     "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "uid-r1"}},
        "spec": {"nodeName": node, "containers": [{"name": "compute"}]},
        "status": {"phase": phase},
    })
}

/// Both launcher pods of a migration; the source first, so "first item" would be wrong.
fn both_pods() -> Value {
    json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [
            launcher("virt-launcher-r1-aaaaa", "uid-pod-a", "n1", "Running"),
            launcher("virt-launcher-r1-bbbbb", "uid-pod-b", "n2", "Running"),
        ],
    })
}

fn completed_migration() -> Value {
    json!({"sourcePod": "virt-launcher-r1-aaaaa", "targetPod": "virt-launcher-r1-bbbbb",
           "sourceNode": "n1", "targetNode": "n2", "completed": true})
}

/// namespace, pod, container, argv.
type ExecCall = (String, String, String, Vec<String>);

/// A [`PodExec`] that records what it was asked and answers with canned virsh outputs.
#[derive(Default)]
struct FakeExec {
    calls: Mutex<Vec<ExecCall>>,
    outputs: Mutex<Vec<VirshOutput>>,
    hang: bool,
    /// Answer as an executor whose output overflowed.
    overflow: bool,
}

impl FakeExec {
    fn answering(outputs: Vec<VirshOutput>) -> Arc<Self> {
        Arc::new(Self { outputs: Mutex::new(outputs), ..Self::default() })
    }
}

#[async_trait]
impl PodExec for FakeExec {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<VirshOutput, QgaError> {
        self.calls.lock().unwrap().push((namespace.into(), pod.into(), container.into(), argv.to_vec()));
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.overflow {
            return Err(QgaError::TooLarge { command: argv[0].clone(), what: "output".into(), limit: 1 });
        }
        let mut outputs = self.outputs.lock().unwrap();
        assert!(!outputs.is_empty(), "more execs than expected");
        Ok(outputs.remove(0))
    }
}

fn ok(stdout: &str) -> VirshOutput {
    VirshOutput { stdout: stdout.as_bytes().to_vec(), stderr: Vec::new(), exit: ExecExit::Success }
}

fn failed(stderr: &str) -> VirshOutput {
    VirshOutput { stdout: Vec::new(), stderr: stderr.as_bytes().to_vec(), exit: ExecExit::Code(1) }
}

#[tokio::test]
async fn after_a_migration_the_transport_execs_virsh_in_the_target_pod() {
    let (client, api) = mock(vec![
        expect("GET", VMI, vmi("Running", "n2", Some(completed_migration()))),
        expect("GET", PODS, both_pods()),
    ]);
    let fake = FakeExec::answering(vec![ok("{\"return\":{}}\n")]);
    let provider = KubevirtProvider::with_exec(client, "net", "r1", fake.clone());
    let transport = provider.transport().await.unwrap();
    api.await.unwrap();
    assert_eq!(transport.target(), "kubevirt pod net/virt-launcher-r1-bbbbb (domain net_r1)");

    QgaClient::with_config(transport, QgaClientConfig::default()).ping().await.unwrap();
    let calls = fake.calls.lock().unwrap();
    let (namespace, pod, container, argv) = &calls[0];
    assert_eq!((namespace.as_str(), pod.as_str(), container.as_str()), ("net", "virt-launcher-r1-bbbbb", "compute"));
    assert_eq!(argv, &["virsh", "qemu-agent-command", "--timeout", "30", "net_r1", r#"{"execute":"guest-ping"}"#]);
}

#[tokio::test]
async fn during_a_migration_the_source_pod_is_used() {
    let migrating = json!({"sourcePod": "virt-launcher-r1-aaaaa", "targetPod": "virt-launcher-r1-bbbbb",
                           "sourceNode": "n1", "targetNode": "n2"});
    let (client, api) = mock(vec![
        expect("GET", VMI, vmi("Running", "n1", Some(migrating.clone()))),
        expect("GET", PODS, both_pods()),
        expect("GET", VMI, vmi("Running", "n1", Some(migrating))),
        expect("GET", PODS, both_pods()),
    ]);
    let provider = KubevirtProvider::with_exec(client, "net", "r1", FakeExec::answering(vec![]));
    let state = provider.state().await.unwrap();
    assert_eq!(
        state,
        VmState { running: true, location: Some("n1/virt-launcher-r1-aaaaa".into()), instance: Some("uid-r1".into()) }
    );
    let transport = provider.transport().await.unwrap();
    assert!(transport.target().contains("virt-launcher-r1-aaaaa"), "{}", transport.target());
    api.await.unwrap();
}

#[tokio::test]
async fn a_missing_vmi_means_not_running() {
    let not_found = status(404, "NotFound", "virtualmachineinstances.kubevirt.io \"r1\" not found");
    let (client, api) = mock(vec![
        Expect { method: "GET", uri: VMI.into(), code: 404, respond: not_found.clone() },
        Expect { method: "GET", uri: VMI.into(), code: 404, respond: not_found },
    ]);
    let provider = KubevirtProvider::with_exec(client, "net", "r1", FakeExec::answering(vec![]));
    assert_eq!(provider.state().await.unwrap(), VmState::default());
    let Err(err) = provider.transport().await else { panic!("a transport") };
    assert!(err.to_string().contains("kubevirt vm/net/r1") && err.to_string().contains("not running"), "{err}");
    api.await.unwrap();
}

#[tokio::test]
async fn a_vmi_that_is_not_running_yet_has_no_transport() {
    let (client, api) =
        mock(vec![expect("GET", VMI, vmi("Scheduled", "n1", None)), expect("GET", VMI, vmi("Scheduled", "n1", None))]);
    let provider = KubevirtProvider::with_exec(client, "net", "r1", FakeExec::answering(vec![]));
    let state = provider.state().await.unwrap();
    assert_eq!(state, VmState { running: false, location: Some("n1".into()), instance: Some("uid-r1".into()) });
    // transport(): the pods are not even listed.
    let Err(err) = provider.transport().await else { panic!("a transport") };
    assert!(err.to_string().contains("phase Scheduled"), "{err}");
    api.await.unwrap();
}

#[tokio::test]
async fn api_errors_name_the_vm_and_the_call() {
    let (client, api) = mock(vec![Expect {
        method: "GET",
        uri: VMI.into(),
        code: 403,
        respond: status(403, "Forbidden", "virtualmachineinstances.kubevirt.io \"r1\" is forbidden: User cannot get"),
    }]);
    let provider = KubevirtProvider::with_exec(client, "net", "r1", FakeExec::answering(vec![]));
    let err = provider.state().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, QgaError::Transport { .. }), "{err:?}");
    assert!(
        text.contains("kubevirt vm/net/r1") && text.contains("VirtualMachineInstance") && text.contains("forbidden"),
        "{text}"
    );
    api.await.unwrap();
}

#[tokio::test]
async fn the_exec_request_carries_the_container_and_the_argv_in_order() {
    let (client, api) = mock(vec![
        expect("GET", VMI, vmi("Running", "n2", Some(completed_migration()))),
        expect("GET", PODS, both_pods()),
        // The exec: the mock refuses the upgrade the way an API server refuses a user without
        // pods/exec.
        Expect {
            method: "GET",
            uri: String::new(),
            code: 403,
            respond: status(
                403,
                "Forbidden",
                "pods \"virt-launcher-r1-bbbbb\" is forbidden: cannot create resource \"pods/exec\"",
            ),
        },
    ]);
    let provider = KubevirtProvider::new(client, "net", "r1");
    let transport = provider.transport().await.unwrap();
    let arguments = json!({"path": "/bin/echo", "arg": ["a b", "'; reboot", "$(id)"], "capture-output": true});
    let err = transport.execute("guest-exec", Some(arguments.clone()), Duration::from_secs(5)).await.unwrap_err();
    let seen = api.await.unwrap();

    let exec: http::Uri = seen[2].parse().unwrap();
    assert_eq!(exec.path(), "/api/v1/namespaces/net/pods/virt-launcher-r1-bbbbb/exec");
    let pairs: Vec<(String, String)> = exec
        .query()
        .unwrap()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    assert!(pairs.contains(&("container".into(), "compute".into())), "{pairs:?}");
    assert!(pairs.contains(&("stdout".into(), "true".into())) && pairs.contains(&("stderr".into(), "true".into())));
    assert!(!pairs.iter().any(|(k, _)| k == "stdin" || k == "tty"), "{pairs:?}");
    let command: Vec<&str> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
    assert_eq!(command[..5], ["virsh", "qemu-agent-command", "--timeout", "5", "net_r1"]);
    assert_eq!(command.len(), 6);
    let request: Value = serde_json::from_str(command[5]).unwrap();
    assert_eq!(request, json!({"execute": "guest-exec", "arguments": arguments}));

    match err {
        QgaError::Transport { target, message } => {
            assert!(target.contains("net/virt-launcher-r1-bbbbb") && target.contains("compute"), "{target}");
            assert!(message.contains("exec") && message.contains("pods/exec"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn transport_with(fake: Arc<FakeExec>) -> KubevirtTransport {
    KubevirtTransport::new(fake, "net", "r1", "virt-launcher-r1-aaaaa")
}

#[tokio::test]
async fn a_whole_file_round_trip_through_virsh_outputs() {
    // The client first checks with guest-info that the file commands are enabled.
    let info = r#"{"return":{"version":"7.2.0","supported_commands":[
        {"name":"guest-file-open","enabled":true,"success-response":true},
        {"name":"guest-file-write","enabled":true,"success-response":true},
        {"name":"guest-file-close","enabled":true,"success-response":true}]}}"#;
    let fake = FakeExec::answering(vec![
        ok(info),
        ok(r#"{"return":1000}"#),
        ok(r#"{"return":{"count":5,"eof":false}}"#),
        ok(r#"{"return":{}}"#),
    ]);
    let client = QgaClient::with_config(Arc::new(transport_with(fake.clone())), QgaClientConfig::default());
    client.write_file("/tmp/x", b"hello", crate::qga::WriteMode::Truncate).await.unwrap();
    let calls = fake.calls.lock().unwrap();
    let commands: Vec<Value> =
        calls.iter().skip(1).map(|(_, _, _, argv)| serde_json::from_str(&argv[5]).unwrap()).collect();
    assert_eq!(commands[0], json!({"execute": "guest-file-open", "arguments": {"path": "/tmp/x", "mode": "w"}}));
    assert_eq!(
        commands[1],
        json!({"execute": "guest-file-write", "arguments": {"handle": 1000, "buf-b64": "aGVsbG8="}})
    );
    assert_eq!(commands[2], json!({"execute": "guest-file-close", "arguments": {"handle": 1000}}));
}

#[tokio::test]
async fn virsh_errors_become_clear_qga_errors() {
    let fake = FakeExec::answering(vec![
        failed(
            "error: internal error: unable to execute QEMU agent command 'guest-get-osinfo': The command guest-get-osinfo has not been found",
        ),
        failed("error: Guest agent is not responding: QEMU guest agent is not connected"),
        failed(
            "error: internal error: unable to execute QEMU agent command 'guest-file-open': Failed to open file '/x': No such file or directory",
        ),
    ]);
    let transport = transport_with(fake);
    let timeout = Duration::from_secs(3);
    assert!(matches!(transport.execute("guest-get-osinfo", None, timeout).await, Err(QgaError::NotSupported { .. })));
    match transport.execute("guest-ping", None, timeout).await {
        Err(QgaError::Transport { target, message }) => {
            assert!(target.contains("virt-launcher-r1-aaaaa"), "{target}");
            assert!(message.contains("does not answer"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match transport.execute("guest-file-open", Some(json!({"path": "/x", "mode": "r"})), timeout).await {
        Err(QgaError::Agent { desc, .. }) => assert!(desc.contains("No such file"), "{desc}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_requests_fail_before_any_exec() {
    let fake = FakeExec::answering(vec![]);
    let transport = transport_with(fake.clone());
    let huge = json!({"handle": 1, "buf-b64": "A".repeat(200 * 1024)});
    let err = transport.execute("guest-file-write", Some(huge), Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, QgaError::TooLarge { .. }), "{err:?}");
    assert!(fake.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_exec_that_never_ends_times_out() {
    let fake = Arc::new(FakeExec { hang: true, ..FakeExec::default() });
    let transport = transport_with(fake).with_exec_overhead(Duration::ZERO);
    let err = transport.execute("guest-ping", None, Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, QgaError::Timeout { ref command, .. } if command == "guest-ping"), "{err:?}");
}

#[tokio::test]
async fn an_overflowing_output_names_the_qga_command() {
    let fake = Arc::new(FakeExec { overflow: true, ..FakeExec::default() });
    let err = transport_with(fake).execute("guest-file-read", None, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, QgaError::TooLarge { ref command, .. } if command == "guest-file-read"), "{err:?}");
}
