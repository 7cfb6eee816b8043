//! VRouterBinding (`vrb`): templates × params → one generated VRouterConfig per target.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GoDuration, NameRef, Params, target::default_true};

/// Renders templates with merged params for every selected target and writes the result as a
/// VRouterConfig `<binding>.<target>` owned by the binding.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vrouter.kojuro.date",
    version = "v1",
    kind = "VRouterBinding",
    namespaced,
    shortname = "vrb",
    category = "vrouter",
    doc = "Renders templates with params for a set of routers into one VRouterConfig per router.",
    status = "VRouterBindingStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Targets", type_ = "integer", json_path = ".status.targets"),
    printcolumn(name = "Applied", type_ = "integer", json_path = ".status.applied"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.templateRef) || (has(self.templateRefs) && size(self.templateRefs) > 0)").message("set templateRefs (or the deprecated templateRef)"))]
#[x_kube(validation = Rule::new("(has(self.targetRefs) && size(self.targetRefs) > 0) || has(self.targetSelector)").message("set targetRefs, targetSelector or both"))]
#[serde(rename_all = "camelCase")]
pub struct VRouterBindingSpec {
    /// Deprecated: a single template, rendered before `templateRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<NameRef>,
    /// Templates rendered in this order; their outputs are concatenated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub template_refs: Vec<NameRef>,
    /// VRouterParams merged in this order (the lowest-priority layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub params_refs: Vec<NameRef>,
    /// Parameters of this binding, merged over `paramsRefs` and under each target's `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::free_form_object")]
    pub params: Option<Params>,
    /// Routers, by name (rollout order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub target_refs: Vec<NameRef>,
    /// Routers, by label (after `targetRefs`, in name order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_selector: Option<LabelSelector>,
    /// Save the configuration to the router's boot config after a confirmed commit (default
    /// true).
    #[serde(default = "default_true")]
    pub save: bool,
    /// Composition priority of the generated configs: on a router, higher priority wins where
    /// two configs set the same leaf differently.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,
    /// Stop writing generated configs (what is already written stays).
    #[serde(default)]
    pub paused: bool,
    /// How changes roll out across the targets (default: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
}

/// Rollout strategy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.mode != 'FixedInterval' || has(self.waitInterval)").message("rollout.waitInterval is required when mode is FixedInterval"))]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// `Disabled` (default): all targets at once. `WaitForApplied`: batches, the next one when
    /// the current one is applied (and soaked). `FixedInterval`: batches on a timer.
    #[serde(default)]
    pub mode: RolloutMode,
    /// Targets per batch (default 1).
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_unavailable: u32,
    /// How often to look at progress (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<GoDuration>,
    /// WaitForApplied: soak time after a batch is applied (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_after_applied: Option<GoDuration>,
    /// FixedInterval: time between batches (required, > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_interval: Option<GoDuration>,
    /// WaitForApplied: stop when a config of this binding fails (default true).
    #[serde(default = "default_true")]
    pub halt_on_failure: bool,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            mode: RolloutMode::Disabled,
            max_unavailable: default_max_unavailable(),
            poll_interval: None,
            wait_after_applied: None,
            wait_interval: None,
            halt_on_failure: true,
        }
    }
}

fn default_max_unavailable() -> u32 {
    1
}

/// Rollout modes (the predecessor's names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutMode {
    /// All targets at once.
    #[default]
    Disabled,
    /// Batches; the next batch once the current one is applied and soaked.
    WaitForApplied,
    /// Batches on a timer, regardless of outcome.
    FixedInterval,
}

/// Observed state of a binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VRouterBindingStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (all generated configs written and applied) and `Progressing` (a rollout is
    /// under way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of selected targets.
    #[serde(default)]
    pub targets: u32,
    /// Generated configs applied at their current generation.
    #[serde(default)]
    pub applied: u32,
    /// Generated configs whose last apply failed.
    #[serde(default)]
    pub failed: u32,
    /// Rollout progress (batched modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<BindingRolloutStatus>,
}

/// Rollout progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingRolloutStatus {
    /// Targets of the current batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<String>,
    /// When the current batch was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_start_time: Option<Time>,
    /// 1-based number of the current batch in this rollout.
    #[serde(default)]
    pub batch_number: u32,
}
