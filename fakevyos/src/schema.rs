//! The reference schema: which configuration paths exist, which nodes are tag nodes, leaves,
//! multi-value leaves or valueless flags, and which values they accept.
//!
//! It stands in for VyOS's interface definitions, for a small set of common nodes. The table
//! ([`TABLE`]) has one line per node: `path : kind : values`, where `*` in a path stands for a
//! tag value, kinds are `node`, `tag`, `leaf`, `multi` and `flag`, and values are
//! alternatives separated by `|` (see [`Check`]). Intermediate nodes need no line.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;

use crate::profile::Family;

/// One accepted form of a value.
#[derive(Debug, Clone)]
pub enum Check {
    /// Anything.
    Text,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// An IPv4 network, host bits zero (`192.0.2.0/24`).
    Ipv4Net,
    /// An IPv6 network, host bits zero.
    Ipv6Net,
    /// An IPv4 address with a prefix length (`192.0.2.1/24`).
    Ipv4Prefix,
    /// An IPv6 address with a prefix length.
    Ipv6Prefix,
    /// An integer in a range (inclusive).
    Range(u64, u64),
    /// One of a few words.
    Enum(Vec<String>),
    /// A regular expression, anchored by the table.
    Pattern(Regex),
}

impl Check {
    fn parse(spec: &str) -> Result<Check, String> {
        let named = match spec {
            "text" => Some(Check::Text),
            "ipv4" => Some(Check::Ipv4),
            "ipv6" => Some(Check::Ipv6),
            "ipv4net" => Some(Check::Ipv4Net),
            "ipv6net" => Some(Check::Ipv6Net),
            "ipv4prefix" => Some(Check::Ipv4Prefix),
            "ipv6prefix" => Some(Check::Ipv6Prefix),
            "hostname" | "fqdn" => Some(pattern(r"^[A-Za-z0-9][-.A-Za-z0-9]*$")?),
            "timezone" => Some(pattern(r"^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+){1,2})$")?),
            "mac" => Some(pattern(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")?),
            "wgkey" => Some(pattern(r"^[A-Za-z0-9+/]{43}=$")?),
            "name" => Some(pattern(r"^[-_A-Za-z0-9.]{1,64}$")?),
            "ports" => Some(pattern(r"^[0-9a-z]+([-,][0-9a-z]+)*$")?),
            _ => None,
        };
        if let Some(check) = named {
            return Ok(check);
        }
        if let Some(range) = spec.strip_prefix("range:") {
            let (lo, hi) = range.split_once('-').ok_or_else(|| format!("bad range {spec:?}"))?;
            let lo = lo.parse().map_err(|_| format!("bad range {spec:?}"))?;
            let hi = hi.parse().map_err(|_| format!("bad range {spec:?}"))?;
            return Ok(Check::Range(lo, hi));
        }
        if let Some(words) = spec.strip_prefix("enum:") {
            return Ok(Check::Enum(words.split(',').map(str::to_owned).collect()));
        }
        if let Some(re) = spec.strip_prefix("re:") {
            return pattern(re);
        }
        Err(format!("unknown value check {spec:?}"))
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            Check::Text => true,
            Check::Ipv4 => value.parse::<Ipv4Addr>().is_ok(),
            Check::Ipv6 => value.parse::<Ipv6Addr>().is_ok(),
            Check::Ipv4Net => prefix(value, 32, |a: Ipv4Addr| u128::from(u32::from(a)), true),
            Check::Ipv6Net => prefix(value, 128, |a: Ipv6Addr| u128::from(a), true),
            Check::Ipv4Prefix => prefix(value, 32, |a: Ipv4Addr| u128::from(u32::from(a)), false),
            Check::Ipv6Prefix => prefix(value, 128, |a: Ipv6Addr| u128::from(a), false),
            Check::Range(lo, hi) => {
                !value.starts_with('+') && value.parse::<u64>().is_ok_and(|n| (*lo..=*hi).contains(&n))
            }
            Check::Enum(words) => words.iter().any(|w| w == value),
            Check::Pattern(re) => re.is_match(value),
        }
    }

    fn describe(&self) -> String {
        match self {
            Check::Text => "text".into(),
            Check::Ipv4 => "an IPv4 address".into(),
            Check::Ipv6 => "an IPv6 address".into(),
            Check::Ipv4Net => "an IPv4 network (x.x.x.x/n, host bits zero)".into(),
            Check::Ipv6Net => "an IPv6 network (h:h::/n, host bits zero)".into(),
            Check::Ipv4Prefix => "an IPv4 address with prefix length (x.x.x.x/n)".into(),
            Check::Ipv6Prefix => "an IPv6 address with prefix length (h:h::h/n)".into(),
            Check::Range(lo, hi) => format!("a number between {lo} and {hi}"),
            Check::Enum(words) => format!("one of {}", words.join(", ")),
            Check::Pattern(re) => format!("text matching {}", re.as_str()),
        }
    }
}

fn pattern(re: &str) -> Result<Check, String> {
    Regex::new(re).map(Check::Pattern).map_err(|e| format!("bad pattern {re:?}: {e}"))
}

/// `addr/len` with `len <= max`; with `network`, the host bits must be zero.
fn prefix<A: std::str::FromStr>(value: &str, max: u32, bits: impl Fn(A) -> u128, network: bool) -> bool {
    let Some((addr, len)) = value.split_once('/') else { return false };
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (Ok(addr), Ok(len)) = (addr.parse::<A>(), len.parse::<u32>()) else { return false };
    if len > max {
        return false;
    }
    if !network {
        return true;
    }
    let host_bits = max - len;
    let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    bits(addr) & mask == 0
}

/// The accepted forms of a value: any one of the alternatives.
#[derive(Debug, Clone)]
pub struct Validator {
    alternatives: Vec<Check>,
}

impl Validator {
    /// Parses `check|check|…`; a `re:` alternative takes the rest of the text.
    pub fn parse(spec: &str) -> Result<Validator, String> {
        let mut alternatives = Vec::new();
        let mut rest = spec;
        while !rest.is_empty() {
            if rest.starts_with("re:") {
                alternatives.push(Check::parse(rest)?);
                break;
            }
            let (head, tail) = rest.split_once('|').unwrap_or((rest, ""));
            alternatives.push(Check::parse(head)?);
            rest = tail;
        }
        if alternatives.is_empty() {
            return Err("empty value check".into());
        }
        Ok(Validator { alternatives })
    }

