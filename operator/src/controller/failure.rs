//! What a failed reconcile tells the object's owner (pure): the Event's reason and note. The
//! controllers publish it on the object at every retry (kube-runtime's recorder folds repeats
//! into one Event series), so a refused write — RBAC (403), admission or schema (422), a
//! conflict (409), throttling (429) — is visible in `kubectl describe`, not only in the log.

use std::time::Duration;

use super::Error;

/// The Event reason and note for a reconcile that failed with `error` and is retried in
/// `retry_in`.
pub fn failure_event(error: &Error, retry_in: Duration) -> (&'static str, String) {
    let reason = match error {
        Error::Kube { source, .. } => match source.as_ref() {
            kube::Error::Api(s) => match s.code {
                403 => "Forbidden",
                409 => "Conflict",
                422 => "Invalid",
                429 => "Throttled",
                _ => "APIError",
            },
            _ => "APIUnreachable",
        },
        Error::Enroll { .. } => "EnrollFailed",
        Error::Running { .. } => "RunningConfigFailed",
        Error::NoNamespace(_) | Error::Poisoned => "ReconcileFailed",
    };
    let hint = match reason {
        "Forbidden" => " (the operator's RBAC does not allow it: check the chart's Roles)",
        "Invalid" => " (the API server or an admission policy refused the object)",
        _ => "",
    };
    // An API answer by its message: the error's Display carries the whole Status, far past
    // what an Event note may hold.
    let cause = match error {
        Error::Kube { what, source } => match source.as_ref() {
            kube::Error::Api(s) => format!("{what}: {} ({} {})", s.message, s.code, s.reason),
            other => format!("{what}: {other}"),
        },
        other => other.to_string(),
    };
    (reason, crate::event_note::fit(format!("{cause}{hint}; retrying in {}s", retry_in.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> Error {
        let status = kube::core::Status::failure(message, reason).with_code(code);
        Error::Kube { what: "writing generated config", source: Box::new(kube::Error::Api(Box::new(status))) }
    }

    #[test]
    fn api_answers_name_their_cause_and_the_retry() {
        let (reason, note) = failure_event(
            &api(403, "Forbidden", "vrouterconfigs.vrouter.kojuro.date \"base.hub\" is forbidden"),
            Duration::from_secs(10),
        );
        assert_eq!(reason, "Forbidden");
        assert!(note.starts_with("writing generated config: vrouterconfigs"), "{note}");
        assert!(note.contains("(403 Forbidden)") && !note.contains("Status {"), "the message, not the dump: {note}");
        assert!(note.contains("is forbidden") && note.contains("RBAC") && note.ends_with("retrying in 10s"), "{note}");
        for (code, want) in [(409, "Conflict"), (422, "Invalid"), (429, "Throttled"), (500, "APIError")] {
            assert_eq!(failure_event(&api(code, "x", "y"), Duration::from_secs(5)).0, want, "{code}");
        }
    }

    #[test]
    fn a_long_answer_fits_an_event() {
        let (_, note) = failure_event(&api(422, "Invalid", &"x".repeat(5000)), Duration::from_secs(5));
        assert!(note.len() <= crate::event_note::MAX_NOTE, "{} bytes", note.len());
    }

    #[test]
    fn other_failures_have_their_own_reasons() {
        let e = Error::Enroll { target: "ns/r".into(), message: "no session".into() };
        assert_eq!(
            failure_event(&e, Duration::from_secs(5)),
            ("EnrollFailed", "enrollment of ns/r: no session; retrying in 5s".into())
        );
        assert_eq!(failure_event(&Error::Poisoned, Duration::from_secs(5)).0, "ReconcileFailed");
    }
}
