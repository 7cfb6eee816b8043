//! Which generated configs a binding writes now (pure): all at once, or in batches.
//!
//! A target is *pending* when its generated config is missing or differs from the freshly
//! rendered one. Without a rollout every pending config is written at once. With one, pending
//! configs are written `maxUnavailable` at a time:
//! - the current batch (in status) is finished when, for `WaitForApplied`, every config in it is
//!   applied at its current generation and `waitAfterApplied` has passed since the last of them
//!   was applied; for `FixedInterval`, when `waitInterval` has passed since the batch was written;
//! - a config of the current batch that changes again is rewritten at once (a re-render
//!   mid-batch does not wait for the batch it is already in);
//! - `WaitForApplied` with `haltOnFailure` stops the rollout while any config of the binding that
//!   is already at its rendered content has failed; a new render of that config is still written
//!   (it may be the fix);
//! - targets that left the binding leave the batch; their configs are deleted by the caller.
//!
//! The batch is recorded before the configs are written (write-ahead), so a crash between the
//! two re-writes the same batch instead of skipping ahead.

use std::time::{Duration, SystemTime};

use crate::crd::{BindingRolloutStatus, RolloutMode, RolloutSpec};

/// What the rollout needs to know about one target of the binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetState {
    /// The target's name.
    pub name: String,
    /// The generated config is missing or differs from the rendered one.
    pub pending: bool,
    /// The config is applied at its current generation.
    pub applied: bool,
    /// When it became applied (the Applied condition's transition).
    pub applied_since: Option<SystemTime>,
    /// The config's last delivery failed.
    pub failed: bool,
}

/// The rollout's decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Targets whose configs to write now.
    pub write: Vec<String>,
    /// The rollout status to record (before writing).
    pub status: Option<BindingRolloutStatus>,
    /// Set when the rollout is halted: why.
    pub halted: Option<String>,
    /// Whether every target is written (nothing pending).
    pub complete: bool,
    /// When to look again (None: only on change).
    pub requeue_after: Option<Duration>,
}

/// Durations of a rollout spec, parsed (invalid values fall back to defaults; validation
/// reports them separately).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often to look at progress.
    pub poll: Duration,
    /// Soak after a batch is applied.
    pub wait_after_applied: Duration,
    /// Time between batches (FixedInterval).
    pub wait_interval: Duration,
}

impl Timing {
    /// From a spec.
    pub fn of(spec: &RolloutSpec) -> Timing {
        let get = |d: &Option<crate::crd::GoDuration>, default: Duration| {
            d.as_ref().and_then(|d| d.get().ok()).unwrap_or(default)
        };
        Timing {
            poll: get(&spec.poll_interval, Duration::from_secs(10)).max(Duration::from_millis(100)),
            wait_after_applied: get(&spec.wait_after_applied, Duration::ZERO),
            wait_interval: get(&spec.wait_interval, Duration::from_secs(60)),
        }
    }
}