    /// Whether the value is accepted.
    pub fn accepts(&self, value: &str) -> bool {
        self.alternatives.iter().any(|c| c.accepts(value))
    }

    /// What is accepted, for error messages: "a number between 68 and 16000".
    pub fn describe(&self) -> String {
        self.alternatives.iter().map(Check::describe).collect::<Vec<_>>().join(" or ")
    }
}

/// What a schema node is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A plain node with named children (typeless in VyOS's terms).
    Node,
    /// A tag node: its children are tag values checked by the validator, each with the
    /// children listed under the `*` path.
    Tag(Validator),
    /// A leaf with one value, or several (`multi`).
    Leaf {
        /// Accepted values.
        validator: Validator,
        /// Whether the leaf holds several values (`set` adds instead of replacing).
        multi: bool,
    },
    /// A valueless leaf (`disable`).
    Flag,
}

/// One node of the schema.
#[derive(Debug, Clone)]
pub struct SchemaNode {
    kind: Kind,
    children: BTreeMap<String, SchemaNode>,
}

impl SchemaNode {
    fn new() -> SchemaNode {
        SchemaNode { kind: Kind::Node, children: BTreeMap::new() }
    }

    /// What the node is.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }
}

/// What an operation is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `set`: values are validated; value nodes need a value.
    Set,
    /// `delete` and `comment`: the path must exist in the schema; values are not validated.
    Delete,
}

