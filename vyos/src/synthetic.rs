//! Synthetic, realistic configurations of any size, for benchmarks and scale tests.
//!
//! The shape follows a busy edge router: interfaces with VLANs, a large firewall rule set, NAT
//! rules, static routes, BGP neighbours and the usual `system` section. Output is deterministic
//! for the same size and variant.

use std::fmt::Write as _;

/// Approximate lines per firewall rule in the hierarchical render.
pub const LINES_PER_RULE: usize = 12;

/// A hierarchical configuration with about `rules * LINES_PER_RULE` lines. `variant` changes
/// every hundredth rule's port and a few system values, for diff benchmarks.
pub fn config(rules: usize, variant: u32) -> String {
    let mut s = String::with_capacity(rules * LINES_PER_RULE * 40);
    let vlans = (rules / 50).max(2);
    let _ = writeln!(s, "firewall {{");
    let _ = writeln!(s, "    name WAN_IN {{");
    let _ = writeln!(s, "        default-action \"drop\"");
    for r in 1..=rules {
        let port =
            if variant > 0 && r % 100 == 0 { 1000 + (r as u32 + variant) % 60000 } else { 1000 + r as u32 % 60000 };
        let _ = writeln!(s, "        rule {r} {{");
        let _ = writeln!(s, "            action \"{}\"", if r % 7 == 0 { "drop" } else { "accept" });
        let _ = writeln!(s, "            description \"rule {r} for service {}\"", r % 97);
        let _ = writeln!(s, "            destination {{");
        let _ = writeln!(s, "                address \"10.{}.{}.0/24\"", (r / 256) % 256, r % 256);
        let _ = writeln!(s, "                port \"{port}\"");
        let _ = writeln!(s, "            }}");
        let _ = writeln!(s, "            protocol \"{}\"", if r % 3 == 0 { "udp" } else { "tcp" });
        let _ = writeln!(s, "            source {{");
        let _ = writeln!(s, "                address \"192.0.2.{}\"", r % 254 + 1);
        let _ = writeln!(s, "            }}");
        let _ = writeln!(s, "        }}");
    }
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "interfaces {{");
    for e in 0..4 {
        let _ = writeln!(s, "    ethernet eth{e} {{");
        let _ = writeln!(s, "        address \"172.16.{e}.1/24\"");
        let _ = writeln!(s, "        description \"port {e}\"");
        for v in 0..vlans / 4 + 1 {
            let vid = 10 + v;
            let _ = writeln!(s, "        vif {vid} {{");
            let _ = writeln!(s, "            address \"10.{e}.{}.1/24\"", vid % 256);
            let _ = writeln!(s, "            mtu \"1500\"");
            let _ = writeln!(s, "        }}");
        }
        let _ = writeln!(s, "    }}");
    }
    let _ = writeln!(s, "    loopback lo {{");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "protocols {{");
    let _ = writeln!(s, "    bgp {{");
    for n in 0..(rules / 100).max(1) {
        let _ = writeln!(s, "        neighbor 192.0.2.{} {{", n % 250 + 1);
        let _ = writeln!(s, "            remote-as \"{}\"", 64512 + n);
        let _ = writeln!(s, "        }}");
    }
    let _ = writeln!(s, "        system-as \"65000\"");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    static {{");
    for r in 0..(rules / 20).max(1) {
        let _ = writeln!(s, "        route 10.{}.{}.0/24 {{", 100 + (r / 256) % 100, r % 256);
        let _ = writeln!(s, "            next-hop 172.16.0.254 {{");
        let _ = writeln!(s, "            }}");
        let _ = writeln!(s, "        }}");
    }
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "system {{");
    let _ = writeln!(s, "    host-name \"{}\"", if variant > 0 { "edge-b" } else { "edge-a" });
    let _ = writeln!(s, "    name-server \"192.0.2.53\"");
    let _ = writeln!(s, "    name-server \"192.0.2.54\"");
    let _ = writeln!(s, "    time-zone \"UTC\"");
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_and_has_the_expected_size() {
        let text = super::config(1000, 0);
        let lines = text.lines().count();
        assert!((12_000..14_000).contains(&lines), "{lines}");
        let tree = crate::parse_tree(&text).unwrap();
        assert!(tree.exists(&["firewall", "name", "WAN_IN", "rule", "1000"]));
        let changed = crate::parse_tree(&super::config(1000, 1)).unwrap();
        let d = crate::diff(&tree, &changed);
        assert_eq!(d.commands().len(), 2 * 10 + 2);
    }
}
