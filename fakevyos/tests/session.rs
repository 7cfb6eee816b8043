//! Sessions, validation, show, save/load, profiles, boot gating files and vtysh, driven
//! through the installed executables.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use vyos_config::{Config, parse_tree, render_config};

#[test]
fn session_env_text_and_lifecycle() {
    let fake = Fake::booted("sagitta");
    let r = fake.root.display();
    let text = fake.run(SHELL_API, &["getSessionEnv", "4242"], &[]).ok().stdout;
    assert_eq!(
        text,
        format!(
            "declare -x VYATTA_EDIT_LEVEL=/; declare -x VYATTA_TEMPLATE_LEVEL=/; umask 002; {{ declare -x -r \
             VYATTA_ACTIVE_CONFIGURATION_DIR={r}/opt/vyatta/config/active declare -x -r \
             VYATTA_CHANGES_ONLY_DIR={r}/opt/vyatta/config/tmp/changes_only_4242; declare -x -r \
             VYATTA_TEMP_CONFIG_DIR={r}/opt/vyatta/config/tmp/new_config_4242; declare -x -r \
             VYATTA_CONFIG_TMP={r}/opt/vyatta/config/tmp/tmp_4242; declare -x -r \
             VYATTA_CONFIG_TEMPLATE={r}/opt/vyatta/share/vyatta-cfg/templates; }} >&/dev/null || true"
        )
    );

    // Without the session environment, edits fail the way ConfigSession reports.
    let out = fake.run(MY_SET, &["system", "host-name", "x"], &[]);
    assert_eq!(out.code, 1);
    assert!(out.text().contains("without config session"), "{out:?}");
    assert_eq!(fake.run(SHELL_API, &["inSession"], &[]).code, 1);

    let s = fake.session("4242");
    assert!(fake.path("opt/vyatta/config/tmp/new_config_4242").is_dir());
    assert_eq!(s.api(&["inSession"]).code, 0);
    assert!(!s.changed());
    assert_eq!(s.working(), fake.active());
    s.set("system host-name r1").ok();
    assert!(s.changed());
    // Discard drops the change.
    s.run(MY_DISCARD, &[]).ok();
    assert!(!s.changed());
    assert!(s.working().contains("host-name \"vyos\""));
    s.api(&["teardownSession"]).ok();
    assert_eq!(s.api(&["inSession"]).code, 1);
    let out = s.set("system host-name r2");
    assert_eq!(out.code, 1);
    assert!(out.text().contains("without config session"));

    // Paths outside the root are refused rather than silently used.
    let env = vec![
        ("VYATTA_TEMP_CONFIG_DIR".to_owned(), "/opt/vyatta/config/tmp/new_config_1".to_owned()),
        ("VYATTA_CONFIG_TMP".to_owned(), "/opt/vyatta/config/tmp/tmp_1".to_owned()),
    ];
    assert_eq!(fake.run(SHELL_API, &["setupSession"], &env).code, 1);
}

#[test]
fn validation_messages_and_value_semantics() {
    let fake = Fake::booted("sagitta");
    let s = fake.session("1");
    let out = s.set("interfaces bogus eth0");
    assert_eq!((out.code, out.stdout.as_str()), (1, "Configuration path: [interfaces bogus eth0] is not valid\n"));
    let out = s.set("interfaces ethernet eth0 mtu abc");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout,
        "\"abc\" is not a valid value for [interfaces ethernet eth0 mtu]: must be a number between 68 and 16000\n\
         Value validation failed\n"
    );
    let out = s.set("system host-name -bad");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("[system host-name]"));
    let out = s.set("system host-name");
    assert_eq!((out.code, out.stdout.as_str()), (1, "Configuration path: [system host-name] requires a value\n"));
    let out = s.set("interfaces ethernet eth0 address dhcp");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Configuration path: [interfaces ethernet eth0 address dhcp] already exists\n")
    );
    assert!(!s.changed(), "an existing path is no change");
    let out = s.delete("protocols bgp");
    assert_eq!((out.code, out.stdout.as_str()), (1, "Nothing to delete (the specified node does not exist)\n"));
    let out = s.delete("interfaces ethernet eth0 address 192.0.2.9/24");
    assert_eq!((out.code, out.stdout.as_str()), (1, "Nothing to delete (the specified value does not exist)\n"));

    // Single-value leaves replace, multi-value leaves append.
    s.set("system host-name r1").ok();
    s.set("system host-name r2").ok();
    s.set("interfaces ethernet eth0 address 192.0.2.1/24").ok();
    s.set("system name-server 192.0.2.53").ok();
    s.set("system name-server 192.0.2.54").ok();
    s.set("interfaces ethernet eth0 description uplink").ok();
    s.run(MY_COMMENT, &["interfaces", "ethernet", "eth0", "the uplink"]).ok();
    assert_eq!(
        s.working(),
        "interfaces {\n    /* the uplink */\n    ethernet eth0 {\n        address \"dhcp\"\n        address \"192.0.2.1/24\"\n        \
         description \"uplink\"\n    }\n    loopback lo {\n    }\n}\nservice {\n    ssh\n}\nsystem {\n    config-management {\n        \
         commit-revisions \"100\"\n    }\n    host-name \"r2\"\n    name-server \"192.0.2.53\"\n    name-server \"192.0.2.54\"\n}\n"
    );
    s.run(MY_COMMENT, &["interfaces", "ethernet", "eth0", ""]).ok();
    assert!(!s.working().contains("/*"));
    let out = s.run(MY_COMMENT, &["protocols", "bgp", "x"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, "The specified config node does not exist\n"));
    s.delete("interfaces ethernet eth0 address dhcp").ok();
    s.delete("interfaces ethernet eth0 address 192.0.2.1/24").ok();
    assert!(!s.working().contains("address"));
}

