//! `postline send` and the delivery step `postline sendmail` shares with it.

use std::io::Read;
use std::path::Path;

use postline::delivery::{Delivery, DeliveryStatus};
use postline::message::{self, MessageError};
use postline::{Client, Envelope, Error, Message, Outcome, StopAfter};
use postline_queue::Dsn;
use serde_json::{json, Value};

use crate::args::{QuitAfter, SendArgs};
use crate::connect::{self, Fail, Target};
use crate::dkim;
use crate::exit;
use crate::log;
use crate::output::{errln, escape, json_safe, outln};
use crate::queue;
use crate::stage;

/// What `postline send` says when nobody would receive the message.
const NO_RECIPIENTS: &str = "no recipients: give --to, --cc or --bcc (or -t with --message)";

/// The exit code for a message that cannot be composed or read: an unreadable file is
/// EX_NOINPUT, a ready message that cannot be parsed EX_DATAERR, anything the user gave
/// that cannot become a valid message EX_USAGE.
pub fn message_fail(e: MessageError) -> Fail {
    let code = match e {
        MessageError::ReadFile { .. } => exit::NOINPUT,
        MessageError::Malformed { .. } => exit::DATAERR,
        MessageError::NoRecipients => return Fail::new(exit::USAGE, NO_RECIPIENTS),
        _ => exit::USAGE,
    };
    Fail::new(code, e.to_string())
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, Fail> {
    let mut buf = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map(|_| ())
    };
    result.map_err(|e| Fail::new(exit::NOINPUT, format!("{}: {e}", path.display())))?;
    Ok(buf)
}

fn read_text(path: &Path, what: &str) -> Result<String, Fail> {
    let bytes = read_input(path)?;
    String::from_utf8(bytes).map_err(|_| {
        Fail::new(
            exit::DATAERR,
            format!("{what} {}: not UTF-8 text", path.display()),
        )
    })
}

/// Checks an address the way the envelope will, with the flag in the message.
fn check_address(flag: &str, a: &str) -> Result<(), Fail> {
    postline::proto::Address::new(a)
        .map(|_| ())
        .map_err(|e| Fail::new(exit::USAGE, format!("{flag} {a:?}: {e}")))
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for a in items {
        let a = a.trim().to_string();
        if !a.is_empty() && !list.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
            list.push(a);
        }
    }
}

/// The message and envelope `postline send` was asked for.
fn prepare(
    args: &SendArgs,
    from: &str,
    raw: Option<Vec<u8>>,
) -> Result<(Vec<u8>, Vec<String>), Fail> {
    let mut recipients = Vec::new();
    for (flag, list) in [("--to", &args.to), ("--cc", &args.cc), ("--bcc", &args.bcc)] {
        for a in list {
            check_address(flag, a.trim())?;
        }
        push_unique(&mut recipients, list.iter().cloned());
    }
    if let Some(raw) = raw {
        if args.extract {
            let found = message::ready::recipients(&raw).map_err(message_fail)?;
            for a in found.all() {
                check_address("-t", a)?;
            }
            push_unique(
                &mut recipients,
                found.to.into_iter().chain(found.cc).chain(found.bcc),
            );
        }
        // Blind copies stay blind whatever the recipients' source.
        return Ok((message::ready::strip_bcc(&raw), recipients));
    }
    let text = match (&args.body, &args.body_file) {
        (Some(b), _) => Some(b.clone()),
        (None, Some(p)) => Some(read_text(p, "--body-file")?),
        (None, None) => None,
    };
    let html = args
        .html_file
        .as_deref()
        .map(|p| read_text(p, "--html-file"))
        .transpose()?;
    let mut b = Message::builder().from(from);
    for a in &args.to {
        b = b.to(a.trim());
    }
    for a in &args.cc {
        b = b.cc(a.trim());
    }
    for a in &args.bcc {
        b = b.bcc(a.trim());
    }
    if let Some(s) = &args.subject {
        b = b.subject(s.as_str());
    }
    if let Some(t) = text {
        b = b.text(t);
    }
    if let Some(h) = html {
        b = b.html(h);
    }
    if let Some(p) = args.priority {
        b = b.priority(p.into());
    }
    for h in &args.header {
        let (name, value) = h.split_once(':').ok_or_else(|| {
            Fail::new(
                exit::USAGE,
                format!("--header {h:?}: expected 'Name: value'"),
            )
        })?;
        // The library sets Sender by its own method, as a mailbox.
        b = if name.trim().eq_ignore_ascii_case("sender") {
            b.sender(value.trim())
        } else {
            b.header(name.trim(), value.trim())
        };
    }
    if let Some(r) = &args.reply_to {
        check_address("--reply-to", r)?;
        b = b.reply_to(r.as_str());
    }
    for p in &args.attach {
        if !p.is_file() {
            return Err(Fail::new(
                exit::NOINPUT,
                format!("--attach {}: no such file", p.display()),
            ));
        }
        b = b.attachment_file(p);
    }
    let (_, bytes) = b.build().map_err(message_fail)?.into_parts();
    Ok((bytes, recipients))
}

