//! VRouterTarget (`vrt`): one router — where it runs, how configuration reaches it, its
//! params and policies; its status shows the agent, the applied revision and drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GoDuration, NameRef, Params};

/// One router.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vrouter.kojuro.date",
    version = "v1",
    kind = "VRouterTarget",
    namespaced,
    shortname = "vrt",
    category = "vrouter",
    doc = "One router: where it runs, how configuration reaches it, its params and policies.",
    status = "VRouterTargetStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Connected", type_ = "boolean", json_path = ".status.agent.connected"),
    printcolumn(
        name = "Applied",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ConfigApplied\")].status"
    ),
    printcolumn(name = "Drifted", type_ = "boolean", json_path = ".status.drift.drifted"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.appliedRevision"),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"ConfigApplied\")].message"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VRouterTargetSpec {
    /// Where the router runs (for guest-agent access). Absent: bare metal or any VM reached
    /// only through its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// How configuration reaches the router.
    #[serde(default)]
    pub delivery: DeliverySpec,
    /// `Merge` (default): merge into the running config, remove only what left the desired
    /// state. `Replace`: the running config becomes exactly the desired config.
    #[serde(default)]
    pub config_policy: ConfigPolicy,
    /// Under `Merge`: configuration paths (e.g. `protocols bgp`) the operator owns entirely —
    /// inside them, anything not in the desired config is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub managed_scopes: Vec<String>,
    /// `Report` (default): report drift in status. `Correct`: also re-apply the desired
    /// revision (with a backoff, so a fight with a human cannot loop).
    #[serde(default)]
    pub drift_policy: DriftPolicy,
    /// Stop delivering to this router (drift is still reported).
    #[serde(default)]
    pub paused: bool,
    /// Template parameters of this router: the highest-priority layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::free_form_object")]
    pub params: Option<Params>,
}

/// Where a router runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.type != 'kubevirt' || has(self.kubevirt)").message("provider.kubevirt is required when type is kubevirt"))]
#[x_kube(validation = Rule::new("self.type != 'proxmox' || has(self.proxmox)").message("provider.proxmox is required when type is proxmox"))]
#[x_kube(validation = Rule::new("self.type != 'libvirt' || has(self.libvirt)").message("provider.libvirt is required when type is libvirt"))]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// Which hypervisor; default `kubevirt` (as in the predecessor).
    #[serde(default, rename = "type")]
    pub type_: ProviderType,
    /// A KubeVirt VirtualMachine (guest agent through its virt-launcher pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubevirt: Option<KubevirtProvider>,
    /// A Proxmox VE VM (guest agent through the Proxmox API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<ProxmoxProvider>,
    /// A libvirt/QEMU guest reachable through its guest-agent unix socket on the operator's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt: Option<LibvirtProvider>,
}

/// Hypervisor kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// KubeVirt / Harvester.
    #[default]
    Kubevirt,
    /// Proxmox VE.
    Proxmox,
    /// libvirt/QEMU on a host the operator can reach.
    Libvirt,
    /// No hypervisor access (bare metal, or a VM the operator cannot reach): agent only.
    None,
}

/// A KubeVirt VirtualMachine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtProvider {
    /// The VirtualMachine's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; defaults to the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Proxmox VE VM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxmoxProvider {
    /// The VM id.
    #[schemars(range(min = 100, max = 999999999))]
    pub vmid: u32,
    /// The ProxmoxCluster (same namespace) with endpoints and credentials.
    pub cluster_ref: NameRef,
}

/// A libvirt/QEMU guest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibvirtProvider {
    /// Path of the guest agent's unix socket (the virtio-serial channel's host side).
    #[schemars(length(min = 1, max = 4096))]
    pub socket: String,
}

/// How configuration reaches a router.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// `Auto` (default): the agent, with guest-agent bootstrap and fallback where the provider
    /// offers it. `Agent`: the agent only. `QGA`: the guest agent only.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// Commit-confirm: the router reverts by itself unless the agent proves, after the commit,
    /// that it still reaches the operator.
    #[serde(default)]
    pub commit_confirm: CommitConfirmSpec,
    /// How long one apply may take before it is reported failed (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_timeout: Option<GoDuration>,
    /// In `Auto` mode, whether the operator may install, configure and start the agent through
    /// the guest agent when the VM has none (default true).
    #[serde(default = "default_true")]
    pub bootstrap: bool,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        DeliverySpec {
            mode: DeliveryMode::default(),
            commit_confirm: CommitConfirmSpec::default(),
            apply_timeout: None,
            bootstrap: true,
        }
    }
}

/// Delivery paths.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeliveryMode {
    /// Agent first; guest agent for bootstrap and fallback.
    #[default]
    Auto,
    /// The agent only.
    Agent,
    /// The guest agent only.
    #[serde(rename = "QGA")]
    Qga,
}

/// Commit-confirm settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitConfirmSpec {
    /// On by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Minutes before VyOS reverts an unconfirmed commit (1–60, default 2).
    #[serde(default = "default_confirm_minutes")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_minutes: u32,
}

impl Default for CommitConfirmSpec {
    fn default() -> Self {
        CommitConfirmSpec { enabled: true, timeout_minutes: default_confirm_minutes() }
    }
}

pub(crate) fn default_true() -> bool {
    true
}

fn default_confirm_minutes() -> u32 {
    2
}

/// How the desired config relates to the rest of the router's configuration.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConfigPolicy {
    /// Merge into the running config; remove only what left the desired state.
    #[default]
    Merge,
    /// The running config becomes exactly the desired config (plus the agent's protected paths).
    Replace,
}

/// What to do about drift.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DriftPolicy {
    /// Report it in status and Events.
    #[default]
    Report,
    /// Report it and re-apply the desired revision (with a backoff).
    Correct,
}

/// Observed state of a router.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VRouterTargetStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `AgentConnected`, `ConfigApplied`, `Drifted`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The agent's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,
    /// The VRouterConfigs composed into the desired revision (priority, then name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<String>,
    /// The revision the router should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// Digest of the desired configuration (secrets as placeholders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// The revision the router last confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// The router's running-config digest after that apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// When the router last confirmed a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_time: Option<Time>,
    /// The last delivery attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<LastApply>,
    /// Drift between the running config and the applied revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftStatus>,
    /// Whether the VM runs, as the provider last saw it (providers with hypervisor access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_running: Option<bool>,
    /// Proxmox node currently hosting the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox_node: Option<String>,
    /// When the router last booted, as far as the operator can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reboot_time: Option<Time>,
}

/// The agent's session, as the operator sees it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Whether a session is open.
    pub connected: bool,
    /// Since when it is open (or since when it is closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Router OS and version (e.g. `VyOS 1.4.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The router's boot id (changes on reboot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Last status report or heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// Why the last session ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_disconnect_reason: Option<String>,
}

/// The last delivery attempt.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastApply {
    /// The revision.
    pub revision: String,
    /// `Applied`, `NoChange`, `Failed`, `RolledBack`, `Partial`, or a delivery error.
    pub outcome: String,
    /// Number of configuration commands executed.
    #[serde(default)]
    pub commands: u32,
    /// How long it took (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Error or summary (secrets redacted; truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Drift between the running config and the applied revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// Whether the running config differs from the applied revision.
    pub drifted: bool,
    /// The differing paths (at most 50; see `pathCount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// How many paths differ.
    #[serde(default)]
    pub path_count: u32,
    /// Whether the running config differs from the saved boot config.
    #[serde(default)]
    pub unsaved: bool,
    /// When the current drift was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,
    /// Drift corrections made (policy `Correct`).
    #[serde(default)]
    pub corrections: u32,
}
