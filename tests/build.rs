//! Marks tests as runnable when what they need is named at build time; without it they are
//! compiled as ignored (reported "ignored", never "passed"):
//! - the VyOS corpus tests: `VYOS_FIXTURES` names the fixture folder (`cfg(vyos_fixtures)`);
//! - the Kubernetes tests: `VROUTER_KUBE_BIN` names the directory with etcd, kube-apiserver and
//!   kube-controller-manager built by `tests/kube/build.sh` (`cfg(kube_plane)`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vyos_fixtures)");
    println!("cargo::rustc-check-cfg=cfg(kube_plane)");
    println!("cargo::rerun-if-env-changed=VYOS_FIXTURES");
    println!("cargo::rerun-if-env-changed=VROUTER_KUBE_BIN");
    if std::env::var_os("VYOS_FIXTURES").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=vyos_fixtures");
    }
    if std::env::var_os("VROUTER_KUBE_BIN").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=kube_plane");
    }
}
