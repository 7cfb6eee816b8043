//! The operator's Prometheus metrics (prometheus-client), all under the `vrouter_` prefix.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Shorthand for a counter family keyed by one label.
pub type Counters = Family<LabelKind, Counter>;

/// Label sets used by the counter families: `reason`, `outcome`, `kind` or `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LabelKind {
    /// Why / what.
    pub reason: String,
}

impl LabelKind {
    /// A label value.
    pub fn of(value: impl Into<String>) -> Self {
        LabelKind { reason: value.into() }
    }
}

/// Labels of reconcile counts: the controller and the result (`ok` or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `binding`, `target` or `status` (the status writer).
    pub controller: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of reconcile errors: the controller and the kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `binding`, `target` or `status` (the status writer).
    pub controller: String,
    /// E.g. `api_409`, `api_unreachable`, `no_namespace`.
    pub kind: String,
}

/// Labels of admission reviews.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The reviewed kind.
    pub kind: String,
    /// CREATE, UPDATE, DELETE.
    pub operation: String,
    /// `allowed`, `denied` or `error`.
    pub result: String,
}

/// Every metric of the operator.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<std::sync::Mutex<Registry>>,
    /// Agent sessions currently open.
    pub agent_sessions: Gauge,
    /// Streams refused before a session started, by reason.
    pub session_refusals: Counters,
    /// Agent-endpoint connections refused or closed before carrying a request, by reason.
    pub connection_refusals: Counters,
    /// Agent-endpoint connections open without a verified client certificate.
    pub unauthenticated_connections: Gauge,
    /// Enrollment attempts, by result (`ok` or the refusal reason).
    pub enrollments: Counters,
    /// Certificate renewals, by result.
    pub renewals: Counters,
    /// Applies finished, by outcome.
    pub applies: Counters,
    /// Apply round-trip time as seen by the operator.
    pub apply_duration: Histogram,
    /// Sessions ended because the heartbeat deadline passed.
    pub heartbeat_timeouts: Counter,
    /// Sessions replaced by a newer stream for the same router.
    pub sessions_fenced: Counter,
    /// Sessions ended by a stream error, by kind (`oversized`, `decode`, `reset`, ...).
    pub stream_errors: Counters,
    /// Drift reports received, by whether the router had drifted.
    pub drift_reports: Counters,
    /// Enrollments refused, by reason.
    pub enrollment_refusals: Counters,
    /// Routers whose last drift report said they drifted.
    pub drifted_routers: Gauge,
    drifted: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Reconciles, by controller and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile errors, by controller and kind.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// 1 while this replica leads (runs the controllers), else 0.
    pub leader: Gauge,
    /// Admission reviews, by kind, operation and result.
    pub admission_reviews: Family<ReviewLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vrouter");
        let m = Metrics {
            registry: Arc::new(std::sync::Mutex::new(Registry::default())),
            agent_sessions: Gauge::default(),
            session_refusals: Counters::default(),
            connection_refusals: Counters::default(),
            unauthenticated_connections: Gauge::default(),
            enrollments: Counters::default(),
            renewals: Counters::default(),
            applies: Counters::default(),
            apply_duration: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            heartbeat_timeouts: Counter::default(),
            sessions_fenced: Counter::default(),
            stream_errors: Counters::default(),
            drift_reports: Counters::default(),
            enrollment_refusals: Counters::default(),
            drifted_routers: Gauge::default(),
            drifted: Arc::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            leader: Gauge::default(),
            admission_reviews: Family::default(),
        };
        registry.register("agent_sessions", "Agent sessions currently open", m.agent_sessions.clone());
        registry.register("agent_session_refusals", "Agent streams refused, by reason", m.session_refusals.clone());
        registry.register(
            "agent_connections_refused",
            "Agent endpoint connections refused or closed before carrying a request, by reason",
            m.connection_refusals.clone(),
        );
        registry.register(
            "agent_unauthenticated_connections",
            "Agent endpoint connections open without a verified client certificate",
            m.unauthenticated_connections.clone(),
        );
        registry.register("enrollments", "Enrollment attempts, by result", m.enrollments.clone());
        registry.register("certificate_renewals", "Certificate renewals, by result", m.renewals.clone());
        registry.register("applies", "Applies finished, by outcome", m.applies.clone());
        registry.register("apply_duration_seconds", "Apply round-trip time", m.apply_duration.clone());
        registry.register(
            "heartbeat_timeouts",
            "Sessions ended by a missed heartbeat deadline",
            m.heartbeat_timeouts.clone(),
        );
        registry.register("sessions_fenced", "Sessions replaced by a newer stream", m.sessions_fenced.clone());
        registry.register("agent_stream_errors", "Sessions ended by a stream error, by kind", m.stream_errors.clone());
        registry.register("drift_reports", "Drift reports received, by drifted", m.drift_reports.clone());
        registry.register("enrollment_refusals", "Enrollments refused, by reason", m.enrollment_refusals.clone());
        registry.register(
            "drifted_routers",
            "Routers whose last drift report said they drifted",
            m.drifted_routers.clone(),
        );
        registry.register("reconciles", "Reconciles, by controller and result", m.reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors, by controller and kind", m.reconcile_errors.clone());
        registry.register("leader", "1 while this replica leads and runs the controllers", m.leader.clone());
        registry.register(
            "admission_reviews",
            "Admission reviews, by kind, operation and result",
            m.admission_reviews.clone(),
        );
        if let Ok(mut r) = m.registry.lock() {
            *r = registry;
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }

    /// Registers more metrics (other parts of the operator).
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> Option<T> {
        self.registry.lock().ok().map(|mut r| f(&mut r))
    }

    /// Records a router's drift state (from its drift reports) in `drifted_routers`.
    pub fn set_drifted(&self, router: &str, drifted: bool) {
        if let Ok(mut set) = self.drifted.lock() {
            let changed = if drifted { set.insert(router.to_owned()) } else { set.remove(router) };
            if changed {
                self.drifted_routers.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
            }
        }
    }

    /// Counts one reconcile; `error` is the error's kind if it failed.
    pub fn reconciled(&self, controller: &str, error: Option<&str>) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&ReconcileLabels { controller: controller.to_owned(), result: result.to_owned() })
            .inc();
        if let Some(kind) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels { controller: controller.to_owned(), kind: kind.to_owned() })
                .inc();
        }
    }

    /// Counter value of a family member (for tests and status output).
    pub fn count(family: &Counters, value: &str) -> u64 {
        family.get_or_create(&LabelKind::of(value)).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_its_labels() {
        let m = Metrics::new();
        m.reconciled("binding", None);
        m.reconciled("target", Some("api_409"));
        m.set_drifted("net/r1", true);
        m.set_drifted("net/r2", true);
        m.set_drifted("net/r1", false);
        m.set_drifted("net/r1", false);
        m.enrollment_refusals.get_or_create(&LabelKind::of("token_used")).inc();
        m.leader.set(1);
        m.connection_refusals.get_or_create(&LabelKind::of("preface_timeout")).inc();
        m.admission_reviews
            .get_or_create(&ReviewLabels {
                kind: "VRouterTarget".into(),
                operation: "DELETE".into(),
                result: "denied".into(),
            })
            .inc();
        let text = m.encode();
        for line in [
            "vrouter_reconciles_total{controller=\"binding\",result=\"ok\"} 1",
            "vrouter_reconciles_total{controller=\"target\",result=\"error\"} 1",
            "vrouter_reconcile_errors_total{controller=\"target\",kind=\"api_409\"} 1",
            "vrouter_drifted_routers 1",
            "vrouter_enrollment_refusals_total{reason=\"token_used\"} 1",
            "vrouter_leader 1",
            "vrouter_admission_reviews_total{kind=\"VRouterTarget\",operation=\"DELETE\",result=\"denied\"} 1",
            "vrouter_agent_sessions 0",
            "vrouter_agent_connections_refused_total{reason=\"preface_timeout\"} 1",
            "vrouter_agent_unauthenticated_connections 0",
            "# TYPE vrouter_apply_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
