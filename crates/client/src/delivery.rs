//! What happened to each recipient: the one vocabulary every path answers in.
//!
//! A client's [`Outcome`] or [`Error`] says what the server did with a transaction; a
//! [`Delivery`] says what that means for one recipient of the message: delivered, deferred
//! (try again later), failed (do not), in doubt (the server may have it) or not attempted.
//! The rule lives here, once, so that the command line, direct delivery and the queue retry,
//! bounce and report alike:
//!
//! - **failed** only for a 5xx reply about this message or this recipient (MAIL, RCPT, DATA,
//!   the end of data), an address that cannot be sent to, or a message the server declared it
//!   cannot take (larger than its SIZE, SMTPUTF8, 8-bit data or REQUIRETLS it does not offer);
//! - **in doubt** when the end of data was on the wire and no final reply came;
//! - **not attempted** when the transaction never began (an earlier message ended the
//!   connection without a word from the server, or the caller stopped);
//! - **deferred** for everything else: 4xx replies, the network, timeouts, TLS, a refused
//!   greeting or EHLO, authentication, local configuration. None of those is about this
//!   message, and fixing them should not cost the mail.

use std::fmt;

use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::reply::ServerReply;
use postline_proto::session::FailedAt;

/// The longest reply text a [`Delivery`] keeps, in bytes: enough for any real diagnostic,
/// small enough to store per recipient and quote in a bounce (a server may send 1 MiB).
pub const MAX_REPLY_TEXT: usize = 512;
/// The most reply lines a [`Delivery`] keeps.
pub const MAX_REPLY_LINES: usize = 8;

/// Where one recipient stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// The server took responsibility for the message for this recipient.
    Delivered,
    /// Not delivered this time; a later attempt may succeed.
    Deferred,
    /// Not delivered, and repeating the same message cannot help.
    Failed,
    /// The end of data was sent and no final reply came: the server may have the message.
    /// Retrying may deliver it twice; not retrying may lose it (RFC 5321 6.1 prefers the
    /// duplicate).
    InDoubt,
    /// Never offered to a server in this attempt (the connection ended before its turn).
    NotAttempted,
}

impl DeliveryStatus {
    /// The lower-case name used in reports and JSON: `delivered`, `deferred`, `failed`,
    /// `in-doubt`, `not-attempted`.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::InDoubt => "in-doubt",
            DeliveryStatus::NotAttempted => "not-attempted",
        }
    }

    /// True for delivered and failed: nothing more will be done for this recipient.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Failed)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One recipient's result.
///
/// What a caller does with each status:
///
/// ```
/// use postline::{Delivery, DeliveryStatus};
///
/// fn act_on(d: &Delivery) -> &'static str {
///     match d.status {
///         DeliveryStatus::Delivered => "done",
///         // 5xx about this recipient or message: tell the sender, do not retry.
///         DeliveryStatus::Failed => "bounce",
///         // 4xx, network, TLS, authentication, a full disk: keep it and try again later.
///         DeliveryStatus::Deferred | DeliveryStatus::NotAttempted => "retry later",
///         // The server may have it: retrying may deliver it twice (RFC 5321 6.1 prefers
///         // that to a loss); a careful caller records it as such.
///         DeliveryStatus::InDoubt => "retry, flagged as a possible duplicate",
///     }
/// }
/// let d = Delivery::new("bob@example.org", DeliveryStatus::Failed, None, "550 no such user");
/// assert_eq!(act_on(&d), "bounce");
/// assert!(d.status.is_final());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The address as given in the envelope.
    pub address: String,
    /// What happened.
    pub status: DeliveryStatus,
    /// The reply that decided it: the end-of-data reply for a delivery, the refusal for a
    /// refused recipient or message. Bounded to [`MAX_REPLY_LINES`] lines and
    /// [`MAX_REPLY_TEXT`] bytes. `None` when no reply decided (a timeout, a lost connection).
    pub reply: Option<ServerReply>,
    /// In words, when the reply alone does not say it (which step failed, a network error);
    /// empty when the reply says it all. Bounded like the reply.
    pub reason: String,
    /// The server that decided it, when the caller knows (direct delivery names the
    /// exchanger).
    pub host: Option<String>,
}

