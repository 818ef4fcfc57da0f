//! The `postline` command: `send`, `sendmail` (also as a `sendmail` symlink), `queue`, `probe`.

mod account;
mod args;
mod connect;
mod dkim;
mod dsn;
mod exit;
mod log;
mod msmtprc;
mod output;
mod probe;
mod queue;
mod send;
mod sendmail;
mod stage;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use output::errln;

fn main() -> ExitCode {
    // The time zone is read while there is one thread (log lines carry local time).
    log::init_clock();
    // An empty POSTLINE_QUEUE_URL names no database (as sendmail mode reads it); clap would
    // take it for a URL given. Removed while there is one thread.
    if std::env::var_os("POSTLINE_QUEUE_URL").is_some_and(|v| v.is_empty()) {
        std::env::remove_var("POSTLINE_QUEUE_URL");
    }
    // Not `std::env::args`, which panics on an argument that is not UTF-8: sendmail mode reads
    // such bytes itself, and clap refuses them with a usage error where text is needed.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
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
                if e.kind() == clap::error::ErrorKind::InvalidUtf8 {
                    not_utf8(&argv[1..]);
                }
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
            // Messages may quote a server; nothing in them may act on the terminal.
            errln!("postline: {}", output::escape(&fail.message));
            ExitCode::from(fail.code)
        }
    }
}

/// After clap's "invalid UTF-8" error: which arguments those are (file names may hold any
/// bytes; every other value must be UTF-8).
fn not_utf8(args: &[std::ffi::OsString]) {
    let bad: Vec<String> = args
        .iter()
        .filter(|a| a.to_str().is_none())
        .map(|a| format!("{a:?}"))
        .collect();
    errln!(
        "postline: not UTF-8: {} (only file names may be other bytes)",
        bad.join(" ")
    );
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
        Command::Config(args::ConfigCommand::ImportMsmtprc {
            file,
            output,
            force,
        }) => msmtprc::run(file.as_deref(), output.as_deref(), force),
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
