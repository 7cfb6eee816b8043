//! Output: the `-o` formats, aligned tables and human ages.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::Error;

/// `-o/--output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables and text (the default).
    #[default]
    Table,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown output format {other:?}: use table, yaml or json")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Yaml => "yaml",
            Format::Json => "json",
        })
    }
}

/// `value` as YAML or JSON (with a final newline); `None` for [`Format::Table`].
pub fn structured<T: Serialize>(value: &T, format: Format) -> Result<Option<String>, Error> {
    match format {
        Format::Table => Ok(None),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).map_err(|e| Error::Output(e.to_string()))?;
            s.push('\n');
            Ok(Some(s))
        }
        Format::Yaml => serde_saphyr::to_string(value).map(Some).map_err(|e| Error::Output(e.to_string())),
    }
}

/// What a command prints: `value` as YAML or JSON, or `table()` for [`Format::Table`].
pub fn show<T: Serialize>(value: &T, format: Format, table: impl FnOnce() -> String) -> Result<String, Error> {
    Ok(match structured(value, format)? {
        Some(s) => s,
        None => table(),
    })
}

/// A table: upper-case headers, columns separated by at least three spaces (as kubectl prints),
/// no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("   ");
            }
            out.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        let mut out = out.trim_end().to_owned();
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// How long ago `then` was, as kubectl shows ages: `45s`, `12m`, `5h`, `3d` (`0s` for the
/// future, which clock skew produces).
pub fn age(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The age of a Kubernetes timestamp, `-` when absent.
pub fn age_of(t: Option<&Time>, now: SystemTime) -> String {
    t.map(|t| age(SystemTime::from(t.0), now)).unwrap_or_else(|| "-".to_owned())
}

/// A timestamp as RFC 3339, `-` when absent.
pub fn timestamp(t: Option<&Time>) -> String {
    t.map(|t| t.0.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// `s`, or `-` when empty or absent.
pub fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_themselves() {
        for f in [Format::Table, Format::Yaml, Format::Json] {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert_eq!("wide".parse::<Format>().unwrap_err(), "unknown output format \"wide\": use table, yaml or json");
    }

    #[test]
    fn tables_align_columns_without_trailing_space() {
        let t = table(&["NAME", "OK"], &[vec!["a".into(), "yes".into()], vec!["longer".into(), "-".into()]]);
        assert_eq!(t, "NAME     OK\na        yes\nlonger   -\n");
        assert_eq!(table(&["A"], &[]), "A\n");
    }

    #[test]
    fn ages_use_the_largest_sensible_unit() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s: u64| age(now - Duration::from_secs(s), now);
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(119), "119s");
        assert_eq!(ago(120), "2m");
        assert_eq!(ago(7199), "119m");
        assert_eq!(ago(7200), "2h");
        assert_eq!(ago(47 * 3600), "47h");
        assert_eq!(ago(3 * 86400 + 5), "3d");
        assert_eq!(age(now + Duration::from_secs(5), now), "0s");
        assert_eq!(age_of(None, now), "-");
    }

    #[test]
    fn structured_output() {
        let v = serde_json::json!({"a": 1});
        assert_eq!(structured(&v, Format::Table).unwrap(), None);
        assert_eq!(structured(&v, Format::Json).unwrap().unwrap(), "{\n  \"a\": 1\n}\n");
        assert_eq!(structured(&v, Format::Yaml).unwrap().unwrap(), "a: 1\n");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("x")), "x");
    }
}
