//! Secret placeholders: how secret values stay out of rendered objects.
//!
//! A template calls `secret("name", "key")`; rendering writes the placeholder
//! `@@vrouter-secret:name/key@@` and records the reference in [`Rendered::secrets`](super::Rendered).
//! The rendered text (stored in VRouterConfig objects, shown in diffs and status) therefore never
//! contains the value. Only when a revision is delivered does [`substitute`] replace each placeholder
//! with the value from the Kubernetes Secret of that name in the target's namespace, and anything
//! that might echo delivered text back (router errors, logs) goes through a [`Redactor`].
//!
//! Values are substituted into configuration text as they are, so [`substitute`] refuses values
//! that could break out of a quoted VyOS value: control characters (newline, carriage return,
//! tab, NUL, ...), double and single quotes and backslashes; and empty values, which are almost
//! always a mistake. Such a value makes the delivery fail with a [`SubstituteError::UnsafeValue`]
//! naming the secret and key (never the value).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use minijinja::{Error, ErrorKind, State};
use serde::Serialize;

/// What every placeholder starts with.
pub const PLACEHOLDER_PREFIX: &str = "@@vrouter-secret:";
/// What every placeholder ends with.
pub const PLACEHOLDER_SUFFIX: &str = "@@";
/// Secret values shorter than this (in characters) are not redacted by a [`Redactor`]: they would
/// match ordinary text all over a configuration and make it unreadable, while hiding little.
pub const MIN_REDACTED_LEN: usize = 4;
/// What [`Redactor::new`] replaces secret values with.
pub const REDACTED: &str = "***";

/// A reference to one key of a Kubernetes Secret in the target's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SecretRef {
    /// The Secret's name (a DNS-1123 subdomain).
    pub name: String,
    /// The key inside the Secret's data (`[-._a-zA-Z0-9]+`).
    pub key: String,
}

impl SecretRef {
    /// Validates a name and key and makes a reference of them.
    pub fn new(name: &str, key: &str) -> Result<SecretRef, InvalidSecretRef> {
        if !is_valid_secret_name(name) {
            return Err(InvalidSecretRef::Name(name.to_string()));
        }
        if !is_valid_secret_key(key) {
            return Err(InvalidSecretRef::Key(key.to_string()));
        }
        Ok(SecretRef { name: name.to_string(), key: key.to_string() })
    }

    /// The placeholder that stands for this secret in rendered text: `@@vrouter-secret:name/key@@`.
    pub fn placeholder(&self) -> String {
        format!("{PLACEHOLDER_PREFIX}{}/{}{PLACEHOLDER_SUFFIX}", self.name, self.key)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.key)
    }
}

/// A secret name or key that Kubernetes would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecretRef {
    /// Not a DNS-1123 subdomain.
    #[error(
        "{0:?} is not a valid Secret name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
    )]
    Name(String),
    /// Not a valid data key.
    #[error("{0:?} is not a valid Secret key (letters, digits, '-', '_' and '.', at most 253 characters)")]
    Key(String),
}

/// Whether `name` is a DNS-1123 subdomain, the form Kubernetes requires for Secret names.
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            matches!((bytes.first(), bytes.last()), (Some(a), Some(z)) if alnum(a) && alnum(z))
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        })
}

/// Whether `key` is a valid Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.`
/// or `..`.
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Calls `f` with the byte range and reference of every well-formed placeholder in `text`.
/// Text that starts like a placeholder but does not hold a valid name and key is left alone.
fn scan(text: &str, mut f: impl FnMut(std::ops::Range<usize>, SecretRef)) {
    let mut from = 0;
    while let Some(offset) = text[from..].find(PLACEHOLDER_PREFIX) {
        let start = from + offset;
        let body_start = start + PLACEHOLDER_PREFIX.len();
        let parsed = text[body_start..].find(PLACEHOLDER_SUFFIX).and_then(|len| {
            let body = &text[body_start..body_start + len];
            let (name, key) = body.split_once('/')?;
            let secret = SecretRef::new(name, key).ok()?;
            Some((body_start + len + PLACEHOLDER_SUFFIX.len(), secret))
        });
        match parsed {
            Some((end, secret)) => {
                f(start..end, secret);
                from = end;
            }
            None => from = body_start,
        }
    }
}

