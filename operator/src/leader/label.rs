//! The leader label: the leader marks its own pod, and the agent Service selects that label, so
//! agents reach the leader while every replica stays ready (rolling updates and disruption
//! budgets keep working; followers still answer admission reviews).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// The label the leader sets on its pod (`"true"`), removed when it stops leading.
pub const LEADER_LABEL: &str = "vrouter.kojuro.date/leader";

/// Sets (`leading`) or removes the leader label on pod `namespace/name`.
pub async fn label_pod(client: &Client, namespace: &str, name: &str, leading: bool) -> Result<(), kube::Error> {
    let value = if leading { serde_json::json!("true") } else { serde_json::Value::Null };
    let patch = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: value}}});
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mock_api::{expect, failure, mock};

    #[tokio::test]
    async fn the_label_is_set_and_removed_with_merge_patches() {
        let uri = "/api/v1/namespaces/vrouter/pods/op-0?";
        let (client, task) = mock(vec![expect("PATCH", uri, json!({})), expect("PATCH", uri, json!({}))]);
        label_pod(&client, "vrouter", "op-0", true).await.unwrap();
        label_pod(&client, "vrouter", "op-0", false).await.unwrap();
        let bodies = task.await.unwrap();
        assert_eq!(bodies[0], json!({"metadata": {"labels": {"vrouter.kojuro.date/leader": "true"}}}));
        assert_eq!(bodies[1], json!({"metadata": {"labels": {"vrouter.kojuro.date/leader": null}}}));
    }

    #[tokio::test]
    async fn a_refused_patch_is_an_error() {
        let (client, task) = mock(vec![failure("PATCH", "/api/v1/namespaces/vrouter/pods/op-0?", 403, "Forbidden")]);
        assert!(label_pod(&client, "vrouter", "op-0", true).await.is_err());
        task.await.unwrap();
    }
}