/// A command's words split into the configuration path and the leaf value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The node path (tag values included).
    pub path: Vec<String>,
    /// The value, when the path ends in a leaf and a value was given.
    pub value: Option<String>,
    /// Whether the node is a multi-value leaf.
    pub multi: bool,
}

/// Why words do not name a valid configuration path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// A word names nothing the schema has.
    NotValid,
    /// A value node (leaf or tag) was given without a value.
    RequiresValue,
    /// A value (or tag value) is not accepted.
    BadValue {
        /// The rejected value.
        value: String,
        /// The node the value was given to.
        node: Vec<String>,
        /// What the node accepts.
        expected: String,
    },
}

/// The reference schema.
#[derive(Debug, Clone)]
pub struct Schema {
    root: SchemaNode,
}

impl Schema {
    /// The schema of a release family.
    pub fn for_family(family: Family) -> Result<Schema, String> {
        let mut root = SchemaNode::new();
        for line in table_lines(family) {
            add_line(&mut root, &line)?;
        }
        Ok(Schema { root })
    }

    /// Splits command words into path and value, checking them against the schema.
    pub fn resolve(&self, words: &[String], mode: Mode) -> Result<Resolved, PathError> {
        let mut node = &self.root;
        let mut at_tag_value = false;
        let mut path: Vec<String> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            match &node.kind {
                Kind::Tag(validator) if !at_tag_value => {
                    if mode == Mode::Set && !validator.accepts(word) {
                        return Err(PathError::BadValue {
                            value: word.clone(),
                            node: path.clone(),
                            expected: validator.describe(),
                        });
                    }
                    path.push(word.clone());
                    at_tag_value = true;
                }
                Kind::Leaf { validator, multi } => {
                    if i + 1 != words.len() {
                        return Err(PathError::NotValid);
                    }
                    if mode == Mode::Set && !validator.accepts(word) {
                        return Err(PathError::BadValue {
                            value: word.clone(),
                            node: path.clone(),
                            expected: validator.describe(),
                        });
                    }
                    return Ok(Resolved { path, value: Some(word.clone()), multi: *multi });
                }
                Kind::Flag => return Err(PathError::NotValid),
                Kind::Node | Kind::Tag(_) => {
                    node = node.children.get(word).ok_or(PathError::NotValid)?;
                    path.push(word.clone());
                    at_tag_value = false;
                }
            }
        }
        if path.is_empty() {
            return Err(PathError::NotValid);
        }
        match &node.kind {
            Kind::Tag(_) if !at_tag_value && mode == Mode::Set => Err(PathError::RequiresValue),
            Kind::Leaf { .. } if mode == Mode::Set => Err(PathError::RequiresValue),
            Kind::Leaf { multi, .. } => Ok(Resolved { path, value: None, multi: *multi }),
            _ => Ok(Resolved { path, value: None, multi: false }),
        }
    }

    /// The schema node at a configuration path (tag values included), if the path is known.
    pub fn node_at<S: AsRef<str>>(&self, path: &[S]) -> Option<&SchemaNode> {
        let mut node = &self.root;
        let mut at_tag_value = false;
        for word in path {
            match &node.kind {
                Kind::Tag(_) if !at_tag_value => at_tag_value = true,
                Kind::Node | Kind::Tag(_) => {
                    node = node.children.get(word.as_ref())?;
                    at_tag_value = false;
                }
                Kind::Leaf { .. } | Kind::Flag => return None,
            }
        }
        // A path ending at a tag value names the value's node, which is a plain node.
        if at_tag_value { Some(&TAG_VALUE) } else { Some(node) }
    }

    /// Whether the node at a configuration path is a tag node (not a tag value).
    pub fn is_tag<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.node_at(path).is_some_and(|n| matches!(n.kind, Kind::Tag(_)))
    }

    /// Whether the node at a configuration path is a multi-value leaf.
    pub fn is_multi<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.node_at(path).is_some_and(|n| matches!(n.kind, Kind::Leaf { multi: true, .. }))
    }
}

