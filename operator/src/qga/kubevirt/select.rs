//! Which virt-launcher pod runs a VirtualMachineInstance now, decided from the VMI's status and
//! the launcher pods (no I/O here).
//!
//! During a live migration a VMI has two launcher pods, one per node. KubeVirt moves
//! `status.nodeName` to the target node once the migration completed; until then (and after a
//! failed migration) the domain runs in the source pod. So the pod to talk to is the running
//! launcher pod on the VMI's current node, preferring the pod `status.migrationState` names for
//! that side, and never simply the first pod listed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

/// The label every virt-launcher pod carries (`kubevirt.io=virt-launcher`).
pub const LAUNCHER_LABEL: &str = "kubevirt.io=virt-launcher";

/// The label naming the VMI (by uid) a launcher pod was created for.
pub const CREATED_BY_LABEL: &str = "kubevirt.io/created-by";

/// The label selector of the launcher pods of the VMI with this uid.
pub fn launcher_selector(vmi_uid: &str) -> String {
    format!("{LAUNCHER_LABEL},{CREATED_BY_LABEL}={vmi_uid}")
}

/// The parts of a VMI's `status` that place it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiStatus {
    /// `Pending`, `Scheduling`, `Scheduled`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
    /// The node the domain runs on.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Launcher pod uid → node, for every pod that may hold the domain (two during a migration).
    #[serde(default)]
    pub active_pods: BTreeMap<String, String>,
    /// The last (or current) live migration.
    #[serde(default)]
    pub migration_state: Option<MigrationState>,
}

/// `status.migrationState` of a VMI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationState {
    /// The launcher pod the domain migrates from.
    #[serde(default)]
    pub source_pod: Option<String>,
    /// The launcher pod the domain migrates to.
    #[serde(default)]
    pub target_pod: Option<String>,
    /// The node it migrates from.
    #[serde(default)]
    pub source_node: Option<String>,
    /// The node it migrates to.
    #[serde(default)]
    pub target_node: Option<String>,
    /// Whether the migration finished.
    #[serde(default)]
    pub completed: bool,
    /// Whether it failed.
    #[serde(default)]
    pub failed: bool,
}

impl VmiStatus {
    /// Whether the domain runs (phase `Running`; `Pending`/`Scheduling`/`Scheduled` do not count:
    /// no guest agent can answer yet).
    pub fn is_running(&self) -> bool {
        self.phase.as_deref() == Some("Running")
    }

    /// The launcher pod the migration state names for the side that holds the domain now: the
    /// target once the migration completed successfully, else the source.
    fn preferred_pod(&self) -> Option<&str> {
        let migration = self.migration_state.as_ref()?;
        if migration.completed && !migration.failed {
            migration.target_pod.as_deref()
        } else {
            migration.source_pod.as_deref()
        }
    }
}

/// What pod selection needs to know about a launcher pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LauncherPod {
    /// The pod's name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// The node it is scheduled on.
    pub node: Option<String>,
    /// Its phase (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: Option<String>,
    /// Whether it is being deleted.
    pub deleting: bool,
}

impl LauncherPod {
    /// The fields of a listed pod.
    pub fn from_pod(pod: &Pod) -> Self {
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
            phase: pod.status.as_ref().and_then(|status| status.phase.clone()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}, node {}{})",
            self.name,
            self.phase.as_deref().unwrap_or("no phase"),
            self.node.as_deref().unwrap_or("none"),
            if self.deleting { ", deleting" } else { "" }
        )
    }
}

