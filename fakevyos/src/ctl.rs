//! `fakevyos ctl ROOT COMMAND …`: the test's hand on the fake router.
//!
//! | command | effect |
//! |---|---|
//! | `status` | JSON: clock, digests, saved?, pending confirm, boot id, boot state, sessions, knobs, events |
//! | `boot-complete` | `/tmp/vyos-config-status` appears now |
//! | `boot-time SECONDS\|manual` | how long the next boots take on the fake clock |
//! | `advance SECONDS` | moves the fake clock, firing what falls due |
//! | `tick` | fires what is due without moving the clock |
//! | `fail PATH [MESSAGE]` | commits touching the subtree PATH fail there |
//! | `unfail [PATH]` | removes one or all injected failures |
//! | `warn PATH TEXT` | commits touching PATH print `WARNING: TEXT` |
//! | `unwarn` | removes injected warnings |
//! | `latency MS` | every commit takes MS more milliseconds, lock held |
//! | `manual-commit 'set …' …` | a human's commit straight to the running config (hooks run) |
//! | `reboot` | hard reboot: the saved config.boot becomes running |
//! | `hold-lock SECONDS` | holds the commit lock (prints `locked` once it has it) |
//! | `set-failures COUNT` | the next COUNT `my_set` calls fail with a bare `Set failed` (VyOS right after a commit) |
//! | `bgp-state [PEER] STATE` | BGP session state `vtysh` reports (default peer: all) |
//! | `vrrp-state [GROUP] STATE` | VRRP state the fake keepalived dumps (default group: all) |

use std::io::Write;
use std::time::Duration;

use vyos_config::commands::parse_line;
use vyos_config::digest;

use crate::archive;
use crate::commit::{self, Origin};
use crate::ctx::Ctx;
use crate::edit;
use crate::error::{Error, Output, Result};
use crate::files;
use crate::session;
use crate::state::{self, Failure, Warning};
use crate::timers;

fn usage(message: &str) -> Error {
    Error::Usage(format!("{message}\nusage: fakevyos ctl ROOT COMMAND [ARGS…] (see docs/fakevyos.md)"))
}

fn words(path: &str) -> Vec<String> {
    path.split_whitespace().map(str::to_owned).collect()
}

fn number(arg: Option<&String>, what: &str) -> Result<u64> {
    arg.and_then(|a| a.parse().ok()).ok_or_else(|| usage(&format!("{what} must be a non-negative integer")))
}

/// Runs a ctl command.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<Output> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage("missing command"));
    };
    match command.as_str() {
        "status" => status(ctx),
        "tick" => {
            timers::prelude(&ctx.root)?;
            Ok(Output::ok(""))
        }
        "advance" => {
            let seconds = number(rest.first(), "SECONDS")?;
            {
                let mut locked = state::lock(&ctx.root)?;
                locked.state.clock += seconds;
                locked.save()?;
            }
            timers::prelude(&ctx.root)?;
            Ok(Output::ok(""))
        }
        "boot-complete" => knob(ctx, |root, locked| {
            if !root.boot_status().exists() {
                timers::complete_boot(root, locked)?;
            }
            Ok(())
        }),
        "boot-time" => {
            let value = match rest.first().map(String::as_str) {
                Some("manual") => None,
                other => Some(number(other.map(ToOwned::to_owned).as_ref(), "SECONDS")?),
            };
            knob(ctx, |_, locked| {
                locked.state.boot_time = value;
                Ok(())
            })
        }
        "fail" => {
            let path = words(rest.first().ok_or_else(|| usage("fail PATH [MESSAGE]"))?);
            let message = rest
                .get(1)
                .cloned()
                .unwrap_or_else(|| format!("fakevyos: injected failure while configuring [{}]", path.join(" ")));
            knob(ctx, |_, locked| {
                locked.state.failures.retain(|f| f.path != path);
                locked.state.failures.push(Failure { path: path.clone(), message: message.clone() });
                Ok(())
            })
        }
        "unfail" => {
            let path = rest.first().map(|p| words(p));
            knob(ctx, |_, locked| {
                match &path {
                    Some(path) => locked.state.failures.retain(|f| &f.path != path),
                    None => locked.state.failures.clear(),
                }
                Ok(())
            })
        }
        "warn" => {
            let (Some(path), Some(text)) = (rest.first(), rest.get(1)) else {
                return Err(usage("warn PATH TEXT"));
            };
            let warning = Warning { path: words(path), text: text.clone() };
            knob(ctx, |_, locked| {
                locked.state.warnings.push(warning.clone());
                Ok(())
            })
        }
        "unwarn" => knob(ctx, |_, locked| {
            locked.state.warnings.clear();
            Ok(())
        }),
        "latency" => {
            let ms = number(rest.first(), "MS")?;
            knob(ctx, |_, locked| {
                locked.state.latency_ms = ms;
                Ok(())
            })
        }
        "set-failures" => {
            let n = number(rest.first(), "COUNT")?;
            knob(ctx, |_, locked| {
                locked.state.transient_set_failures = u32::try_from(n).unwrap_or(u32::MAX);
                Ok(())
            })
        }
        "bgp-state" => {
            let (peer, value) = match rest {
                [value] => ("*".to_owned(), value.clone()),
                [peer, value] => (peer.clone(), value.clone()),
                _ => return Err(usage("bgp-state [PEER] STATE")),
            };
            knob(ctx, |_, locked| {
                locked.state.bgp_state.insert(peer.clone(), value.clone());
                Ok(())
            })
        }
        "vrrp-state" => {
            let (group, value) = match rest {
                [value] => ("*".to_owned(), value),
                [group, value] => (group.clone(), value),
                _ => return Err(usage("vrrp-state [GROUP] STATE")),
            };
            let code = crate::keepalived::parse_state(value).ok_or_else(|| {
                usage(&format!("STATE must be INIT, BACKUP, MASTER, FAULT, STOP, DELETED or a number, not {value:?}"))
            })?;
            knob(ctx, |_, locked| {
                locked.state.vrrp_state.insert(group.clone(), code);
                Ok(())
            })
        }
        "reboot" => {
            timers::prelude(&ctx.root)?;
            knob(ctx, |root, locked| timers::reboot(root, locked, "ctl"))
        }
        "hold-lock" => {
            let seconds = number(rest.first(), "SECONDS")?;
            let Some(lock) = commit::try_commit_lock(&ctx.root)? else {
                return Ok(Output::fail(commit::LOCKED));
            };
            let mut stdout = std::io::stdout();
            let _ignored = stdout.write_all(b"locked\n").and_then(|()| stdout.flush());
            std::thread::sleep(Duration::from_secs(seconds));
            drop(lock);
            Ok(Output::ok(""))
        }
        "manual-commit" => manual_commit(ctx, rest),
        other => Err(usage(&format!("unknown ctl command {other:?}"))),
    }
}