impl Delivery {
    /// A result for `address`, with its reply and reason bounded for storage.
    pub fn new(
        address: impl Into<String>,
        status: DeliveryStatus,
        reply: Option<&ServerReply>,
        reason: impl Into<String>,
    ) -> Self {
        Delivery {
            address: address.into(),
            status,
            reply: reply.map(bounded),
            reason: bounded_text(&reason.into()),
            host: None,
        }
    }

    /// Every recipient of `envelope`, in envelope order, from what one transaction returned
    /// (by [`crate::Client::send`], [`crate::Client::send_many`] or their async forms).
    pub fn from_result(result: &Result<Outcome, Error>, envelope: &Envelope) -> Vec<Delivery> {
        Delivery::for_recipients(result, envelope.to())
    }

    /// [`Delivery::from_result`] for these recipients (the transaction's, in its order).
    pub fn for_recipients<'a>(
        result: &Result<Outcome, Error>,
        recipients: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Delivery> {
        let addresses = recipients.into_iter();
        match result {
            Ok(o) => addresses
                .enumerate()
                .map(|(i, a)| match find(&o.recipients, i, a) {
                    // LMTP: the recipient's own reply after the data decides.
                    Some(r) if r.accepted && r.data_reply.is_some() => {
                        after_data(a, r.data_reply.as_ref())
                    }
                    Some(r) if r.accepted => {
                        Delivery::new(a, DeliveryStatus::Delivered, Some(&o.reply), "")
                    }
                    Some(r) => refused_recipient(a, r.reply.as_ref()),
                    None => Delivery::new(a, DeliveryStatus::Deferred, None, "no reply for it"),
                })
                .collect(),
            Err(Error::MessageRejected {
                at,
                reply,
                recipients,
            }) => addresses
                .enumerate()
                .map(|(i, a)| match (find(recipients, i, a), reply) {
                    // Refused at RCPT: its own reply decides.
                    (Some(r), _) if !r.accepted && r.reply.is_some() => {
                        refused_recipient(a, r.reply.as_ref())
                    }
                    // LMTP: its own reply after the data decides.
                    (Some(r), _) if r.data_reply.is_some() => after_data(a, r.data_reply.as_ref()),
                    // MAIL, DATA or the message itself refused: that reply decides for all.
                    (_, Some(reply)) => Delivery::new(
                        a,
                        status_of_refusal(Some(reply)),
                        Some(reply),
                        refused_at(*at).to_string(),
                    ),
                    (_, None) => Delivery::new(a, DeliveryStatus::Deferred, None, refused_at(*at)),
                })
                .collect(),
            Err(e @ Error::DeliveryUnknown { recipients, .. }) if !recipients.is_empty() => {
                let reason = e.to_string();
                addresses
                    .enumerate()
                    .map(|(i, a)| match find(recipients, i, a) {
                        // Certainly not delivered: refused at RCPT.
                        Some(r) if !r.accepted && r.reply.is_some() => {
                            refused_recipient(a, r.reply.as_ref())
                        }
                        // LMTP: this recipient's reply came before the connection failed.
                        Some(r) if r.data_reply.is_some() => after_data(a, r.data_reply.as_ref()),
                        _ => Delivery::new(a, DeliveryStatus::InDoubt, e.reply(), reason.as_str()),
                    })
                    .collect()
            }
            Err(e) => {
                let status = status_of(e);
                let reason = e.to_string();
                let reply = e.reply();
                addresses
                    .map(|a| Delivery::new(a, status, reply, reason.as_str()))
                    .collect()
            }
        }
    }

