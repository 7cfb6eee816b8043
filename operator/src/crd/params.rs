//! VRouterParams (`vrtp`): a reusable block of template parameters.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Params;

/// Parameters shared by bindings (`paramsRefs`), merged below the binding's and the target's
/// own `params`.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vrouter.kojuro.date",
    version = "v1",
    kind = "VRouterParams",
    plural = "vrouterparams",
    namespaced,
    shortname = "vrtp",
    category = "vrouter",
    doc = "A reusable block of template parameters.",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VRouterParamsSpec {
    /// Any JSON object; maps merge recursively with other layers, scalars and lists replace,
    /// `null` removes a key set by a lower layer.
    #[serde(default)]
    #[schemars(schema_with = "super::free_form_object")]
    pub params: Params,
}