/// What happened, for the summary, the JSON and the exit code.
pub struct Report {
    pub target_host: String,
    pub target_port: u16,
    pub tls: Option<postline::TlsInfo>,
    /// DSN parameters were asked for: whether the server offered DSN, so they were sent
    /// (`None` when none were asked for, or the session ended before EHLO).
    pub dsn_offered: Option<bool>,
    pub result: Result<Outcome, Error>,
}

/// The note for DSN parameters a server was not sent (RFC 3461 forbids sending them to a
/// server that does not offer DSN); the message itself goes.
pub fn dsn_note(report: &Report) -> Option<String> {
    (report.dsn_offered == Some(false)).then(|| {
        format!(
            "note: {} does not offer DSN: the message went without the DSN parameters (RFC 3461 4.1)",
            report.target_host
        )
    })
}

/// A ready message's lines against RFC 5322's 998 octets: folded as Postfix does when
/// `fold`, else refused (EX_DATAERR) naming the first long line, before anything is sent.
pub fn long_lines(message: Vec<u8>, fold: bool, what: &str) -> Result<Vec<u8>, Fail> {
    let Some(long) = message::ready::long_line(&message) else {
        return Ok(message);
    };
    if fold {
        return Ok(message::ready::fold_long_lines(&message).into_owned());
    }
    let more = match long.count {
        1 => String::new(),
        2 => " (and 1 more line)".into(),
        n => format!(" (and {} more lines)", n - 1),
    };
    Err(Fail::new(
        exit::DATAERR,
        format!(
            "{what}: line {} is {} octets long{more}; RFC 5322 2.1.1 allows {} (and strict servers refuse the message after the whole upload): give --fold-long-lines to break such lines as Postfix does, or encode the body (quoted-printable or base64)",
            long.line,
            long.octets,
            message::ready::MAX_LINE_OCTETS
        ),
    ))
}

/// Connects, sends and quits. Never prints.
pub fn deliver(
    target: Target,
    from: &str,
    recipients: &[String],
    message: &[u8],
    dsn: Option<&Dsn>,
) -> Result<Report, Fail> {
    let envelope = Envelope::new(from, recipients)
        .map_err(|e| Fail::new(exit::for_error(&e), connect::describe(&e)))?;
    let envelope = postline_queue::Dsn::apply_to(dsn, envelope);
    let (host, port) = (target.host.clone(), target.port);
    let mut report = Report {
        target_host: host,
        target_port: port,
        tls: None,
        dsn_offered: None,
        result: Err(Error::Closed),
    };
    let mut client = match Client::connect(target.config) {
        Ok(c) => c,
        Err(e) => {
            report.result = Err(e);
            return Ok(report);
        }
    };
    report.tls = client.tls_info().cloned();
    if dsn.is_some() {
        report.dsn_offered = Some(client.capabilities().has(postline::Extension::Dsn));
    }
    report.result = client.send_bytes(&envelope, message);
    let _ = client.quit();
    Ok(report)
}

fn reply_json(r: &postline::ServerReply) -> Value {
    json!({
        "code": r.code,
        "enhanced": r.enhanced.map(|e| e.to_string()),
        "text": r.message(),
    })
}

