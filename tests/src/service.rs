//! A stand-in for a Kubernetes Service on loopback. No kubelet or kube-proxy runs here (the
//! operator replicas are plain processes), so a test gives each Service a [`Service`]: a TCP
//! listener that sends each new connection to the first of its current backends that accepts,
//! as kube-proxy sends it to a ready endpoint. Established connections stay where they are, as
//! with conntrack. [`follow_label`] keeps a Service's backends on the pods that carry a label,
//! as the endpoints controller does (the agent Service selects the leader label).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A loopback Service with a changing set of backend ports.
pub struct Service {
    port: u16,
    backends: Arc<Mutex<Vec<u16>>>,
    shutdown: CancellationToken,
}

impl Service {
    /// Listens on a free loopback port, with no backends yet (connections are closed).
    pub async fn start() -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the Service port");
        let port = listener.local_addr().expect("local address").port();
        let backends: Arc<Mutex<Vec<u16>>> = Arc::default();
        let shutdown = CancellationToken::new();
        let (b, s) = (backends.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let ports = b.lock().map(|p| p.clone()).unwrap_or_default();
                let s = s.clone();
                tokio::spawn(async move {
                    for port in ports {
                        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                            let mut client = client;
                            tokio::select! {
                                _ = s.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                            return;
                        }
                    }
                    // No endpoint accepts: the connection is closed, as with no ready endpoints.
                });
            }
        });
        Service { port, backends, shutdown }
    }

    /// The Service's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the backends (tried in order for each new connection).
    pub fn set_backends(&self, ports: &[u16]) {
        if let Ok(mut b) = self.backends.lock() {
            *b = ports.to_vec();
        }
    }

    /// The current backends.
    pub fn backends(&self) -> Vec<u16> {
        self.backends.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Keeps `service`'s backends on the pods of `namespace` that carry `label=true`: every
/// `period`, lists them (kubectl, as `kubeconfig`) and maps their names through `ports`. Stops
/// when the returned token is cancelled or dropped with the Service.
pub fn follow_label(
    service: &Service,
    kubeconfig: PathBuf,
    namespace: &str,
    label: &str,
    ports: BTreeMap<String, u16>,
    period: Duration,
) -> CancellationToken {
    let stop = service.shutdown.child_token();
    let (backends, namespace, selector, s) =
        (service.backends.clone(), namespace.to_owned(), format!("{label}=true"), stop.clone());
    tokio::spawn(async move {
        loop {
            let out = tokio::process::Command::new("kubectl")
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["-n", &namespace, "get", "pods", "-l", &selector, "-o", "name"])
                .output()
                .await;
            // A failed listing keeps the last endpoints, as the endpoints controller does.
            if let Ok(out) = out
                && out.status.success()
            {
                let ready: Vec<u16> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| ports.get(l.trim().trim_start_matches("pod/")).copied())
                    .collect();
                if let Ok(mut b) = backends.lock() {
                    *b = ready;
                }
            }
            tokio::select! {
                _ = s.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    });
    stop
}
