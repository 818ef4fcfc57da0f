//! A line per message for the sendmail role: msmtp's `logfile` and `syslog`, with its fields.
//!
//! ```text
//! Dec 02 14:00:00 host=smtp.example.com tls=on auth=on user=me from=a@b recipients=c@d,e@f mailsize=1234 smtpstatus=250 smtpmsg='250 2.0.0 ok' exitcode=EX_OK
//! ```
//!
//! Fields as msmtp writes them: `host`, `tls`, `auth`, `user` (only with auth), `from`,
//! `recipients`, `mailsize` (octets), `smtpstatus` and `smtpmsg` (the reply that decided the
//! outcome, when there was one), `errormsg` (what went wrong, when something did), `exitcode`
//! (the sysexits name of postline's exit code). postline adds `queued=ID` when the message
//! went to the queue. Never a secret: the user name is logged, a password or token never is
//! (they are not in a [`Record`] at all). Everything is [escaped](crate::output::escape): a
//! server cannot write a control character, a CR or an escape sequence into the log.
//!
//! A file line starts with the local time (`%b %d %H:%M:%S`, as msmtp's default). The file is
//! opened for appending and created with mode 0600; the line is one `write`. syslog lines go
//! to `/dev/log` (RFC 3164, facility mail, `info` when the exit code is 0, else `err`, tag
//! `postline[PID]`); `POSTLINE_SYSLOG_SOCKET` names another socket, for tests. A log that
//! cannot be written is a warning on stderr: it never fails or loses the message.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use postline::{Error, ServerReply};

use crate::account::{Account, TlsMode};
use crate::connect::Target;
use crate::exit;
use crate::output::{errln, escape};
use crate::send::Report;

/// Where the lines go: a file, syslog, both or neither.
#[derive(Debug, Clone, Default)]
pub struct Sink {
    pub file: Option<PathBuf>,
    pub syslog: bool,
}

impl Sink {
    /// `--log-file` first, else the account's `log_file`; syslog when the account says
    /// `log = "syslog"`.
    pub fn new(flag: Option<&Path>, account: Option<&Account>) -> Sink {
        Sink {
            file: flag
                .map(Path::to_path_buf)
                .or_else(|| account.and_then(|a| a.log_file.clone())),
            syslog: account.is_some_and(|a| a.syslog),
        }
    }

    /// Writes `record`'s line wherever asked; failures are warnings on stderr.
    pub fn write(&self, record: &Record) {
        if self.file.is_none() && !self.syslog {
            return;
        }
        let line = record.line();
        if let Some(path) = &self.file {
            let stamped = format!("{} {line}\n", timestamp(false));
            // Not through a symbolic link (a log in a shared directory cannot be redirected
            // onto another file), and never waiting on a FIFO with no reader.
            let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
            let written = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(flags.bits() as i32)
                .open(path)
                .and_then(|mut f| f.write_all(stamped.as_bytes()));
            if let Err(e) = written {
                errln!(
                    "postline: warning: cannot write the log file {}: {e} (the message is not affected)",
                    escape(&path.display().to_string())
                );
            }
        }
        if self.syslog {
            if let Err(e) = syslog(&line, record.exitcode == exit::OK) {
                errln!(
                    "postline: warning: cannot write to syslog: {e} (the message is not affected)"
                );
            }
        }
    }
}

/// One message's line.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub host: String,
    pub tls: bool,
    pub auth: bool,
    pub user: Option<String>,
    pub from: String,
    pub recipients: Vec<String>,
    pub mailsize: usize,
    pub reply: Option<ServerReply>,
    pub error: Option<String>,
    pub queued: Option<String>,
    pub exitcode: u8,
}

impl Record {
    /// What is known before the attempt: the route, the envelope and the size.
    pub fn new(target: &Target, from: &str, recipients: &[String], mailsize: usize) -> Record {
        Record {
            host: if target.direct {
                // MX routing: the exchangers are named per recipient, after the attempt.
                String::new()
            } else {
                target.host.clone()
            },
            tls: matches!(target.tls, TlsMode::Starttls | TlsMode::Implicit),
            auth: target.auth,
            user: target.user.clone(),
            from: from.to_string(),
            recipients: recipients.to_vec(),
            mailsize,
            ..Record::default()
        }
    }

