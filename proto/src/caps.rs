//! Capability names negotiated in `Hello` and `Welcome`.
//!
//! A sender only uses a feature both sides announced; unknown names are ignored.

/// Applying revisions (`ApplyRequest`/`ApplyResult`).
pub const APPLY_V1: &str = "apply.v1";
/// Commit-confirm with a reachability proof before confirming.
pub const COMMIT_CONFIRM: &str = "commit-confirm";
/// Dry runs (`ApplyRequest.dry_run`).
pub const DRY_RUN: &str = "dry-run";
/// Drift reports.
pub const DRIFT_V1: &str = "drift.v1";
/// Status reports.
pub const STATUS_V1: &str = "status.v1";
/// Certificate renewal over the stream.
pub const RENEW_V1: &str = "renew.v1";
/// `GetRunningConfig`.
pub const RUNNING_CONFIG_V1: &str = "running-config.v1";
/// Operator-initiated pings answered with `Pong` (every agent supports this).
pub const PING_V1: &str = "ping.v1";

/// Every capability this version of the protocol defines.
pub const ALL: &[&str] =
    &[APPLY_V1, COMMIT_CONFIRM, DRY_RUN, DRIFT_V1, STATUS_V1, RENEW_V1, RUNNING_CONFIG_V1, PING_V1];