static TAG_VALUE: SchemaNode = SchemaNode { kind: Kind::Node, children: BTreeMap::new() };

fn add_line(root: &mut SchemaNode, line: &str) -> Result<(), String> {
    let mut columns = line.splitn(3, " : ");
    let path = columns.next().unwrap_or("").trim();
    let kind = columns.next().map(str::trim).ok_or_else(|| format!("schema line without kind: {line:?}"))?;
    let spec = columns.next().map(str::trim).unwrap_or("");
    let mut node = root;
    for word in path.split_whitespace() {
        if word == "*" {
            if !matches!(node.kind, Kind::Tag(_)) {
                return Err(format!("schema line {line:?}: `*` after a node that is not a tag node"));
            }
            continue;
        }
        node = node.children.entry(word.to_owned()).or_insert_with(SchemaNode::new);
    }
    node.kind = match kind {
        "node" => Kind::Node,
        "flag" => Kind::Flag,
        "tag" => Kind::Tag(Validator::parse(spec)?),
        "leaf" => Kind::Leaf { validator: Validator::parse(spec)?, multi: false },
        "multi" => Kind::Leaf { validator: Validator::parse(spec)?, multi: true },
        other => return Err(format!("schema line {line:?}: unknown kind {other:?}")),
    };
    Ok(())
}