/// Changes the state under the lock, then fires what is due.
fn knob(ctx: &Ctx, change: impl FnOnce(&crate::layout::Root, &mut state::Locked) -> Result<()>) -> Result<Output> {
    let mut locked = state::lock(&ctx.root)?;
    change(&ctx.root, &mut locked)?;
    locked.save()?;
    drop(locked);
    timers::prelude(&ctx.root)?;
    Ok(Output::ok(""))
}

/// A commit made by someone else on the router (through the CLI): the commands apply to the
/// running configuration through the same commit path, hooks included.
fn manual_commit(ctx: &Ctx, lines: &[String]) -> Result<Output> {
    timers::prelude(&ctx.root)?;
    let schema = ctx.schema()?;
    let Some(_commit_lock) = commit::try_commit_lock(&ctx.root)? else {
        return Ok(Output::fail(commit::LOCKED));
    };
    let origin = Origin {
        via: ctx.var("COMMIT_VIA").unwrap_or("cli").to_owned(),
        comment: ctx.var("COMMIT_COMMENT").unwrap_or("commit").to_owned(),
        user: "vyos".to_owned(),
        in_confirm: false,
    };
    let (computed, env) = {
        let locked = state::lock(&ctx.root)?;
        let active = state::read_active(&ctx.root)?;
        let mut working = active.clone();
        for (n, line) in lines.iter().enumerate() {
            let command = match parse_line(line, n + 1) {
                Ok(command) => command,
                Err(e) => return Ok(Output::fail(format!("{e}\n"))),
            };
            let argv: Vec<String> = command.argv().into_iter().map(str::to_owned).collect();
            let result = match command.op {
                vyos_config::Op::Set => edit::set(&schema, &mut working, &argv),
                vyos_config::Op::Delete => edit::delete(&schema, &mut working, &argv),
                vyos_config::Op::Comment => edit::comment(&schema, &mut working, &argv),
            };
            if let Err(message) = result {
                return Ok(Output::fail(format!("{line}\n{message}")));
            }
        }
        if working == active {
            return Ok(Output::ok("No configuration changes to commit\n"));
        }
        let computed = commit::compute(&active, &working, &locked.state);
        let env = commit::apply(&ctx.root, &ctx.profile, &locked, &active, &computed, &origin)?;
        (computed, env)
    };
    let mut text = commit::report(&computed);
    let mut hook_env: Vec<(String, String)> = ctx.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    hook_env.extend(env);
    text.push_str(&commit::run_hooks(&ctx.root, &hook_env)?);
    Ok(Output { code: if computed.failed.is_empty() { 0 } else { 1 }, stdout: text, stderr: String::new() })
}

fn status(ctx: &Ctx) -> Result<Output> {
    timers::prelude(&ctx.root)?;
    let locked = state::lock(&ctx.root)?;
    let active = state::read_active(&ctx.root)?;
    let saved_text = files::read_optional(&ctx.root.saved_config())?.unwrap_or_default();
    let saved = vyos_config::Config::parse_hierarchical(&saved_text).ok().map(|c| c.tree);
    let s = &locked.state;
    let value = serde_json::json!({
        "profile": ctx.profile.family.name(),
        "version": ctx.profile.version,
        "clock": s.clock,
        "active_digest": digest(&active).to_string(),
        "saved_digest": saved.as_ref().map(|t| digest(t).to_string()),
        "saved": saved.as_ref() == Some(&active),
        "confirm_pending": s.confirm.is_some(),
        "confirm": s.confirm,
        "boot_id": state::boot_id(&ctx.root)?,
        "boot_complete": ctx.root.boot_status().exists(),
        "boot_complete_at": s.boot_complete_at,
        "boot_time": s.boot_time,
        "sessions": session::list(&ctx.root)?,
        "archive_revisions": archive::count(&ctx.root),
        "latency_ms": s.latency_ms,
        "failures": s.failures,
        "warnings": s.warnings,
        "bgp_state": s.bgp_state,
        "vrrp_state": s.vrrp_state,
        "keepalived_pid": crate::keepalived::running_pid(&ctx.root),
        "env_warnings": s.env_warnings,
        "events": state::events(&ctx.root)?,
    });
    let mut text = serde_json::to_string_pretty(&value).map_err(|e| Error::Corrupt(e.to_string()))?;
    text.push('\n');
    Ok(Output::ok(text))
}
