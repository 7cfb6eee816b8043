//! A fake keepalived: the daemon VyOS runs for `high-availability`, reduced to what an agent
//! reads from it, the JSON state dump.
//!
//! As on VyOS, the daemon runs while the running configuration has `high-availability`
//! ([`sync`] starts and stops it after every change of the running configuration, as
//! vyos-1x's `high-availability.py` starts and stops keepalived.service). It writes its pid to
//! `ROOT/run/keepalived/keepalived.pid`; on `SIGRTMIN + 2` (keepalived's `SIGJSON`) it writes
//! `ROOT/tmp/keepalived.json` in keepalived's v1 JSON shape (`vrrp_json.c`), built from the
//! running `high-availability vrrp group` nodes and the states set with
//! `fakevyos ctl ROOT vrrp-state [GROUP] STATE` (default BACKUP). With no enabled group it writes
//! nothing, as keepalived does. It exits on SIGTERM, or by itself once its pid file no longer
//! names it (the root was removed, or another daemon took over).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vyos_config::Tree;

use crate::ctx::Ctx;
use crate::error::{Error, Output, Result, io_at};
use crate::files;
use crate::layout::Root;
use crate::state;

/// keepalived's `SIGJSON` is `SIGRTMIN + 2`.
const SIGJSON_OFFSET: i32 = 2;
/// The state a group starts in (VyOS renders `state BACKUP` for every instance).
pub const DEFAULT_STATE: u32 = 1;
/// How long [`sync`] waits for a started daemon to write its pid file.
const START_WAIT: Duration = Duration::from_secs(10);

/// keepalived's numeric state for a name (`VRRP_STATE_*` in keepalived's vrrp.h) or a number
/// given as is (to reproduce states an agent does not know).
pub fn parse_state(text: &str) -> Option<u32> {
    match text.to_ascii_uppercase().as_str() {
        "INIT" => Some(0),
        "BACKUP" => Some(1),
        "MASTER" => Some(2),
        "FAULT" => Some(3),
        "DELETED" => Some(97),
        "STOP" => Some(98),
        number => number.parse().ok(),
    }
}

fn leaf<'a>(tree: &'a Tree, group: &str, leaf: &str) -> Option<&'a String> {
    tree.values(&["high-availability", "vrrp", "group", group, leaf]).first()
}

/// The dump's instances: one per enabled `high-availability vrrp group`, in configuration
/// order, with the group's state from `states` (by group name, `*` for all) at fake-clock
/// second `clock`.
pub fn instances(tree: &Tree, states: &BTreeMap<String, u32>, clock: u64) -> Vec<Value> {
    let Some(groups) = tree.get(&["high-availability", "vrrp", "group"]) else { return Vec::new() };
    let global_version: Option<u64> = tree
        .values(&["high-availability", "vrrp", "global-parameters", "version"])
        .first()
        .and_then(|v| v.parse().ok());
    let default_state = states.get("*").copied().unwrap_or(DEFAULT_STATE);
    let mut out = Vec::new();
    for group in groups.children() {
        let name = group.name();
        if group.child("disable").is_some() {
            continue;
        }
        let number = |l: &str, default: u64| leaf(tree, name, l).and_then(|v| v.parse().ok()).unwrap_or(default);
        let interface = leaf(tree, name, "interface").cloned().unwrap_or_default();
        let vrid = number("vrid", 0);
        let priority = number("priority", 100);
        let addresses: Vec<String> = group
            .child("address")
            .map(|a| a.children().iter().map(|n| n.name().to_owned()).collect())
            .unwrap_or_default();
        let ipv6 = addresses.first().is_some_and(|a| a.contains(':'));
        // keepalived runs IPv6 instances as VRRPv3.
        let version = if ipv6 { 3 } else { global_version.unwrap_or(2) };
        // With rfc3768-compatibility VyOS gives keepalived a macvlan (`use_vmac <if>v<vrid>v4|6`),
        // and the instance's interface is that macvlan.
        let vmac = group
            .child("rfc3768-compatibility")
            .map(|_| format!("{interface}v{vrid}v{}", if ipv6 { 6 } else { 4 }))
            .unwrap_or_default();
        let ifp = if vmac.is_empty() { interface.clone() } else { vmac.clone() };
        let vips: Vec<String> = addresses
            .iter()
            .map(|a| {
                let dev = tree
                    .values(&["high-availability", "vrrp", "group", name, "address", a.as_str(), "interface"])
                    .first()
                    .cloned()
                    .unwrap_or_else(|| ifp.clone());
                format!("{a} dev {dev} scope global")
            })
            .collect();
        let state = states.get(name).copied().unwrap_or(default_state);
        let mut data = json!({
            "iname": name,
            "dont_track_primary": u32::from(group.child("track").and_then(|t| t.child("exclude-vrrp-interface")).is_some()),
            "skip_check_adv_addr": 0,
            "strict_mode": 0,
            "vmac_ifname": vmac,
            "ifp_ifname": ifp,
            "master_priority": if state == 1 { 255 } else { 0 },
            "last_transition": clock as f64,
            "garp_delay": 5.0,
            "garp_refresh": 0,
            "garp_rep": 5,
            "garp_refresh_rep": 1,
            "garp_lower_prio_delay": 5,
            "garp_lower_prio_rep": 5,
            "lower_prio_no_advert": 0,
            "higher_prio_send_advert": 0,
            "vrid": vrid,
            "base_priority": priority,
            "effective_priority": priority,
            "vipset": state == 2,
            "promote_secondaries": false,
            "adver_int": number("advertise-interval", 1) as f64,
            "master_adver_int": number("advertise-interval", 1) as f64,
            "accept": 1,
            "nopreempt": group.child("no-preempt").is_some(),
            "preempt_delay": number("preempt-delay", 0),
            "state": state,
            "wantstate": state,
            "version": version,
            "smtp_alert": false,
            "notify_deleted": false,
            "vips": vips,
            "auth_type": 0,
        });
        let excluded = tree.values(&["high-availability", "vrrp", "group", name, "excluded-address"]);
        if !excluded.is_empty()
            && let Some(map) = data.as_object_mut()
        {
            map.insert(
                "evips".to_owned(),
                json!(excluded.iter().map(|a| format!("{a} dev {ifp} scope global")).collect::<Vec<_>>()),
            );
        }
        out.push(json!({
            "data": data,
            "stats": {
                "advert_rcvd": 0, "advert_sent": 0, "become_master": u32::from(state == 2), "release_master": 0,
                "packet_len_err": 0, "advert_interval_err": 0, "ip_ttl_err": 0, "invalid_type_rcvd": 0,
                "addr_list_err": 0, "invalid_authtype": 0, "authtype_mismatch": 0, "auth_failure": 0,
                "pri_zero_rcvd": 0, "pri_zero_sent": 0
            }
        }));
    }
    out
}