/// The JSON object `--json` prints.
pub fn report_json(report: &Report) -> Value {
    let tls = report.tls.as_ref().map(|t| {
        json!({"version": t.version, "cipher_suite": t.cipher_suite, "peer_certificates": t.peer_certificates.len()})
    });
    // Each recipient's status by the library's one rule (LMTP's reply after the data, a
    // refusal at RCPT or of the whole message, in doubt after a lost connection).
    let recipients = |list: &[postline::Recipient]| -> Vec<Value> {
        let deliveries =
            Delivery::for_recipients(&report.result, list.iter().map(|r| r.address.as_str()));
        list.iter()
            .zip(deliveries)
            .map(|(r, d)| {
                let mut v = json!({
                    "address": r.address,
                    "accepted": r.accepted,
                    "status": d.status.name(),
                    "reply": r.reply.as_ref().map(reply_json),
                });
                if let Some(data) = &r.data_reply {
                    v["data_reply"] = reply_json(data);
                }
                v
            })
            .collect()
    };
    let mut v = json!({
        "server": report.target_host,
        "port": connect::shown_port(&report.target_host, report.target_port),
        "tls": tls,
    });
    if let Some(offered) = report.dsn_offered {
        v["dsn"] = json!(if offered { "sent" } else { "not offered" });
    }
    match &report.result {
        Ok(o) => {
            v["status"] = json!(if o.all_accepted() {
                "delivered"
            } else {
                "partial"
            });
            v["recipients"] = json!(recipients(&o.recipients));
            v["reply"] = reply_json(&o.reply);
        }
        Err(e) => {
            // A drop after the end of data is not a failure: the server may have the message.
            let unknown = e.is_in_doubt();
            v["status"] = json!(if unknown { "unknown" } else { "failed" });
            v["error"] = json!(e.to_string());
            // Some mailboxes took it (LMTP): sending it again would duplicate it for them.
            let some_delivered = matches!(e, Error::DeliveryUnknown { recipients, .. }
                if recipients.iter().any(|r| r.data_reply.is_some() && r.delivered()));
            v["retryable"] = json!(e.is_retryable() && !some_delivered);
            if let Error::MessageRejected { recipients: r, .. }
            | Error::DeliveryUnknown { recipients: r, .. } = e
            {
                if !r.is_empty() {
                    v["recipients"] = json!(recipients(r));
                }
            }
            v["reply"] = e.reply().map(reply_json).unwrap_or(Value::Null);
        }
    }
    v
}

/// A recipient the server refused for now (4xx, at RCPT or, over LMTP, after the data): not
/// delivered, and not a failure either.
fn deferred(r: &postline::Recipient) -> bool {
    !r.delivered()
        && postline::delivery::status_of_refusal(r.deciding_reply()) == DeliveryStatus::Deferred
}

/// The exit code of a message the server took for some recipients: 0 when it took every
/// one; 67 when it refused one, for good or for now (never 75: a caller would send the
/// whole message again, twice to those who have it). `--partial-ok` makes refusals for good
/// 0, not refusals for now: those recipients have nothing yet (`--queue` keeps them).
fn accepted_code(o: &Outcome, partial_ok: bool) -> u8 {
    if o.all_accepted() || (partial_ok && !o.recipients.iter().any(deferred)) {
        exit::OK
    } else {
        exit::NOUSER
    }
}

/// Prints the report (one line per recipient, or JSON) and returns the exit code.
pub fn print_report(report: &Report, json_out: bool, partial_ok: bool) -> u8 {
    let code = match &report.result {
        Ok(o) => accepted_code(o, partial_ok),
        Err(e) => exit::for_error(e),
    };
    if json_out {
        let mut v = report_json(report);
        v["exit_code"] = json!(code);
        outln!("{}", json_safe(&v.to_string()));
        return code;
    }
    // One line per recipient, its status by the library's rule (what a later reply or a
    // lost connection made of an accepted RCPT included).
    let lines = |list: &[postline::Recipient]| {
        let deliveries =
            Delivery::for_recipients(&report.result, list.iter().map(|r| r.address.as_str()));
        for (r, d) in list.iter().zip(deliveries) {
            if r.deciding_reply().is_none() && d.status != DeliveryStatus::InDoubt {
                // Never answered: a refused MAIL left it untried, and the error says why.
                continue;
            }
            let shown = match (d.status, r.deciding_reply()) {
                (DeliveryStatus::Delivered, Some(reply)) => reply.to_string(),
                _ => d.detail(),
            };
            let word = match d.status {
                DeliveryStatus::Delivered => "accepted",
                DeliveryStatus::Deferred => "deferred",
                DeliveryStatus::Failed => "refused",
                DeliveryStatus::InDoubt => "in-doubt",
                DeliveryStatus::NotAttempted => "not-sent",
            };
            outln!("{word:<9} {}  {}", r.address, escape(&shown));
        }
    };
    match &report.result {
        Ok(o) => {
            lines(&o.recipients);
            outln!(
                "message accepted by {}: {}",
                report.target_host,
                escape(&o.reply.to_string())
            );
            if o.recipients.iter().any(deferred) {
                errln!("postline: some recipients were refused for now: try again later (--queue keeps them)");
            } else if !o.all_accepted() && !partial_ok {
                errln!("postline: some recipients were refused (--partial-ok to accept that)");
            }
        }
        Err(e) => {
            if let Error::MessageRejected { recipients, .. }
            | Error::DeliveryUnknown { recipients, .. } = e
            {
                lines(recipients);
            }
            errln!("postline: {}", escape(&connect::describe(e)));
        }
    }
    code
}

