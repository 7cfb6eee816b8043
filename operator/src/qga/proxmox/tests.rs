//! The Proxmox provider and transport against a local HTTP(S) server that answers like the PVE
//! API (shapes as in qemu-server's `API2/Qemu/Agent.pm` and pve-http-server): Latin-1 output,
//! 0/1 flags, `{"data": …}` envelopes, error messages, the 64 KiB body limit, VMs on nodes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use serde_json::{Value, json};

use super::codec::{latin1_bytes, latin1_string};
use super::*;
use crate::qga::{ExecRequest, OsInfoSource, QgaClient, QgaClientConfig, WriteMode};

const TOKEN_ID: &str = "root@pam!vrouter";
const SECRET: &str = "0d1e-s3cret";

#[derive(Debug, Clone)]
struct Vm {
    node: String,
    status: String,
    uptime: u64,
}

#[derive(Debug, Clone)]
struct Logged {
    method: String,
    path: String,
    auth: Option<String>,
    body: Value,
    status: u16,
}

/// The fake cluster's state.
#[derive(Debug, Default)]
struct Pve {
    vms: HashMap<u32, Vm>,
    files: HashMap<String, Vec<u8>>,
    /// PVE exec-status data of finished programs.
    execs: HashMap<i64, Value>,
    /// How many `exited: 0` answers each new program gets before its result.
    running_polls: u32,
    polls_left: HashMap<i64, u32>,
    next_pid: i64,
    log: Vec<Logged>,
    forbidden: bool,
    no_osinfo: bool,
    /// Answer everything with this status and message.
    fail_all: Option<(u16, String)>,
}

type Shared = Arc<Mutex<Pve>>;

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(data: Value) -> (u16, Value) {
    (200, json!({"data": data}))
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({"data": null, "message": format!("{message}\n")}))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| percent_decode(v))
}

async fn handle(State(state): State<Shared>, request: Request) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let auth = request.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned());
    let length: usize =
        request.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
    let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };

    let mut pve = state.lock().unwrap();
    let (status, answer) = if let Some((status, message)) = pve.fail_all.clone() {
        error(status, &message)
    } else if auth.as_deref() != Some(&format!("PVEAPIToken={TOKEN_ID}={SECRET}")) {
        error(401, "authentication failure")
    } else if length > 64 * 1024 {
        error(501, "for data too large")
    } else {
        route(&mut pve, &method, &path, &query, &body)
    };
    let full_path = if query.is_empty() { path } else { format!("{path}?{query}") };
    pve.log.push(Logged { method, path: full_path, auth, body, status });
    json_response(status, answer)
}

