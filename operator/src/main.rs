//! `vrouter-operator`: the operator binary.

fn main() {
    println!("vrouter-operator {}", env!("CARGO_PKG_VERSION"));
}
