//! Where the PKI keeps its files: a small storage trait, with a directory implementation.
//!
//! The operator's CA, server certificate and enrollment state must survive restarts; losing
//! them silently would force every router to re-enroll. The trait keeps the PKI independent of
//! where the bytes live (a directory in standalone mode, a Kubernetes Secret in a cluster).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// A storage error, naming the item and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("PKI store: {item}: {message}")]
pub struct StoreError {
    /// The item (file or key) concerned.
    pub item: String,
    /// What went wrong.
    pub message: String,
}

/// Named blobs, loaded and saved whole. `save` must be atomic: a reader sees the old or the
/// new content, never a mix.
#[async_trait]
pub trait PkiStore: Send + Sync {
    /// Loads an item; `None` if it does not exist.
    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Saves an item, replacing it atomically.
    async fn save(&self, name: &str, data: &[u8]) -> Result<(), StoreError>;
    /// Read-modify-write of one item, safe against concurrent writers (other processes
    /// included): `f` gets the current content and returns the new content, or `None` to leave
    /// it unchanged. `f` may be called more than once (optimistic retries).
    async fn update(
        &self,
        name: &str,
        f: &mut (dyn FnMut(Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StoreError> + Send),
    ) -> Result<(), StoreError>;
    /// Deletes an item; whether it existed.
    async fn delete(&self, name: &str) -> Result<bool, StoreError>;
    /// Names of the items starting with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// A description for messages ("directory /var/lib/x", "Secret ns/name").
    fn describe(&self) -> String;
    /// Saves `items` together only if the store holds none of them yet (create-if-absent, for
    /// first starts racing each other); whether they were saved. Stores shared between
    /// processes must make this atomic; the default (check, then save one by one) is for
    /// single-writer stores.
    async fn init(&self, items: &[(&str, Vec<u8>)]) -> Result<bool, StoreError> {
        for (name, _) in items {
            if self.load(name).await?.is_some() {
                return Ok(false);
            }
        }
        for (name, data) in items {
            self.save(name, data).await?;
        }
        Ok(true)
    }
}

/// The item holding the key of revision ids' secrets fingerprint.
pub const REVISION_KEY: &str = "revision.key";

/// The revision-id key kept in `store` (32 random bytes created on first use; a concurrent
/// first use ends with one key).
pub async fn revision_key(store: &dyn PkiStore) -> Result<Vec<u8>, StoreError> {
    store
        .update(REVISION_KEY, &mut |current| {
            Ok(match current {
                Some(k) if k.len() >= 32 => None,
                _ => Some(rand::random::<[u8; 32]>().to_vec()),
            })
        })
        .await?;
    match store.load(REVISION_KEY).await? {
        Some(k) if k.len() >= 32 => Ok(k),
        _ => Err(StoreError { item: REVISION_KEY.to_owned(), message: "missing after it was written".to_owned() }),
    }
}

/// A directory: one file per item, written to a temporary file then renamed. Files are
/// created with mode 0600 (they hold private keys).
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// A store in `dir`, created (mode 0700) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        create_private_dir(&dir).map_err(|e| StoreError { item: dir.display().to_string(), message: e.to_string() })?;
        Ok(DirStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes a file atomically (temporary file in the same directory, fsync, rename) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether an item name is usable as a file name and a Secret key.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.starts_with('.')
}

#[async_trait]
impl PkiStore for DirStore {
    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !valid_name(name) {
            return Err(StoreError { item: name.to_owned(), message: "invalid item name".to_owned() });
        }
        let path = self.dir.join(name);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError { item: path.display().to_string(), message: e.to_string() }),
        }
    }

    async fn save(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        if !valid_name(name) {
            return Err(StoreError { item: name.to_owned(), message: "invalid item name".to_owned() });
        }
        let path = self.dir.join(name);
        let data = data.to_vec();
        let p = path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&p, &data, 0o600))
            .await
            .map_err(|e| StoreError { item: path.display().to_string(), message: e.to_string() })?
            .map_err(|e| StoreError { item: path.display().to_string(), message: e.to_string() })
    }

    async fn update(
        &self,
        name: &str,
        f: &mut (dyn FnMut(Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StoreError> + Send),
    ) -> Result<(), StoreError> {
        if !valid_name(name) {
            return Err(StoreError { item: name.to_owned(), message: "invalid item name".to_owned() });
        }
        let path = self.dir.join(name);
        let err = |e: std::io::Error| StoreError { item: path.display().to_string(), message: e.to_string() };
        // An exclusive lock on a side file serializes writers across processes (flock). The
        // files are small: the critical section is a read and an atomic rename.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))
            .map_err(err)?;
        lock.lock().map_err(err)?;
        let current = match std::fs::read(&path) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e)),
        };
        let result = match f(current)? {
            Some(data) => write_atomic(&path, &data, 0o600).map_err(err),
            None => Ok(()),
        };
        let _ = lock.unlock();
        result
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if !valid_name(name) {
            return Err(StoreError { item: name.to_owned(), message: "invalid item name".to_owned() });
        }
        let path = self.dir.join(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError { item: path.display().to_string(), message: e.to_string() }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let err = |e: std::io::Error| StoreError { item: self.dir.display().to_string(), message: e.to_string() };
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(err)?;
        while let Some(entry) = entries.next_entry().await.map_err(err)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && valid_name(&name) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn save_load_private() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::new(tmp.path().join("pki")).unwrap();
        assert_eq!(store.load("ca.key").await.unwrap(), None);
        store.save("ca.key", b"secret").await.unwrap();
        assert_eq!(store.load("ca.key").await.unwrap().as_deref(), Some(&b"secret"[..]));
        let mode = std::fs::metadata(tmp.path().join("pki/ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(tmp.path().join("pki")).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(store.save("../escape", b"x").await.is_err());
    }
}
