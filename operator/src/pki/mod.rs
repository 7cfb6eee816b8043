//! The operator's PKI: its CA, the agent endpoint's server certificate, enrollment tokens and
//! the client certificates that carry router identities.
//!
//! - The CA (ECDSA P-256) is created once and persisted through a [`PkiStore`]. If the store has
//!   part of it (a certificate without its key, a key that does not match), the PKI refuses to
//!   start rather than silently creating a new CA, which would cut every router off. An empty
//!   store while the cluster shows enrolled routers (the whole Secret was lost) is refused too,
//!   unless a new CA is explicitly allowed ([`lost_ca`]).
//! - Enrollment tokens are random, single-use, expiring and bound to one router identity; only
//!   their SHA-256 is stored.
//! - Client certificates are issued from a CSR made on the router (its key never leaves it), are
//!   short-lived, and carry the identity as a URI SAN. The PKI remembers which serials it issued
//!   to which identity: revoking an identity (its target was removed) refuses its certificates.

pub mod buckets;
pub mod lost_ca;
pub mod secret;
pub mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateSigningRequestDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use vrouter_proto::RouterId;

pub use buckets::BucketedStore;
pub use lost_ca::LostCa;
pub use secret::SecretStore;
pub use store::{DirStore, PkiStore, REVISION_KEY, StoreError, revision_key};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
/// Marks a PKI that has been in use: with the CA present and this missing, the registry was
/// lost (refuse to start rather than refuse every router later).
const REGISTRY_MARKER: &str = "registry";
/// Item prefixes: one small item per token and per enrolled router, so an enrollment rewrites
/// a few hundred bytes, not the whole fleet's records.
const TOKEN_PREFIX: &str = "token-";
const ROUTER_PREFIX: &str = "router-";

/// Largest CSR accepted.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// PKI settings.
#[derive(Clone, Debug)]
pub struct PkiConfig {
    /// DNS names for the server certificate (the names agents dial).
    pub server_dns_names: Vec<String>,
    /// IP addresses for the server certificate.
    pub server_ips: Vec<IpAddr>,
    /// Lifetime of router client certificates.
    pub client_cert_lifetime: Duration,
    /// Lifetime of the server certificate (re-issued when a third of it is left).
    pub server_cert_lifetime: Duration,
    /// Lifetime of the CA.
    pub ca_lifetime: Duration,
    /// How long an enrollment token stays valid.
    pub token_lifetime: Duration,
    /// Certificates start this long before issuance, tolerating clocks that run behind.
    pub clock_skew: Duration,
    /// Evidence outside the store that routers were enrolled with its CA: `namespace/name` of
    /// targets that show an enrolled router ([`lost_ca::enrolled_targets`]). With none stored, a
    /// new CA is refused while this is not empty, unless `allow_new_ca`.
    pub enrolled_elsewhere: Vec<String>,
    /// Create a new CA even though `enrolled_elsewhere` or the store's own records show enrolled
    /// routers (a deliberate fresh start: every router must re-enroll).
    pub allow_new_ca: bool,
}

impl Default for PkiConfig {
    fn default() -> Self {
        PkiConfig {
            server_dns_names: vec!["localhost".to_owned()],
            server_ips: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])],
            client_cert_lifetime: Duration::from_secs(7 * 24 * 3600),
            server_cert_lifetime: Duration::from_secs(365 * 24 * 3600),
            ca_lifetime: Duration::from_secs(10 * 365 * 24 * 3600),
            token_lifetime: Duration::from_secs(24 * 3600),
            clock_skew: Duration::from_secs(5 * 60),
            enrolled_elsewhere: Vec::new(),
            allow_new_ca: false,
        }
    }
}

/// Why the PKI could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored PKI data is incomplete or corrupt.
    #[error("PKI state in {store} is unusable: {message}")]
    Corrupt {
        /// The store.
        store: String,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// No CA in the store while targets show enrolled routers: the store was lost.
    #[error("{0}")]
    LostCa(LostCa),
}

