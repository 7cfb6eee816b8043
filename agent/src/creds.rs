//! The agent's key and certificate.
//!
//! The private key is generated on the router (ECDSA P-256) and never leaves it: enrollment and
//! renewal send a CSR. Key and certificate live together in `identity.pem` (mode 0600) so that a
//! renewal replaces both in one atomic rename; `ca.pem` holds the CA bundle to trust.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::pem::PemObject;
use vrouter_proto::RouterId;

/// A credentials problem.
#[derive(Debug, thiserror::Error)]
#[error("credentials in {path}: {message}")]
pub struct CredsError {
    /// The file or directory.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The agent's current key and certificate.
#[derive(Clone)]
pub struct Loaded {
    /// Private key, PEM.
    pub key_pem: String,
    /// Certificate, PEM.
    pub cert_pem: String,
    /// CA bundle, PEM.
    pub ca_pem: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl Loaded {
    /// Whether the certificate should be renewed: less than a third of its lifetime left.
    pub fn needs_renewal(&self, now: i64) -> bool {
        let lifetime = (self.not_after - self.not_before).max(1);
        self.not_after - now < lifetime / 3
    }

    /// Whether it has expired.
    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }

    /// How long until renewal is due.
    pub fn renewal_due_in(&self, now: i64) -> Duration {
        let lifetime = (self.not_after - self.not_before).max(1);
        let due = self.not_after - lifetime / 3;
        Duration::from_secs(u64::try_from(due - now).unwrap_or(0))
    }
}

/// A fresh key with its CSR.
pub struct Request {
    /// The new private key, PEM.
    pub key_pem: String,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The credentials directory.
#[derive(Debug, Clone)]
pub struct Creds {
    dir: PathBuf,
}

impl Creds {
    /// Credentials in `dir` (created with mode 0700 when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Creds { dir: dir.into() }
    }

    fn err(&self, file: &str, message: impl Into<String>) -> CredsError {
        CredsError { path: self.dir.join(file).display().to_string(), message: message.into() }
    }

    /// A new key and a CSR for `id` (the operator decides what goes into the certificate).
    pub fn request(id: &RouterId) -> Result<Request, CredsError> {
        let wrap = |e: rcgen::Error| CredsError { path: "<new key>".to_owned(), message: e.to_string() };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(wrap)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.to_string());
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key).map_err(wrap)?;
        Ok(Request { key_pem: key.serialize_pem(), csr_der: csr.der().to_vec() })
    }

    /// A key and CSR for enrollment. The key is kept in `pending-key.pem` until the
    /// certificate is stored, so a retry after a lost answer presents the same key (and the
    /// operator can serve the answer again).
    pub fn enrollment_request(&self, id: &RouterId) -> Result<Request, CredsError> {
        let path = self.dir.join("pending-key.pem");
        if let Ok(key_pem) = std::fs::read_to_string(&path)
            && let Ok(key) = KeyPair::from_pem(&key_pem)
        {
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, id.to_string());
            params.distinguished_name = dn;
            let csr = params.serialize_request(&key).map_err(|e| self.err("pending-key.pem", e.to_string()))?;
            return Ok(Request { key_pem, csr_der: csr.der().to_vec() });
        }
        let request = Creds::request(id)?;
        create_private_dir(&self.dir).map_err(|e| self.err("", e.to_string()))?;
        write_atomic(&path, request.key_pem.as_bytes(), 0o600)
            .map_err(|e| self.err("pending-key.pem", e.to_string()))?;
        Ok(request)
    }

    /// Forgets the pending enrollment key (after the certificate was stored).
    pub fn clear_pending(&self) {
        let _ = std::fs::remove_file(self.dir.join("pending-key.pem"));
    }

    /// Records the hash of a spent token.
    pub fn mark_token_spent(&self, token: &str) {
        let _ = write_atomic(&self.dir.join("spent-token.sha256"), token_hash(token).as_bytes(), 0o600);
    }

    /// Whether this token was already spent by this agent.
    pub fn token_spent(&self, token: &str) -> bool {
        std::fs::read_to_string(self.dir.join("spent-token.sha256")).is_ok_and(|h| h.trim() == token_hash(token))
    }

    /// Loads the key, certificate and CA bundle; `Ok(None)` when the router has not enrolled.
    pub fn load(&self) -> Result<Option<Loaded>, CredsError> {
        let identity = match std::fs::read_to_string(self.dir.join("identity.pem")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("identity.pem", e.to_string())),
        };
        let ca_pem = std::fs::read_to_string(self.dir.join("ca.pem")).map_err(|e| self.err("ca.pem", e.to_string()))?;
        let key_pem = extract(&identity, "PRIVATE KEY").ok_or_else(|| self.err("identity.pem", "no private key"))?;
        let cert_pem = extract(&identity, "CERTIFICATE").ok_or_else(|| self.err("identity.pem", "no certificate"))?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| self.err("identity.pem", e.to_string()))?;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| self.err("identity.pem", e.to_string()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| self.err("identity.pem", e.to_string()))?;
        use rcgen::PublicKeyData;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(self.err("identity.pem", "the certificate does not belong to the key"));
        }
        Ok(Some(Loaded {
            key_pem,
            cert_pem,
            ca_pem,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        }))
    }

    /// Stores a key with its certificate, and the CA bundle.
    pub fn store(&self, key_pem: &str, cert_pem: &str, ca_pem: &str) -> Result<(), CredsError> {
        create_private_dir(&self.dir).map_err(|e| self.err("", e.to_string()))?;
        let mut identity = String::new();
        identity.push_str(key_pem.trim_end());
        identity.push('\n');
        identity.push_str(cert_pem.trim_end());
        identity.push('\n');
        write_atomic(&self.dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)
            .map_err(|e| self.err("ca.pem", e.to_string()))?;
        write_atomic(&self.dir.join("identity.pem"), identity.as_bytes(), 0o600)
            .map_err(|e| self.err("identity.pem", e.to_string()))
    }
}

fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The first PEM block of a given label (a label ending in `PRIVATE KEY` matches any key type).
fn extract(text: &str, label: &str) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if !inside && line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&format!("{label}-----")) {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("-----END ") {
                return Some(out);
            }
        }
    }
    None
}

/// Creates a directory (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes a file atomically (temporary file, rename) without syncing to disk: readers and
/// crashed processes never see a partial file, but a power loss may lose the last write.
pub fn write_replace(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    write_file(path, data, mode, false)
}

/// Writes a file atomically and durably: a temporary file in the same directory, fsync,
/// rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    write_file(path, data, mode, true)
}

fn write_file(path: &Path, data: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if durable && let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_missing() {
        let id: RouterId = "a/b".parse().unwrap();
        let r = Creds::request(&id).unwrap();
        assert!(r.key_pem.contains("PRIVATE KEY"));
        assert!(!r.csr_der.is_empty());
        let tmp = tempfile::tempdir().unwrap();
        assert!(Creds::new(tmp.path()).load().unwrap().is_none());
    }

    #[test]
    fn renewal_window() {
        let l = Loaded {
            key_pem: String::new(),
            cert_pem: String::new(),
            ca_pem: String::new(),
            not_before: 0,
            not_after: 300,
        };
        assert!(!l.needs_renewal(150));
        assert!(l.needs_renewal(201));
        assert!(l.expired(300));
        assert_eq!(l.renewal_due_in(100), Duration::from_secs(100));
    }
}
