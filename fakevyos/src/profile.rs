//! Version profiles: which VyOS family the fake root pretends to be, and what that changes.
//!
//! | family | commit-confirm revert | merge CLI | `service https api rest` | session env |
//! |---|---|---|---|---|
//! | sagitta (1.4) | reboot only | `FILE [path…]` | absent | — |
//! | circinus (1.5) | reboot only | `FILE [path…]` | present | — |
//! | rolling | reload if `system config-management commit-confirm action reload`, else reboot | `FILE [--destructive]` | present | `SESSION_PID`, `_OFR_CONFIGURE` expected |
//! | dozenos | as rolling | as rolling | present | as rolling |

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files;
use crate::layout::Root;

/// A VyOS release family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// VyOS 1.4 LTS.
    Sagitta,
    /// VyOS 1.5.
    Circinus,
    /// VyOS rolling (2025+).
    Rolling,
    /// DozenOS, treated as a rebuild of rolling with its own version string.
    Dozenos,
}

impl Family {
    /// Parses a profile name.
    pub fn parse(name: &str) -> Result<Family> {
        match name {
            "sagitta" => Ok(Family::Sagitta),
            "circinus" => Ok(Family::Circinus),
            "rolling" => Ok(Family::Rolling),
            "dozenos" => Ok(Family::Dozenos),
            other => {
                Err(Error::Usage(format!("unknown profile {other:?} (expected sagitta, circinus, rolling or dozenos)")))
            }
        }
    }

    /// The profile name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Sagitta => "sagitta",
            Family::Circinus => "circinus",
            Family::Rolling => "rolling",
            Family::Dozenos => "dozenos",
        }
    }

    /// Whether commit-confirm can revert by reloading (`revert_soft`) instead of rebooting.
    pub fn soft_revert(self) -> bool {
        matches!(self, Family::Rolling | Family::Dozenos)
    }

    /// Whether the legacy config session is expected to carry `SESSION_PID` and `_OFR_CONFIGURE`.
    pub fn expects_session_pid(self) -> bool {
        matches!(self, Family::Rolling | Family::Dozenos)
    }

    /// Whether `vyos-merge-config.py` takes config paths (old CLI) instead of `--destructive`.
    pub fn old_merge_cli(self) -> bool {
        matches!(self, Family::Sagitta | Family::Circinus)
    }

    /// Whether `service https api rest` exists.
    pub fn has_api_rest(self) -> bool {
        !matches!(self, Family::Sagitta)
    }

    fn default_version(self) -> &'static str {
        match self {
            Family::Sagitta => "1.4.3",
            Family::Circinus => "1.5.0",
            Family::Rolling => "2026.11.01-0019-rolling",
            Family::Dozenos => "2026.11.01-dozen",
        }
    }

    fn components(self) -> &'static str {
        match self {
            Family::Sagitta => COMPONENTS_1_4,
            _ => COMPONENTS_1_5,
        }
    }
}

/// Component versions shaped like VyOS 1.4's `CONFIG_FILE_VERSION` (fake numbers).
const COMPONENTS_1_4: &str = "bgp@5:broadcast-relay@1:cluster@2:config-management@1:conntrack@5:\
conntrack-sync@2:container@2:dhcp-relay@2:dhcp-server@8:dhcpv6-server@1:dns-dynamic@4:dns-forwarding@4:\
firewall@15:flow-accounting@1:https@6:ids@1:interfaces@32:ipoe-server@3:ipsec@13:isis@3:l2tp@9:lldp@2:\
mdns@1:monitoring@1:nat@8:nat66@3:ntp@3:openconnect@3:ospf@2:pim@1:policy@8:pppoe-server@10:pptp@5:qos@2:\
quagga@11:rip@1:rpki@2:salt@1:snmp@3:ssh@2:sstp@6:system@27:vrf@3:vrrp@4:vyos-accel-ppp@2:wanloadbalance@3:\
webproxy@2";

/// Component versions shaped like VyOS 1.5 / rolling (fake numbers).
const COMPONENTS_1_5: &str = "bgp@6:broadcast-relay@1:cluster@2:config-management@1:conntrack@6:\
conntrack-sync@2:container@3:dhcp-relay@2:dhcp-server@11:dhcpv6-server@6:dns-dynamic@4:dns-forwarding@4:\
firewall@19:flow-accounting@2:https@7:ids@1:interfaces@33:ipoe-server@4:ipsec@13:isis@3:l2tp@9:lldp@3:\
mdns@1:monitoring@2:nat@8:nat66@3:ntp@3:openconnect@3:openvpn@4:ospf@2:pim@2:policy@9:pppoe-server@11:\
pptp@5:qos@3:quagga@12:reverse-proxy@2:rip@1:rpki@2:salt@1:snmp@3:ssh@2:sstp@6:system@29:vrf@3:vrrp@4:\
vyos-accel-ppp@2:wanloadbalance@4:webproxy@2";