/// Why an enrollment or renewal was refused. Each refusal is counted by its [`label`](Self::label).
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token was never issued (or has been purged).
    #[error("unknown enrollment token")]
    UnknownToken,
    /// The token was already used.
    #[error("enrollment token already used (at {0})")]
    TokenUsed(String),
    /// The token expired.
    #[error("enrollment token expired at {0}")]
    TokenExpired(String),
    /// The token belongs to another router.
    #[error("enrollment token is not for {requested}")]
    WrongIdentity {
        /// The identity the agent asked for.
        requested: String,
    },
    /// The identity is not a valid router identity.
    #[error("invalid identity: {0}")]
    BadIdentity(String),
    /// The CSR is malformed, badly signed or too large.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// The CSR's key is not ECDSA P-256.
    #[error("unsupported key type in CSR: only ECDSA P-256 is accepted")]
    UnsupportedKey,
    /// The router's identity is not (or no longer) enrolled.
    #[error("{0} is not enrolled (or was revoked)")]
    NotEnrolled(String),
    /// Internal failure.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

impl EnrollError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EnrollError::UnknownToken => "unknown_token",
            EnrollError::TokenUsed(_) => "token_used",
            EnrollError::TokenExpired(_) => "token_expired",
            EnrollError::WrongIdentity { .. } => "wrong_identity",
            EnrollError::BadIdentity(_) => "bad_identity",
            EnrollError::BadCsr(_) => "bad_csr",
            EnrollError::UnsupportedKey => "unsupported_key",
            EnrollError::NotEnrolled(_) => "not_enrolled",
            EnrollError::Pki(_) => "internal",
        }
    }
}

/// Why a client certificate was not accepted on a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No client certificate was presented.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate does not parse or carries no router identity.
    #[error("client certificate carries no router identity: {0}")]
    NoIdentity(String),
    /// The identity is not enrolled, or this certificate was not issued to it (revoked or
    /// replaced).
    #[error("certificate for {identity} is not (or no longer) accepted")]
    Revoked {
        /// The identity in the certificate.
        identity: String,
    },
}

