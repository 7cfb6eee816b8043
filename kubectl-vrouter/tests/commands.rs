//! Every command against kube's mock API service, on a small fleet: the exact calls, in order,
//! and the table, YAML and JSON outputs.

// Helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kubectl_vrouter::output::show;
use kubectl_vrouter::request::Wait;
use kubectl_vrouter::{Error, Format, agents, diff, enroll, fetch, render, status};
use serde_json::{Value, json};

/// Computes an answer from the request bodies so far.
type Responder = Box<dyn FnOnce(&[Value]) -> Value + Send>;

/// How the mock API server answers one call.
enum Answer {
    /// 200 with this body (`null`: the request body echoed, as an apply returns it).
    Ok(Value),
    /// A failure Status with this code.
    Status(u16),
    /// 200 with a body computed from the request bodies so far (this one last).
    With(Responder),
}

struct Expect {
    method: &'static str,
    uri: String,
    answer: Answer,
}

fn call(method: &'static str, uri: impl Into<String>, answer: Answer) -> Expect {
    Expect { method, uri: uri.into(), answer }
}

/// A client whose API server answers exactly `calls`, in order; yields the request bodies.
fn mock(calls: Vec<Expect>) -> (Client, tokio::task::JoinHandle<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for e in calls {
            let (req, send) = handle.next_request().await.expect("fewer calls than expected");
            assert_eq!(req.method().as_str(), e.method, "method of {}", req.uri());
            assert_eq!(req.uri().to_string(), e.uri);
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            bodies.push(body.clone());
            let (code, respond) = match e.answer {
                Answer::Ok(v) if v.is_null() => (200, body),
                Answer::Ok(v) => (200, v),
                Answer::Status(code) => {
                    let reason = match code {
                        404 => "NotFound",
                        409 => "Conflict",
                        _ => "Forbidden",
                    };
                    (
                        code,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}),
                    )
                }
                Answer::With(f) => (200, f(&bodies)),
            };
            send.send_response(
                Response::builder().status(code).body(Body::from(serde_json::to_vec(&respond).unwrap())).unwrap(),
            );
        }
        if let Ok(Some((req, _))) = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await {
            panic!("more calls than expected: {} {}", req.method(), req.uri());
        }
        bodies
    });
    (Client::new(service, "default"), task)
}

const API: &str = "/apis/vrouter.kojuro.date/v1";

