//! The fake keepalived: started and stopped with `high-availability` in the running
//! configuration, answering keepalived's JSON signal with the dump of the configured groups.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use rustix_libc_wrappers::process::SignalExt;

const DEADLINE: Duration = Duration::from_secs(30);

fn alive(pid: u64) -> bool {
    // A zombie (exited, not yet reaped by whoever inherited it) is not running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends keepalived's JSON signal and reads the dump it writes.
fn dump(fake: &Fake, pid: u64) -> serde_json::Value {
    let path = fake.path("tmp/keepalived.json");
    let _ = std::fs::remove_file(&path);
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::rt(2).unwrap()).unwrap();
    let mut value = serde_json::Value::Null;
    wait_for("the JSON dump", || {
        std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).map(|v| value = v).is_some()
    });
    value
}

fn states(dump: &serde_json::Value) -> Vec<(String, String, u64, u64)> {
    dump.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let d = &i["data"];
            let s = |k: &str| d[k].as_str().unwrap().to_owned();
            (s("iname"), s("ifp_ifname"), d["vrid"].as_u64().unwrap(), d["state"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn runs_with_high_availability_and_dumps_the_groups() {
    let fake = Fake::booted("rolling");
    assert!(fake.status()["keepalived_pid"].is_null(), "no high-availability, no keepalived");
    let s = fake.session("41");
    for set in [
        "high-availability vrrp group LAN interface eth1",
        "high-availability vrrp group LAN vrid 10",
        "high-availability vrrp group LAN address 192.0.2.1/24",
        "high-availability vrrp group LAN6 interface eth1",
        "high-availability vrrp group LAN6 vrid 11",
        "high-availability vrrp group LAN6 address 2001:db8::1/64",
        "high-availability vrrp group OFF interface eth2",
        "high-availability vrrp group OFF vrid 12",
        "high-availability vrrp group OFF disable",
    ] {
        s.set(set).ok();
    }
    assert!(s.set("high-availability vrrp group LAN vrid 300").text().contains("between 1 and 255"));
    s.commit().ok();
    let pid = fake.status()["keepalived_pid"].as_u64().expect("keepalived started by the commit");
    assert!(alive(pid));
    assert!(fake.events().iter().any(|e| e.contains(&format!("keepalived-started pid={pid}"))));
    assert_eq!(fake.read("run/keepalived/keepalived.pid").trim(), pid.to_string());

    let d = dump(&fake, pid);
    assert_eq!(
        states(&d),
        [("LAN".into(), "eth1".into(), 10, 1), ("LAN6".into(), "eth1".into(), 11, 1)],
        "BACKUP by default, the disabled group left out: {d}"
    );
    assert_eq!(d[1]["data"]["version"], 3, "IPv6 runs VRRPv3");
    fake.ctl(&["vrrp-state", "LAN", "MASTER"]).ok();
    fake.ctl(&["vrrp-state", "LAN6", "42"]).ok();
    assert_eq!(fake.status()["vrrp_state"]["LAN"], 2);
    assert_eq!(
        states(&dump(&fake, pid)),
        [("LAN".into(), "eth1".into(), 10, 2), ("LAN6".into(), "eth1".into(), 11, 42)]
    );
    let bad = fake.ctl(&["vrrp-state", "LAN", "UP"]);
    assert_ne!(bad.code, 0);
    assert!(bad.text().contains("STATE must be"), "{bad:?}");

    // Still the same daemon after another commit touching high-availability.
    s.delete("high-availability vrrp group LAN6").ok();
    s.commit().ok();
    assert_eq!(fake.status()["keepalived_pid"].as_u64(), Some(pid));
    assert_eq!(states(&dump(&fake, pid)), [("LAN".into(), "eth1".into(), 10, 2)]);

    // Without high-availability keepalived stops.
    s.delete("high-availability").ok();
    s.commit().ok();
    wait_for("keepalived to exit", || !alive(pid));
    assert!(fake.status()["keepalived_pid"].is_null());
    assert!(!fake.path("run/keepalived/keepalived.pid").exists());
    assert!(fake.events().iter().any(|e| e.contains(&format!("keepalived-stopped pid={pid}"))));
}

#[test]
fn a_reboot_restarts_it_from_the_boot_config_and_it_leaves_with_its_root() {
    let fake = Fake::booted("sagitta");
    fake.ctl(&[
        "manual-commit",
        "set high-availability vrrp group WAN interface eth0",
        "set high-availability vrrp group WAN vrid 20",
    ])
    .ok();
    let first = fake.status()["keepalived_pid"].as_u64().expect("started by a manual commit");
    fake.run(SAVE, &[], &[]).ok();
    fake.ctl(&["reboot"]).ok();
    wait_for("the old keepalived to exit", || !alive(first));
    let second = fake.status()["keepalived_pid"].as_u64().expect("started again from config.boot");
    assert_ne!(first, second);
    assert_eq!(states(&dump(&fake, second)), [("WAN".into(), "eth0".into(), 20, 1)]);
    // A root whose pid file is gone (removed with the root) loses its daemon.
    std::fs::remove_file(fake.path("run/keepalived/keepalived.pid")).unwrap();
    wait_for("keepalived to notice", || !alive(second));
}