/// A certificate issued to a router.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The identity in the certificate.
    pub identity: RouterId,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The CA bundle, PEM.
    pub ca_pem: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// Serial, hex.
    pub serial: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct TokenRecord {
    identity: String,
    created_at: i64,
    expires_at: i64,
    #[serde(default)]
    used_at: Option<i64>,
    /// SHA-256 of the public key that redeemed the token: a retry with the same key (the
    /// answer to the first attempt was lost) is served again.
    #[serde(default)]
    key_hash: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct IdentityRecord {
    /// Serials (hex) of the certificates currently accepted: the newest, and the one it renewed.
    serials: Vec<String>,
    not_after: i64,
    enrolled_at: i64,
    #[serde(default)]
    renewed_at: Option<i64>,
}

/// The server's certificate and key, PEM.
#[derive(Clone)]
pub struct ServerIdentity {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The operator's PKI.
pub struct Pki {
    store: Arc<dyn PkiStore>,
    config: PkiConfig,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    server: ServerIdentity,
    /// Router records as last read or written, and when; re-read from the store when older than
    /// [`STATE_CACHE`] (another process may have revoked or renewed).
    cache: std::sync::Mutex<std::collections::HashMap<String, (Option<IdentityRecord>, std::time::Instant)>>,
}

/// How long a cached router record is trusted.
const STATE_CACHE: Duration = Duration::from_secs(2);

fn token_item(hash: &str) -> String {
    format!("{TOKEN_PREFIX}{hash}")
}

/// `router-<namespace>_<name>` ([`RouterId::file_name`]).
fn router_item(id: &RouterId) -> String {
    format!("{ROUTER_PREFIX}{}", id.file_name())
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("store", &self.store.describe()).finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out[..]);
    out
}

fn corrupt(store: &dyn PkiStore, message: impl Into<String>) -> PkiError {
    PkiError::Corrupt { store: store.describe(), message: message.into() }
}

fn utf8(store: &dyn PkiStore, name: &str, data: Vec<u8>) -> Result<String, PkiError> {
    String::from_utf8(data).map_err(|_| corrupt(store, format!("{name} is not text")))
}

impl Pki {
    /// Opens the PKI in `store`, creating the CA on first use, and (re-)issuing the server
    /// certificate when it is missing, expiring, from another CA, or for other names.
    pub async fn open(store: Arc<dyn PkiStore>, config: PkiConfig) -> Result<Pki, PkiError> {
        let s = store.as_ref();
        let (ca_pem, issuer) = match load_ca(s).await? {
            Some(ca) => ca,
            None => {
                // The targets' evidence first: its refusal says what to do, and is published
                // as an Event (the records may outlive the CA: they live in bucket Secrets).
                refuse_lost_store(s, &config)?;
                if config.allow_new_ca {
                    tracing::warn!(store = %s.describe(), "creating a new CA (--allow-new-ca): records of routers \
                        enrolled with the old one are stale until each re-enrolls");
                } else {
                    refuse_lost_ca(s).await?;
                }
                let (cert_pem, key_pem, issuer) = create_ca(&config)?;
                // Both or neither, and only if absent: another replica starting at the same
                // time may win, and then its CA is the one.
                let items = [(CA_KEY, key_pem.into_bytes()), (CA_CERT, cert_pem.clone().into_bytes())];
                if s.init(&items).await? {
                    tracing::info!(store = %s.describe(), "created a new operator CA");
                    (cert_pem, issuer)
                } else {
                    tracing::info!(store = %s.describe(), "another process created the CA first; using it");
                    load_ca(s).await?.ok_or_else(|| corrupt(s, "the CA was created elsewhere but cannot be read"))?
                }
            }
        };
        if s.load(REGISTRY_MARKER).await?.is_none() {
            if s.load(SERVER_CERT).await?.is_some() {
                // A CA that issued certificates but lost its registry would refuse every router;
                // say so instead of starting empty.
                return Err(corrupt(
                    s,
                    format!("{REGISTRY_MARKER} is missing while the CA has been in use; restore the PKI state"),
                ));
            }
            s.save(REGISTRY_MARKER, b"vrouter pki registry v1\n").await?;
        }
        let server = load_or_issue_server(s, &config, &ca_pem, &issuer).await?;
        let pki = Pki { store, config, ca_pem, issuer, server, cache: std::sync::Mutex::new(Default::default()) };
        pki.purge_tokens().await;
        Ok(pki)
    }

    /// The CA certificate agents must trust, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate and key for the agent endpoint.
    pub fn server_identity(&self) -> &ServerIdentity {
        &self.server
    }

    /// The settings.
    pub fn config(&self) -> &PkiConfig {
        &self.config
    }

    /// Issues a server certificate for other endpoints of the operator (the admission webhook),
    /// valid for `lifetime`; not stored.
    /// Names that are IP addresses become IP SANs (a webhook reached by `url: https://127.0.0.1:…`).
    pub fn issue_server_cert(&self, names: &[String], lifetime: Duration) -> Result<ServerIdentity, PkiError> {
        let (ips, dns): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
        let ips: Vec<IpAddr> = ips.iter().filter_map(|n| n.parse().ok()).collect();
        let dns: Vec<String> = dns.into_iter().cloned().collect();
        issue_server(&self.issuer, &dns, &ips, lifetime, self.config.clock_skew)
    }

    /// Read-modify-write of one JSON item through the store (safe against other processes
    /// using it). `f` gets the current record (if any) and returns the new one (`None`: delete
    /// nothing, write nothing) and a result. `f` may run more than once.
    async fn update_item<T, R>(
        &self,
        item: &str,
        mut f: impl FnMut(Option<T>) -> Result<(Option<T>, R), EnrollError> + Send,
    ) -> Result<R, EnrollError>
    where
        T: Serialize + for<'de> Deserialize<'de> + Send,
        R: Send,
    {
        let mut outcome: Option<Result<R, EnrollError>> = None;
        let describe = self.store.describe();
        self.store
            .update(item, &mut |current: Option<Vec<u8>>| {
                let record: Option<T> = match current {
                    Some(data) => Some(serde_json::from_slice(&data).map_err(|e| StoreError {
                        item: format!("{describe}: {item}"),
                        message: format!("corrupt: {e}"),
                    })?),
                    None => None,
                };
                match f(record) {
                    Ok((next, r)) => {
                        outcome = Some(Ok(r));
                        match next {
                            Some(n) => Ok(Some(
                                serde_json::to_vec(&n)
                                    .map_err(|e| StoreError { item: item.to_owned(), message: e.to_string() })?,
                            )),
                            None => Ok(None),
                        }
                    }
                    Err(e) => {
                        outcome = Some(Err(e));
                        Ok(None)
                    }
                }
            })
            .await
            .map_err(|e| EnrollError::Pki(PkiError::Store(e)))?;
        outcome.unwrap_or_else(|| {
            Err(EnrollError::Pki(corrupt(self.store.as_ref(), format!("{item}: update did not run"))))
        })
    }

    fn cache_router(&self, id: &RouterId, record: Option<IdentityRecord>) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id.to_string(), (record, std::time::Instant::now()));
        }
    }

    /// A router's record, from the cache if fresh.
    async fn router_record(&self, id: &RouterId) -> Result<Option<IdentityRecord>, PkiError> {
        if let Ok(c) = self.cache.lock()
            && let Some((record, at)) = c.get(&id.to_string())
            && at.elapsed() < STATE_CACHE
        {
            return Ok(record.clone());
        }
        let record = match self.store.load(&router_item(id)).await? {
            Some(data) => Some(
                serde_json::from_slice::<IdentityRecord>(&data)
                    .map_err(|e| corrupt(self.store.as_ref(), format!("{}: {e}", router_item(id))))?,
            ),
            None => None,
        };
        self.cache_router(id, record.clone());
        Ok(record)
    }

    /// Deletes expired token records (kept a day past expiry, so a late retry gets a clear
    /// message instead of "unknown").
    async fn purge_tokens(&self) {
        let Ok(items) = self.store.list(TOKEN_PREFIX).await else { return };
        let limit = now().unix_timestamp() - 24 * 3600;
        for item in items {
            if let Ok(Some(data)) = self.store.load(&item).await
                && serde_json::from_slice::<TokenRecord>(&data).is_ok_and(|t| t.expires_at < limit)
            {
                let _ = self.store.delete(&item).await;
            }
        }
    }

    /// Issues a single-use enrollment token for a router. Only its hash is stored; the token
    /// itself is returned once.
    pub async fn issue_token(&self, identity: &RouterId, lifetime: Option<Duration>) -> Result<String, PkiError> {
        let token = format!("vrt1.{}", base64_url(&random_bytes::<32>()));
        let created = now().unix_timestamp();
        let lifetime = lifetime.unwrap_or(self.config.token_lifetime);
        let record = TokenRecord {
            identity: identity.to_string(),
            created_at: created,
            expires_at: created.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            used_at: None,
            key_hash: None,
        };
        let data = serde_json::to_vec(&record).map_err(|e| corrupt(self.store.as_ref(), e.to_string()))?;
        self.store.save(&token_item(&sha256_hex(token.as_bytes())), &data).await?;
        Ok(token)
    }

    /// Redeems a token for a client certificate.
    pub async fn enroll(&self, token: &str, identity: &str, csr_der: &[u8]) -> Result<IssuedCert, EnrollError> {
        let requested: RouterId =
            identity.parse().map_err(|e: vrouter_proto::IdentityError| EnrollError::BadIdentity(e.0))?;
        let public_key = parse_csr(csr_der)?;
        let key_hash = sha256_hex(public_key.der_bytes());
        let item = token_item(&sha256_hex(token.as_bytes()));
        // 1. Claim the token (or recognise a retry with the same key).
        self.update_item::<TokenRecord, ()>(&item, |current| {
            let mut record = current.ok_or(EnrollError::UnknownToken)?;
            let at = now().unix_timestamp();
            if let Some(used) = record.used_at {
                // The same key again: the router never got the first answer. Serve it again.
                if record.key_hash.as_deref() != Some(key_hash.as_str()) {
                    return Err(EnrollError::TokenUsed(format_time(used)));
                }
            }
            if record.expires_at <= at {
                return Err(EnrollError::TokenExpired(format_time(record.expires_at)));
            }
            if record.identity != requested.to_string() {
                return Err(EnrollError::WrongIdentity { requested: requested.to_string() });
            }
            record.used_at = record.used_at.or(Some(at));
            record.key_hash = Some(key_hash.clone());
            Ok((Some(record), ()))
        })
        .await?;
        // 2. Issue and record. A crash in between is harmless: the retry with the same key
        //    passes step 1 and lands here again.
        let issued = self.issue_client(&requested, &public_key).map_err(|e| EnrollError::Pki(e.into()))?;
        let at = now().unix_timestamp();
        let record = IdentityRecord {
            serials: vec![issued.serial.clone()],
            not_after: issued.not_after,
            enrolled_at: at,
            renewed_at: None,
        };
        let data =
            serde_json::to_vec(&record).map_err(|e| EnrollError::Pki(corrupt(self.store.as_ref(), e.to_string())))?;
        self.store.save(&router_item(&requested), &data).await.map_err(|e| EnrollError::Pki(e.into()))?;
        self.cache_router(&requested, Some(record));
        Ok(issued)
    }

    /// Issues a fresh certificate to an authenticated router (renewal over the stream). The
    /// presented certificate stays valid until it expires; older ones are dropped.
    pub async fn renew(
        &self,
        identity: &RouterId,
        presented_serial: &str,
        csr_der: &[u8],
    ) -> Result<IssuedCert, EnrollError> {
        let public_key = parse_csr(csr_der)?;
        let key = identity.to_string();
        let (issued, record) = self
            .update_item::<IdentityRecord, (IssuedCert, IdentityRecord)>(&router_item(identity), |current| {
                let mut record = current.ok_or_else(|| EnrollError::NotEnrolled(key.clone()))?;
                if !record.serials.iter().any(|s| s == presented_serial) {
                    return Err(EnrollError::NotEnrolled(key.clone()));
                }
                let issued = self.issue_client(identity, &public_key).map_err(|e| EnrollError::Pki(e.into()))?;
                record.serials = vec![issued.serial.clone(), presented_serial.to_owned()];
                record.not_after = issued.not_after;
                record.renewed_at = Some(now().unix_timestamp());
                Ok((Some(record.clone()), (issued, record)))
            })
            .await?;
        self.cache_router(identity, Some(record));
        Ok(issued)
    }

    /// Removes a router's identity: its certificates are refused from now on, and its unused
    /// tokens are withdrawn.
    pub async fn revoke(&self, identity: &RouterId) -> Result<bool, PkiError> {
        let existed = self.store.delete(&router_item(identity)).await?;
        self.cache_router(identity, None);
        for item in self.store.list(TOKEN_PREFIX).await? {
            if let Some(data) = self.store.load(&item).await?
                && serde_json::from_slice::<TokenRecord>(&data).is_ok_and(|t| t.identity == identity.to_string())
            {
                self.store.delete(&item).await?;
            }
        }
        Ok(existed)
    }

    /// Identities currently enrolled.
    pub async fn enrolled(&self) -> Vec<String> {
        let Ok(items) = self.store.list(ROUTER_PREFIX).await else { return Vec::new() };
        let mut out: Vec<String> = items
            .iter()
            .filter_map(|i| i.strip_prefix(ROUTER_PREFIX))
            .filter_map(|rest| rest.split_once('_'))
            .map(|(ns, name)| format!("{ns}/{name}"))
            .collect();
        out.sort();
        out
    }

    /// Checks a client certificate presented on a stream (its chain was verified by TLS):
    /// returns the router identity and the certificate's serial.
    pub async fn verify_client(&self, cert_der: &[u8]) -> Result<(RouterId, String), AuthError> {
        let (identity, serial) = identity_of(cert_der)?;
        match self.router_record(&identity).await {
            Ok(Some(record)) if record.serials.contains(&serial) => Ok((identity, serial)),
            Ok(_) => Err(AuthError::Revoked { identity: identity.to_string() }),
            Err(e) => {
                tracing::error!(router = %identity, error = %e, "cannot read the router's enrollment record");
                Err(AuthError::Revoked { identity: identity.to_string() })
            }
        }
    }

    fn issue_client(&self, identity: &RouterId, public_key: &impl PublicKeyData) -> Result<IssuedCert, rcgen::Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "vrouter");
        dn.push(DnType::CommonName, identity.to_string());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let start = now();
        params.not_before = start - self.config.clock_skew;
        params.not_after = start + self.config.client_cert_lifetime;
        params.serial_number = Some(new_serial());
        let cert = params.signed_by(public_key, &self.issuer)?;
        // Record the serial exactly as verification will read it back from the certificate.
        let (_, serial) = identity_of(cert.der()).map_err(|e| rcgen::Error::X509(e.to_string()))?;
        Ok(IssuedCert {
            identity: identity.clone(),
            cert_pem: cert.pem(),
            ca_pem: self.ca_pem.clone(),
            not_after: params.not_after.unix_timestamp(),
            serial,
        })
    }
}

