//! Reading what a review needs: the request's namespace, listed directly (always current; a
//! review reads only the kinds its rules look at).

use std::collections::BTreeMap;

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::review::{Needs, Snapshot};

async fn list<K>(client: &Client, namespace: &str, wanted: bool) -> Result<BTreeMap<String, K>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    if !wanted {
        return Ok(BTreeMap::new());
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items.into_iter().map(|o| (o.name_any(), o)).collect())
}

async fn get_one<K>(
    client: &Client,
    namespace: &str,
    name: Option<&str>,
    into: &mut BTreeMap<String, K>,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let Some(name) = name.filter(|n| crate::crd::validate::check_name(n).is_ok()) else { return Ok(()) };
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    if let Some(o) = api.get_opt(name).await? {
        into.insert(name.to_owned(), o);
    }
    Ok(())
}

/// Reads what `needs` names in `namespace`: whole kinds listed, single objects by name.
pub async fn gather(client: &Client, namespace: &str, needs: &Needs) -> Result<Snapshot, kube::Error> {
    let mut s = Snapshot {
        templates: list(client, namespace, needs.templates).await?,
        params: list(client, namespace, needs.params).await?,
        targets: list(client, namespace, needs.targets).await?,
        bindings: list(client, namespace, needs.bindings).await?,
        configs: list(client, namespace, needs.configs).await?,
        proxmox_clusters: list(client, namespace, needs.proxmox_clusters).await?,
    };
    get_one(client, namespace, needs.target.as_deref(), &mut s.targets).await?;
    get_one(client, namespace, needs.proxmox_cluster.as_deref(), &mut s.proxmox_clusters).await?;
    Ok(s)
}
