//! Commits: the lock, partial failures, hooks, the archive, commit-confirm reverts, manual
//! commits — driven through the installed executables.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use common::*;
use flate2::read::GzDecoder;

#[test]
fn lock_contention_between_two_commits() {
    let fake = Fake::booted("sagitta");
    fake.ctl(&["latency", "1500"]).ok();
    let a = fake.session("100");
    let b = fake.session("200");
    a.set("system host-name from-a").ok();
    b.set("system time-zone UTC").ok();
    let first = fake.spawn(MY_COMMIT, &[], &a.env);
    // Wait until the first commit holds the lock (it records `commit-started` once it does).
    let started = |f: &Fake| f.events().iter().any(|e| e.contains(" commit-started session=100"));
    for _ in 0..200 {
        if started(&fake) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started(&fake));
    let second = b.commit();
    assert_eq!(second.code, 1);
    assert_eq!(second.stdout, "Configuration system temporarily locked due to another commit in progress\n");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{first:?}");
    // The loser's changes are still pending and commit once the lock is free.
    assert!(b.changed());
    fake.ctl(&["latency", "0"]).ok();
    b.commit().ok();
    let active = fake.active();
    assert!(active.contains("host-name \"from-a\"") && active.contains("time-zone \"UTC\""), "{active}");

    // A held lock (ctl hold-lock) blocks commits too.
    let mut holder = fake.spawn_ctl_hold_lock(2);
    b.set("system host-name later").ok();
    assert_eq!(b.commit().code, 1);
    holder.wait().unwrap();
    b.commit().ok();
}

trait HoldLock {
    fn spawn_ctl_hold_lock(&self, seconds: u64) -> std::process::Child;
}