/// The schema table (all families).
pub const TABLE: &str = "
system host-name : leaf : hostname
system domain-name : leaf : fqdn
system time-zone : leaf : timezone
system name-server : multi : ipv4|ipv6|fqdn
system login banner post-login : leaf : text
system login banner pre-login : leaf : text
system login user : tag : re:^[a-z_][-a-z0-9_.]{0,31}$
system login user * full-name : leaf : text
system login user * authentication encrypted-password : leaf : text
system login user * authentication plaintext-password : leaf : text
system login user * authentication public-keys : tag : text
system login user * authentication public-keys * key : leaf : text
system login user * authentication public-keys * type : leaf : enum:ssh-rsa,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521
system config-management commit-revisions : leaf : range:1-65535
system config-management commit-archive location : multi : text
system config-management commit-confirm action : leaf : enum:reboot,reload
system syslog global facility : tag : text
system syslog global facility * level : leaf : text
interfaces ethernet : tag : re:^eth[0-9]+$
interfaces ethernet * address : multi : ipv4prefix|ipv6prefix|enum:dhcp,dhcpv6
interfaces ethernet * description : leaf : text
interfaces ethernet * mtu : leaf : range:68-16000
interfaces ethernet * disable : flag
interfaces ethernet * hw-id : leaf : mac
interfaces ethernet * vrf : leaf : name
interfaces ethernet * vif : tag : range:0-4094
interfaces ethernet * vif * address : multi : ipv4prefix|ipv6prefix|enum:dhcp,dhcpv6
interfaces ethernet * vif * description : leaf : text
interfaces ethernet * vif * mtu : leaf : range:68-16000
interfaces ethernet * vif * disable : flag
interfaces loopback : tag : enum:lo
interfaces loopback * address : multi : ipv4prefix|ipv6prefix
interfaces loopback * description : leaf : text
interfaces dummy : tag : re:^dum[0-9]+$
interfaces dummy * address : multi : ipv4prefix|ipv6prefix
interfaces dummy * description : leaf : text
interfaces dummy * disable : flag
interfaces wireguard : tag : re:^wg[0-9]+$
interfaces wireguard * address : multi : ipv4prefix|ipv6prefix
interfaces wireguard * description : leaf : text
interfaces wireguard * port : leaf : range:1-65535
interfaces wireguard * mtu : leaf : range:68-16000
interfaces wireguard * private-key : leaf : wgkey
interfaces wireguard * disable : flag
interfaces wireguard * peer : tag : name
interfaces wireguard * peer * public-key : leaf : wgkey
interfaces wireguard * peer * preshared-key : leaf : wgkey
interfaces wireguard * peer * allowed-ips : multi : ipv4net|ipv6net
interfaces wireguard * peer * address : leaf : ipv4|ipv6
interfaces wireguard * peer * host-name : leaf : fqdn
interfaces wireguard * peer * port : leaf : range:1-65535
interfaces wireguard * peer * persistent-keepalive : leaf : range:1-65535
interfaces wireguard * peer * disable : flag
protocols static route : tag : ipv4net
protocols static route * description : leaf : text
protocols static route * next-hop : tag : ipv4
protocols static route * next-hop * distance : leaf : range:1-255
protocols static route * next-hop * disable : flag
protocols static route * blackhole distance : leaf : range:1-255
protocols static route6 : tag : ipv6net
protocols static route6 * next-hop : tag : ipv6
protocols static route6 * next-hop * distance : leaf : range:1-255
protocols bgp system-as : leaf : range:1-4294967295
protocols bgp parameters router-id : leaf : ipv4
protocols bgp neighbor : tag : ipv4|ipv6
protocols bgp neighbor * remote-as : leaf : range:1-4294967295|enum:external,internal
protocols bgp neighbor * description : leaf : text
protocols bgp neighbor * password : leaf : text
protocols bgp neighbor * update-source : leaf : ipv4|ipv6|name
protocols bgp neighbor * ebgp-multihop : leaf : range:1-255
protocols bgp neighbor * shutdown : flag
protocols bgp neighbor * address-family ipv4-unicast : node
protocols bgp neighbor * address-family ipv6-unicast : node
protocols bgp address-family ipv4-unicast network : tag : ipv4net
protocols bgp address-family ipv6-unicast network : tag : ipv6net
protocols bgp address-family ipv4-unicast redistribute connected : node
protocols bgp address-family ipv4-unicast redistribute static : node
high-availability vrrp global-parameters version : leaf : enum:2,3
high-availability vrrp group : tag : re:^[-_A-Za-z0-9.]{1,100}$
high-availability vrrp group * interface : leaf : name
high-availability vrrp group * vrid : leaf : range:1-255
high-availability vrrp group * priority : leaf : range:1-255
high-availability vrrp group * advertise-interval : leaf : range:1-255
high-availability vrrp group * description : leaf : text
high-availability vrrp group * disable : flag
high-availability vrrp group * no-preempt : flag
high-availability vrrp group * preempt-delay : leaf : range:0-1000
high-availability vrrp group * hello-source-address : leaf : ipv4|ipv6
high-availability vrrp group * peer-address : leaf : ipv4|ipv6
high-availability vrrp group * rfc3768-compatibility : flag
high-availability vrrp group * address : tag : ipv4prefix|ipv6prefix
high-availability vrrp group * address * interface : leaf : name
high-availability vrrp group * excluded-address : multi : ipv4prefix|ipv6prefix
high-availability vrrp group * authentication password : leaf : re:^.{1,8}$
high-availability vrrp group * authentication type : leaf : enum:plaintext-password,ah
high-availability vrrp group * track exclude-vrrp-interface : flag
high-availability vrrp group * track interface : multi : name
high-availability vrrp sync-group : tag : re:^[-_A-Za-z0-9.]{1,100}$
high-availability vrrp sync-group * member : multi : re:^[-_A-Za-z0-9.]{1,100}$
service ssh : node
service ssh port : multi : range:1-65535
service ssh listen-address : multi : ipv4|ipv6
service ssh disable-password-authentication : flag
service ntp server : tag : ipv4|ipv6|fqdn
service ntp server * prefer : flag
service ntp server * pool : flag
service ntp allow-client address : multi : ipv4|ipv6|ipv4net|ipv6net
service https api keys id : tag : name
service https api keys id * key : leaf : text
firewall group address-group : tag : name
firewall group address-group * address : multi : ipv4|re:^[0-9.]+-[0-9.]+$
firewall group address-group * description : leaf : text
firewall group network-group : tag : name
firewall group network-group * network : multi : ipv4net
firewall group network-group * description : leaf : text
firewall ipv4 name : tag : name
firewall ipv4 name * description : leaf : text
firewall ipv4 name * default-action : leaf : enum:accept,drop,reject,continue,return,jump
nat source rule : tag : range:1-999999
nat destination rule : tag : range:1-999999
";