    /// The named server, for callers that know it.
    pub fn at_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// One line for people: the reply, the reason, or both (the reply first, so the line
    /// starts with its code; a reason that already quotes the reply is enough).
    pub fn detail(&self) -> String {
        match (&self.reply, self.reason.is_empty()) {
            (Some(r), true) => r.to_string(),
            (Some(r), false) if self.reason.contains(&r.to_string()) => self.reason.clone(),
            (Some(r), false) => format!("{r} ({})", self.reason),
            (None, _) => self.reason.clone(),
        }
    }
}

/// What an error that ended a transaction (or kept it from starting) means for each of its
/// recipients, by the rule in the module documentation.
pub fn status_of(e: &Error) -> DeliveryStatus {
    match e {
        Error::DeliveryUnknown { .. } => DeliveryStatus::InDoubt,
        Error::NotSent { .. } => DeliveryStatus::NotAttempted,
        Error::MessageRejected { reply: Some(r), .. } => status_of_refusal(Some(r)),
        Error::Incompatible(_) | Error::Address { .. } | Error::NoRecipients => {
            DeliveryStatus::Failed
        }
        _ => DeliveryStatus::Deferred,
    }
}

/// What a refusal means for the recipients it names: failed for a 5xx, deferred for
/// anything else (a 4xx, or no reply at all).
pub fn status_of_refusal(reply: Option<&ServerReply>) -> DeliveryStatus {
    match reply {
        Some(r) if r.is_permanent() => DeliveryStatus::Failed,
        _ => DeliveryStatus::Deferred,
    }
}

fn refused_recipient(address: &str, reply: Option<&ServerReply>) -> Delivery {
    let status = status_of_refusal(reply);
    match reply {
        Some(r) => Delivery::new(address, status, Some(r), ""),
        None => Delivery::new(address, status, None, "no reply for it"),
    }
}

/// An LMTP recipient's own reply to the end of data: delivered on a 2xx, else refused
/// as any reply about the message is.
fn after_data(address: &str, reply: Option<&ServerReply>) -> Delivery {
    match reply {
        Some(r) if r.code / 100 == 2 => {
            Delivery::new(address, DeliveryStatus::Delivered, Some(r), "")
        }
        _ => Delivery::new(
            address,
            status_of_refusal(reply),
            reply,
            refused_at(FailedAt::Message),
        ),
    }
}

fn refused_at(at: FailedAt) -> &'static str {
    match at {
        FailedAt::Mail => "at MAIL",
        FailedAt::NoValidRecipients => "no recipient accepted",
        FailedAt::Data => "at DATA",
        FailedAt::Message => "after the data",
    }
}

/// `address`'s entry in a client's list: by position when it matches (the client keeps
/// envelope order), else by spelling.
fn find<'a>(
    list: &'a [crate::outcome::Recipient],
    i: usize,
    address: &str,
) -> Option<&'a crate::outcome::Recipient> {
    match list.get(i) {
        Some(r) if r.address == address => Some(r),
        _ => list.iter().find(|r| r.address == address).or_else(|| {
            list.iter()
                .find(|r| r.address.eq_ignore_ascii_case(address))
        }),
    }
}

/// A copy of `r` small enough to store: at most [`MAX_REPLY_LINES`] lines and
/// [`MAX_REPLY_TEXT`] bytes of text, control characters replaced.
pub fn bounded(r: &ServerReply) -> ServerReply {
    let mut left = MAX_REPLY_TEXT;
    let mut lines = Vec::new();
    for line in r.lines.iter().take(MAX_REPLY_LINES) {
        if left == 0 {
            break;
        }
        let text = bounded_text_to(line, left);
        left = left.saturating_sub(text.len());
        lines.push(text);
    }
    ServerReply {
        code: r.code,
        enhanced: r.enhanced,
        lines,
    }
}

fn bounded_text(s: &str) -> String {
    bounded_text_to(s, MAX_REPLY_TEXT)
}

