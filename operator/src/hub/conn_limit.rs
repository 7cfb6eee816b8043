//! Caps on agent-endpoint connections without a verified client certificate (enrollment,
//! scanners): at most so many per source and in all. A [`Permit`] is held for the connection's
//! lifetime and gives its place back when dropped.
//!
//! Sources are IPv4 addresses and IPv6 /64 networks (one IPv6 host usually owns a whole /64, so
//! counting single addresses would not bound it).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;

/// Why a connection did not get a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// Its source already holds the most connections one source may hold.
    PerSource,
    /// All sources together hold the most connections allowed.
    Total,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Counts unauthenticated connections per source and in all.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    per_source: usize,
    total: usize,
    counts: Mutex<Counts>,
    open: Gauge,
}

impl ConnLimiter {
    /// A limiter allowing `per_source` connections per source and `total` in all; `open` follows
    /// the number of permits held.
    pub(crate) fn new(per_source: usize, total: usize, open: Gauge) -> Arc<Self> {
        Arc::new(ConnLimiter { per_source, total, counts: Mutex::default(), open })
    }

    /// A permit for one more connection from `ip`, or which limit it would exceed.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Exceeded> {
        let source = source_of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let from_source = counts.by_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.per_source {
            return Err(Exceeded::PerSource);
        }
        if counts.total >= self.total {
            return Err(Exceeded::Total);
        }
        counts.total += 1;
        counts.by_source.insert(source, from_source + 1);
        self.open.set(i64::try_from(counts.total).unwrap_or(i64::MAX));
        Ok(Permit { limiter: self.clone(), source })
    }

    /// Permits held now: (from `ip`'s source, in all).
    #[cfg(test)]
    pub(crate) fn held(&self, ip: IpAddr) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (counts.by_source.get(&source_of(ip)).copied().unwrap_or(0), counts.total)
    }

    fn release(&self, source: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        // Sources with no connection left are forgotten: the map stays as small as what is open.
        if let Some(n) = counts.by_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_source.remove(&source);
            }
        }
        self.open.set(i64::try_from(counts.total).unwrap_or(i64::MAX));
    }
}

/// One connection's place in the limiter; given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<ConnLimiter>,
    source: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.source);
    }
}

/// The source a connection is counted under: the IPv4 address (also when IPv4-mapped), or the
/// IPv6 /64.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_source_then_total_and_permits_give_their_place_back() {
        let gauge = Gauge::default();
        let limiter = ConnLimiter::new(2, 3, gauge.clone());
        let a1 = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        let a2 = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(limiter.try_acquire(ip("192.0.2.1")).unwrap_err(), Exceeded::PerSource);
        let b1 = limiter.try_acquire(ip("192.0.2.2")).unwrap();
        assert_eq!(gauge.get(), 3);
        // Total full: another source is refused for the total, a full source still for itself.
        assert_eq!(limiter.try_acquire(ip("192.0.2.3")).unwrap_err(), Exceeded::Total);
        assert_eq!(limiter.try_acquire(ip("192.0.2.1")).unwrap_err(), Exceeded::PerSource);
        assert_eq!(limiter.held(ip("192.0.2.1")), (2, 3));
        drop(a1);
        assert_eq!(limiter.held(ip("192.0.2.1")), (1, 2));
        let c1 = limiter.try_acquire(ip("192.0.2.3")).unwrap();
        assert_eq!(limiter.try_acquire(ip("192.0.2.1")).unwrap_err(), Exceeded::Total);
        drop((a2, b1, c1));
        assert_eq!(limiter.held(ip("192.0.2.1")), (0, 0));
        assert_eq!(gauge.get(), 0);
        // Released sources are forgotten.
        assert!(limiter.counts.lock().unwrap().by_source.is_empty());
    }

    #[test]
    fn zero_allows_nothing() {
        let limiter = ConnLimiter::new(0, 10, Gauge::default());
        assert_eq!(limiter.try_acquire(ip("192.0.2.1")).unwrap_err(), Exceeded::PerSource);
        let limiter = ConnLimiter::new(10, 0, Gauge::default());
        assert_eq!(limiter.try_acquire(ip("192.0.2.1")).unwrap_err(), Exceeded::Total);
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), ip("2001:db8:1:2::"));
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let limiter = ConnLimiter::new(1, 10, Gauge::default());
        let _held = limiter.try_acquire(ip("2001:db8::1")).unwrap();
        assert_eq!(limiter.try_acquire(ip("2001:db8::2")).unwrap_err(), Exceeded::PerSource);
        let _other = limiter.try_acquire(ip("2001:db8:0:1::1")).unwrap();
        let _v4 = limiter.try_acquire(ip("192.0.2.7")).unwrap();
        assert_eq!(limiter.try_acquire(ip("::ffff:192.0.2.7")).unwrap_err(), Exceeded::PerSource);
    }
}