/// Chooses the launcher pod that holds the running domain of a VMI with `status`, or says why
/// none can be chosen.
pub fn choose_pod<'a>(status: &VmiStatus, pods: &'a [LauncherPod]) -> Result<&'a LauncherPod, String> {
    if !status.is_running() {
        return Err(format!("the VMI is not running (phase {})", status.phase.as_deref().unwrap_or("unknown")));
    }
    let Some(node) = status.node_name.as_deref().filter(|n| !n.is_empty()) else {
        return Err("the VMI is running but has no status.nodeName".to_owned());
    };
    let candidates: Vec<&LauncherPod> = pods
        .iter()
        .filter(|pod| pod.phase.as_deref() == Some("Running") && !pod.deleting)
        .filter(|pod| pod.node.as_deref() == Some(node))
        // activePods lists the pods that may hold the domain; an empty map (older KubeVirt)
        // restricts nothing.
        .filter(|pod| {
            status.active_pods.is_empty() || status.active_pods.get(&pod.uid).map(String::as_str) == Some(node)
        })
        .collect();
    if let Some(preferred) = status.preferred_pod()
        && let Some(pod) = candidates.iter().find(|pod| pod.name == preferred)
    {
        return Ok(pod);
    }
    match candidates.as_slice() {
        [pod] => Ok(pod),
        [] => {
            let seen: Vec<String> = pods.iter().map(LauncherPod::describe).collect();
            Err(format!(
                "no running virt-launcher pod on node {node} (launcher pods: {})",
                if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
            ))
        }
        several => {
            let names: Vec<&str> = several.iter().map(|pod| pod.name.as_str()).collect();
            Err(format!("several running virt-launcher pods on node {node}: {}", names.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str, node: &str, phase: &str) -> LauncherPod {
        LauncherPod {
            name: name.into(),
            uid: uid.into(),
            node: Some(node.into()),
            phase: Some(phase.into()),
            deleting: false,
        }
    }

    fn running_on(node: &str) -> VmiStatus {
        VmiStatus { phase: Some("Running".into()), node_name: Some(node.into()), ..VmiStatus::default() }
    }

    fn migration(completed: bool, failed: bool) -> MigrationState {
        MigrationState {
            source_pod: Some("virt-launcher-r1-aaaaa".into()),
            target_pod: Some("virt-launcher-r1-bbbbb".into()),
            source_node: Some("n1".into()),
            target_node: Some("n2".into()),
            completed,
            failed,
        }
    }

    #[test]
    fn selector_uses_the_launcher_labels() {
        assert_eq!(launcher_selector("u-1"), "kubevirt.io=virt-launcher,kubevirt.io/created-by=u-1");
    }

    #[test]
    fn status_parses_from_the_vmi_json() {
        let status: VmiStatus = serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "nodeName": "n2",
            "activePods": {"uid-a": "n1", "uid-b": "n2"},
            "migrationState": {"sourcePod": "p-a", "targetPod": "p-b", "sourceNode": "n1", "targetNode": "n2",
                               "completed": true, "migrationUid": "m"},
            "interfaces": []
        }))
        .unwrap();
        assert!(status.is_running());
        assert_eq!(status.active_pods.len(), 2);
        assert_eq!(status.preferred_pod(), Some("p-b"));
        let empty: VmiStatus = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(!empty.is_running());
    }

    #[test]
    fn the_single_running_pod_on_the_node() {
        let pods = [pod("virt-launcher-r1-aaaaa", "a", "n1", "Running")];
        assert_eq!(choose_pod(&running_on("n1"), &pods).unwrap().name, "virt-launcher-r1-aaaaa");
    }

    #[test]
    fn not_running_phases_choose_nothing() {
        let pods = [pod("p", "a", "n1", "Running")];
        for phase in ["Pending", "Scheduling", "Scheduled", "Succeeded", "Failed", "Unknown"] {
            let status = VmiStatus { phase: Some(phase.into()), ..running_on("n1") };
            let err = choose_pod(&status, &pods).unwrap_err();
            assert!(err.contains(phase), "{err}");
        }
        let status = VmiStatus { phase: None, ..running_on("n1") };
        assert!(choose_pod(&status, &pods).is_err());
        let status = VmiStatus { node_name: None, ..running_on("n1") };
        assert!(choose_pod(&status, &pods).unwrap_err().contains("nodeName"));
    }

    #[test]
    fn finished_pods_and_pods_elsewhere_are_skipped_whatever_their_order() {
        let mut deleting = pod("p-deleting", "d", "n1", "Running");
        deleting.deleting = true;
        let pods = vec![
            pod("p-old", "o", "n1", "Succeeded"),
            pod("p-other-node", "x", "n9", "Running"),
            pod("p-pending", "p", "n1", "Pending"),
            deleting,
            pod("p-live", "l", "n1", "Running"),
        ];
        for rotation in 0..pods.len() {
            let mut rotated = pods.clone();
            rotated.rotate_left(rotation);
            assert_eq!(choose_pod(&running_on("n1"), &rotated).unwrap().name, "p-live");
        }
    }

    #[test]
    fn during_a_migration_the_source_pod_holds_the_domain() {
        let pods =
            [pod("virt-launcher-r1-bbbbb", "b", "n2", "Running"), pod("virt-launcher-r1-aaaaa", "a", "n1", "Running")];
        let mut status = running_on("n1");
        status.active_pods = BTreeMap::from([("a".into(), "n1".into()), ("b".into(), "n2".into())]);
        status.migration_state = Some(migration(false, false));
        assert_eq!(choose_pod(&status, &pods).unwrap().name, "virt-launcher-r1-aaaaa");

        // A failed migration leaves the domain in the source.
        status.migration_state = Some(migration(true, true));
        assert_eq!(choose_pod(&status, &pods).unwrap().name, "virt-launcher-r1-aaaaa");
    }

    #[test]
    fn after_a_completed_migration_the_target_pod_holds_it() {
        let pods =
            [pod("virt-launcher-r1-aaaaa", "a", "n1", "Running"), pod("virt-launcher-r1-bbbbb", "b", "n2", "Running")];
        let mut status = running_on("n2");
        status.active_pods = BTreeMap::from([("a".into(), "n1".into()), ("b".into(), "n2".into())]);
        status.migration_state = Some(migration(true, false));
        assert_eq!(choose_pod(&status, &pods).unwrap().name, "virt-launcher-r1-bbbbb");
    }

    #[test]
    fn the_preferred_pod_must_still_be_a_candidate() {
        // The migration state names the target, but the VMI still reports the source node (the
        // status lags): the running pod on the reported node wins.
        let pods =
            [pod("virt-launcher-r1-aaaaa", "a", "n1", "Running"), pod("virt-launcher-r1-bbbbb", "b", "n2", "Running")];
        let mut status = running_on("n1");
        status.migration_state = Some(migration(true, false));
        assert_eq!(choose_pod(&status, &pods).unwrap().name, "virt-launcher-r1-aaaaa");
    }

    #[test]
    fn active_pods_exclude_stray_pods_on_the_node() {
        let pods = [pod("p-stray", "s", "n1", "Running"), pod("p-live", "l", "n1", "Running")];
        let mut status = running_on("n1");
        status.active_pods = BTreeMap::from([("l".into(), "n1".into())]);
        assert_eq!(choose_pod(&status, &pods).unwrap().name, "p-live");
    }

    #[test]
    fn no_pod_or_an_ambiguous_choice_is_an_error_naming_the_pods() {
        let err = choose_pod(&running_on("n1"), &[]).unwrap_err();
        assert!(err.contains("no running virt-launcher pod on node n1") && err.contains("none"), "{err}");

        let pods = [pod("p-pending", "p", "n1", "Pending")];
        let err = choose_pod(&running_on("n1"), &pods).unwrap_err();
        assert!(err.contains("p-pending (Pending, node n1)"), "{err}");

        let pods = [pod("p1", "1", "n1", "Running"), pod("p2", "2", "n1", "Running")];
        let err = choose_pod(&running_on("n1"), &pods).unwrap_err();
        assert!(err.contains("several") && err.contains("p1") && err.contains("p2"), "{err}");
    }

    #[test]
    fn fields_come_from_the_pod_object() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "virt-launcher-r1-x", "uid": "u", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        assert_eq!(
            LauncherPod::from_pod(&pod),
            LauncherPod {
                name: "virt-launcher-r1-x".into(),
                uid: "u".into(),
                node: Some("n1".into()),
                phase: Some("Running".into()),
                deleting: true
            }
        );
        assert_eq!(LauncherPod::from_pod(&Pod::default()), LauncherPod::default());
    }
}