/// The pid of the root's running daemon, if any: the pid file names a live (not zombie)
/// process called `keepalived`. Pids are the host's, so this reads the host's `/proc`.
pub fn running_pid(root: &Root) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(root.keepalived_pid()).ok()?.trim().parse().ok()?;
    // `/proc/PID/stat`: `PID (COMM) STATE …`.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1;
    (pid > 1 && comm == "keepalived" && !rest.starts_with('Z')).then_some(pid)
}

/// Starts or stops the daemon for a new running configuration: it runs while the
/// configuration has `high-availability`. Failing to start it is an event, not an error (the
/// commit itself went through).
pub fn sync(root: &Root, tree: &Tree, clock: u64) -> Result<()> {
    let wanted = tree.exists(&["high-availability"]);
    match (wanted, running_pid(root)) {
        (true, None) => start(root, clock),
        (false, Some(pid)) => stop(root, pid, clock),
        _ => Ok(()),
    }
}

/// Stops a running daemon, then starts one if the configuration wants it (a reboot).
pub fn restart(root: &Root, tree: &Tree, clock: u64) -> Result<()> {
    if let Some(pid) = running_pid(root) {
        stop(root, pid, clock)?;
    }
    sync(root, tree, clock)
}

fn start(root: &Root, clock: u64) -> Result<()> {
    let binary = root.join("usr/sbin/keepalived");
    let pid_file = root.keepalived_pid();
    files::remove_file(&pid_file)?;
    // The arguments of VyOS's systemd override; the double reads only `--pid`.
    let spawned = Command::new(&binary)
        .args(["--use-file", "/run/keepalived/keepalived.conf", "--pid", "/run/keepalived/keepalived.pid"])
        .arg("--dont-fork")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return state::record_event(root, clock, "keepalived-failed", &format!("reason={e}").replace(' ', "_"));
        }
    };
    let pid = child.id();
    // Not waited for: the daemon outlives this process and is reaped by whoever inherits it.
    drop(child);
    let deadline = Instant::now() + START_WAIT;
    while running_pid(root) != i32::try_from(pid).ok() {
        if Instant::now() >= deadline {
            return state::record_event(root, clock, "keepalived-failed", &format!("pid={pid} reason=no-pid-file"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    state::record_event(root, clock, "keepalived-started", &format!("pid={pid}"))
}

fn stop(root: &Root, pid: i32, clock: u64) -> Result<()> {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        // Gone already is as good as stopped.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    files::remove_file(&root.keepalived_pid())?;
    files::remove_file(&root.keepalived_dump())?;
    state::record_event(root, clock, "keepalived-stopped", &format!("pid={pid}"))
}

/// Writes the dump for the current running configuration and states (nothing without
/// instances). Written in place, as keepalived does.
fn write_dump(root: &Root) -> Result<()> {
    let (tree, states, clock) = {
        let locked = state::lock(root)?;
        (state::read_active(root)?, locked.state.vrrp_state.clone(), locked.state.clock)
    };
    let list = instances(&tree, &states, clock);
    if list.is_empty() {
        return Ok(());
    }
    let path = root.keepalived_dump();
    let text = serde_json::to_string(&Value::Array(list)).map_err(|e| Error::Corrupt(e.to_string()))?;
    std::fs::write(&path, text).map_err(io_at(&path))
}

fn holds(pid_file: &Path, me: u32) -> bool {
    std::fs::read_to_string(pid_file).is_ok_and(|t| t.trim() == me.to_string())
}

/// The daemon (`ROOT/usr/sbin/keepalived [--pid FILE] …`): runs until SIGTERM or until its pid
/// file stops naming it.
pub fn daemon(ctx: &Ctx, args: &[String]) -> Result<Output> {
    let pid_file = match args.iter().position(|a| a == "--pid" || a == "-p") {
        Some(i) => match args.get(i + 1) {
            Some(file) => ctx.root.resolve_user_path(file),
            None => return Err(Error::Usage("keepalived: --pid needs a file".to_owned())),
        },
        None => ctx.root.keepalived_pid(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Corrupt(format!("keepalived: cannot start a runtime: {e}")))?;
    runtime.block_on(serve(&ctx.root, &pid_file))
}

async fn serve(root: &Root, pid_file: &Path) -> Result<Output> {
    use rustix_libc_wrappers::process::SignalExt;
    use tokio::signal::unix::{SignalKind, signal};

    let sigjson = rustix::process::Signal::rt(SIGJSON_OFFSET)
        .ok_or_else(|| Error::Corrupt(format!("keepalived: no signal SIGRTMIN+{SIGJSON_OFFSET}")))?;
    let handler =
        |kind: SignalKind| signal(kind).map_err(|e| Error::Corrupt(format!("keepalived: signal handler: {e}")));
    // Handlers first: a signal that arrives before them would terminate the process.
    let mut json = handler(SignalKind::from_raw(sigjson.as_raw()))?;
    let mut term = handler(SignalKind::terminate())?;
    let mut hup = handler(SignalKind::hangup())?;
    let me = std::process::id();
    files::write_atomic(pid_file, format!("{me}\n").as_bytes())?;
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = json.recv() => {
                if let Err(e) = write_dump(root) {
                    eprintln!("keepalived: cannot write the JSON dump: {e}");
                }
            }
            _ = term.recv() => break,
            // A reload: the running configuration is read at every dump anyway.
            _ = hup.recv() => {}
            _ = check.tick() => {
                if !holds(pid_file, me) {
                    return Ok(Output::ok(""));
                }
            }
        }
    }
    if holds(pid_file, me) {
        files::remove_file(pid_file)?;
    }
    Ok(Output::ok(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vyos_config::parse_tree;

    const TWO_GROUPS: &str = "high-availability {\n    vrrp {\n        group LAN {\n            address 192.0.2.1/24 {\n            }\n            \
        interface \"eth1\"\n            priority \"200\"\n            vrid \"10\"\n        }\n        group LAN6 {\n            \
        address 2001:db8::1/64 {\n            }\n            interface \"eth1\"\n            rfc3768-compatibility\n            vrid \"11\"\n        }\n        \
        group OFF {\n            disable\n            interface \"eth2\"\n            vrid \"12\"\n        }\n    }\n}\n";

    #[test]
    fn states_by_name_or_number() {
        assert_eq!(parse_state("master"), Some(2));
        assert_eq!(parse_state("BACKUP"), Some(1));
        assert_eq!(parse_state("FAULT"), Some(3));
        assert_eq!(parse_state("init"), Some(0));
        assert_eq!(parse_state("STOP"), Some(98));
        assert_eq!(parse_state("42"), Some(42));
        assert_eq!(parse_state("up"), None);
        assert_eq!(parse_state("-1"), None);
    }

    #[test]
    fn instances_follow_the_running_config() {
        let tree = parse_tree(TWO_GROUPS).unwrap();
        let mut states = BTreeMap::new();
        states.insert("LAN".to_owned(), 2);
        let list = instances(&tree, &states, 1000);
        assert_eq!(list.len(), 2, "the disabled group is not an instance: {list:?}");
        let lan = &list[0]["data"];
        assert_eq!((lan["iname"].as_str(), lan["ifp_ifname"].as_str()), (Some("LAN"), Some("eth1")));
        assert_eq!((lan["vrid"].as_u64(), lan["state"].as_u64()), (Some(10), Some(2)));
        assert_eq!((lan["base_priority"].as_u64(), lan["version"].as_u64()), (Some(200), Some(2)));
        assert_eq!(lan["vips"][0], "192.0.2.1/24 dev eth1 scope global");
        assert_eq!(list[0]["stats"]["become_master"], 1);
        let lan6 = &list[1]["data"];
        assert_eq!(lan6["state"], 1, "BACKUP unless set");
        assert_eq!(lan6["ifp_ifname"], "eth1v11v6", "the rfc3768 macvlan");
        assert_eq!((lan6["version"].as_u64(), lan6["base_priority"].as_u64()), (Some(3), Some(100)));
        states.insert("*".to_owned(), 3);
        let list = instances(&tree, &states, 1000);
        assert_eq!((list[0]["data"]["state"].as_u64(), list[1]["data"]["state"].as_u64()), (Some(2), Some(3)));
        assert!(instances(&Tree::new(), &states, 0).is_empty());
    }
}
