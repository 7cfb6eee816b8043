//! Router and token records spread over a fixed set of bucket stores beside the main one.
//!
//! In one Kubernetes Secret every enrollment rewrites every router's record (two writes of the
//! whole Secret per router: a fleet's enrollment is quadratic in bytes), and the Secret is full
//! at about 2,300 routers (found by the 1,000-router benchmark on the real API server: 426 bytes
//! per router of the 1 MB a Secret holds). The CA, the server certificate and the other
//! singletons stay in the main store; `router-*` and `token-*` items go to one of [`BUCKETS`]
//! stores chosen by a stable hash of the item's name, so an enrollment rewrites about 1/64 of
//! the records, and 64 Secrets hold about 120,000 routers.
//!
//! Upgrade: records written before the buckets existed stay readable in the main store; an
//! update moves one into its bucket, a delete removes it from both. Nothing re-enrolls.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::store::{PkiStore, StoreError};
use super::{ROUTER_PREFIX, TOKEN_PREFIX};

/// Bucket stores. Fixed: an item's bucket is part of where it is stored, and the chart names
/// every bucket Secret in its RBAC rule.
pub const BUCKETS: usize = 64;

/// The name of bucket `i` beside the main store named `main` (`vrouter-pki-00` … `-3f`).
pub fn bucket_name(main: &str, i: usize) -> String {
    format!("{main}-{i:02x}")
}

/// Whether `item` lives in a bucket (a router's or a token's record).
fn bucketed(item: &str) -> bool {
    item.starts_with(ROUTER_PREFIX) || item.starts_with(TOKEN_PREFIX)
}

/// The bucket of `item`: the first byte of its SHA-256, modulo [`BUCKETS`] (stable across
/// versions and platforms, unlike std's hasher).
pub fn bucket_of(item: &str) -> usize {
    usize::from(Sha256::digest(item.as_bytes())[0]) % BUCKETS
}

/// A [`PkiStore`] over a main store and [`BUCKETS`] bucket stores.
pub struct BucketedStore {
    main: Arc<dyn PkiStore>,
    buckets: Vec<Arc<dyn PkiStore>>,
}

impl BucketedStore {
    /// The store over `main` and `buckets` (exactly [`BUCKETS`] of them).
    pub fn new(main: Arc<dyn PkiStore>, buckets: Vec<Arc<dyn PkiStore>>) -> Result<Self, StoreError> {
        if buckets.len() != BUCKETS {
            return Err(StoreError {
                item: main.describe(),
                message: format!("{} bucket stores given, {BUCKETS} needed", buckets.len()),
            });
        }
        Ok(BucketedStore { main, buckets })
    }

    /// Where `item` lives: its bucket, or the main store.
    fn home(&self, item: &str) -> &dyn PkiStore {
        if bucketed(item) { self.buckets[bucket_of(item)].as_ref() } else { self.main.as_ref() }
    }

    /// For a bucketed item: its content in the main store, where it was written before buckets.
    async fn legacy(&self, item: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if bucketed(item) { self.main.load(item).await } else { Ok(None) }
    }
}