    /// The attempt through a relay: the deciding reply, what went wrong, and `code`.
    pub fn relay(mut self, report: &Report, code: u8) -> Record {
        if report.tls.is_some() {
            self.tls = true;
        }
        let refused = |list: &[postline::Recipient]| -> Vec<String> {
            list.iter()
                .filter(|r| !r.delivered() && r.deciding_reply().is_some())
                .map(|r| r.address.clone())
                .collect()
        };
        let first_refusal = |list: &[postline::Recipient]| {
            list.iter()
                .find(|r| !r.delivered() && r.deciding_reply().is_some())
                .and_then(|r| r.deciding_reply().cloned())
        };
        match &report.result {
            Ok(o) if o.all_accepted() => self.reply = Some(o.reply.clone()),
            Ok(o) => {
                self.reply = first_refusal(&o.recipients);
                self.error = Some(format!(
                    "recipients refused by the server: {} (the others accepted it)",
                    refused(&o.recipients).join(",")
                ));
            }
            Err(e) => {
                self.reply = e.reply().cloned().or_else(|| match e {
                    Error::MessageRejected { recipients, .. } => first_refusal(recipients),
                    _ => None,
                });
                self.error = Some(crate::connect::describe(e));
            }
        }
        self.exitcode = code;
        self
    }

