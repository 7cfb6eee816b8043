//! VRouterTemplate (`vrtt`): a reusable configuration fragment.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A VyOS configuration fragment (`config`, hierarchical config.boot format) and/or
/// configuration commands (`commands`: `set`/`delete`/`comment` lines), both minijinja
/// templates. Templates can include or import each other by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vrouter.kojuro.date",
    version = "v1",
    kind = "VRouterTemplate",
    namespaced,
    shortname = "vrtt",
    category = "vrouter",
    doc = "A reusable VyOS configuration template (config fragment and/or set/delete commands).",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.config) || has(self.commands)").message("set config, commands or both"))]
#[serde(rename_all = "camelCase")]
pub struct VRouterTemplateSpec {
    /// VyOS hierarchical configuration (config.boot format), a minijinja template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub config: Option<String>,
    /// VyOS configuration commands (`set`, `delete`, `comment`; one per line), a minijinja
    /// template. Anything else (shell, `commit`, `run`) is refused: commands are data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub commands: Option<String>,
}
