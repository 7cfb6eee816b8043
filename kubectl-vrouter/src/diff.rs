//! `kubectl vrouter diff TARGET`: the commands the agent would run, planned the way it plans
//! them (policy, managed scopes, explicit deletions, the previous applied revision for Merge
//! removals) to the desired configuration, and the drift the agent last reported.
//!
//! By default against the router's running configuration, fetched through the operator
//! ([`crate::live`]); with [`Source::Applied`] (`--from-applied`) against the last applied
//! revision — the ConfigMap `vrouter-applied-<target>` the operator keeps — without asking the
//! operator. The header says which.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use serde::Serialize;
use vrouter_operator::controller::target::ConfigMapStore;
use vrouter_operator::crd::VRouterTarget;
use vrouter_operator::delivery::AppliedRecord;
use vrouter_proto::RouterId;
use vyos_config::{Config, PlanInput, Policy, Schema, Tree, path_from_str, plan};

use crate::Error;
use crate::fetch::{manifests, namespace_objects};
use crate::live::{Running, running_config};
use crate::output::timestamp;
use crate::render::{Rendered, render};
use crate::request::Wait;

/// What `diff` plans against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The router's running configuration, fetched through the operator (waiting as given).
    Running(Wait),
    /// The last applied revision the operator recorded (no operator round trip).
    Applied,
}

/// The running configuration a diff was planned against (its text is not shown: it holds
/// secret values).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    /// When the operator fetched it.
    pub fetched_at: String,
    /// The agent's digest of it.
    pub digest: String,
    /// The applied revision the agent reported, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_revision: Option<String>,
}

/// What `diff` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// The target's namespace.
    pub namespace: String,
    /// The target's name.
    pub target: String,
    /// The desired revision as the operator reported it (status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// The last applied revision (the operator's applied record); absent when none is recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// When it was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// What the commands are planned against, in words.
    pub baseline: String,
    /// The running configuration planned against (absent: planned from the applied revision).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<Live>,
    /// The commands (secret values as placeholders).
    pub commands: Vec<String>,
    /// Explicit deletions of paths the applied revision does not have: they run if the router
    /// has those paths (set by hand), which only a read of its running config would tell
    /// (planned from the applied revision only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deletions_if_present: Vec<String>,
    /// The drift the agent reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Why there is nothing to plan (no VRouterConfig for the router).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Drift reported by the agent (VRouterTarget `status.drift`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Whether the running config differs from the applied revision.
    pub drifted: bool,
    /// Since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,
    /// How many paths differ.
    pub path_count: u32,
    /// The paths (at most 50).
    pub paths: Vec<String>,
    /// Whether the running config differs from the saved boot config.
    pub unsaved: bool,
    /// The agent's last report (heartbeat) time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_report: Option<Time>,
}

fn parse(text: &str, what: &str) -> Result<Tree, Error> {
    Config::parse(text).map(|c| c.tree).map_err(|e| Error::Config(format!("{what}: {e}")))
}

/// Takes the router's value as equal wherever the desired value is a secret placeholder: the
/// plugin never reads Secrets, so secret values are not compared.
fn mask_secrets(running: &mut Tree, desired: &Tree) {
    for (path, node) in desired.leaves() {
        if node.values().iter().any(|v| v.contains(SECRET_MARK))
            && let Some(r) = running.get_mut(&path)
            && r.children().is_empty()
            && !r.values().is_empty()
        {
            r.set_values(node.values().to_vec());
        }
    }
}

/// How secret placeholders start in rendered configurations.
const SECRET_MARK: &str = "@@vrouter-secret:";

