//! The vrouter operator: renders one desired configuration per router from Kubernetes resources
//! (or a directory of manifests) and keeps every router in that state.
//!
//! - [`compose`]: a router's configs composed into one desired state and its revision id.
//! - [`crd`]: the custom resources and their validation rules.
//! - [`naming`]: names and labels of generated VRouterConfigs.
//! - [`pki`]: the operator's CA, enrollment tokens and router certificates.
//! - [`rollout`]: which generated configs a binding writes now.
//! - [`delivery`]: keeps every router at its desired revision through the hub.
//! - [`hub`]: the agent hub — one authenticated stream per router, and the delivery API.
//! - [`metrics`]: Prometheus metrics.

pub mod compose;
pub mod crd;
pub mod delivery;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod naming;
pub mod pki;
pub mod qga;
pub mod rollout;
pub mod time;
