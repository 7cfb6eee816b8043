//! `kubectl vrouter agents`: every router's agent session, from VRouterTarget status.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;
use vrouter_operator::crd::VRouterTarget;

use crate::output::{age_of, or_dash, table};

/// One router's agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRow {
    /// `<namespace>/<name>`: the identity the agent enrolls with.
    pub identity: String,
    /// Whether a session is open; absent when no agent ever connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Agent version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Router OS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Since when the session is open (or closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Last status report or heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// The router's boot id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Why the last session ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_disconnect_reason: Option<String>,
}

/// One row per target, sorted by identity.
pub fn rows(targets: &[VRouterTarget]) -> Vec<AgentRow> {
    let mut rows: Vec<AgentRow> = targets
        .iter()
        .map(|t| {
            let a = t.status.as_ref().and_then(|s| s.agent.as_ref());
            AgentRow {
                identity: format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()),
                connected: a.map(|a| a.connected),
                version: a.and_then(|a| a.version.clone()),
                os: a.and_then(|a| a.os.clone()),
                since: a.and_then(|a| a.since.clone()),
                last_heartbeat: a.and_then(|a| a.last_heartbeat.clone()),
                boot_id: a.and_then(|a| a.boot_id.clone()),
                last_disconnect_reason: a.and_then(|a| a.last_disconnect_reason.clone()),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.identity.cmp(&b.identity));
    rows
}

/// The table: identity, connected, version, OS, since, last heartbeat (ages), boot id.
pub fn text(rows: &[AgentRow], now: SystemTime) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.identity.clone(),
                match r.connected {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "no".to_owned(),
                    None => "never".to_owned(),
                },
                or_dash(r.version.as_deref()),
                or_dash(r.os.as_deref()),
                age_of(r.since.as_ref(), now),
                age_of(r.last_heartbeat.as_ref(), now),
                or_dash(r.boot_id.as_deref()),
            ]
        })
        .collect();
    table(&["IDENTITY", "CONNECTED", "VERSION", "OS", "SINCE", "LAST HEARTBEAT", "BOOT ID"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vrouter_operator::crd::{AgentStatus, VRouterTargetSpec, VRouterTargetStatus};
    use vrouter_operator::time::to_k8s;

    #[test]
    fn rows_are_sorted_and_absent_agents_shown_as_never() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut a = VRouterTarget::new("b", VRouterTargetSpec::default());
        a.metadata.namespace = Some("x".into());
        a.status = Some(VRouterTargetStatus {
            agent: Some(AgentStatus {
                connected: true,
                since: Some(to_k8s(now - Duration::from_secs(7200))),
                version: Some("0.1.0".into()),
                os: Some("VyOS 1.4.3".into()),
                boot_id: Some("b00t".into()),
                last_heartbeat: Some(to_k8s(now - Duration::from_secs(20))),
                last_disconnect_reason: None,
            }),
            ..Default::default()
        });
        let mut b = VRouterTarget::new("a", VRouterTargetSpec::default());
        b.metadata.namespace = Some("x".into());
        let r = rows(&[a, b]);
        assert_eq!(r[0].identity, "x/a");
        assert_eq!(r[0].connected, None);
        assert_eq!(
            text(&r, now),
            "IDENTITY   CONNECTED   VERSION   OS           SINCE   LAST HEARTBEAT   BOOT ID\n\
             x/a        never       -         -            -       -                -\n\
             x/b        yes         0.1.0     VyOS 1.4.3   2h      20s              b00t\n"
        );
    }
}
