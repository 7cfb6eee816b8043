use super::*;
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::pem::PemObject;

fn csr_for(identity_hint: &str) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec![identity_hint.to_owned()]).unwrap();
    // A hostile CSR asking to be a CA: must not matter, we only take the key.
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let csr = params.serialize_request(&key).unwrap();
    (key, csr.der().to_vec())
}

async fn pki(dir: &std::path::Path) -> Pki {
    Pki::open(Arc::new(DirStore::new(dir).unwrap()), PkiConfig::default()).await.unwrap()
}

fn cert_der(pem: &str) -> Vec<u8> {
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

#[tokio::test]
async fn enroll_issue_verify_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let id: RouterId = "edge/r1".parse().unwrap();
    let token = p.issue_token(&id, None).await.unwrap();
    assert!(token.starts_with("vrt1."));
    let (_key, csr) = csr_for("ignored");
    let issued = p.enroll(&token, "edge/r1", &csr).await.unwrap();
    assert_eq!(issued.identity, id);
    let der = cert_der(&issued.cert_pem);
    let (got, serial) = p.verify_client(&der).await.unwrap();
    assert_eq!(got, id);
    assert_eq!(serial, issued.serial);
    // The certificate is not a CA even though the CSR asked for it.
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(!cert.is_ca());
    assert!(
        cert.verify_signature(Some(X509Certificate::from_der(&cert_der(p.ca_pem())).unwrap().1.public_key())).is_ok()
    );
    // Token reuse refused.
    let (_k2, csr2) = csr_for("x");
    assert!(matches!(p.enroll(&token, "edge/r1", &csr2).await, Err(EnrollError::TokenUsed(_))));
    // Revocation refuses the certificate.
    assert!(p.revoke(&id).await.unwrap());
    assert!(matches!(p.verify_client(&der).await, Err(AuthError::Revoked { .. })));
}

#[tokio::test]
async fn token_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let a: RouterId = "edge/a".parse().unwrap();
    let (_k, csr) = csr_for("x");
    // Unknown.
    assert!(matches!(p.enroll("vrt1.nope", "edge/a", &csr).await, Err(EnrollError::UnknownToken)));
    // For another identity.
    let t = p.issue_token(&a, None).await.unwrap();
    assert!(matches!(p.enroll(&t, "edge/b", &csr).await, Err(EnrollError::WrongIdentity { .. })));
    // Expired.
    let expired = p.issue_token(&a, Some(Duration::from_secs(0))).await.unwrap();
    assert!(matches!(p.enroll(&expired, "edge/a", &csr).await, Err(EnrollError::TokenExpired(_))));
    // Bad CSR and bad identity.
    assert!(matches!(p.enroll(&t, "edge/a", b"garbage").await, Err(EnrollError::BadCsr(_))));
    assert!(matches!(p.enroll(&t, "not an id", &csr).await, Err(EnrollError::BadIdentity(_))));
    assert!(matches!(p.enroll(&t, "edge/a", &vec![0u8; MAX_CSR_BYTES + 1]).await, Err(EnrollError::BadCsr(_))));
    // The token survived the failed attempts and still works.
    p.enroll(&t, "edge/a", &csr).await.unwrap();
}

#[tokio::test]
async fn rejects_non_p256_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let id: RouterId = "edge/a".parse().unwrap();
    let t = p.issue_token(&id, None).await.unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let csr = CertificateParams::new(vec![]).unwrap().serialize_request(&key).unwrap();
    assert!(matches!(p.enroll(&t, "edge/a", csr.der()).await, Err(EnrollError::UnsupportedKey)));
}

#[tokio::test]
async fn renewal_keeps_previous_until_next() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let id: RouterId = "edge/a".parse().unwrap();
    let t = p.issue_token(&id, None).await.unwrap();
    let first = p.enroll(&t, "edge/a", &csr_for("x").1).await.unwrap();
    let second = p.renew(&id, &first.serial, &csr_for("x").1).await.unwrap();
    assert_ne!(first.serial, second.serial);
    assert!(p.verify_client(&cert_der(&first.cert_pem)).await.is_ok());
    assert!(p.verify_client(&cert_der(&second.cert_pem)).await.is_ok());
    let third = p.renew(&id, &second.serial, &csr_for("x").1).await.unwrap();
    assert!(p.verify_client(&cert_der(&first.cert_pem)).await.is_err());
    assert!(p.verify_client(&cert_der(&third.cert_pem)).await.is_ok());
    // Renewing with an unknown serial is refused.
    assert!(matches!(p.renew(&id, "00", &csr_for("x").1).await, Err(EnrollError::NotEnrolled(_))));
}