    /// The attempt by MX routing: the exchangers used, the first problem, and `code`.
    pub fn direct(mut self, deliveries: &[postline::Delivery], code: u8) -> Record {
        let mut hosts: Vec<&str> = Vec::new();
        for h in deliveries.iter().filter_map(|d| d.host.as_deref()) {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        self.host = hosts.join(",");
        let bad = deliveries
            .iter()
            .find(|d| d.status != postline::DeliveryStatus::Delivered);
        self.reply = bad.or(deliveries.last()).and_then(|d| d.reply.clone());
        self.error = bad.map(|d| format!("{}: {}", d.address, d.detail()));
        self.exitcode = code;
        self
    }

    /// The line without its time stamp: `key=value` fields. Values that come from outside
    /// (the server's text, addresses, names) are escaped (control characters) and, where
    /// they may hold a space, quote or `=`, put in single quotes with `'` and `\` escaped,
    /// so no value can forge another field.
    pub fn line(&self) -> String {
        let mut f: Vec<String> = vec![
            format!("host={}", word(&self.host)),
            format!("tls={}", on(self.tls)),
            format!("auth={}", on(self.auth)),
        ];
        if let (true, Some(u)) = (self.auth, &self.user) {
            f.push(format!("user={}", word(u)));
        }
        f.push(format!("from={}", word(&self.from)));
        f.push(format!("recipients={}", word(&self.recipients.join(","))));
        f.push(format!("mailsize={}", self.mailsize));
        if let Some(r) = &self.reply {
            f.push(format!("smtpstatus={}", r.code));
            // Display escapes what the server wrote.
            f.push(format!("smtpmsg={}", quoted(&r.to_string())));
        }
        if let Some(e) = &self.error {
            f.push(format!("errormsg={}", quoted(e)));
        }
        if let Some(id) = &self.queued {
            f.push(format!("queued={}", word(id)));
        }
        f.push(format!("exitcode={}", exit_name(self.exitcode)));
        f.join(" ")
    }
}

/// A value in single quotes, control characters escaped and `\` and `'` backslashed.
fn quoted(v: &str) -> String {
    let escaped = escape(v).to_string();
    format!("'{}'", escaped.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A value as it is when it cannot be taken for more than one field (no space, quote,
/// backslash or `=`), else [`quoted`].
fn word(v: &str) -> String {
    let escaped = escape(v).to_string();
    if escaped.contains([' ', '\'', '"', '\\', '=']) {
        quoted(v)
    } else {
        escaped
    }
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// sysexits.h's name for an exit code, as msmtp logs it.
pub fn exit_name(code: u8) -> String {
    match code {
        exit::OK => "EX_OK".into(),
        exit::USAGE => "EX_USAGE".into(),
        exit::DATAERR => "EX_DATAERR".into(),
        exit::NOINPUT => "EX_NOINPUT".into(),
        exit::NOUSER => "EX_NOUSER".into(),
        exit::NOHOST => "EX_NOHOST".into(),
        exit::UNAVAILABLE => "EX_UNAVAILABLE".into(),
        exit::SOFTWARE => "EX_SOFTWARE".into(),
        exit::CANTCREAT => "EX_CANTCREAT".into(),
        exit::TEMPFAIL => "EX_TEMPFAIL".into(),
        exit::PROTOCOL => "EX_PROTOCOL".into(),
        exit::NOPERM => "EX_NOPERM".into(),
        exit::CONFIG => "EX_CONFIG".into(),
        other => other.to_string(),
    }
}

/// The local time zone's offset, read once while the process has one thread (reading it
/// later may be refused); UTC when it cannot be known.
fn local_offset() -> time::UtcOffset {
    static OFFSET: OnceLock<time::UtcOffset> = OnceLock::new();
    *OFFSET.get_or_init(|| time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC))
}

/// Reads the local offset now: call at the start of `main`, before any thread exists.
pub fn init_clock() {
    local_offset();
}

/// `Dec 02 14:00:00` (msmtp's log file), or with `syslog` `Dec  2 14:00:00` (RFC 3164).
fn timestamp(syslog: bool) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let now = time::OffsetDateTime::now_utc().to_offset(local_offset());
    let month = MONTHS[usize::from(u8::from(now.month())) - 1];
    if syslog {
        format!(
            "{month} {:>2} {:02}:{:02}:{:02}",
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        )
    } else {
        format!(
            "{month} {:02} {:02}:{:02}:{:02}",
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        )
    }
}

/// LOG_MAIL (2) << 3 with LOG_INFO (6) or LOG_ERR (3).
fn priority(ok: bool) -> u8 {
    (2 << 3) | if ok { 6 } else { 3 }
}

/// One RFC 3164 datagram to the local syslog socket.
fn syslog(line: &str, ok: bool) -> std::io::Result<()> {
    let socket = std::env::var_os("POSTLINE_SYSLOG_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/log"));
    let datagram = format!(
        "<{}>{} postline[{}]: {line}",
        priority(ok),
        timestamp(true),
        std::process::id()
    );
    UnixDatagram::unbound()?
        .send_to(datagram.as_bytes(), &socket)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", socket.display())))
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
    fn msmtp_fields_escaped() {
        let r = Record {
            host: "smtp.example.com".into(),
            tls: true,
            auth: true,
            user: Some("me".into()),
            from: "a@b".into(),
            recipients: vec!["c@d".into(), "e@f".into()],
            mailsize: 1234,
            reply: Some(reply(250, "ok \u{1b}]0;x\u{7}\rdone")),
            exitcode: 0,
            ..Record::default()
        };
        assert_eq!(
            r.line(),
            "host=smtp.example.com tls=on auth=on user=me from=a@b recipients=c@d,e@f \
             mailsize=1234 smtpstatus=250 smtpmsg='250 ok \\\\u{1b}]0;x\\\\u{7}\\\\rdone' exitcode=EX_OK"
        );
        let r = Record {
            user: Some("me".into()),
            error: Some("cannot connect\r\nto x".into()),
            queued: Some("q1".into()),
            exitcode: exit::TEMPFAIL,
            ..Record::default()
        };
        assert_eq!(
            r.line(),
            "host= tls=off auth=off from= recipients= mailsize=0 \
             errormsg='cannot connect\\\\r\\\\nto x' queued=q1 exitcode=EX_TEMPFAIL"
        );
    }

    #[test]
    fn no_value_can_forge_a_field() {
        let r = Record {
            from: "\"a b=c\"@x".into(),
            recipients: vec!["d@e".into()],
            reply: Some(reply(
                550,
                "no' smtpstatus=250 smtpmsg='250 ok' exitcode=EX_OK",
            )),
            exitcode: exit::NOUSER,
            ..Record::default()
        };
        let line = r.line();
        // Read back as a key=value parser would: quotes group, a backslash escapes.
        let mut fields = Vec::new();
        let (mut cur, mut quoted, mut chars) = (String::new(), false, line.chars());
        while let Some(c) = chars.next() {
            match c {
                '\\' if quoted => cur.extend(chars.next()),
                '\'' => quoted = !quoted,
                ' ' if !quoted => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        let keys: Vec<&str> = fields
            .iter()
            .filter_map(|f| f.split_once('='))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "host",
                "tls",
                "auth",
                "from",
                "recipients",
                "mailsize",
                "smtpstatus",
                "smtpmsg",
                "exitcode"
            ],
            "{line}"
        );
        assert!(fields.contains(&"exitcode=EX_NOUSER".to_string()), "{line}");
        assert!(fields.contains(&"from=\"a b=c\"@x".to_string()), "{line}");
    }

    #[test]
    fn timestamps_and_priorities() {
        let t = timestamp(false);
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(timestamp(true).len(), 15);
        assert_eq!(priority(true), 22);
        assert_eq!(priority(false), 19);
    }
}