/// A random positive 128-bit serial whose first byte is never zero (DER would drop it, and
/// the serial read back from the certificate would differ from the one generated).
fn new_serial() -> SerialNumber {
    let mut serial = random_bytes::<16>();
    serial[0] = (serial[0] & 0x7f).max(1);
    SerialNumber::from_slice(&serial)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_csr(csr_der: &[u8]) -> Result<rcgen::PublicKey, EnrollError> {
    if csr_der.len() > MAX_CSR_BYTES {
        return Err(EnrollError::BadCsr(format!("{} bytes, more than {MAX_CSR_BYTES}", csr_der.len())));
    }
    let der = CertificateSigningRequestDer::from(csr_der);
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| EnrollError::BadCsr(e.to_string()))?;
    if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err(EnrollError::UnsupportedKey);
    }
    // Only the key is taken from the CSR; everything else in the certificate is ours.
    Ok(csr.public_key)
}

/// Reads the router identity and serial (hex) from a client certificate.
pub fn identity_of(cert_der: &[u8]) -> Result<(RouterId, String), AuthError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| AuthError::NoIdentity(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| AuthError::NoIdentity(e.to_string()))?
        .ok_or_else(|| AuthError::NoIdentity("no subject alternative name".to_owned()))?;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && let Ok(id) = RouterId::from_uri(uri)
        {
            if found.is_some() {
                return Err(AuthError::NoIdentity("more than one router identity".to_owned()));
            }
            found = Some(id);
        }
    }
    let identity = found.ok_or_else(|| AuthError::NoIdentity("no vrouter identity URI".to_owned()))?;
    Ok((identity, hex(cert.raw_serial())))
}

