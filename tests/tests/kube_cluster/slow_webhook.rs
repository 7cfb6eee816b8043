//! A validating admission webhook served by the test (HTTPS on loopback, a self-signed
//! certificate from rcgen) that holds its first reviews for a while before allowing them: a
//! request stuck in admission, for provoking what only timing provokes on a real API server (a
//! priority level's seat held, a write overtaken by another one).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// The webhook: every review is allowed, the first `holds` after `hold`. Dry-run reviews are
/// answered at once and only counted ([`SlowWebhook::probes`]): a test's way to learn the API
/// server calls the webhook, without spending a hold.
pub struct SlowWebhook {
    /// Its loopback port.
    pub port: u16,
    ca_pem: String,
    /// The reviews' operations and objects' names, in arrival order.
    names: Arc<Mutex<Vec<(String, String)>>>,
    received: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
}

impl SlowWebhook {
    /// Serves reviews, holding the first `holds` of them for `hold` each.
    pub fn start(hold: Duration, holds: usize) -> SlowWebhook {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let tls = Arc::new(tls);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let probes = Arc::new(AtomicUsize::new(0));
        let (seen, seen_names, probed) = (received.clone(), names.clone(), probes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (tls, seen, seen_names, probed) = (tls.clone(), seen.clone(), seen_names.clone(), probed.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(tls) else { return };
                    let mut s = rustls::StreamOwned::new(conn, stream);
                    let Some(body) = read_request(&mut s) else { return };
                    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if review["request"]["dryRun"] == true {
                        probed.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let field = |f: &str| review["request"][f].as_str().unwrap_or_default().to_owned();
                        seen_names.lock().unwrap().push((field("operation"), field("name")));
                        if seen.fetch_add(1, Ordering::SeqCst) < holds {
                            std::thread::sleep(hold);
                        }
                    }
                    let answer = serde_json::json!({
                        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": true},
                    })
                    .to_string();
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = s.flush();
                });
            }
        });
        SlowWebhook { port, ca_pem, names, received, probes }
    }

    /// Dry-run reviews received so far.
    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    /// Reviews (not dry-run) received so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// The operation and object name of review `i` (0-based), once it arrived.
    pub fn review(&self, i: usize) -> Option<(String, String)> {
        self.names.lock().unwrap().get(i).cloned()
    }

    /// The `clientConfig` of a ValidatingWebhookConfiguration pointing here, as YAML flow.
    pub fn client_config(&self) -> String {
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!("{{url: \"https://127.0.0.1:{}/hold\", caBundle: {ca_bundle}}}", self.port)
    }
}

/// One HTTP/1.1 request's body (by its Content-Length).
fn read_request(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}
