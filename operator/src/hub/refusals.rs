//! Connections the agent endpoint refused or closed before they carried a request: counted by
//! reason in `vrouter_agent_connections_refused_total`, and logged at most once per reason per
//! interval with the count since the last line, so that a flood does not flood the log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::{Counters, LabelKind};

/// How often each reason is logged at most.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection was refused or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// Accepting the TCP connection failed (e.g. out of file descriptors).
    Accept,
    /// The TLS handshake did not finish within its deadline.
    HandshakeTimeout,
    /// The TLS handshake failed (not TLS, a certificate the CA did not sign, ...).
    Tls,
    /// No HTTP/2 preface and complete request headers within the deadline.
    PrefaceTimeout,
    /// Too many connections without a verified client certificate from this source.
    PerSource,
    /// Too many connections without a verified client certificate in all.
    Total,
}

impl Reason {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Accept => "accept_error",
            Reason::HandshakeTimeout => "handshake_timeout",
            Reason::Tls => "tls_error",
            Reason::PrefaceTimeout => "preface_timeout",
            Reason::PerSource => "unauthenticated_per_source",
            Reason::Total => "unauthenticated_total",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Reason::Accept => "accepting a connection failed",
            Reason::HandshakeTimeout => "closed: TLS handshake not finished within the deadline",
            Reason::Tls => "closed: TLS handshake failed",
            Reason::PrefaceTimeout => "closed: no HTTP/2 preface and request headers within the deadline",
            Reason::PerSource => "refused: too many connections without a client certificate from one source",
            Reason::Total => "refused: too many connections without a client certificate",
        }
    }
}

/// Counts refusals and logs them aggregated.
#[derive(Debug)]
pub(crate) struct Refusals {
    counters: Counters,
    window: Mutex<LogWindow>,
}

impl Refusals {
    /// Counting into `counters` (labelled by reason).
    pub(crate) fn new(counters: Counters) -> Self {
        Refusals { counters, window: Mutex::new(LogWindow::new(LOG_INTERVAL)) }
    }

    /// Records one refusal of a connection from `peer` (when known); `detail` is logged with it.
    pub(crate) fn record(&self, reason: Reason, peer: Option<SocketAddr>, detail: &str) {
        self.counters.get_or_create(&LabelKind::of(reason.label())).inc();
        // Failed handshakes are what port scanners and TCP health checks look like: no warning.
        if reason == Reason::Tls {
            tracing::debug!(?peer, detail, "agent endpoint connection {}", reason.text());
            return;
        }
        let due = self.window.lock().map(|mut w| w.note(reason, Instant::now())).unwrap_or(Some(1));
        if let Some(count) = due {
            tracing::warn!(
                reason = reason.label(),
                count,
                ?peer,
                detail,
                "agent endpoint: {count} connection(s) {} (at most one line per reason every {LOG_INTERVAL:?})",
                reason.text()
            );
        }
    }
}

/// When to log: the first refusal of a reason at once, then at most one line per interval
/// carrying the number of refusals since the previous line.
#[derive(Debug)]
pub(crate) struct LogWindow {
    interval: Duration,
    /// Per reason: when it was last logged, refusals since.
    seen: HashMap<Reason, (Instant, u64)>,
}

impl LogWindow {
    /// Logging each reason at most once per `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        LogWindow { interval, seen: HashMap::new() }
    }

    /// Notes one refusal at `now`; `Some(n)` when a line is due, for `n` refusals.
    pub(crate) fn note(&mut self, reason: Reason, now: Instant) -> Option<u64> {
        let Some((last, since)) = self.seen.get_mut(&reason) else {
            self.seen.insert(reason, (now, 0));
            return Some(1);
        };
        *since += 1;
        if now.saturating_duration_since(*last) < self.interval {
            return None;
        }
        let count = *since;
        *last = now;
        *since = 0;
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_line_per_interval_with_the_count() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut w = LogWindow::new(Duration::from_secs(10));
        assert_eq!(w.note(Reason::PerSource, at(0)), Some(1));
        for ms in 1..=999 {
            assert_eq!(w.note(Reason::PerSource, at(ms)), None);
        }
        // Another reason has its own window.
        assert_eq!(w.note(Reason::PrefaceTimeout, at(500)), Some(1));
        // 999 suppressed + this one.
        assert_eq!(w.note(Reason::PerSource, at(10_000)), Some(1000));
        assert_eq!(w.note(Reason::PerSource, at(10_001)), None);
        assert_eq!(w.note(Reason::PerSource, at(25_000)), Some(2));
        assert_eq!(w.note(Reason::PrefaceTimeout, at(25_000)), Some(1));
    }

    #[test]
    fn every_refusal_is_counted_by_reason() {
        let counters = Counters::default();
        let r = Refusals::new(counters.clone());
        for _ in 0..3 {
            r.record(Reason::Total, None, "");
        }
        r.record(Reason::Tls, None, "eof");
        assert_eq!(counters.get_or_create(&LabelKind::of("unauthenticated_total")).get(), 3);
        assert_eq!(counters.get_or_create(&LabelKind::of("tls_error")).get(), 1);
        assert_eq!(counters.get_or_create(&LabelKind::of("preface_timeout")).get(), 0);
    }
}
