//! The `postline` command: `send`, `sendmail` (also as a `sendmail` symlink), `queue`, `probe`.

mod account;
mod args;
mod compose;
mod connect;
mod exit;
mod output;
mod probe;
mod queue;
mod send;
mod sendmail;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use output::errln;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let invoked_as = argv
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("postline");
    let result = if invoked_as == "sendmail" {
        sendmail::run(&argv[1..])
    } else {
        let cli = match Cli::try_parse_from(&argv) {
            Ok(cli) => cli,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() {
                    exit::USAGE
                } else {
                    exit::OK
                });
            }
        };
        run(cli)
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            errln!("postline: {}", fail.message);
            ExitCode::from(fail.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, connect::Fail> {
    match cli.command {
        Command::Send(args) => send::run(&args),
        Command::Sendmail { args } => sendmail::run(&args),
        Command::Probe(args) => probe::run(&args),
        Command::Queue(args) => queue::run(&args),
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "postline", &mut script);
            output::write_stdout(&script);
            Ok(exit::OK)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            let mut page = Vec::new();
            man.render(&mut page)
                .map_err(|e| connect::Fail::new(exit::SOFTWARE, e.to_string()))?;
            output::write_stdout(&page);
            Ok(exit::OK)
        }
    }
}
