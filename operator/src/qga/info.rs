//! What the agent and the guest are: [`GuestInfo`] (`guest-info`) and [`OsInfo`]
//! (`guest-get-osinfo`, or `/etc/os-release` as a fallback).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The agent's answer to `guest-info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GuestInfo {
    /// The agent's version, e.g. `7.2.22`.
    pub version: String,
    /// The commands the agent knows.
    #[serde(rename = "supported_commands", default)]
    pub commands: Vec<GuestCommand>,
}

/// One command in [`GuestInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GuestCommand {
    /// The command name.
    pub name: String,
    /// Whether it may be called (`false` when blocked with `qemu-ga -b`).
    #[serde(default)]
    pub enabled: bool,
    /// Whether it answers (`guest-shutdown` and the suspend commands do not).
    #[serde(rename = "success-response", default = "yes")]
    pub success_response: bool,
}

fn yes() -> bool {
    true
}

impl GuestInfo {
    /// The command called `name`, if the agent knows it.
    pub fn command(&self, name: &str) -> Option<&GuestCommand> {
        self.commands.iter().find(|command| command.name == name)
    }

    /// Whether the agent knows `name` and it is enabled.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.command(name).is_some_and(|command| command.enabled)
    }
}

/// Where an [`OsInfo`] came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum OsInfoSource {
    /// The agent's `guest-get-osinfo`.
    #[default]
    Agent,
    /// The guest's os-release file, read with the file API (`guest-get-osinfo` is missing or
    /// disabled). The kernel fields are then unknown.
    OsRelease,
}

/// The guest's operating system. Every field is optional: agents and os-release files omit what
/// they do not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OsInfo {
    /// Lower-case OS id, e.g. `debian` or `vyos`.
    pub id: Option<String>,
    /// OS name, e.g. `Debian GNU/Linux`.
    pub name: Option<String>,
    /// Human-readable name with version, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub pretty_name: Option<String>,
    /// Version string, e.g. `12 (bookworm)`.
    pub version: Option<String>,
    /// Machine-readable version, e.g. `12`.
    pub version_id: Option<String>,
    /// Variant name.
    pub variant: Option<String>,
    /// Machine-readable variant.
    pub variant_id: Option<String>,
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// `uname -v`.
    pub kernel_version: Option<String>,
    /// `uname -m`.
    pub machine: Option<String>,
    /// Where this came from.
    #[serde(skip)]
    pub source: OsInfoSource,
}

impl OsInfo {
    /// Builds an [`OsInfo`] from the variables of an os-release file.
    pub fn from_os_release(vars: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| vars.get(key).filter(|value| !value.is_empty()).cloned();
        OsInfo {
            id: get("ID"),
            name: get("NAME"),
            pretty_name: get("PRETTY_NAME"),
            version: get("VERSION"),
            version_id: get("VERSION_ID"),
            variant: get("VARIANT"),
            variant_id: get("VARIANT_ID"),
            kernel_release: None,
            kernel_version: None,
            machine: None,
            source: OsInfoSource::OsRelease,
        }
    }
}

/// Parses an os-release file (`KEY=value` lines, values optionally shell-quoted, `#` comments;
/// see os-release(5)). Lines that are not assignments are ignored; invalid UTF-8 is replaced.
pub fn parse_os_release(text: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(text);
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        vars.insert(key.to_owned(), unquote(value.trim()));
    }
    vars
}

/// Removes shell quoting: `'...'` is literal, `"..."` and bare text honour backslash escapes.
fn unquote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(next @ ('"' | '\\' | '$' | '`')) => out.push(next),
                            Some(next) => {
                                out.push('\\');
                                out.push(next);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guest_info() {
        let value = serde_json::json!({
            "version": "7.2.22",
            "supported_commands": [
                {"enabled": true, "name": "guest-ping", "success-response": true},
                {"enabled": false, "name": "guest-get-osinfo", "success-response": true},
                {"enabled": true, "name": "guest-shutdown", "success-response": false},
                {"name": "guest-odd"}
            ]
        });
        let info: GuestInfo = serde_json::from_value(value).unwrap();
        assert_eq!(info.version, "7.2.22");
        assert!(info.is_enabled("guest-ping"));
        assert!(!info.is_enabled("guest-get-osinfo"));
        assert!(!info.is_enabled("guest-missing"));
        assert!(!info.command("guest-shutdown").unwrap().success_response);
        assert!(info.command("guest-odd").unwrap().success_response);
    }

    #[test]
    fn parses_agent_osinfo() {
        let value = serde_json::json!({"name": "Debian GNU/Linux", "kernel-release": "6.1.0", "version": "12 (bookworm)",
            "pretty-name": "Debian GNU/Linux 12 (bookworm)", "version-id": "12", "kernel-version": "#1 SMP",
            "machine": "x86_64", "id": "debian", "unknown-field": 1});
        let info: OsInfo = serde_json::from_value(value).unwrap();
        assert_eq!(info.id.as_deref(), Some("debian"));
        assert_eq!(info.pretty_name.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(info.version_id.as_deref(), Some("12"));
        assert_eq!(info.kernel_release.as_deref(), Some("6.1.0"));
        assert_eq!(info.variant, None);
        assert_eq!(info.source, OsInfoSource::Agent);
    }

    #[test]
    fn parses_os_release() {
        let text = br#"
# comment
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME='VyOS "rolling"'
VERSION_ID=12
VERSION="12 \"bookworm\" \$x \n"
ID=debian
HOME_URL="https://www.debian.org/"
EMPTY=
not an assignment
BAD KEY=x
ESC=a\ b
"#;
        let vars = parse_os_release(text);
        assert_eq!(vars["PRETTY_NAME"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(vars["NAME"], "VyOS \"rolling\"");
        assert_eq!(vars["VERSION_ID"], "12");
        assert_eq!(vars["VERSION"], "12 \"bookworm\" $x \\n");
        assert_eq!(vars["ESC"], "a b");
        assert_eq!(vars["EMPTY"], "");
        assert!(!vars.contains_key("BAD KEY"));
        let info = OsInfo::from_os_release(&vars);
        assert_eq!(info.id.as_deref(), Some("debian"));
        assert_eq!(info.version_id.as_deref(), Some("12"));
        assert_eq!(info.kernel_release, None);
        assert_eq!(info.source, OsInfoSource::OsRelease);
        assert_eq!(OsInfo::from_os_release(&parse_os_release(b"ID=\n")).id, None);
    }

    #[test]
    fn os_release_parsing_never_panics() {
        for text in [&b"\xff\xfe=\"\\"[..], b"A=\"unterminated", b"A='unterminated", b"A=\\", b"=", b"=x", b"\0=\0"] {
            let _ = parse_os_release(text);
        }
        assert_eq!(parse_os_release(b"A=\"x\\")["A"], "x\\");
    }
}
