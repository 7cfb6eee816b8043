//! [`KubeResolver`]: VM references of targets turned into providers inside a cluster — KubeVirt
//! VMs through their launcher pods, Proxmox VMs through their ProxmoxCluster's API and token
//! Secret (read by name only; the operator has no list/watch on Secrets).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::proxmox::{ApiToken, ProxmoxApi, ProxmoxProvider};
use super::route::{VmRef, VmResolver};
use super::{KubevirtProvider, LibvirtProvider, VmProvider};
use crate::crd::ProxmoxCluster;

/// Secret keys of a ProxmoxCluster's credentials (as in the predecessor).
pub const TOKEN_ID_KEY: &str = "api-token-id";
/// See [`TOKEN_ID_KEY`].
pub const TOKEN_SECRET_KEY: &str = "api-token-secret";

/// ProxmoxCluster (namespace, name) → (resource versions of it and its Secret, API client).
type ProxmoxClients = HashMap<(String, String), (String, Arc<ProxmoxApi>)>;

/// Resolves VM references with the Kubernetes API.
pub struct KubeResolver {
    client: Client,
    /// One API client per ProxmoxCluster, rebuilt when the cluster or its Secret changes.
    proxmox: Mutex<ProxmoxClients>,
}

impl KubeResolver {
    /// A resolver using `client`.
    pub fn new(client: Client) -> Self {
        Self { client, proxmox: Mutex::default() }
    }

    async fn proxmox_api(&self, namespace: &str, cluster: &str) -> Result<Arc<ProxmoxApi>, String> {
        let pxc = Api::<ProxmoxCluster>::namespaced(self.client.clone(), namespace)
            .get_opt(cluster)
            .await
            .map_err(|e| format!("ProxmoxCluster {namespace}/{cluster}: {e}"))?
            .ok_or_else(|| format!("ProxmoxCluster {namespace}/{cluster} does not exist"))?;
        let secret_name = &pxc.spec.credentials_ref.name;
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(secret_name)
            .await
            .map_err(|e| format!("Secret {namespace}/{secret_name}: {e}"))?
            .ok_or_else(|| format!("Secret {namespace}/{secret_name} (credentials of {cluster}) does not exist"))?;
        let version = format!(
            "{}/{}",
            pxc.metadata.resource_version.as_deref().unwrap_or_default(),
            secret.metadata.resource_version.as_deref().unwrap_or_default()
        );
        let key = (namespace.to_owned(), cluster.to_owned());
        if let Ok(cache) = self.proxmox.lock()
            && let Some((v, api)) = cache.get(&key)
            && *v == version
        {
            return Ok(api.clone());
        }
        let value = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("Secret {namespace}/{secret_name} has no {k:?}"))
        };
        let token = ApiToken::new(value(TOKEN_ID_KEY)?, value(TOKEN_SECRET_KEY)?)
            .map_err(|e| format!("Secret {namespace}/{secret_name}: {e}"))?;
        let api = Arc::new(
            ProxmoxApi::new(&pxc.spec, token).map_err(|e| format!("ProxmoxCluster {namespace}/{cluster}: {e}"))?,
        );
        if let Ok(mut cache) = self.proxmox.lock() {
            cache.insert(key, (version, api.clone()));
        }
        Ok(api)
    }
}

#[async_trait]
impl VmResolver for KubeResolver {
    async fn resolve(&self, vm: &VmRef) -> Result<Arc<dyn VmProvider>, String> {
        Ok(match vm {
            VmRef::Libvirt { socket } => Arc::new(LibvirtProvider::new(socket.clone())),
            VmRef::Kubevirt { namespace, name } => {
                Arc::new(KubevirtProvider::new(self.client.clone(), namespace, name))
            }
            VmRef::Proxmox { namespace, cluster, vmid } => {
                Arc::new(ProxmoxProvider::with_api(self.proxmox_api(namespace, cluster).await?, *vmid))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    fn json(v: serde_json::Value) -> Response<Body> {
        Response::builder().status(200).body(Body::from(serde_json::to_vec(&v).unwrap())).unwrap()
    }

    fn cluster(version: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "vrouter.kojuro.date/v1", "kind": "ProxmoxCluster",
            "metadata": {"name": "pve", "namespace": "edge", "resourceVersion": version},
            "spec": {"endpoints": ["https://127.0.0.1:8006"], "credentialsRef": {"name": "pve-token"}}
        })
    }

    fn secret(data: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pve-token", "namespace": "edge", "resourceVersion": "7"}, "data": data})
    }

    /// Serves the given responses in order, checking each request's path.
    fn mock(expect: Vec<(&'static str, Response<Body>)>) -> (Client, tokio::task::JoinHandle<()>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let task = tokio::spawn(async move {
            for (path, response) in expect {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!(request.method(), "GET");
                assert_eq!(request.uri().path(), path);
                send.send_response(response);
            }
        });
        (Client::new(service, "default"), task)
    }

    #[tokio::test]
    async fn proxmox_reads_the_cluster_and_its_secret_by_name_and_caches_the_api() {
        // "user@pam!ci" / "s3cret", base64.
        let data = serde_json::json!({"api-token-id": "dXNlckBwYW0hY2k=", "api-token-secret": "czNjcmV0"});
        let (client, task) = mock(vec![
            ("/apis/vrouter.kojuro.date/v1/namespaces/edge/proxmoxclusters/pve", json(cluster("1"))),
            ("/api/v1/namespaces/edge/secrets/pve-token", json(secret(data.clone()))),
            ("/apis/vrouter.kojuro.date/v1/namespaces/edge/proxmoxclusters/pve", json(cluster("1"))),
            ("/api/v1/namespaces/edge/secrets/pve-token", json(secret(data))),
        ]);
        let resolver = KubeResolver::new(client);
        let vm = VmRef::Proxmox { namespace: "edge".into(), cluster: "pve".into(), vmid: 101 };
        let p = resolver.resolve(&vm).await.unwrap();
        assert!(p.describe().contains("101"), "{}", p.describe());
        let first = resolver.proxmox_api("edge", "pve").await.unwrap();
        let again = resolver.proxmox.lock().unwrap().get(&("edge".into(), "pve".into())).unwrap().1.clone();
        assert!(Arc::ptr_eq(&first, &again));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_secret_without_the_token_keys_is_a_clear_error() {
        let (client, task) = mock(vec![
            ("/apis/vrouter.kojuro.date/v1/namespaces/edge/proxmoxclusters/pve", json(cluster("1"))),
            ("/api/v1/namespaces/edge/secrets/pve-token", json(secret(serde_json::json!({"token": "eA=="})))),
        ]);
        let resolver = KubeResolver::new(client);
        let vm = VmRef::Proxmox { namespace: "edge".into(), cluster: "pve".into(), vmid: 101 };
        let e = resolver.resolve(&vm).await.err().unwrap();
        assert!(e.contains("edge/pve-token") && e.contains("api-token-id"), "{e}");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_cluster_is_named() {
        let not_found = Response::builder()
            .status(404)
            .body(Body::from(
                serde_json::to_vec(&serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found"}))
                .unwrap(),
            ))
            .unwrap();
        let (client, task) =
            mock(vec![("/apis/vrouter.kojuro.date/v1/namespaces/edge/proxmoxclusters/pve", not_found)]);
        let resolver = KubeResolver::new(client);
        let vm = VmRef::Proxmox { namespace: "edge".into(), cluster: "pve".into(), vmid: 101 };
        let e = resolver.resolve(&vm).await.err().unwrap();
        assert_eq!(e, "ProxmoxCluster edge/pve does not exist");
        task.await.unwrap();
    }
}
