//! VyOS's natural sort order for node names and values.
//!
//! VyOS sorts configuration children with `lexical_numeric_compare`, a C routine in its config
//! library: the two strings are walked in step; where both have a digit, the digit runs compare
//! as numbers; elsewhere bytes compare; a shorter string wins a tie. So `eth2 < eth10`,
//! `rule 5 < rule 10`, `x1 < x01`, and `-` < `.` < digits < letters. Digit runs are
//! accumulated in a C `int` and wrap around, so numbers ≥ 2^31 sort as negative: `4200000000`
//! sorts before `100`. That quirk decides where 32-bit ASNs appear in VyOS's own output, so it
//! is reproduced.
//!
//! The C routine is not a total order: it fails outright for some inputs (`a01b` vs `a1b`) and
//! is not transitive for others (`00` < `0-0` < `0.` yet `00` > `0.`). Sorting with such a
//! comparator is unsound, so this module orders strings by a *key* that gives the same answer
//! as VyOS for every realistic name — interface names, addresses, numbers, ASNs, words — and is
//! total by construction:
//!
//! 1. the string as a sequence of items: each non-digit byte is an item, each maximal run of
//!    digits is one item valued as a wrapping 32-bit number; items order as bytes below `0`,
//!    then numbers (by value), then bytes above `9`; a sequence that is a prefix of another
//!    sorts first;
//! 2. then the shorter string;
//! 3. then plain byte order.

use std::cmp::Ordering;

/// One item of the sort key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    /// A non-digit byte below `0`.
    Low(u8),
    /// A digit run, as VyOS's wrapping `int`.
    Number(i32),
    /// A non-digit byte above `9`.
    High(u8),
}

struct Items<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Iterator for Items<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let b = *self.s.get(self.pos)?;
        if b.is_ascii_digit() {
            let mut n: i32 = 0;
            while let Some(&d) = self.s.get(self.pos).filter(|d| d.is_ascii_digit()) {
                n = n.wrapping_mul(10).wrapping_add(i32::from(d - b'0'));
                self.pos += 1;
            }
            Some(Item::Number(n))
        } else {
            self.pos += 1;
            Some(if b < b'0' { Item::Low(b) } else { Item::High(b) })
        }
    }
}