/// Every secret whose placeholder appears in `text`.
pub fn placeholders(text: &str) -> BTreeSet<SecretRef> {
    let mut found = BTreeSet::new();
    scan(text, |_, secret| {
        found.insert(secret);
    });
    found
}

/// Why [`substitute`] failed. It never contains the secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    /// The lookup had no value for this secret and key.
    #[error("secret {:?} has no key {:?} (or the Secret does not exist)", .0.name, .0.key)]
    Missing(SecretRef),
    /// The value cannot be placed in a VyOS configuration value.
    #[error(
        "secret {:?} key {:?}: the value {reason}, which cannot be placed in a VyOS configuration value",
        secret.name,
        secret.key
    )]
    UnsafeValue {
        /// The secret.
        secret: SecretRef,
        /// What is wrong, e.g. "contains a newline".
        reason: &'static str,
    },
}

/// The error of [`substitute`] under the name the rest of the operator knows it by.
pub type MissingSecret = SubstituteError;

impl SubstituteError {
    /// The secret concerned.
    pub fn secret(&self) -> &SecretRef {
        match self {
            SubstituteError::Missing(secret) | SubstituteError::UnsafeValue { secret, .. } => secret,
        }
    }
}

/// Checks that a secret value can be put between quotes in a VyOS configuration as it is.
fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    for c in value.chars() {
        let reason = match c {
            '\n' => "contains a newline",
            '\r' => "contains a carriage return",
            '"' => "contains a double quote",
            '\'' => "contains a single quote",
            '\\' => "contains a backslash",
            c if c.is_control() => "contains a control character",
            _ => continue,
        };
        return Err(reason);
    }
    Ok(())
}