/// The stored CA, `None` if there is none; an error if only half of it is there or the key
/// does not match.
async fn load_ca(s: &dyn PkiStore) -> Result<Option<(String, Issuer<'static, KeyPair>)>, PkiError> {
    match (s.load(CA_CERT).await?, s.load(CA_KEY).await?) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let cert = utf8(s, CA_CERT, cert)?;
            let key = utf8(s, CA_KEY, key)?;
            let key_pair = KeyPair::from_pem(&key).map_err(|e| corrupt(s, format!("{CA_KEY}: {e}")))?;
            check_key_matches(s, &cert, &key_pair)?;
            let issuer =
                Issuer::from_ca_cert_pem(&cert, key_pair).map_err(|e| corrupt(s, format!("{CA_CERT}: {e}")))?;
            Ok(Some((cert, issuer)))
        }
        (Some(_), None) => Err(corrupt(
            s,
            format!(
                "{CA_CERT} exists but {CA_KEY} is missing; restore it (a new CA would cut off every enrolled router)"
            ),
        )),
        (None, Some(_)) => Err(corrupt(s, format!("{CA_KEY} exists but {CA_CERT} is missing; restore it"))),
    }
}

/// Whether `store` holds a CA certificate: only a store without one needs the evidence of
/// [`lost_ca::enrolled_targets`] before [`Pki::open`].
pub async fn has_ca(store: &dyn PkiStore) -> Result<bool, StoreError> {
    Ok(store.load(CA_CERT).await?.is_some())
}