#[async_trait]
impl PkiStore for BucketedStore {
    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.home(name).load(name).await? {
            Some(data) => Ok(Some(data)),
            None => self.legacy(name).await,
        }
    }

    async fn save(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.home(name).save(name, data).await?;
        if self.legacy(name).await?.is_some() {
            self.main.delete(name).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        name: &str,
        f: &mut (dyn FnMut(Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StoreError> + Send),
    ) -> Result<(), StoreError> {
        let legacy = self.legacy(name).await?;
        // The bucket's copy wins; without one, the legacy copy is what `f` updates.
        self.home(name).update(name, &mut |current| f(current.or_else(|| legacy.clone()))).await?;
        if legacy.is_some() && self.home(name).load(name).await?.is_some() {
            self.main.delete(name).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let here = self.home(name).delete(name).await?;
        let there = bucketed(name) && self.main.delete(name).await?;
        Ok(here || there)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut names = self.main.list(prefix).await?;
        for b in &self.buckets {
            names.extend(b.list(prefix).await?);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn describe(&self) -> String {
        format!("{} (records in {BUCKETS} buckets beside it)", self.main.describe())
    }

    async fn init(&self, items: &[(&str, Vec<u8>)]) -> Result<bool, StoreError> {
        if let Some((name, _)) = items.iter().find(|(n, _)| bucketed(n)) {
            return Err(StoreError {
                item: (*name).to_owned(),
                message: "a record cannot be part of the first start".into(),
            });
        }
        self.main.init(items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::DirStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        main: Arc<dyn PkiStore>,
        buckets: Vec<Arc<dyn PkiStore>>,
        store: BucketedStore,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let main: Arc<dyn PkiStore> = Arc::new(DirStore::new(dir.path().join("main")).unwrap());
        let buckets: Vec<Arc<dyn PkiStore>> = (0..BUCKETS)
            .map(|i| Arc::new(DirStore::new(dir.path().join(bucket_name("b", i))).unwrap()) as Arc<dyn PkiStore>)
            .collect();
        let store = BucketedStore::new(main.clone(), buckets.clone()).unwrap();
        Fixture { _dir: dir, main, buckets, store }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket_name("vrouter-pki", 0), "vrouter-pki-00");
        assert_eq!(bucket_name("vrouter-pki", 63), "vrouter-pki-3f");
        // Pinned (SHA-256 starts 0xfe and 0x09): a changed hash would lose every record.
        assert_eq!(bucket_of("router-net_r1"), 0xfe % 64);
        assert_eq!(bucket_of("token-abc"), 0x09);
        let mut used = [0usize; BUCKETS];
        for i in 0..6400 {
            used[bucket_of(&format!("router-net_r{i}"))] += 1;
        }
        assert!(used.iter().all(|&n| (50..=150).contains(&n)), "{used:?}");
    }

    #[tokio::test]
    async fn records_go_to_their_bucket_and_singletons_stay_in_main() {
        let f = fixture();
        f.store.save("ca.crt", b"ca").await.unwrap();
        f.store.save("router-net_r1", b"r1").await.unwrap();
        f.store.save("token-abc", b"t").await.unwrap();
        assert_eq!(f.main.load("ca.crt").await.unwrap().as_deref(), Some(&b"ca"[..]));
        assert!(f.main.load("router-net_r1").await.unwrap().is_none());
        let home = &f.buckets[bucket_of("router-net_r1")];
        assert_eq!(home.load("router-net_r1").await.unwrap().as_deref(), Some(&b"r1"[..]));
        assert_eq!(f.store.load("token-abc").await.unwrap().as_deref(), Some(&b"t"[..]));
        assert_eq!(f.store.list("router-").await.unwrap(), ["router-net_r1"]);
        assert_eq!(f.store.list("").await.unwrap(), ["ca.crt", "router-net_r1", "token-abc"]);
        assert!(f.store.delete("router-net_r1").await.unwrap());
        assert!(!f.store.delete("router-net_r1").await.unwrap());
        assert!(f.store.load("router-net_r1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn records_from_before_the_buckets_are_read_and_moved_on_update() {
        let f = fixture();
        f.main.save("router-net_old", b"v1").await.unwrap();
        assert_eq!(f.store.load("router-net_old").await.unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(f.store.list("router-").await.unwrap(), ["router-net_old"]);
        let mut seen = None;
        f.store
            .update("router-net_old", &mut |cur| {
                seen = cur.clone();
                Ok(Some(b"v2".to_vec()))
            })
            .await
            .unwrap();
        assert_eq!(seen.as_deref(), Some(&b"v1"[..]), "the update starts from the legacy copy");
        assert!(f.main.load("router-net_old").await.unwrap().is_none(), "moved out of main");
        assert_eq!(f.store.load("router-net_old").await.unwrap().as_deref(), Some(&b"v2"[..]));
        // An update that changes nothing leaves the legacy copy where it is.
        f.main.save("router-net_keep", b"k").await.unwrap();
        f.store.update("router-net_keep", &mut |_| Ok(None)).await.unwrap();
        assert_eq!(f.main.load("router-net_keep").await.unwrap().as_deref(), Some(&b"k"[..]));
        // Save and delete reach the legacy copy too.
        f.store.save("router-net_keep", b"k2").await.unwrap();
        assert!(f.main.load("router-net_keep").await.unwrap().is_none());
        f.main.save("token-x", b"t").await.unwrap();
        assert!(f.store.delete("token-x").await.unwrap());
        assert!(f.main.load("token-x").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn first_start_is_main_only_and_bucket_counts_are_checked() {
        let f = fixture();
        assert!(f.store.init(&[("ca.crt", b"ca".to_vec())]).await.unwrap());
        assert!(!f.store.init(&[("ca.crt", b"other".to_vec())]).await.unwrap());
        assert!(f.store.init(&[("router-net_r1", b"r".to_vec())]).await.is_err());
        let e = BucketedStore::new(f.main.clone(), f.buckets[..3].to_vec()).err().unwrap();
        assert!(e.to_string().contains("3 bucket stores given, 64 needed"), "{e}");
    }
}
