//! `fakevyos install ROOT [--profile P] [--version V] [--config FILE] [--boot-complete]`:
//! builds a fake root filesystem.

use std::path::{Path, PathBuf};

use vyos_config::{Config, Format, Op, Tree, detect_format, parse_commands};

use crate::archive::saved_text;
use crate::edit;
use crate::error::{Error, Output, Result, io_at};
use crate::files;
use crate::layout::{Root, TOOLS};
use crate::profile::{Family, Profile};
use crate::schema::Schema;
use crate::session;
use crate::state::{self, State};

/// The configuration a fresh root starts with (VyOS's default has `commit-revisions 100`,
/// which turns the archive on).
pub const DEFAULT_CONFIG: &str = "\
interfaces {
    ethernet eth0 {
        address \"dhcp\"
    }
    loopback lo {
    }
}
service {
    ssh {
    }
}
system {
    config-management {
        commit-revisions \"100\"
    }
    host-name \"vyos\"
}
";

/// Install options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The root directory.
    pub root: PathBuf,
    /// The release family.
    pub family: Family,
    /// A custom version string.
    pub version: Option<String>,
    /// The initial configuration file.
    pub config: Option<PathBuf>,
    /// Whether boot is already complete.
    pub boot_complete: bool,
}

/// Parses `install`'s arguments.
pub fn parse_args(args: &[String]) -> Result<Options> {
    let mut root = None;
    let mut options =
        Options { root: PathBuf::new(), family: Family::Sagitta, version: None, config: None, boot_complete: false };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let mut value = || {
            i += 1;
            args.get(i).cloned().ok_or_else(|| Error::Usage(format!("{arg} needs a value")))
        };
        match arg {
            "--profile" => options.family = Family::parse(&value()?)?,
            "--version" => options.version = Some(value()?),
            "--config" => options.config = Some(PathBuf::from(value()?)),
            "--boot-complete" => options.boot_complete = true,
            other if other.starts_with("--") => return Err(Error::Usage(format!("unknown install option {other}"))),
            other if root.is_none() => root = Some(PathBuf::from(other)),
            other => return Err(Error::Usage(format!("unexpected argument {other}"))),
        }
        i += 1;
    }
    options.root = root.ok_or_else(|| {
        Error::Usage(
            "usage: fakevyos install ROOT [--profile sagitta|circinus|rolling|dozenos] [--version V] [--config FILE] [--boot-complete]"
                .into(),
        )
    })?;
    Ok(options)
}

/// Reads the initial configuration: hierarchical, or `set` commands checked against the schema.
fn initial_tree(text: &str, schema: &Schema) -> std::result::Result<Tree, String> {
    let mut tree = match detect_format(text) {
        Format::Hierarchical => Config::parse_hierarchical(text).map_err(|e| e.vyos_message())?.tree,
        Format::Commands => {
            let mut tree = Tree::new();
            for command in parse_commands(text).map_err(|e| e.to_string())? {
                let argv: Vec<String> = command.argv().into_iter().map(str::to_owned).collect();
                let result = match command.op {
                    Op::Set => edit::set(schema, &mut tree, &argv),
                    Op::Delete => edit::delete(schema, &mut tree, &argv),
                    Op::Comment => edit::comment(schema, &mut tree, &argv),
                };
                result.map_err(|e| format!("line {}: {}", command.line, e.trim_end()))?;
            }
            tree
        }
    };
    session::mark_tags(&mut tree, schema);
    Ok(tree)
}

fn link_tool(binary: &Path, target: &Path) -> Result<()> {
    if let Some(parent) = target.parent() {
        files::create_dir(parent)?;
    }
    files::remove_file(target)?;
    std::os::unix::fs::symlink(binary, target).map_err(io_at(target))
}

/// Builds the fake root.
pub fn install(options: &Options) -> Result<Output> {
    let root = Root::new(&options.root);
    let profile = Profile::new(options.family, options.version.clone());
    let schema = Schema::for_family(profile.family).map_err(Error::Corrupt)?;
    let text = match &options.config {
        Some(path) => files::read(path)?,
        None => DEFAULT_CONFIG.to_owned(),
    };
    let source = options.config.as_deref().unwrap_or(Path::new("default")).display().to_string();
    let tree = initial_tree(&text, &schema).map_err(|e| Error::Usage(format!("{source}: {e}")))?;

    let binary =
        std::env::current_exe().map_err(|e| Error::Corrupt(format!("cannot locate the fakevyos binary: {e}")))?;
    for (_, rel) in TOOLS {
        link_tool(&binary, &root.join(rel))?;
    }
    for dir in [
        root.active_dir(),
        root.session_parent(),
        root.hooks_dir(),
        root.archive_dir(),
        root.fake_dir(),
        root.join("opt/vyatta/share/vyatta-cfg/templates"),
        root.join("etc"),
    ] {
        files::create_dir(&dir)?;
    }
    files::empty_dir(&root.tmp_dir())?;
    session::wipe_all(&root)?;
    files::remove_file(&root.events_file())?;
    profile.store(&root)?;
    files::write_atomic(&root.join("etc/os-release"), profile.os_release().as_bytes())?;
    files::write_atomic(&root.join("usr/share/vyos/version.json"), profile.version_json().as_bytes())?;
    state::write_active(&root, &tree)?;
    files::write_atomic(&root.saved_config(), saved_text(&profile, &tree).as_bytes())?;
    let boot_id = state::new_boot_id(&root)?;

    let mut initial = State::new();
    if options.boot_complete {
        files::write_atomic(&root.boot_status(), b"0")?;
    } else {
        initial.boot_complete_at = initial.boot_time.map(|t| initial.clock + t);
    }
    state::store(&root, &initial)?;
    files::write_atomic(&root.state_lock(), b"")?;
    state::record_event(
        &root,
        initial.clock,
        "installed",
        &format!("profile={} boot_id={boot_id}", profile.family.name()),
    )?;
    crate::keepalived::restart(&root, &tree, initial.clock)?;
    Ok(Output::ok(""))
}
