//! The multi-call entry point: which tool runs, on which fake root.
//!
//! The tool is the basename of `argv[0]`. Its root is `argv[0]` with the tool's known path
//! stripped (`ROOT/opt/vyatta/sbin/my_set` → `ROOT`), or else `$FAKEVYOS_ROOT`. Invoked as
//! `fakevyos`, the first argument is a subcommand: `install ROOT …` or `ctl ROOT …`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::commit;
use crate::confirm;
use crate::ctl;
use crate::ctx::Ctx;
use crate::edit::{self, Op};
use crate::error::{Error, Output, Result};
use crate::install;
use crate::keepalived;
use crate::layout::{self, Root};
use crate::save;
use crate::shell_api;
use crate::vtysh;

const USAGE: &str = "usage: fakevyos install ROOT [--profile sagitta|circinus|rolling|dozenos] [--version V] \
[--config FILE] [--boot-complete]\n       fakevyos ctl ROOT COMMAND [ARGS…]\n";

/// Runs one invocation: `argv` (with `argv[0]`) and the environment.
pub fn run(argv: &[String], env: BTreeMap<String, String>) -> Result<Output> {
    let argv0 = argv.first().map(String::as_str).unwrap_or("fakevyos");
    let args = argv.get(1..).unwrap_or_default();
    let basename = Path::new(argv0).file_name().and_then(|n| n.to_str()).unwrap_or(argv0);
    let Some((tool, rel)) = layout::tool_for(basename) else {
        return run_fakevyos(args, env);
    };
    let root =
        layout::root_from_invocation(argv0, rel, env.get("FAKEVYOS_ROOT").map(String::as_str)).ok_or_else(|| {
            Error::Usage(format!(
                "fakevyos: cannot find the fake root for {argv0:?}: invoke {rel} by its absolute path under the root, \
             or set FAKEVYOS_ROOT"
            ))
        })?;
    let ctx = Ctx::new(root, tool, env)?;
    match *tool {
        "cli-shell-api" => shell_api::run(&ctx, args),
        "my_set" => edit::run(&ctx, Op::Set, args),
        "my_delete" => edit::run(&ctx, Op::Delete, args),
        "my_comment" => edit::run(&ctx, Op::Comment, args),
        "my_discard" => edit::discard(&ctx, args),
        "my_commit" => commit::my_commit(&ctx),
        "vyos-save-config.py" => save::save(&ctx, args),
        "vyos-load-config.py" => save::load_config(&ctx, args),
        "vyos-merge-config.py" => save::merge_config(&ctx, args),
        "config-mgmt" => confirm::run(&ctx, args),
        "vtysh" => vtysh::run(&ctx, args),
        "keepalived" => keepalived::daemon(&ctx, args),
        _ => Ok(Output::ok("")), // vyshim: not used by the double
    }
}

fn run_fakevyos(args: &[String], env: BTreeMap<String, String>) -> Result<Output> {
    match args.split_first() {
        Some((cmd, rest)) if cmd == "install" => install::install(&install::parse_args(rest)?),
        Some((cmd, rest)) if cmd == "ctl" => {
            let Some((root, rest)) = rest.split_first() else {
                return Err(Error::Usage(format!("missing ROOT\n{USAGE}")));
            };
            let ctx = Ctx::new(Root::new(root), "ctl", env)?;
            ctl::run(&ctx, rest)
        }
        Some((cmd, _)) if cmd == "--help" || cmd == "-h" || cmd == "help" => Ok(Output::ok(USAGE)),
        _ => Err(Error::Usage(USAGE.trim_end().to_owned())),
    }
}
