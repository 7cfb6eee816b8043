//! When a router's status is written to the API server (pure): coalescing and the heartbeat
//! refresh.
//!
//! A revision moves a router through several phases in a second or two (`Pending` → `Applying` →
//! `Applied`), and a connected agent heartbeats every few seconds. Written as they happen, that
//! was about seven status writes per router per revision and four per minute at idle (measured
//! on a real API server with 1,000 routers, docs/performance.md). Here a change only marks the
//! target; its status is written once the mark is due:
//!
//! - [`SETTLED_DELAY`] after the first unwritten change when the outcome is known (applied,
//!   failed, blocked), so a quick apply is one write;
//! - [`IN_FLIGHT_DELAY`] after it while a delivery is still in flight, so a slow commit shows
//!   `Applying` at most that late and usually not at all;
//! - a heartbeat alone is not worth a write until the written one is [`HEARTBEAT_REFRESH`] old
//!   (liveness is the `AgentConnected` condition, which a lost session flips at once).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::crd::VRouterTargetStatus;

/// Delay before a settled status is written.
pub const SETTLED_DELAY: Duration = Duration::from_secs(1);
/// Delay before a status with a delivery in flight is written.
pub const IN_FLIGHT_DELAY: Duration = Duration::from_secs(10);
/// How old the written `agent.lastHeartbeat` may grow before a heartbeat alone is written.
pub const HEARTBEAT_REFRESH: Duration = Duration::from_secs(300);

/// Whether a target's status describes a known outcome (nothing in flight): its
/// `ConfigApplied` condition is missing or has a reason other than `Pending` or `Applying`.
pub fn settled(status: &VRouterTargetStatus) -> bool {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "ConfigApplied")
        .is_none_or(|c| c.reason != "Pending" && c.reason != "Applying")
}

/// Whether `current` is worth writing over `written` (the status last written, or read from the
/// API server): anything but the agent's heartbeat differs, or the written heartbeat is at
/// least [`HEARTBEAT_REFRESH`] older than the current one.
pub fn target_worth_writing(written: Option<&VRouterTargetStatus>, current: &VRouterTargetStatus) -> bool {
    let Some(written) = written else { return true };
    if written == current {
        return false;
    }
    let beat = |s: &VRouterTargetStatus| s.agent.as_ref().and_then(|a| a.last_heartbeat.as_ref()).map(|t| t.0);
    let (old, new) = (beat(written), beat(current));
    let mut w = written.clone();
    if let Some(a) = w.agent.as_mut() {
        a.last_heartbeat = current.agent.as_ref().and_then(|a| a.last_heartbeat.clone());
    }
    if &w != current {
        return true;
    }
    // Only the heartbeat differs.
    match (old, new) {
        (Some(old), Some(new)) => {
            let age = new.duration_since(old);
            age.as_secs() >= HEARTBEAT_REFRESH.as_secs() as i64 || age.is_negative()
        }
        _ => true,
    }
}

/// When each marked key is due to be written.
#[derive(Debug)]
pub struct Schedule<K> {
    due: HashMap<K, Instant>,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Schedule { due: HashMap::new() }
    }
}

impl<K: Eq + Hash + Clone> Schedule<K> {
    /// Marks `key` changed at `now`: due after [`SETTLED_DELAY`] or [`IN_FLIGHT_DELAY`], or
    /// earlier if it was already due earlier (a later change never postpones a write).
    pub fn mark(&mut self, key: K, now: Instant, settled: bool) {
        let at = now + if settled { SETTLED_DELAY } else { IN_FLIGHT_DELAY };
        self.due.entry(key).and_modify(|d| *d = (*d).min(at)).or_insert(at);
    }

    /// Marks `key` due at `at` (a retry), unless it is due earlier.
    pub fn retry(&mut self, key: K, at: Instant) {
        self.due.entry(key).and_modify(|d| *d = (*d).min(at)).or_insert(at);
    }