impl HoldLock for Fake {
    fn spawn_ctl_hold_lock(&self, seconds: u64) -> std::process::Child {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fakevyos"))
            .arg("ctl")
            .arg(&self.root)
            .args(["hold-lock", &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "locked\n");
        child
    }
}

#[test]
fn partial_commit_keeps_failed_subtree_pending_and_hooks_see_status() {
    let fake = Fake::booted("sagitta");
    let log = fake.root.join("hook.log");
    fake.env_hook("50-record", &log);
    fake.ctl(&["fail", "interfaces dummy dum0", "dummy: cannot create dum0"]).ok();
    let s = fake.session("7");
    s.set("interfaces dummy dum0 address 10.0.0.1/32").ok();
    s.set("system host-name partial").ok();
    let out = s.run(MY_COMMIT, &[]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "\ndummy: cannot create dum0\n\n[[interfaces dummy dum0]] failed\nCommit failed\n");
    let active = fake.active();
    assert!(active.contains("host-name \"partial\""));
    assert!(!active.contains("dum0"));
    assert!(s.working().contains("dummy dum0 {"), "the failed part stays pending");
    assert!(s.changed());
    assert_eq!(fake.read("hook.log"), "STATUS=PARTIAL VIA=test-agent COMMENT=commit\n");

    // Only the failing part left: FAILURE.
    let out = s.commit();
    assert_eq!(out.code, 1);
    assert!(out.stdout.ends_with("[[interfaces dummy dum0]] failed\nCommit failed\n"));
    assert!(fake.read("hook.log").ends_with("STATUS=FAILURE VIA=test-agent COMMENT=commit\n"));

    // Fixed: SUCCESS, nothing pending.
    fake.ctl(&["unfail"]).ok();
    fake.ctl(&["warn", "interfaces dummy", "dum0 has no link"]).ok();
    let out = s.commit().ok();
    assert_eq!(out.stdout, "WARNING: dum0 has no link\n");
    assert!(fake.read("hook.log").ends_with("STATUS=SUCCESS VIA=test-agent COMMENT=commit\n"));
    assert!(!s.changed());
    assert_eq!(s.commit().ok().stdout, "No configuration changes to commit\n");
    assert_eq!(fake.read("hook.log").lines().count(), 3, "no hooks without a commit");
}

fn revision(fake: &Fake, n: usize) -> String {
    let data = std::fs::read(fake.path(&format!("config/archive/config.boot.{n}.gz"))).unwrap();
    let mut text = String::new();
    GzDecoder::new(data.as_slice()).read_to_string(&mut text).unwrap();
    text
}

#[test]
fn archive_log_and_in_commit_confirm() {
    let fake = Fake::booted("sagitta");
    let s = fake.session("8");
    s.set("system host-name rev1").ok();
    fake.run(MY_COMMIT, &[], &s.with(&[("COMMIT_COMMENT", "generation 7")])).ok();
    let log = fake.read("config/archive/commits");
    assert_eq!(log.lines().count(), 1);
    assert!(log.starts_with('|') && log.ends_with("|root|test-agent|generation 7|\n"), "{log}");
    let rev0 = revision(&fake, 0);
    assert!(rev0.starts_with(&fake.active()));
    assert!(rev0.contains("// vyos-config-version:"));

    // Under commit-confirm the revision is not archived; the entry waits in /tmp.
    fake.run(CONFIG_MGMT, &["commit_confirm", "-y", "-t", "5"], &[]).ok();
    s.set("system host-name rev2").ok();
    fake.run(MY_COMMIT, &[], &s.with(&[("IN_COMMIT_CONFIRM", "t"), ("COMMIT_COMMENT", "generation 8")])).ok();
    assert!(!fake.path("config/archive/config.boot.1.gz").exists());
    assert!(fake.read("tmp/commit-rev-entry").contains("|generation 8|"));
    let out = fake.run(CONFIG_MGMT, &["confirm"], &[]).ok();
    assert_eq!(out.stdout, "Reboot timer stopped\n");
    assert!(fake.path("config/archive/config.boot.1.gz").exists());
    assert!(revision(&fake, 0).contains("host-name \"rev2\""));
    assert!(fake.read("config/archive/commits").lines().next().unwrap().contains("|generation 8|"));
    assert!(!fake.path("tmp/commit-rev-entry").exists());
}

#[test]
fn commit_confirm_reboot_on_sagitta_loses_unsaved_commits() {
    let fake = Fake::booted("sagitta");
    let saved_before = fake.read("config/config.boot");
    let boot_id = fake.read("proc/sys/kernel/random/boot_id");
    let s = fake.session("10");
    s.set("system host-name unsaved-1").ok();
    s.commit().ok();
    // Sagitta ignores the reload action: revert is always a reboot.
    s.set("system config-management commit-confirm action reload").ok();
    s.commit().ok();
    let out = fake.run(CONFIG_MGMT, &["commit_confirm", "-y", "-t 2"], &[]).ok();
    assert_eq!(out.stdout, "Initialized commit-confirm; 2 minutes to confirm before reboot\n");
    assert_eq!(fake.run(CONFIG_MGMT, &["commit_confirm", "-y", "-t=3"], &[]).stdout, "Another confirm is pending\n");
    s.set("system host-name under-confirm").ok();
    fake.run(MY_COMMIT, &[], &s.with(&[("IN_COMMIT_CONFIRM", "t")])).ok();
    fake.ctl(&["advance", "119"]).ok();
    assert_eq!(fake.status()["confirm_pending"], true);
    assert!(fake.active().contains("under-confirm"));

    fake.ctl(&["advance", "1"]).ok();
    let status = fake.status();
    assert_eq!(status["confirm_pending"], false);
    assert!(fake.events().iter().any(|e| e.contains(" rebooted reason=commit-confirm")));
    assert_ne!(fake.read("proc/sys/kernel/random/boot_id"), boot_id);
    // Every unsaved commit is gone: running = saved config.boot.
    let saved_body = vyos_config::Config::parse_hierarchical(&saved_before).unwrap();
    assert_eq!(fake.active(), vyos_config::render_config(&saved_body.tree, Default::default()));
    // Sessions and /tmp are wiped; boot is in progress.
    assert_eq!(s.api(&["inSession"]).code, 1);
    assert!(s.set("system host-name x").text().contains("without config session"));
    assert!(!fake.path("tmp/vyos-config-status").exists());
    fake.ctl(&["advance", "60"]).ok();
    assert_eq!(fake.read("tmp/vyos-config-status"), "0");
}

#[test]
fn commit_confirm_reload_on_rolling_restores_archive_revision() {
    let fake = Fake::booted("rolling");
    let log = fake.root.join("hook.log");
    let boot_id = fake.read("proc/sys/kernel/random/boot_id");
    let s = fake.session("11");
    s.set("system config-management commit-confirm action reload").ok();
    s.set("system host-name confirmed").ok();
    s.commit().ok();
    let good = fake.active();
    fake.env_hook("10-log", &log);
    let out = fake.run(CONFIG_MGMT, &["commit_confirm", "-y", "-t=1"], &s.env).ok();
    assert_eq!(out.stdout, "Initialized commit-confirm; 1 minutes to confirm before reload\n");
    s.set("system host-name risky").ok();
    s.set("interfaces dummy dum1").ok();
    fake.run(MY_COMMIT, &[], &s.with(&[("IN_COMMIT_CONFIRM", "t")])).ok();
    assert!(fake.active().contains("risky"));
    fake.ctl(&["advance", "60"]).ok();
    assert_eq!(fake.active(), good);
    assert_eq!(fake.read("proc/sys/kernel/random/boot_id"), boot_id, "a reload is no reboot");
    assert!(fake.events().iter().any(|e| e.contains(" reloaded status=SUCCESS")));
    assert!(fake.read("hook.log").ends_with("STATUS=SUCCESS VIA=config-mgmt COMMENT=commit-confirm revert\n"));
    // The session survives and is rebased: its working config is the reverted one (its own
    // changes were committed, so nothing is pending).
    assert_eq!(s.api(&["inSession"]).code, 0);
    assert_eq!(s.working(), good);
}

#[test]
fn confirm_stops_the_timer() {
    let fake = Fake::booted("circinus");
    assert_eq!(fake.run(CONFIG_MGMT, &["confirm"], &[]).ok().stdout, "No confirm pending\n");
    fake.run(CONFIG_MGMT, &["commit_confirm", "-y", "-t", "1"], &[]).ok();
    assert_eq!(fake.run(CONFIG_MGMT, &["confirm"], &[]).ok().stdout, "Reboot timer stopped\n");
    fake.ctl(&["advance", "3600"]).ok();
    assert!(!fake.events().iter().any(|e| e.contains("rebooted")));
    assert_eq!(fake.run(CONFIG_MGMT, &["confirm"], &[]).ok().stdout, "No confirm pending\n");
    // Without -y the prompt needs an answer; none on stdin cancels.
    let out = fake.run(CONFIG_MGMT, &["commit_confirm", "-t", "1"], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(fake.status()["confirm_pending"], false);
}

#[test]
fn manual_commit_runs_hooks_and_sessions_see_it() {
    let fake = Fake::booted("sagitta");
    let log = fake.root.join("hook.log");
    fake.env_hook("20-drift", &log);
    let s = fake.session("12");
    s.set("system time-zone Europe/Berlin").ok();
    let out = fake.ctl(&["manual-commit", "set system host-name by-hand", "set service ssh port 2222"]).ok();
    assert_eq!(out.stdout, "");
    assert_eq!(fake.read("hook.log"), "STATUS=SUCCESS VIA=cli COMMENT=commit\n");
    let active = fake.active();
    assert!(active.contains("host-name \"by-hand\"") && active.contains("port \"2222\""));
    // The agent's session is an overlay: it sees the human's change plus its own.
    let working = s.working();
    assert!(working.contains("by-hand") && working.contains("Europe/Berlin"), "{working}");
    s.commit().ok();
    assert!(fake.active().contains("Europe/Berlin") && fake.active().contains("by-hand"));
    let bad = fake.ctl(&["manual-commit", "set nonsense here"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stdout.contains("Configuration path: [nonsense here] is not valid"));
}

#[test]
fn commit_before_boot_complete_is_recorded() {
    let fake = Fake::install("sagitta", &[]);
    let s = fake.session("13");
    s.set("system host-name early").ok();
    s.commit().ok();
    assert!(fake.events().iter().any(|e| e.ends_with(" commit-before-boot-complete")));
    fake.ctl(&["reboot"]).ok();
    assert!(fake.events().iter().any(|e| e.contains(" rebooted reason=ctl")));
    assert!(fake.active().contains("host-name \"vyos\""), "a hard reboot boots the saved config");
}