fn route(pve: &mut Pve, method: &str, path: &str, query: &str, body: &Value) -> (u16, Value) {
    let Some(path) = path.strip_prefix("/api2/json") else { return error(501, "no such uri") };
    if (method, path) == ("GET", "/cluster/resources") {
        assert_eq!(query, "type=vm");
        let mut vms: Vec<Value> = pve
            .vms
            .iter()
            .map(|(vmid, vm)| {
                json!({"id": format!("qemu/{vmid}"), "type": "qemu", "vmid": vmid, "node": vm.node,
                       "status": vm.status, "uptime": vm.uptime, "name": format!("vm{vmid}"), "maxmem": 1 << 30})
            })
            .collect();
        // Another kind of guest, to be skipped.
        vms.push(
            json!({"id": "lxc/200", "type": "lxc", "vmid": 200, "node": "pve1", "status": "running", "uptime": 5}),
        );
        return ok(json!(vms));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let ["", "nodes", node, "qemu", vmid, "agent", command] = parts.as_slice() else {
        return error(501, &format!("Method '{method} {path}' not implemented"));
    };
    let vmid: u32 = vmid.parse().unwrap();
    match pve.vms.get(&vmid) {
        Some(vm) if vm.node == *node => {
            if vm.status != "running" {
                return error(500, &format!("VM {vmid} is not running"));
            }
        }
        _ => return error(500, &format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")),
    }
    if pve.forbidden {
        return error(403, &format!("Permission check failed (/vms/{vmid}, VM.Monitor)"));
    }
    match (method, *command) {
        ("POST", "ping") => ok(json!({"result": {}})),
        ("GET", "info") => {
            let names = [
                "guest-ping",
                "guest-exec",
                "guest-exec-status",
                "guest-file-open",
                "guest-file-read",
                "guest-file-write",
                "guest-file-close",
                "guest-get-osinfo",
            ];
            let commands: Vec<_> =
                names.iter().map(|n| json!({"name": n, "enabled": true, "success-response": true})).collect();
            ok(json!({"result": {"version": "9.2.0", "supported_commands": commands}}))
        }
        ("GET", "get-osinfo") if pve.no_osinfo => error(
            500,
            &format!(
                "VM {vmid} qmp command 'guest-get-osinfo' failed - The command guest-get-osinfo has not been found"
            ),
        ),
        ("GET", "get-osinfo") => ok(json!({"result": {"id": "vyos", "name": "VyOS", "version-id": "1.5"}})),
        ("POST", "exec") => exec(pve, body),
        ("GET", "exec-status") => {
            let pid: i64 = query_param(query, "pid").unwrap().parse().unwrap();
            let polls = pve.polls_left.entry(pid).or_insert(0);
            if *polls > 0 {
                *polls -= 1;
                return ok(json!({"exited": 0}));
            }
            match pve.execs.get(&pid) {
                Some(data) => ok(data.clone()),
                None => error(500, "Agent error: Invalid parameter 'pid'"),
            }
        }
        ("GET", "file-read") => {
            let file = query_param(query, "file").unwrap();
            match pve.files.get(&file) {
                Some(data) => ok(json!({"content": latin1_string(data), "bytes-read": data.len()})),
                None => error(500, &format!("Agent error: failed to open file '{file}': No such file or directory")),
            }
        }
        ("POST", "file-write") => {
            let content = body["content"].as_str().unwrap();
            if content.chars().count() > 61_440 {
                return (
                    400,
                    json!({"data": null, "errors": {"content": "value may only be 61440 characters long\n"}}),
                );
            }
            assert_eq!(body["encode"], json!(0), "content is always sent as base64");
            let file = body["file"].as_str().unwrap().to_owned();
            if file.starts_with("/missing/") {
                return error(500, &format!("Agent error: failed to open file '{file}': No such file or directory"));
            }
            pve.files.insert(file, STANDARD.decode(content).unwrap());
            ok(Value::Null)
        }
        _ => error(501, &format!("Method '{method} {path}' not implemented")),
    }
}

/// Runs the few programs the transport and the tests use.
fn exec(pve: &mut Pve, body: &Value) -> (u16, Value) {
    let mut argv: Vec<String> = serde_json::from_value(body["command"].clone()).unwrap();
    let input = match body.get("input-data") {
        Some(Value::String(text)) => {
            if text.chars().count() > 64 * 1024 {
                return (
                    400,
                    json!({"data": null, "errors": {"input-data": "value may only be 65536 characters long\n"}}),
                );
            }
            latin1_bytes(text).expect("input-data is Latin-1")
        }
        _ => Vec::new(),
    };
    if argv.first().map(String::as_str) == Some("/usr/bin/env") {
        let program = argv.iter().skip(3).position(|a| !a.contains('=')).unwrap() + 3;
        argv.drain(..program);
    }
    let (code, out, err): (i64, Vec<u8>, Vec<u8>) = match argv.iter().map(String::as_str).collect::<Vec<_>>().as_slice()
    {
        ["/bin/dd", of, rest @ ..] => {
            let file = of.strip_prefix("of=").unwrap().to_owned();
            if file.starts_with("/missing/") {
                (1, vec![], format!("dd: failed to open '{file}': No such file or directory\n").into_bytes())
            } else if rest == ["oflag=append", "conv=notrunc", "status=none"] {
                pve.files.entry(file).or_default().extend_from_slice(&input);
                (0, vec![], vec![])
            } else {
                assert_eq!(rest, ["status=none"]);
                pve.files.insert(file, input);
                (0, vec![], vec![])
            }
        }
        ["/bin/echo", args @ ..] => (0, format!("{}\n", args.join(" ")).into_bytes(), vec![]),
        ["/bin/cat"] => (0, input, vec![]),
        [program, ..] => (127, vec![], format!("{program}: not found\n").into_bytes()),
        [] => return error(400, "command missing"),
    };
    pve.next_pid += 1;
    let pid = 1000 + pve.next_pid;
    pve.execs.insert(
        pid,
        json!({"exited": 1, "exitcode": code, "out-data": latin1_string(&out), "err-data": latin1_string(&err)}),
    );
    pve.polls_left.insert(pid, pve.running_polls);
    ok(json!({"pid": pid}))
}

struct Fake {
    state: Shared,
    addr: SocketAddr,
}

impl Fake {
    async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(Pve::default()));
        state.lock().unwrap().vms.insert(101, Vm { node: "pve1".into(), status: "running".into(), uptime: 3600 });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, addr }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pve(&self) -> std::sync::MutexGuard<'_, Pve> {
        self.state.lock().unwrap()
    }

    /// `METHOD path status` of every request so far, and forgets them.
    fn calls(&self) -> Vec<String> {
        self.pve().log.drain(..).map(|l| format!("{} {} {}", l.method, l.path, l.status)).collect()
    }
}

