//! VRRP group state from keepalived, obtained the way VyOS's own `show vrrp` obtains it
//! (`vyos.ifconfig.vrrp.VRRP.collect('json')`): read keepalived's pid file, send it its JSON
//! signal (`SIGRTMIN + 2`), read the dump it writes to `/tmp/keepalived.json`, remove the dump.
//! docs/agent.md (Status) gives the sources and why this is used instead of the op-mode script.
//!
//! The parsing is pure ([`vrrp_groups`], [`configured_groups`], [`with_config_names`]); [`dump`]
//! is the thin I/O part, bounded by a timeout.

use std::path::Path;
use std::time::{Duration, Instant};

use vrouter_proto::v1::VrrpGroupStatus;
use vyos_config::Tree;

/// keepalived's pid file as VyOS starts it (`--pid`, the systemd override of vyos-1x).
pub const PID_FILE: &str = "run/keepalived/keepalived.pid";
/// Where keepalived writes its JSON dump (its `tmp_dir`, `/tmp` on VyOS).
pub const DUMP_FILE: &str = "tmp/keepalived.json";
/// keepalived's `SIGJSON` is `SIGRTMIN + 2`.
const SIGJSON_OFFSET: i32 = 2;
/// How often the dump file is looked at while keepalived writes it.
const POLL: Duration = Duration::from_millis(20);

/// The name of keepalived's numeric instance state (`VRRP_STATE_*` in keepalived's vrrp.h).
/// 0–3 are the names VyOS's `show vrrp` prints; anything else is `UNKNOWN`, as VyOS shows it.
pub fn state_name(code: u64) -> &'static str {
    match code {
        0 => "INIT",
        1 => "BACKUP",
        2 => "MASTER",
        3 => "FAULT",
        97 => "DELETED",
        98 => "STOP",
        _ => "UNKNOWN",
    }
}

/// The instances of keepalived's JSON dump: its v1 form (a top-level array of
/// `{"data": {...}, "stats": {...}}`) and its v2 form (`{"vrrp": [...]}`). Each instance gives
/// `iname`, `ifp_ifname`, `vrid` and the numeric `state`. Text that is not such a dump gives an
/// empty list; entries without a `data` object are skipped.
pub fn vrrp_groups(json: &str) -> Vec<VrrpGroupStatus> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let instances = match &value {
        serde_json::Value::Array(list) => list,
        serde_json::Value::Object(map) => match map.get("vrrp") {
            Some(serde_json::Value::Array(list)) => list,
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    instances
        .iter()
        .filter_map(|instance| instance.get("data").filter(|d| d.is_object()))
        .map(|data| {
            let text = |key: &str| data.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let state = match data.get("state") {
                Some(serde_json::Value::Number(n)) => n.as_u64().map_or("UNKNOWN", state_name),
                _ => "UNKNOWN",
            };
            VrrpGroupStatus {
                name: text("iname"),
                interface: text("ifp_ifname"),
                vrid: data.get("vrid").and_then(|v| v.as_u64()).and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                state: state.to_owned(),
            }
        })
        .collect()
}

/// A `high-availability vrrp group` of the running configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredGroup {
    /// The group name (the tag value).
    pub name: String,
    /// `interface`.
    pub interface: String,
    /// `vrid` (0 when missing or not a number).
    pub vrid: u32,
    /// `disable` is set: VyOS leaves the group out of keepalived's configuration.
    pub disabled: bool,
}

/// The VRRP groups of a running configuration, in configuration order.
pub fn configured_groups(tree: &Tree) -> Vec<ConfiguredGroup> {
    let Some(groups) = tree.get(&["high-availability", "vrrp", "group"]) else { return Vec::new() };
    groups
        .children()
        .iter()
        .map(|g| {
            let value = |leaf: &str| g.child(leaf).and_then(|n| n.values().first()).cloned().unwrap_or_default();
            ConfiguredGroup {
                name: g.name().to_owned(),
                interface: value("interface"),
                vrid: value("vrid").parse().unwrap_or(0),
                disabled: g.child("disable").is_some(),
            }
        })
        .collect()
}

