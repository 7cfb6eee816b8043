//! ProxmoxCluster: endpoints and credentials of a Proxmox VE cluster (guest-agent access).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GoDuration, target::default_true};

/// A Proxmox VE cluster reached through its REST API with an API token.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vrouter.kojuro.date",
    version = "v1",
    kind = "ProxmoxCluster",
    namespaced,
    shortname = "pxc",
    category = "vrouter",
    doc = "A Proxmox VE cluster: API endpoints and the Secret with an API token.",
    status = "ProxmoxClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoints[0]"),
    printcolumn(name = "LastSync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.conditions[?(@.type==\"Synced\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProxmoxClusterSpec {
    /// API endpoints (`https://pve1:8006`), tried in order.
    #[schemars(length(min = 1, max = 16))]
    pub endpoints: Vec<String>,
    /// Secret (same namespace) with keys `api-token-id` (`user@pam!token`) and
    /// `api-token-secret`, as in the predecessor.
    pub credentials_ref: SecretReference,
    /// Skip TLS verification (not recommended; prefer `caBundle`).
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// PEM CA bundle for the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// How often VM placement and uptime are refreshed (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<GoDuration>,
    /// Also read the guest's uptime through the guest agent, to catch soft reboots (default
    /// true).
    #[serde(default = "default_true")]
    pub check_guest_uptime: bool,
}

/// A Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Observed state of a Proxmox cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxmoxClusterStatus {
    /// Last successful sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
