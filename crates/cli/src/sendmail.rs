//! `postline sendmail`: the /usr/sbin/sendmail interface that cron, git send-email, mutt,
//! PHP's mail() and logwatch call. The server comes from the config file's default account.
//!
//! As sendmail does, a transient failure (4xx, server unreachable) does not lose the message:
//! it goes to the queue (`$POSTLINE_QUEUE_DIR`, else `$XDG_STATE_HOME/postline/queue`) with a
//! note on stderr, and the exit code is 0; `postline queue run` retries it. `-odq` queues
//! without trying; `POSTLINE_NO_QUEUE=1` turns queueing off (exit 75 as without a queue).

use std::io::Read;

use crate::args::ServerArgs;
use crate::compose;
use crate::connect::{self, Fail};
use crate::exit;
use crate::queue;
use crate::send;

/// What the sendmail flags asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-t`: recipients from the headers too.
    pub extract: bool,
    /// `-i` / `-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-f ADDR` / `-r ADDR`: envelope sender.
    pub from: Option<String>,
    /// `-F NAME`: the sender's full name, for a From header we add.
    pub full_name: Option<String>,
    /// `-v`: transcript on stderr.
    pub verbose: bool,
    /// Recipients from the arguments.
    pub recipients: Vec<String>,
    /// `-odq`: queue without trying now.
    pub queue_only: bool,
}

/// Parses sendmail's flags. Flags that only matter to a local MTA (`-oem`, `-odi`, `-B`, `-N`,
/// `-R`, `-V`, `-X`...) are accepted and ignored; modes other than sending (`-bp`, `-bs`,
/// `-bd`...) are refused.
pub fn parse(args: &[String]) -> Result<Options, Fail> {
    let mut o = Options::default();
    let mut it = args.iter().peekable();
    let value =
        |flag: &str, inline: &str, it: &mut std::iter::Peekable<std::slice::Iter<'_, String>>| {
            if !inline.is_empty() {
                Ok(inline.to_string())
            } else {
                it.next().cloned().ok_or_else(|| {
                    Fail::new(exit::USAGE, format!("sendmail: {flag} needs a value"))
                })
            }
        };
    while let Some(arg) = it.next() {
        if arg == "--" {
            o.recipients.extend(it.by_ref().cloned());
            break;
        }
        // Queueing on a transient failure is the default (as sendmail does it); the flag is
        // accepted for callers that spell it out. POSTLINE_NO_QUEUE=1 turns it off.
        if arg == "--queue-on-failure" {
            continue;
        }
        let Some(flag) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            o.recipients.push(arg.clone());
            continue;
        };
        let (head, rest) = flag.split_at(1);
        match head {
            "t" if rest.is_empty() => o.extract = true,
            "i" if rest.is_empty() => o.ignore_dots = true,
            "v" if rest.is_empty() => o.verbose = true,
            "f" | "r" => o.from = Some(value(arg, rest, &mut it)?),
            "F" => o.full_name = Some(value(arg, rest, &mut it)?),
            "o" if rest == "i" => o.ignore_dots = true,
            "o" if rest == "dq" => o.queue_only = true,
            // -oem, -oee, -odi, -odb, -oXvalue...: delivery details of a local MTA.
            "o" => {}
            "b" => match rest {
                "m" | "" => {}
                other => {
                    return Err(Fail::new(
                        exit::USAGE,
                        format!("sendmail: -b{other} is not supported (postline only sends: -bm)"),
                    ))
                }
            },
            // Flags that take a value postline does not use.
            "B" | "N" | "R" | "V" | "X" | "C" | "L" | "h" | "p" | "q" => {
                if rest.is_empty() && head != "q" {
                    it.next();
                }
            }
            // Single-letter flags with no meaning here.
            "U" | "m" | "n" | "G" | "A" | "O" => {}
            _ => {
                return Err(Fail::new(
                    exit::USAGE,
                    format!("sendmail: unknown flag {arg}"),
                ))
            }
        }
    }
    Ok(o)
}

/// Reads the message from stdin; without `-i`, a line holding a single dot ends it, as
/// sendmail does.
fn read_message(ignore_dots: bool) -> Result<Vec<u8>, Fail> {
    let mut all = Vec::new();
    std::io::stdin()
        .read_to_end(&mut all)
        .map_err(|e| Fail::new(exit::NOINPUT, format!("sendmail: reading stdin: {e}")))?;
    if ignore_dots {
        return Ok(all);
    }
    let mut at = 0;
    for line in all.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare == b"." {
            all.truncate(at);
            break;
        }
        at += line.len();
    }
    Ok(all)
}

