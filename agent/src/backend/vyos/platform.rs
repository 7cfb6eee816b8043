//! What router this is (pure parsing of the files VyOS keeps): version family, commit-confirm
//! revert mode, unsupported setups.

use std::collections::BTreeMap;

use vrouter_proto::v1::OsInfo;

/// VyOS release families, which differ in how commit-confirm reverts (vyos.md §1, §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// 1.4: the confirm timer reverts by rebooting (all unsaved commits are lost).
    Sagitta,
    /// 1.5: reboot revert (as of the reference snapshot).
    Circinus,
    /// Rolling releases: reboot or reload revert (`system config-management commit-confirm action`).
    Rolling,
    /// DozenOS: treated as rolling.
    Dozen,
}

impl Family {
    /// The family's name as reported in `OsInfo.family`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Sagitta => "sagitta",
            Family::Circinus => "circinus",
            Family::Rolling => "rolling",
            Family::Dozen => "dozenos",
        }
    }

    /// Whether the config-mgmt of this family can revert by reloading (soft revert).
    pub fn soft_revert(self) -> bool {
        matches!(self, Family::Rolling | Family::Dozen)
    }
}

/// Parses `/etc/os-release` (`KEY=value` lines, values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').trim_matches('\'').to_owned()))
        .collect()
}

/// Works out the platform from os-release and `version.json`'s `version` (if any).
pub fn detect(os_release: &str, version_json: Option<&str>) -> Result<(Family, OsInfo), String> {
    let os = parse_os_release(os_release);
    let id = os.get("ID").cloned().unwrap_or_default();
    let version = version_json
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v.get("version").and_then(|s| s.as_str()).map(str::to_owned))
        .or_else(|| os.get("VERSION_ID").cloned())
        .unwrap_or_default();
    let family = match id.as_str() {
        "dozenos" => Family::Dozen,
        "vyos" if version.starts_with("1.4") => Family::Sagitta,
        "vyos" if version.starts_with("1.5") => Family::Circinus,
        "vyos" if version.contains("rolling") || version.starts_with("20") || version.starts_with("1.6") => {
            Family::Rolling
        }
        "vyos" if version.starts_with("1.3") || version.starts_with("1.2") => {
            return Err(format!("VyOS {version} is not supported (1.4 or later is required)"));
        }
        "vyos" => return Err(format!("unrecognised VyOS version {version:?}")),
        other => return Err(format!("not a VyOS router (os-release ID {other:?})")),
    };
    let info = OsInfo {
        id,
        version,
        pretty_name: os.get("PRETTY_NAME").cloned().unwrap_or_default(),
        family: family.name().to_owned(),
        kernel: String::new(),
        hostname: String::new(),
    };
    Ok((family, info))
}

/// Whether the vyos-configd environment file switches the shim on (`export vyshim=…`).
pub fn configd_active(env_file: Option<&str>) -> bool {
    env_file.is_some_and(|t| t.lines().any(|l| l.trim_start().starts_with("export vyshim=") && l.trim().len() > 14))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        let f = |os: &str, v: Option<&str>| detect(os, v).map(|(f, _)| f);
        assert_eq!(f("ID=vyos\nVERSION_ID=\"1.4.3\"\n", None), Ok(Family::Sagitta));
        assert_eq!(f("ID=vyos\n", Some(r#"{"version": "1.5.0"}"#)), Ok(Family::Circinus));
        assert_eq!(f("ID=vyos\n", Some(r#"{"version": "2026.11.01-0019-rolling"}"#)), Ok(Family::Rolling));
        assert_eq!(f("ID=dozenos\nVERSION_ID=7\n", None), Ok(Family::Dozen));
        assert!(f("ID=vyos\nVERSION_ID=1.3.8\n", None).unwrap_err().contains("1.4 or later"));
        assert!(f("ID=debian\nVERSION_ID=12\n", None).unwrap_err().contains("not a VyOS router"));
        let (_, info) =
            detect("ID=vyos\nPRETTY_NAME=\"VyOS 1.4.3 (sagitta)\"\n", Some(r#"{"version":"1.4.3"}"#)).unwrap();
        assert_eq!((info.version.as_str(), info.family.as_str()), ("1.4.3", "sagitta"));
        assert_eq!(info.pretty_name, "VyOS 1.4.3 (sagitta)");
        assert!(!Family::Sagitta.soft_revert() && Family::Rolling.soft_revert());
    }

    #[test]
    fn configd() {
        assert!(configd_active(Some("export vyshim=/usr/sbin/vyshim\n")));
        assert!(!configd_active(Some("export vyshim=\n")));
        assert!(!configd_active(None));
    }
}
