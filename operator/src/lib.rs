//! The vrouter operator: renders one desired configuration per router from Kubernetes resources
//! (or a directory of manifests) and keeps every router in that state.
//!
//! - [`pki`]: the operator's CA, enrollment tokens and router certificates.
//! - [`hub`]: the agent hub — one authenticated stream per router, and the delivery API.
//! - [`metrics`]: Prometheus metrics.
//! - [`render`]: template rendering (minijinja), parameter merging, secret placeholders.

pub mod http;
pub mod hub;
pub mod metrics;
pub mod pki;
pub mod qga;
pub mod render;
