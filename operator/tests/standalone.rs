//! End to end: the real `vrouter-operator standalone --simulate` binary on the quick start,
//! then a template change, a params change and a removed binding, each checked on the
//! simulated routers' running configurations with the vyos model.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vyos_config::Config;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Runs the operator until every router is synced; returns stdout.
fn sync(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter-operator"))
        .args(["--log", "warn", "standalone"])
        .arg(dir)
        .args(["--simulate", "--until-synced", "--timeout", "90s", "--listen", "127.0.0.1:0", "--poll-ms", "200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "not synced:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn running(dir: &Path, router: &str) -> Config {
    let path = dir.join(format!(".vrouter/routers/default_{router}/sim/active.boot"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Config::parse(&text).unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn quickstart_converges_and_follows_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    copy_dir(&quickstart(), &dir);

    // 1. First sync: every router gets base + overlay (+ the hand-written banner on the hub).
    sync(&dir);
    let hub = running(&dir, "hub");
    assert_eq!(hub.tree.values(&["system", "host-name"]), ["hub"]);
    assert_eq!(hub.tree.values(&["protocols", "bgp", "system-as"]), ["65000"]);
    assert!(hub.tree.exists(&["protocols", "bgp", "neighbor", "10.255.0.12", "address-family", "ipv4-unicast"]));
    assert_eq!(hub.tree.values(&["interfaces", "wireguard", "wg0", "address"]), ["10.255.0.1/24"]);
    // The secret reached the router, and nothing the operator wrote holds it.
    assert_eq!(
        hub.tree.values(&["interfaces", "wireguard", "wg0", "private-key"]),
        ["aHViLXByaXZhdGUta2V5LWRlbW8tb25seS0wMDAwMDA="]
    );
    let status = std::fs::read_to_string(dir.join(".vrouter/status.yaml")).unwrap();
    assert!(!status.contains("aHViLXByaXZhdGU"));
    assert!(status.contains("@@vrouter-secret:wireguard-keys/hub@@"));
    assert!(hub.tree.exists(&["system", "login", "banner", "post-login"]));
    let b1 = running(&dir, "branch-1");
    assert_eq!(b1.tree.values(&["interfaces", "wireguard", "wg0", "peer", "hub", "address"]), ["203.0.113.1"]);
    assert_eq!(b1.tree.values(&["system", "time-zone"]), ["Europe/Paris"]);

    // 2. A params change reaches every router; a template change adds a leaf.
    edit(&dir.join("10-params.yaml"), "timezone: Europe/Paris", "timezone: UTC");
    edit(
        &dir.join("20-templates.yaml"),
        "        description \"WAN\"\n",
        "        description \"WAN uplink\"\n        mtu \"1500\"\n",
    );
    sync(&dir);
    for r in ["hub", "branch-1", "branch-2"] {
        let c = running(&dir, r);
        assert_eq!(c.tree.values(&["system", "time-zone"]), ["UTC"], "{r}");
        assert_eq!(c.tree.values(&["interfaces", "ethernet", "eth0", "mtu"]), ["1500"], "{r}");
        assert_eq!(c.tree.values(&["interfaces", "ethernet", "eth0", "description"]), ["WAN uplink"], "{r}");
    }

    // 3. Removing the overlay binding removes what it put on the routers (Merge policy), and
    // leaves the rest alone.
    let bindings = std::fs::read_to_string(dir.join("40-bindings.yaml")).unwrap();
    let kept: Vec<&str> = bindings.split("\n---\n").filter(|d| !d.contains("name: overlay")).collect();
    std::fs::write(dir.join("40-bindings.yaml"), kept.join("\n---\n")).unwrap();
    sync(&dir);
    let hub = running(&dir, "hub");
    assert!(!hub.tree.exists(&["interfaces", "wireguard"]));
    assert!(!hub.tree.exists(&["protocols", "bgp"]));
    assert_eq!(hub.tree.values(&["system", "host-name"]), ["hub"]);
    assert!(hub.tree.exists(&["system", "login", "banner", "post-login"]));
    let status = std::fs::read_to_string(dir.join(".vrouter/status.yaml")).unwrap();
    assert!(!status.contains("overlay.hub"), "orphaned generated config still present");
    assert!(!dir.join(".vrouter/status/default/vrouterconfig/overlay.hub.yaml").exists());
    let hub_status = std::fs::read_to_string(dir.join(".vrouter/status/default/vroutertarget/hub.yaml")).unwrap();
    assert!(hub_status.contains("type: ConfigApplied"));

    // 4. `diff` against the simulated routers: nothing left to do; after a params change, the
    // commands that would run (and only those).
    let diff = |dir: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_vrouter-operator")).arg("diff").arg(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let d = diff(&dir);
    assert_eq!(d.matches("(no change)").count(), 3, "{d}");
    edit(&dir.join("10-params.yaml"), "timezone: UTC", "timezone: Asia/Tokyo");
    let d = diff(&dir);
    assert_eq!(d.matches("set system time-zone 'Asia/Tokyo'").count(), 3, "{d}");
    // A changed value is a delete and a set, as VyOS's own diff has it.
    assert_eq!(d.matches("delete system time-zone 'UTC'").count(), 3, "{d}");
    assert_eq!(d.lines().filter(|l| !l.starts_with('#')).count(), 6, "{d}");
}

#[test]
fn render_reports_broken_manifests_with_file_and_document() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: b}\nspec: {templateRefs: []}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter-operator")).arg("render").arg(tmp.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml (document 1): VRouterBinding \"b\": spec.templateRefs"), "{err}");
}

fn operator(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vrouter-operator")).args(["--log", "warn"]).args(args).arg(dir).output().unwrap()
}

#[test]
fn an_invalid_namespace_or_api_version_is_refused_with_file_and_document() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ns.yaml"),
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r0}\nspec: {}\n---\n\
         apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r1, namespace: ../../x}\nspec: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("api.yaml"),
        "apiVersion: vrouter.kojuro.date/v2\nkind: VRouterTarget\nmetadata: {name: r2}\nspec: {}\n---\n\
         apiVersion: example.com/v1\nkind: VRouterBinding\nmetadata: {name: b}\nspec: {}\n",
    )
    .unwrap();
    for args in [&["render"][..], &["diff"], &["standalone", "--simulate", "--until-synced", "--listen", "127.0.0.1:0"]]
    {
        let out = operator(args, &dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains(
                "ns.yaml (document 2): VRouterTarget metadata.namespace: \"../../x\" is not a valid namespace"
            ),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("api.yaml (document 1): VRouterTarget: unknown apiVersion \"vrouter.kojuro.date/v2\""),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("api.yaml (document 2): VRouterBinding: unknown apiVersion \"example.com/v1\""),
            "{args:?}: {err}"
        );
    }
    // Refused before any state was made.
    assert!(!dir.join(".vrouter/pki").exists());
    assert!(!dir.join(".vrouter/ca.pem").exists());
}