/// `postline sendmail ARGS`.
pub fn run(args: &[String]) -> Result<u8, Fail> {
    let o = parse(args)?;
    let account = connect::load_account(std::env::var("POSTLINE_ACCOUNT").ok().as_deref())?;
    let Some(account) = account else {
        return Err(Fail::new(
            exit::CONFIG,
            "sendmail: no account configured: create $XDG_CONFIG_HOME/postline/config.toml (or set POSTLINE_CONFIG) with a default account",
        ));
    };
    let server_args = ServerArgs {
        verbose: o.verbose,
        ..Default::default()
    };
    let target = connect::target(&server_args, Some(&account))?;
    let mut raw = read_message(o.ignore_dots)?;
    // `-f '<>'` (or an empty -f) is the null sender of bounces.
    let from = o
        .from
        .clone()
        .map(|f| if f == "<>" { String::new() } else { f })
        .or_else(|| account.from.clone())
        .or_else(|| compose::header_from(&raw))
        .ok_or_else(|| {
            Fail::new(
                exit::USAGE,
                "sendmail: no sender: use -f ADDR or set `from` in the account",
            )
        })?;
    let mut recipients: Vec<String> = Vec::new();
    for r in o.recipients.iter().flat_map(|r| r.split(',')) {
        let r = r.trim();
        if !r.is_empty() && !recipients.iter().any(|x| x.eq_ignore_ascii_case(r)) {
            recipients.push(r.to_string());
        }
    }
    if o.extract {
        let found = compose::header_recipients(&raw)
            .map_err(|e| Fail::new(exit::DATAERR, format!("sendmail: {e}")))?;
        for r in found.to.into_iter().chain(found.cc).chain(found.bcc) {
            if !recipients.iter().any(|x| x.eq_ignore_ascii_case(&r)) {
                recipients.push(r);
            }
        }
    }
    if recipients.is_empty() {
        return Err(Fail::new(exit::USAGE, "sendmail: no recipients"));
    }
    raw = compose::strip_bcc(&raw);
    raw = compose::complete_headers(&raw, &from, o.full_name.as_deref());
    let queueing = !std::env::var("POSTLINE_NO_QUEUE").is_ok_and(|v| !v.is_empty() && v != "0");
    let route = queue::route(&server_args, Some(&account), false)?;
    let queue_dir = std::env::var_os("POSTLINE_QUEUE_DIR").map(std::path::PathBuf::from);
    if o.queue_only && queueing {
        return queue::queue_only(
            queue::open_spool(queue_dir.as_deref()),
            &route,
            &from,
            &recipients,
            &raw,
            queue::Voice::Quiet,
        );
    }
    let report = send::deliver(target, &from, &recipients, &raw)?;
    if queueing {
        // A transient failure queues the message and exits 0 with a note, as sendmail does.
        let results = queue::relay_results(&report.result, &recipients);
        if let Some(code) = queue::queue_deferred(
            queue::open_spool(queue_dir.as_deref()),
            &route,
            &from,
            &raw,
            &results,
            queue::Voice::Quiet,
            false,
        ) {
            return Ok(code);
        }
    }
    // sendmail is quiet on success; failures go to stderr.
    Ok(send::print_report_quiet(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, Fail> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn common_invocations() {
        // cron
        let o = p(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("CronDaemon"));
        assert!(o.ignore_dots);
        assert_eq!(o.recipients, ["root"]);
        // git send-email
        let o = p(&[
            "-i",
            "-f",
            "me@example.com",
            "--",
            "a@example.org",
            "b@example.org",
        ])
        .unwrap();
        assert_eq!(o.from.as_deref(), Some("me@example.com"));
        assert_eq!(o.recipients, ["a@example.org", "b@example.org"]);
        // mutt, PHP
        let o = p(&["-oem", "-oi", "-t"]).unwrap();
        assert!(o.extract && o.ignore_dots);
        let o = p(&["-t", "-i", "-fme@example.com", "-odi", "-bm", "-v"]).unwrap();
        assert_eq!(o.from.as_deref(), Some("me@example.com"));
        assert!(o.verbose);
        assert!(p(&["-bp"]).is_err());
        let o = p(&["-odq", "--queue-on-failure", "-t"]).unwrap();
        assert!(o.queue_only && o.extract);
        assert!(o.recipients.is_empty());
        assert!(p(&["-f"]).is_err());
        assert!(p(&["-Z"]).is_err());
    }
}
