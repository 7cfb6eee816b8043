//! Schema hints: which nodes are tag nodes and which leaves hold several values.
//!
//! VyOS knows this from its interface definitions (XML); a command list like
//! `set interfaces ethernet eth0 address '192.0.2.1/24'` does not say it. The model needs the
//! knowledge in three places, none of which affects what reaches a router (routers receive argv
//! and decide with their own schema):
//! - rendering a tree built from commands in the hierarchical format (`ethernet eth0 {`),
//! - `set` on a leaf that already has a value: replace it, or add a value to a multi-value leaf,
//! - composing configurations: two values for a multi-value leaf are a union, for a single-value
//!   leaf a conflict.
//!
//! [`Schema::vyos`] is a curated table of common VyOS paths (1.3–rolling). Unknown nodes default
//! to "not a tag node" and "single value". Trees parsed from the hierarchical format carry their
//! own tag flags, and [`crate::Tree::conform_to`] copies flags from a router's running config.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A pattern element: a literal name or `*` (any one name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Elem {
    Name(String),
    Any,
}

#[derive(Default, Debug, Clone)]
struct Trie {
    children: HashMap<String, Trie>,
    any: Option<Box<Trie>>,
    terminal: bool,
}

impl Trie {
    fn insert(&mut self, pattern: &[Elem]) {
        match pattern.split_first() {
            None => self.terminal = true,
            Some((Elem::Name(n), rest)) => self.children.entry(n.clone()).or_default().insert(rest),
            Some((Elem::Any, rest)) => self.any.get_or_insert_with(Box::default).insert(rest),
        }
    }

    fn matches(&self, path: &[&str]) -> bool {
        match path.split_first() {
            None => self.terminal,
            Some((first, rest)) => {
                self.children.get(*first).is_some_and(|t| t.matches(rest))
                    || self.any.as_ref().is_some_and(|t| t.matches(rest))
            }
        }
    }
}

/// Tag and multi-value knowledge about configuration paths.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    tags: Trie,
    multi: Trie,
    /// Names that are tag nodes wherever they appear (e.g. `vif`, `rule`).
    tag_anywhere: Vec<String>,
    /// Leaf names that hold several values wherever they appear (e.g. `address` under an interface).
    all_multi: bool,
}

fn pattern(text: &str) -> Vec<Elem> {
    text.split_whitespace().map(|w| if w == "*" { Elem::Any } else { Elem::Name(w.to_owned()) }).collect()
}

impl Schema {
    /// A schema that knows nothing: no tag nodes, every leaf single-valued.
    pub fn empty() -> Self {
        Schema::default()
    }

    /// A schema where every leaf is multi-valued: `set` always adds values. This is the right
    /// reading of computed diffs, which delete a value before setting a replacement.
    pub fn additive() -> Self {
        Schema { all_multi: true, ..Schema::default() }
    }

    /// Builds a schema from path patterns (words separated by spaces, `*` matches any one name).
    pub fn from_patterns<'a>(
        tags: impl IntoIterator<Item = &'a str>,
        multi: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut schema = Schema::default();
        for t in tags {
            schema.tags.insert(&pattern(t));
        }
        for m in multi {
            schema.multi.insert(&pattern(m));
        }
        schema
    }

    /// The built-in VyOS hints.
    pub fn vyos() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let mut s = Schema::from_patterns(VYOS_TAGS.iter().copied(), VYOS_MULTI.iter().copied());
            s.tag_anywhere = VYOS_TAG_ANYWHERE.iter().map(|s| (*s).to_owned()).collect();
            s
        })
    }

    /// Whether the node at `path` is a tag node.
    pub fn is_tag(&self, path: &[&str]) -> bool {
        if self.tags.matches(path) {
            return true;
        }
        // `vif`, `rule` …: tag nodes wherever they appear below the top level.
        path.len() > 1 && path.last().is_some_and(|last| self.tag_anywhere.iter().any(|t| t == last))
    }

    /// Whether the leaf at `path` holds several values.
    pub fn is_multi(&self, path: &[&str]) -> bool {
        self.all_multi || self.multi.matches(path)
    }
}

/// Names that are tag nodes wherever they appear below the top level.
const VYOS_TAG_ANYWHERE: &[&str] = &["vif", "vif-s", "vif-c", "rule"];

