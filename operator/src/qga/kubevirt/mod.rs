//! KubeVirt (and Harvester) VMs: [`KubevirtProvider`] finds the VM's running
//! VirtualMachineInstance and its virt-launcher pod; [`KubevirtTransport`] runs guest agent
//! commands with `virsh qemu-agent-command` in that pod's `compute` container through the
//! Kubernetes exec API.
//!
//! - [`select`]: the VMI status fields and the choice of launcher pod (migration-aware).
//! - [`virsh`]: the argv and the reading of virsh's output.
//! - [`exec`]: [`PodExec`], the one call that touches the exec API.
//!
//! KubeVirt's CRDs are not a dependency: the VMI is read as a dynamic object, and a missing VMI
//! (or a cluster without KubeVirt) means "not running". See `docs/qga-providers.md`.

pub mod exec;
pub mod select;
pub mod transport;
pub mod virsh;

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;

pub use exec::{KubePodExec, PodExec};
use select::{LauncherPod, VmiStatus};
pub use transport::KubevirtTransport;

use super::{QgaError, QgaTransport, VmProvider, VmState};

/// A KubeVirt VM (`VirtualMachine` / `VirtualMachineInstance` named `name` in `namespace`).
#[derive(Clone)]
pub struct KubevirtProvider {
    client: kube::Client,
    namespace: String,
    name: String,
    exec: Arc<dyn PodExec>,
}

impl std::fmt::Debug for KubevirtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubevirtProvider")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A VMI as far as the provider cares.
#[derive(Debug, Clone)]
struct Vmi {
    uid: String,
    status: VmiStatus,
}

impl KubevirtProvider {
    /// The VM `name` in `namespace`, exec'ing through the Kubernetes API with `client`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        let exec = Arc::new(KubePodExec::new(client.clone()));
        Self::with_exec(client, namespace, name, exec)
    }

    /// The same with another way to exec in pods (tests).
    pub fn with_exec(client: kube::Client, namespace: &str, name: &str, exec: Arc<dyn PodExec>) -> Self {
        Self { client, namespace: namespace.to_owned(), name: name.to_owned(), exec }
    }

    fn error(&self, message: impl Into<String>) -> QgaError {
        QgaError::Transport { target: self.describe(), message: message.into() }
    }

    /// The VMI, or `None` when there is none (the VM is stopped, or KubeVirt is not installed).
    async fn vmi(&self) -> Result<Option<Vmi>, QgaError> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
            "virtualmachineinstances",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let Some(object) = api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(format!("reading the VirtualMachineInstance failed: {e}")))?
        else {
            return Ok(None);
        };
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let status = match object.data.get("status") {
            Some(status) => serde_json::from_value(status.clone())
                .map_err(|e| self.error(format!("unexpected VirtualMachineInstance status: {e}")))?,
            None => VmiStatus::default(),
        };
        Ok(Some(Vmi { uid, status }))
    }

    async fn launcher_pods(&self, vmi_uid: &str) -> Result<Vec<LauncherPod>, QgaError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods = api
            .list(&ListParams::default().labels(&select::launcher_selector(vmi_uid)))
            .await
            .map_err(|e| self.error(format!("listing the virt-launcher pods failed: {e}")))?;
        Ok(pods.items.iter().map(LauncherPod::from_pod).collect())
    }

    /// The running VMI and the launcher pod holding its domain.
    async fn locate(&self) -> Result<(Vmi, LauncherPod), QgaError> {
        let Some(vmi) = self.vmi().await? else {
            return Err(self.error("no VirtualMachineInstance: the VM is not running"));
        };
        if !vmi.status.is_running() {
            let phase = vmi.status.phase.as_deref().unwrap_or("unknown");
            return Err(self.error(format!("the VM is not running (VirtualMachineInstance phase {phase})")));
        }
        let pods = self.launcher_pods(&vmi.uid).await?;
        let pod = select::choose_pod(&vmi.status, &pods).map_err(|reason| self.error(reason))?.clone();
        Ok((vmi, pod))
    }
}

#[async_trait]
impl VmProvider for KubevirtProvider {
    async fn state(&self) -> Result<VmState, QgaError> {
        let Some(vmi) = self.vmi().await? else {
            return Ok(VmState::default());
        };
        let node = vmi.status.node_name.clone().filter(|n| !n.is_empty());
        if !vmi.status.is_running() {
            return Ok(VmState { running: false, location: node, instance: Some(vmi.uid) });
        }
        let pods = self.launcher_pods(&vmi.uid).await?;
        let location = match select::choose_pod(&vmi.status, &pods) {
            Ok(pod) => Some(format!("{}/{}", node.as_deref().unwrap_or("?"), pod.name)),
            Err(reason) => {
                tracing::debug!(vm = %self.describe(), %reason, "no launcher pod to report");
                node
            }
        };
        Ok(VmState { running: true, location, instance: Some(vmi.uid) })
    }

    async fn transport(&self) -> Result<Arc<dyn QgaTransport>, QgaError> {
        let (_, pod) = self.locate().await?;
        Ok(Arc::new(KubevirtTransport::new(self.exec.clone(), &self.namespace, &self.name, &pod.name)))
    }

    fn describe(&self) -> String {
        format!("kubevirt vm/{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests;