fn spec(endpoints: Vec<String>) -> ProxmoxClusterSpec {
    ProxmoxClusterSpec { endpoints, ..ProxmoxClusterSpec::default() }
}

fn token() -> ApiToken {
    ApiToken::new(TOKEN_ID, SECRET).unwrap()
}

fn provider(endpoints: Vec<String>, vmid: u32) -> ProxmoxProvider {
    ProxmoxProvider::new(&spec(endpoints), token(), vmid).unwrap()
}

async fn client(provider: &ProxmoxProvider) -> QgaClient {
    let Ok(transport) = provider.transport().await else { panic!("a transport") };
    QgaClient::with_config(
        transport,
        QgaClientConfig { command_timeout: Duration::from_secs(20), ..Default::default() },
    )
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn state_and_ping_with_the_token_header() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let state = vm.state().await.unwrap();
    assert!(state.running);
    assert_eq!(state.location.as_deref(), Some("pve1"));
    let instance = state.instance.unwrap();
    assert!(instance.starts_with("pve1@"), "{instance}");
    // The next poll a moment later is the same power-on.
    fake.pve().vms.get_mut(&101).unwrap().uptime += 1;
    assert_eq!(vm.state().await.unwrap().instance.unwrap(), instance);

    client(&vm).await.ping().await.unwrap();
    assert_eq!(
        fake.calls(),
        [
            "GET /api2/json/cluster/resources?type=vm 200",
            "GET /api2/json/cluster/resources?type=vm 200",
            "POST /api2/json/nodes/pve1/qemu/101/agent/ping 200",
        ]
    );
    assert!(fake.pve().log.is_empty());
    assert_eq!(vm.describe(), "proxmox vmid 101");
    assert_eq!(vm.transport().await.unwrap().target(), "proxmox vmid 101 (node pve1)");
}

#[tokio::test]
async fn every_request_carries_the_token_and_the_node_is_looked_up_once() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let client = client(&vm).await;
    client.ping().await.unwrap();
    let info = client.info().await.unwrap();
    assert_eq!(info.version, "9.2.0");
    assert_eq!(client.os_info().await.unwrap().id.as_deref(), Some("vyos"));
    let pve = fake.pve();
    assert_eq!(pve.log.len(), 4, "{:?}", pve.log);
    assert_eq!(pve.log.iter().filter(|l| l.path.contains("cluster/resources")).count(), 1);
    for logged in &pve.log {
        assert_eq!(logged.auth.as_deref(), Some("PVEAPIToken=root@pam!vrouter=0d1e-s3cret"), "{logged:?}");
    }
}

#[tokio::test]
async fn exec_polls_exec_status_and_decodes_the_output() {
    let fake = Fake::start().await;
    fake.pve().running_polls = 2;
    let vm = provider(vec![fake.endpoint()], 101);
    let output = client(&vm).await.exec(&ExecRequest::new("/bin/echo", ["hello", "wörld", "$(id)"])).await.unwrap();
    assert!(output.success());
    assert_eq!(output.stdout, "hello wörld $(id)\n".as_bytes());
    let calls = fake.calls();
    assert_eq!(calls.iter().filter(|c| c.contains("exec-status?pid=")).count(), 3, "{calls:?}");

    // stdin and a replaced environment, carried as PVE can.
    let request = ExecRequest::new("/bin/cat", Vec::<String>::new()).env(["A=1"]).stdin(vec![0u8, 0xff, b'\n']);
    let output = client(&vm).await.exec(&request).await.unwrap();
    assert_eq!(output.stdout, [0u8, 0xff, b'\n']);
    let pve = fake.pve();
    let sent = pve.log.iter().find(|l| l.path.ends_with("/agent/exec")).unwrap();
    assert_eq!(sent.body["command"], json!(["/usr/bin/env", "-i", "--", "A=1", "/bin/cat"]));
    assert_eq!(sent.body["input-data"], json!("\u{0}\u{ff}\n"));
}

