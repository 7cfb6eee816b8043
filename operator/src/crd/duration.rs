//! Go-style duration strings (`90s`, `1m30s`, `500ms`, `2h`), as in the predecessor's
//! `metav1.Duration` fields.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pattern a duration string must match (also the CRD schema's `pattern`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$";

/// A duration written the Go way. Parsed with [`parse_duration`]; invalid strings are refused
/// by the CRD schema and by [`GoDuration::get`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(transparent)]
pub struct GoDuration(#[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$"))] pub String);

impl GoDuration {
    /// A duration string.
    pub fn new(text: impl Into<String>) -> Self {
        GoDuration(text.into())
    }

    /// The parsed duration.
    pub fn get(&self) -> Result<Duration, String> {
        parse_duration(&self.0)
    }
}

impl From<&str> for GoDuration {
    fn from(s: &str) -> Self {
        GoDuration(s.to_owned())
    }
}

/// Parses a Go duration string: a sequence of decimal numbers, each with a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), or `0`. Negative durations are refused (no field
/// accepts them). At most 10 000 hours.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (expected e.g. \"90s\", \"1m30s\", \"500ms\")");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) if !i.is_empty() && !f.is_empty() && !f.contains('.') => (i, f),
            Some(_) => return Err(bad()),
            None => (num, ""),
        };
        let int: u128 = int.parse().map_err(|_| bad())?;
        let mut part = int.checked_mul(scale).ok_or_else(bad)?;
        // Fractions: keep at most 9 digits (nanosecond resolution is all there is).
        let frac = &frac[..frac.len().min(9)];
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            let denom = 10u128.pow(frac.len() as u32);
            part += digits * scale / denom;
        }
        total_nanos = total_nanos.checked_add(part).ok_or_else(bad)?;
        if total_nanos > 10_000 * 3_600_000_000_000 {
            return Err(format!("duration {text:?} is longer than 10000h"));
        }
        rest = tail;
    }
    let secs = (total_nanos / 1_000_000_000) as u64;
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the Go way (`1m30s`, `250ms`, `0s`), for status messages.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_millis();
        if ms > 0 && d.as_nanos().is_multiple_of(1_000_000) {
            return format!("{ms}ms");
        }
        return format!("{}ns", d.as_nanos());
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let millis = d.subsec_millis();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 || (h > 0 && (s > 0 || millis > 0)) {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || millis > 0 {
        if millis > 0 {
            // f64's shortest round-trip form: 1.5, 1.02, 10.5.
            let v = s as f64 + f64::from(millis) / 1000.0;
            out.push_str(&format!("{v}s"));
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("1h2m3s4ms", Duration::new(3723, 4_000_000)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_bad_durations() {
        for text in ["", "s", "10", "-1s", "1x", "1.s", ".5s", "1..5s", "1s2", "10001h", "1 s", "1.2.3s"] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in ["0", "10s", "1m30s", "1.5s", "250µs", "1h2m3s4ms"] {
            assert!(re.is_match(text) && parse_duration(text).is_ok(), "{text}");
        }
        for text in ["", "s", "10", "-1s", "1x", ".5s", "1 s"] {
            assert!(!re.is_match(text) && parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_go_durations() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(3601)), "1h0m1s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(61_020)), "1m1.02s");
    }
}
