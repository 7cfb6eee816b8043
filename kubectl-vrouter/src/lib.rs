//! `kubectl vrouter`: the vrouter operator's view of a fleet, from the user's kubeconfig.
//!
//! - [`render`]: a router's composed configuration, with the operator's own rendering and
//!   composition (standalone mode's step over the namespace's objects).
//! - [`diff`]: the commands from the router's running configuration (or the last applied
//!   revision) to the desired one, and the drift the agent reported.
//! - [`agents`]: agent sessions from VRouterTarget status.
//! - [`status`]: a fleet summary.
//! - [`enroll`]: an agent configuration with a fresh enrollment token, through the operator.
//! - [`live`]: a router's running configuration, fetched through the operator.
//! - [`request`]: asking the operator through a VRouterTarget annotation and a Secret.
//! - [`fetch`]: reading the vrouter objects of a namespace.
//! - [`output`]: `-o table|yaml|json`, tables and ages.
//!
//! Every command takes a [`kube::Client`]; the binary builds it from the kubeconfig.

pub mod agents;
pub mod diff;
pub mod enroll;
pub mod fetch;
pub mod live;
pub mod output;
pub mod render;
pub mod request;
pub mod status;

pub use output::Format;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The VRouterTarget does not exist.
    #[error("VRouterTarget {namespace}/{name} not found")]
    TargetNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The target's configuration cannot be rendered or composed.
    #[error("VRouterTarget {target} is blocked:\n  {}", problems.join("\n  "))]
    Blocked {
        /// `<namespace>/<name>`.
        target: String,
        /// Each problem, naming the object (and template, field, line where known).
        problems: Vec<String>,
    },
    /// A configuration text does not parse (which one, and why).
    #[error("{0}")]
    Config(String),
    /// Enrollment failed.
    #[error("enroll {target}: {message}")]
    Enroll {
        /// `<namespace>/<name>`.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The router's running configuration could not be had.
    #[error("running configuration of {target}: {message}")]
    Running {
        /// `<namespace>/<name>`.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// Output could not be written.
    #[error("output: {0}")]
    Output(String),
}

impl Error {
    /// Wraps a kube error with what was being done.
    pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |e| Error::Kube { what, source: Box::new(e) }
    }
}