fn list(items: Vec<Value>) -> Answer {
    Answer::Ok(
        json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

fn obj(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": kind, "metadata": {"name": name, "namespace": "net"}, "spec": spec})
}

/// The "now" of every table.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn at(minutes_before_now: u64) -> String {
    let t = now() - Duration::from_secs(minutes_before_now * 60);
    vrouter_operator::time::to_k8s(t).0.to_string()
}

fn condition(status: &str, reason: &str, message: &str) -> Value {
    json!({"type": "ConfigApplied", "status": status, "reason": reason, "message": message, "lastTransitionTime": at(30)})
}

/// Three routers: r1 applied and drifted, r2 paused and pending with its agent gone, r3 failed.
fn targets() -> Vec<Value> {
    let mut r1 = obj("VRouterTarget", "r1", json!({"managedScopes": ["service ntp"]}));
    r1["status"] = json!({
        "agent": {"connected": true, "since": at(180), "version": "0.1.0", "os": "VyOS 1.4.3", "bootId": "b-1", "lastHeartbeat": at(1)},
        "conditions": [condition("True", "Applied", "applied")],
        "desiredRevision": "aaaa000011112222", "appliedRevision": "aaaa000011112222",
        "lastApply": {"revision": "aaaa000011112222", "outcome": "Applied", "commands": 4, "time": at(20)},
        "drift": {"drifted": true, "paths": ["interfaces ethernet eth1 description", "system name-server"], "pathCount": 3, "unsaved": true, "detectedAt": at(5)},
    });
    let mut r2 = obj("VRouterTarget", "r2", json!({"paused": true}));
    r2["status"] = json!({
        "agent": {"connected": false, "since": at(60 * 30), "version": "0.1.0", "os": "VyOS 1.4.2", "bootId": "b-2", "lastHeartbeat": at(60 * 30), "lastDisconnectReason": "heartbeat timeout"},
        "conditions": [condition("False", "Pending", "waiting for delivery")],
        "desiredRevision": "bbbb000011112222",
    });
    let mut r3 = obj("VRouterTarget", "r3", json!({}));
    r3["status"] = json!({
        "conditions": [condition("False", "ApplyFailed", "commit failed: interfaces ethernet eth9: no such interface")],
        "desiredRevision": "cccc000011112222", "appliedRevision": "cccc999911112222",
        "lastApply": {"revision": "cccc000011112222", "outcome": "Failed", "time": at(3)},
    });
    vec![r1, r2, r3]
}

fn templates() -> Vec<Value> {
    vec![obj(
        "VRouterTemplate",
        "base",
        json!({"commands": "set system host-name '{{ target.name }}'\nset service ntp server {{ params.ntp }}\nset system login user admin authentication plaintext-password '{{ secret(\"admin\", \"password\") }}'\n"}),
    )]
}

fn params() -> Vec<Value> {
    vec![obj("VRouterParams", "site", json!({"params": {"ntp": "192.0.2.1"}}))]
}

fn bindings(template: &str) -> Vec<Value> {
    vec![obj(
        "VRouterBinding",
        "core",
        json!({"templateRefs": [{"name": template}], "paramsRefs": [{"name": "site"}], "targetRefs": [{"name": "r1"}, {"name": "r2"}],
               "rollout": {"mode": "WaitForApplied", "maxUnavailable": 1}}),
    )]
}

fn configs() -> Vec<Value> {
    let extra = obj(
        "VRouterConfig",
        "extra",
        json!({"targetRef": {"name": "r1"}, "commands": "set interfaces ethernet eth0 description 'uplink'\ndelete service telnet\n", "priority": 10}),
    );
    // What the binding wrote earlier: stale content, generated again from the binding.
    let mut generated = obj(
        "VRouterConfig",
        "core.r1",
        json!({"targetRef": {"name": "r1"}, "commands": "set system host-name 'stale'\n"}),
    );
    generated["metadata"]["annotations"] =
        json!({"vrouter.kojuro.date/binding": "core", "vrouter.kojuro.date/target": "r1"});
    vec![extra, generated]
}

/// The five lists of `render` and `diff`, in order.
fn namespace_lists(template: &str) -> Vec<Expect> {
    vec![
        call("GET", format!("{API}/namespaces/net/vroutertemplates?"), list(templates())),
        call("GET", format!("{API}/namespaces/net/vrouterparams?"), list(params())),
        call("GET", format!("{API}/namespaces/net/vrouterbindings?"), list(bindings(template))),
        call("GET", format!("{API}/namespaces/net/vrouterconfigs?"), list(configs())),
        call("GET", format!("{API}/namespaces/net/vroutertargets?"), list(targets())),
    ]
}

const R1_CONFIG: &str = "\
interfaces {
    ethernet eth0 {
        description \"uplink\"
    }
}
service {
    ntp {
        server 192.0.2.1 {
        }
    }
}
system {
    host-name \"r1\"
    login {
        user admin {
            authentication {
                plaintext-password \"@@vrouter-secret:admin/password@@\"
            }
        }
    }
}
";

#[tokio::test]
async fn render_composes_with_the_operators_rendering_and_keeps_placeholders() {
    let (client, api) = mock(namespace_lists("base"));
    let r = render::render_target(&client, "net", "r1").await.unwrap();
    api.await.unwrap();
    assert_eq!(r.configs, ["extra", "core.r1"]);
    assert_eq!(r.config.as_deref(), Some(R1_CONFIG));
    assert_eq!(r.secrets, ["admin/password"]);
    assert_eq!(r.revision, None, "a revision with secrets depends on their values");
    assert_eq!(r.deletions, ["delete service telnet"]);
    let table = show(&r, Format::Table, || render::text(&r)).unwrap();
    assert_eq!(
        table,
        format!(
            "# VRouterTarget net/r1: revision depends on secret values (not read); configs: extra, core.r1\n\
             # policy Merge; managed scopes: service ntp; saved after commit\n\
             # secrets (placeholders; values not read): admin/password\n\
             {R1_CONFIG}\
             # explicit deletions:\n\
             #   delete service telnet\n"
        )
    );
    let json: Value = serde_json::from_str(&show(&r, Format::Json, || unreachable!()).unwrap()).unwrap();
    assert_eq!(json["target"], "r1");
    assert_eq!(json["config"], R1_CONFIG);
    assert_eq!(json["managedScopes"], json!(["service ntp"]));
    assert!(json.get("revision").is_none());
    let yaml = show(&r, Format::Yaml, || unreachable!()).unwrap();
    assert!(yaml.contains("namespace: net\ntarget: r1\n"), "{yaml}");
    assert!(yaml.contains("secrets:\n- admin/password\n"), "{yaml}");
}

