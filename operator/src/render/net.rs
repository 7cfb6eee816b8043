//! Network helpers for templates: addresses, prefixes, hosts and subnets, IPv4 and IPv6.
//!
//! Every helper takes a CIDR string (`"10.0.0.1/24"`, `"2001:db8::1/64"`) or a bare address (read as
//! `/32` or `/128`) and is registered both as a function and as a filter, so
//! `{{ address(wan.cidr) }}` and `{{ wan.cidr | address }}` are the same. `is_ipv4`/`is_ipv6` are
//! also tests (`{% if x is ipv6 %}`).
//!
//! | helper | result for `"10.1.2.3/24"` |
//! |---|---|
//! | `address(c)` | `"10.1.2.3"` |
//! | `prefixlen(c)` | `24` |
//! | `netmask(c)` | `"255.255.255.0"` |
//! | `network(c)` | `"10.1.2.0/24"` |
//! | `broadcast(c)` | `"10.1.2.255"` (IPv6: the last address of the prefix) |
//! | `host(c, n)` | n-th usable host: `host(c, 1)` = `"10.1.2.1"`, `host(c, -1)` = `"10.1.2.254"` |
//! | `host_cidr(c, n)` | the same with the prefix length: `"10.1.2.1/24"` |
//! | `subnet(c, newlen, n)` | n-th (from 0; negative from the end) `/newlen` inside `c`: `subnet(c, 26, 1)` = `"10.1.2.64/26"` |
//! | `is_ipv4(x)`, `is_ipv6(x)` | whether `x` is a string holding an address or CIDR of that family |
//!
//! Usable hosts: IPv4 excludes the network and broadcast addresses, except in a `/31` (both
//! addresses, RFC 3021) and a `/32` (the single address). IPv6 excludes only the subnet-router
//! anycast address (the first one), except in a `/127` (both, RFC 6164) and a `/128`. Host numbers
//! start at 1; `-1` is the last usable host. Anything out of range is an error naming the call.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

/// Registers every helper as a function and a filter, and the `ipv4`/`ipv6` tests.
pub(crate) fn register(env: &mut Environment<'_>) {
    env.add_function("address", address);
    env.add_filter("address", address);
    env.add_function("prefixlen", prefixlen);
    env.add_filter("prefixlen", prefixlen);
    env.add_function("netmask", netmask);
    env.add_filter("netmask", netmask);
    env.add_function("network", network);
    env.add_filter("network", network);
    env.add_function("broadcast", broadcast);
    env.add_filter("broadcast", broadcast);
    env.add_function("host", host);
    env.add_filter("host", host);
    env.add_function("host_cidr", host_cidr);
    env.add_filter("host_cidr", host_cidr);
    env.add_function("subnet", subnet);
    env.add_filter("subnet", subnet);
    env.add_function("is_ipv4", is_ipv4);
    env.add_filter("is_ipv4", is_ipv4);
    env.add_function("is_ipv6", is_ipv6);
    env.add_filter("is_ipv6", is_ipv6);
    env.add_test("ipv4", is_ipv4);
    env.add_test("ipv6", is_ipv6);
}

/// An address with a prefix length, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    v6: bool,
    addr: u128,
    len: u8,
}

impl Net {
    fn parse(input: &str) -> Option<Net> {
        if let Ok(net) = input.parse::<IpNet>() {
            return Some(Net::from_parts(net.addr(), net.prefix_len()));
        }
        let addr = input.parse::<IpAddr>().ok()?;
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Some(Net::from_parts(addr, len))
    }

    fn from_parts(addr: IpAddr, len: u8) -> Net {
        match addr {
            IpAddr::V4(a) => Net { v6: false, addr: u128::from(u32::from(a)), len },
            IpAddr::V6(a) => Net { v6: true, addr: u128::from(a), len },
        }
    }

    fn bits(self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    fn host_bits(self) -> u8 {
        self.bits() - self.len
    }

    fn hostmask(self) -> u128 {
        low_bits(self.host_bits())
    }

    fn netmask(self) -> u128 {
        low_bits(self.bits()) & !self.hostmask()
    }

    fn network(self) -> u128 {
        self.addr & self.netmask()
    }

    fn last(self) -> u128 {
        self.network() | self.hostmask()
    }

    fn fmt_addr(self, value: u128) -> String {
        if self.v6 {
            Ipv6Addr::from(value).to_string()
        } else {
            // Values are always within 32 bits for IPv4 (masked with `low_bits(32)`).
            Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)).to_string()
        }
    }

    /// The first usable host and how many there are.
    fn hosts(self) -> (u128, u128) {
        let hb = self.host_bits();
        match (self.v6, hb) {
            (_, 0) => (self.network(), 1),
            (_, 1) => (self.network(), 2),
            (false, _) => (self.network() + 1, low_bits(hb) - 1),
            // 2^hb - 1 addresses after the subnet-router anycast address; for hb = 128 that is u128::MAX.
            (true, _) => (self.network() + 1, low_bits(hb)),
        }
    }
}

