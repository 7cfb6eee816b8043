//! Status conditions (pure helpers).

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::time::to_k8s;

/// A condition; the transition time is kept from `old` while the status does not change. The
/// message carries values (render and parse errors quote them, a router's output is copied in):
/// its control and bidi characters are escaped ([`vyos_config::escape_controls`]).
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    now: SystemTime,
    old: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| to_k8s(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: vyos_config::escape_controls_owned(message.into()),
        last_transition_time: since,
        observed_generation: None,
    }
}

/// Marks every condition as computed for `generation` (`metadata.generation` of the object whose
/// status they are in), as `kubectl wait` and tools like Argo CD read them.
pub fn stamp_generation(list: &mut [Condition], generation: Option<i64>) {
    for c in list {
        c.observed_generation = generation;
    }
}

/// Sets `Ready` to follow `from` (same status, reason and message), or to False with
/// `reason_if_missing` when `from` is not set.
pub fn ready_follows(list: &mut Vec<Condition>, from: &str, reason_if_missing: &str, now: SystemTime) {
    let old = list.clone();
    let c = match list.iter().find(|c| c.type_ == from) {
        Some(f) => condition("Ready", f.status == "True", &f.reason, f.message.clone(), now, &old),
        None => condition("Ready", false, reason_if_missing, "", now, &old),
    };
    set_condition(list, c);
}

/// Replaces the condition of the same type, or adds it.
pub fn set_condition(list: &mut Vec<Condition>, c: Condition) {
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => *x = c,
        None => list.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(60);
        let mut list = vec![];
        set_condition(&mut list, condition("Ready", false, "A", "x", t0, &[]));
        let old = list.clone();
        set_condition(&mut list, condition("Ready", false, "B", "y", t1, &old));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "B");
        assert_eq!(list[0].last_transition_time, to_k8s(t0));
        let old = list.clone();
        set_condition(&mut list, condition("Ready", true, "C", "z", t1, &old));
        assert_eq!(list[0].last_transition_time, to_k8s(t1));
    }

    #[test]
    fn ready_follows_its_source_and_conditions_carry_the_generation() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut list = vec![];
        ready_follows(&mut list, "ConfigApplied", "Pending", t0);
        assert_eq!(
            (list[0].type_.as_str(), list[0].status.as_str(), list[0].reason.as_str()),
            ("Ready", "False", "Pending")
        );
        set_condition(&mut list, condition("ConfigApplied", true, "Applied", "revision r1", t0, &[]));
        ready_follows(&mut list, "ConfigApplied", "Pending", t0);
        let ready = list.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str(), ready.message.as_str()),
            ("True", "Applied", "revision r1")
        );
        stamp_generation(&mut list, Some(7));
        assert!(list.iter().all(|c| c.observed_generation == Some(7)));
    }

    #[test]
    fn messages_do_not_carry_control_or_bidi_characters() {
        let c =
            condition("Ready", false, "RenderFailed", "value 'a\u{202e}b\u{1b}[0m'\nnext", SystemTime::UNIX_EPOCH, &[]);
        assert_eq!(c.message, "value 'a\\u{202e}b\\u{1b}[0m'\nnext");
    }
}