/// Nodes that exist from VyOS 1.5 on.
const TABLE_1_5: &str = "
service https api rest : node
";

/// The firewall rule subtree, repeated under every chain.
const FIREWALL_CHAINS: &[&str] = &[
    "firewall ipv4 name *",
    "firewall ipv4 input filter",
    "firewall ipv4 forward filter",
    "firewall ipv4 output filter",
];

const FIREWALL_RULE: &str = "
rule : tag : range:1-999999
rule * action : leaf : enum:accept,drop,reject,jump,return,continue
rule * description : leaf : text
rule * protocol : leaf : re:^!?(all|tcp|udp|icmp|tcp_udp|[0-9]{1,3})$
rule * state : multi : enum:established,related,new,invalid
rule * source address : leaf : ipv4|ipv4net|re:^!?[0-9.]+(/[0-9]+)?$
rule * source port : leaf : ports
rule * destination address : leaf : ipv4|ipv4net|re:^!?[0-9.]+(/[0-9]+)?$
rule * destination port : leaf : ports
rule * log : flag
rule * disable : flag
";

const CHAIN_DEFAULT_ACTION: &str = "default-action : leaf : enum:accept,drop,reject";

const NAT_RULES: &[&str] = &["nat source rule *", "nat destination rule *"];

const NAT_RULE: &str = "
description : leaf : text
outbound-interface name : leaf : name
inbound-interface name : leaf : name
protocol : leaf : re:^(all|tcp|udp|tcp_udp|[0-9]{1,3})$
source address : leaf : ipv4|ipv4net
source port : leaf : ports
destination address : leaf : ipv4|ipv4net
destination port : leaf : ports
translation address : leaf : ipv4|ipv4net|enum:masquerade
translation port : leaf : ports
exclude : flag
disable : flag
";