/// Plans to the rendered configuration from the router's running configuration `live` when
/// given, else from the applied record (pure). The applied record is the previous revision
/// either way (what Merge may remove).
pub fn plan_diff(
    rendered: &Rendered,
    record: Option<&AppliedRecord>,
    live: Option<&Running>,
    target: &VRouterTarget,
) -> Result<Diff, Error> {
    let id = format!("{}/{}", rendered.namespace, rendered.target);
    let status = target.status.as_ref();
    let agent = status.and_then(|s| s.agent.as_ref());
    // The previous revision Merge removes paths of, as the agent will choose it: its own record
    // (carried by the live answer), else the operator's record, else — the operator keeps no
    // record of what an agent applied — the rendered configuration when the target reports
    // that very revision applied.
    let from_agent = live.and_then(|l| {
        let config = l.applied_config.clone()?;
        Some(AppliedRecord { revision: l.revision.clone().unwrap_or_default(), config, at: 0 })
    });
    let reported = status.and_then(|s| s.applied_revision.as_ref());
    // The rendered revision is the reported one; with secrets its id is not known here, and
    // the operator's word that its desired revision is applied stands in.
    let is_applied = match &rendered.revision {
        Some(r) => reported == Some(r),
        None => reported.is_some() && status.and_then(|s| s.desired_revision.as_ref()) == reported,
    };
    let from_rendered = match (reported, &rendered.config) {
        (Some(r), Some(config)) if is_applied => Some(AppliedRecord {
            revision: r.clone(),
            config: config.clone(),
            at: status.and_then(|s| s.last_applied_time.as_ref()).map_or(0, |t| t.0.as_second()),
        }),
        _ => None,
    };
    let rerendered = from_agent.is_none() && record.is_none() && from_rendered.is_some();
    let record = from_agent.as_ref().or(record).or(from_rendered.as_ref());
    let mut out = Diff {
        namespace: rendered.namespace.clone(),
        target: rendered.target.clone(),
        desired_revision: status.and_then(|s| s.desired_revision.clone()),
        applied_revision: record.map(|r| r.revision.clone()),
        applied_at: record
            .and_then(|r| u64::try_from(r.at).ok())
            .filter(|at| *at > 0)
            .map(|at| vrouter_operator::time::to_k8s(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at))),
        drift: status.and_then(|s| s.drift.as_ref()).map(|d| Drift {
            drifted: d.drifted,
            detected_at: d.detected_at.clone(),
            path_count: d.path_count,
            paths: d.paths.clone(),
            unsaved: d.unsaved,
            last_report: agent.and_then(|a| a.last_heartbeat.clone()),
        }),
        ..Diff::default()
    };
    out.baseline = match (live, record) {
        (Some(l), _) => format!("the running configuration fetched at {} (digest {})", l.fetched_at, l.digest),
        (None, Some(r)) if rerendered => {
            format!("the last applied revision {} (rendered again from the current sources)", r.revision)
        }
        (None, Some(r)) => format!("the last applied revision {}", r.revision),
        (None, None) => "an empty configuration (no applied revision recorded)".to_owned(),
    };
    out.running = live.map(|l| Live {
        fetched_at: l.fetched_at.clone(),
        digest: l.digest.clone(),
        reported_revision: l.revision.clone(),
    });
    let Some(config) = &rendered.config else {
        out.note = Some("no VRouterConfig for this router: nothing to deliver".to_owned());
        return Ok(out);
    };
    let desired = parse(config, &format!("{id}: desired config"))?;
    let previous = match record {
        Some(r) => {
            let mut t = parse(&r.config, &format!("{id}: applied revision {}", r.revision))?;
            // The agent's record holds secret values, as applied.
            mask_secrets(&mut t, &desired);
            Some(t)
        }
        None => None,
    };
    let running = match live {
        Some(l) => {
            let mut t = parse(&l.config, &format!("{id}: running configuration"))?;
            mask_secrets(&mut t, &desired);
            t
        }
        None => previous.clone().unwrap_or_default(),
    };
    let mut deletions = Vec::new();
    for line in &rendered.deletions {
        let c = vyos_config::commands::parse_line(line, 0)
            .map_err(|e| Error::Config(format!("{id}: explicit deletion {line:?}: {e}")))?;
        deletions.push(c);
    }
    let scopes: Vec<Vec<String>> = rendered.managed_scopes.iter().map(|s| path_from_str(s)).collect();
    let p = plan(PlanInput {
        running: &running,
        desired: &desired,
        previous: previous.as_ref(),
        policy: if rendered.policy == "Replace" { Policy::Replace } else { Policy::Merge },
        managed_scopes: &scopes,
        deletions: &deletions,
        protected: &Tree::new(),
        schema: Schema::vyos(),
    });
    out.commands = p.commands.iter().map(ToString::to_string).collect();
    if live.is_none() {
        out.deletions_if_present = rendered.deletions.iter().filter(|d| !out.commands.contains(d)).cloned().collect();
    }
    Ok(out)
}