/// Tag nodes of VyOS 1.3 – rolling (paths with `*` for tag values).
const VYOS_TAGS: &[&str] = &[
    // interfaces
    "interfaces bonding",
    "interfaces bridge",
    "interfaces dummy",
    "interfaces ethernet",
    "interfaces geneve",
    "interfaces input",
    "interfaces l2tpv3",
    "interfaces loopback",
    "interfaces macsec",
    "interfaces openvpn",
    "interfaces pppoe",
    "interfaces pseudo-ethernet",
    "interfaces sstpc",
    "interfaces tunnel",
    "interfaces virtual-ethernet",
    "interfaces vti",
    "interfaces vxlan",
    "interfaces wireguard",
    "interfaces wireless",
    "interfaces wwan",
    "interfaces bridge * member interface",
    "interfaces wireguard * peer",
    "interfaces * * dhcpv6-options pd",
    "interfaces * * dhcpv6-options pd * interface",
    "interfaces * * vif * dhcpv6-options pd",
    // firewall (1.3 and 1.4+ syntax)
    "firewall name",
    "firewall ipv6-name",
    "firewall ipv4 name",
    "firewall ipv6 name",
    "firewall bridge name",
    "firewall group address-group",
    "firewall group network-group",
    "firewall group port-group",
    "firewall group interface-group",
    "firewall group domain-group",
    "firewall group mac-group",
    "firewall group ipv6-address-group",
    "firewall group ipv6-network-group",
    "firewall zone",
    "firewall zone * from",
    "firewall flowtable",
    "zone-policy zone",
    "zone-policy zone * from",
    // nat
    "nat source rule",
    "nat destination rule",
    "nat static rule",
    "nat66 source rule",
    "nat66 destination rule",
    // policy
    "policy access-list",
    "policy access-list6",
    "policy as-path-list",
    "policy community-list",
    "policy extcommunity-list",
    "policy large-community-list",
    "policy prefix-list",
    "policy prefix-list6",
    "policy route-map",
    "policy route",
    "policy route6",
    "policy local-route",
    "policy local-route6",
    // protocols
    // `protocols bgp <asn>` (1.3 syntax) is recognised from the file itself; 1.4+ has
    // `protocols bgp system-as`, so `protocols bgp` is not hinted as a tag node.
    "protocols bgp neighbor",
    "protocols bgp peer-group",
    "protocols bgp * neighbor",
    "protocols bgp * peer-group",
    "protocols bgp address-family ipv4-unicast network",
    "protocols bgp address-family ipv6-unicast network",
    "protocols bgp address-family ipv4-unicast aggregate-address",
    "protocols bgp address-family ipv6-unicast aggregate-address",
    "protocols bgp * address-family ipv4-unicast network",
    "protocols bgp * address-family ipv6-unicast network",
    "protocols bgp address-family * redistribute",
    "protocols bgp listen range",
    "protocols bfd peer",
    "protocols bfd profile",
    "protocols isis interface",
    "protocols ospf area",
    "protocols ospf area * range",
    "protocols ospf area * virtual-link",
    "protocols ospf interface",
    "protocols ospf neighbor",
    "protocols ospf access-list",
    "protocols ospfv3 area",
    "protocols ospfv3 interface",
    "protocols rip interface",
    "protocols rip network-distance",
    "protocols ripng interface",
    "protocols rpki cache",
    "protocols static route",
    "protocols static route6",
    "protocols static route * next-hop",
    "protocols static route6 * next-hop",
    "protocols static route * interface",
    "protocols static route6 * interface",
    "protocols static table",
    "protocols static interface-route",
    "protocols static interface-route * next-hop-interface",
    "protocols static arp",
    "protocols igmp interface",
    "protocols pim interface",
    "protocols igmp-proxy interface",
    "protocols vrf",
    "protocols nhrp tunnel",
    "protocols nhrp tunnel * map",
    "protocols nhrp tunnel * dynamic-map",
    "protocols mpls ldp interface",
    "protocols babel interface",
    // vrf
    "vrf name",
    "vrf name * protocols bgp neighbor",
    "vrf name * protocols static route",
    "vrf name * protocols static route * next-hop",
    "vrf name * protocols static route6",
    "vrf name * protocols static route6 * next-hop",
    "vrf name * protocols ospf area",
    "vrf name * protocols ospf interface",
    // high availability
    "high-availability vrrp group",
    "high-availability vrrp sync-group",
    "high-availability virtual-server",
    "high-availability virtual-server * real-server",
    // services
    "service dhcp-server shared-network-name",
    "service dhcp-server shared-network-name * subnet",
    "service dhcp-server shared-network-name * subnet * static-mapping",
    "service dhcp-server shared-network-name * subnet * range",
    "service dhcp-server shared-network-name * subnet * static-route",
    "service dhcpv6-server shared-network-name",
    "service dhcpv6-server shared-network-name * subnet",
    "service dhcpv6-server shared-network-name * subnet * static-mapping",
    "service dhcpv6-server shared-network-name * subnet * range",
    "service dns forwarding domain",
    "service dns forwarding authoritative-domain",
    "service dns dynamic name",
    "service dns dynamic address",
    "service dns dynamic interface",
    "service dns dynamic interface * service",
    "service ntp server",
    "service snmp community",
    "service snmp listen-address",
    "service snmp trap-target",
    "service snmp v3 user",
    "service snmp v3 group",
    "service snmp v3 view",
    "service https api keys id",
    "service https virtual-host",
    "service router-advert interface",
    "service router-advert interface * prefix",
    "service pppoe-server interface",
    "service ipoe-server interface",
    "service lldp interface",
    "service broadcast-relay id",
    "service monitoring telegraf",
    "service tftp-server listen-address",
    "service webproxy listen-address",
    "service conntrack-sync interface",
    "service event-handler event",
    // system
    "system login user",
    "system login user * authentication public-keys",
    "system login radius server",
    "system login tacacs server",
    "system static-host-mapping host-name",
    "system syslog host",
    "system syslog file",
    "system syslog user",
    "system syslog global facility",
    "system syslog console facility",
    "system syslog host * facility",
    "system syslog file * facility",
    "system syslog user * facility",
    "system syslog remote",
    "system syslog remote * facility",
    "system syslog local facility",
    "system console device",
    "system task-scheduler task",
    "system sysctl parameter",
    "system frr snmp",
    "system option kernel",
    "system sflow server",
    "system flow-accounting netflow server",
    "system flow-accounting sflow server",
    "system conntrack timeout custom rule",
    "system conntrack ignore rule",
    // vpn
    "vpn ipsec esp-group",
    "vpn ipsec ike-group",
    "vpn ipsec ike-group * proposal",
    "vpn ipsec esp-group * proposal",
    "vpn ipsec site-to-site peer",
    "vpn ipsec site-to-site peer * tunnel",
    "vpn ipsec profile",
    "vpn ipsec remote-access connection",
    "vpn ipsec remote-access pool",
    "vpn ipsec authentication psk",
    "vpn l2tp remote-access authentication local-users username",
    "vpn sstp authentication local-users username",
    "vpn openconnect authentication local-users username",
    "vpn pptp remote-access authentication local-users username",
    "vpn l2tp remote-access client-ip-pool",
    "vpn sstp client-ip-pool",
    "service pppoe-server authentication local-users username",
    "service pppoe-server client-ip-pool",
    "service ipoe-server authentication interface",
    "service ipoe-server client-ip-pool",
    "service ipoe-server authentication interface * mac",
    // pki, containers, traffic, load balancing
    "pki ca",
    "pki certificate",
    "pki dh",
    "pki key-pair",
    "pki openssh",
    "pki openvpn shared-secret",
    "container name",
    "container name * port",
    "container name * volume",
    "container name * environment",
    "container name * network",
    "container network",
    "container registry",
    "qos policy shaper",
    "qos policy shaper * class",
    "qos interface",
    "traffic-policy shaper",
    "traffic-policy shaper * class",
    "load-balancing wan interface-health",
    "load-balancing wan interface-health * test",
    "load-balancing wan rule * interface",
    "load-balancing reverse-proxy service",
    "load-balancing reverse-proxy backend",
    "load-balancing reverse-proxy backend * server",
    "cluster group",
];