/// `postline send`.
pub fn run(args: &SendArgs) -> Result<u8, Fail> {
    let account = connect::load_account(args.server.account.as_deref())?;
    let target = connect::target(&args.server, account.as_ref())?;
    if let Some(stage) = args.quit_after.and_then(stage::setup_stage) {
        return quit_after_setup(args, target, stage);
    }
    let raw = args.message.as_deref().map(read_input).transpose()?;
    let from = args
        .from
        .clone()
        .or_else(|| account.as_ref().and_then(|a| a.from.clone()))
        .or_else(|| raw.as_deref().and_then(message::ready::from_address))
        .ok_or_else(|| {
            Fail::new(
                exit::USAGE,
                "no sender: give --from ADDR (or `from` in the account)",
            )
        })?;
    check_address("--from", &from)?;
    let signer = dkim::signer(
        dkim::flags(&args.dkim_key, &args.dkim_selector, &args.dkim_domain),
        account.as_ref(),
    )?;
    let dsn = crate::dsn::dsn(
        args.dsn_notify.clone().map(|n| n.0),
        args.dsn_ret,
        args.dsn_envid.clone(),
        args.dsn_orcpt,
    );
    if args.quit_after == Some(QuitAfter::Mail) && raw.is_none() {
        // A sender check with no message: nothing to compose, no size to declare.
        return check(
            args,
            target,
            &from,
            &[],
            None,
            dsn.as_ref(),
            QuitAfter::Mail,
        );
    }
    let ready = raw.is_some();
    let (message, recipients) = prepare(args, &from, raw)?;
    // A sender check (--quit-after mail) names no recipient.
    if recipients.is_empty() && args.quit_after != Some(QuitAfter::Mail) {
        return Err(Fail::new(exit::USAGE, NO_RECIPIENTS));
    }
    // Before signing (a signature covers the folded lines) and before any queueing. A
    // composed message has no long lines: the builder encodes its parts.
    let message = if ready {
        long_lines(message, args.fold_long_lines, "--message")?
    } else {
        message
    };
    // Signed last, over the bytes that will be sent (Bcc gone, headers complete), and before
    // any queueing so the spool holds the signed message.
    let message = dkim::sign(signer.as_ref(), message)?;
    if let Some(stage) = args.quit_after {
        // The same envelope a send would give: recipients (with -t from the message), SIZE
        // of the very bytes, DSN parameters.
        let recipients = if stage == QuitAfter::Mail {
            Vec::new()
        } else {
            recipients
        };
        return check(
            args,
            target,
            &from,
            &recipients,
            Some(message.len()),
            dsn.as_ref(),
            stage,
        );
    }
    let queueing = args.queue || args.queue_only;
    // Checked before any attempt: a route that cannot be queued is a usage error now, not
    // a lost message later.
    let route = if queueing {
        Some(queue::route(&args.server, account.as_ref(), target.direct)?)
    } else {
        None
    };
    let voice = if args.server.json {
        queue::Voice::Json
    } else {
        queue::Voice::Lines
    };
    // A line per message in the log file or syslog, when asked for: what happened, whatever
    // happened once the message was ready.
    let sink = log::Sink::new(args.log_file.as_deref(), account.as_ref());
    let record = log::Record::new(&target, &from, &recipients, message.len());
    // The queue: --queue-url (or POSTLINE_QUEUE_URL), the account's queue_url, or the spool;
    // a bad URL is a usage error before any attempt, and matters only when queueing.
    let queue_url = if queueing {
        queue::flag_queue_url(args.queue_url.as_ref())?.or_else(|| {
            if args.queue_dir.is_some() {
                None
            } else {
                account.as_ref().and_then(|a| a.queue_url.clone())
            }
        })
    } else {
        None
    };
    let open_queue = || queue::open_store(args.queue_dir.as_deref(), queue_url.as_deref());
    if let (true, Some(route)) = (args.queue_only, &route) {
        let queued = queue::queue_only(
            open_queue(),
            route,
            &from,
            dsn.as_ref(),
            &recipients,
            &message,
            voice,
        );
        sink.write(&queued_record(record, &queued));
        return queued.map(|_| exit::OK);
    }
    // What a transient failure kept back goes to the queue (only those recipients).
    let queue_deferred = |results: &[Delivery]| {
        let route = route.as_ref()?;
        let spool = open_queue();
        queue::queue_deferred(
            spool,
            route,
            &from,
            dsn.as_ref(),
            &message,
            results,
            voice,
            args.partial_ok,
        )
    };
    if target.direct {
        let deliveries = queue::direct(&target, &from, &recipients, &message, dsn.as_ref());
        if let Some((code, id)) = queue_deferred(&deliveries) {
            let mut r = record.direct(&deliveries, code);
            r.queued = Some(id);
            sink.write(&r);
            return Ok(code);
        }
        let code = print_direct(&deliveries, args.server.json, args.partial_ok);
        sink.write(&record.direct(&deliveries, code));
        return Ok(code);
    }
    let report = match deliver(target, &from, &recipients, &message, dsn.as_ref()) {
        Ok(r) => r,
        Err(f) => {
            sink.write(&failed_record(record, &f));
            return Err(f);
        }
    };
    if let Some(note) = dsn_note(&report) {
        errln!("postline: {}", escape(&note));
    }
    if let Some((code, id)) = queue_deferred(&queue::relay_results(&report.result, &recipients)) {
        let mut r = record.relay(&report, code);
        r.queued = Some(id);
        sink.write(&r);
        return Ok(code);
    }
    let code = print_report(&report, args.server.json, args.partial_ok);
    sink.write(&record.relay(&report, code));
    Ok(code)
}