/// Renders `target`, reads its applied record, fetches its running configuration through the
/// operator (with [`Source::Running`]) and plans.
pub async fn diff_target(client: &Client, ns: &str, target: &str, source: Source) -> Result<Diff, Error> {
    let objects = namespace_objects(client, ns).await?;
    let rendered = render(&manifests(ns, &objects), ns, target, SystemTime::now())?;
    let Some(t) = objects.targets.iter().find(|t| t.metadata.name.as_deref() == Some(target)) else {
        return Err(Error::TargetNotFound { namespace: ns.to_owned(), name: target.to_owned() });
    };
    let id = RouterId::new(ns, target).map_err(|e| Error::Config(e.to_string()))?;
    let name = ConfigMapStore::name(&id);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api.get_opt(&name).await.map_err(Error::kube(format!("read ConfigMap {ns}/{name}")))?;
    let record = cm.map(|cm| {
        let data = cm.data.unwrap_or_default();
        AppliedRecord {
            revision: data.get("revision").cloned().unwrap_or_default(),
            config: data.get("config").cloned().unwrap_or_default(),
            at: data.get("at").and_then(|a| a.parse().ok()).unwrap_or(0),
        }
    });
    let live = match source {
        Source::Running(wait) => Some(running_config(client, ns, target, wait).await?),
        Source::Applied => None,
    };
    plan_diff(&rendered, record.as_ref(), live.as_ref(), t)
}

/// The table (text) form: a header saying what the commands are planned against, the commands,
/// then the drift.
pub fn text(d: &Diff) -> String {
    let mut out = format!("# VRouterTarget {}/{}", d.namespace, d.target);
    if let Some(r) = &d.desired_revision {
        out.push_str(&format!(": desired revision {r}"));
    }
    out.push('\n');
    let drift_at = match &d.drift {
        Some(dr) if dr.drifted => format!("the drift reported at {}", timestamp(dr.detected_at.as_ref())),
        _ => "no drift reported".to_owned(),
    };
    out.push_str(&format!("# against {}", d.baseline));
    match &d.running {
        Some(live) => {
            match &live.reported_revision {
                Some(r) => out.push_str(&format!("; the router reports revision {r} applied\n")),
                None => out.push_str("; the router reports no applied revision\n"),
            }
            out.push_str("# secret values are not compared (the router's value counts as the placeholder's)\n");
            out.push_str("# paths the agent's own configuration protects are not known here\n");
        }
        None => {
            if let Some(at) = &d.applied_at {
                out.push_str(&format!(" (applied {})", timestamp(Some(at))));
            }
            out.push_str(&format!(" and {drift_at}\n"));
            out.push_str("# not the router's live running config (--from-applied)\n");
            out.push_str("# secret values are compared as placeholders\n");
        }
    }
    if let Some(note) = &d.note {
        out.push_str(&format!("# {note}\n"));
    } else if d.commands.is_empty() {
        out.push_str("# (no change)\n");
    }
    for c in &d.commands {
        out.push_str(c);
        out.push('\n');
    }
    if !d.deletions_if_present.is_empty() {
        out.push_str("# explicit deletions, run if the router has these paths (set outside vrouter):\n");
        for c in &d.deletions_if_present {
            out.push_str(&format!("#   {c}\n"));
        }
    }
    if let Some(dr) = d.drift.as_ref().filter(|dr| dr.drifted || dr.unsaved) {
        if dr.drifted {
            out.push_str(&format!(
                "# drift: {} paths differ from the applied revision (the next apply may touch them too):\n",
                dr.path_count
            ));
            for p in &dr.paths {
                out.push_str(&format!("#   {p}\n"));
            }
            if (dr.paths.len() as u32) < dr.path_count {
                out.push_str(&format!("#   ... and {} more\n", dr.path_count - dr.paths.len() as u32));
            }
        }
        if dr.unsaved {
            out.push_str("# the running config differs from the saved boot config (unsaved)\n");
        }
    }
    out
}