/// No CA in the store, and it shows no earlier use: a new CA is still refused while targets
/// elsewhere show enrolled routers (the whole store was lost), unless the configuration allows
/// it, which is logged.
fn refuse_lost_store(s: &dyn PkiStore, config: &PkiConfig) -> Result<(), PkiError> {
    let enrolled = &config.enrolled_elsewhere;
    let Some(example) = enrolled.first() else { return Ok(()) };
    if !config.allow_new_ca {
        return Err(PkiError::LostCa(LostCa { store: s.describe(), enrolled: enrolled.clone() }));
    }
    tracing::warn!(
        store = %s.describe(),
        targets = enrolled.len(),
        %example,
        "creating a new CA although {} VRouterTarget(s) show enrolled routers (--allow-new-ca): every router \
         must re-enroll (kubectl vrouter enroll <target>)",
        enrolled.len()
    );
    Ok(())
}

/// No CA in the store: fine on first use, but a store that has enrolled routers (or whose
/// registry says it has been in use) lost its CA. A new CA would silently cut off, and force
/// the re-enrollment of, every router: refuse instead, naming what is missing.
async fn refuse_lost_ca(s: &dyn PkiStore) -> Result<(), PkiError> {
    let routers = s.list(ROUTER_PREFIX).await?;
    let in_use = s.load(REGISTRY_MARKER).await?.is_some() || s.load(SERVER_CERT).await?.is_some();
    if routers.is_empty() && !in_use {
        return Ok(());
    }
    let evidence = match routers.first() {
        Some(first) => format!("{} enrolled router record(s) such as {first}", routers.len()),
        None => format!("{REGISTRY_MARKER} or {SERVER_CERT} from an earlier start"),
    };
    Err(corrupt(
        s,
        format!(
            "{CA_CERT} and {CA_KEY} are missing but the store has {evidence}; restore the CA (a new CA would cut off \
             every enrolled router and force each to re-enroll)"
        ),
    ))
}