/// Decides what to write. `targets` is in rollout order.
pub fn decide(
    spec: Option<&RolloutSpec>,
    targets: &[TargetState],
    current: Option<&BindingRolloutStatus>,
    now: SystemTime,
) -> Decision {
    let pending: Vec<&TargetState> = targets.iter().filter(|t| t.pending).collect();
    let spec = match spec {
        Some(s) if s.mode != RolloutMode::Disabled => s,
        _ => {
            return Decision {
                write: pending.iter().map(|t| t.name.clone()).collect(),
                status: None,
                halted: None,
                complete: true,
                requeue_after: None,
            };
        }
    };
    let timing = Timing::of(spec);
    let by_name = |n: &str| targets.iter().find(|t| t.name == n);

    if spec.mode == RolloutMode::WaitForApplied
        && spec.halt_on_failure
        && let Some(failed) = targets.iter().find(|t| t.failed && !t.pending)
    {
        // A new render of a failed config may be its fix: write those, nothing else.
        let retry: Vec<String> = targets.iter().filter(|t| t.failed && t.pending).map(|t| t.name.clone()).collect();
        return Decision {
            write: retry,
            status: current.cloned(),
            halted: Some(format!("the config of target {:?} failed; fix it or turn haltOnFailure off", failed.name)),
            complete: false,
            requeue_after: Some(timing.poll),
        };
    }

    let batch: Vec<String> =
        current.map(|c| c.batch.iter().filter(|n| by_name(n).is_some()).cloned().collect()).unwrap_or_default();
    let start = current.and_then(|c| c.batch_start_time.as_ref()).and_then(|t| to_system_time(&t.0));
    let number = current.map_or(0, |c| c.batch_number);

    // Mid-batch re-render: rewrite at once, restart the batch's clock.
    let rewrite: Vec<String> = batch.iter().filter(|n| by_name(n).is_some_and(|t| t.pending)).cloned().collect();
    if !rewrite.is_empty() {
        return Decision {
            write: rewrite,
            status: Some(status(batch, now, number)),
            halted: None,
            complete: false,
            requeue_after: Some(timing.poll),
        };
    }

    if !batch.is_empty() {
        let remaining = match spec.mode {
            RolloutMode::FixedInterval => {
                let since = start.map_or(Duration::MAX, |s| now.duration_since(s).unwrap_or_default());
                timing.wait_interval.saturating_sub(since)
            }
            _ => {
                let members: Vec<&TargetState> = batch.iter().filter_map(|n| by_name(n)).collect();
                if members.iter().all(|t| t.applied) {
                    let last = members.iter().filter_map(|t| t.applied_since).max();
                    let since = last.map_or(Duration::MAX, |l| now.duration_since(l).unwrap_or_default());
                    timing.wait_after_applied.saturating_sub(since)
                } else {
                    // Not applied yet: look again after the poll interval.
                    return Decision {
                        write: Vec::new(),
                        status: current.cloned(),
                        halted: None,
                        complete: false,
                        requeue_after: Some(timing.poll),
                    };
                }
            }
        };
        if !remaining.is_zero() {
            return Decision {
                write: Vec::new(),
                status: current.cloned(),
                halted: None,
                complete: pending.is_empty(),
                requeue_after: Some(remaining),
            };
        }
    }

    let size = spec.max_unavailable.max(1) as usize;
    let next: Vec<String> = pending.iter().take(size).map(|t| t.name.clone()).collect();
    if next.is_empty() {
        // Complete; WaitForApplied keeps polling until the last batch is applied (the caller
        // reports Ready from the configs' state).
        return Decision { write: Vec::new(), status: None, halted: None, complete: true, requeue_after: None };
    }
    Decision {
        write: next.clone(),
        status: Some(status(next, now, number + 1)),
        halted: None,
        complete: false,
        requeue_after: Some(match spec.mode {
            RolloutMode::FixedInterval => timing.wait_interval,
            _ => timing.poll,
        }),
    }
}

fn status(batch: Vec<String>, now: SystemTime, number: u32) -> BindingRolloutStatus {
    BindingRolloutStatus { batch, batch_start_time: Some(crate::time::to_k8s(now)), batch_number: number }
}

