//! A fixed cadence for the standalone loop's periodic work (the directory poll).
//!
//! The loop wakes for many reasons — delivery events, agent events, status writes — and a large
//! fleet's events arrive more often than the poll interval. A sleep restarted on every wake-up
//! would then never end, and a change written to the directory would wait for a quiet moment
//! (at 10,000 routers a template change waited tens of seconds). The cadence keeps an absolute
//! deadline instead, so waking early never postpones it.

use std::time::Duration;

use tokio::time::Instant;

/// Work due every `every`, however often the loop wakes in between.
#[derive(Debug)]
pub(crate) struct Cadence {
    every: Duration,
    next: Instant,
}

impl Cadence {
    /// The first occurrence is `every` after `now`.
    pub(crate) fn new(every: Duration, now: Instant) -> Self {
        Cadence { every, next: now + every }
    }

    /// How long until the work is due (zero when it is).
    pub(crate) fn left(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Whether the work is due at `now`; if so, the next occurrence is `every` from now.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_wake_ups_do_not_postpone_it() {
        let start = Instant::now();
        let mut poll = Cadence::new(Duration::from_millis(100), start);
        // The loop wakes every 10 ms for other reasons, for one second.
        let due: Vec<u64> = (1..=100)
            .map(|i| start + Duration::from_millis(10 * i))
            .filter(|&now| poll.due(now))
            .map(|now| (now - start).as_millis() as u64)
            .collect();
        assert_eq!(due, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    }

    #[test]
    fn left_counts_down_and_restarts_after_it_ran() {
        let start = Instant::now();
        let mut poll = Cadence::new(Duration::from_millis(100), start);
        assert_eq!(poll.left(start), Duration::from_millis(100));
        assert_eq!(poll.left(start + Duration::from_millis(30)), Duration::from_millis(70));
        assert_eq!(poll.left(start + Duration::from_millis(150)), Duration::ZERO);
        // A late wake-up runs it once and counts the next interval from then.
        assert!(poll.due(start + Duration::from_millis(150)));
        assert!(!poll.due(start + Duration::from_millis(200)));
        assert_eq!(poll.left(start + Duration::from_millis(200)), Duration::from_millis(50));
    }
}