/// A number with the lowest `n` bits set (`n` ≤ 128).
fn low_bits(n: u8) -> u128 {
    match n {
        0 => 0,
        n if n >= 128 => u128::MAX,
        n => (1u128 << n) - 1,
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

fn parse<'a>(function: &str, cidr: &'a Value) -> Result<(Net, &'a str), Error> {
    let text = cidr.as_str().ok_or_else(|| {
        invalid(format!("{function}({cidr}): expected a string with an IP address or CIDR prefix, got {}", cidr.kind()))
    })?;
    let net =
        Net::parse(text).ok_or_else(|| invalid(format!("{function}({text:?}): not an IP address or CIDR prefix")))?;
    Ok((net, text))
}

/// Resolves a 1-based (or negative, from the end) position among `count` items to a 0-based index.
fn position(n: i64, count: Option<u128>) -> Option<u128> {
    let magnitude = u128::from(n.unsigned_abs());
    if n > 0 {
        let index = magnitude - 1;
        match count {
            Some(c) if index >= c => None,
            _ => Some(index),
        }
    } else {
        match count {
            Some(c) if magnitude > c => None,
            Some(c) => Some(c - magnitude),
            // 2^128 items: index = 2^128 - magnitude, which fits since magnitude ≥ 1.
            None => Some(u128::MAX - (magnitude - 1)),
        }
    }
}

fn address(cidr: &Value) -> Result<String, Error> {
    let (net, _) = parse("address", cidr)?;
    Ok(net.fmt_addr(net.addr))
}

fn prefixlen(cidr: &Value) -> Result<u8, Error> {
    Ok(parse("prefixlen", cidr)?.0.len)
}

fn netmask(cidr: &Value) -> Result<String, Error> {
    let (net, _) = parse("netmask", cidr)?;
    Ok(net.fmt_addr(net.netmask()))
}

fn network(cidr: &Value) -> Result<String, Error> {
    let (net, _) = parse("network", cidr)?;
    Ok(format!("{}/{}", net.fmt_addr(net.network()), net.len))
}

fn broadcast(cidr: &Value) -> Result<String, Error> {
    let (net, _) = parse("broadcast", cidr)?;
    Ok(net.fmt_addr(net.last()))
}

fn nth_host(function: &str, cidr: &Value, n: i64) -> Result<(Net, u128), Error> {
    let (net, cidr) = parse(function, cidr)?;
    let (first, count) = net.hosts();
    if n == 0 {
        return Err(invalid(format!(
            "{function}({cidr:?}, 0): host numbers start at 1 (-1 is the last host); use network() for the network address"
        )));
    }
    let index = position(n, Some(count)).ok_or_else(|| {
        let plural = if count == 1 { "" } else { "s" };
        invalid(format!("{function}({cidr:?}, {n}): out of range, subnet has {count} host{plural}"))
    })?;
    Ok((net, first + index))
}

fn host(cidr: &Value, n: i64) -> Result<String, Error> {
    let (net, addr) = nth_host("host", cidr, n)?;
    Ok(net.fmt_addr(addr))
}

fn host_cidr(cidr: &Value, n: i64) -> Result<String, Error> {
    let (net, addr) = nth_host("host_cidr", cidr, n)?;
    Ok(format!("{}/{}", net.fmt_addr(addr), net.len))
}

fn subnet(cidr: &Value, newlen: i64, n: i64) -> Result<String, Error> {
    let (net, cidr) = parse("subnet", cidr)?;
    let call = format!("subnet({cidr:?}, {newlen}, {n})");
    let newlen = match u8::try_from(newlen) {
        Ok(l) if l >= net.len && l <= net.bits() => l,
        _ => {
            return Err(invalid(format!("{call}: new prefix length must be between {} and {}", net.len, net.bits())));
        }
    };
    let extra = newlen - net.len;
    let count = if extra >= 128 { None } else { Some(1u128 << extra) };
    // Subnets are numbered from 0, so shift positive numbers by one for `position`.
    let index = if n >= 0 { n.checked_add(1).and_then(|p| position(p, count)) } else { position(n, count) };
    let Some(index) = index else {
        let mut message = format!("{call}: out of range, ");
        match count {
            // Never reached (an i64 cannot exceed 2^128), kept for completeness.
            None => message.push_str("there are 2^128 subnets"),
            Some(c) => {
                let _ = write!(message, "{cidr} has {c} /{newlen} subnet{}", if c == 1 { "" } else { "s" });
            }
        }
        return Err(invalid(message));
    };
    let shift = net.bits() - newlen;
    let offset = if shift >= 128 { 0 } else { index << shift };
    Ok(format!("{}/{newlen}", net.fmt_addr(net.network() + offset)))
}

fn family(value: &Value) -> Option<bool> {
    value.as_str().and_then(Net::parse).map(|n| n.v6)
}

fn is_ipv4(value: Value) -> bool {
    family(&value) == Some(false)
}

fn is_ipv6(value: Value) -> bool {
    family(&value) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::UndefinedBehavior;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        register(&mut env);
        env
    }

    fn v(s: &str) -> Value {
        Value::from(s)
    }

    fn r(src: &str) -> String {
        env().render_str(src, ()).unwrap()
    }

    fn err(src: &str) -> String {
        let e = env().render_str(src, ()).unwrap_err();
        e.detail().unwrap_or_default().to_string()
    }

    #[test]
    fn address_and_prefixlen() {
        assert_eq!(address(&v("10.1.2.3/24")).unwrap(), "10.1.2.3");
        assert_eq!(address(&v("10.1.2.3")).unwrap(), "10.1.2.3");
        assert_eq!(address(&v("2001:db8::1/64")).unwrap(), "2001:db8::1");
        assert_eq!(address(&v("2001:DB8:0::1")).unwrap(), "2001:db8::1");
        assert_eq!(prefixlen(&v("10.1.2.3/24")).unwrap(), 24);
        assert_eq!(prefixlen(&v("10.1.2.3")).unwrap(), 32);
        assert_eq!(prefixlen(&v("2001:db8::/48")).unwrap(), 48);
        assert_eq!(prefixlen(&v("::1")).unwrap(), 128);
        assert_eq!(r("{{ address('10.0.0.1/24') }} {{ '10.0.0.1/24' | prefixlen }}"), "10.0.0.1 24");
        assert_eq!(r("{{ prefixlen('10.0.0.1/24') + 1 }}"), "25");
    }

    #[test]
    fn netmask_network_broadcast_v4() {
        assert_eq!(netmask(&v("10.0.0.1/24")).unwrap(), "255.255.255.0");
        assert_eq!(netmask(&v("10.0.0.1/0")).unwrap(), "0.0.0.0");
        assert_eq!(netmask(&v("10.0.0.1/32")).unwrap(), "255.255.255.255");
        assert_eq!(netmask(&v("10.0.0.1/20")).unwrap(), "255.255.240.0");
        assert_eq!(network(&v("10.1.2.3/24")).unwrap(), "10.1.2.0/24");
        assert_eq!(network(&v("10.1.2.3/0")).unwrap(), "0.0.0.0/0");
        assert_eq!(network(&v("10.1.2.3")).unwrap(), "10.1.2.3/32");
        assert_eq!(broadcast(&v("10.1.2.3/24")).unwrap(), "10.1.2.255");
        assert_eq!(broadcast(&v("10.1.2.3/31")).unwrap(), "10.1.2.3");
        assert_eq!(broadcast(&v("0.0.0.0/0")).unwrap(), "255.255.255.255");
    }

    #[test]
    fn netmask_network_broadcast_v6() {
        assert_eq!(netmask(&v("2001:db8::1/64")).unwrap(), "ffff:ffff:ffff:ffff::");
        assert_eq!(netmask(&v("2001:db8::1/0")).unwrap(), "::");
        assert_eq!(netmask(&v("2001:db8::1/128")).unwrap(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(network(&v("2001:db8:1:2::5/48")).unwrap(), "2001:db8:1::/48");
        assert_eq!(network(&v("::/0")).unwrap(), "::/0");
        assert_eq!(broadcast(&v("2001:db8::/64")).unwrap(), "2001:db8::ffff:ffff:ffff:ffff");
    }

    #[test]
    fn hosts_v4() {
        assert_eq!(host(&v("10.0.0.0/24"), 1).unwrap(), "10.0.0.1");
        assert_eq!(host(&v("10.0.0.77/24"), 5).unwrap(), "10.0.0.5");
        assert_eq!(host(&v("10.0.0.0/24"), 254).unwrap(), "10.0.0.254");
        assert_eq!(host(&v("10.0.0.0/24"), -1).unwrap(), "10.0.0.254");
        assert_eq!(host(&v("10.0.0.0/24"), -254).unwrap(), "10.0.0.1");
        assert_eq!(host(&v("10.0.0.0/30"), 2).unwrap(), "10.0.0.2");
        assert_eq!(host(&v("10.0.0.0/31"), 1).unwrap(), "10.0.0.0");
        assert_eq!(host(&v("10.0.0.0/31"), 2).unwrap(), "10.0.0.1");
        assert_eq!(host(&v("10.0.0.0/31"), -1).unwrap(), "10.0.0.1");
        assert_eq!(host(&v("10.0.0.9/32"), 1).unwrap(), "10.0.0.9");
        assert_eq!(host(&v("10.0.0.9/32"), -1).unwrap(), "10.0.0.9");
        assert_eq!(host(&v("0.0.0.0/0"), -1).unwrap(), "255.255.255.254");
        assert_eq!(host_cidr(&v("10.0.0.0/24"), 5).unwrap(), "10.0.0.5/24");
        assert_eq!(host_cidr(&v("10.0.0.0/31"), 2).unwrap(), "10.0.0.1/31");
    }

    #[test]
    fn hosts_v6() {
        assert_eq!(host(&v("2001:db8::/64"), 1).unwrap(), "2001:db8::1");
        assert_eq!(host(&v("2001:db8::/64"), 256).unwrap(), "2001:db8::100");
        assert_eq!(host(&v("2001:db8::/64"), -1).unwrap(), "2001:db8::ffff:ffff:ffff:ffff");
        assert_eq!(host(&v("2001:db8::/127"), 1).unwrap(), "2001:db8::");
        assert_eq!(host(&v("2001:db8::/127"), 2).unwrap(), "2001:db8::1");
        assert_eq!(host(&v("2001:db8::5/128"), 1).unwrap(), "2001:db8::5");
        assert_eq!(host(&v("::/0"), -1).unwrap(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(host(&v("::/0"), 1).unwrap(), "::1");
        assert_eq!(host(&v("::/0"), i64::MIN).unwrap(), Ipv6Addr::from(u128::MAX - (1u128 << 63) + 1).to_string());
        assert_eq!(host_cidr(&v("2001:db8::/64"), 10).unwrap(), "2001:db8::a/64");
    }

    #[test]
    fn host_errors() {
        assert_eq!(
            host(&v("10.0.0.0/30"), 5).unwrap_err().detail(),
            Some("host(\"10.0.0.0/30\", 5): out of range, subnet has 2 hosts")
        );
        assert_eq!(
            host(&v("10.0.0.0/30"), -3).unwrap_err().detail(),
            Some("host(\"10.0.0.0/30\", -3): out of range, subnet has 2 hosts")
        );
        assert_eq!(
            host_cidr(&v("10.0.0.1/32"), 2).unwrap_err().detail(),
            Some("host_cidr(\"10.0.0.1/32\", 2): out of range, subnet has 1 host")
        );
        assert_eq!(
            host(&v("2001:db8::/127"), 3).unwrap_err().detail(),
            Some("host(\"2001:db8::/127\", 3): out of range, subnet has 2 hosts")
        );
        assert!(host(&v("10.0.0.0/24"), 0).unwrap_err().detail().unwrap().contains("host numbers start at 1"));
        assert_eq!(
            host(&v("nonsense"), 1).unwrap_err().detail(),
            Some("host(\"nonsense\"): not an IP address or CIDR prefix")
        );
        assert_eq!(err("{{ host('10.0.0.0/30', 5) }}"), "host(\"10.0.0.0/30\", 5): out of range, subnet has 2 hosts");
    }

    #[test]
    fn subnets() {
        assert_eq!(subnet(&v("10.0.0.0/16"), 24, 0).unwrap(), "10.0.0.0/24");
        assert_eq!(subnet(&v("10.0.0.0/16"), 24, 5).unwrap(), "10.0.5.0/24");
        assert_eq!(subnet(&v("10.0.0.0/16"), 24, -1).unwrap(), "10.0.255.0/24");
        assert_eq!(subnet(&v("10.0.0.0/16"), 24, 255).unwrap(), "10.0.255.0/24");
        assert_eq!(subnet(&v("10.1.2.3/24"), 26, 1).unwrap(), "10.1.2.64/26");
        assert_eq!(subnet(&v("10.1.2.3/24"), 24, 0).unwrap(), "10.1.2.0/24");
        assert_eq!(subnet(&v("10.1.2.3/24"), 32, -1).unwrap(), "10.1.2.255/32");
        assert_eq!(subnet(&v("0.0.0.0/0"), 32, -1).unwrap(), "255.255.255.255/32");
        assert_eq!(subnet(&v("2001:db8::/32"), 48, 1).unwrap(), "2001:db8:1::/48");
        assert_eq!(subnet(&v("2001:db8::/32"), 64, 65536).unwrap(), "2001:db8:1::/64");
        assert_eq!(subnet(&v("2001:db8::/32"), 48, -1).unwrap(), "2001:db8:ffff::/48");
        assert_eq!(subnet(&v("::/0"), 128, -1).unwrap(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
        assert_eq!(subnet(&v("::/0"), 128, 5).unwrap(), "::5/128");
        assert_eq!(subnet(&v("::/0"), 0, 0).unwrap(), "::/0");
        assert_eq!(r("{{ '10.0.0.0/16' | subnet(24, 3) }}"), "10.0.3.0/24");
    }

    #[test]
    fn subnet_errors() {
        assert_eq!(
            subnet(&v("10.0.0.0/16"), 24, 256).unwrap_err().detail(),
            Some("subnet(\"10.0.0.0/16\", 24, 256): out of range, 10.0.0.0/16 has 256 /24 subnets")
        );
        assert_eq!(
            subnet(&v("10.0.0.0/16"), 24, -257).unwrap_err().detail(),
            Some("subnet(\"10.0.0.0/16\", 24, -257): out of range, 10.0.0.0/16 has 256 /24 subnets")
        );
        assert_eq!(
            subnet(&v("10.0.0.0/16"), 8, 0).unwrap_err().detail(),
            Some("subnet(\"10.0.0.0/16\", 8, 0): new prefix length must be between 16 and 32")
        );
        assert!(subnet(&v("10.0.0.0/16"), 33, 0).is_err());
        assert!(subnet(&v("2001:db8::/32"), 129, 0).is_err());
        assert!(subnet(&v("2001:db8::/32"), -1, 0).is_err());
        assert!(subnet(&v("x"), 24, 0).unwrap_err().detail().unwrap().contains("not an IP address"));
    }

    #[test]
    fn family_checks() {
        assert!(is_ipv4(Value::from("10.0.0.1")));
        assert!(is_ipv4(Value::from("10.0.0.0/8")));
        assert!(!is_ipv4(Value::from("2001:db8::1")));
        assert!(is_ipv6(Value::from("2001:db8::1")));
        assert!(is_ipv6(Value::from("2001:db8::/32")));
        assert!(!is_ipv6(Value::from("10.0.0.1")));
        assert!(!is_ipv4(Value::from("eth0")));
        assert!(!is_ipv4(Value::from(42)));
        assert!(!is_ipv6(Value::from(())));
        assert_eq!(
            r("{{ is_ipv4('10.0.0.1') }} {{ '::1' | is_ipv6 }} {{ 'x' is ipv4 }} {{ '::1/64' is ipv6 }}"),
            "True True False True"
        );
    }

    #[test]
    fn bad_input_errors_name_the_call() {
        for (src, msg) in [
            ("{{ address('10.0.0.256') }}", "address(\"10.0.0.256\"): not an IP address or CIDR prefix"),
            ("{{ 'x/24' | prefixlen }}", "prefixlen(\"x/24\"): not an IP address or CIDR prefix"),
            ("{{ netmask('10.0.0.0/33') }}", "netmask(\"10.0.0.0/33\"): not an IP address or CIDR prefix"),
            ("{{ network('') }}", "network(\"\"): not an IP address or CIDR prefix"),
            ("{{ broadcast('::1/129') }}", "broadcast(\"::1/129\"): not an IP address or CIDR prefix"),
        ] {
            assert_eq!(err(src), msg, "{src}");
        }
        assert_eq!(
            err("{{ address(5) }}"),
            "address(5): expected a string with an IP address or CIDR prefix, got number"
        );
        assert_eq!(
            err("{{ none | network }}"),
            "network(None): expected a string with an IP address or CIDR prefix, got none"
        );
        // Wrong types for numbers are minijinja's own errors.
        assert!(env().render_str("{{ host('10.0.0.0/24', 'x') }}", ()).is_err());
    }
}