/// The log record of a message queued without an attempt (or that the spool refused).
pub fn queued_record(mut record: log::Record, queued: &Result<String, Fail>) -> log::Record {
    match queued {
        Ok(id) => {
            record.queued = Some(id.clone());
            record.exitcode = exit::OK;
        }
        Err(f) => {
            record.error = Some(f.message.clone());
            record.exitcode = f.code;
        }
    }
    record
}

/// The log record of a message that failed before reaching a server.
pub fn failed_record(mut record: log::Record, fail: &Fail) -> log::Record {
    record.error = Some(fail.message.clone());
    record.exitcode = fail.code;
    record
}

/// Delivery by MX routing: one line (or JSON entry) per recipient naming the exchanger.
fn print_direct(deliveries: &[Delivery], json_out: bool, partial_ok: bool) -> u8 {
    let delivered = deliveries
        .iter()
        .filter(|d| d.status == DeliveryStatus::Delivered)
        .count();
    let transient = deliveries.iter().any(|d| !d.status.is_final());
    let unroutable = deliveries
        .iter()
        .all(|d| d.status == DeliveryStatus::Failed && d.host.is_none());
    let code = if delivered == deliveries.len() {
        exit::OK
    } else if transient {
        exit::TEMPFAIL
    } else if delivered > 0 && partial_ok {
        exit::OK
    } else if unroutable {
        exit::NOHOST
    } else {
        exit::NOUSER
    };
    if json_out {
        let list: Vec<Value> = deliveries
            .iter()
            .map(|d| {
                json!({
                    "address": d.address,
                    "domain": d.address.rsplit_once('@').map(|(_, dom)| dom),
                    "host": d.host,
                    "status": d.status.name(),
                    "delivered": d.status == DeliveryStatus::Delivered,
                    "permanent": d.status == DeliveryStatus::Failed,
                    "reason": d.reason,
                    "reply": d.reply.as_ref().map(reply_json),
                })
            })
            .collect();
        let v = json!({"route": "direct", "recipients": list, "exit_code": code});
        outln!("{}", json_safe(&v.to_string()));
        return code;
    }
    for d in deliveries {
        let host = escape(d.host.as_deref().unwrap_or("-"));
        let detail = d.detail();
        match d.status {
            DeliveryStatus::Delivered => {
                outln!("delivered {}  via {host}  {}", d.address, escape(&detail))
            }
            s => outln!("{:<9} {}  {}", s.name(), d.address, escape(&detail)),
        }
    }
    code
}

