use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use super::*;
use crate::mock_api::{expect, failure, mock};
use crate::pki::{Pki, PkiConfig};

const SECRET: &str = "/api/v1/namespaces/sys/secrets/vrouter-pki";
const SECRETS: &str = "/api/v1/namespaces/sys/secrets?";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn secret(rv: &str, data: &[(&str, &[u8])]) -> Value {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| ((*k).to_owned(), json!(b64(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "vrouter-pki", "namespace": "sys", "resourceVersion": rv}, "data": data})
}

fn store(client: kube::Client) -> SecretStore {
    SecretStore::new(client, "sys", "vrouter-pki").unwrap()
}

#[tokio::test]
async fn first_start_creates_the_secret_with_the_ca_then_adds_the_rest() {
    let (client, api) = mock(vec![
        failure("GET", SECRET, 404, "NotFound"),
        expect("POST", SECRETS, Value::Null),
        expect("PUT", format!("{SECRET}?"), Value::Null), // registry marker
        expect("PUT", format!("{SECRET}?"), Value::Null), // server key
        expect("PUT", format!("{SECRET}?"), Value::Null), // server certificate
    ]);
    let pki = Pki::open(Arc::new(store(client)), PkiConfig::default()).await.unwrap();
    let bodies = api.await.unwrap();
    let created = &bodies[1];
    assert_eq!(created["metadata"]["name"], "vrouter-pki");
    assert_eq!(created["type"], "Opaque");
    assert_eq!(String::from_utf8(unb64(&created["data"]["ca.crt"])).unwrap(), pki.ca_pem());
    assert!(String::from_utf8(unb64(&created["data"]["ca.key"])).unwrap().contains("PRIVATE KEY"));
    let last = &bodies[4]["data"];
    for key in ["ca.crt", "ca.key", "registry", "server.key", "server.crt"] {
        assert!(last.get(key).is_some(), "{key} missing from {last}");
    }
    assert_eq!(String::from_utf8(unb64(&last["server.crt"])).unwrap(), pki.server_identity().cert_pem);
}

/// A complete PKI as another replica would have written it.
async fn existing_pki() -> (Vec<(String, Vec<u8>)>, String) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::open(Arc::new(crate::pki::DirStore::new(dir.path()).unwrap()), PkiConfig::default()).await.unwrap();
    let mut items = Vec::new();
    for name in ["ca.crt", "ca.key", "registry", "server.crt", "server.key"] {
        items.push((name.to_owned(), std::fs::read(dir.path().join(name)).unwrap()));
    }
    (items, pki.ca_pem().to_owned())
}

#[tokio::test]
async fn losing_the_first_start_race_uses_the_winners_ca() {
    let (items, winner_ca) = existing_pki().await;
    let data: Vec<(&str, &[u8])> = items.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let (client, api) = mock(vec![
        failure("GET", SECRET, 404, "NotFound"),
        failure("POST", SECRETS, 409, "AlreadyExists"),
        expect("GET", SECRET, secret("3", &data)),
    ]);
    let pki = Pki::open(Arc::new(store(client)), PkiConfig::default()).await.unwrap();
    api.await.unwrap();
    assert_eq!(pki.ca_pem(), winner_ca, "one CA for both replicas");
}

#[tokio::test]
async fn a_user_provided_ca_is_used_and_completed() {
    let (items, user_ca) = existing_pki().await;
    let ca: Vec<(&str, &[u8])> =
        items.iter().filter(|(k, _)| k.starts_with("ca.")).map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let (client, api) = mock(vec![
        expect("GET", SECRET, secret("1", &ca)),
        expect("PUT", format!("{SECRET}?"), Value::Null),
        expect("PUT", format!("{SECRET}?"), Value::Null),
        expect("PUT", format!("{SECRET}?"), Value::Null),
    ]);
    let pki = Pki::open(Arc::new(store(client)), PkiConfig::default()).await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(pki.ca_pem(), user_ca);
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "1", "writes are fenced by the version read");
    assert_eq!(unb64(&bodies[1]["data"]["ca.crt"]), user_ca.as_bytes());
}