fn create_ca(config: &PkiConfig) -> Result<(String, String, Issuer<'static, KeyPair>), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vrouter");
    dn.push(DnType::CommonName, "vrouter operator CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let start = now();
    params.not_before = start - config.clock_skew;
    params.not_after = start + config.ca_lifetime;
    params.serial_number = Some(new_serial());
    let cert = params.self_signed(&key)?;
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    Ok((cert_pem, key_pem, Issuer::new(params, key)))
}

fn check_key_matches(store: &dyn PkiStore, cert_pem: &str, key: &KeyPair) -> Result<(), PkiError> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| corrupt(store, format!("{CA_CERT}: {e}")))?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| corrupt(store, format!("{CA_CERT}: {e}")))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(corrupt(store, format!("{CA_KEY} does not belong to {CA_CERT}")));
    }
    Ok(())
}

async fn load_or_issue_server(
    store: &dyn PkiStore,
    config: &PkiConfig,
    ca_pem: &str,
    issuer: &Issuer<'static, KeyPair>,
) -> Result<ServerIdentity, PkiError> {
    if let (Some(cert), Some(key)) = (store.load(SERVER_CERT).await?, store.load(SERVER_KEY).await?) {
        let cert = utf8(store, SERVER_CERT, cert)?;
        let key = utf8(store, SERVER_KEY, key)?;
        if server_cert_current(&cert, &key, ca_pem, config) {
            return Ok(ServerIdentity { cert_pem: cert, key_pem: key });
        }
        tracing::info!("re-issuing the server certificate (expiring, other names, or another CA)");
    }
    let identity = issue_server(
        issuer,
        &config.server_dns_names,
        &config.server_ips,
        config.server_cert_lifetime,
        config.clock_skew,
    )?;
    store.save(SERVER_KEY, identity.key_pem.as_bytes()).await?;
    store.save(SERVER_CERT, identity.cert_pem.as_bytes()).await?;
    Ok(identity)
}

/// A server certificate for `dns_names` and `ips`, signed by the CA.
fn issue_server(
    issuer: &Issuer<'static, KeyPair>,
    dns_names: &[String],
    ips: &[IpAddr],
    lifetime: Duration,
    clock_skew: Duration,
) -> Result<ServerIdentity, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vrouter");
    dn.push(DnType::CommonName, "vrouter operator");
    params.distinguished_name = dn;
    for name in dns_names {
        params.subject_alt_names.push(SanType::DnsName(name.clone().try_into()?));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let start = now();
    params.not_before = start - clock_skew;
    params.not_after = start + lifetime;
    params.serial_number = Some(new_serial());
    let cert = params.signed_by(&key, issuer)?;
    Ok(ServerIdentity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Whether a stored server certificate can be kept: signed by this CA, for exactly the
/// configured names, more than a third of its lifetime left, and matching its key.
fn server_cert_current(cert_pem: &str, key_pem: &str, ca_pem: &str, config: &PkiConfig) -> bool {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (Ok(der), Ok(ca_der)) = (
        rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()),
        rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()),
    ) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(&der), X509Certificate::from_der(&ca_der)) else {
        return false;
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return false;
    }
    let Ok(key) = KeyPair::from_pem(key_pem) else { return false };
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return false;
    }
    let remaining = cert.validity().not_after.timestamp() - now().unix_timestamp();
    if remaining < i64::try_from(config.server_cert_lifetime.as_secs() / 3).unwrap_or(i64::MAX) {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
    let mut dns: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default())),
                16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default())),
                _ => return false,
            },
            _ => {}
        }
    }
    let mut want_dns = config.server_dns_names.clone();
    let mut want_ips = config.server_ips.clone();
    dns.sort();
    want_dns.sort();
    ips.sort();
    want_ips.sort();
    dns == want_dns && ips == want_ips
}

#[cfg(test)]
mod tests;
