//! What each binding last rendered for each target, so a pass where nothing changed does not
//! render again.
//!
//! A binding's entry is keyed by a digest of everything its rendering reads besides the target:
//! the binding (name, namespace, labels, spec), every template of the namespace (includes and
//! imports may name any of them) and the params layers. Each target's result is keyed by a
//! digest of the target's name, labels and params. A changed binding-level digest drops every
//! target's result; a changed target digest re-renders that target only. Secret values are not
//! an input: rendering only writes placeholders for them (they are looked up at composition).
//!
//! A different digest for the same inputs (e.g. another map order) only costs a re-render; the
//! digests are SHA-256 over length-prefixed fields, so different inputs never share one.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::generate::Generated;

/// A target's generated config, or why it failed. Shared with the [`Output`](crate::generate::Output)
/// of each call, so a pass where nothing changed copies no config text.
pub(crate) type TargetResult = Result<Arc<Generated>, String>;

/// A SHA-256 digest of inputs.
pub(crate) type InputDigest = [u8; 32];

/// Rendered results by (namespace, binding) and target.
#[derive(Debug, Default, Clone)]
pub struct RenderCache {
    bindings: BTreeMap<(String, String), BindingEntry>,
}

/// One binding's results.
#[derive(Debug, Default, Clone)]
pub(crate) struct BindingEntry {
    /// Digest of the binding-level inputs the results were rendered with.
    pub(crate) inputs: InputDigest,
    /// Target → (digest of the target's inputs, result).
    pub(crate) targets: BTreeMap<String, (InputDigest, TargetResult)>,
}

impl RenderCache {
    /// An empty cache.
    pub fn new() -> RenderCache {
        RenderCache::default()
    }

    /// Forgets the bindings for which `keep(namespace, binding)` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.bindings.retain(|(ns, name), _| keep(ns, name));
    }

    /// How many target results are kept (all bindings).
    pub fn len(&self) -> usize {
        self.bindings.values().map(|b| b.targets.len()).sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a binding's entry out; an entry rendered with other binding-level inputs comes back
    /// empty (with the new digest).
    pub(crate) fn take(&mut self, namespace: &str, binding: &str, inputs: InputDigest) -> (BindingEntry, bool) {
        match self.bindings.remove(&(namespace.to_owned(), binding.to_owned())) {
            Some(e) if e.inputs == inputs => (e, true),
            _ => (BindingEntry { inputs, targets: BTreeMap::new() }, false),
        }
    }

    /// A binding's entry, for tests that tamper with it to see whether it is used.
    #[cfg(test)]
    pub(crate) fn entry_mut(&mut self, namespace: &str, binding: &str) -> Option<&mut BindingEntry> {
        self.bindings.get_mut(&(namespace.to_owned(), binding.to_owned()))
    }

    /// Puts a binding's entry (back).
    pub(crate) fn put(&mut self, namespace: &str, binding: &str, entry: BindingEntry) {
        self.bindings.insert((namespace.to_owned(), binding.to_owned()), entry);
    }
}

/// Builds an [`InputDigest`] from named, length-prefixed fields.
pub(crate) struct Hasher(Sha256);

impl Hasher {
    /// A hasher for one kind of digest (`kind` keeps kinds apart).
    pub(crate) fn new(kind: &str) -> Hasher {
        let mut h = Hasher(Sha256::new());
        h.bytes("kind", kind.as_bytes());
        h
    }

    /// Adds a field.
    pub(crate) fn bytes(&mut self, name: &str, data: &[u8]) {
        self.0.update((name.len() as u64).to_be_bytes());
        self.0.update(name.as_bytes());
        self.0.update((data.len() as u64).to_be_bytes());
        self.0.update(data);
    }

    /// Adds an optional text field (absent and empty differ).
    pub(crate) fn opt(&mut self, name: &str, data: Option<&str>) {
        match data {
            Some(d) => self.bytes(name, d.as_bytes()),
            None => self.0.update(u64::MAX.to_be_bytes()),
        }
    }

    /// Adds a field as its JSON serialization (a value that does not serialize makes the
    /// digest unique, so it never matches: a re-render, never a wrong result).
    pub(crate) fn json(&mut self, name: &str, value: &impl Serialize) {
        match serde_json::to_vec(value) {
            Ok(v) => self.bytes(name, &v),
            Err(_) => self.bytes(name, &unique_bytes()),
        }
    }

    /// The digest.
    pub(crate) fn finish(self) -> InputDigest {
        self.0.finalize().into()
    }
}

/// Bytes that differ on every call (within a process).
fn unique_bytes() -> [u8; 8] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes()
}
