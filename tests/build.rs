//! Marks the VyOS corpus tests as runnable when `VYOS_FIXTURES` names the fixture folder at
//! build time; without it they are compiled as ignored (reported "ignored", never "passed").

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vyos_fixtures)");
    println!("cargo::rerun-if-env-changed=VYOS_FIXTURES");
    if std::env::var_os("VYOS_FIXTURES").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=vyos_fixtures");
    }
}