fn to_system_time(t: &k8s_openapi::jiff::Timestamp) -> Option<SystemTime> {
    Some(crate::time::from_k8s(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GoDuration;

    fn t(name: &str, pending: bool) -> TargetState {
        TargetState { name: name.into(), pending, applied: !pending, applied_since: None, failed: false }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn spec(mode: RolloutMode, max: u32) -> RolloutSpec {
        RolloutSpec {
            mode,
            max_unavailable: max,
            poll_interval: Some(GoDuration::new("5s")),
            wait_after_applied: Some(GoDuration::new("30s")),
            wait_interval: Some(GoDuration::new("60s")),
            halt_on_failure: true,
        }
    }

    #[test]
    fn disabled_writes_everything_pending() {
        let d = decide(None, &[t("a", true), t("b", false), t("c", true)], None, at(0));
        assert_eq!(d.write, ["a", "c"]);
        assert!(d.complete);
        let s = RolloutSpec::default();
        assert_eq!(decide(Some(&s), &[t("a", true)], None, at(0)).write, ["a"]);
    }

    #[test]
    fn wait_for_applied_walks_in_batches_with_soak() {
        let s = spec(RolloutMode::WaitForApplied, 2);
        let mut ts = vec![t("a", true), t("b", true), t("c", true)];
        let d = decide(Some(&s), &ts, None, at(0));
        assert_eq!(d.write, ["a", "b"]);
        let st = d.status.unwrap();
        assert_eq!((st.batch.clone(), st.batch_number), (vec!["a".to_owned(), "b".to_owned()], 1));
        // Written, not yet applied: wait.
        ts[0].pending = false;
        ts[1].pending = false;
        let d = decide(Some(&s), &ts, Some(&st), at(3));
        assert!(d.write.is_empty());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
        // Applied at 10 and 20: soak until 50.
        ts[0].applied = true;
        ts[0].applied_since = Some(at(10));
        ts[1].applied = true;
        ts[1].applied_since = Some(at(20));
        let d = decide(Some(&s), &ts, Some(&st), at(40));
        assert!(d.write.is_empty());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
        let d = decide(Some(&s), &ts, Some(&st), at(50));
        assert_eq!(d.write, ["c"]);
        let st2 = d.status.unwrap();
        assert_eq!(st2.batch_number, 2);
        ts[2] = TargetState { applied_since: Some(at(60)), ..t("c", false) };
        let d = decide(Some(&s), &ts, Some(&st2), at(100));
        assert!(d.complete && d.write.is_empty() && d.status.is_none());
    }

    #[test]
    fn rerender_mid_batch_is_written_at_once() {
        let s = spec(RolloutMode::WaitForApplied, 1);
        let st = BindingRolloutStatus { batch: vec!["a".into()], batch_start_time: None, batch_number: 1 };
        let d = decide(Some(&s), &[t("a", true), t("b", true)], Some(&st), at(0));
        assert_eq!(d.write, ["a"]);
    }

    #[test]
    fn halts_on_a_failed_config_but_writes_its_fix() {
        let s = spec(RolloutMode::WaitForApplied, 1);
        let failed = TargetState { failed: true, applied: false, ..t("a", false) };
        let d = decide(Some(&s), &[failed.clone(), t("b", true)], None, at(0));
        assert!(d.write.is_empty());
        assert!(d.halted.unwrap().contains("\"a\""));
        let fix = TargetState { pending: true, ..failed };
        let d = decide(Some(&s), &[fix, t("b", true), TargetState { failed: true, ..t("c", false) }], None, at(0));
        assert_eq!(d.write, ["a"]);
        assert!(d.halted.is_some());
        // haltOnFailure off: carry on.
        let s = RolloutSpec { halt_on_failure: false, ..s };
        let d = decide(Some(&s), &[TargetState { failed: true, ..t("a", false) }, t("b", true)], None, at(0));
        assert_eq!(d.write, ["b"]);
    }

    #[test]
    fn fixed_interval_ignores_outcomes() {
        let s = spec(RolloutMode::FixedInterval, 1);
        let d = decide(Some(&s), &[t("a", true), t("b", true)], None, at(0));
        assert_eq!(d.write, ["a"]);
        assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
        let st = d.status.unwrap();
        let ts = [TargetState { failed: true, ..t("a", false) }, t("b", true)];
        let d = decide(Some(&s), &ts, Some(&st), SystemTime::now().min(at(30)));
        assert!(d.write.is_empty());
        let d = decide(Some(&s), &ts, Some(&st), at(61));
        assert_eq!(d.write, ["b"]);
    }

    #[test]
    fn targets_that_left_are_dropped_from_the_batch() {
        let s = spec(RolloutMode::WaitForApplied, 1);
        let st = BindingRolloutStatus { batch: vec!["gone".into()], batch_start_time: None, batch_number: 3 };
        let d = decide(Some(&s), &[t("a", true)], Some(&st), at(0));
        assert_eq!(d.write, ["a"]);
        assert_eq!(d.status.unwrap().batch_number, 4);
    }
}