#[test]
fn until_synced_fails_while_a_config_is_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    copy_dir(&quickstart(), &dir);
    std::fs::write(
        dir.join("orphan.yaml"),
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterConfig\nmetadata: {name: orphan}\n\
         spec: {targetRef: {name: gone}, commands: \"set system host-name 'x'\\n\"}\n",
    )
    .unwrap();
    let out = operator(
        &[
            "standalone",
            "--simulate",
            "--until-synced",
            "--timeout",
            "10s",
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "200",
        ],
        &dir,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not synced after 10s"), "{err}");
    assert!(err.contains("VRouterConfig default/orphan: Failed: VRouterTarget \"gone\" not found"), "{err}");
    // Every router did sync: the failed config is the one thing pending.
    assert_eq!(err.matches("\n  ").count(), 1, "{err}");
}

/// Issue 21, end to end on the `render` command: a parameter holding a quote and a newline is
/// refused (it added user mallory before), one holding a quote stays one value, and a template
/// using `raw_syntax` is reported.
#[test]
fn render_keeps_each_parameter_one_value() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = |evil: &str| {
        format!(
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {{name: dns}}\nspec:\n  \
             commands: |\n    set system domain-name '{{{{ evil }}}}'\n  \
             config: |\n    system {{\n        host-name {{{{ evil }}}}\n    }}\n---\n\
             apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {{name: raw}}\nspec:\n  \
             commands: |\n    {{{{ extra | default('') | raw_syntax }}}}\n---\n\
             apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {{name: r1}}\nspec:\n  \
             provider: {{type: none}}\n  params:\n    evil: {evil}\n---\n\
             apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {{name: b}}\nspec:\n  \
             templateRefs: [{{name: dns}}, {{name: raw}}]\n  targetRefs: [{{name: r1}}]\n"
        )
    };
    let render = |evil: &str| {
        std::fs::write(tmp.path().join("site.yaml"), manifests(evil)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vrouter-operator")).arg("render").arg(tmp.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = render(r#""corp.example'\nset system login user mallory authentication plaintext-password 'hunter22'""#);
    assert!(!out.contains("mallory authentication"), "{out}");
    assert!(
        out.contains("# problem: VRouterBinding default/b: target \"r1\": template \"dns\" (config) line 2: the value"),
        "{out}"
    );
    assert!(out.contains("contains a newline"), "{out}");
    assert!(out.contains("# warning: namespace \"default\": template \"raw\" (commands) line 1: raw_syntax"), "{out}");

    let out = render(r#""x' description 'y""#);
    assert!(out.contains("#     domain-name \"x' description 'y\""), "{out}");
    assert!(out.contains("#     host-name \"x' description 'y\""), "{out}");
}
