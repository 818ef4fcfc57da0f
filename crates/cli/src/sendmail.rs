//! `postline sendmail`: the /usr/sbin/sendmail interface that cron, git send-email, mutt,
//! PHP's mail() and logwatch call. The server comes from the config file's default account.
//!
//! As sendmail does, a transient failure (4xx, server unreachable) does not lose the message:
//! it goes to the queue (`$POSTLINE_QUEUE_DIR`, else `$XDG_STATE_HOME/postline/queue`) with a
//! note on stderr, and the exit code is 0; `postline queue run` retries it. `-odq` queues
//! without trying; `POSTLINE_NO_QUEUE=1` turns queueing off (exit 75 as without a queue).
//!
//! A line over 998 octets is folded as Postfix's SMTP client folds it (CRLF and a space,
//! see `ready::fold_long_lines`), not refused: the caller cannot be asked, and refusing
//! would lose the message. DSN flags (`-N`, `-R`, `-V`) are sent where DSN is offered.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use postline::message::ready;
use postline_queue::{DsnRet, NotifyOn};

use crate::args::ServerArgs;
use crate::connect::{self, Fail};
use crate::dkim;
use crate::dsn;
use crate::exit;
use crate::log;
use crate::output::errln;
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
    /// `--log-file PATH` (or `--log-file=PATH`): a line per message (msmtp's `--logfile`).
    pub log_file: Option<std::path::PathBuf>,
    /// `-N never|success,failure,delay`: DSN NOTIFY.
    pub dsn_notify: Option<Vec<NotifyOn>>,
    /// `-R full|hdrs`: DSN RET.
    pub dsn_ret: Option<DsnRet>,
    /// `-V envid`: DSN ENVID.
    pub dsn_envid: Option<String>,
}