fn table_lines(family: Family) -> Vec<String> {
    let mut lines: Vec<String> = TABLE.lines().map(str::to_owned).collect();
    if family.has_api_rest() {
        lines.extend(TABLE_1_5.lines().map(str::to_owned));
    }
    for chain in FIREWALL_CHAINS {
        if !chain.ends_with('*') {
            lines.push(format!("{chain} {CHAIN_DEFAULT_ACTION}"));
        }
        lines.extend(FIREWALL_RULE.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{chain} {l}")));
    }
    for rule in NAT_RULES {
        lines.extend(NAT_RULE.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{rule} {l}")));
    }
    lines.retain(|l| !l.trim().is_empty());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn schema() -> Schema {
        Schema::for_family(Family::Rolling).unwrap()
    }

    #[test]
    fn every_family_builds() {
        for f in [Family::Sagitta, Family::Circinus, Family::Rolling, Family::Dozenos] {
            Schema::for_family(f).unwrap();
        }
        let sagitta = Schema::for_family(Family::Sagitta).unwrap();
        assert_eq!(sagitta.resolve(&words("service https api rest"), Mode::Set), Err(PathError::NotValid));
        assert!(schema().resolve(&words("service https api rest"), Mode::Set).is_ok());
    }

    #[test]
    fn resolves_leaf_values_and_tags() {
        let s = schema();
        let r = s.resolve(&words("interfaces ethernet eth0 address 192.0.2.1/24"), Mode::Set).unwrap();
        assert_eq!(r.path, words("interfaces ethernet eth0 address"));
        assert_eq!(r.value.as_deref(), Some("192.0.2.1/24"));
        assert!(r.multi);
        let r = s.resolve(&words("system host-name r1"), Mode::Set).unwrap();
        assert!(!r.multi);
        let r = s.resolve(&words("interfaces ethernet eth0 disable"), Mode::Set).unwrap();
        assert_eq!((r.path.len(), r.value), (4, None));
        let r = s.resolve(&words("firewall ipv4 name WAN rule 10 action drop"), Mode::Set).unwrap();
        assert_eq!(r.value.as_deref(), Some("drop"));
        assert!(s.is_tag(&["interfaces", "ethernet"]));
        assert!(!s.is_tag(&["interfaces", "ethernet", "eth0"]));
        assert!(s.is_tag(&["interfaces", "wireguard", "wg0", "peer"]));
        assert!(s.is_multi(&["interfaces", "wireguard", "wg0", "peer", "p1", "allowed-ips"]));
    }

    #[test]
    fn rejects_bad_paths_and_values() {
        let s = schema();
        assert_eq!(s.resolve(&words("interfaces bogus x"), Mode::Set), Err(PathError::NotValid));
        assert_eq!(s.resolve(&words("system host-name a b"), Mode::Set), Err(PathError::NotValid));
        assert_eq!(s.resolve(&words("interfaces ethernet eth0 disable x"), Mode::Set), Err(PathError::NotValid));
        assert_eq!(s.resolve(&words("system host-name"), Mode::Set), Err(PathError::RequiresValue));
        assert_eq!(s.resolve(&words("interfaces ethernet"), Mode::Set), Err(PathError::RequiresValue));
        assert!(s.resolve(&words("interfaces ethernet"), Mode::Delete).is_ok());
        let bad = s.resolve(&words("interfaces ethernet eth0 mtu 20"), Mode::Set).unwrap_err();
        assert_eq!(
            bad,
            PathError::BadValue {
                value: "20".into(),
                node: words("interfaces ethernet eth0 mtu"),
                expected: "a number between 68 and 16000".into()
            }
        );
        assert!(matches!(s.resolve(&words("interfaces ethernet foo"), Mode::Set), Err(PathError::BadValue { .. })));
        // Values are not checked on delete.
        assert!(s.resolve(&words("interfaces ethernet eth0 mtu 20"), Mode::Delete).is_ok());
    }

    #[test]
    fn value_checks() {
        let v = |spec: &str, value: &str| Validator::parse(spec).unwrap().accepts(value);
        assert!(v("hostname", "r1.example"));
        assert!(!v("hostname", "-r1"));
        assert!(!v("hostname", "a_b"));
        assert!(v("ipv4net", "192.0.2.0/24"));
        assert!(!v("ipv4net", "192.0.2.1/24"));
        assert!(!v("ipv4net", "192.0.2.0/33"));
        assert!(v("ipv4net", "0.0.0.0/0"));
        assert!(v("ipv4prefix", "192.0.2.1/24"));
        assert!(!v("ipv4prefix", "192.0.2.1"));
        assert!(v("ipv6net", "2001:db8::/32"));
        assert!(!v("ipv6net", "2001:db8::1/32"));
        assert!(v("range:1-4294967295", "4294967295"));
        assert!(!v("range:1-4294967295", "0"));
        assert!(!v("range:1-10", "+5"));
        assert!(v("ipv4prefix|enum:dhcp,dhcpv6", "dhcpv6"));
        assert!(v("wgkey", "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="));
        assert!(v("timezone", "Europe/Berlin"));
        assert!(v("timezone", "UTC"));
        assert!(!v("timezone", "Not a zone"));
        assert!(v("ipv4|re:^[0-9.]+-[0-9.]+$", "10.0.0.1-10.0.0.9"));
    }
}
