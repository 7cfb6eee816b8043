//! Helpers for driving an installed fake root through its executables.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use regex::Regex;
use tempfile::TempDir;

pub const MY_SET: &str = "opt/vyatta/sbin/my_set";
pub const MY_DELETE: &str = "opt/vyatta/sbin/my_delete";
pub const MY_COMMENT: &str = "opt/vyatta/sbin/my_comment";
pub const MY_COMMIT: &str = "opt/vyatta/sbin/my_commit";
pub const MY_DISCARD: &str = "opt/vyatta/sbin/my_discard";
pub const SHELL_API: &str = "bin/cli-shell-api";
pub const SAVE: &str = "usr/libexec/vyos/vyos-save-config.py";
pub const LOAD: &str = "usr/libexec/vyos/vyos-load-config.py";
pub const MERGE: &str = "usr/libexec/vyos/vyos-merge-config.py";
pub const CONFIG_MGMT: &str = "usr/bin/config-mgmt";
pub const VTYSH: &str = "usr/bin/vtysh";

/// What a command printed.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout and stderr together, as ConfigSession reads them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success, got {self:?}");
        self
    }
}

/// An installed fake root in a temporary directory.
pub struct Fake {
    _dir: TempDir,
    pub root: PathBuf,
}

fn base_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

fn output(cmd: &mut Command) -> Out {
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Fake {
    pub fn install(profile: &str, extra: &[&str]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let mut cmd = base_command(Path::new(env!("CARGO_BIN_EXE_fakevyos")));
        cmd.arg("install").arg(&root).args(["--profile", profile]).args(extra);
        output(&mut cmd).ok();
        Fake { _dir: dir, root }
    }

    /// A booted root.
    pub fn booted(profile: &str) -> Fake {
        Fake::install(profile, &["--boot-complete"])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn command(&self, rel: &str, args: &[&str], env: &[(String, String)]) -> Command {
        let mut cmd = base_command(&self.path(rel));
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs a tool by its absolute path under the root.
    pub fn run(&self, rel: &str, args: &[&str], env: &[(String, String)]) -> Out {
        output(&mut self.command(rel, args, env))
    }

    pub fn spawn(&self, rel: &str, args: &[&str], env: &[(String, String)]) -> Child {
        self.command(rel, args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn ctl(&self, args: &[&str]) -> Out {
        let mut cmd = base_command(Path::new(env!("CARGO_BIN_EXE_fakevyos")));
        cmd.arg("ctl").arg(&self.root).args(args);
        output(&mut cmd)
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl(&["status"]).ok().stdout).unwrap()
    }

    pub fn events(&self) -> Vec<String> {
        self.read("fake/events").lines().map(str::to_owned).collect()
    }

    pub fn active(&self) -> String {
        self.run(SHELL_API, &["--show-active-only", "--show-ignore-edit", "showConfig"], &[]).ok().stdout
    }

    /// Opens a session like ConfigSession: getSessionEnv, pick the variables, setupSession.
    pub fn session(&self, sid: &str) -> Session<'_> {
        let text = self.run(SHELL_API, &["getSessionEnv", sid], &[]).ok().stdout;
        let re = Regex::new(r"([A-Z_]+)=([^;\s]+)").unwrap();
        let mut env: BTreeMap<String, String> =
            re.captures_iter(&text).map(|c| (c[1].to_owned(), c[2].to_owned())).collect();
        env.insert("COMMIT_VIA".into(), "test-agent".into());
        let session = Session { fake: self, env: env.into_iter().collect() };
        session.api(&["setupSession"]).ok();
        session
    }

    /// Installs a post-commit hook that appends its COMMIT_* variables to `out`.
    pub fn env_hook(&self, name: &str, out: &Path) {
        let script = format!(
            "#!/bin/sh\necho \"STATUS=$COMMIT_STATUS VIA=$COMMIT_VIA COMMENT=$COMMIT_COMMENT\" >> '{}'\n",
            out.display()
        );
        let path = self.path("config/scripts/commit/post-hooks.d").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A config session: the environment getSessionEnv printed.
pub struct Session<'a> {
    pub fake: &'a Fake,
    pub env: Vec<(String, String)>,
}

impl Session<'_> {
    pub fn with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    pub fn run(&self, rel: &str, args: &[&str]) -> Out {
        self.fake.run(rel, args, &self.env)
    }

    pub fn api(&self, args: &[&str]) -> Out {
        self.run(SHELL_API, args)
    }

    pub fn set(&self, path: &str) -> Out {
        let words: Vec<&str> = path.split_whitespace().collect();
        self.run(MY_SET, &words)
    }

    pub fn delete(&self, path: &str) -> Out {
        let words: Vec<&str> = path.split_whitespace().collect();
        self.run(MY_DELETE, &words)
    }

    pub fn commit(&self) -> Out {
        self.run(MY_COMMIT, &[])
    }

    pub fn working(&self) -> String {
        self.api(&["--show-working-only", "--show-ignore-edit", "showConfig"]).ok().stdout
    }

    pub fn changed(&self) -> bool {
        self.api(&["sessionChanged"]).code == 0
    }
}