#[tokio::test]
async fn a_failing_program_reports_its_exit_code() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let output = client(&vm).await.exec(&ExecRequest::new("/bin/nope", ["x"])).await.unwrap();
    assert_eq!(output.exit_code, Some(127));
    assert_eq!(output.stderr_lossy(), "/bin/nope: not found\n");
}

#[tokio::test]
async fn files_larger_than_one_request_are_written_in_chunks_and_read_back() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let client = client(&vm).await;
    // Every byte value, in an order that does not compress into a pattern.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    client.write_file("/config/big.bin", &data, WriteMode::Truncate).await.unwrap();
    assert!(fake.pve().files["/config/big.bin"] == data);
    let calls = fake.calls();
    let writes = calls.iter().filter(|c| c.contains("/agent/file-write")).count();
    let appends = calls.iter().filter(|c| c.ends_with("/agent/exec 200")).count();
    assert_eq!(writes, 1, "{calls:?}");
    assert!(appends >= 4, "{calls:?}");
    assert!(calls.iter().all(|c| c.ends_with(" 200")), "every request within PVE's limits: {calls:?}");

    assert!(client.read_file("/config/big.bin").await.unwrap() == data);

    // Appending, overwriting with less, and an empty file.
    client.write_file("/config/big.bin", b"tail", WriteMode::Append).await.unwrap();
    assert_eq!(&fake.pve().files["/config/big.bin"][200_000..], b"tail");
    client.write_file("/config/big.bin", b"short\n", WriteMode::Truncate).await.unwrap();
    assert_eq!(fake.pve().files["/config/big.bin"], b"short\n");
    client.write_file("/config/big.bin", b"", WriteMode::Truncate).await.unwrap();
    assert_eq!(fake.pve().files["/config/big.bin"], b"");
    client.write_file("/config/new", b"", WriteMode::Append).await.unwrap();
    assert_eq!(fake.pve().files["/config/new"], b"");
}

#[tokio::test]
async fn file_errors_are_agent_errors() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let client = client(&vm).await;
    match client.read_file("/nope").await {
        Err(QgaError::Agent { command, desc, .. }) => {
            assert_eq!(command, "guest-file-open /nope");
            assert!(desc.contains("No such file or directory"), "{desc}");
        }
        other => panic!("{other:?}"),
    }
    match client.write_file("/missing/x", b"data", WriteMode::Truncate).await {
        Err(QgaError::Agent { command, desc, .. }) => {
            assert_eq!(command, "guest-file-write /missing/x");
            assert!(desc.contains("/missing/x"), "{desc}");
        }
        other => panic!("{other:?}"),
    }
    match client.write_file("/missing/y", b"data", WriteMode::Append).await {
        Err(QgaError::Agent { desc, .. }) => assert!(desc.contains("dd") && desc.contains("No such file"), "{desc}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn os_info_falls_back_to_os_release_through_file_read() {
    let fake = Fake::start().await;
    fake.pve().no_osinfo = true;
    fake.pve().files.insert("/etc/os-release".into(), b"ID=vyos\nVERSION_ID=\"1.4\"\n".to_vec());
    let vm = provider(vec![fake.endpoint()], 101);
    let info = client(&vm).await.os_info().await.unwrap();
    assert_eq!(info.id.as_deref(), Some("vyos"));
    assert_eq!(info.source, OsInfoSource::OsRelease);
}

#[tokio::test]
async fn commands_pve_does_not_offer_are_not_supported() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let transport = vm.transport().await.unwrap();
    let timeout = Duration::from_secs(5);
    for command in ["guest-set-time", "guest-file-seek", "guest-shutdown"] {
        assert!(
            matches!(transport.execute(command, None, timeout).await, Err(QgaError::NotSupported { .. })),
            "{command}"
        );
    }
    let err = transport.execute("guest-file-open", Some(json!({"path": "/x", "mode": "r+"})), timeout).await;
    assert!(matches!(err, Err(QgaError::NotSupported { .. })), "{err:?}");
    // Syncing needs nothing: replies are whole.
    assert_eq!(transport.execute("guest-sync-delimited", Some(json!({"id": 42})), timeout).await.unwrap(), json!(42));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn authentication_and_permission_failures_say_what_to_fix() {
    let fake = Fake::start().await;
    let spec = spec(vec![fake.endpoint()]);
    let wrong = ProxmoxProvider::new(&spec, ApiToken::new(TOKEN_ID, "wrong").unwrap(), 101).unwrap();
    let err = client(&wrong).await.ping().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, QgaError::Transport { .. }), "{err:?}");
    assert!(
        text.contains("401") && text.contains("authentication failure") && text.contains("api-token-secret"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "{text}");

    fake.pve().forbidden = true;
    let vm = provider(vec![fake.endpoint()], 101);
    let text = client(&vm).await.ping().await.unwrap_err().to_string();
    assert!(
        text.contains("403") && text.contains("Permission check failed") && text.contains("VM.GuestAgent"),
        "{text}"
    );
    // Neither failed over nor retried (the wrong token already failed the node lookup).
    assert_eq!(fake.calls().iter().filter(|c| c.contains("/agent/ping")).count(), 1);
}

