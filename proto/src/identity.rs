//! Router identities: `<namespace>/<name>` of the router's VRouterTarget.
//!
//! In certificates the identity is a URI subject alternative name,
//! `spiffe://vrouter.kojuro.date/ns/<namespace>/router/<name>` (SPIFFE-style, so standard
//! tooling can read it), with the plain `<namespace>/<name>` as the common name for humans.

use std::fmt;
use std::str::FromStr;

/// The trust domain in identity URIs.
pub const TRUST_DOMAIN: &str = "vrouter.kojuro.date";

/// A router's identity: the namespace and name of its target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterId {
    namespace: String,
    name: String,
}

/// Why a string is not a router identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// A Kubernetes DNS label (namespaces): lowercase alphanumerics and `-`, ≤ 63 characters.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes DNS subdomain (object names): labels separated by `.`, ≤ 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl RouterId {
    /// A router identity; both parts must be valid Kubernetes names.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, IdentityError> {
        let (namespace, name) = (namespace.into(), name.into());
        if !is_dns_label(&namespace) {
            return Err(IdentityError(format!("invalid namespace {namespace:?}: must be a DNS label")));
        }
        if !is_dns_subdomain(&name) {
            return Err(IdentityError(format!("invalid router name {name:?}: must be a DNS subdomain")));
        }
        Ok(RouterId { namespace, name })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<namespace>_<name>`: the identity as one file or directory name (simulated routers'
    /// state directories, applied records, PKI items). Injective: `_` can occur in neither a
    /// DNS label nor a DNS subdomain, so the first `_` is the separator, whereas `-` (once used
    /// here) is legal in both and made `a-b/c` and `a/b-c` share one directory. Neither part can
    /// be `.`/`..` or contain `/`, so the name stays inside the directory it is joined to.
    pub fn file_name(&self) -> String {
        format!("{}_{}", self.namespace, self.name)
    }

    /// The identity URI written into certificates.
    pub fn uri(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}/ns/{}/router/{}", self.namespace, self.name)
    }

    /// Reads an identity URI.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix("spiffe://")
            .and_then(|r| r.strip_prefix(TRUST_DOMAIN))
            .and_then(|r| r.strip_prefix("/ns/"))
            .ok_or_else(|| IdentityError(format!("{uri:?} is not a vrouter identity URI")))?;
        let (namespace, name) = rest
            .split_once("/router/")
            .ok_or_else(|| IdentityError(format!("{uri:?} is not a vrouter identity URI")))?;
        RouterId::new(namespace, name)
    }
}

impl fmt::Display for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for RouterId {
    type Err = IdentityError;

    /// Parses `<namespace>/<name>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) =
            s.split_once('/').ok_or_else(|| IdentityError(format!("{s:?} is not <namespace>/<name>")))?;
        RouterId::new(namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_format_uri() {
        let id: RouterId = "edge/branch-1".parse().unwrap();
        assert_eq!(id.namespace(), "edge");
        assert_eq!(id.name(), "branch-1");
        assert_eq!(id.to_string(), "edge/branch-1");
        assert_eq!(id.uri(), "spiffe://vrouter.kojuro.date/ns/edge/router/branch-1");
        assert_eq!(RouterId::from_uri(&id.uri()).unwrap(), id);
        assert_eq!(RouterId::new("a", "b.c-d").unwrap().to_string(), "a/b.c-d");
    }

    #[test]
    fn file_names_are_unambiguous() {
        let a = RouterId::new("a-b", "c").unwrap();
        let b = RouterId::new("a", "b-c").unwrap();
        assert_eq!(a.file_name(), "a-b_c");
        assert_eq!(b.file_name(), "a_b-c");
        assert_ne!(a.file_name(), b.file_name());
        // The first `_` splits it back.
        let (ns, name) = b.file_name().split_once('_').map(|(n, m)| (n.to_owned(), m.to_owned())).unwrap();
        assert_eq!(RouterId::new(ns, name).unwrap(), b);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "x", "/x", "x/", "X/y", "a/b/c", "a b/c", "-a/b", "a/-b"] {
            assert!(bad.parse::<RouterId>().is_err(), "{bad}");
        }
        assert!(RouterId::from_uri("spiffe://evil.example/ns/a/router/b").is_err());
        assert!(RouterId::from_uri("spiffe://vrouter.kojuro.date/ns/a/router/../b").is_err());
        assert!(RouterId::new("a".repeat(64), "b").is_err());
    }
}
