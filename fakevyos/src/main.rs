//! `fakevyos`: a multi-call binary standing in for VyOS's configuration tools.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(arg) => argv.push(arg),
            Err(arg) => {
                eprintln!("fakevyos: argument is not UTF-8: {}", arg.to_string_lossy());
                return ExitCode::from(2);
            }
        }
    }
    match vrouter_fakevyos::dispatch::run(&argv, vrouter_fakevyos::ctx::process_env()) {
        Ok(output) => {
            let _out = std::io::stdout().write_all(output.stdout.as_bytes());
            let _err = std::io::stderr().write_all(output.stderr.as_bytes());
            ExitCode::from(u8::try_from(output.code).unwrap_or(1))
        }
        Err(error) => {
            eprintln!("fakevyos: {error}");
            ExitCode::from(1)
        }
    }
}
