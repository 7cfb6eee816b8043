//! Proxmox VE VMs: [`ProxmoxProvider`] reads a VM's placement and state from the cluster's
//! `/cluster/resources`; [`ProxmoxTransport`] runs guest agent commands through the API's
//! `/nodes/{node}/qemu/{vmid}/agent/*` endpoints.
//!
//! - [`api`]: [`ProxmoxApi`], the HTTP client (API token, endpoint failover, timeouts).
//! - [`tls`]: rustls (ring) with the cluster's CA bundle or the system roots.
//! - [`codec`]: argument and reply shapes, request size budgets, PVE error messages.
//! - [`transport`]: the command mapping and the emulated file API.
//!
//! See `docs/qga-providers.md`.
//!
//! ```no_run
//! # async fn demo(spec: &vrouter_operator::crd::ProxmoxClusterSpec) -> Result<(), vrouter_operator::qga::QgaError> {
//! use vrouter_operator::qga::{ApiToken, ProxmoxProvider, QgaClient, VmProvider};
//!
//! // The caller reads the ProxmoxCluster's Secret.
//! let token = ApiToken::new("vrouter@pve!operator", "secret-from-the-secret")?;
//! let vm = ProxmoxProvider::new(spec, token, 101)?;
//! if vm.state().await?.running {
//!     QgaClient::with_config(vm.transport().await?, Default::default()).ping().await?;
//! }
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod codec;
pub mod tls;
pub mod transport;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::time::Instant;

pub use api::{ApiError, ApiSettings, ApiToken, ClusterVm, ProxmoxApi};
pub use transport::ProxmoxTransport;

use super::{QgaError, QgaTransport, VmProvider, VmState};
use crate::crd::ProxmoxClusterSpec;

/// How far apart two start times derived from `now - uptime` may be and still count as the same
/// power-on (uptime is whole seconds and `/cluster/resources` lags a little).
pub const START_TOLERANCE_SECS: i64 = 15;

/// A Proxmox VE VM (QEMU) of one cluster.
#[derive(Debug)]
pub struct ProxmoxProvider {
    api: Arc<ProxmoxApi>,
    vmid: u32,
    transport: Arc<ProxmoxTransport>,
    /// The node and start time (unix seconds) of the power-on last seen.
    instance: Mutex<Option<(String, i64)>>,
}

impl ProxmoxProvider {
    /// VM `vmid` of the cluster `spec` describes, with the token from its Secret.
    pub fn new(spec: &ProxmoxClusterSpec, token: ApiToken, vmid: u32) -> Result<Self, QgaError> {
        Ok(Self::with_api(Arc::new(ProxmoxApi::new(spec, token)?), vmid))
    }

    /// VM `vmid` through a shared API client (one per cluster).
    pub fn with_api(api: Arc<ProxmoxApi>, vmid: u32) -> Self {
        let transport = Arc::new(ProxmoxTransport::new(api.clone(), vmid));
        Self { api, vmid, transport, instance: Mutex::new(None) }
    }

    /// The VM id.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }

    /// The start time to report for a power-on on `node` computed as `start`: the one seen
    /// before while it is within [`START_TOLERANCE_SECS`], so the instance stays the same
    /// between polls.
    fn stable_start(&self, node: &str, start: i64) -> i64 {
        let mut seen = self.instance.lock().unwrap_or_else(PoisonError::into_inner);
        let start = stable_start(seen.as_ref().map(|(n, s)| (n.as_str(), *s)), node, start);
        *seen = Some((node.to_owned(), start));
        start
    }
}

/// `previous` start on `node` if `start` is within [`START_TOLERANCE_SECS`] of it, else `start`.
pub fn stable_start(previous: Option<(&str, i64)>, node: &str, start: i64) -> i64 {
    match previous {
        Some((seen_node, seen)) if seen_node == node && (start - seen).abs() <= START_TOLERANCE_SECS => seen,
        _ => start,
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait]
impl VmProvider for ProxmoxProvider {
    async fn state(&self) -> Result<VmState, QgaError> {
        let timeout = self.api.settings().request_timeout;
        let vm = self.api.cluster_vm(self.vmid, Instant::now() + timeout).await.map_err(|e| QgaError::Transport {
            target: self.describe(),
            message: format!("reading /cluster/resources: {e}"),
        })?;
        let Some(vm) = vm else {
            self.transport.set_node(None);
            return Ok(VmState::default());
        };
        self.transport.set_node(Some(vm.node.clone()));
        let running = vm.status == "running";
        let instance = if running {
            let start = unix_now() - i64::try_from(vm.uptime).unwrap_or(i64::MAX);
            Some(format!("{}@{}", vm.node, self.stable_start(&vm.node, start)))
        } else {
            None
        };
        Ok(VmState { running, location: Some(vm.node), instance })
    }

    async fn transport(&self) -> Result<Arc<dyn QgaTransport>, QgaError> {
        Ok(self.transport.clone())
    }

    fn describe(&self) -> String {
        format!("proxmox vmid {}", self.vmid)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn start_times_stay_put_within_the_tolerance() {
        assert_eq!(stable_start(None, "pve1", 1000), 1000);
        assert_eq!(stable_start(Some(("pve1", 1000)), "pve1", 1001), 1000);
        assert_eq!(stable_start(Some(("pve1", 1000)), "pve1", 985), 1000);
        // A restart (much later start), or the same start on another node, is a new instance.
        assert_eq!(stable_start(Some(("pve1", 1000)), "pve1", 1100), 1100);
        assert_eq!(stable_start(Some(("pve1", 1000)), "pve2", 1000), 1000);
        assert_eq!(stable_start(Some(("pve1", 1000)), "pve2", 1005), 1005);
    }
}
