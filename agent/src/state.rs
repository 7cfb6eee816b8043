//! The agent's durable record of what it applied (`applied.a`/`applied.b` in the state
//! directory, see [`crate::slots`]).
//!
//! It survives agent restarts and reboots, so the agent can (1) acknowledge a revision it
//! already runs without touching the router, (2) compute Merge-policy removals against the
//! previous desired configuration, (3) report drift against the last applied revision, and
//! (4) answer a re-delivery of a revision that was rolled back with that outcome instead of
//! cutting itself off again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vrouter_proto::v1::Revision;

use crate::slots::SlotFile;

/// A revision as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// Revision id.
    pub id: String,
    /// Digest of the desired configuration.
    pub digest: String,
}

impl From<&Revision> for RevisionRecord {
    fn from(r: &Revision) -> Self {
        RevisionRecord { id: r.id.clone(), digest: r.digest.clone() }
    }
}

impl RevisionRecord {
    /// As a protocol message.
    pub fn to_proto(&self) -> Revision {
        Revision { id: self.id.clone(), digest: self.digest.clone() }
    }
}

/// A revision that did not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The revision.
    pub revision_id: String,
    /// The outcome (`ApplyOutcome` as a number).
    pub outcome: i32,
    /// The error text.
    pub error: String,
    /// When, Unix seconds.
    pub at: i64,
}

/// Everything in `applied.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// The last revision applied (confirmed).
    #[serde(default)]
    pub revision: Option<RevisionRecord>,
    /// Its desired configuration (hierarchical, secrets included; the file is mode 0600).
    #[serde(default)]
    pub desired_config: String,
    /// `merge` or `replace`.
    #[serde(default)]
    pub policy: String,
    /// Managed scopes of that revision.
    #[serde(default)]
    pub managed_scopes: Vec<String>,
    /// Explicit deletions of that revision (`delete …` lines), re-checked by drift detection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletions: Vec<String>,
    /// When it was applied, Unix seconds.
    #[serde(default)]
    pub applied_at: i64,
    /// The last revision that failed or was rolled back.
    #[serde(default)]
    pub last_failure: Option<FailureRecord>,
}

/// Reads and writes the record (`applied.a` / `applied.b`: JSON in a durable two-slot file).
#[derive(Debug)]
pub struct StateFile {
    slots: SlotFile,
    dir: PathBuf,
}

/// A state-file problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StateError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl StateFile {
    /// The record in `dir`.
    pub fn new(dir: &Path) -> Self {
        StateFile { slots: SlotFile::new(dir, "applied", true, 0o600), dir: dir.to_owned() }
    }

    fn err(&self, message: String) -> StateError {
        StateError { path: self.dir.join("applied.{a,b}").display().to_string(), message }
    }

    /// Loads the record; an absent file is an empty record. A corrupt one is an error (never
    /// silently treated as "nothing applied", which would turn Merge removals off).
    pub fn load(&self) -> Result<AppliedRecord, StateError> {
        match self.slots.load() {
            Ok(Some(data)) => serde_json::from_slice(&data).map_err(|e| self.err(format!("corrupt: {e}"))),
            Ok(None) => Ok(AppliedRecord::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(self.err(format!("corrupt: {e}"))),
            Err(e) => Err(self.err(e.to_string())),
        }
    }

    /// Saves the record durably.
    pub fn save(&self, record: &AppliedRecord) -> Result<(), StateError> {
        crate::creds::create_private_dir(&self.dir).map_err(|e| self.err(e.to_string()))?;
        let data = serde_json::to_vec_pretty(record).map_err(|e| self.err(e.to_string()))?;
        self.slots.store(&data).map_err(|e| self.err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let f = StateFile::new(tmp.path());
        assert_eq!(f.load().unwrap(), AppliedRecord::default());
        let r = AppliedRecord {
            revision: Some(RevisionRecord { id: "r1".into(), digest: "sha256:x".into() }),
            desired_config: "a b\n".into(),
            ..Default::default()
        };
        f.save(&r).unwrap();
        assert_eq!(f.load().unwrap(), r);
        for slot in ["applied.a", "applied.b"] {
            if tmp.path().join(slot).exists() {
                std::fs::write(tmp.path().join(slot), b"{").unwrap();
            }
        }
        assert!(StateFile::new(tmp.path()).load().unwrap_err().message.contains("corrupt"));
    }
}