#[tokio::test]
async fn the_next_endpoint_is_tried_when_one_refuses_connections() {
    let fake = Fake::start().await;
    let vm = provider(vec![closed_port().await, fake.endpoint()], 101);
    let client = client(&vm).await;
    client.ping().await.unwrap();
    client.ping().await.unwrap();
    assert_eq!(
        fake.calls(),
        [
            "GET /api2/json/cluster/resources?type=vm 200",
            "POST /api2/json/nodes/pve1/qemu/101/agent/ping 200",
            "POST /api2/json/nodes/pve1/qemu/101/agent/ping 200",
        ]
    );

    let down = provider(vec![closed_port().await, closed_port().await], 101);
    let text = client_error(&down).await;
    assert!(text.contains("no Proxmox API endpoint answered") && text.matches("cannot connect").count() == 2, "{text}");
}

async fn client_error(vm: &ProxmoxProvider) -> String {
    client(vm).await.ping().await.unwrap_err().to_string()
}

#[tokio::test]
async fn proxy_errors_fail_over_but_an_exec_is_never_sent_twice() {
    let broken = Fake::start().await;
    broken.pve().fail_all = Some((502, "Bad Gateway".into()));
    let good = Fake::start().await;
    let vm = provider(vec![broken.endpoint(), good.endpoint()], 101);
    let client = client(&vm).await;
    client.ping().await.unwrap();
    assert_eq!(broken.calls(), ["GET /api2/json/cluster/resources?type=vm 502"]);
    // The client checks guest-info once before its first exec: get that done now.
    client.info().await.unwrap();

    // The good endpoint is now preferred; make it the broken one for the exec.
    good.pve().fail_all = Some((502, "Bad Gateway".into()));
    broken.pve().fail_all = None;
    let err = client.exec(&ExecRequest::new("/bin/echo", ["once"])).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 502"), "{err}");
    assert!(broken.calls().is_empty(), "the exec went to one endpoint only");

    // 595 (pveproxy could not reach the node) means nothing ran: the exec moves on.
    good.pve().fail_all = Some((595, "No route to host".into()));
    let output = client.exec(&ExecRequest::new("/bin/echo", ["moved on"])).await.unwrap();
    assert_eq!(output.stdout, b"moved on\n");
}

#[tokio::test]
async fn a_vm_that_migrated_between_calls_is_followed() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 101);
    let client = client(&vm).await;
    client.ping().await.unwrap();
    fake.calls();
    fake.pve().vms.get_mut(&101).unwrap().node = "pve2".into();
    client.ping().await.unwrap();
    assert_eq!(
        fake.calls(),
        [
            "POST /api2/json/nodes/pve1/qemu/101/agent/ping 500",
            "GET /api2/json/cluster/resources?type=vm 200",
            "POST /api2/json/nodes/pve2/qemu/101/agent/ping 200",
        ]
    );
    assert_eq!(vm.transport().await.unwrap().target(), "proxmox vmid 101 (node pve2)");
    let state = vm.state().await.unwrap();
    assert_eq!(state.location.as_deref(), Some("pve2"));
    assert!(state.instance.unwrap().starts_with("pve2@"));
}

#[tokio::test]
async fn an_absent_vm_is_not_running_and_has_no_agent() {
    let fake = Fake::start().await;
    let vm = provider(vec![fake.endpoint()], 999);
    assert_eq!(vm.state().await.unwrap(), VmState::default());
    let text = client_error(&vm).await;
    assert!(text.contains("VM 999 is not in /cluster/resources") && text.contains("VM.Audit"), "{text}");
}