/// Replaces every placeholder in `text` with the value `lookup` returns for it.
///
/// `lookup` is called once per distinct secret. The first secret without a value, or with a value
/// that is unsafe in a VyOS configuration (see the [module documentation](self)), is the error.
/// Malformed placeholders are not placeholders and stay as they are.
pub fn substitute(text: &str, lookup: impl Fn(&SecretRef) -> Option<String>) -> Result<String, SubstituteError> {
    let mut values: BTreeMap<SecretRef, String> = BTreeMap::new();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut failure = None;
    scan(text, |range, secret| {
        if failure.is_some() {
            return;
        }
        if !values.contains_key(&secret) {
            match lookup(&secret) {
                None => {
                    failure = Some(SubstituteError::Missing(secret));
                    return;
                }
                Some(value) => {
                    if let Err(reason) = check_value(&value) {
                        failure = Some(SubstituteError::UnsafeValue { secret, reason });
                        return;
                    }
                    values.insert(secret.clone(), value);
                }
            }
        }
        out.push_str(&text[copied..range.start]);
        if let Some(value) = values.get(&secret) {
            out.push_str(value);
        }
        copied = range.end;
    });
    if let Some(err) = failure {
        return Err(err);
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// Hides secret values in text that may contain them (router error messages, logs, diffs of
/// delivered text).
///
/// Every occurrence of every value is replaced, longest value first, so a value that contains
/// another is hidden as a whole. Values shorter than [`MIN_REDACTED_LEN`] characters are ignored
/// (they would match ordinary words); keep secrets long. Its `Debug` output never shows a value.
#[derive(Clone, Default)]
pub struct Redactor {
    /// (value, replacement), longest value first.
    entries: Vec<(String, String)>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("values", &self.entries.len()).finish()
    }
}

impl Redactor {
    /// A redactor that replaces each of `values` with `***`.
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        Redactor::build(values.into_iter().map(|v| (v, REDACTED.to_string())))
    }

    /// A redactor that replaces each value with `<redacted:name/key>`, naming its secret.
    pub fn with_refs(values: impl IntoIterator<Item = (SecretRef, String)>) -> Redactor {
        Redactor::build(values.into_iter().map(|(secret, v)| (v, format!("<redacted:{secret}>"))))
    }

    /// A redactor that replaces each value with the given text (e.g. the secret's placeholder).
    pub fn replacing(values: impl IntoIterator<Item = (String, String)>) -> Redactor {
        Redactor::build(values.into_iter())
    }

    fn build(entries: impl Iterator<Item = (String, String)>) -> Redactor {
        let mut entries: Vec<(String, String)> =
            entries.filter(|(value, _)| value.chars().count() >= MIN_REDACTED_LEN).collect();
        // Longest first; among equal values the first one given wins (stable sort, then dedup).
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        let mut seen = BTreeSet::new();
        entries.retain(|(value, _)| seen.insert(value.clone()));
        Redactor { entries }
    }

    /// Whether this redactor has nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        if self.entries.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'outer: while let Some(c) = rest.chars().next() {
            for (value, replacement) in &self.entries {
                if rest.starts_with(value.as_str()) {
                    out.push_str(replacement);
                    rest = &rest[value.len()..];
                    continue 'outer;
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

/// The secrets a render asked for, kept in the render's [`State`].
#[derive(Debug, Default)]
pub(crate) struct UsedSecrets(pub(crate) BTreeSet<SecretRef>);

/// The `secret(name, key)` template function: validates, records and returns the placeholder.
pub(crate) fn secret_function(state: &mut State<'_, '_>, name: &str, key: &str) -> Result<String, Error> {
    let secret = SecretRef::new(name, key)
        .map_err(|err| Error::new(ErrorKind::InvalidOperation, format!("secret({name:?}, {key:?}): {err}")))?;
    let placeholder = secret.placeholder();
    state.get_or_insert_extension(UsedSecrets::default()).0.insert(secret);
    Ok(placeholder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sref(name: &str, key: &str) -> SecretRef {
        SecretRef::new(name, key).unwrap()
    }

    #[test]
    fn placeholder_format() {
        assert_eq!(sref("bgp-peers", "password").placeholder(), "@@vrouter-secret:bgp-peers/password@@");
        assert_eq!(sref("a.b", "x_y.z-1").to_string(), "a.b/x_y.z-1");
    }

    #[test]
    fn names_are_validated() {
        for ok in ["a", "bgp", "bgp-peers", "a.b.c", "0abc", "a-1.b-2", &"a".repeat(253)] {
            assert!(is_valid_secret_name(ok), "{ok}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a..b", ".a", "a.", "a/b", "a b", "é", &"a".repeat(254)] {
            assert!(!is_valid_secret_name(bad), "{bad}");
        }
        assert!(matches!(SecretRef::new("Bad", "k"), Err(InvalidSecretRef::Name(_))));
    }

    #[test]
    fn keys_are_validated() {
        for ok in ["k", "password", "tls.crt", "A_b-c.D", "...", ".hidden", &"k".repeat(253)] {
            assert!(is_valid_secret_key(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a@b", "ü", &"k".repeat(254)] {
            assert!(!is_valid_secret_key(bad), "{bad}");
        }
        assert!(matches!(SecretRef::new("ok", "a/b"), Err(InvalidSecretRef::Key(_))));
    }

    #[test]
    fn placeholders_are_found() {
        let text = "a @@vrouter-secret:s1/k1@@ b @@vrouter-secret:s2/k.2@@@@vrouter-secret:s1/k1@@\n";
        assert_eq!(placeholders(text), BTreeSet::from([sref("s1", "k1"), sref("s2", "k.2")]));
        assert!(placeholders("nothing here").is_empty());
    }

    #[test]
    fn malformed_placeholders_are_ignored() {
        for text in [
            "@@vrouter-secret:",
            "@@vrouter-secret:s1/k1",
            "@@vrouter-secret:S1/k1@@",
            "@@vrouter-secret:s1@@",
            "@@vrouter-secret:s1/@@",
            "@@vrouter-secret:/k@@",
            "@@vrouter-secret:s1/k/x@@",
        ] {
            assert!(placeholders(text).is_empty(), "{text}");
            assert_eq!(substitute(text, |_| Some("value".into())).unwrap(), text);
        }
        // A malformed one does not hide a good one after it.
        assert_eq!(placeholders("@@vrouter-secret:BAD @@vrouter-secret:good/k@@"), BTreeSet::from([sref("good", "k")]));
    }

    #[test]
    fn substitute_replaces_every_occurrence() {
        let text = "password '@@vrouter-secret:s/p@@'\nkey @@vrouter-secret:t/k@@ again @@vrouter-secret:s/p@@\n";
        let calls = std::cell::Cell::new(0);
        let out = substitute(text, |r| {
            calls.set(calls.get() + 1);
            Some(format!("value-of-{}-{}", r.name, r.key))
        })
        .unwrap();
        assert_eq!(out, "password 'value-of-s-p'\nkey value-of-t-k again value-of-s-p\n");
        assert_eq!(calls.get(), 2, "one lookup per distinct secret");
        assert_eq!(substitute("plain", |_| None).unwrap(), "plain");
    }

    #[test]
    fn substitute_missing_names_the_secret() {
        let err = substitute("x @@vrouter-secret:s/ok@@ @@vrouter-secret:s/gone@@", |r| {
            (r.key == "ok").then(|| "fine-value".to_string())
        })
        .unwrap_err();
        assert_eq!(err, SubstituteError::Missing(sref("s", "gone")));
        assert_eq!(err.to_string(), "secret \"s\" has no key \"gone\" (or the Secret does not exist)");
        assert_eq!(err.secret(), &sref("s", "gone"));
    }

    #[test]
    fn substitute_rejects_unsafe_values() {
        for (value, reason) in [
            ("a\nb", "contains a newline"),
            ("a\rb", "contains a carriage return"),
            ("a\"b", "contains a double quote"),
            ("it's", "contains a single quote"),
            ("a\\nb", "contains a backslash"),
            ("a\tb", "contains a control character"),
            ("a\0b", "contains a control character"),
            ("", "is empty"),
        ] {
            let err = substitute("@@vrouter-secret:s/k@@", |_| Some(value.to_string())).unwrap_err();
            assert_eq!(err, SubstituteError::UnsafeValue { secret: sref("s", "k"), reason }, "{value:?}");
            let message = err.to_string();
            assert!(message.contains(reason) && message.contains("\"s\""), "{message}");
            if value.len() > 2 {
                assert!(!message.contains(value), "the message must not show the value: {message}");
            }
        }
        // Ordinary password characters are fine.
        let ok = "P@ss w0rd!#$%&()*+,-./:;<=>?[]^_`{|}~é";
        assert_eq!(substitute("@@vrouter-secret:s/k@@", |_| Some(ok.to_string())).unwrap(), ok);
    }

    #[test]
    fn redactor_hides_values() {
        let r = Redactor::new(["hunter22".to_string(), "s3cr3t-key".to_string()]);
        assert_eq!(r.redact("pw hunter22 and s3cr3t-key, hunter22!"), "pw *** and ***, ***!");
        assert_eq!(r.redact("nothing"), "nothing");
        assert!(!r.is_empty());
        assert_eq!(format!("{r:?}"), "Redactor { values: 2 }");
    }

    #[test]
    fn redactor_longest_first() {
        let r = Redactor::with_refs([(sref("a", "short"), "abcd".to_string()), (sref("a", "long"), "abcdefgh".into())]);
        assert_eq!(r.redact("abcdefgh abcd abcdX"), "<redacted:a/long> <redacted:a/short> <redacted:a/short>X");
    }

    #[test]
    fn redactor_ignores_short_values_and_duplicates() {
        let r = Redactor::new(["".to_string(), "abc".to_string(), "abcd".to_string(), "abcd".to_string()]);
        assert_eq!(r.redact("abc abcd"), "abc ***");
        assert!(Redactor::new(Vec::<String>::new()).is_empty());
        assert!(Redactor::new(["x".to_string()]).is_empty());
    }

    #[test]
    fn redactor_handles_unicode() {
        let r = Redactor::new(["pässwörd".to_string()]);
        assert_eq!(r.redact("é pässwörd ü"), "é *** ü");
    }

    #[test]
    fn substitute_then_redact_round_trip() {
        let text = "set protocols bgp neighbor 10.0.0.1 password '@@vrouter-secret:bgp/pw@@'";
        let delivered = substitute(text, |_| Some("Very-Secret-1".into())).unwrap();
        assert!(delivered.contains("Very-Secret-1"));
        let r = Redactor::with_refs([(sref("bgp", "pw"), "Very-Secret-1".to_string())]);
        assert_eq!(r.redact(&delivered), "set protocols bgp neighbor 10.0.0.1 password '<redacted:bgp/pw>'");
    }
}
