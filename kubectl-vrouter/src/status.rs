//! `kubectl vrouter status`: a fleet summary and one line per router, from VRouterTarget status.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;
use vrouter_operator::crd::VRouterTarget;

use crate::output::{age_of, or_dash, table};

/// Where a router's configuration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    /// The router runs its desired revision.
    Applied,
    /// A desired revision waits for delivery (or is being delivered).
    Pending,
    /// Composition or the last apply failed.
    Failed,
    /// No VRouterConfig names the router.
    NoConfig,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Applied => "Applied",
            State::Pending => "Pending",
            State::Failed => "Failed",
            State::NoConfig => "NoConfig",
        }
    }
}

/// The last delivery attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastApplyRow {
    /// The revision attempted.
    pub revision: String,
    /// `Applied`, `NoChange`, `Failed`, `RolledBack`, `Partial`, or a delivery error.
    pub outcome: String,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// One router.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRow {
    /// `<namespace>/<name>`.
    pub identity: String,
    /// Where its configuration stands.
    pub state: State,
    /// Delivery paused (`spec.paused`).
    pub paused: bool,
    /// The revision the router should run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// The revision it last confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// The last delivery attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<LastApplyRow>,
    /// Whether the agent reported drift.
    pub drifted: bool,
    /// How many paths drifted.
    pub drift_paths: u32,
    /// Whether an agent session is open.
    pub agent_connected: bool,
    /// The `ConfigApplied` condition's message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Counts over the fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Routers.
    pub targets: usize,
    /// Running their desired revision.
    pub applied: usize,
    /// Waiting for delivery.
    pub pending: usize,
    /// Failed (composition or apply).
    pub failed: usize,
    /// Without any VRouterConfig.
    pub no_config: usize,
    /// Reporting drift.
    pub drifted: usize,
    /// Paused.
    pub paused: usize,
    /// With an open agent session.
    pub agents_connected: usize,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Counts.
    pub summary: Summary,
    /// One row per router, by identity.
    pub targets: Vec<TargetRow>,
}

/// Classifies a target from its `ConfigApplied` condition and revisions.
pub fn state_of(t: &VRouterTarget) -> State {
    let Some(s) = &t.status else { return State::Pending };
    let applied = s.conditions.iter().find(|c| c.type_ == "ConfigApplied");
    match applied {
        Some(c) if c.status == "True" => State::Applied,
        Some(c) if c.reason == "NoConfig" => State::NoConfig,
        Some(c) if c.reason == "ComposeFailed" || c.reason == "ApplyFailed" => State::Failed,
        _ if s.desired_revision.is_some() && s.desired_revision == s.applied_revision => State::Applied,
        _ => State::Pending,
    }
}

/// The report for `targets`.
pub fn report(targets: &[VRouterTarget]) -> Report {
    let mut rows: Vec<TargetRow> = targets
        .iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            let drift = s.drift.as_ref();
            TargetRow {
                identity: format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()),
                state: state_of(t),
                paused: t.spec.paused,
                desired_revision: s.desired_revision.clone(),
                applied_revision: s.applied_revision.clone(),
                last_apply: s.last_apply.as_ref().map(|l| LastApplyRow {
                    revision: l.revision.clone(),
                    outcome: l.outcome.clone(),
                    time: l.time.clone(),
                }),
                drifted: drift.is_some_and(|d| d.drifted),
                drift_paths: drift.filter(|d| d.drifted).map_or(0, |d| d.path_count),
                agent_connected: s.agent.as_ref().is_some_and(|a| a.connected),
                message: s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "ConfigApplied")
                    .map(|c| c.message.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.identity.cmp(&b.identity));
    let count = |f: &dyn Fn(&TargetRow) -> bool| rows.iter().filter(|r| f(r)).count();
    let summary = Summary {
        targets: rows.len(),
        applied: count(&|r| r.state == State::Applied),
        pending: count(&|r| r.state == State::Pending),
        failed: count(&|r| r.state == State::Failed),
        no_config: count(&|r| r.state == State::NoConfig),
        drifted: count(&|r| r.drifted),
        paused: count(&|r| r.paused),
        agents_connected: count(&|r| r.agent_connected),
    };
    Report { summary, targets: rows }
}

/// Shortens a message for the table.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}...", s.chars().take(max - 3).collect::<String>()) }
}

/// The summary line, then the table.
pub fn text(r: &Report, now: SystemTime) -> String {
    let s = &r.summary;
    let mut out = format!(
        "{} targets: {} applied, {} pending, {} failed, {} without config; {} drifted, {} paused; agents connected: {}/{}\n\n",
        s.targets, s.applied, s.pending, s.failed, s.no_config, s.drifted, s.paused, s.agents_connected, s.targets
    );
    let cells: Vec<Vec<String>> = r
        .targets
        .iter()
        .map(|t| {
            vec![
                t.identity.clone(),
                if t.paused { format!("{} (paused)", t.state.name()) } else { t.state.name().to_owned() },
                or_dash(t.desired_revision.as_deref()),
                or_dash(t.applied_revision.as_deref()),
                t.last_apply
                    .as_ref()
                    .map(|l| format!("{} {}", l.outcome, age_of(l.time.as_ref(), now)))
                    .unwrap_or_else(|| "-".to_owned()),
                if t.drifted { format!("yes ({})", t.drift_paths) } else { "no".to_owned() },
                if t.agent_connected { "yes".to_owned() } else { "no".to_owned() },
                or_dash(Some(&short(&t.message, 60))),
            ]
        })
        .collect();
    out.push_str(&table(&["TARGET", "STATE", "DESIRED", "APPLIED", "LAST APPLY", "DRIFT", "AGENT", "MESSAGE"], &cells));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use vrouter_operator::crd::{VRouterTargetSpec, VRouterTargetStatus};

    fn with_condition(status: &str, reason: &str, desired: Option<&str>, applied: Option<&str>) -> VRouterTarget {
        let mut t = VRouterTarget::new("r", VRouterTargetSpec::default());
        t.status = Some(VRouterTargetStatus {
            conditions: vec![Condition {
                type_: "ConfigApplied".into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: vrouter_operator::standalone::world::now_k8s(),
                observed_generation: None,
            }],
            desired_revision: desired.map(Into::into),
            applied_revision: applied.map(Into::into),
            ..Default::default()
        });
        t
    }

    #[test]
    fn states_follow_the_config_applied_condition() {
        assert_eq!(state_of(&VRouterTarget::new("r", VRouterTargetSpec::default())), State::Pending);
        assert_eq!(state_of(&with_condition("True", "Applied", Some("a"), Some("a"))), State::Applied);
        assert_eq!(state_of(&with_condition("False", "NoConfig", None, None)), State::NoConfig);
        assert_eq!(state_of(&with_condition("False", "ComposeFailed", None, None)), State::Failed);
        assert_eq!(state_of(&with_condition("False", "ApplyFailed", Some("b"), Some("a"))), State::Failed);
        assert_eq!(state_of(&with_condition("False", "Applying", Some("b"), Some("a"))), State::Pending);
        assert_eq!(state_of(&with_condition("False", "Pending", Some("a"), Some("a"))), State::Applied);
    }

    #[test]
    fn long_messages_are_shortened() {
        assert_eq!(short("abc", 60), "abc");
        assert_eq!(short(&"x".repeat(70), 10), "xxxxxxx...");
    }
}
