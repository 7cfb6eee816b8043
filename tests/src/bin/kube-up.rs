//! `kube-up`: a private Kubernetes control plane on this machine, to try the operator with kubectl
//! and Helm without Docker or a kubelet: etcd, kube-apiserver and kube-controller-manager on
//! loopback (the same harness the tests use), with the vrouter CRDs installed. Prints the
//! KUBECONFIG and runs until Ctrl-C (or SIGTERM); then stops everything and removes its directory.
//!
//!     cargo run -p vrouter-tests --bin kube-up
//!
//! Builds the binaries with `tests/kube/build.sh` first unless `VROUTER_KUBE_BIN` names them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use vrouter_tests::cluster::{Cluster, repo_root};

fn main() {
    let bin = match vrouter_tests::control_plane::binaries() {
        Some(b) => b,
        None => {
            eprintln!("kube-up: building the control plane (tests/kube/build.sh; minutes the first time)");
            let out = Command::new("bash")
                .arg(repo_root().join("tests/kube/build.sh"))
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("run tests/kube/build.sh");
            if !out.status.success() {
                eprintln!("kube-up: tests/kube/build.sh failed (it needs Go and the Go module proxy)");
                std::process::exit(1);
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let cluster = Cluster::start(&bin);
    let kubeconfig = cluster.scratch.path().join("kubeconfig");
    std::fs::copy(&cluster.plane.kubeconfig, &kubeconfig).expect("copy the kubeconfig");
    println!("# a Kubernetes control plane at {} with the vrouter CRDs; stop it with Ctrl-C", cluster.plane.server());
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!("# then, for example:");
    println!("#   kubectl create namespace quickstart");
    println!("#   kubectl apply -n quickstart --server-side -f examples/quickstart/");
    println!("#   kubectl get vrt,vrb,vrc -n quickstart");
    let (tx, rx) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(());
    });
    let _ = runtime.block_on(async { tokio::task::spawn_blocking(move || rx.recv()).await });
    eprintln!("kube-up: stopping");
    drop(cluster);
}