/// The profile of a fake root, stored in `ROOT/fake/profile.json` (tests may edit it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The release family.
    pub family: Family,
    /// The release version (`VERSION_ID`, `Release version:` in the footer).
    pub version: String,
    /// The `vyos-config-version` component string of the footer.
    pub component_versions: String,
}

impl Profile {
    /// The default profile of a family, optionally with a custom version string.
    pub fn new(family: Family, version: Option<String>) -> Profile {
        Profile {
            family,
            version: version.unwrap_or_else(|| family.default_version().to_owned()),
            component_versions: family.components().to_owned(),
        }
    }

    /// Reads the profile of a fake root.
    pub fn load(root: &Root) -> Result<Profile> {
        let path = root.profile_file();
        let Some(text) = files::read_optional(&path)? else {
            return Err(Error::Corrupt(format!(
                "{} is not a fakevyos root (no {}; run `fakevyos install` first)",
                root.dir().display(),
                path.display()
            )));
        };
        serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Writes the profile of a fake root.
    pub fn store(&self, root: &Root) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Corrupt(e.to_string()))?;
        files::write_atomic(&root.profile_file(), text.as_bytes())
    }

    /// The three-line version footer `vyos-save-config.py` writes (no trailing newline).
    pub fn footer(&self) -> String {
        format!(
            "// Warning: Do not remove the following line.\n// vyos-config-version: \"{}\"\n// Release version: {}",
            self.component_versions, self.version
        )
    }

    /// `/etc/os-release`.
    pub fn os_release(&self) -> String {
        let v = &self.version;
        match self.family {
            Family::Dozenos => format!(
                "PRETTY_NAME=\"DozenOS {v}\"\nNAME=\"DozenOS\"\nVERSION_ID=\"{v}\"\nVERSION=\"{v}\"\n\
                 VERSION_CODENAME=dozenos\nID=dozenos\nID_LIKE=vyos\nHOME_URL=\"https://example.invalid/dozenos\"\n"
            ),
            family => {
                let code = family.name();
                format!(
                    "PRETTY_NAME=\"VyOS {v} ({code})\"\nNAME=\"VyOS\"\nVERSION_ID=\"{v}\"\nVERSION=\"{v} ({code})\"\n\
                     VERSION_CODENAME={code}\nID=vyos\nHOME_URL=\"https://vyos.io\"\nSUPPORT_URL=\"https://support.vyos.io\"\n\
                     BUG_REPORT_URL=\"https://vyos.dev\"\n"
                )
            }
        }
    }

    /// `/usr/share/vyos/version.json`.
    pub fn version_json(&self) -> String {
        let train = match self.family {
            Family::Rolling | Family::Dozenos => "current",
            family => family.name(),
        };
        let value = serde_json::json!({
            "version": self.version,
            "flavor": "generic",
            "built_by": "fakevyos",
            "built_on": "Sun 01 Nov 2026 00:19 UTC",
            "build_uuid": "00000000-0000-4000-8000-000000000000",
            "build_commit": "0000000000000",
            "release_train": train,
            "lts_build": matches!(self.family, Family::Sagitta | Family::Circinus),
            "architecture": "amd64",
            "bugtracker_url": "https://vyos.dev",
            "documentation_url": "https://docs.vyos.io",
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_shape() {
        let p = Profile::new(Family::Sagitta, None);
        let footer = p.footer();
        let lines: Vec<&str> = footer.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "// Warning: Do not remove the following line.");
        assert!(lines[1].starts_with("// vyos-config-version: \"bgp@5:"));
        assert_eq!(lines[2], "// Release version: 1.4.3");
        // The component string matches VyOS's own parse regex `[\w@:-]+`.
        assert!(p.component_versions.chars().all(|c| c.is_alphanumeric() || "_@:-".contains(c)));
    }

    #[test]
    fn os_release_ids() {
        assert!(Profile::new(Family::Rolling, None).os_release().contains("ID=vyos\n"));
        assert!(Profile::new(Family::Rolling, None).os_release().contains("VERSION_ID=\"2026.11.01-0019-rolling\""));
        let d = Profile::new(Family::Dozenos, Some("12.0".into()));
        assert!(d.os_release().contains("ID=dozenos\n"));
        assert!(d.os_release().contains("VERSION_ID=\"12.0\""));
    }
}