/// Whether a keepalived instance is a configured group: same VRID, and the configured
/// interface or the macvlan VyOS creates for `rfc3768-compatibility` (`<if>v<vrid>v4|6`).
fn same_instance(live: &VrrpGroupStatus, group: &ConfiguredGroup) -> bool {
    live.vrid == group.vrid
        && (live.interface == group.interface
            || live
                .interface
                .strip_prefix(&format!("{}v{}v", group.interface, group.vrid))
                .is_some_and(|rest| rest == "4" || rest == "6"))
}

/// Names keepalived's instances after the running configuration: an instance whose name is not
/// a configured group takes the name (and configured interface) of the group with its VRID on
/// its interface; unmatched instances keep keepalived's names. Disabled groups, which
/// keepalived does not run, are added with state `DISABLED`, as `show vrrp` lists them.
pub fn with_config_names(live: Vec<VrrpGroupStatus>, configured: &[ConfiguredGroup]) -> Vec<VrrpGroupStatus> {
    let mut out: Vec<VrrpGroupStatus> = live
        .into_iter()
        .map(|mut g| {
            let by_name = configured.iter().find(|c| c.name == g.name && !c.disabled);
            if let Some(c) = by_name.or_else(|| configured.iter().find(|c| !c.disabled && same_instance(&g, c))) {
                g.name = c.name.clone();
                g.interface = c.interface.clone();
            }
            g
        })
        .collect();
    for c in configured.iter().filter(|c| c.disabled) {
        out.push(VrrpGroupStatus {
            name: c.name.clone(),
            interface: c.interface.clone(),
            vrid: c.vrid,
            state: "DISABLED".to_owned(),
        });
    }
    out
}

/// Why keepalived's dump could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// No keepalived to ask (no pid file, a stale one, or a pid that is not keepalived).
    #[error("keepalived is not running: {0}")]
    NotRunning(String),
    /// The signal or a file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or process.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// keepalived wrote no complete dump in time.
    #[error("keepalived wrote no JSON dump to {path} within {timeout:?}")]
    Timeout {
        /// The dump file.
        path: String,
        /// How long was waited.
        timeout: Duration,
    },
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> DumpError {
    DumpError::Io { what, path: path.display().to_string(), source }
}

