//! When and how the delivery engine uses the guest agent for a router: the settings of a
//! target's guest-agent path and the pure decision of the next step.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::VmProvider;
use super::guest::{BootstrapSettings, GuestProbe};

/// Which VM a router is (resolved to a [`VmProvider`] by a [`VmResolver`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VmRef {
    /// A guest agent socket on the operator's host.
    Libvirt {
        /// The socket path.
        socket: String,
    },
    /// A KubeVirt VirtualMachine.
    Kubevirt {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A Proxmox VE VM.
    Proxmox {
        /// Namespace of the ProxmoxCluster.
        namespace: String,
        /// The ProxmoxCluster's name.
        cluster: String,
        /// The VM id.
        vmid: u32,
    },
}

impl std::fmt::Display for VmRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmRef::Libvirt { socket } => write!(f, "libvirt {socket}"),
            VmRef::Kubevirt { namespace, name } => write!(f, "kubevirt vm {namespace}/{name}"),
            VmRef::Proxmox { namespace, cluster, vmid } => write!(f, "proxmox {namespace}/{cluster} vmid {vmid}"),
        }
    }
}

/// A router's guest-agent path, part of its desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QgaRoute {
    /// The VM.
    pub vm: VmRef,
    /// Delivery mode `QGA`: the guest agent only (no bootstrap, no waiting for an agent).
    pub only: bool,
    /// Whether a missing or unconfigured agent may be installed and enrolled.
    pub bootstrap: bool,
}

/// The guest-agent route of a target in `namespace`, if its delivery mode and provider have one.
pub fn route_of(namespace: &str, spec: &crate::crd::VRouterTargetSpec) -> Option<QgaRoute> {
    use crate::crd::{DeliveryMode, ProviderType};
    if spec.delivery.mode == DeliveryMode::Agent {
        return None;
    }
    let provider = spec.provider.as_ref()?;
    let vm = match provider.type_ {
        ProviderType::Libvirt => VmRef::Libvirt { socket: provider.libvirt.as_ref()?.socket.clone() },
        ProviderType::Kubevirt => {
            let k = provider.kubevirt.as_ref()?;
            VmRef::Kubevirt {
                namespace: k.namespace.clone().unwrap_or_else(|| namespace.to_owned()),
                name: k.name.clone(),
            }
        }
        ProviderType::Proxmox => {
            let p = provider.proxmox.as_ref()?;
            VmRef::Proxmox { namespace: namespace.to_owned(), cluster: p.cluster_ref.name.clone(), vmid: p.vmid }
        }
        ProviderType::None => return None,
    };
    Some(QgaRoute { vm, only: spec.delivery.mode == DeliveryMode::Qga, bootstrap: spec.delivery.bootstrap })
}

/// Turns a [`VmRef`] into a provider (reads the ProxmoxCluster and its Secret, builds the
/// KubeVirt exec transport, ...).
#[async_trait]
pub trait VmResolver: Send + Sync {
    /// The provider of `vm`, or why there is none.
    async fn resolve(&self, vm: &VmRef) -> Result<Arc<dyn VmProvider>, String>;
}

/// Resolves only libvirt sockets (standalone mode).
pub struct LibvirtResolver;

#[async_trait]
impl VmResolver for LibvirtResolver {
    async fn resolve(&self, vm: &VmRef) -> Result<Arc<dyn VmProvider>, String> {
        match vm {
            VmRef::Libvirt { socket } => Ok(Arc::new(super::LibvirtProvider::new(socket.clone()))),
            other => Err(format!("{other}: this operator has no access to that provider")),
        }
    }
}

/// The engine's guest-agent settings.
#[derive(Clone)]
pub struct QgaSupport {
    /// Turns VM references into providers.
    pub resolver: Arc<dyn VmResolver>,
    /// What bootstraps write and copy.
    pub bootstrap: BootstrapSettings,
    /// How long a router's agent may stay unreachable before the guest agent delivers.
    pub fallback_after: Duration,
    /// How long to wait for a bootstrapped agent's session before bootstrapping again.
    pub session_wait: Duration,
    /// How often a router without a session is looked at (VM state, reboots).
    pub poll: Duration,
}

/// The next thing to do for a router whose agent has no session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Install and/or configure the agent and start it.
    Bootstrap,
    /// Deliver through the agent binary in the guest (one-shot apply).
    ApplyWithAgent(String),
    /// Deliver through the fixed apply script (no agent in the guest).
    ApplyWithScript,
    /// Wait this long (for the session, or for the fallback deadline).
    Wait(Duration),
}

/// What the engine knows when it decides.
#[derive(Clone, Debug)]
pub struct Situation<'a> {
    /// The route.
    pub route: &'a QgaRoute,
    /// What the guest looks like.
    pub probe: &'a GuestProbe,
    /// Whether the operator carries an agent binary to copy in.
    pub have_binary: bool,
    /// How long the router has been without a session.
    pub without_session: Duration,
    /// How long ago this process last bootstrapped the router, if it did.
    pub since_bootstrap: Option<Duration>,
}

