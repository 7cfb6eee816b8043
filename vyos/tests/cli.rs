//! Tests of the `vyos-config` binary, run as a process on real files.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vyos-config");

const HIER: &str = "\
interfaces {
    ethernet eth10 {
        address 10.0.0.1/24
    }
    ethernet eth2 {
        /* uplink */
        description \"to core\"
    }
}
system {
    host-name vyos
}

// Warning: Do not remove the following line.
// vyos-config-version: \"system@27\"
// Release version: 1.4.0
";

const CMDS: &str = "\
# the same configuration as commands
set system host-name 'vyos'
set interfaces ethernet eth2 description 'to core'
comment interfaces ethernet eth2 description 'uplink'
set interfaces ethernet eth10 address '10.0.0.1/24'
";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn run_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn fmt_is_canonical_and_keeps_the_footer() {
    let d = Dir::new();
    let f = d.file("c.boot", HIER);
    let out = stdout(&run(&["fmt", p(&f)]));
    assert_eq!(
        out,
        "interfaces {\n    ethernet eth2 {\n        /* uplink */\n        description \"to core\"\n    }\n    ethernet eth10 {\n        address \"10.0.0.1/24\"\n    }\n}\nsystem {\n    host-name \"vyos\"\n}\n\n// Warning: Do not remove the following line.\n// vyos-config-version: \"system@27\"\n// Release version: 1.4.0\n"
    );
    // fmt of fmt is the same.
    let g = d.file("g.boot", &out);
    assert_eq!(stdout(&run(&["fmt", p(&g)])), out);
}

#[test]
fn commands_and_back() {
    let d = Dir::new();
    let f = d.file("c.boot", HIER);
    let out = stdout(&run(&["commands", p(&f)]));
    assert_eq!(
        out,
        "set interfaces ethernet eth2 description 'to core'\ncomment interfaces ethernet eth2 description 'uplink'\nset interfaces ethernet eth10 address '10.0.0.1/24'\nset system host-name 'vyos'\n"
    );
    // Commands format in, hierarchical out (tag nodes recognised).
    let c = d.file("c.cmds", CMDS);
    let fmt = stdout(&run(&["fmt", p(&c)]));
    assert!(fmt.contains("    ethernet eth2 {\n        /* uplink */\n"), "{fmt}");
}

#[test]
fn digest_is_the_same_for_both_formats() {
    let d = Dir::new();
    let a = stdout(&run(&["digest", p(&d.file("c.boot", HIER))]));
    let b = stdout(&run(&["digest", p(&d.file("c.cmds", CMDS))]));
    assert_eq!(a, b);
    assert!(a.starts_with("sha256:") && a.trim_end().len() == 71, "{a}");
    let c = stdout(&run_stdin(&["digest", "-"], "set system host-name 'other'\n"));
    assert_ne!(a, c);
}

#[test]
fn diff_empty_when_equal_and_scoped() {
    let d = Dir::new();
    let a = d.file("a.boot", HIER);
    let b = d.file("b.cmds", CMDS);
    let o = run(&["diff", "--exit-code", p(&a), p(&b)]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty(), "{}", String::from_utf8_lossy(&o.stdout));

    let c = d.file("c.cmds", "set system host-name 'r1'\nset interfaces ethernet eth2 description 'to core'\nset protocols static route 0.0.0.0/0 next-hop 10.0.0.254\n");
    let out = stdout(&run(&["diff", p(&a), p(&c)]));
    assert_eq!(
        out,
        "delete interfaces ethernet eth10\ndelete system host-name 'vyos'\nset protocols static route 0.0.0.0/0 next-hop 10.0.0.254\nset system host-name 'r1'\ncomment interfaces ethernet eth2 description ''\n"
    );
    let scoped = stdout(&run(&["diff", "--scope", "system", p(&a), p(&c)]));
    assert_eq!(scoped, "delete system host-name 'vyos'\nset system host-name 'r1'\n");
    let vyos = stdout(&run(&["diff", "--vyos", "--scope", "protocols", p(&a), p(&c)]));
    assert_eq!(vyos, "\nset protocols static route 0.0.0.0/0 next-hop 10.0.0.254");
    let o = run(&["diff", "--exit-code", p(&a), p(&c)]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn apply_prints_the_result() {
    let d = Dir::new();
    let a = d.file("a.boot", HIER);
    let cmds = d.file(
        "x.cmds",
        "set system host-name 'r1'\ndelete interfaces ethernet eth10\nset system name-server '192.0.2.53'\n",
    );
    let out = stdout(&run(&["apply", p(&a), p(&cmds)]));
    assert!(out.contains("    host-name \"r1\"\n    name-server \"192.0.2.53\"\n"), "{out}");
    assert!(!out.contains("eth10"));
    assert!(out.ends_with("// Release version: 1.4.0\n"), "footer kept: {out}");
    // Commands from standard input.
    let out = stdout(&run_stdin(&["apply", p(&a), "-"], "delete system\n"));
    assert!(!out.contains("system {"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let d = Dir::new();
    let bad = d.file("bad.boot", "interfaces {\n    ethernet eth0 {\n        address a b\n    }\n}\n");
    let o = run(&["fmt", p(&bad)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.boot") && err.contains("line 3, character 19"), "{err}");

    let shell = d.file("x.cmds", "set system host-name 'a'\nset system host-name x; reboot\n");
    let o = run(&["apply", p(&d.file("a.boot", HIER)), p(&shell)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2, column 23") && err.contains("not shell"), "{err}");

    let verb = d.file("v.cmds", "set a b\ncommit\n");
    let o = run(&["fmt", p(&verb)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2, column 1: unknown command \"commit\""));

    let missing = run(&["fmt", "/nonexistent/file"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/file"));

    let m = d.file("m.cmds", "delete nothing here\n");
    let o = run(&["apply", p(&d.file("a2.boot", HIER)), p(&m)]);
    let err = String::from_utf8_lossy(&o.stderr);
    // Said once (the reason was also the error's source, and printed again after it).
    assert_eq!(
        err,
        format!(
            "vyos-config: {}: cannot apply: line 1: `delete nothing here`: configuration path [nothing here] does not exist\n",
            m.display()
        ),
    );

    // Control and bidi characters of values are escaped in messages.
    let bidi = d.file("b.cmds", "delete system host-name 'x\u{202e}y\u{1b}[2J'\n");
    let o = run(&["apply", p(&d.file("a3.boot", HIER)), p(&bidi)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("has no value 'x\\u{202e}y\\u{1b}[2J'"), "{err}");
    assert!(!err.contains('\u{202e}') && !err.contains('\u{1b}'), "{err}");

    let binary = d.0.path().join("bin");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let o = run(&["fmt", p(&binary)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not UTF-8"));
}
