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
pub mod identity;

pub use identity::{IdentityError, RouterId};
pub use prost;
pub use prost_types;

/// The gRPC path prefix of the agent service, for metrics and logs.
pub const SERVICE_NAME: &str = "vrouter.agent.v1.AgentService";
