//! `vrouter-agent`: the on-router agent binary.

fn main() {
    println!("vrouter-agent {}", env!("CARGO_PKG_VERSION"));
}