/// sendmail's manner: nothing on success, refusals and errors on stderr.
pub fn print_report_quiet(report: &Report) -> u8 {
    match &report.result {
        Ok(o) if o.all_accepted() => exit::OK,
        Ok(o) => {
            warn_refused(o.rejected());
            accepted_code(o, false)
        }
        Err(e) => {
            if let Error::MessageRejected { recipients, .. } = e {
                warn_refused(recipients.iter().filter(|r| !r.delivered()));
            }
            errln!("postline: {}", escape(&connect::describe(e)));
            exit::for_error(e)
        }
    }
}

fn warn_refused<'a>(refused: impl Iterator<Item = &'a postline::Recipient>) {
    for r in refused {
        let reply = r
            .deciding_reply()
            .map(|x| x.to_string())
            .unwrap_or_default();
        errln!("postline: {} refused: {}", r.address, escape(&reply));
    }
}

/// `--quit-after mail|rcpt`: connects, says MAIL (and each RCPT), resets, quits; never DATA
/// (the library's [`Client::check`]). Prints each reply; the exit code is what `send`
/// gives for the same replies.
#[allow(clippy::too_many_arguments)]
fn check(
    args: &SendArgs,
    target: Target,
    from: &str,
    recipients: &[String],
    size: Option<usize>,
    dsn: Option<&Dsn>,
    stage: QuitAfter,
) -> Result<u8, Fail> {
    if target.direct {
        return Err(Fail::new(
            exit::USAGE,
            "--quit-after needs --server or an account (not direct MX delivery)",
        ));
    }
    let envelope = if recipients.is_empty() {
        Envelope::sender_only(from)
    } else {
        Envelope::new(from, recipients)
    }
    .map_err(|e| Fail::new(exit::for_error(&e), connect::describe(&e)))?;
    let envelope = match size {
        Some(n) => envelope.size(n as u64),
        None => envelope,
    };
    let envelope = postline_queue::Dsn::apply_to(dsn, envelope);
    let mut report = Report {
        target_host: target.host.clone(),
        target_port: target.port,
        tls: None,
        dsn_offered: None,
        result: Err(Error::Closed),
    };
    let mut greeting = None;
    match Client::connect(target.config) {
        Ok(mut client) => {
            report.tls = client.tls_info().cloned();
            greeting = client.greeting().cloned();
            report.result = client.check(&envelope);
            let _ = client.quit();
        }
        Err(e) => report.result = Err(e),
    }
    let code = match &report.result {
        // Every recipient refused: as send says for the same replies.
        Ok(o) if !o.recipients.is_empty() && o.accepted().next().is_none() => {
            if o.recipients.iter().any(deferred) {
                exit::TEMPFAIL
            } else {
                exit::NOUSER
            }
        }
        Ok(o) => accepted_code(o, args.partial_ok),
        Err(e) => exit::for_error(e),
    };
    let stage_name = if stage == QuitAfter::Mail {
        "mail"
    } else {
        "rcpt"
    };
    if args.server.json {
        let mut v = report_json(&report);
        v["quit_after"] = json!(stage_name);
        v["greeting"] = greeting.as_ref().map(reply_json).unwrap_or(Value::Null);
        v["status"] = json!(match &report.result {
            Ok(o) if o.all_accepted() => "accepted",
            Ok(o) if o.accepted().next().is_none() => "refused",
            Ok(_) => "partial",
            Err(e) if e.reply().is_some() => "refused",
            Err(_) => "failed",
        });
        // What the server said to MAIL: the check's own reply, or the refusal.
        v["mail"] = match &report.result {
            Ok(o) => reply_json(&o.reply),
            Err(Error::MessageRejected {
                at: postline::FailedAt::Mail,
                reply: Some(r),
                ..
            }) => reply_json(r),
            Err(_) => Value::Null,
        };
        if let Some(list) = v["recipients"].as_array_mut() {
            for r in list {
                let accepted = r["accepted"].as_bool() == Some(true);
                if r["reply"].is_null() {
                    // MAIL was refused: this recipient was never asked about.
                    r["status"] = json!("not checked");
                } else if accepted {
                    r["status"] = json!("accepted");
                } else if r["status"] == json!("failed") {
                    r["status"] = json!("refused");
                }
            }
        }
        v.as_object_mut().map(|o| o.remove("reply"));
        v["exit_code"] = json!(code);
        outln!("{}", json_safe(&v.to_string()));
        return Ok(code);
    }
    let line = |r: &postline::ServerReply| escape(&r.to_string()).to_string();
    match &report.result {
        Ok(o) => {
            outln!("MAIL FROM:<{}>: {}", escape(from), line(&o.reply));
            for r in &o.recipients {
                let verdict = if r.accepted { "accepted" } else { "refused" };
                let reply = r.reply.as_ref().map(line).unwrap_or_default();
                outln!("RCPT TO:<{}>: {verdict} {}", escape(&r.address), reply);
            }
        }
        Err(e) => {
            if let Error::MessageRejected {
                recipients: list, ..
            } = e
            {
                for r in list.iter().filter(|r| r.reply.is_some()) {
                    let reply = r.reply.as_ref().map(line).unwrap_or_default();
                    outln!("RCPT TO:<{}>: refused {}", escape(&r.address), reply);
                }
            }
            errln!("postline: {}", escape(&connect::describe(e)));
        }
    }
    Ok(code)
}

