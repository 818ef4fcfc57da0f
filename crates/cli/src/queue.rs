//! The outbound queue from the command line: `send --queue`, sendmail mode's queue on
//! failure, and `postline queue list|run|flush|show|remove`.
//!
//! A queued message's route is the [`ServerArgs`] it was sent with (the account by name,
//! secrets by where they come from, never their value) and whether it goes by MX routing.
//! The runner rebuilds the connection from it with [`connect::target`] at each attempt, so a
//! fixed config file or a rotated password applies to what is already queued.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postline::{DeliveryStatus, Envelope, Error, FailedAt, ServerReply};
use postline_queue::{Attempted, Entry, Policy, RecipientStatus, RunReport, Spool};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::account::Account;
use crate::args::{QueueArgs, QueueCommand, ServerArgs};
use crate::connect::{self, Fail, Target};
use crate::exit;
use crate::send;

/// A run sending more messages than this shows a progress bar (on a terminal).
const PROGRESS_OVER: usize = 5;

/// How a queued message reaches its server, as stored in its entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Route {
    /// Flags and account name (no secrets).
    pub server: ServerArgs,
    /// MX routing (no server, no account).
    #[serde(default)]
    pub direct: bool,
    /// The sender it was queued for (bounce reports travel the same route from `<>`).
    #[serde(default)]
    pub from: String,
}

