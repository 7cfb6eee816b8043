//! `cli-shell-api`: option parsing (getopt-style: options may come anywhere) and dispatch.

use crate::ctx::Ctx;
use crate::error::{Output, Result};
use crate::save;
use crate::session;
use crate::show::{self, ShowOptions, Source};
use crate::state;

/// `cli-shell-api [options] OPERATION [args…]`.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<Output> {
    let mut options = ShowOptions::default();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        match arg {
            "--show-active-only" => options.active_only = true,
            "--show-working-only" => options.working_only = true,
            "--show-show-defaults" => options.show_defaults = true,
            "--show-hide-secrets" => options.hide_secrets = true,
            "--show-commands" => options.commands = true,
            "--show-ignore-edit" | "--show-context-diff" => {}
            "--show-cfg1" | "--show-cfg2" => {
                i += 1;
                let value = args.get(i).cloned();
                if arg == "--show-cfg1" { options.cfg1 = value } else { options.cfg2 = value }
            }
            "--" => {
                words.extend(args[i + 1..].iter().cloned());
                break;
            }
            other if other.starts_with("--") => {
                return Ok(Output {
                    code: 1,
                    stderr: format!("cli-shell-api: unrecognized option '{other}'\n"),
                    ..Output::default()
                });
            }
            _ => words.push(args[i].clone()),
        }
        i += 1;
    }
    let Some((operation, rest)) = words.split_first() else {
        return Ok(Output { code: 1, stderr: "Must specify operation\n".into(), ..Output::default() });
    };
    if operation != "getSessionEnv" {
        crate::timers::prelude(&ctx.root)?;
    }
    let need_path = |rest: &[String]| rest.is_empty();
    match operation.as_str() {
        "getSessionEnv" => match rest {
            [sid] => Ok(Output::ok(session::env_text(&ctx.root, sid))),
            _ => Ok(Output { code: 1, stderr: "Must specify session ID\n".into(), ..Output::default() }),
        },
        "setupSession" => session::setup(ctx),
        "teardownSession" => session::teardown(ctx),
        "inSession" => Ok(session::in_session(ctx)),
        "sessionChanged" => session::session_changed(ctx),
        "sessionUnsaved" => {
            let _locked = state::lock(&ctx.root)?;
            Ok(Output::status(session::from_env(ctx).is_ok_and(|s| s.dir.is_dir() && s.unsaved())))
        }
        "markSessionUnsaved" | "unmarkSessionUnsaved" => match session::require(ctx, operation) {
            Ok(session) => {
                let _locked = state::lock(&ctx.root)?;
                session.set_unsaved(operation == "markSessionUnsaved")?;
                Ok(Output::ok(""))
            }
            Err(out) => Ok(out),
        },
        "showConfig" | "showCfg" => show::show_config(ctx, &options, rest),
        "exists" | "existsActive" | "existsEffective" if need_path(rest) => {
            Ok(Output { code: 1, stderr: "Must specify config path\n".into(), ..Output::default() })
        }
        "exists" => show::exists(ctx, Source::Working, rest),
        "existsActive" | "existsEffective" => show::exists(ctx, Source::Active, rest),
        "listNodes" => show::list_nodes(ctx, Source::Working, rest),
        "listActiveNodes" | "listEffectiveNodes" => show::list_nodes(ctx, Source::Active, rest),
        "returnValue"
        | "returnActiveValue"
        | "returnEffectiveValue"
        | "returnValues"
        | "returnActiveValues"
        | "returnEffectiveValues"
            if need_path(rest) =>
        {
            Ok(Output { code: 1, stderr: "Must specify config path\n".into(), ..Output::default() })
        }
        "returnValue" => show::return_value(ctx, Source::Working, rest),
        "returnActiveValue" | "returnEffectiveValue" => show::return_value(ctx, Source::Active, rest),
        "returnValues" => show::return_values(ctx, Source::Working, rest),
        "returnActiveValues" | "returnEffectiveValues" => show::return_values(ctx, Source::Active, rest),
        "validateTmplPath" | "validateTmplValPath" => {
            let mode =
                if operation == "validateTmplValPath" { crate::schema::Mode::Set } else { crate::schema::Mode::Delete };
            let ok = ctx.schema()?.resolve(rest, mode).is_ok();
            Ok(Output::status(ok))
        }
        "loadFile" => match rest {
            [file] => save::load_file(ctx, file),
            _ => Ok(Output { code: 1, stderr: "Must specify config file\n".into(), ..Output::default() }),
        },
        _ => Ok(Output { code: 1, stderr: "Invalid operation\n".into(), ..Output::default() }),
    }
}
