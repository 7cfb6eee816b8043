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
    use serde_json::{Value, json};

    use super::*;
    use crate::mock_api::{expect, failure, mock};

    const CLUSTER: &str = "/apis/vrouter.kojuro.date/v1/namespaces/edge/proxmoxclusters/pve";
    const SECRET: &str = "/api/v1/namespaces/edge/secrets/pve-token";

    fn cluster() -> Value {
        json!({
            "apiVersion": "vrouter.kojuro.date/v1", "kind": "ProxmoxCluster",
            "metadata": {"name": "pve", "namespace": "edge", "resourceVersion": "1"},
            "spec": {"endpoints": ["https://127.0.0.1:8006"], "credentialsRef": {"name": "pve-token"}}
        })
    }

    fn secret(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pve-token", "namespace": "edge", "resourceVersion": "7"}, "data": data})
    }

    fn vm() -> VmRef {
        VmRef::Proxmox { namespace: "edge".into(), cluster: "pve".into(), vmid: 101 }
    }

    #[tokio::test]
    async fn proxmox_reads_the_cluster_and_its_secret_by_name_and_caches_the_api() {
        // "user@pam!ci" / "s3cret", base64.
        let data = json!({"api-token-id": "dXNlckBwYW0hY2k=", "api-token-secret": "czNjcmV0"});
        let (client, task) = mock(vec![
            expect("GET", CLUSTER, cluster()),
            expect("GET", SECRET, secret(data.clone())),
            expect("GET", CLUSTER, cluster()),
            expect("GET", SECRET, secret(data)),
        ]);
        let resolver = KubeResolver::new(client);
        let p = resolver.resolve(&vm()).await.unwrap();
        assert!(p.describe().contains("101"), "{}", p.describe());
        let first = resolver.proxmox_api("edge", "pve").await.unwrap();
        let again = resolver.proxmox.lock().unwrap().get(&("edge".into(), "pve".into())).unwrap().1.clone();
        assert!(Arc::ptr_eq(&first, &again));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_secret_without_the_token_keys_is_a_clear_error() {
        let (client, task) =
            mock(vec![expect("GET", CLUSTER, cluster()), expect("GET", SECRET, secret(json!({"token": "eA=="})))]);
        let e = KubeResolver::new(client).resolve(&vm()).await.err().unwrap();
        assert!(e.contains("edge/pve-token") && e.contains("api-token-id"), "{e}");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_cluster_is_named() {
        let (client, task) = mock(vec![failure("GET", CLUSTER, 404, "NotFound")]);
        let e = KubeResolver::new(client).resolve(&vm()).await.err().unwrap();
        assert_eq!(e, "ProxmoxCluster edge/pve does not exist");
        task.await.unwrap();
    }
}
