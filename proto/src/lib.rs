//! The vrouter agent protocol, `vrouter.agent.v1`, as generated Rust types and tonic stubs.
//!
//! The `.proto` source is `proto/vrouter/agent/v1/agent.proto`; docs/protocol.md explains the
//! session, the messages and the compatibility rules.

/// Package `vrouter.agent.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("vrouter.agent.v1");
}

pub mod caps;
pub mod codec;
pub mod identity;

/// The same protocol compiled with tonic's default codec: only for benchmarks that compare the
/// agent stream against a bare tonic stream. Not part of the API.
#[doc(hidden)]
pub mod baseline {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/baseline/vrouter.agent.v1.rs"));
}

pub use identity::{IdentityError, RouterId};
pub use prost;
pub use prost_types;

/// The gRPC path prefix of the agent service, for metrics and logs.
pub const SERVICE_NAME: &str = "vrouter.agent.v1.AgentService";