#[test]
fn show_config_renders_exactly_and_marks_uncommitted_diffs() {
    let fake = Fake::booted("rolling");
    let active_file = fake.read("opt/vyatta/config/active.boot");
    let active = fake.active();
    assert_eq!(active, render_config(&parse_tree(&active_file).unwrap(), Default::default()));
    assert_eq!(
        fake.run(SHELL_API, &["--show-active-only", "showConfig", "interfaces"], &[]).ok().stdout,
        "ethernet eth0 {\n    address \"dhcp\"\n}\nloopback lo {\n}\n"
    );
    assert_eq!(
        fake.run(SHELL_API, &["showConfig", "--show-active-only", "system", "host-name"], &[]).ok().stdout,
        "host-name \"vyos\"\n"
    );

    let s = fake.session("9");
    // Unchanged session: plain showConfig already prints the marker column.
    let plain = s.api(&["showConfig"]).ok().stdout;
    assert!(plain.lines().all(|l| l.starts_with(' ')));
    s.set("system host-name r9").ok();
    let plain = s.api(&["showConfig"]).ok().stdout;
    assert!(plain.contains("-    host-name \"vyos\"\n+    host-name \"r9\"\n"), "{plain}");
    assert!(parse_tree(&plain).map(|t| t.values(&["system", "host-name"]).to_vec()) != Ok(vec!["r9".to_owned()]));
    assert!(s.api(&["--show-working-only", "showConfig"]).ok().stdout.contains("host-name \"r9\""));
    assert!(s.api(&["--show-active-only", "showConfig"]).ok().stdout.contains("host-name \"vyos\""));
    // Queries.
    assert_eq!(s.api(&["existsActive", "system", "host-name"]).code, 0);
    assert_eq!(s.api(&["existsActive", "system", "host-name", "vyos"]).code, 0);
    assert_eq!(s.api(&["existsActive", "protocols"]).code, 1);
    assert_eq!(s.api(&["exists", "system", "host-name", "r9"]).code, 0);
    assert_eq!(s.api(&["returnActiveValue", "system", "host-name"]).ok().stdout, "vyos");
    assert_eq!(s.api(&["returnValue", "system", "host-name"]).ok().stdout, "r9");
    assert_eq!(s.api(&["returnActiveValues", "interfaces", "ethernet", "eth0", "address"]).ok().stdout, "'dhcp'");
    assert_eq!(s.api(&["listActiveNodes", "interfaces"]).ok().stdout, "'ethernet' 'loopback'");
    assert_eq!(s.api(&["listActiveNodes", "interfaces", "ethernet"]).ok().stdout, "'eth0'");
    // Secrets and defaults.
    s.set("interfaces wireguard wg0 private-key YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=").ok();
    s.set("interfaces wireguard wg0 port 51820").ok();
    let shown =
        s.api(&["--show-working-only", "--show-hide-secrets", "showConfig", "interfaces", "wireguard"]).ok().stdout;
    assert_eq!(shown, "wg0 {\n    port \"51820\"\n    private-key \"xxxxxx\"\n}\n");
    let with_defaults = s.api(&["--show-working-only", "--show-show-defaults", "showConfig", "service"]).ok().stdout;
    assert_eq!(with_defaults, "ssh {\n    port \"22\"\n}\n");
    let commands = s.api(&["--show-working-only", "--show-commands", "showConfig", "system"]).ok().stdout;
    assert!(commands.contains("set host-name 'r9'\n"), "{commands}");
}