/// Decides the next step (pure).
pub fn decide(s: &Situation<'_>, support_fallback_after: Duration, session_wait: Duration) -> Next {
    let agent = s.probe.agent_binary.clone().filter(|_| s.probe.configured);
    if s.route.only {
        return match agent {
            Some(bin) => Next::ApplyWithAgent(bin),
            None => Next::ApplyWithScript,
        };
    }
    let can_bootstrap = s.route.bootstrap && (s.probe.agent_binary.is_some() || s.have_binary);
    let waited_for_bootstrap = s.since_bootstrap.is_none_or(|d| d >= session_wait);
    // A missing or unconfigured agent is set up at once; a configured one that has had no
    // session for a whole session wait is set up again (fresh token, restarted service): it may
    // have crashed, been stopped, or hold a token that expired before it enrolled.
    let stale = s.without_session >= session_wait;
    if (agent.is_none() || stale) && can_bootstrap && waited_for_bootstrap {
        return Next::Bootstrap;
    }
    // The agent's own session is the preferred path: give it time (after a bootstrap, too).
    let waited = s.since_bootstrap.map_or(s.without_session, |b| b.min(s.without_session));
    if waited < support_fallback_after {
        return Next::Wait(support_fallback_after - waited);
    }
    match agent {
        Some(bin) => Next::ApplyWithAgent(bin),
        None => Next::ApplyWithScript,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FALLBACK: Duration = Duration::from_secs(120);
    const SESSION: Duration = Duration::from_secs(300);

    fn route(only: bool, bootstrap: bool) -> QgaRoute {
        QgaRoute { vm: VmRef::Libvirt { socket: "/s".into() }, only, bootstrap }
    }

    fn probe(binary: bool, configured: bool) -> GuestProbe {
        GuestProbe {
            boot_id: Some("b".into()),
            agent_binary: binary.then(|| "/usr/bin/vrouter-agent".to_owned()),
            agent_version: binary.then(|| "vrouter-agent 0.1.0".to_owned()),
            configured,
        }
    }

    fn next(r: &QgaRoute, p: &GuestProbe, have_binary: bool, without: u64, since_bootstrap: Option<u64>) -> Next {
        decide(
            &Situation {
                route: r,
                probe: p,
                have_binary,
                without_session: Duration::from_secs(without),
                since_bootstrap: since_bootstrap.map(Duration::from_secs),
            },
            FALLBACK,
            SESSION,
        )
    }

    #[test]
    fn qga_only_never_bootstraps_and_never_waits() {
        let r = route(true, true);
        assert_eq!(next(&r, &probe(false, false), true, 0, None), Next::ApplyWithScript);
        assert_eq!(next(&r, &probe(true, true), true, 0, None), Next::ApplyWithAgent("/usr/bin/vrouter-agent".into()));
        // An installed but unconfigured agent cannot run `apply` (no agent.toml): script.
        assert_eq!(next(&r, &probe(true, false), true, 0, None), Next::ApplyWithScript);
    }

    #[test]
    fn missing_agent_is_bootstrapped_at_once_when_allowed() {
        let r = route(false, true);
        assert_eq!(next(&r, &probe(false, false), true, 0, None), Next::Bootstrap);
        // Baked into the image but never configured: configure it (no binary needed).
        assert_eq!(next(&r, &probe(true, false), false, 0, None), Next::Bootstrap);
    }

    #[test]
    fn after_a_bootstrap_the_session_gets_its_time_then_the_fallback_delivers() {
        let r = route(false, true);
        assert_eq!(next(&r, &probe(true, true), true, 10, Some(10)), Next::Wait(Duration::from_secs(110)));
        assert_eq!(
            next(&r, &probe(true, true), true, 200, Some(130)),
            Next::ApplyWithAgent("/usr/bin/vrouter-agent".into())
        );
    }

    #[test]
    fn a_bootstrap_that_did_not_take_is_retried_only_after_the_session_wait() {
        let r = route(false, true);
        assert_eq!(next(&r, &probe(false, false), true, 60, Some(60)), Next::Wait(Duration::from_secs(60)));
        // Past the fallback deadline but within the session wait: deliver by script meanwhile.
        assert_eq!(next(&r, &probe(false, false), true, 200, Some(200)), Next::ApplyWithScript);
        assert_eq!(next(&r, &probe(false, false), true, 400, Some(301)), Next::Bootstrap);
    }

    #[test]
    fn no_bootstrap_allowed_or_possible_means_waiting_then_the_script() {
        for (r, have) in [(route(false, false), true), (route(false, true), false)] {
            assert_eq!(next(&r, &probe(false, false), have, 30, None), Next::Wait(Duration::from_secs(90)));
            assert_eq!(next(&r, &probe(false, false), have, 120, None), Next::ApplyWithScript);
        }
    }

    #[test]
    fn a_configured_agent_without_session_gets_the_fallback_after_the_deadline() {
        let r = route(false, true);
        assert_eq!(next(&r, &probe(true, true), true, 0, None), Next::Wait(FALLBACK));
        assert_eq!(
            next(&r, &probe(true, true), true, 120, None),
            Next::ApplyWithAgent("/usr/bin/vrouter-agent".into())
        );
    }
}