#[tokio::test]
async fn render_without_secrets_has_the_operators_revision_and_empty_targets_say_so() {
    let (client, api) = mock(namespace_lists("base"));
    let objects = fetch::namespace_objects(&client, "net").await.unwrap();
    api.await.unwrap();
    let mut m = fetch::manifests("net", &objects);
    // r3 has no config at all: under Merge its desired configuration is empty.
    let r3 = render::render(&m, "net", "r3", now()).unwrap();
    assert!(r3.configs.is_empty());
    assert_eq!(
        render::text(&r3),
        "# VRouterTarget net/r3: no VRouterConfig for this router (its desired configuration is empty)\n"
    );
    // Without secrets, the revision is the operator's (the key only covers secret values).
    let t = m.namespaces.get_mut("net").unwrap().templates.get_mut("base").unwrap();
    t.spec.commands = Some("set system host-name '{{ target.name }}'\n".into());
    let r2 = render::render(&m, "net", "r2", now()).unwrap();
    let rev = r2.revision.clone().unwrap();
    assert_eq!(rev.len(), 16);
    assert!(render::text(&r2).starts_with(&format!("# VRouterTarget net/r2: revision {rev}; configs: core.r2\n")));
    let e = render::render(&m, "net", "nope", now()).unwrap_err();
    assert_eq!(e.to_string(), "VRouterTarget net/nope not found");
}

#[tokio::test]
async fn render_reports_what_blocks_a_target_naming_object_and_template() {
    let (client, api) = mock(namespace_lists("missing"));
    let e = render::render_target(&client, "net", "r1").await.unwrap_err();
    api.await.unwrap();
    assert!(matches!(&e, Error::Blocked { target, .. } if target == "net/r1"), "{e}");
    assert_eq!(
        e.to_string(),
        "VRouterTarget net/r1 is blocked:\n  VRouterBinding net/core: VRouterTemplate not found: missing"
    );

    // A template error names the template, field and line.
    let (client, api) = mock(namespace_lists("base"));
    let objects = fetch::namespace_objects(&client, "net").await.unwrap();
    api.await.unwrap();
    let mut m = fetch::manifests("net", &objects);
    let t = m.namespaces.get_mut("net").unwrap().templates.get_mut("base").unwrap();
    t.spec.commands =
        Some("set system host-name '{{ target.name }}'\nset system domain-name '{{ params.nope.x }}'\n".into());
    let e = render::render(&m, "net", "r2", now()).unwrap_err().to_string();
    assert_eq!(
        e,
        "VRouterTarget net/r2 is blocked:\n  VRouterBinding net/core: target \"r2\": template \"base\" (commands) line 2: undefined value \"params.nope\""
    );
    // r3 is not selected by the binding: not blocked by it.
    assert!(render::render(&m, "net", "r3", now()).is_ok());
}

fn applied_configmap(config: &str) -> Answer {
    Answer::Ok(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vrouter-applied-r1", "namespace": "net"},
        "data": {"revision": "aaaa000011112222", "config": config, "at": "1749999000"}}),
    )
}

#[tokio::test]
async fn diff_plans_from_the_applied_revision_and_shows_reported_drift() {
    let applied = "interfaces {\n    ethernet eth0 {\n        description \"old\"\n    }\n}\nservice {\n    ntp {\n        server 192.0.2.9 {\n        }\n    }\n}\nsystem {\n    host-name \"r1\"\n}\n";
    let mut calls = namespace_lists("base");
    calls.push(call("GET", "/api/v1/namespaces/net/configmaps/vrouter-applied-r1", applied_configmap(applied)));
    let (client, api) = mock(calls);
    let d = diff::diff_target(&client, "net", "r1", diff::Source::Applied).await.unwrap();
    api.await.unwrap();
    assert_eq!(d.applied_revision.as_deref(), Some("aaaa000011112222"));
    assert_eq!(
        d.commands,
        [
            "delete interfaces ethernet eth0 description 'old'",
            "delete service ntp server 192.0.2.9",
            "set interfaces ethernet eth0 description 'uplink'",
            "set service ntp server 192.0.2.1",
            "set system login user admin authentication plaintext-password '@@vrouter-secret:admin/password@@'",
        ]
    );
    assert_eq!(d.deletions_if_present, ["delete service telnet"]);
    let text = show(&d, Format::Table, || diff::text(&d)).unwrap();
    assert_eq!(
        text,
        format!(
            "# VRouterTarget net/r1: desired revision aaaa000011112222\n\
             # against the last applied revision aaaa000011112222 (applied 2025-06-15T14:50:00Z) and the drift reported at {}\n\
             # not the router's live running config (--from-applied)\n\
             # secret values are compared as placeholders\n\
             {}\n\
             # explicit deletions, run if the router has these paths (set outside vrouter):\n\
             #   delete service telnet\n\
             # drift: 3 paths differ from the applied revision (the next apply may touch them too):\n\
             #   interfaces ethernet eth1 description\n\
             #   system name-server\n\
             #   ... and 1 more\n\
             # the running config differs from the saved boot config (unsaved)\n",
            at(5),
            d.commands.join("\n")
        )
    );
    let json: Value = serde_json::from_str(&show(&d, Format::Json, || unreachable!()).unwrap()).unwrap();
    assert_eq!(json["baseline"], "the last applied revision aaaa000011112222");
    assert_eq!(json["drift"]["pathCount"], 3);
    assert_eq!(json["drift"]["unsaved"], true);
    assert_eq!(json["drift"]["lastReport"], at(1));
    assert_eq!(json["commands"].as_array().unwrap().len(), 5);
    let yaml = show(&d, Format::Yaml, || unreachable!()).unwrap();
    assert!(yaml.contains("appliedRevision: aaaa000011112222\n"), "{yaml}");
}