/// `--quit-after connect|banner|helo|tls|auth`: connects as far as the stage (the library's
/// [`postline::Config::stop_after`]), says QUIT, and prints what the server said.
fn quit_after_setup(args: &SendArgs, target: Target, stage: StopAfter) -> Result<u8, Fail> {
    if target.direct {
        return Err(Fail::new(
            exit::USAGE,
            "--quit-after needs --server or an account (not direct MX delivery)",
        ));
    }
    if stage == StopAfter::Auth && !target.auth {
        // Stopping "after AUTH" with nothing to authenticate with would pass without
        // testing anything.
        return Err(Fail::new(
            exit::USAGE,
            "--quit-after auth needs credentials: --user with --password-env/-file/-cmd or an OAuth token (or an account's), or --auth external",
        ));
    }
    let name = stage::name(stage);
    let (host, port) = (target.host.clone(), target.port);
    let stage::Setup {
        greeting,
        ehlo,
        tls,
        auth,
        result,
        ..
    } = stage::run(target.config, stage);
    let code = match &result {
        Ok(()) => exit::OK,
        Err(e) => exit::for_error(e),
    };
    if args.server.json {
        let mut v = json!({
            "server": host,
            "port": connect::shown_port(&host, port),
            "quit_after": name,
            "greeting": greeting.as_ref().map(reply_json),
            "ehlo": ehlo.as_ref().map(reply_json),
            "tls": tls.as_ref().map(|t| json!({"version": t.version, "cipher_suite": t.cipher_suite})),
            "auth": auth.as_ref().map(reply_json),
            "status": if result.is_ok() { "ok" } else { "failed" },
            "exit_code": code,
        });
        if let Err(e) = &result {
            v["error"] = json!(e.to_string());
            v["reply"] = e.reply().map(reply_json).unwrap_or(Value::Null);
        }
        outln!("{}", json_safe(&v.to_string()));
        return Ok(code);
    }
    match &result {
        Ok(()) => {
            if let Some(g) = &greeting {
                outln!("greeting: {}", escape(&g.to_string()));
            }
            if let Some(r) = &ehlo {
                outln!("ehlo: {}", escape(&r.to_string()));
            }
            if let Some(t) = &tls {
                outln!("tls: {} {}", t.version, t.cipher_suite);
            }
            if let Some(r) = &auth {
                outln!("auth: {}", escape(&r.to_string()));
            }
            outln!("stopped after {name}");
        }
        Err(e) => errln!("postline: {}", escape(&connect::describe(e))),
    }
    Ok(code)
}