/// At most `max` bytes of `s` (cut between characters, marked with `...`), with control
/// characters (CR, LF, ESC...) and bidi marks [escaped](crate::escape) so the text is one
/// safe line. Each character is escaped whole before it is counted, so a cut never leaves
/// half an escape (`\u{1` would read as text that was never sent).
fn bounded_text_to(s: &str, max: usize) -> String {
    let whole = crate::escape::escape(s);
    if whole.len() <= max {
        return whole.into_owned();
    }
    let budget = max.saturating_sub(3);
    let mut out = String::with_capacity(max);
    let mut one = [0u8; 4];
    for c in s.chars() {
        let piece = crate::escape::escape(c.encode_utf8(&mut one));
        if out.len() + piece.len() > budget {
            break;
        }
        out.push_str(&piece);
    }
    if max >= 3 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Recipient;
    use postline_proto::session::Phase;

    fn reply(code: u16, text: &str) -> ServerReply {
        ServerReply {
            code,
            enhanced: None,
            lines: vec![text.to_string()],
        }
    }

    fn rcpt(a: &str, accepted: bool, code: u16) -> Recipient {
        Recipient {
            address: a.into(),
            accepted,
            reply: Some(reply(code, "x")),
            data_reply: None,
        }
    }

    /// An LMTP recipient accepted at RCPT whose reply after the data was `code`.
    fn lmtp(a: &str, code: Option<u16>) -> Recipient {
        Recipient {
            data_reply: code.map(|c| reply(c, "after data")),
            ..rcpt(a, true, 250)
        }
    }

    #[test]
    fn lmtp_recipients_are_decided_by_their_own_replies_after_the_data() {
        let recipients = vec![
            lmtp("ok@y", Some(250)),
            lmtp("bad@y", Some(552)),
            lmtp("later@y", Some(452)),
        ];
        let o = crate::engine::per_recipient(recipients.clone());
        let d = Delivery::from_result(&o, &env());
        assert_eq!(statuses(&d), [Delivered, Failed, Deferred]);
        assert_eq!(d[1].reply.as_ref().unwrap().code, 552);
        assert!(d[1].reason.contains("after the data"), "{:?}", d[1]);
        // Not one mailbox took it: a refusal, still per recipient; the error's own reply is
        // the transient one, so a caller reading only the error tries again.
        let refused = vec![
            lmtp("ok@y", Some(550)),
            lmtp("bad@y", Some(552)),
            lmtp("later@y", Some(452)),
        ];
        let e = crate::engine::per_recipient(refused);
        match &e {
            Err(Error::MessageRejected { reply: Some(r), .. }) => assert_eq!(r.code, 452),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            statuses(&Delivery::from_result(&e, &env())),
            [Failed, Failed, Deferred]
        );
    }

    #[test]
    fn a_connection_lost_among_lmtp_replies_keeps_the_answered_ones() {
        let lost = Error::ConnectionLost {
            phase: Phase::DataEnd,
        };
        let e = Err(Error::DeliveryUnknown {
            cause: Box::new(lost),
            recipients: vec![
                lmtp("ok@y", Some(250)),
                rcpt("bad@y", false, 550),
                lmtp("later@y", None),
            ],
        });
        let d = Delivery::from_result(&e, &env());
        // Delivered stays delivered (a retry would duplicate it), refused stays refused,
        // and only the unanswered one is in doubt.
        assert_eq!(statuses(&d), [Delivered, Failed, InDoubt]);
    }

    fn env() -> Envelope {
        Envelope::new("a@x", ["ok@y", "bad@y", "later@y"]).unwrap()
    }

    fn statuses(list: &[Delivery]) -> Vec<DeliveryStatus> {
        list.iter().map(|d| d.status).collect()
    }

    use DeliveryStatus::*;

    #[test]
    fn an_outcome_per_recipient() {
        let o = Ok(Outcome {
            recipients: vec![
                rcpt("ok@y", true, 250),
                rcpt("bad@y", false, 550),
                rcpt("later@y", false, 451),
            ],
            reply: reply(250, "queued as 1"),
        });
        let d = Delivery::from_result(&o, &env());
        assert_eq!(statuses(&d), [Delivered, Failed, Deferred]);
        assert_eq!(d[0].reply.as_ref().unwrap().code, 250);
        assert_eq!(d[1].reply.as_ref().unwrap().code, 550);
    }

    #[test]
    fn a_refused_message_decides_by_the_reply_that_applies() {
        let e = Err(Error::MessageRejected {
            at: FailedAt::Data,
            reply: Some(reply(451, "later")),
            recipients: vec![
                rcpt("ok@y", true, 250),
                rcpt("bad@y", false, 550),
                rcpt("later@y", true, 250),
            ],
        });
        assert_eq!(
            statuses(&Delivery::from_result(&e, &env())),
            [Deferred, Failed, Deferred]
        );
        let e = Err(Error::MessageRejected {
            at: FailedAt::Message,
            reply: Some(reply(554, "spam")),
            recipients: vec![rcpt("ok@y", true, 250)],
        });
        assert_eq!(
            statuses(&Delivery::from_result(&e, &env())),
            [Failed, Failed, Failed]
        );
    }

    #[test]
    fn session_faults_defer_and_only_message_faults_fail() {
        let lost = Error::ConnectionLost {
            phase: Phase::DataEnd,
        };
        let cases = [
            (Error::Rejected(reply(554, "no service")), Deferred),
            (Error::StartTlsUnavailable(None), Deferred),
            (
                Error::Protocol(postline_proto::session::SessionError::UnexpectedReply {
                    code: postline_proto::reply::Code::new(550).unwrap(),
                }),
                Deferred,
            ),
            (lost.clone(), Deferred),
            (
                Error::DeliveryUnknown {
                    cause: Box::new(lost.clone()),
                    recipients: Vec::new(),
                },
                InDoubt,
            ),
            (
                Error::NotSent {
                    cause: Box::new(lost),
                },
                NotAttempted,
            ),
            // A 421 ends the session before the message was taken: not attempted (the
            // queue waits its first retry; a per-session limit costs the rest no attempt).
            (
                Error::NotSent {
                    cause: Box::new(Error::ServiceClosing(reply(421, "rate limited"))),
                },
                NotAttempted,
            ),
            (
                Error::Incompatible(crate::Refusal::TooLarge { size: 9, limit: 1 }),
                Failed,
            ),
        ];
        for (e, want) in cases {
            let d = Delivery::from_result(&Err(e.clone()), &env());
            assert!(d.iter().all(|d| d.status == want), "{e}: {d:?}");
        }
    }

    #[test]
    fn a_cut_never_splits_an_escape() {
        // Each ESC is 6 bytes escaped; wherever the limit falls, no `\u{1` is left dangling.
        let text = "\u{1b}".repeat(200);
        for max in 3..60 {
            let t = bounded_text_to(&text, max);
            assert!(t.len() <= max, "{max}: {t}");
            let body = t.trim_end_matches("...");
            assert_eq!(body.len() % 6, 0, "{max}: {t}");
            assert!(body.split("\\u{1b}").all(str::is_empty), "{max}: {t}");
        }
        assert_eq!(bounded_text_to("short", 512), "short");
    }

    #[test]
    fn replies_are_bounded_for_storage() {
        let huge = ServerReply {
            code: 550,
            enhanced: None,
            lines: (0..1000).map(|_| "é\r\n\x1b[31m".repeat(200)).collect(),
        };
        let b = bounded(&huge);
        assert!(b.lines.len() <= MAX_REPLY_LINES);
        let total: usize = b.lines.iter().map(String::len).sum();
        assert!(total <= MAX_REPLY_TEXT, "{total}");
        assert!(b.lines.iter().all(|l| !l.chars().any(char::is_control)));
        let d = Delivery::new("a@b", Failed, None, "x".repeat(10_000));
        assert!(d.reason.len() <= MAX_REPLY_TEXT && d.reason.ends_with("..."));
    }
}