#[tokio::test]
async fn a_conflicting_write_is_retried_on_a_fresh_read_keeping_the_other_writers_items() {
    let (client, api) = mock(vec![
        expect("GET", SECRET, secret("1", &[("a", b"1")])),
        failure("PUT", format!("{SECRET}?"), 409, "Conflict"),
        expect("GET", SECRET, secret("2", &[("a", b"1"), ("b", b"2")])),
        expect("PUT", format!("{SECRET}?"), Value::Null),
    ]);
    let s = store(client);
    s.save("c", b"3").await.unwrap();
    let bodies = api.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "1");
    assert_eq!(bodies[3]["metadata"]["resourceVersion"], "2");
    let data = bodies[3]["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    // The written Secret serves reads without another call.
    assert_eq!(s.load("b").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.list("").await.unwrap(), ["a", "b", "c"]);
}

#[tokio::test]
async fn update_delete_and_unchanged_items() {
    let (client, api) = mock(vec![
        expect("GET", SECRET, secret("1", &[("token-x", b"{}"), ("router-y", b"r")])),
        expect("PUT", format!("{SECRET}?"), Value::Null),
    ]);
    let s = store(client);
    // Nothing to change: no write.
    s.update("token-x", &mut |cur| {
        assert_eq!(cur.as_deref(), Some(&b"{}"[..]));
        Ok(None)
    })
    .await
    .unwrap();
    assert!(!s.delete("absent").await.unwrap(), "deleting an absent item writes nothing");
    assert!(s.delete("token-x").await.unwrap());
    let bodies = api.await.unwrap();
    assert_eq!(bodies[1]["data"].as_object().unwrap().keys().collect::<Vec<_>>(), ["router-y"]);
    assert_eq!(s.list("token-").await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn an_oversized_secret_is_refused_with_a_clear_error_and_bad_names_too() {
    let (client, api) = mock(vec![expect("GET", SECRET, secret("1", &[]))]);
    let s = store(client);
    let e = s.save("big", &vec![0u8; MAX_SECRET_DATA + 1]).await.unwrap_err();
    assert!(e.to_string().contains("Secret sys/vrouter-pki"), "{e}");
    assert!(e.to_string().contains("more than the 1000000"), "{e}");
    assert!(s.save("../x", b"1").await.unwrap_err().to_string().contains("invalid item name"));
    api.await.unwrap();
    assert!(SecretStore::new(mock(vec![]).0, "sys", "Bad_Name").is_err());
}

#[tokio::test]
async fn the_revision_key_is_created_once_and_then_kept() {
    let (client, api) =
        mock(vec![expect("GET", SECRET, secret("1", &[])), expect("PUT", format!("{SECRET}?"), Value::Null)]);
    let s = store(client);
    let key = crate::pki::revision_key(&s).await.unwrap();
    assert_eq!(key.len(), 32);
    // Read back from the written Secret: the same key, no further write.
    assert_eq!(crate::pki::revision_key(&s).await.unwrap(), key);
    api.await.unwrap();
}

#[tokio::test]
async fn a_secret_that_lost_its_ca_but_has_routers_is_refused_without_writing() {
    let (items, _) = existing_pki().await;
    let mut data: Vec<(&str, &[u8])> =
        items.iter().filter(|(k, _)| !k.starts_with("ca.")).map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    data.push(("router-edge_r1", b"{\"serials\":[\"01\"],\"not_after\":0,\"enrolled_at\":0}"));
    // Only reads: a write (a new CA) would be an unexpected request.
    let (client, api) = mock(vec![expect("GET", SECRET, secret("7", &data))]);
    let err = Pki::open(Arc::new(store(client)), PkiConfig::default()).await.unwrap_err().to_string();
    assert!(err.contains("sys/vrouter-pki"), "{err}");
    assert!(err.contains("ca.crt and ca.key are missing"), "{err}");
    assert!(err.contains("router-edge_r1"), "{err}");
    api.await.unwrap();
}