/// Parses sendmail's flags. The DSN flags (`-N`, `-R`, `-V`, RFC 3461) are honoured: sent
/// to a server that offers DSN, kept with a queued message. Flags that only matter to a
/// local MTA (`-oem`, `-odi`, `-B`, `-X`...) are accepted and ignored; modes other than
/// sending (`-bp`, `-bs`, `-bd`...) are refused.
///
/// Arguments are bytes, as the caller gave them: `-F`'s full name is only shown to people, so
/// bytes in it that are not UTF-8 are read as Windows-1252 (what legacy software writes:
/// Latin-1 and its printable superset); an address (`-f`, `-r`, a recipient) must be UTF-8,
/// else EX_USAGE. The values of ignored flags are not read at all.
pub fn parse(args: &[OsString]) -> Result<Options, Fail> {
    let mut o = Options::default();
    let mut it = args.iter();
    // A flag's value: the rest of its argument (`-fADDR`), else the next argument.
    let value = |flag: &OsStr, inline: &[u8], it: &mut std::slice::Iter<'_, OsString>| {
        if !inline.is_empty() {
            Ok(OsStr::from_bytes(inline).to_os_string())
        } else {
            it.next().cloned().ok_or_else(|| {
                Fail::new(
                    exit::USAGE,
                    format!("sendmail: {} needs a value", shown(flag)),
                )
            })
        }
    };
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            for r in it.by_ref() {
                o.recipients.push(address(r, "recipient")?);
            }
            break;
        }
        // Queueing on a transient failure is the default (as sendmail does it); the flag is
        // accepted for callers that spell it out. POSTLINE_NO_QUEUE=1 turns it off.
        if bytes == b"--queue-on-failure" {
            continue;
        }
        if bytes == b"--log-file" {
            let path = it
                .next()
                .ok_or_else(|| Fail::new(exit::USAGE, "sendmail: --log-file needs a value"))?;
            o.log_file = Some(path.into());
            continue;
        }
        if let Some(path) = bytes.strip_prefix(b"--log-file=") {
            o.log_file = Some(OsStr::from_bytes(path).into());
            continue;
        }
        let [b'-', head, rest @ ..] = bytes else {
            // Not a flag (`-` alone included): a recipient.
            o.recipients.push(address(arg, "recipient")?);
            continue;
        };
        match (head, rest) {
            (b't', []) => o.extract = true,
            (b'i', []) => o.ignore_dots = true,
            (b'v', []) => o.verbose = true,
            (b'f' | b'r', _) => o.from = Some(address(&value(arg, rest, &mut it)?, "sender")?),
            (b'F', _) => o.full_name = Some(display_text(value(arg, rest, &mut it)?.as_bytes())),
            (b'o', b"i") => o.ignore_dots = true,
            (b'o', b"dq") => o.queue_only = true,
            // -oem, -oee, -odi, -odb, -oXvalue...: delivery details of a local MTA.
            (b'o', _) => {}
            (b'b', b"m" | b"") => {}
            (b'b', other) => {
                return Err(Fail::new(
                    exit::USAGE,
                    format!(
                        "sendmail: -b{} is not supported (postline only sends: -bm)",
                        shown(OsStr::from_bytes(other))
                    ),
                ))
            }
            (b'N' | b'R' | b'V', _) => {
                let v = value(arg, rest, &mut it)?;
                let text = v.to_str().ok_or_else(|| {
                    Fail::new(
                        exit::USAGE,
                        format!("sendmail: -{}: not UTF-8: \"{}\"", *head as char, shown(&v)),
                    )
                })?;
                let bad = |e: String| {
                    Fail::new(
                        exit::USAGE,
                        format!("sendmail: -{} {text:?}: {e}", *head as char),
                    )
                };
                match head {
                    b'N' => o.dsn_notify = Some(dsn::parse_notify(text).map_err(bad)?),
                    b'R' => o.dsn_ret = Some(dsn::parse_ret(text).map_err(bad)?),
                    _ => o.dsn_envid = Some(dsn::parse_envid(text).map_err(bad)?),
                }
            }
            // Flags that take a value postline does not use.
            (b'B' | b'X' | b'C' | b'L' | b'h' | b'p' | b'q', _) => {
                if rest.is_empty() && *head != b'q' {
                    it.next();
                }
            }
            // Single-letter flags with no meaning here.
            (b'U' | b'm' | b'n' | b'G' | b'A' | b'O', _) => {}
            _ => {
                return Err(Fail::new(
                    exit::USAGE,
                    format!("sendmail: unknown flag {}", shown(arg)),
                ))
            }
        }
    }
    Ok(o)
}

/// An argument in a message: as text when it is UTF-8, else with `\xNN` for the bytes that
/// are not, and control characters escaped either way.
fn shown(arg: &OsStr) -> String {
    match arg.to_str() {
        Some(s) => s.escape_debug().to_string(),
        None => {
            let s = format!("{arg:?}");
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .map(str::to_string)
                .unwrap_or(s)
        }
    }
}

/// An address argument: UTF-8, or EX_USAGE naming it.
fn address(arg: &OsStr, what: &str) -> Result<String, Fail> {
    arg.to_str().map(str::to_string).ok_or_else(|| {
        Fail::new(
            exit::USAGE,
            format!(
                "sendmail: {what} \"{}\" is not valid UTF-8 (addresses are UTF-8, RFC 6531)",
                shown(arg)
            ),
        )
    })
}

