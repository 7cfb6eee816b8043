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

/// Every metric of the operator.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<std::sync::Mutex<Registry>>,
    /// Agent sessions currently open.
    pub agent_sessions: Gauge,
    /// Streams refused before a session started, by reason.
    pub session_refusals: Counters,
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
            enrollments: Counters::default(),
            renewals: Counters::default(),
            applies: Counters::default(),
            apply_duration: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            heartbeat_timeouts: Counter::default(),
            sessions_fenced: Counter::default(),
            stream_errors: Counters::default(),
            drift_reports: Counters::default(),
        };
        registry.register("agent_sessions", "Agent sessions currently open", m.agent_sessions.clone());
        registry.register("agent_session_refusals", "Agent streams refused, by reason", m.session_refusals.clone());
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

    /// Counter value of a family member (for tests and status output).
    pub fn count(family: &Counters, value: &str) -> u64 {
        family.get_or_create(&LabelKind::of(value)).get()
    }
}