/// Leaves that hold several values.
const VYOS_MULTI: &[&str] = &[
    "interfaces * * address",
    "interfaces * * vif * address",
    "interfaces * * vif-s * address",
    "interfaces * * vif-s * vif-c * address",
    "interfaces * * ipv6 address autoconf",
    "interfaces * * ipv6 address eui64",
    "interfaces * * vif * ipv6 address eui64",
    "interfaces wireguard * peer * allowed-ips",
    "interfaces bonding * member interface",
    "interfaces * * redirect",
    "interfaces openvpn * local-address",
    "interfaces openvpn * openvpn-option",
    "interfaces openvpn * server push-route",
    "interfaces openvpn * server name-server",
    "interfaces openvpn * remote-host",
    "interfaces tunnel * parameters ip key",
    "system name-server",
    "system domain-search domain",
    "system domain-search",
    "system static-host-mapping host-name * alias",
    "system static-host-mapping host-name * inet",
    "system login user * authentication otp key",
    "service ntp allow-client address",
    "service ntp listen-address",
    "service ssh listen-address",
    "service ssh port",
    "service ssh ciphers",
    "service ssh key-exchange",
    "service ssh mac",
    "service ssh access-control allow user",
    "service ssh access-control deny user",
    "service dns forwarding listen-address",
    "service dns forwarding listen-on",
    "service dns forwarding allow-from",
    "service dns forwarding name-server",
    "service dns forwarding domain * name-server",
    "service dns forwarding domain * server",
    "service dns forwarding system",
    "service dns forwarding dhcp",
    "service dhcp-server shared-network-name * subnet * name-server",
    "service dhcp-server shared-network-name * subnet * dns-server",
    "service dhcp-server shared-network-name * subnet * ntp-server",
    "service dhcp-server shared-network-name * subnet * domain-search",
    "service dhcp-server shared-network-name * subnet * option name-server",
    "service dhcp-server shared-network-name * subnet * option domain-search",
    "service dhcp-server shared-network-name * subnet * option ntp-server",
    "service dhcp-server shared-network-name * name-server",
    "service dhcp-server shared-network-name * option name-server",
    "service dhcp-server listen-address",
    "service dhcp-relay server",
    "service dhcp-relay interface",
    "service dhcp-relay listen-interface",
    "service dhcp-relay upstream-interface",
    "service dhcpv6-relay listen-interface",
    "service dhcpv6-relay upstream-interface",
    "service dhcpv6-server shared-network-name * subnet * name-server",
    "service dhcpv6-server shared-network-name * subnet * option name-server",
    "service https listen-address",
    "service https allow-client address",
    "service lldp management-address",
    "service lldp legacy-protocols",
    "service mdns repeater interface",
    "service snmp contact",
    "service snmp community * client",
    "service snmp community * network",
    "service router-advert interface * name-server",
    "service router-advert interface * dnssl",
    "service pppoe-server name-server",
    "service pppoe-server gateway-address",
    "service ipoe-server name-server",
    "service webproxy whitelist source-address",
    "service broadcast-relay id * interface",
    "service conntrack-sync accept-protocol",
    "firewall group address-group * address",
    "firewall group network-group * network",
    "firewall group port-group * port",
    "firewall group interface-group * interface",
    "firewall group domain-group * address",
    "firewall group mac-group * mac-address",
    "firewall group ipv6-address-group * address",
    "firewall group ipv6-network-group * network",
    "firewall group address-group * include",
    "firewall group network-group * include",
    "firewall zone * interface",
    "firewall flowtable * interface",
    "zone-policy zone * interface",
    "protocols ospf area * network",
    "protocols ospfv3 area * interface",
    "protocols rip network",
    "protocols rip interface",
    "protocols rip neighbor",
    "protocols ripng network",
    "protocols ospf passive-interface",
    "protocols ospf passive-interface-exclude",
    "protocols bgp * parameters confederation peers",
    "protocols bgp parameters confederation peers",
    "protocols nhrp tunnel * nhs",
    "policy route * interface",
    "policy route6 * interface",
    "policy route-map * rule * set community",
    "policy route-map * rule * set large-community",
    "policy route-map * rule * set as-path prepend",
    "high-availability vrrp group * address",
    "high-availability vrrp group * virtual-address",
    "high-availability vrrp sync-group * member",
    "vpn ipsec interface",
    "vpn ipsec ipsec-interfaces interface",
    "vpn ipsec site-to-site peer * authentication remote-id",
    "vpn ipsec remote-access connection * pool",
    "vpn l2tp remote-access name-server",
    "vpn l2tp remote-access outside-address",
    "vpn sstp network-settings name-server",
    "vpn openconnect network-settings name-server",
    "vpn openconnect network-settings split-dns",
    "vpn openconnect network-settings push-route",
    "container name * environment * value",
    "container name * device",
    "container name * capability",
    "container name * sysctl",
    "container name * label",
    "load-balancing wan interface-health * test * target",
    "nat source rule * translation address",
    "cluster group * service",
    "cluster group * auto-failback",
    "cluster interface",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let s = Schema::vyos();
        assert!(s.is_tag(&["interfaces", "ethernet"]));
        assert!(!s.is_tag(&["interfaces"]));
        assert!(s.is_tag(&["interfaces", "ethernet", "eth0", "vif"]));
        assert!(s.is_tag(&["firewall", "name", "WAN_IN", "rule"]));
        assert!(!s.is_tag(&["rule"]));
        assert!(s.is_multi(&["interfaces", "ethernet", "eth0", "address"]));
        assert!(s.is_multi(&["interfaces", "ethernet", "eth0", "vif", "10", "address"]));
        assert!(!s.is_multi(&["system", "host-name"]));
        assert!(s.is_multi(&["system", "name-server"]));
        assert!(Schema::additive().is_multi(&["system", "host-name"]));
        assert!(!Schema::empty().is_tag(&["interfaces", "ethernet"]));
    }
}
