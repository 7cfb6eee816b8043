//! The vrouter operator: renders one desired configuration per router from Kubernetes resources
//! (or a directory of manifests) and keeps every router in that state.
//!
//! Pure logic (no I/O):
//! - [`crd`]: the custom resources and their validation rules.
//! - [`render`]: template rendering (minijinja), parameter merging, secret placeholders.
//! - [`generate`]: a binding's generated VRouterConfigs.
//! - [`naming`]: names and labels of generated VRouterConfigs.
//! - [`rollout`]: which generated configs a binding writes now.
//! - [`binding_plan`]: what a binding's reconcile writes and deletes, and its status.
//! - [`tracker`]: per-router desired revisions and target/config status from events.
//! - [`compose`]: a router's configs composed into one desired state and its revision id.
//! - [`status_flush`]: when a router's status is written (coalescing, heartbeat refresh).
//!
//! Shells:
//! - [`controller`]: the Kubernetes controllers (kube-runtime).
//! - [`standalone`]: the operator on a directory of manifests, without Kubernetes.
//! - [`delivery`]: keeps every router at its desired revision through the hub.
//! - [`hub`]: the agent hub — one authenticated stream per router, and the delivery API.
//! - [`pki`]: the operator's CA, enrollment tokens and router certificates.
//! - [`leader`]: leader election on a Lease; only the leader runs the controllers.
//! - [`metrics`]: Prometheus metrics.
//! - [`webhook`]: the validating admission webhook (HTTPS, certificate from the operator's CA).

pub mod binding_plan;
pub mod compose;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod delivery;
pub mod event_note;
pub mod generate;
pub mod http;
pub mod hub;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock_api;
pub mod naming;
pub mod pki;
pub mod qga;
pub mod render;
pub mod render_cache;
pub mod rollout;
pub mod standalone;
pub mod status_flush;
pub mod time;
pub mod tracker;
pub mod webhook;
