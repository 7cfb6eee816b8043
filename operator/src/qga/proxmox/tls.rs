//! TLS for the Proxmox API: rustls with ring, trusting the ProxmoxCluster's `caBundle` when it has
//! one, else the system's roots; certificate checks are skipped only with
//! `insecureSkipTLSVerify` and no `caBundle`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Which certificates the client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Certificates signed by one of these PEM CAs (the cluster's `caBundle`).
    CaBundle(String),
    /// Certificates signed by the system's roots.
    System,
    /// Any certificate (`insecureSkipTLSVerify`); signatures are still checked, so the peer
    /// holds the key of the certificate it shows, whoever that is.
    Insecure,
}

impl Trust {
    /// The trust a ProxmoxCluster asks for: its `caBundle` wins over `insecureSkipTLSVerify`.
    pub fn from_spec(ca_bundle: Option<&str>, insecure_skip_verify: bool) -> Self {
        match ca_bundle.map(str::trim).filter(|pem| !pem.is_empty()) {
            Some(pem) => Trust::CaBundle(pem.to_owned()),
            None if insecure_skip_verify => Trust::Insecure,
            None => Trust::System,
        }
    }
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) for `trust`.
pub fn client_config(trust: &Trust) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match trust {
        Trust::CaBundle(pem) => builder.with_root_certificates(ca_roots(pem)?).with_no_client_auth(),
        Trust::System => builder.with_root_certificates(system_roots()).with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth(),
    };
    Ok(config)
}

fn ca_roots(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let cert = cert.map_err(|e| format!("caBundle: certificate {}: {e}", i + 1))?;
        roots.add(cert).map_err(|e| format!("caBundle: certificate {}: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err("caBundle holds no PEM certificate".to_owned());
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not load some system CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            ignored,
            "no system CA certificate found: Proxmox endpoints will not be trusted without a caBundle"
        );
    }
    roots
}

/// Accepts any server certificate (but checks handshake signatures).
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_wins_over_skipping_verification() {
        assert_eq!(Trust::from_spec(Some("PEM"), true), Trust::CaBundle("PEM".into()));
        assert_eq!(Trust::from_spec(Some("  \n"), true), Trust::Insecure);
        assert_eq!(Trust::from_spec(None, true), Trust::Insecure);
        assert_eq!(Trust::from_spec(None, false), Trust::System);
    }

    #[test]
    fn bad_ca_bundles_are_refused_clearly() {
        let err = client_config(&Trust::CaBundle("not a certificate".into())).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err =
            client_config(&Trust::CaBundle("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()))
                .unwrap_err();
        assert!(err.starts_with("caBundle: certificate 1"), "{err}");

        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
        assert!(client_config(&Trust::CaBundle(ca.pem())).is_ok());
        assert!(client_config(&Trust::Insecure).is_ok());
        assert!(client_config(&Trust::System).is_ok());
    }
}
