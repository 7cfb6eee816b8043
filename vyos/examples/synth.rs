//! Prints a synthetic edge-router configuration: `cargo run --example synth -- RULES [VARIANT]`.
//! About 12 lines per firewall rule; used for benchmarks and by hand for scale experiments.

#![allow(missing_docs)]

fn main() {
    let mut args = std::env::args().skip(1);
    let rules = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let variant = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    print!("{}", vyos_config::synthetic::config(rules, variant));
}
