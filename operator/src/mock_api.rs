//! Test helper: a kube client whose API server answers an exact, ordered list of calls and
//! fails the test on any other call (the leader, PKI Secret store and webhook tests).

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One expected call: method, path and query, and the response.
pub(crate) struct Expect {
    pub method: &'static str,
    pub uri: String,
    pub code: u16,
    /// `Value::Null`: answer with the body as sent.
    pub respond: Value,
}

/// A call answered with `respond` (200).
pub(crate) fn expect(method: &'static str, uri: impl Into<String>, respond: Value) -> Expect {
    Expect { method, uri: uri.into(), code: 200, respond }
}

/// A call answered with a failure Status of `code` and `reason`.
pub(crate) fn failure(method: &'static str, uri: impl Into<String>, code: u16, reason: &str) -> Expect {
    let respond = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code});
    Expect { method, uri: uri.into(), code, respond }
}

/// A client answering exactly `calls`, in order; the join handle yields the request bodies
/// (`Value::Null` for none) once every call was made and no further one came.
pub(crate) fn mock(calls: Vec<Expect>) -> (Client, tokio::task::JoinHandle<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for (i, e) in calls.into_iter().enumerate() {
            let (req, send) = handle.next_request().await.unwrap_or_else(|| panic!("call {i} never came: {}", e.uri));
            assert_eq!(req.method().as_str(), e.method, "method of call {i}: {}", req.uri());
            assert_eq!(req.uri().to_string(), e.uri, "uri of call {i}");
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let respond = if e.respond.is_null() { body.clone() } else { e.respond };
            bodies.push(body);
            let body = Body::from(serde_json::to_vec(&respond).unwrap());
            send.send_response(Response::builder().status(e.code).body(body).unwrap());
        }
        if let Ok(Some((req, _))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), handle.next_request()).await
        {
            panic!("more calls than expected: {} {}", req.method(), req.uri());
        }
        bodies
    });
    (Client::new(service, "default"), task)
}
