//! `config-mgmt`: `commit_confirm` and `confirm`, on the fake clock.
//!
//! `commit_confirm [-y] -t N` (also `-t=N`, `-tN` and the single argv item `-t N`) starts a
//! timer of N minutes; it does not commit. `confirm` stops it and archives the running
//! configuration with the entry the commit left in `/tmp/commit-rev-entry`. At expiry the
//! revert runs ([`crate::timers`]): reboot on sagitta and circinus; on rolling and dozenos,
//! reload when `system config-management commit-confirm action reload` is set, else reboot.

use std::io::BufRead;

use crate::archive;
use crate::ctx::Ctx;
use crate::error::{Output, Result};
use crate::files;
use crate::state::{self, Confirm, RevertAction};

/// VyOS's default timeout, minutes.
pub const DEFAULT_MINUTES: u64 = 10;

/// Parses `commit_confirm`'s options: (minutes, yes).
pub fn parse_commit_confirm(args: &[String]) -> std::result::Result<(u64, bool), String> {
    let mut minutes = DEFAULT_MINUTES;
    let mut yes = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let value = if arg == "-y" || arg == "--yes" {
            yes = true;
            None
        } else if arg == "-t" || arg == "--minutes" {
            i += 1;
            Some(args.get(i).map(String::as_str).ok_or("argument -t: expected one argument")?)
        } else if let Some(v) = arg.strip_prefix("--minutes=") {
            Some(v)
        } else if let Some(v) = arg.strip_prefix("-t") {
            Some(v.strip_prefix('=').unwrap_or(v))
        } else {
            return Err(format!("unrecognized arguments: {arg}"));
        };
        if let Some(v) = value {
            minutes = v.trim().parse().map_err(|_| format!("argument -t: invalid int value: '{v}'"))?;
        }
        i += 1;
    }
    Ok((minutes, yes))
}

/// The revert action the running configuration and profile select.
pub fn revert_action(ctx: &Ctx, active: &vyos_config::Tree) -> RevertAction {
    let reload =
        active.values(&["system", "config-management", "commit-confirm", "action"]).first().map(String::as_str)
            == Some("reload");
    if ctx.profile.family.soft_revert() && reload { RevertAction::Reload } else { RevertAction::Reboot }
}

/// `config-mgmt SUBCOMMAND …`.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    match args.split_first() {
        Some((cmd, rest)) if cmd == "commit_confirm" => commit_confirm(ctx, rest),
        Some((cmd, rest)) if cmd == "confirm" && rest.is_empty() => confirm(ctx),
        _ => Ok(Output {
            code: 2,
            stderr: "usage: config-mgmt {commit_confirm,confirm} ... (fakevyos supports only these)\n".into(),
            ..Output::default()
        }),
    }
}

fn commit_confirm(ctx: &Ctx, args: &[String]) -> Result<Output> {
    let (minutes, yes) = match parse_commit_confirm(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            return Ok(Output {
                code: 2,
                stderr: format!(
                    "usage: config-mgmt commit_confirm [-h] [-t T] [-y]\nconfig-mgmt commit_confirm: error: {message}\n"
                ),
                ..Output::default()
            });
        }
    };
    let mut locked = state::lock(&ctx.root)?;
    ctx.note_rolling_env(&mut locked)?;
    if locked.state.confirm.is_some() {
        locked.save()?;
        return Ok(Output::fail("Another confirm is pending\n"));
    }
    let mut prompt = String::new();
    if !yes {
        prompt.push_str("WARNING: You should save previous commits before commit-confirm !\nProceed ? [y/N] ");
        let mut answer = String::new();
        let _read = std::io::stdin().lock().read_line(&mut answer);
        if !answer.trim().eq_ignore_ascii_case("y") && !answer.trim().eq_ignore_ascii_case("yes") {
            locked.save()?;
            return Ok(Output::fail(format!("{prompt}\ncommit-confirm canceled\n")));
        }
    }
    let active = state::read_active(&ctx.root)?;
    let action = revert_action(ctx, &active);
    let clock = locked.state.clock;
    locked.state.confirm = Some(Confirm { deadline: clock + minutes * 60, minutes, action });
    state::record_event(&ctx.root, clock, "commit-confirm", &format!("minutes={minutes} action={}", action.name()))?;
    locked.save()?;
    Ok(Output::ok(format!(
        "{prompt}Initialized commit-confirm; {minutes} minutes to confirm before {}\n",
        action.name()
    )))
}

fn confirm(ctx: &Ctx) -> Result<Output> {
    let mut locked = state::lock(&ctx.root)?;
    let Some(pending) = locked.state.confirm.take() else {
        return Ok(Output::ok("No confirm pending\n"));
    };
    let clock = locked.state.clock;
    let active = state::read_active(&ctx.root)?;
    let entry = files::read_optional(&ctx.root.commit_rev_entry())?
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| archive::log_entry(clock, "root", "config-mgmt", "commit-confirm"));
    if let Some(limit) = archive::revisions_limit(&active) {
        archive::archive(&ctx.root, &ctx.profile, &active, &entry, limit)?;
    }
    files::remove_file(&ctx.root.commit_rev_entry())?;
    state::record_event(&ctx.root, clock, "confirmed", &format!("action={}", pending.action.name()))?;
    locked.save()?;
    Ok(Output::ok(match pending.action {
        RevertAction::Reboot => "Reboot timer stopped\n",
        RevertAction::Reload => "Reload timer stopped\n",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn timeout_spellings() {
        assert_eq!(parse_commit_confirm(&args(&["-y", "-t", "5"])), Ok((5, true)));
        assert_eq!(parse_commit_confirm(&args(&["-t=7"])), Ok((7, false)));
        assert_eq!(parse_commit_confirm(&args(&["-y", "-t 10"])), Ok((10, true)));
        assert_eq!(parse_commit_confirm(&args(&["-t3", "--yes"])), Ok((3, true)));
        assert_eq!(parse_commit_confirm(&args(&[])), Ok((10, false)));
        assert!(parse_commit_confirm(&args(&["-t", "x"])).is_err());
        assert!(parse_commit_confirm(&args(&["--bogus"])).is_err());
    }
}