#[tokio::test]
async fn persists_and_refuses_partial_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id, token) = {
        let p = pki(tmp.path()).await;
        let id: RouterId = "edge/a".parse().unwrap();
        let token = p.issue_token(&id, None).await.unwrap();
        (p.ca_pem().to_owned(), id, token)
    };
    // Reopened: same CA, token still valid.
    let p = pki(tmp.path()).await;
    assert_eq!(p.ca_pem(), ca);
    let issued = p.enroll(&token, &id.to_string(), &csr_for("x").1).await.unwrap();
    drop(p);
    let p = pki(tmp.path()).await;
    assert!(p.verify_client(&cert_der(&issued.cert_pem)).await.is_ok());
    drop(p);
    // A lost key is an error, never a silent new CA.
    std::fs::remove_file(tmp.path().join("ca.key")).unwrap();
    let err = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), PkiConfig::default()).await.unwrap_err();
    assert!(err.to_string().contains("ca.key is missing"), "{err}");
}

#[tokio::test]
async fn refuses_lost_or_corrupt_state() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let id: RouterId = "edge/a".parse().unwrap();
    let token = p.issue_token(&id, None).await.unwrap();
    let issued = p.enroll(&token, "edge/a", &csr_for("x").1).await.unwrap();
    drop(p);
    // A corrupt router record refuses that router (and says why in the log), nobody else.
    std::fs::write(tmp.path().join("router-edge_a"), b"{not json").unwrap();
    let p = pki(tmp.path()).await;
    assert!(matches!(p.verify_client(&cert_der(&issued.cert_pem)).await, Err(AuthError::Revoked { .. })));
    drop(p);
    // A lost registry while the CA has been in use is an error at start.
    std::fs::remove_file(tmp.path().join("registry")).unwrap();
    let err = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), PkiConfig::default()).await.unwrap_err();
    assert!(err.to_string().contains("registry is missing"), "{err}");
    // A key that does not belong to the certificate.
    std::fs::write(tmp.path().join("registry"), b"x").unwrap();
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(tmp.path().join("ca.key"), other.serialize_pem()).unwrap();
    let err = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), PkiConfig::default()).await.unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[tokio::test]
async fn server_certificate_follows_configured_names() {
    let tmp = tempfile::tempdir().unwrap();
    let first = pki(tmp.path()).await.server_identity().cert_pem.clone();
    assert_eq!(pki(tmp.path()).await.server_identity().cert_pem, first, "kept when unchanged");
    let config = PkiConfig { server_dns_names: vec!["operator.example".into()], ..PkiConfig::default() };
    let p = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), config).await.unwrap();
    assert_ne!(p.server_identity().cert_pem, first, "re-issued for new names");
}

#[tokio::test]
async fn two_processes_share_the_store() {
    // `vrouter-operator token` and a running operator open the same directory.
    let tmp = tempfile::tempdir().unwrap();
    let serving = pki(tmp.path()).await;
    let cli = pki(tmp.path()).await;
    let id: RouterId = "edge/a".parse().unwrap();
    let token = cli.issue_token(&id, None).await.unwrap();
    // The serving process redeems a token it never saw, and its own later writes keep it.
    let other: RouterId = "edge/b".parse().unwrap();
    let t2 = serving.issue_token(&other, None).await.unwrap();
    serving.enroll(&token, "edge/a", &csr_for("x").1).await.unwrap();
    serving.enroll(&t2, "edge/b", &csr_for("x").1).await.unwrap();
    assert_eq!(cli.enrolled().await, ["edge/a", "edge/b"]);
    // A revocation by one process is seen by the other within the cache lifetime.
    cli.revoke(&id).await.unwrap();
    tokio::time::sleep(STATE_CACHE).await;
    assert_eq!(serving.enrolled().await, ["edge/b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enrollments_are_all_verifiable_at_once() {
    // Regressions: (1) a verification cache overwritten by an older state when several
    // enrollments finished together; (2) one serial in 128 started with a zero byte that DER
    // drops, so the certificate's serial did not match the recorded one. With 300 routers
    // either bug refuses someone with near certainty.
    let tmp = tempfile::tempdir().unwrap();
    let p = Arc::new(pki(tmp.path()).await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let id = RouterId::new("edge", format!("r{i}")).unwrap();
            let token = p.issue_token(&id, None).await.unwrap();
            let issued = p.enroll(&token, &id.to_string(), &csr_for("x").1).await.unwrap();
            p.verify_client(&cert_der(&issued.cert_pem)).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(p.enrolled().await.len(), 300);
}

#[tokio::test]
async fn a_retry_with_the_same_key_is_served_again() {
    // The router's first answer was lost: the same token with the same key gets a certificate
    // again; another key with that token does not.
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let id: RouterId = "edge/a".parse().unwrap();
    let token = p.issue_token(&id, None).await.unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::new(vec![]).unwrap().serialize_request(&key).unwrap().der().to_vec();
    let first = p.enroll(&token, "edge/a", &csr).await.unwrap();
    let again = p.enroll(&token, "edge/a", &csr).await.unwrap();
    assert_ne!(first.serial, again.serial);
    assert!(p.verify_client(&cert_der(&again.cert_pem)).await.is_ok());
    assert!(matches!(p.enroll(&token, "edge/a", &csr_for("x").1).await, Err(EnrollError::TokenUsed(_))));
}

#[tokio::test]
async fn a_lost_ca_with_enrolled_routers_is_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path()).await;
    let id: RouterId = "edge/r1".parse().unwrap();
    let token = p.issue_token(&id, None).await.unwrap();
    let (_key, csr) = csr_for("x");
    p.enroll(&token, "edge/r1", &csr).await.unwrap();
    drop(p);
    std::fs::remove_file(tmp.path().join(CA_CERT)).unwrap();
    std::fs::remove_file(tmp.path().join(CA_KEY)).unwrap();
    let err = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), PkiConfig::default()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("ca.crt and ca.key are missing"), "{msg}");
    assert!(msg.contains("router-edge_r1"), "{msg}");
    assert!(!tmp.path().join(CA_CERT).exists(), "a new CA was written");
    // An empty store still starts (first use).
    let fresh = tempfile::tempdir().unwrap();
    pki(fresh.path()).await;
}

