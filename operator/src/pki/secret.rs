//! The PKI in one Kubernetes Secret: one data key per item.
//!
//! Every write is a read-modify-write conditional on the Secret's resourceVersion (a create
//! when it does not exist yet): a concurrent writer makes it fail with a conflict, and it is
//! retried on a fresh read. So two replicas starting at once end up with one CA ([`PkiStore::init`]
//! is atomic here). Writes from this process are serialized, so only other processes cause
//! retries. Reads are served from the last read or written Secret for up to a second.
//!
//! A user-provided CA: create the Secret beforehand with the keys `ca.crt` and `ca.key` (PEM;
//! the key PKCS#8, ECDSA P-256 or P-384). The operator adds the rest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::store::{PkiStore, StoreError, valid_name};

/// Largest data a Secret may hold (the API server's limit is 1 MiB for the whole object; the
/// rest is left for metadata).
pub const MAX_SECRET_DATA: usize = 1_000_000;
/// How long a read is reused.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Conditional writes attempted before giving up.
const MAX_ATTEMPTS: usize = 10;

type Data = BTreeMap<String, ByteString>;

/// A [`PkiStore`] in one Secret.
pub struct SecretStore {
    api: Api<Secret>,
    namespace: String,
    name: String,
    /// The Secret as last read or written (`None` inside: it did not exist), and when.
    cache: std::sync::Mutex<Option<(Option<Secret>, Instant)>>,
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore").field("namespace", &self.namespace).field("name", &self.name).finish()
    }
}

impl SecretStore {
    /// The store in Secret `namespace/name` (created on the first write).
    pub fn new(client: Client, namespace: &str, name: &str) -> Result<Self, StoreError> {
        crate::crd::validate::check_name(name)
            .map_err(|e| StoreError { item: format!("Secret name {name:?}"), message: e })?;
        crate::crd::validate::check_name(namespace)
            .map_err(|e| StoreError { item: format!("namespace {namespace:?}"), message: e })?;
        Ok(SecretStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            cache: std::sync::Mutex::new(None),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError { item: self.describe(), message: message.into() }
    }

    fn remember(&self, secret: Option<Secret>) {
        if let Ok(mut c) = self.cache.lock() {
            *c = Some((secret, Instant::now()));
        }
    }

    async fn read(&self, fresh: bool) -> Result<Option<Secret>, StoreError> {
        if !fresh
            && let Ok(c) = self.cache.lock()
            && let Some((secret, at)) = c.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(secret.clone());
        }
        let secret = self.api.get_opt(&self.name).await.map_err(|e| self.error(format!("cannot read: {e}")))?;
        self.remember(secret.clone());
        Ok(secret)
    }

    async fn data(&self) -> Result<Data, StoreError> {
        Ok(self.read(false).await?.and_then(|s| s.data).unwrap_or_default())
    }

    /// Read-modify-write of the whole data: `edit` changes it and says whether it did (`false`:
    /// nothing is written). Retried on conflicts, so `edit` may run more than once.
    async fn modify(
        &self,
        mut edit: impl FnMut(&mut Data) -> Result<bool, StoreError> + Send,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.read(attempt > 0).await?;
            let mut data = current.as_ref().and_then(|s| s.data.clone()).unwrap_or_default();
            if !edit(&mut data)? {
                return Ok(());
            }
            let size: usize = data.iter().map(|(k, v)| k.len() + v.0.len()).sum();
            if size > MAX_SECRET_DATA {
                return Err(self.error(format!(
                    "would hold {size} bytes, more than the {MAX_SECRET_DATA} a Secret can hold (too many enrolled routers or pending tokens for one Secret)"
                )));
            }
            let result = match current {
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "vrouter-operator".to_owned(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        type_: Some("Opaque".to_owned()),
                        data: Some(data),
                        ..Secret::default()
                    };
                    self.api.create(&PostParams::default(), &secret).await
                }
                Some(mut secret) => {
                    secret.data = Some(data);
                    // Carries metadata.resourceVersion: fails if anyone wrote since the read.
                    self.api.replace(&self.name, &PostParams::default(), &secret).await
                }
            };
            match result {
                Ok(written) => {
                    self.remember(Some(written));
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(secret = %self.describe(), attempt, "conflicting write; reading again");
                }
                Err(e) => return Err(self.error(format!("cannot write: {e}"))),
            }
        }
        Err(self.error(format!("{MAX_ATTEMPTS} conflicting writes in a row; giving up")))
    }

    fn check(&self, name: &str) -> Result<(), StoreError> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(StoreError { item: format!("{}: {name:?}", self.describe()), message: "invalid item name".to_owned() })
        }
    }
}

#[async_trait]
impl PkiStore for SecretStore {
    async fn load(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check(name)?;
        Ok(self.data().await?.remove(name).map(|b| b.0))
    }

    async fn save(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.check(name)?;
        self.modify(|d| {
            d.insert(name.to_owned(), ByteString(data.to_vec()));
            Ok(true)
        })
        .await
    }

    async fn update(
        &self,
        name: &str,
        f: &mut (dyn FnMut(Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StoreError> + Send),
    ) -> Result<(), StoreError> {
        self.check(name)?;
        self.modify(|d| match f(d.get(name).map(|b| b.0.clone()))? {
            Some(new) => {
                d.insert(name.to_owned(), ByteString(new));
                Ok(true)
            }
            None => Ok(false),
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        self.check(name)?;
        let mut existed = false;
        self.modify(|d| {
            existed = d.remove(name).is_some();
            Ok(existed)
        })
        .await?;
        Ok(existed)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.data().await?.into_keys().filter(|k| k.starts_with(prefix) && valid_name(k)).collect())
    }

    fn describe(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.name)
    }

    async fn init(&self, items: &[(&str, Vec<u8>)]) -> Result<bool, StoreError> {
        for (name, _) in items {
            self.check(name)?;
        }
        let mut saved = false;
        self.modify(|d| {
            saved = items.iter().all(|(name, _)| !d.contains_key(*name));
            if saved {
                for (name, data) in items {
                    d.insert((*name).to_owned(), ByteString(data.clone()));
                }
            }
            Ok(saved)
        })
        .await?;
        Ok(saved)
    }
}

#[cfg(test)]
mod tests;
