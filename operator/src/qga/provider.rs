//! [`VmProvider`]: a router VM as its hypervisor shows it — whether it runs, where, and a guest
//! agent transport to it. One implementation per provider type of a VRouterTarget
//! (`libvirt`, `kubevirt`, `proxmox`); bootstrap and fallback delivery only use this trait.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::{QgaError, QgaTransport, UnixSocketTransport};

/// The hypervisor's view of a router VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmState {
    /// Whether the VM runs (so its guest agent may answer).
    pub running: bool,
    /// Where it runs now (KubeVirt: node and virt-launcher pod; Proxmox: node), for status.
    pub location: Option<String>,
    /// Identifies one power-on of the VM as the hypervisor sees it (KubeVirt: the VMI's uid;
    /// Proxmox: node and start time), so a restart is noticed before the guest answers. A
    /// reboot inside the guest does not change it; the guest's boot id (read through the guest
    /// agent) covers that.
    pub instance: Option<String>,
}

/// A router VM reachable through its hypervisor.
#[async_trait]
pub trait VmProvider: Send + Sync {
    /// The VM's current state.
    async fn state(&self) -> Result<VmState, QgaError>;

    /// A transport to the VM's guest agent as it runs now (the current virt-launcher pod or
    /// Proxmox node). Callers ask again after [`state`](Self::state) reports a move.
    async fn transport(&self) -> Result<Arc<dyn QgaTransport>, QgaError>;

    /// The VM, for logs and status (`kubevirt vm/ns/name`, `proxmox vmid 101`, a socket path).
    fn describe(&self) -> String;
}

/// A libvirt/QEMU guest whose agent channel is a unix socket on the operator's host. The
/// hypervisor is not asked anything: the VM counts as running while the socket exists.
#[derive(Debug, Clone)]
pub struct LibvirtProvider {
    socket: PathBuf,
    transport: Arc<UnixSocketTransport>,
}

impl LibvirtProvider {
    /// A provider for the guest agent socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        let socket = socket.into();
        Self { transport: Arc::new(UnixSocketTransport::new(socket.clone())), socket }
    }
}

#[async_trait]
impl VmProvider for LibvirtProvider {
    async fn state(&self) -> Result<VmState, QgaError> {
        Ok(VmState { running: self.socket.exists(), location: None, instance: None })
    }

    async fn transport(&self) -> Result<Arc<dyn QgaTransport>, QgaError> {
        Ok(self.transport.clone())
    }

    fn describe(&self) -> String {
        format!("libvirt {}", self.socket.display())
    }
}
