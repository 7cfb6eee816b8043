//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder runs the controllers
//! and the delivery engine.
//!
//! - [`decide`] (pure): given the lease as read, how long it has been seen unchanged and who I
//!   am, what to do.
//! - [`Elector`] (kube): reads and writes the Lease. Every write is conditional on the
//!   resourceVersion last read or written (fencing): a stale write fails with a conflict and the
//!   replica steps down at once. A leader that cannot renew for `renew_deadline` steps down too,
//!   before its lease can expire for the others (`renew_deadline < lease_duration`).
//! - [`lead`]: runs a piece of work while leader, cancels it when leadership is lost, then
//!   contends again.
//! - [`label_pod`]: the leader labels its pod [`LEADER_LABEL`]; the agent Service selects it.
//!
//! Expiry is judged on this replica's monotonic clock, like client-go: a lease is expired once
//! its record (resourceVersion) has not changed for its duration, so clock skew between nodes
//! does not matter. A released lease (no holder) is free at once.
//!
//! Why not a crate: `kube-lease-manager` (the one compatible with kube 5) renews with a patch
//! that is not conditional on the resourceVersion, so a replica that lost the lease could still
//! extend its successor's; the others target older kube releases.

mod elector;
mod label;
mod lead;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;

pub use elector::{Elector, ElectorError};
pub use label::{LEADER_LABEL, label_pod};
pub use lead::lead;

/// Lease settings (client-go's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This replica's identity (the pod name): the lease's `holderIdentity`.
    pub identity: String,
    /// How long a lease is valid without renewal, for the others.
    pub lease_duration: Duration,
    /// How long the leader keeps leading while renewals fail.
    pub renew_deadline: Duration,
    /// Time between attempts (renewals, or reads while following).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Settings with the default timings: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the settings: names non-empty, `lease_duration > renew_deadline > retry_period > 0`.
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in
            [("lease name", &self.name), ("lease namespace", &self.namespace), ("identity", &self.identity)]
        {
            if v.is_empty() {
                return Err(format!("{what} must not be empty"));
            }
        }
        if self.retry_period.is_zero() {
            return Err("the retry period must be greater than 0".into());
        }
        if self.renew_deadline <= self.retry_period {
            return Err(format!(
                "the renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 || self.lease_duration.as_secs() == 0 {
            return Err("the lease duration must be a whole number of seconds, at least 1".into());
        }
        Ok(())
    }
}

/// What to do with the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no lease: create it, held by me.
    Create,
    /// I hold it: renew it.
    Renew,
    /// Nobody holds it, or its holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it: follow; it expires in `expires_in` unless renewed.
    Follow {
        /// The holder.
        holder: String,
        /// Time left before it may be taken over.
        expires_in: Duration,
    },
}

/// Decides what to do. `lease`: the spec as read (`None`: no Lease object); `unchanged_for`:
/// how long this replica has seen the same record (resourceVersion) — zero on first sight;
/// `default_duration`: used when the lease has no valid duration of its own.
pub fn decide(lease: Option<&LeaseSpec>, unchanged_for: Duration, me: &str, default_duration: Duration) -> Decision {
    let Some(spec) = lease else { return Decision::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|d| *d > 0)
        .map_or(default_duration, |d| Duration::from_secs(d.unsigned_abs().into()));
    if unchanged_for >= duration {
        Decision::TakeOver
    } else {
        Decision::Follow { holder: holder.to_owned(), expires_in: duration - unchanged_for }
    }
}

/// Whether a leader whose last successful renewal was `since_renewal` ago still leads.
pub fn still_leading(since_renewal: Duration, renew_deadline: Duration) -> bool {
    since_renewal < renew_deadline
}

#[cfg(test)]
mod tests;