impl Route {
    /// The route `send` (or sendmail mode) used: the account is pinned by name, so a later
    /// change of the config file's default does not redirect queued mail.
    pub fn new(args: &ServerArgs, account: Option<&Account>, direct: bool, from: &str) -> Route {
        let mut server = args.clone();
        server.account = account.map(|a| a.name.clone());
        server.verbose = false;
        server.json = false;
        Route {
            server,
            direct,
            from: from.to_string(),
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The spool directory: the flag (or `POSTLINE_QUEUE_DIR`), else the default.
pub fn spool_dir(flag: Option<&Path>) -> Result<PathBuf, Fail> {
    if let Some(d) = flag {
        return Ok(d.to_path_buf());
    }
    Spool::default_dir().ok_or_else(|| {
        Fail::new(
            exit::CONFIG,
            "queue: no spool directory: set XDG_STATE_HOME or HOME, or give --queue-dir",
        )
    })
}

/// Opens the spool; exit 75 when it cannot be.
pub fn open_spool(flag: Option<&Path>) -> Result<Spool, Fail> {
    let dir = spool_dir(flag)?;
    Spool::open(&dir).map_err(|e| {
        Fail::new(
            exit::TEMPFAIL,
            format!("queue: cannot open the spool {}: {e}", dir.display()),
        )
    })
}

/// The retry policy; bounce reports name this host.
pub fn policy() -> Policy {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && postline::proto::Domain::new(h.as_str()).is_ok())
        .unwrap_or_else(|| "localhost".into());
    Policy {
        reporting_host: host,
        ..Policy::default()
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn reply_attempt(reply: &ServerReply) -> Attempted {
    if reply.is_permanent() {
        Attempted::Failed(one_line(&reply.to_string()))
    } else {
        Attempted::Deferred(one_line(&reply.to_string()))
    }
}

/// Finds `address`'s entry in the client's list (same order as given, same spelling).
fn find<'a, T>(
    list: &'a [T],
    i: usize,
    address: &str,
    addr_of: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    list.iter()
        .find(|r| addr_of(r) == address)
        .or_else(|| {
            list.iter()
                .find(|r| addr_of(r).eq_ignore_ascii_case(address))
        })
        .or_else(|| list.get(i))
}

/// Per recipient, what a relay attempt did: accepted → delivered, 5xx → failed, anything
/// transient (4xx, connection, timeout, a lost connection after the data) → deferred. A
/// session-level failure that is not a 5xx (TLS, authentication) defers too: fixing the
/// configuration should not cost the mail.
pub fn from_relay(
    result: &Result<postline::Outcome, Error>,
    recipients: &[String],
) -> Vec<(String, Attempted)> {
    let mut out = Vec::new();
    match result {
        Ok(o) => {
            for (i, a) in recipients.iter().enumerate() {
                let r = find(&o.recipients, i, a, |r| r.address.as_str());
                let x = match r {
                    Some(r) if r.accepted => Attempted::Delivered(one_line(&o.reply.to_string())),
                    Some(postline::Recipient {
                        reply: Some(reply), ..
                    }) => reply_attempt(reply),
                    _ => Attempted::Deferred("no reply for this recipient".into()),
                };
                out.push((a.clone(), x));
            }
        }
        Err(Error::MessageRejected {
            at,
            reply,
            recipients: rs,
        }) => {
            for (i, a) in recipients.iter().enumerate() {
                let r = find(rs, i, a, |r| r.address.as_str());
                let x = match (at, r) {
                    // Refused (or deferred) at RCPT: its own reply decides.
                    (
                        _,
                        Some(postline::Recipient {
                            accepted: false,
                            reply: Some(rr),
                            ..
                        }),
                    ) => reply_attempt(rr),
                    // MAIL, DATA or the message refused: that reply decides for everyone.
                    (FailedAt::Mail | FailedAt::Data | FailedAt::Message, _) if reply.is_some() => {
                        reply_attempt(reply.as_ref().expect("checked"))
                    }
                    _ => Attempted::Deferred(one_line(&result_text(result))),
                };
                out.push((a.clone(), x));
            }
        }
        Err(e) => {
            let x = match e {
                Error::Rejected(r) if r.is_permanent() => {
                    Attempted::Failed(one_line(&e.to_string()))
                }
                Error::Incompatible(_) | Error::Address { .. } | Error::NoRecipients => {
                    Attempted::Failed(one_line(&e.to_string()))
                }
                // A lost connection after the data may have delivered it: a duplicate is
                // better than a loss, so it is tried again.
                _ => Attempted::Deferred(one_line(&e.to_string())),
            };
            out.extend(recipients.iter().map(|a| (a.clone(), x.clone())));
        }
    }
    out
}

fn result_text(result: &Result<postline::Outcome, Error>) -> String {
    match result {
        Ok(o) => o.reply.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Per recipient, what a direct (MX) attempt did. In doubt is retried like deferred: a
/// duplicate is better than a loss (RFC 5321 6.1).
pub fn from_direct(
    deliveries: &[postline::Delivery],
    recipients: &[String],
) -> Vec<(String, Attempted)> {
    recipients
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let x = match find(deliveries, i, a, |d| d.address.as_str()) {
                Some(d) => match d.status {
                    DeliveryStatus::Delivered => Attempted::Delivered(one_line(&d.detail())),
                    DeliveryStatus::Failed => Attempted::Failed(one_line(&d.detail())),
                    _ => Attempted::Deferred(one_line(&d.detail())),
                },
                None => Attempted::Deferred("no result for this recipient".into()),
            };
            (a.clone(), x)
        })
        .collect()
}

/// One attempt for a queued message, along its stored route.
fn attempt(
    route: &Route,
    verbose: bool,
    from: &str,
    rcpts: &[String],
    message: &[u8],
) -> Vec<(String, Attempted)> {
    let defer_all = |why: String| -> Vec<(String, Attempted)> {
        rcpts
            .iter()
            .map(|a| (a.clone(), Attempted::Deferred(one_line(&why))))
            .collect()
    };
    let mut args = route.server.clone();
    args.verbose = verbose;
    args.json = false;
    // Accounts and secrets are read now, as `send` would: a config fixed since applies.
    let account = if route.direct {
        None
    } else {
        match connect::load_account(args.account.as_deref()) {
            Ok(a) => a,
            Err(f) => return defer_all(f.message),
        }
    };
    let target = match connect::target(&args, account.as_ref()) {
        Ok(t) => t,
        Err(f) => return defer_all(f.message),
    };
    if target.direct {
        return match direct(target, from, rcpts, message) {
            Ok(d) => from_direct(&d, rcpts),
            Err(e) => from_relay(&Err(e), rcpts),
        };
    }
    match send::deliver(target, from, rcpts, message) {
        Ok(report) => from_relay(&report.result, rcpts),
        Err(f) => rcpts
            .iter()
            .map(|a| (a.clone(), Attempted::Failed(one_line(&f.message))))
            .collect(),
    }
}

/// Direct delivery, as `send` does it.
pub fn direct(
    target: Target,
    from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<Vec<postline::Delivery>, Error> {
    let envelope = Envelope::new(from, recipients)?;
    let mut mailer = postline::Mailer::direct(target.config.clone())
        .mx_port(target.port)
        .require_tls(target.tls == crate::account::TlsMode::Starttls);
    if let Some(dns) = target.dns_server {
        mailer = mailer.dns_server(dns);
    }
    mailer.send_blocking(&envelope, message)
}

/// How the first attempt's results are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// `send`: a line per recipient on stdout.
    Lines,
    /// `send --json`.
    Json,
    /// sendmail: refusals on stderr only.
    Quiet,
}

/// After a first attempt: queues the deferred recipients (only those) and reports. `None`
/// when nothing was deferred, or the spool could not take it (said on stderr): the caller
/// reports as without a queue.
pub fn queue_deferred(
    spool: Result<Spool, Fail>,
    route: &Route,
    from: &str,
    message: &[u8],
    results: &[(String, Attempted)],
    voice: Voice,
    partial_ok: bool,
) -> Option<u8> {
    let deferred: Vec<(String, String)> = results
        .iter()
        .filter_map(|(a, x)| match x {
            Attempted::Deferred(why) => Some((a.clone(), why.clone())),
            _ => None,
        })
        .collect();
    if deferred.is_empty() {
        return None;
    }
    let queued = spool.and_then(|s| {
        s.enqueue_deferred(
            from,
            &deferred,
            route.to_value(),
            message,
            SystemTime::now(),
            &policy(),
        )
        .map_err(|e| Fail::new(exit::TEMPFAIL, format!("{}: {e}", s.dir().display())))
    });
    let id = match queued {
        Ok(id) => id,
        Err(f) => {
            eprintln!("postline: could not queue the message: {}", f.message);
            return None;
        }
    };
    let failed = results
        .iter()
        .any(|(_, x)| matches!(x, Attempted::Failed(_)));
    let code = if failed && !partial_ok {
        exit::NOUSER
    } else {
        exit::OK
    };
    match voice {
        Voice::Json => {
            let list: Vec<Value> = results
                .iter()
                .map(|(a, x)| {
                    let (result, detail) = match x {
                        Attempted::Delivered(d) => ("delivered", d),
                        Attempted::Failed(d) => ("failed", d),
                        Attempted::Deferred(d) => ("queued", d),
                    };
                    json!({"address": a, "result": result, "detail": detail})
                })
                .collect();
            println!(
                "{}",
                json!({"status": "queued", "queue_id": id, "recipients": list, "exit_code": code})
            );
        }
        Voice::Lines => {
            for (a, x) in results {
                match x {
                    Attempted::Delivered(d) => println!("accepted  {a}  {d}"),
                    Attempted::Failed(d) => println!("refused   {a}  {d}"),
                    Attempted::Deferred(d) => println!("queued    {a}  {d}"),
                }
            }
        }
        Voice::Quiet => {
            for (a, x) in results {
                if let Attempted::Failed(d) = x {
                    eprintln!("postline: {a} refused: {d}");
                }
            }
        }
    }
    eprintln!(
        "postline: queued as {id} for {} recipient(s): {}",
        deferred.len(),
        deferred[0].1
    );
    Some(code)
}

/// Queues without trying: prints the id (sendmail mode stays quiet).
pub fn queue_only(
    spool: Result<Spool, Fail>,
    route: &Route,
    from: &str,
    recipients: &[String],
    message: &[u8],
    voice: Voice,
) -> Result<u8, Fail> {
    let spool = spool?;
    let id = spool
        .enqueue(
            from,
            recipients,
            route.to_value(),
            message,
            SystemTime::now(),
        )
        .map_err(|e| {
            Fail::new(
                exit::TEMPFAIL,
                format!("cannot queue the message in {}: {e}", spool.dir().display()),
            )
        })?;
    match voice {
        Voice::Lines => println!("{id}"),
        Voice::Json => println!(
            "{}",
            json!({"status": "queued", "queue_id": id, "recipients": recipients, "exit_code": 0})
        ),
        Voice::Quiet => {}
    }
    Ok(exit::OK)
}

// ----------------------------------------------------------------------------- subcommands

/// `postline queue ...`.
pub fn run(args: &QueueArgs) -> Result<u8, Fail> {
    let spool = open_spool(args.queue_dir.as_deref())?;
    match &args.command {
        QueueCommand::List { json } => list(&spool, *json),
        QueueCommand::Run { daemon, verbose } => {
            if *daemon {
                daemon_loop(&spool, *verbose)
            } else {
                let report = pass(&spool, false, *verbose, &|| false);
                summarize(&report);
                Ok(exit::OK)
            }
        }
        QueueCommand::Flush { verbose } => {
            let report = pass(&spool, true, *verbose, &|| false);
            summarize(&report);
            Ok(exit::OK)
        }
        QueueCommand::Show { id, json } => show(&spool, id, *json),
        QueueCommand::Remove { id } => remove(&spool, id),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `90s`, `5m`, `3h`, `2d`.
fn span(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn status_name(s: &RecipientStatus) -> &'static str {
    match s {
        RecipientStatus::Pending { .. } => "pending",
        RecipientStatus::Delivered { .. } => "delivered",
        RecipientStatus::Failed { .. } => "failed",
    }
}

fn entry_json(e: &Entry, now: u64) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    v["age_secs"] = json!(now.saturating_sub(e.created));
    v["next_in_secs"] = json!(e.next_attempt.saturating_sub(now));
    v["pending"] = json!(e.pending().map(|r| r.address.clone()).collect::<Vec<_>>());
    v
}

fn print_problems(problems: &[String]) {
    for p in problems {
        eprintln!("postline: queue: {p}");
    }
}

fn list(spool: &Spool, json_out: bool) -> Result<u8, Fail> {
    let (entries, problems) = spool.list();
    print_problems(&problems);
    let now = now_secs();
    if json_out {
        let list: Vec<Value> = entries.iter().map(|e| entry_json(e, now)).collect();
        let _ = writeln!(std::io::stdout(), "{}", Value::Array(list));
        return Ok(exit::OK);
    }
    // `queue list | head` closes the pipe early: stop quietly then.
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let rcpts: Vec<&str> = e.pending().map(|r| r.address.as_str()).collect();
        let next = if e.next_attempt <= now {
            "now".to_string()
        } else {
            format!("in {}", span(e.next_attempt - now))
        };
        let line = writeln!(
            out,
            "{}  age {}  to {}  attempts {}  next {}{}{}",
            e.id,
            span(now.saturating_sub(e.created)),
            rcpts.join(","),
            e.attempts,
            next,
            if e.is_bounce { "  (bounce)" } else { "" },
            e.last_error
                .as_ref()
                .map(|x| format!("  last error: {}", one_line(x)))
                .unwrap_or_default()
        );
        if line.is_err() {
            return Ok(exit::OK);
        }
    }
    if entries.is_empty() {
        eprintln!("postline: the queue in {} is empty", spool.dir().display());
    }
    Ok(exit::OK)
}

fn load_for(spool: &Spool, id: &str) -> Result<Entry, Fail> {
    spool.load(id).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => Fail::new(exit::USAGE, format!("queue: {e}")),
        std::io::ErrorKind::NotFound => Fail::new(
            exit::NOINPUT,
            format!("queue: no message {id} in {}", spool.dir().display()),
        ),
        _ => Fail::new(exit::DATAERR, format!("queue: {e}")),
    })
}

fn show(spool: &Spool, id: &str, json_out: bool) -> Result<u8, Fail> {
    let e = load_for(spool, id)?;
    let now = now_secs();
    if json_out {
        println!("{}", entry_json(&e, now));
        return Ok(exit::OK);
    }
    println!("id          {}", e.id);
    println!(
        "from        <{}>{}",
        e.from,
        if e.is_bounce { "  (bounce report)" } else { "" }
    );
    println!("size        {} octets", e.size);
    println!("age         {}", span(now.saturating_sub(e.created)));
    println!("attempts    {}", e.attempts);
    if e.next_attempt <= now {
        println!("next try    now");
    } else {
        println!("next try    in {}", span(e.next_attempt - now));
    }
    if let Some(x) = &e.last_error {
        println!("last error  {}", one_line(x));
    }
    println!("route       {}", e.route);
    println!("message     {}", spool.message_path(&e.id).display());
    for r in &e.recipients {
        let detail = match &r.status {
            RecipientStatus::Pending { last_error } => last_error.clone().unwrap_or_default(),
            RecipientStatus::Delivered { reply, .. } => reply.clone(),
            RecipientStatus::Failed { reason, .. } => reason.clone(),
        };
        println!(
            "recipient   {:<9} {}  {}",
            status_name(&r.status),
            r.address,
            one_line(&detail)
        );
    }
    Ok(exit::OK)
}

fn remove(spool: &Spool, id: &str) -> Result<u8, Fail> {
    load_for(spool, id)?;
    let lock = spool
        .try_lock(id)
        .map_err(|e| Fail::new(exit::TEMPFAIL, format!("queue: cannot lock {id}: {e}")))?;
    let Some(_lock) = lock else {
        return Err(Fail::new(
            exit::TEMPFAIL,
            format!("queue: {id} is being delivered right now; try again"),
        ));
    };
    spool.remove(id).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Fail::new(
            exit::NOINPUT,
            format!("queue: no message {id} in {}", spool.dir().display()),
        ),
        _ => Fail::new(exit::TEMPFAIL, format!("queue: cannot remove {id}: {e}")),
    })?;
    println!("removed {id}");
    Ok(exit::OK)
}