/// Asks the keepalived under `root` for its JSON dump and returns it. The pid file and the
/// dump are read under `root`; the pid is checked against the host's `/proc/<pid>/comm`
/// (pids are the host's even under a test root), so a stale pid file never gets a signal whose
/// default action would terminate an unrelated process. A leftover dump is removed first, so
/// the file read is the one written for this signal; it is removed again afterwards, as VyOS
/// does.
pub async fn dump(root: &Path, timeout: Duration) -> Result<String, DumpError> {
    use rustix_libc_wrappers::process::SignalExt;

    let pid_path = root.join(PID_FILE);
    let text = match std::fs::read_to_string(&pid_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DumpError::NotRunning(format!("no {}", pid_path.display())));
        }
        Err(e) => return Err(io("cannot read", &pid_path, e)),
    };
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .filter(|p| p.as_raw_nonzero().get() > 1)
        .ok_or_else(|| DumpError::NotRunning(format!("{} holds no pid: {:?}", pid_path.display(), text.trim())))?;
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.as_raw_nonzero())).unwrap_or_default();
    if comm.trim() != "keepalived" {
        return Err(DumpError::NotRunning(format!(
            "pid {} from {} is not keepalived",
            pid.as_raw_nonzero(),
            pid_path.display()
        )));
    }
    let dump_path = root.join(DUMP_FILE);
    match std::fs::remove_file(&dump_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("cannot remove", &dump_path, e)),
        _ => {}
    }
    let signal = rustix::process::Signal::rt(SIGJSON_OFFSET).ok_or_else(|| DumpError::Io {
        what: "no real-time signal",
        path: format!("SIGRTMIN+{SIGJSON_OFFSET}"),
        source: std::io::Error::from(std::io::ErrorKind::Unsupported),
    })?;
    rustix::process::kill_process(pid, signal).map_err(|e| {
        if e == rustix::io::Errno::SRCH {
            DumpError::NotRunning(format!("pid {} has exited", pid.as_raw_nonzero()))
        } else {
            io("cannot signal keepalived, pid", Path::new(&pid.as_raw_nonzero().to_string()), e.into())
        }
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        // keepalived writes the file in place: only text that parses is complete.
        if let Ok(text) = std::fs::read_to_string(&dump_path)
            && serde_json::from_str::<serde_json::Value>(&text).is_ok()
        {
            let _ = std::fs::remove_file(&dump_path);
            return Ok(text);
        }
        if Instant::now() >= deadline {
            return Err(DumpError::Timeout { path: dump_path.display().to_string(), timeout });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One instance as keepalived's `vrrp_json.c` writes it (most fields trimmed).
    fn instance(iname: &str, ifname: &str, vrid: u64, state: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "data": {
                "iname": iname, "dont_track_primary": 0, "skip_check_adv_addr": 0, "strict_mode": 0,
                "vmac_ifname": "", "ifp_ifname": ifname, "master_priority": 0,
                "last_transition": 1767225600.123456, "garp_delay": 5.0, "vrid": vrid,
                "base_priority": 100, "effective_priority": 100, "vipset": false, "adver_int": 1.0,
                "nopreempt": false, "state": state, "wantstate": 1, "version": 2,
                "vips": ["192.0.2.1/24 dev eth1 scope global"]
            },
            "stats": {"advert_rcvd": 3, "advert_sent": 0, "become_master": 0, "release_master": 0}
        })
    }

    fn g(name: &str, interface: &str, vrid: u32, state: &str) -> VrrpGroupStatus {
        VrrpGroupStatus { name: name.into(), interface: interface.into(), vrid, state: state.into() }
    }

    #[test]
    fn several_groups_in_dump_order() {
        let dump = serde_json::json!([
            instance("LAN", "eth1", 10, 2.into()),
            instance("WAN", "eth0.20", 20, 1.into()),
            instance("DMZ", "eth2", 30, 3.into()),
            instance("NEW", "eth3", 40, 0.into()),
        ]);
        assert_eq!(
            vrrp_groups(&dump.to_string()),
            [
                g("LAN", "eth1", 10, "MASTER"),
                g("WAN", "eth0.20", 20, "BACKUP"),
                g("DMZ", "eth2", 30, "FAULT"),
                g("NEW", "eth3", 40, "INIT"),
            ]
        );
    }

    #[test]
    fn ipv6_instances_and_the_v2_form() {
        let mut v6 = instance("LAN6", "eth1", 11, 2.into());
        v6["data"]["vips"] = serde_json::json!(["2001:db8::1/64 dev eth1 scope global"]);
        v6["data"]["version"] = 3.into();
        let v1 = serde_json::json!([v6.clone()]).to_string();
        let v2 = serde_json::json!({"vrrp": [v6], "track_process": []}).to_string();
        assert_eq!(vrrp_groups(&v1), [g("LAN6", "eth1", 11, "MASTER")]);
        assert_eq!(vrrp_groups(&v2), vrrp_groups(&v1));
    }

    #[test]
    fn unknown_and_odd_state_values() {
        let dump = serde_json::json!([
            instance("a", "eth1", 1, 97.into()),
            instance("b", "eth1", 2, 98.into()),
            instance("c", "eth1", 3, 4.into()),
            instance("d", "eth1", 4, 1000.into()),
            instance("e", "eth1", 5, (-1).into()),
            instance("f", "eth1", 6, "MASTER".into()),
            instance("g", "eth1", 7, 1.5.into()),
            instance("h", "eth1", 8, serde_json::Value::Null),
        ]);
        let states: Vec<String> = vrrp_groups(&dump.to_string()).into_iter().map(|g| g.state).collect();
        assert_eq!(states, ["DELETED", "STOP", "UNKNOWN", "UNKNOWN", "UNKNOWN", "UNKNOWN", "UNKNOWN", "UNKNOWN"]);
        assert_eq!(state_name(u64::MAX), "UNKNOWN");
    }

    #[test]
    fn malformed_input_is_empty_and_never_panics() {
        for text in [
            "",
            "not json",
            "[",
            "[{\"data\": {\"iname\": \"x\"",
            "null",
            "42",
            "\"text\"",
            "{}",
            "{\"vrrp\": {}}",
            "{\"vrrp\": null}",
            "[]",
            "[1, \"x\", null, [], {}]",
            "[{\"data\": []}, {\"data\": null}, {\"stats\": {}}]",
        ] {
            assert!(vrrp_groups(text).is_empty(), "{text:?}");
        }
        // Wrong types inside an instance: kept, with empty/zero fields.
        let odd = r#"[{"data": {"iname": 5, "ifp_ifname": null, "vrid": 99999999999, "state": 2}}]"#;
        assert_eq!(vrrp_groups(odd), [g("", "", 0, "MASTER")]);
        // Instances without an interface (keepalived omits `ifp_ifname` then).
        assert_eq!(vrrp_groups(r#"[{"data": {"iname": "x", "vrid": 3}}]"#), [g("x", "", 3, "UNKNOWN")]);
    }

    fn tree(text: &str) -> Tree {
        vyos_config::Config::parse(text).unwrap().tree
    }

    #[test]
    fn groups_of_the_running_config() {
        let t = tree(
            "high-availability {\n vrrp {\n  group LAN {\n   interface eth1\n   vrid 10\n  }\n  group OFF {\n   \
             disable\n   interface eth2\n   vrid 20\n  }\n  group ODD {\n   vrid x\n  }\n }\n}\n",
        );
        let groups = configured_groups(&t);
        let names: Vec<(&str, &str, u32, bool)> =
            groups.iter().map(|g| (g.name.as_str(), g.interface.as_str(), g.vrid, g.disabled)).collect();
        assert!(names.contains(&("LAN", "eth1", 10, false)), "{names:?}");
        assert!(names.contains(&("OFF", "eth2", 20, true)), "{names:?}");
        assert!(names.contains(&("ODD", "", 0, false)), "{names:?}");
        assert!(configured_groups(&tree("system {\n host-name r1\n}\n")).is_empty());
    }

    #[test]
    fn names_come_from_the_running_config() {
        let configured = [
            ConfiguredGroup { name: "LAN".into(), interface: "eth1".into(), vrid: 10, disabled: false },
            ConfiguredGroup { name: "VMAC".into(), interface: "eth2".into(), vrid: 30, disabled: false },
            ConfiguredGroup { name: "OFF".into(), interface: "eth3".into(), vrid: 40, disabled: true },
        ];
        let live = vec![
            g("LAN", "eth1", 10, "MASTER"),
            // keepalived named differently: matched by interface and VRID.
            g("vyos-instance-7", "eth1", 10, "BACKUP"),
            // rfc3768-compatibility: keepalived reports the macvlan.
            g("other", "eth2v30v4", 30, "BACKUP"),
            // Not configured (yet): kept as keepalived names it.
            g("stray", "eth9", 99, "FAULT"),
            // Same interface, other VRID: no match.
            g("other-vrid", "eth1", 11, "BACKUP"),
            // A disabled group's VRID never claims a live instance.
            g("ghost", "eth3", 40, "MASTER"),
            // Not a macvlan of eth2 for VRID 30.
            g("near", "eth2v30v5", 30, "BACKUP"),
        ];
        assert_eq!(
            with_config_names(live, &configured),
            [
                g("LAN", "eth1", 10, "MASTER"),
                g("LAN", "eth1", 10, "BACKUP"),
                g("VMAC", "eth2", 30, "BACKUP"),
                g("stray", "eth9", 99, "FAULT"),
                g("other-vrid", "eth1", 11, "BACKUP"),
                g("ghost", "eth3", 40, "MASTER"),
                g("near", "eth2v30v5", 30, "BACKUP"),
                g("OFF", "eth3", 40, "DISABLED"),
            ]
        );
        assert!(with_config_names(Vec::new(), &[]).is_empty());
    }

    #[tokio::test]
    async fn dump_without_keepalived_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let e = dump(dir.path(), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, DumpError::NotRunning(_)), "{e}");
        std::fs::create_dir_all(dir.path().join("run/keepalived")).unwrap();
        std::fs::write(dir.path().join(PID_FILE), "garbage\n").unwrap();
        let e = dump(dir.path(), Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("holds no pid"), "{e}");
        // Our own pid is alive but not keepalived: it gets no signal (the test would die).
        std::fs::write(dir.path().join(PID_FILE), format!("{}\n", std::process::id())).unwrap();
        let e = dump(dir.path(), Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("is not keepalived"), "{e}");
    }
}
