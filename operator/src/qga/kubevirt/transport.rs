//! [`KubevirtTransport`]: guest agent commands through `virsh qemu-agent-command` in one
//! virt-launcher pod.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::exec::PodExec;
use super::virsh::{self, COMPUTE_CONTAINER};
use crate::qga::{QgaError, QgaTransport};

/// Extra time allowed on top of a command's timeout for the exec itself (API server, kubelet,
/// starting virsh).
pub const EXEC_OVERHEAD: Duration = Duration::from_secs(10);

/// A QGA transport to a KubeVirt VM through its virt-launcher pod: every command is one exec of
/// `virsh qemu-agent-command --timeout <s> <namespace>_<vm> '<json>'` in the pod's `compute`
/// container (an argv, no shell). Commands are independent: there is no connection to keep, and
/// libvirt serialises them per domain.
///
/// The transport is bound to one pod; after a migration, ask the provider for a new one.
#[derive(Clone)]
pub struct KubevirtTransport {
    exec: Arc<dyn PodExec>,
    namespace: String,
    pod: String,
    domain: String,
    overhead: Duration,
}

impl std::fmt::Debug for KubevirtTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubevirtTransport")
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl KubevirtTransport {
    /// A transport to VM `vm` in `namespace`, running in launcher pod `pod`.
    pub fn new(exec: Arc<dyn PodExec>, namespace: &str, vm: &str, pod: &str) -> Self {
        Self {
            exec,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            domain: virsh::domain_name(namespace, vm),
            overhead: EXEC_OVERHEAD,
        }
    }

    /// Replaces [`EXEC_OVERHEAD`], the time allowed for the exec beyond the command's timeout.
    pub fn with_exec_overhead(mut self, overhead: Duration) -> Self {
        self.overhead = overhead;
        self
    }

    /// The launcher pod.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// The libvirt domain (`<namespace>_<vm>`).
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

#[async_trait]
impl QgaTransport for KubevirtTransport {
    async fn execute(&self, command: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value, QgaError> {
        let request = virsh::request_json(command, arguments.as_ref())?;
        let argv = virsh::argv(&self.domain, &request, timeout);
        let run = self.exec.exec(&self.namespace, &self.pod, COMPUTE_CONTAINER, &argv);
        let output = match tokio::time::timeout(timeout + self.overhead, run).await {
            Ok(Ok(output)) => output,
            // The executor does not know the QGA command; name it.
            Ok(Err(QgaError::TooLarge { what, limit, .. })) => {
                return Err(QgaError::TooLarge { command: command.to_owned(), what, limit });
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(QgaError::Timeout { command: command.to_owned(), after: timeout }),
        };
        virsh::interpret(command, &self.target(), &output)
    }

    fn target(&self) -> String {
        format!("kubevirt pod {}/{} (domain {})", self.namespace, self.pod, self.domain)
    }
}