#[tokio::test]
async fn a_stopped_vm_is_located_but_not_running() {
    let fake = Fake::start().await;
    fake.pve().vms.insert(102, Vm { node: "pve3".into(), status: "stopped".into(), uptime: 0 });
    let vm = provider(vec![fake.endpoint()], 102);
    assert_eq!(vm.state().await.unwrap(), VmState { running: false, location: Some("pve3".into()), instance: None });
    let text = client_error(&vm).await;
    assert!(text.contains("cannot answer") && text.contains("VM 102 is not running"), "{text}");
}

/// A TLS listener for axum: accepts TCP, then the TLS handshake (failed handshakes are skipped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A fake behind TLS with a certificate for `localhost` from a fresh CA; the CA's PEM.
async fn tls_fake() -> (Fake, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let state: Shared = Arc::new(Mutex::new(Pve::default()));
    state.lock().unwrap().vms.insert(101, Vm { node: "pve1".into(), status: "running".into(), uptime: 10 });
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Fake { state, addr }, ca_pem)
}

#[tokio::test]
async fn https_endpoints_are_trusted_through_the_ca_bundle() {
    let (fake, ca_pem) = tls_fake().await;
    let endpoint = format!("https://localhost:{}", fake.addr.port());

    let trusted = ProxmoxClusterSpec { ca_bundle: Some(ca_pem.clone()), ..spec(vec![endpoint.clone()]) };
    let vm = ProxmoxProvider::new(&trusted, token(), 101).unwrap();
    client(&vm).await.ping().await.unwrap();
    assert_eq!(fake.calls().len(), 2);

    // Without the CA the certificate is refused (and that is a connection failure).
    let untrusted = provider(vec![endpoint.clone()], 101);
    let text = client_error(&untrusted).await;
    assert!(text.contains("cannot connect") && text.to_ascii_lowercase().contains("certificate"), "{text}");
    assert!(fake.calls().is_empty());

    // Skipping verification connects, and a caBundle still wins over it.
    let insecure = ProxmoxClusterSpec { insecure_skip_tls_verify: true, ..spec(vec![endpoint.clone()]) };
    client(&ProxmoxProvider::new(&insecure, token(), 101).unwrap()).await.ping().await.unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other_ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other_ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let wrong_ca = other_ca.self_signed(&other_key).unwrap().pem();
    let both = ProxmoxClusterSpec { insecure_skip_tls_verify: true, ca_bundle: Some(wrong_ca), ..spec(vec![endpoint]) };
    let text = client_error(&ProxmoxProvider::new(&both, token(), 101).unwrap()).await;
    assert!(text.contains("cannot connect"), "{text}");
}

#[test]
fn fake_answers_use_latin1_like_pve() {
    // The fake's own encoding matches what the codec expects from PVE.
    let text = latin1_string(&[0xc3, 0xa9]);
    assert_eq!(text, "\u{c3}\u{a9}");
    let (status, body) = ok(json!({"content": text}));
    assert_eq!(status, StatusCode::OK.as_u16());
    assert_eq!(codec::file_read_content(&body["data"]).unwrap().0, [0xc3, 0xa9]);
}

#[tokio::test]
async fn a_silent_endpoint_costs_its_share_of_the_time_and_execs_are_not_repeated() {
    let fake = Fake::start().await;
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_endpoint = format!("http://{}", silent.local_addr().unwrap());
    let config = QgaClientConfig { command_timeout: Duration::from_secs(2), ..Default::default() };

    let vm = provider(vec![silent_endpoint.clone(), fake.endpoint()], 101);
    let client = QgaClient::with_config(vm.transport().await.unwrap(), config.clone());
    client.ping().await.unwrap();
    assert_eq!(fake.calls().len(), 2);

    // An exec that got no answer may have run: it is not sent to the next endpoint. (A fresh
    // provider that knows the node, so the exec is the first request and goes to the silent one.)
    let vm = provider(vec![silent_endpoint, fake.endpoint()], 101);
    vm.transport.set_node(Some("pve1".into()));
    let client = QgaClient::with_config(vm.transport().await.unwrap(), config);
    // The raw command: the client's exec would first ask guest-info (idempotent, so that one
    // fails over and makes the good endpoint preferred).
    let exec = ExecRequest::new("/bin/echo", ["once"]);
    let err = client.execute("guest-exec", Some(exec.to_arguments())).await.unwrap_err();
    assert!(matches!(err, QgaError::Timeout { ref command, .. } if command == "guest-exec"), "{err:?}");
    assert!(fake.calls().is_empty(), "the exec was not repeated elsewhere");
}