/// One pass over the queue (`force`: everything, due or not), with a line per recipient
/// attempted, or a progress bar when there are many messages and stdout is a terminal.
fn pass(spool: &Spool, force: bool, verbose: bool, stop: &dyn Fn() -> bool) -> RunReport {
    let now = SystemTime::now();
    let t = now_secs();
    let mut early_problems = Vec::new();
    let due = if std::io::stdout().is_terminal() {
        let (entries, problems) = spool.list();
        early_problems = problems;
        entries
            .iter()
            .filter(|e| force || e.next_attempt <= t)
            .count()
    } else {
        0
    };
    let bar = (due > PROGRESS_OVER).then(|| {
        let bar = indicatif::ProgressBar::new(due as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let policy = policy();
    let mut deliver = |entry: &Entry, message: &[u8], rcpts: &[String]| {
        let route: Route = match serde_json::from_value(entry.route.clone()) {
            Ok(r) => r,
            Err(e) => {
                return rcpts
                    .iter()
                    .map(|a| {
                        (
                            a.clone(),
                            Attempted::Deferred(format!("unreadable route in the entry: {e}")),
                        )
                    })
                    .collect()
            }
        };
        if let Some(b) = &bar {
            b.set_message(entry.id.clone());
        }
        let results = attempt(&route, verbose, &entry.from, rcpts, message);
        for (a, x) in &results {
            let line = match x {
                Attempted::Delivered(d) => format!("{}  delivered  {a}  {d}", entry.id),
                Attempted::Deferred(d) => format!("{}  deferred   {a}  {d}", entry.id),
                Attempted::Failed(d) => format!("{}  failed     {a}  {d}", entry.id),
            };
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
        results
    };
    let mut report = spool.run_until(now, force, &policy, &mut deliver, stop);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // What the count for the progress bar found broken (and moved aside) comes first.
    early_problems.append(&mut report.problems);
    report.problems = early_problems;
    report
}

fn summarize(r: &RunReport) {
    print_problems(&r.problems);
    println!(
        "attempted {}, delivered {}, deferred {}, failed {}, bounces {}, busy {}",
        r.attempted, r.completed, r.deferred, r.failed, r.bounces, r.busy
    );
}

/// `queue run --daemon`: a pass, then sleep until the next message is due (1 s to 60 s),
/// until SIGTERM or SIGINT; the message in hand is finished first.
fn daemon_loop(spool: &Spool, verbose: bool) -> Result<u8, Fail> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Fail::new(exit::SOFTWARE, format!("queue: cannot handle signals: {e}")))?;
    }
    eprintln!(
        "postline: queue daemon on {} (SIGTERM to stop)",
        spool.dir().display()
    );
    let stopping = || stop.load(Ordering::SeqCst);
    while !stopping() {
        let report = pass(spool, false, verbose, &stopping);
        if report.attempted > 0 || !report.problems.is_empty() {
            summarize(&report);
        }
        let now = now_secs();
        let (entries, problems) = spool.list();
        print_problems(&problems);
        let next = entries.iter().map(|e| e.next_attempt).min();
        let wait = next.map_or(60, |n| n.saturating_sub(now)).clamp(1, 60);
        let until = Instant::now() + Duration::from_secs(wait);
        while !stopping() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("postline: queue daemon stopping");
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> ServerReply {
        ServerReply {
            code,
            enhanced: None,
            lines: vec![text.to_string()],
        }
    }

    #[test]
    fn route_round_trips_without_secrets() {
        let args = ServerArgs {
            server: Some("mail.example.com:587".into()),
            user: Some("me".into()),
            password_env: Some("MAIL_PASSWORD".into()),
            verbose: true,
            json: true,
            ..Default::default()
        };
        let v = Route::new(&args, None, false, "a@example.com").to_value();
        let text = v.to_string();
        assert!(text.contains("MAIL_PASSWORD"), "{text}");
        assert!(
            !text.contains("verbose") && !text.contains("\"json\""),
            "{text}"
        );
        let back: Route = serde_json::from_value(v).unwrap();
        assert_eq!(back.server.server.as_deref(), Some("mail.example.com:587"));
        assert_eq!(back.server.password_env.as_deref(), Some("MAIL_PASSWORD"));
        assert!(!back.server.verbose && !back.direct);
    }

    #[test]
    fn relay_results_per_recipient() {
        let rcpts = vec!["ok@x".to_string(), "bad@x".into(), "later@x".into()];
        let result = Ok(postline::Outcome {
            recipients: vec![
                postline::Recipient {
                    address: "ok@x".into(),
                    accepted: true,
                    reply: Some(reply(250, "ok")),
                },
                postline::Recipient {
                    address: "bad@x".into(),
                    accepted: false,
                    reply: Some(reply(550, "unknown")),
                },
                postline::Recipient {
                    address: "later@x".into(),
                    accepted: false,
                    reply: Some(reply(451, "greylisted")),
                },
            ],
            reply: reply(250, "queued as 1"),
        });
        let got = from_relay(&result, &rcpts);
        assert!(matches!(got[0].1, Attempted::Delivered(_)));
        assert!(matches!(got[1].1, Attempted::Failed(_)));
        assert!(matches!(got[2].1, Attempted::Deferred(_)));
        // Lost after the data: deferred (a duplicate rather than a loss).
        let lost = Err(Error::DeliveryUnknown {
            cause: Box::new(Error::ConnectionLost {
                phase: postline::Phase::DataEnd,
            }),
        });
        assert!(from_relay(&lost, &rcpts)
            .iter()
            .all(|(_, x)| matches!(x, Attempted::Deferred(_))));
        // 451 at DATA defers every accepted recipient; a 550 at RCPT stays failed.
        let data451 = Err(Error::MessageRejected {
            at: FailedAt::Data,
            reply: Some(reply(451, "try later")),
            recipients: vec![
                postline::Recipient {
                    address: "ok@x".into(),
                    accepted: true,
                    reply: Some(reply(250, "ok")),
                },
                postline::Recipient {
                    address: "bad@x".into(),
                    accepted: false,
                    reply: Some(reply(550, "unknown")),
                },
            ],
        });
        let got = from_relay(&data451, &rcpts[..2]);
        assert!(matches!(got[0].1, Attempted::Deferred(_)));
        assert!(matches!(got[1].1, Attempted::Failed(_)));
    }
}