/// Text for people to read, from bytes in an unknown encoding: UTF-8 where it is valid, and
/// each other byte read as Windows-1252 (its five unassigned bytes as U+FFFD), so a Latin-1
/// `\xe9t\xe9` is "été" and nothing is a control character that was not one already.
fn display_text(bytes: &[u8]) -> String {
    /// Windows-1252's 0x80..=0x9F; elsewhere it is Latin-1 (the byte is the code point).
    const CP1252_80: [char; 32] = [
        '€', '\u{fffd}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{fffd}', 'Ž',
        '\u{fffd}', '\u{fffd}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{fffd}', 'ž', 'Ÿ',
    ];
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push(match b {
                0x80..=0x9f => CP1252_80[usize::from(b - 0x80)],
                _ => char::from(b),
            });
        }
    }
    out
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
pub fn run(args: &[OsString]) -> Result<u8, Fail> {
    let o = parse(args)?;
    let account_name = match std::env::var("POSTLINE_ACCOUNT") {
        Ok(name) => Some(name),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(name)) => {
            return Err(Fail::new(
                exit::CONFIG,
                format!(
                    "sendmail: POSTLINE_ACCOUNT=\"{}\" is not valid UTF-8",
                    shown(&name)
                ),
            ))
        }
    };
    let account = connect::load_account(account_name.as_deref())?;
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
    let signer = dkim::signer(dkim::Flags::default(), Some(&account))?;
    let mut raw = read_message(o.ignore_dots)?;
    // `-f '<>'` (or an empty -f) is the null sender of bounces.
    let from = o
        .from
        .clone()
        .map(|f| if f == "<>" { String::new() } else { f })
        .or_else(|| account.from.clone())
        .or_else(|| ready::from_address(&raw))
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
        let found = ready::recipients(&raw)
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
    raw = ready::strip_bcc(&raw);
    raw = ready::complete_headers(&raw, &from, o.full_name.as_deref());
    // Lines over 998 octets are broken as Postfix's SMTP client breaks them: what mail
    // piped to /usr/sbin/sendmail on a Postfix system gets, where the caller (cron, PHP)
    // cannot be asked, and refusing would lose the message. Before signing, so the
    // signature covers what is sent.
    if let Some(long) = ready::long_line(&raw) {
        raw = ready::fold_long_lines(&raw).into_owned();
        if o.verbose {
            errln!(
                "postline: sendmail: {} line(s) longer than {} octets broken as Postfix does (the first: line {}, {} octets)",
                long.count,
                ready::MAX_LINE_OCTETS,
                long.line,
                long.octets
            );
        }
    }
    let dsn = dsn::dsn(o.dsn_notify.clone(), o.dsn_ret, o.dsn_envid.clone(), false);
    // Signed last, over the bytes that will be sent, and before queueing.
    raw = dkim::sign(signer.as_ref(), raw)?;
    let queueing = !std::env::var("POSTLINE_NO_QUEUE").is_ok_and(|v| !v.is_empty() && v != "0");
    let route = queue::route(&server_args, Some(&account), false)?;
    let queue_dir = std::env::var_os("POSTLINE_QUEUE_DIR").map(std::path::PathBuf::from);
    // The queue: POSTLINE_QUEUE_URL, the account's queue_url, or the spool.
    let queue_url = std::env::var("POSTLINE_QUEUE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            queue_dir
                .is_none()
                .then(|| account.queue_url.clone())
                .flatten()
        });
    // msmtp's logfile / syslog: a line per message, whatever happened to it from here on.
    let sink = log::Sink::new(o.log_file.as_deref(), Some(&account));
    let record = log::Record::new(&target, &from, &recipients, raw.len());
    if o.queue_only && queueing {
        let queued = queue::queue_only(
            queue::open_store(queue_dir.as_deref(), queue_url.as_deref()),
            &route,
            &from,
            dsn.as_ref(),
            &recipients,
            &raw,
            queue::Voice::Quiet,
        );
        sink.write(&send::queued_record(record, &queued));
        return queued.map(|_| exit::OK);
    }
    let report = match send::deliver(target, &from, &recipients, &raw, dsn.as_ref()) {
        Ok(r) => r,
        Err(f) => {
            sink.write(&send::failed_record(record, &f));
            return Err(f);
        }
    };
    // Quiet unless -v: cron mails whatever a job prints.
    if let (true, Some(note)) = (o.verbose, send::dsn_note(&report)) {
        errln!("postline: {}", crate::output::escape(&note));
    }
    if queueing {
        // A transient failure queues the message and exits 0 with a note, as sendmail does.
        let results = queue::relay_results(&report.result, &recipients);
        if let Some((code, id)) = queue::queue_deferred(
            queue::open_store(queue_dir.as_deref(), queue_url.as_deref()),
            &route,
            &from,
            dsn.as_ref(),
            &raw,
            &results,
            queue::Voice::Quiet,
            false,
        ) {
            let mut r = record.relay(&report, code);
            r.queued = Some(id);
            sink.write(&r);
            return Ok(code);
        }
    }
    // sendmail is quiet on success; failures go to stderr.
    let code = send::print_report_quiet(&report);
    sink.write(&record.relay(&report, code));
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, Fail> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn bytes(args: &[&[u8]]) -> Result<Options, Fail> {
        parse(
            &args
                .iter()
                .map(|a| OsStr::from_bytes(a).to_os_string())
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn arguments_that_are_not_utf8() {
        // Latin-1 full names, as a separate argument or inline.
        let o = bytes(&[b"-F", b"\xe9t\xe9", b"-i", b"root"]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("\u{e9}t\u{e9}"));
        let o = bytes(&[b"-FRen\xe9 \x80 \x81", b"root"]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("Ren\u{e9} \u{20ac} \u{fffd}"));
        // UTF-8 and mixed.
        let o = bytes(&["-FJos\u{e9}".as_bytes(), b"root"]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("Jos\u{e9}"));
        // Addresses must be UTF-8.
        for args in [
            &[&b"-f"[..], b"b\xe9@example.com", b"root"][..],
            &[b"-rb\xe9@example.com", b"root"],
            &[b"-i", b"r\xe9@example.com"],
            &[b"--", b"r\xe9@example.com"],
        ] {
            let e = bytes(args).unwrap_err();
            assert_eq!(e.code, exit::USAGE);
            assert!(e.message.contains("not valid UTF-8"), "{}", e.message);
            assert!(e.message.contains("\\xE9"), "{}", e.message);
        }
        // Values of ignored flags are not read.
        let o = bytes(&[b"-X", b"/tmp/\xff", b"-oX\xff", b"root"]).unwrap();
        assert_eq!(o.recipients, ["root"]);
        // A flag that is not ASCII is an unknown flag, not a crash.
        for flag in ["-\u{e9}".as_bytes(), b"-\xe9", b"-b\xe9"] {
            let e = bytes(&[flag]).unwrap_err();
            assert_eq!(e.code, exit::USAGE, "{}", e.message);
        }
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
        let o = p(&["--log-file", "/var/log/p.log", "-i", "root"]).unwrap();
        assert_eq!(
            o.log_file.as_deref(),
            Some(std::path::Path::new("/var/log/p.log"))
        );
        assert_eq!(o.recipients, ["root"]);
        let o = p(&["--log-file=rel.log", "root"]).unwrap();
        assert_eq!(o.log_file.as_deref(), Some(std::path::Path::new("rel.log")));
        assert!(p(&["--log-file"]).is_err());
        assert!(p(&["-Z"]).is_err());
        // DSN flags, separate or inline.
        let o = p(&["-N", "never", "-Rhdrs", "-V", "job-42", "root"]).unwrap();
        assert_eq!(o.dsn_notify, Some(vec![NotifyOn::Never]));
        assert_eq!(o.dsn_ret, Some(DsnRet::Hdrs));
        assert_eq!(o.dsn_envid.as_deref(), Some("job-42"));
        assert_eq!(o.recipients, ["root"]);
        let o = p(&["-Nsuccess,failure,delay", "root"]).unwrap();
        assert_eq!(
            o.dsn_notify,
            Some(vec![NotifyOn::Success, NotifyOn::Failure, NotifyOn::Delay])
        );
        for bad in [
            &["-N", "never,success"][..],
            &["-N", "sometimes"],
            &["-R", "body"],
            &["-V", "has space"],
            &["-N"],
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.code, exit::USAGE, "{bad:?}: {}", e.message);
        }
    }
}