/// A PKI config as the operator builds it when `targets` show enrolled routers.
fn with_evidence(targets: &[&str], allow_new_ca: bool) -> PkiConfig {
    PkiConfig {
        enrolled_elsewhere: targets.iter().map(|t| (*t).to_owned()).collect(),
        allow_new_ca,
        ..PkiConfig::default()
    }
}

#[tokio::test]
async fn an_empty_store_with_enrolled_targets_is_refused_not_given_a_new_ca() {
    // The whole store was lost (a deleted Secret): nothing in it, but the cluster's targets
    // show enrolled routers.
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path()).unwrap();
    let described = store.describe();
    let config = with_evidence(&["edge/r1", "edge/r2", "core/r3"], false);
    let err = Pki::open(Arc::new(store), config).await.unwrap_err();
    let PkiError::LostCa(lost) = &err else { panic!("not a lost CA: {err}") };
    assert_eq!(lost.store, described);
    let msg = err.to_string();
    for part in
        [described.as_str(), "3 VRouterTargets", "edge/r1, edge/r2 and 1 more", "--allow-new-ca", "kubectl apply"]
    {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the refusal wrote something");
}

#[tokio::test]
async fn an_allowed_new_ca_is_created_despite_enrolled_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), with_evidence(&["edge/r1"], true)).await.unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join(CA_CERT)).unwrap(), p.ca_pem());
}

#[tokio::test]
async fn records_without_their_ca_are_refused_unless_a_new_ca_is_allowed() {
    // The CA's Secret deleted, the records' bucket Secrets kept: the store shows the routers.
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path()).unwrap();
    store.save("router-edge_r1", b"{}").await.unwrap();
    let err = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), with_evidence(&[], false)).await.err().unwrap();
    assert!(err.to_string().contains("router-edge_r1"), "{err}");
    assert!(!tmp.path().join(CA_CERT).exists(), "a new CA was written");
    // Both kinds of evidence: the targets' refusal (the one published as an Event) is the answer.
    let err = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), with_evidence(&["edge/r1"], false))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PkiError::LostCa(_)), "{err}");
    let p = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), with_evidence(&["edge/r1"], true)).await.unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join(CA_CERT)).unwrap(), p.ca_pem());
}

#[tokio::test]
async fn a_first_start_without_evidence_creates_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), with_evidence(&[], false)).await.unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join(CA_CERT)).unwrap(), p.ca_pem());
}

#[tokio::test]
async fn a_stored_ca_opens_whatever_the_targets_show() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki(tmp.path()).await.ca_pem().to_owned();
    let p = Pki::open(Arc::new(DirStore::new(tmp.path()).unwrap()), with_evidence(&["edge/r1"], false)).await.unwrap();
    assert_eq!(p.ca_pem(), ca, "the stored CA is used");
}

#[tokio::test]
async fn a_deleted_secret_with_enrolled_targets_is_refused_without_writing() {
    // One read finds no Secret; the refusal names it and creates nothing (the mock fails on any
    // further call).
    let (client, api) = crate::mock_api::mock(vec![crate::mock_api::failure(
        "GET",
        "/api/v1/namespaces/sys/secrets/vrouter-pki",
        404,
        "NotFound",
    )]);
    let store = SecretStore::new(client, "sys", "vrouter-pki").unwrap();
    let err = Pki::open(Arc::new(store), with_evidence(&["edge/r1"], false)).await.unwrap_err();
    assert!(err.to_string().starts_with("Secret sys/vrouter-pki holds no CA, but 1 VRouterTarget shows"), "{err}");
    api.await.unwrap();
}
