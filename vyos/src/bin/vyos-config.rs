//! `vyos-config`: format, convert, diff, apply and digest VyOS configurations.
//!
//! Every command reads either format (detected automatically; `-` reads standard input) and
//! exits non-zero with a message naming the file, line and column on bad input.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use vyos_config::{
    Config, Format, Schema, apply_commands, diff_scoped, digest, parse_commands, path_from_str, render_command_list,
    render_commands,
};

#[derive(Parser)]
#[command(name = "vyos-config", version, about = "Format, convert, diff, apply and digest VyOS configurations")]
struct Cli {
    /// Input format; detected from the content by default.
    #[arg(long, global = true, value_enum, default_value_t = InputFormat::Auto)]
    from: InputFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum InputFormat {
    /// Detect: command lists start with set/delete/comment or a # comment.
    Auto,
    /// config.boot style.
    Hierarchical,
    /// set/delete/comment lines.
    Commands,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the canonical hierarchical form (the version footer is kept if present).
    Fmt {
        /// Configuration file, or - for standard input.
        file: String,
    },
    /// Print the equivalent `set` commands, one per line.
    Commands {
        /// Configuration file, or - for standard input.
        file: String,
    },
    /// Print the `delete`/`set` commands that turn OLD into NEW (nothing when they are equal).
    Diff {
        /// The current configuration.
        old: String,
        /// The wanted configuration.
        new: String,
        /// Only compare this subtree, e.g. "protocols bgp" (repeatable).
        #[arg(long = "scope", value_name = "PATH")]
        scopes: Vec<String>,
        /// Print exactly what VyOS's own diff prints (no comment changes; a blank line
        /// separates deletes and sets).
        #[arg(long)]
        vyos: bool,
        /// Exit with status 3 when the configurations differ (like `diff`).
        #[arg(long)]
        exit_code: bool,
    },
    /// Apply a command list to a configuration and print the result (hierarchical).
    Apply {
        /// Configuration file, or - for standard input.
        file: String,
        /// File with set/delete/comment commands, or - for standard input.
        commands: String,
    },
    /// Print the canonical digest (the same for equivalent configurations in either format).
    Digest {
        /// Configuration file, or - for standard input.
        file: String,
    },
}

fn read_input(path: &str) -> Result<String> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => bail!("{path}: not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
    }
}

fn load(path: &str, from: InputFormat) -> Result<Config> {
    let text = read_input(path)?;
    let format = match from {
        InputFormat::Auto => vyos_config::detect_format(&text),
        InputFormat::Hierarchical => Format::Hierarchical,
        InputFormat::Commands => Format::Commands,
    };
    let parsed = match format {
        Format::Hierarchical => Config::parse_hierarchical(&text).map_err(vyos_config::Error::from),
        Format::Commands => Config::from_commands(&text, Schema::vyos()),
    };
    let name = if path == "-" { "<stdin>" } else { path };
    parsed.with_context(|| format!("{name}: cannot read configuration"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Cmd::Fmt { file } => {
            let config = load(&file, cli.from)?;
            out.write_all(config.render().as_bytes())?;
        }
        Cmd::Commands { file } => {
            let config = load(&file, cli.from)?;
            let text = render_commands(&config.tree, vyos_config::Verb::Set);
            if !text.is_empty() {
                writeln!(out, "{text}")?;
            }
        }
        Cmd::Diff { old, new, scopes, vyos, exit_code } => {
            let old = load(&old, cli.from)?;
            let new = load(&new, cli.from)?;
            let scopes: Vec<Vec<String>> = scopes.iter().map(|s| path_from_str(s)).collect();
            if scopes.iter().any(Vec::is_empty) {
                bail!("--scope needs a configuration path such as \"protocols bgp\"");
            }
            let d = diff_scoped(&old.tree, &new.tree, &scopes);
            if vyos {
                out.write_all(d.vyos_string().as_bytes())?;
            } else {
                out.write_all(render_command_list(&d.commands()).as_bytes())?;
            }
            if exit_code && !d.commands().is_empty() {
                return Ok(ExitCode::from(3));
            }
        }
        Cmd::Apply { file, commands } => {
            if file == "-" && commands == "-" {
                bail!("only one of FILE and COMMANDS can be standard input");
            }
            let mut config = load(&file, cli.from)?;
            let text = read_input(&commands)?;
            let cmds = parse_commands(&text).with_context(|| format!("{commands}: cannot read commands"))?;
            let report = apply_commands(&mut config.tree, &cmds, Schema::vyos())
                .with_context(|| format!("{commands}: cannot apply"))?;
            for warning in &report.warnings {
                eprintln!("warning: {}", vyos_config::escape_controls(warning));
            }
            out.write_all(config.render().as_bytes())?;
        }
        Cmd::Digest { file } => {
            let config = load(&file, cli.from)?;
            writeln!(out, "{}", digest(&config.tree))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`vyos-config commands x | head`) is not an error worth a message.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            // Values from the input are in the message: no control or bidi character reaches the terminal.
            eprintln!("vyos-config: {}", vyos_config::escape_controls(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