    /// The keys due at `now`, removed from the schedule.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let keys: Vec<K> = self.due.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.due.remove(k);
        }
        keys
    }

    /// The earliest due time.
    pub fn next(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// How many keys are marked.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether nothing is marked.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::conditions::condition;
    use crate::crd::AgentStatus;
    use crate::time::to_k8s;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn with_phase(reason: &str) -> VRouterTargetStatus {
        let mut s = VRouterTargetStatus::default();
        s.conditions.push(condition("ConfigApplied", reason == "Applied", reason, "", at(0), &[]));
        s
    }

    fn beating(secs: u64) -> VRouterTargetStatus {
        let mut s = with_phase("Applied");
        s.agent =
            Some(AgentStatus { connected: true, last_heartbeat: Some(to_k8s(at(secs))), ..AgentStatus::default() });
        s
    }

    #[test]
    fn in_flight_phases_are_not_settled() {
        assert!(settled(&VRouterTargetStatus::default()));
        assert!(settled(&with_phase("Applied")));
        assert!(settled(&with_phase("ApplyFailed")));
        assert!(settled(&with_phase("Conflict")));
        assert!(!settled(&with_phase("Pending")));
        assert!(!settled(&with_phase("Applying")));
    }

    #[test]
    fn a_heartbeat_alone_is_written_only_when_the_written_one_is_old() {
        let written = beating(0);
        assert!(!target_worth_writing(Some(&written), &written));
        assert!(!target_worth_writing(Some(&written), &beating(15)));
        assert!(!target_worth_writing(Some(&written), &beating(299)));
        assert!(target_worth_writing(Some(&written), &beating(300)));
        // A clock that went back is refreshed rather than kept.
        assert!(target_worth_writing(Some(&beating(100)), &beating(10)));
        assert!(target_worth_writing(None, &written));
    }

    #[test]
    fn any_other_change_is_written_with_the_heartbeat() {
        let written = beating(0);
        let mut changed = beating(15);
        changed.applied_revision = Some("r2".into());
        assert!(target_worth_writing(Some(&written), &changed));
        let mut lost = beating(0);
        if let Some(a) = lost.agent.as_mut() {
            a.connected = false;
        }
        assert!(target_worth_writing(Some(&written), &lost));
        // A first heartbeat (none written yet) is worth a write.
        let mut first = beating(0);
        if let Some(a) = first.agent.as_mut() {
            a.last_heartbeat = None;
        }
        assert!(target_worth_writing(Some(&first), &written));
    }

    #[test]
    fn marks_coalesce_and_a_later_change_never_postpones_a_write() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.mark("a", t0, false);
        assert_eq!(s.next(), Some(t0 + IN_FLIGHT_DELAY));
        // The outcome arrives: due sooner.
        s.mark("a", t0 + Duration::from_secs(2), true);
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(2) + SETTLED_DELAY));
        // Another change in flight does not push it back.
        s.mark("a", t0 + Duration::from_secs(2), false);
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(2) + SETTLED_DELAY));
        s.mark("b", t0 + Duration::from_secs(2), true);
        assert_eq!(s.len(), 2);
        assert!(s.take_due(t0 + Duration::from_secs(2)).is_empty());
        let mut due = s.take_due(t0 + Duration::from_secs(3));
        due.sort();
        assert_eq!(due, vec!["a", "b"]);
        assert!(s.is_empty() && s.next().is_none());
    }

    #[test]
    fn a_retry_is_due_at_its_time_unless_a_change_is_due_sooner() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.retry("a", t0 + Duration::from_secs(5));
        s.mark("a", t0, true);
        assert_eq!(s.next(), Some(t0 + SETTLED_DELAY));
        s.take_due(t0 + SETTLED_DELAY);
        s.mark("a", t0, true);
        s.retry("a", t0 + Duration::from_secs(5));
        assert_eq!(s.next(), Some(t0 + SETTLED_DELAY));
    }
}