#[test]
fn save_writes_render_and_footer() {
    let fake = Fake::booted("sagitta");
    let s = fake.session("5");
    s.set("system host-name saved").ok();
    s.commit().ok();
    fake.run(SAVE, &[], &[]).ok();
    let saved = fake.read("config/config.boot");
    let body = fake.active();
    let footer = "// Warning: Do not remove the following line.\n// vyos-config-version: \"bgp@5:";
    assert!(saved.starts_with(&format!("{body}\n{footer}")), "{saved}");
    assert!(saved.ends_with("\n// Release version: 1.4.3\n"));
    assert_eq!(saved.lines().filter(|l| l.starts_with("//")).count(), 3);
    fake.run(SAVE, &["/config/other.boot"], &[]).ok();
    assert_eq!(fake.read("config/other.boot"), saved);
    assert_eq!(fake.status()["saved"], true);
    s.api(&["unmarkSessionUnsaved"]).ok();
    assert_eq!(s.api(&["sessionUnsaved"]).code, 1);
}

#[test]
fn load_file_replaces_working_and_load_config_migrates_without_footer() {
    let fake = Fake::booted("rolling");
    let s = fake.session("6");
    let bare = fake.path("config/bare.boot");
    std::fs::write(&bare, "system {\n    host-name \"loaded\"\n}\n").unwrap();
    s.api(&["loadFile", "/config/bare.boot"]).ok();
    assert_eq!(s.working(), "system {\n    host-name \"loaded\"\n}\n");
    assert!(s.changed());
    assert!(!fake.events().iter().any(|e| e.contains("migrated")), "raw loadFile does not migrate");

    let out = fake.run(LOAD, &[bare.to_str().unwrap()], &s.env).ok();
    assert_eq!(out.stdout, "Load complete. Use 'commit' to make changes effective.\n");
    assert_eq!(s.working(), "system {\n    host-name \"loaded-migrated\"\n}\n");
    assert!(fake.events().iter().any(|e| e.contains("migrated source=")));

    let profile: serde_json::Value = serde_json::from_str(&fake.read("fake/profile.json")).unwrap();
    let footer = format!(
        "// Warning: Do not remove the following line.\n// vyos-config-version: \"{}\"\n// Release version: {}\n",
        profile["component_versions"].as_str().unwrap(),
        profile["version"].as_str().unwrap()
    );
    std::fs::write(fake.path("config/good.boot"), format!("system {{\n    host-name \"clean\"\n}}\n\n{footer}"))
        .unwrap();
    fake.run(LOAD, &["/config/good.boot"], &s.env).ok();
    assert_eq!(s.working(), "system {\n    host-name \"clean\"\n}\n");

    std::fs::write(fake.path("config/broken.boot"), "system {\n    host-name \"x\"\n").unwrap();
    let out = s.api(&["loadFile", "/config/broken.boot"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.starts_with("Syntax error on line"), "{out:?}");
}

#[test]
fn merge_cli_differs_by_profile() {
    let file_text = "interfaces {\n    dummy dum0 {\n        address \"10.0.0.1/32\"\n    }\n}\n";
    let old = Fake::booted("sagitta");
    std::fs::write(old.path("config/m.boot"), file_text).unwrap();
    let s = old.session("1");
    assert_eq!(s.run(MERGE, &["/config/m.boot", "--destructive"]).code, 2);
    let out = s.run(MERGE, &["/config/m.boot", "interfaces"]).ok();
    assert_eq!(out.stdout, "Merge complete. Use 'commit' to make changes effective.\n");
    assert!(s.working().contains("dummy dum0 {"));
    assert!(s.working().contains("host-name \"vyos\""));

    let new = Fake::booted("rolling");
    std::fs::write(new.path("config/m.boot"), file_text).unwrap();
    let s = new.session("1");
    assert_eq!(s.run(MERGE, &["/config/m.boot", "interfaces"]).code, 2);
    s.set("interfaces dummy dum0 address 10.0.0.2/32").ok();
    s.run(MERGE, &["/config/m.boot"]).ok();
    assert!(s.working().contains("address \"10.0.0.2/32\"\n        address \"10.0.0.1/32\""), "{}", s.working());
    s.run(MERGE, &["/config/m.boot", "--destructive"]).ok();
    let working = s.working();
    assert!(working.contains("address \"10.0.0.1/32\""));
    assert!(!working.contains("10.0.0.2/32"), "--destructive replaces the merged subtrees: {working}");
    assert!(working.contains("ethernet eth0"), "--destructive keeps what the file does not touch: {working}");
}

#[test]
fn profiles_and_boot_gating_files() {
    let fake = Fake::install("sagitta", &[]);
    assert!(!fake.path("tmp/vyos-config-status").exists());
    assert!(fake.read("etc/os-release").contains("VERSION_ID=\"1.4.3\""));
    let version: serde_json::Value = serde_json::from_str(&fake.read("usr/share/vyos/version.json")).unwrap();
    assert_eq!(version["version"], "1.4.3");
    fake.ctl(&["boot-complete"]).ok();
    assert_eq!(fake.read("tmp/vyos-config-status"), "0");

    let auto = Fake::install("circinus", &[]);
    assert!(auto.read("etc/os-release").contains("VERSION_ID=\"1.5.0\""));
    auto.ctl(&["advance", "59"]).ok();
    assert!(!auto.path("tmp/vyos-config-status").exists());
    auto.ctl(&["advance", "1"]).ok();
    assert!(auto.path("tmp/vyos-config-status").exists());

    let rolling = Fake::booted("rolling");
    assert!(rolling.read("etc/os-release").contains("VERSION_ID=\"2026.11.01-0019-rolling\""));
    let dozen = Fake::install("dozenos", &["--version", "7.7-dozen", "--boot-complete"]);
    let os = dozen.read("etc/os-release");
    assert!(os.contains("ID=dozenos\n") && os.contains("VERSION_ID=\"7.7-dozen\""), "{os}");
    assert!(dozen.read("config/config.boot").ends_with("// Release version: 7.7-dozen\n"));
    let boot_id = dozen.read("proc/sys/kernel/random/boot_id");
    assert_eq!(boot_id.trim().len(), 36);
    for tool in [SHELL_API, MY_SET, MY_DELETE, MY_COMMENT, MY_COMMIT, MY_DISCARD, SAVE, LOAD, MERGE, CONFIG_MGMT, VTYSH]
    {
        assert!(dozen.path(tool).exists(), "{tool}");
    }
    assert!(dozen.path("usr/sbin/vyshim").exists());
}

#[test]
fn rolling_records_missing_session_env() {
    let fake = Fake::booted("rolling");
    let s = fake.session("3");
    s.set("system host-name r").ok();
    let status = fake.status();
    let warnings = status["env_warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w == "my_set:SESSION_PID"), "{status}");
    let quiet = Fake::booted("rolling");
    let s = quiet.session("3");
    let env = s.with(&[("SESSION_PID", "3"), ("_OFR_CONFIGURE", "ok")]);
    quiet.run(MY_SET, &["system", "host-name", "r"], &env).ok();
    assert!(
        quiet.status()["env_warnings"].as_array().unwrap().iter().all(|w| !w.as_str().unwrap().starts_with("my_set"))
    );
}

#[test]
fn vtysh_bgp_summary_follows_config_and_ctl() {
    let fake = Fake::booted("sagitta");
    assert_eq!(fake.run(VTYSH, &["-c", "show bgp summary json"], &[]).ok().stdout.trim(), "{}");
    fake.ctl(&[
        "manual-commit",
        "set protocols bgp system-as 65001",
        "set protocols bgp neighbor 192.0.2.2 remote-as 65002",
    ])
    .ok();
    let summary = |f: &Fake| -> serde_json::Value {
        serde_json::from_str(&f.run(VTYSH, &["-c", "show bgp summary json"], &[]).ok().stdout).unwrap()
    };
    assert_eq!(summary(&fake)["ipv4Unicast"]["peers"]["192.0.2.2"]["state"], "Idle");
    fake.ctl(&["bgp-state", "Established"]).ok();
    let v = summary(&fake);
    assert_eq!(v["ipv4Unicast"]["peers"]["192.0.2.2"]["state"], "Established");
    assert_eq!(v["ipv4Unicast"]["as"], 65001);
    assert_eq!(fake.run(VTYSH, &["-c", "show ip route json"], &[]).ok().stdout, "{}\n");
    assert_eq!(fake.run(VTYSH, &["-c", "show running-config"], &[]).code, 1);
}

#[test]
fn initial_config_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("init.boot");
    std::fs::write(&file, "set system host-name from-file\nset interfaces dummy dum0 address 10.9.9.9/32\n").unwrap();
    let fake = Fake::install("sagitta", &["--config", file.to_str().unwrap(), "--boot-complete"]);
    assert_eq!(
        fake.active(),
        "interfaces {\n    dummy dum0 {\n        address \"10.9.9.9/32\"\n    }\n}\nsystem {\n    host-name \"from-file\"\n}\n"
    );
    let saved = Config::parse_hierarchical(&fake.read("config/config.boot")).unwrap();
    assert_eq!(render_config(&saved.tree, Default::default()), fake.active());
}