/// Compares two names or values in VyOS's natural order (a total order; equal only for
/// identical strings).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b {
        return Ordering::Equal;
    }
    let mut ia = Items { s: a, pos: 0 };
    let mut ib = Items { s: b, pos: 0 };
    loop {
        match (ia.next(), ib.next()) {
            (Some(x), Some(y)) => match x.cmp(&y) {
                Ordering::Equal => {}
                other => return other,
            },
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => break,
        }
    }
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A port of VyOS's C routine, for checking agreement. `None` where the C code fails;
    /// `Some(Equal)` where it calls different strings equal.
    fn vyos_reference(s1: &[u8], s2: &[u8]) -> Option<Ordering> {
        if s1 == s2 {
            return Some(Ordering::Equal);
        }
        let (mut len1, mut len2) = (s1.len(), s2.len());
        let mut len = len1.min(len2);
        let (mut i1, mut i2, mut p1, mut p2, mut pos) = (0usize, 0usize, 0usize, 0usize, 0usize);
        loop {
            while pos < len && !(s1[i1].is_ascii_digit() && s2[i2].is_ascii_digit()) {
                i1 += 1;
                i2 += 1;
                pos += 1;
            }
            if pos > 0 {
                match s1[p1..p1 + pos].cmp(&s2[p2..p2 + pos]) {
                    Ordering::Equal => {}
                    other => return Some(other),
                }
                if pos == len {
                    return Some(len1.cmp(&len2));
                }
            }
            len -= pos;
            len1 -= pos;
            len2 -= pos;
            let (mut n1, mut n2, mut q1, mut q2) = (0i32, 0i32, 0usize, 0usize);
            while q1 < len1 && s1[i1].is_ascii_digit() {
                n1 = n1.wrapping_mul(10).wrapping_add(i32::from(s1[i1] - b'0'));
                i1 += 1;
                q1 += 1;
            }
            while q2 < len2 && s2[i2].is_ascii_digit() {
                n2 = n2.wrapping_mul(10).wrapping_add(i32::from(s2[i2] - b'0'));
                i2 += 1;
                q2 += 1;
            }
            match n1.cmp(&n2) {
                Ordering::Equal => {}
                other => return Some(other),
            }
            if q1 == len1 || q2 == len2 {
                return Some(len1.cmp(&len2));
            }
            if q1 != q2 {
                return None;
            }
            pos = q1;
            p1 = i1;
            p2 = i2;
            len -= pos;
            len1 -= pos;
            len2 -= pos;
            pos = 0;
        }
    }

    fn sorted(items: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| compare(a, b));
        v
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(sorted(&["eth10", "eth2", "eth1"]), ["eth1", "eth2", "eth10"]);
        assert_eq!(sorted(&["10", "15", "2", "1"]), ["1", "2", "10", "15"]);
        assert_eq!(sorted(&["192.0.2.10", "192.0.2.9", "192.0.2.100"]), ["192.0.2.9", "192.0.2.10", "192.0.2.100"]);
        assert_eq!(sorted(&["eth0.10", "eth0", "eth0.9"]), ["eth0", "eth0.9", "eth0.10"]);
    }

    #[test]
    fn bytes_order_outside_numbers() {
        // Uppercase before lowercase; '-' < '.' < digits < letters.
        assert_eq!(sorted(&["x1", "b10", "b.9", "b-2", "X"]), ["X", "b-2", "b.9", "b10", "x1"]);
    }

    #[test]
    fn shorter_wins_numeric_tie() {
        assert_eq!(compare("x1", "x01"), Ordering::Less);
        assert_eq!(compare("x01", "x1"), Ordering::Greater);
        assert_eq!(compare("a", "a1"), Ordering::Less);
        assert_eq!(compare("", "a"), Ordering::Less);
    }

    #[test]
    fn numbers_wrap_like_a_c_int() {
        // 2147483648 and 4200000000 overflow to negative numbers and sort before 100.
        assert_eq!(
            sorted(&["100", "2147483647", "4200000000", "2147483648"]),
            ["2147483648", "4200000000", "100", "2147483647"]
        );
    }

    #[test]
    fn equal_only_when_identical() {
        assert_eq!(compare("eth0", "eth0"), Ordering::Equal);
        assert_ne!(compare("0", "00"), Ordering::Equal);
    }

    /// Realistic names: wherever VyOS's routine gives an answer, ours is the same.
    #[test]
    fn agrees_with_vyos_on_realistic_names() {
        let names = [
            "eth0",
            "eth1",
            "eth2",
            "eth10",
            "eth0.10",
            "eth0.9",
            "eth0.100",
            "bond0",
            "br10",
            "wg0",
            "lo",
            "dum0",
            "tun10",
            "vti1",
            "pppoe0",
            "192.0.2.1",
            "192.0.2.10",
            "192.0.2.9",
            "10.0.0.0/8",
            "10.0.0.0/24",
            "10.10.0.0/16",
            "2001:db8::1",
            "2001:db8::10",
            "2001:db8:1::/48",
            "fe80::/10",
            "0.0.0.0/0",
            "::/0",
            "1",
            "2",
            "5",
            "10",
            "15",
            "100",
            "1000",
            "65001",
            "65535",
            "4200000000",
            "4294967295",
            "2147483647",
            "2147483648",
            "WAN_IN",
            "WAN-LOCAL",
            "LAN_IN",
            "all",
            "any",
            "local7",
            "vyos",
            "r1",
            "r2",
            "r10",
            "host-1",
            "host-10",
            "a",
            "A",
            "b-2",
            "b.9",
            "b10",
            "x1",
            "x01",
            "ttyS0",
            "ttyS1",
            "ipv4-unicast",
            "ipv6-unicast",
            "l2vpn-evpn",
            "00:11:22:33:44:55",
        ];
        for a in names {
            for b in names {
                if let Some(expected) = vyos_reference(a.as_bytes(), b.as_bytes())
                    && expected != Ordering::Equal
                {
                    assert_eq!(compare(a, b), expected, "{a} vs {b}");
                }
            }
        }
    }

    /// Every string of up to 4 characters over an alphabet with digits, a letter and bytes
    /// below '0': the sorted list must be consistent pairwise, i.e. the order is total and
    /// transitive (Rust's sort may panic on a comparator that is not).
    #[test]
    fn exhaustively_total_on_small_strings() {
        let alphabet = ['0', '1', '9', 'a', '.', '-'];
        let mut all = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            all.extend(next.iter().cloned());
            frontier = next;
        }
        // Insertion sort never panics, whatever the comparator.
        let mut sorted: Vec<&String> = Vec::new();
        for s in &all {
            let at = sorted.partition_point(|x| compare(x, s) == Ordering::Less);
            sorted.insert(at, s);
        }
        for i in 0..sorted.len() {
            for j in i + 1..sorted.len() {
                assert_eq!(compare(sorted[i], sorted[j]), Ordering::Less, "{:?} vs {:?}", sorted[i], sorted[j]);
            }
        }
    }

    proptest! {
        #[test]
        fn antisymmetric_and_consistent(a in "[a-c0-9.-]{0,8}", b in "[a-c0-9.-]{0,8}") {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
            prop_assert_eq!(compare(&a, &b) == Ordering::Equal, a == b);
        }
    }
}