#[tokio::test]
async fn diff_without_an_applied_record_starts_from_nothing() {
    let mut calls = namespace_lists("base");
    calls.push(call("GET", "/api/v1/namespaces/net/configmaps/vrouter-applied-r2", Answer::Status(404)));
    let (client, api) = mock(calls);
    let d = diff::diff_target(&client, "net", "r2", diff::Source::Applied).await.unwrap();
    api.await.unwrap();
    assert_eq!(d.applied_revision, None);
    assert_eq!(d.baseline, "an empty configuration (no applied revision recorded)");
    assert!(d.commands.contains(&"set system host-name 'r2'".to_owned()), "{:?}", d.commands);
    let text = diff::text(&d);
    assert!(
        text.starts_with(
            "# VRouterTarget net/r2: desired revision bbbb000011112222\n\
             # against an empty configuration (no applied revision recorded) and no drift reported\n"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn diff_of_a_missing_target_names_it() {
    let (client, api) = mock(namespace_lists("base"));
    let e = diff::diff_target(&client, "net", "r9", diff::Source::Applied).await.unwrap_err();
    api.await.unwrap();
    assert_eq!(e.to_string(), "VRouterTarget net/r9 not found");
}

#[tokio::test]
async fn agents_lists_one_namespace_or_all() {
    let (client, api) = mock(vec![call("GET", format!("{API}/namespaces/net/vroutertargets?"), list(targets()))]);
    let rows = agents::rows(&fetch::targets(&client, Some("net")).await.unwrap());
    api.await.unwrap();
    assert_eq!(
        show(&rows, Format::Table, || agents::text(&rows, now())).unwrap(),
        "IDENTITY   CONNECTED   VERSION   OS           SINCE   LAST HEARTBEAT   BOOT ID\n\
         net/r1     yes         0.1.0     VyOS 1.4.3   3h      60s              b-1\n\
         net/r2     no          0.1.0     VyOS 1.4.2   30h     30h              b-2\n\
         net/r3     never       -         -            -       -                -\n"
    );

    let mut other = obj("VRouterTarget", "edge-1", json!({}));
    other["metadata"]["namespace"] = "edge".into();
    let mut all = targets();
    all.push(other);
    let (client, api) = mock(vec![call("GET", format!("{API}/vroutertargets?"), list(all))]);
    let rows = agents::rows(&fetch::targets(&client, None).await.unwrap());
    api.await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.identity.as_str()).collect::<Vec<_>>(),
        ["edge/edge-1", "net/r1", "net/r2", "net/r3"]
    );
    let json: Value = serde_json::from_str(&show(&rows, Format::Json, || unreachable!()).unwrap()).unwrap();
    assert_eq!(json[1]["identity"], "net/r1");
    assert_eq!(json[1]["bootId"], "b-1");
    assert_eq!(json[1]["lastHeartbeat"], at(1));
    assert_eq!(json[2]["lastDisconnectReason"], "heartbeat timeout");
    assert!(json[0].get("connected").is_none());
    let yaml = show(&rows, Format::Yaml, || unreachable!()).unwrap();
    assert!(yaml.starts_with("- identity: edge/edge-1\n- identity: net/r1\n  connected: true\n"), "{yaml}");
}

#[tokio::test]
async fn status_summarises_the_fleet() {
    let (client, api) = mock(vec![call("GET", format!("{API}/namespaces/net/vroutertargets?"), list(targets()))]);
    let r = status::report(&fetch::targets(&client, Some("net")).await.unwrap());
    api.await.unwrap();
    assert_eq!(
        show(&r, Format::Table, || status::text(&r, now())).unwrap(),
        "3 targets: 1 applied, 1 pending, 1 failed, 0 without config; 1 drifted, 1 paused; agents connected: 1/3\n\
         \n\
         TARGET   STATE              DESIRED            APPLIED            LAST APPLY    DRIFT     AGENT   MESSAGE\n\
         net/r1   Applied            aaaa000011112222   aaaa000011112222   Applied 20m   yes (3)   yes     applied\n\
         net/r2   Pending (paused)   bbbb000011112222   -                  -             no        no      waiting for delivery\n\
         net/r3   Failed             cccc000011112222   cccc999911112222   Failed 3m     no        no      commit failed: interfaces ethernet eth9: no such interface\n"
    );
    let json: Value = serde_json::from_str(&show(&r, Format::Json, || unreachable!()).unwrap()).unwrap();
    assert_eq!(
        json["summary"],
        json!({"targets": 3, "applied": 1, "pending": 1, "failed": 1, "noConfig": 0, "drifted": 1, "paused": 1, "agentsConnected": 1})
    );
    assert_eq!(json["targets"][2]["state"], "Failed");
    assert_eq!(json["targets"][2]["lastApply"]["outcome"], "Failed");
    let yaml = show(&r, Format::Yaml, || unreachable!()).unwrap();
    assert!(yaml.starts_with("summary:\n  targets: 3\n  applied: 1\n"), "{yaml}");
}

const TARGET: &str = "/apis/vrouter.kojuro.date/v1/namespaces/net/vroutertargets/r1";
const SECRET: &str = "/api/v1/namespaces/net/secrets/vrouter-enroll-r1";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The Secret the operator writes, answering the request id the plugin sent (in its third call).
fn answer(endpoint: Option<&str>) -> Answer {
    let endpoint = endpoint.map(str::to_owned);
    Answer::With(Box::new(move |bodies| {
        let request = bodies[2]["metadata"]["annotations"]["vrouter.kojuro.date/enroll-request"].as_str().unwrap();
        let mut data = json!({"token": b64("vrt1.secret-token"), "ca.crt": b64("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"),
            "request-id": b64(request), "identity": b64("net/r1")});
        if let Some(e) = endpoint {
            data["endpoint"] = b64(&e).into();
        }
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vrouter-enroll-r1", "namespace": "net"}, "type": "Opaque", "data": data})
    }))
}

fn target_r1() -> Answer {
    Answer::Ok(targets().remove(0))
}

/// r1 still carrying the plugin's request (its third call), at resourceVersion 77.
fn with_request() -> Answer {
    Answer::With(Box::new(|bodies| {
        let mut t = targets().remove(0);
        t["metadata"]["resourceVersion"] = "77".into();
        t["metadata"]["annotations"] = bodies[2]["metadata"]["annotations"].clone();
        t
    }))
}

fn deleted() -> Answer {
    Answer::Ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
}

fn quick(endpoint: Option<&str>) -> enroll::Options {
    enroll::Options {
        endpoint: endpoint.map(str::to_owned),
        wait: Wait { timeout: Duration::from_secs(30), poll: Duration::from_millis(5) },
        ..enroll::Options::default()
    }
}

#[tokio::test]
async fn enroll_annotates_waits_for_its_secret_prints_agent_toml_and_deletes_the_secret() {
    let (client, api) = mock(vec![
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{SECRET}?"), Answer::Status(404)),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        call("GET", SECRET, Answer::Status(404)),
        call("GET", SECRET, answer(Some("https://vrouter.example.net:7443"))),
        // The operator removed the request: nothing to withdraw.
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{SECRET}?"), deleted()),
    ]);
    let e = enroll::enroll(&client, "net", "r1", &quick(None)).await.unwrap();
    let bodies = api.await.unwrap();
    let request = bodies[2]["metadata"]["annotations"]["vrouter.kojuro.date/enroll-request"].as_str().unwrap();
    assert_eq!(request.len(), 16);
    assert_eq!(e.request_id, request);
    assert_eq!(e.endpoint, "https://vrouter.example.net:7443");
    let expected = "identity = \"net/r1\"\nstate_dir = \"/config/vrouter-agent/state\"\n\n[backend]\nkind = \"vyos\"\n\n\
                    [operator]\nca_file = \"/config/vrouter-agent/operator-ca.pem\"\n\
                    endpoint = \"https://vrouter.example.net:7443\"\ntoken = \"vrt1.secret-token\"\n";
    assert_eq!(e.agent_toml, expected);
    // The agent accepts it as it is.
    let parsed = vrouter_agent::config::AgentConfig::parse(&e.agent_toml).unwrap();
    assert_eq!(parsed.router_id().unwrap().to_string(), "net/r1");
    assert_eq!(parsed.operator.token.as_deref(), Some("vrt1.secret-token"));
    let table = show(&e, Format::Table, || enroll::text(&e)).unwrap();
    assert!(table.starts_with(&format!("# agent.toml for net/r1 (enrollment request {request}): ")), "{table}");
    assert!(table.contains(expected));
    assert!(table.ends_with(
        "# --- /config/vrouter-agent/operator-ca.pem ---\n# -----BEGIN CERTIFICATE-----\n# CA\n# -----END CERTIFICATE-----\n"
    ));
    let json: Value = serde_json::from_str(&show(&e, Format::Json, || unreachable!()).unwrap()).unwrap();
    assert_eq!(json["token"], "vrt1.secret-token");
    assert_eq!(json["caFile"], "/config/vrouter-agent/operator-ca.pem");
    assert_eq!(json["agentToml"], expected);
    let yaml = show(&e, Format::Yaml, || unreachable!()).unwrap();
    assert!(yaml.starts_with("identity: net/r1\n"), "{yaml}");
}

#[tokio::test]
async fn enroll_endpoint_flag_wins_and_a_missing_endpoint_is_explained() {
    let (client, api) = mock(vec![
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{SECRET}?"), deleted()),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        call("GET", SECRET, answer(Some("https://inside:7443"))),
        // The operator's removal of the request failed: the plugin withdraws it.
        call("GET", TARGET, with_request()),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        call("DELETE", format!("{SECRET}?"), deleted()),
    ]);
    let mut o = quick(Some("https://outside.example.net:443"));
    o.server_name = Some("vrouter-operator".into());
    let e = enroll::enroll(&client, "net", "r1", &o).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(
        bodies[5],
        json!({"metadata": {"resourceVersion": "77", "annotations": {"vrouter.kojuro.date/enroll-request": null}}})
    );
    assert_eq!(e.endpoint, "https://outside.example.net:443");
    assert!(e.agent_toml.contains("server_name = \"vrouter-operator\"\n"), "{}", e.agent_toml);

    let (client, api) = mock(vec![
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{SECRET}?"), Answer::Status(404)),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        call("GET", SECRET, answer(None)),
        call("GET", TARGET, target_r1()),
        // The Secret goes even though nothing is printed.
        call("DELETE", format!("{SECRET}?"), deleted()),
    ]);
    let e = enroll::enroll(&client, "net", "r1", &quick(None)).await.unwrap_err();
    api.await.unwrap();
    assert!(
        e.to_string().starts_with("enroll net/r1: the operator advertises no agent endpoint: pass --endpoint"),
        "{e}"
    );
}

#[tokio::test]
async fn enroll_times_out_clearly_and_withdraws_its_request() {
    let stale = Answer::With(Box::new(
        |_| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vrouter-enroll-r1"}, "data": {"request-id": b64("someone-else")}}),
    ));
    let (client, api) = mock(vec![
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{SECRET}?"), Answer::Status(404)),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        // Another request's Secret is not ours.
        call("GET", SECRET, stale),
        call("GET", TARGET, with_request()),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        call("GET", SECRET, Answer::Status(404)),
    ]);
    let mut o = quick(Some("https://x:1"));
    o.wait.timeout = Duration::ZERO;
    let e = enroll::enroll(&client, "net", "r1", &o).await.unwrap_err();
    let bodies = api.await.unwrap();
    assert!(matches!(&e, Error::Enroll { target, .. } if target == "net/r1"), "{e}");
    let text = e.to_string();
    assert!(text.contains("no answer from the operator after 0s (Secret vrouter-enroll-r1 with request id "), "{text}");
    assert!(text.ends_with("is the operator running and watching namespace net? The request was withdrawn"), "{text}");
    assert_eq!(
        bodies[5],
        json!({"metadata": {"resourceVersion": "77", "annotations": {"vrouter.kojuro.date/enroll-request": null}}})
    );
}

#[tokio::test]
async fn enroll_refuses_a_bad_endpoint_before_asking() {
    let (client, api) = mock(vec![]);
    let e = enroll::enroll(&client, "net", "r1", &quick(Some("vrouter.example.net:7443"))).await.unwrap_err();
    api.await.unwrap();
    assert_eq!(e.to_string(), "enroll net/r1: agent endpoint \"vrouter.example.net:7443\" is not https://HOST[:PORT]");
}

#[tokio::test]
async fn enroll_of_a_missing_target_asks_nothing() {
    let (client, api) = mock(vec![call("GET", TARGET, Answer::Status(404))]);
    let e = enroll::enroll(&client, "net", "r1", &quick(None)).await.unwrap_err();
    api.await.unwrap();
    assert_eq!(e.to_string(), "VRouterTarget net/r1 not found");
}

const RUNNING_SECRET: &str = "/api/v1/namespaces/net/secrets/vrouter-running-r1";
/// The position of the plugin's annotation in `diff`'s calls: five lists, the ConfigMap, the
/// old Secret's deletion, then the annotation.
const DIFF_ASK: usize = 7;

const APPLIED_R1: &str = "interfaces {\n    ethernet eth0 {\n        description \"old\"\n    }\n}\nservice {\n    ntp {\n        server 192.0.2.9 {\n        }\n    }\n}\nsystem {\n    host-name \"r1\"\n}\n";

/// What the router runs: the applied revision, plus an interface description and telnet set by
/// hand, and the admin's real password.
const RUNNING_R1: &str = "interfaces {\n    ethernet eth0 {\n        description \"old\"\n    }\n    ethernet eth1 {\n        description \"by hand\"\n    }\n}\nservice {\n    ntp {\n        server 192.0.2.9 {\n        }\n    }\n    telnet {\n    }\n}\nsystem {\n    host-name \"r1\"\n    login {\n        user admin {\n            authentication {\n                plaintext-password \"real-secret\"\n            }\n        }\n    }\n}\n";

fn request_of(bodies: &[Value]) -> String {
    bodies[DIFF_ASK]["metadata"]["annotations"]["vrouter.kojuro.date/running-request"].as_str().unwrap().to_owned()
}

/// The Secret the operator writes for the plugin's running-config request.
fn running_answer(data: Value) -> Answer {
    Answer::With(Box::new(move |bodies| {
        let mut data = data;
        data["request-id"] = b64(&request_of(bodies)).into();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vrouter-running-r1", "namespace": "net"}, "type": "Opaque", "data": data})
    }))
}

fn live_wait(timeout: Duration) -> diff::Source {
    diff::Source::Running(Wait { timeout, poll: Duration::from_millis(5) })
}

/// Lists, the ConfigMap, then the plugin's request up to its annotation.
fn diff_calls_until_asked() -> Vec<Expect> {
    let mut calls = namespace_lists("base");
    calls.push(call("GET", "/api/v1/namespaces/net/configmaps/vrouter-applied-r1", applied_configmap(APPLIED_R1)));
    calls.push(call("DELETE", format!("{RUNNING_SECRET}?"), Answer::Status(404)));
    calls.push(call("PATCH", format!("{TARGET}?"), target_r1()));
    calls
}

#[tokio::test]
async fn diff_plans_from_the_running_config_fetched_through_the_operator_and_deletes_its_secret() {
    let mut calls = diff_calls_until_asked();
    calls.extend([
        call("GET", RUNNING_SECRET, Answer::Status(404)),
        call(
            "GET",
            RUNNING_SECRET,
            running_answer(json!({"config": b64(RUNNING_R1), "digest": b64("d-42"),
                "fetched-at": b64("2025-06-15T15:06:00Z"), "revision": b64("aaaa000011112222")})),
        ),
        // The operator removed the request: nothing to withdraw.
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{RUNNING_SECRET}?"), deleted()),
    ]);
    let (client, api) = mock(calls);
    let d = diff::diff_target(&client, "net", "r1", live_wait(Duration::from_secs(30))).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(request_of(&bodies).len(), 16);
    // Telnet, set by hand, goes (explicit deletion); eth1 stays (Merge, never applied); the
    // password is a placeholder: not compared; ntp's managed scope is replaced.
    assert_eq!(
        d.commands,
        [
            "delete interfaces ethernet eth0 description 'old'",
            "delete service ntp server 192.0.2.9",
            "delete service telnet",
            "set interfaces ethernet eth0 description 'uplink'",
            "set service ntp server 192.0.2.1",
        ]
    );
    assert!(d.deletions_if_present.is_empty());
    assert_eq!(d.baseline, "the running configuration fetched at 2025-06-15T15:06:00Z (digest d-42)");
    let text = diff::text(&d);
    assert!(
        text.starts_with(
            "# VRouterTarget net/r1: desired revision aaaa000011112222\n\
             # against the running configuration fetched at 2025-06-15T15:06:00Z (digest d-42); the router reports revision aaaa000011112222 applied\n\
             # secret values are not compared (the router's value counts as the placeholder's)\n\
             # paths the agent's own configuration protects are not known here\n\
             delete interfaces ethernet eth0 description 'old'\n"
        ),
        "{text}"
    );
    assert!(!text.contains("real-secret"), "{text}");
    let json: Value = serde_json::from_str(&show(&d, Format::Json, || unreachable!()).unwrap()).unwrap();
    assert_eq!(
        json["running"],
        json!({"fetchedAt": "2025-06-15T15:06:00Z", "digest": "d-42", "reportedRevision": "aaaa000011112222"})
    );
    assert!(!json.to_string().contains("real-secret"));

    // The same fleet from the applied revision: the hand-set paths are unknown, telnet's
    // deletion only "if present".
    let mut calls = namespace_lists("base");
    calls.push(call("GET", "/api/v1/namespaces/net/configmaps/vrouter-applied-r1", applied_configmap(APPLIED_R1)));
    let (client, api) = mock(calls);
    let d = diff::diff_target(&client, "net", "r1", diff::Source::Applied).await.unwrap();
    api.await.unwrap();
    assert!(d.running.is_none());
    assert_eq!(d.deletions_if_present, ["delete service telnet"]);
    assert!(d.commands.iter().any(|c| c.contains("plaintext-password")), "{:?}", d.commands);
}

#[tokio::test]
async fn diff_reports_an_agent_that_is_not_connected_and_deletes_the_secret() {
    let mut calls = diff_calls_until_asked();
    calls.extend([
        call(
            "GET",
            RUNNING_SECRET,
            running_answer(json!({"error": b64("the router's agent is not connected"), "fetched-at": b64("x")})),
        ),
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{RUNNING_SECRET}?"), deleted()),
    ]);
    let (client, api) = mock(calls);
    let e = diff::diff_target(&client, "net", "r1", live_wait(Duration::from_secs(30))).await.unwrap_err();
    api.await.unwrap();
    assert!(matches!(&e, Error::Running { target, .. } if target == "net/r1"), "{e}");
    assert_eq!(
        e.to_string(),
        "running configuration of net/r1: the router's agent is not connected (--from-applied plans from the last applied revision instead)"
    );
}

#[tokio::test]
async fn diff_times_out_clearly_and_withdraws_its_request() {
    let with_running_request = Answer::With(Box::new(|bodies| {
        let mut t = targets().remove(0);
        t["metadata"]["resourceVersion"] = "78".into();
        t["metadata"]["annotations"] = bodies[DIFF_ASK]["metadata"]["annotations"].clone();
        t
    }));
    let mut calls = diff_calls_until_asked();
    calls.extend([
        call("GET", RUNNING_SECRET, Answer::Status(404)),
        call("GET", TARGET, with_running_request),
        call("PATCH", format!("{TARGET}?"), target_r1()),
        call("GET", RUNNING_SECRET, Answer::Status(404)),
    ]);
    let (client, api) = mock(calls);
    let e = diff::diff_target(&client, "net", "r1", live_wait(Duration::ZERO)).await.unwrap_err();
    let bodies = api.await.unwrap();
    let text = e.to_string();
    assert!(
        text.starts_with(
            "running configuration of net/r1: no answer from the operator after 0s (Secret vrouter-running-r1 with request id "
        ),
        "{text}"
    );
    assert!(text.contains("is the operator running and watching namespace net? The request was withdrawn"), "{text}");
    assert!(text.ends_with("--from-applied plans from the last applied revision without the operator"), "{text}");
    assert_eq!(
        bodies[DIFF_ASK + 3],
        json!({"metadata": {"resourceVersion": "78", "annotations": {"vrouter.kojuro.date/running-request": null}}})
    );
}

/// The agent's own record (carried by the live answer) is the previous revision, as the agent
/// itself will use it: a path it applied that the operator's copy lacks is removed.
#[tokio::test]
async fn diff_takes_the_previous_revision_from_the_agents_record() {
    let agents = APPLIED_R1.replace(
        "    ethernet eth0 {\n        description \"old\"\n    }\n",
        "    ethernet eth0 {\n        description \"old\"\n    }\n    ethernet eth1 {\n        description \"by hand\"\n    }\n",
    );
    assert_ne!(agents, APPLIED_R1);
    let mut calls = diff_calls_until_asked();
    calls.extend([
        call("GET", RUNNING_SECRET, Answer::Status(404)),
        call(
            "GET",
            RUNNING_SECRET,
            running_answer(json!({"config": b64(RUNNING_R1), "digest": b64("d-42"),
                "fetched-at": b64("2025-06-15T15:06:00Z"), "revision": b64("aaaa000011112222"),
                "applied-config": b64(&agents)})),
        ),
        call("GET", TARGET, target_r1()),
        call("DELETE", format!("{RUNNING_SECRET}?"), deleted()),
    ]);
    let (client, api) = mock(calls);
    let d = diff::diff_target(&client, "net", "r1", live_wait(Duration::from_secs(30))).await.unwrap();
    api.await.unwrap();
    assert!(d.commands.contains(&"delete interfaces ethernet eth1".to_owned()), "{:?}", d.commands);
}
