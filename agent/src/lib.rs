//! The vrouter agent: runs on the router, dials the operator, holds one mTLS stream open, and
//! applies revisions through the router's own configuration session (or a simulator).
//!
//! - [`agent`]: the agent's life — enroll, connect, reconnect, the apply worker.
//! - [`session`]: one stream session (Hello/Welcome, requests, heartbeats, reports).
//! - [`apply`]: the apply sequence (plan, commit-confirm with reachability proof, save, record).
//! - [`backend`]: the router's configuration primitives; [`backend::sim`] simulates a router.
//! - [`install`]: `vrouter-agent install`, used by the operator's guest-agent bootstrap.
//! - [`creds`], [`state`], [`config`], [`transport`], [`simulate`].

pub mod agent;
pub mod apply;
pub mod backend;
pub mod config;
pub mod creds;
pub mod install;
pub mod session;
pub mod simulate;
pub mod slots;
pub mod state;
pub mod transport;

pub use agent::{Agent, AgentError, Observer};
pub use config::AgentConfig;
