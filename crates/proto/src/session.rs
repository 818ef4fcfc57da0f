//! The SMTP client session as a state machine: greeting, EHLO (HELO fallback), STARTTLS, AUTH,
//! then any number of transactions, pipelined when the server allows it (RFC 5321, RFC 2920,
//! RFC 3207, RFC 4954, RFC 3030). With the `lmtp` cargo feature the same machine speaks LMTP
//! (RFC 2033) when `SessionConfig::lmtp` is set: LHLO, and one reply per accepted recipient
//! after the data.
//!
//! # Driving a session
//!
//! The session owns protocol state only; the driver owns the socket, the clock, TLS and the
//! buffers. One loop, the same for blocking and async drivers:
//!
//! 1. Write [`Outbox::transmit`] to the socket and [`Outbox::advance`] past what was written.
//! 2. Read from the socket, with the timeout [`Session::phase`] names, appending to an input
//!    buffer; call [`Session::handle_input`] on the unconsumed bytes until it consumes nothing.
//!    Each call handles at most one reply and may return an [`Event`] borrowing that reply.
//! 3. Act on events: [`Event::Ready`] means the driver may start TLS, authenticate, or start
//!    transactions; [`Event::SendData`] means message data may be fed with
//!    [`Session::send_data`] and ended with [`Session::end_data`].
//!
//! # Transactions and deep pipelining
//!
//! [`Session::start_transaction`] encodes MAIL, every RCPT and DATA (or, with CHUNKING, just
//! MAIL and RCPT) at once. With PIPELINING they are released together; without it they are
//! held in the [`Outbox`] and released one per reply, and taken back if the transaction fails
//! early. Once a message's end of data (or `BDAT n LAST`) is written the next transaction may
//! be started at once (RFC 2920 3.1), so its commands leave in the same write as the previous
//! message's terminator: a stream of messages costs one round trip each with DATA, and with
//! BDAT up to [`MAX_TRANSACTIONS`] messages (a session's `T`) are in flight before the first
//! reply is needed.
//! Replies are matched in order against a queue of expectations tagged with their
//! transaction, so no reply is credited to a neighbour.
//!
//! Every transaction ends in exactly one [`Event::TransactionDone`]; a recipient that had no
//! accepting [`Event::RecipientResult`] before it was not accepted.

use core::fmt;

use crate::buf::{Buffer, BufferFull};
use crate::command::{AddressError, Command, Domain, Envelope, MAX_DOMAIN_LEN};
use crate::data::DataEncoder;
use crate::ehlo::{Capabilities, Extension};
pub use crate::outbox::Outbox;
use crate::reply::{Code, Reply, ReplyError, ReplyParser};
use crate::sasl::{Credentials, Mechanism, Sasl, SaslError};

/// Transactions that may be in flight at once (deep pipelining window).
pub const MAX_TRANSACTIONS: usize = 4;
const MAX_EXPECT: usize = 24;

/// Settings fixed for a session's life.
///
/// `N` keeps the name announced in EHLO/HELO: inline by default ([`InlineName`], so a session
/// needs no lifetime and no allocator), or borrowed (`&str`, [`SessionConfig::borrowing`])
/// by a driver that holds the name anyway and counts its RAM in bytes.
#[derive(Clone)]
pub struct SessionConfig<N = InlineName> {
    hello: N,
    /// Pipeline commands when the server offers PIPELINING (default on).
    pub pipelining: bool,
    /// Send message data with BDAT when the server offers CHUNKING and PIPELINING (default
    /// off). Needs the `chunking` cargo feature (on by default); without it DATA is used.
    pub chunking: bool,
    /// The transport is already encrypted (implicit TLS, port 465): STARTTLS is not offered.
    pub implicit_tls: bool,
    /// Stop at the greeting: no EHLO; a 220 gives [`Event::Ready`] with no capabilities,
    /// and the driver is expected to say QUIT (swaks' `--quit-after banner`).
    pub greeting_only: bool,
    /// Speak LMTP (RFC 2033), as a final delivery agent such as Dovecot or Cyrus expects:
    /// LHLO instead of EHLO, with no HELO to fall back on, and after the end of data one
    /// reply per accepted recipient, each reported as [`Event::LmtpResult`]. Message data
    /// always goes with DATA: after a refused BDAT chunk, how many replies the last chunk
    /// gets is not pinned down, and a miscount would credit one recipient's reply to another.
    /// For the same reason one message is in flight at a time, and a 354 to DATA with no
    /// recipient accepted (RFC 2033 wants 503) ends the session. Only with the `lmtp` cargo
    /// feature (on by default).
    #[cfg(feature = "lmtp")]
    pub lmtp: bool,
}

/// A domain name kept inline: at most [`MAX_DOMAIN_LEN`] octets, copied from a [`Domain`].
#[derive(Clone, Copy)]
pub struct InlineName {
    bytes: [u8; MAX_DOMAIN_LEN],
    len: u8,
}

impl AsRef<str> for InlineName {
    fn as_ref(&self) -> &str {
        // Copied whole from a `Domain` (a `str`): always UTF-8.
        core::str::from_utf8(self.bytes.get(..self.len as usize).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Debug for InlineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_ref(), f)
    }
}

impl SessionConfig {
    /// Settings with the name to announce in EHLO/HELO (copied into the session).
    pub fn new<S: AsRef<str>>(hello: &Domain<S>) -> Self {
        let copy = InlineName::of(hello.as_str());
        // The copy is checked, not only the `Domain` it came from: `S::as_ref` is the
        // caller's code and need not give the same string twice, and the session announces
        // the copy without checking it again. A name that changed is not announced.
        let name = match Domain::new(copy.as_ref()) {
            Ok(_) => copy,
            Err(_) => InlineName::of("localhost"),
        };
        SessionConfig::with_name(name)
    }
}

impl InlineName {
    /// The first [`MAX_DOMAIN_LEN`] octets of `name`.
    fn of(name: &str) -> Self {
        let name = name.as_bytes();
        let mut bytes = [0u8; MAX_DOMAIN_LEN];
        let n = name.len().min(MAX_DOMAIN_LEN);
        bytes[..n].copy_from_slice(&name[..n]);
        InlineName {
            bytes,
            len: n as u8,
        }
    }
}

impl<'a> SessionConfig<&'a str> {
    /// Settings with the name to announce in EHLO/HELO, borrowed for the session's life.
    pub fn borrowing(hello: Domain<&'a str>) -> Self {
        SessionConfig::with_name(hello.into_inner())
    }
}

impl<N: AsRef<str>> SessionConfig<N> {
    fn with_name(hello: N) -> Self {
        SessionConfig {
            hello,
            pipelining: true,
            chunking: false,
            implicit_tls: false,
            greeting_only: false,
            #[cfg(feature = "lmtp")]
            lmtp: false,
        }
    }
}

impl<N: fmt::Debug> fmt::Debug for SessionConfig<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SessionConfig");
        d.field("hello", &self.hello)
            .field("pipelining", &self.pipelining)
            .field("chunking", &self.chunking)
            .field("implicit_tls", &self.implicit_tls)
            .field("greeting_only", &self.greeting_only);
        #[cfg(feature = "lmtp")]
        d.field("lmtp", &self.lmtp);
        d.finish()
    }
}

/// Which RFC 5321 4.5.3.2 timer applies to the wait for the next reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The 220 greeting (5 minutes).
    Greeting,
    /// EHLO, HELO, STARTTLS, AUTH, RSET, NOOP, VRFY, HELP, QUIT (5 minutes).
    Command,
    /// MAIL FROM (5 minutes).
    Mail,
    /// RCPT TO (5 minutes).
    Rcpt,
    /// The 354 after DATA (2 minutes).
    DataStart,
    /// Writing message data (3 minutes per block).
    DataBlock,
    /// The reply to end-of-data or to a BDAT chunk (10 minutes).
    DataEnd,
}

impl Phase {
    /// The RFC 5321 default, in seconds.
    pub const fn default_timeout_secs(self) -> u64 {
        match self {
            Phase::Greeting | Phase::Command | Phase::Mail | Phase::Rcpt => 300,
            Phase::DataStart => 120,
            Phase::DataBlock => 180,
            Phase::DataEnd => 600,
        }
    }

    /// A short name for error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Command => "command",
            Phase::Mail => "MAIL",
            Phase::Rcpt => "RCPT",
            Phase::DataStart => "DATA",
            Phase::DataBlock => "message data",
            Phase::DataEnd => "end of data",
        }
    }
}

/// Identifies a transaction in events, in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u32);

/// Where a transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedAt {
    /// MAIL FROM was refused.
    Mail,
    /// Every RCPT TO was refused (their replies came as [`Event::RecipientResult`]).
    NoValidRecipients,
    /// DATA was refused.
    Data,
    /// The message was refused after its data (end-of-data reply or a BDAT reply).
    Message,
}

/// How a transaction ended.
///
/// Non-exhaustive: which outcomes exist depends on the cargo features (`checks`, `lmtp`), and
/// another crate in the build may turn one on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxOutcome<'a> {
    /// The server took responsibility for the message; the reply often names a queue id.
    Delivered(Reply<'a>),
    /// The message was not accepted.
    Failed {
        /// The step that failed.
        at: FailedAt,
        /// The reply that said so, when one reply did.
        reply: Option<Reply<'a>>,
    },
    /// A check ([`Session::check_envelope`]): MAIL and every RCPT were answered, at least
    /// one recipient (or, with none given, the sender) was accepted, and no DATA was sent;
    /// the session reset the transaction with RSET. Only with the `checks` cargo feature.
    #[cfg(feature = "checks")]
    Checked,
    /// LMTP: the end of data was answered once per accepted recipient, each reply reported
    /// as [`Event::LmtpResult`] before this; `delivered` of them were positive. A recipient's
    /// own reply decides for it, so no single reply stands for the message.
    #[cfg(feature = "lmtp")]
    PerRecipient {
        /// How many accepted recipients the message was delivered to.
        delivered: u32,
    },
}

/// What a reply meant, for the driver to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The session is greeted and idle: start TLS, authenticate, or send mail. Also after a
    /// re-EHLO following STARTTLS.
    Ready,
    /// The server refused the session (greeting or HELO not 2xx); QUIT has been queued.
    Rejected(Reply<'a>),
    /// The server is closing the connection (421).
    ServiceClosing(Reply<'a>),
    /// STARTTLS was accepted: upgrade the transport now, then call
    /// [`Session::tls_established`]. Any input buffered past the 220 was consumed and must be
    /// discarded (RFC 3207 5: plaintext injected before the handshake).
    StartTls,
    /// STARTTLS was refused; the session is still usable in clear text.
    StartTlsRefused(Reply<'a>),
    /// A 334 challenge: answer it with [`Session::auth_respond`] (or cancel).
    AuthChallenge(&'a [u8]),
    /// AUTH succeeded; the session is idle.
    Authenticated,
    /// AUTH failed; the session is idle and still usable.
    AuthFailed(Reply<'a>),
    /// The AUTH exchange ended (with this reply, success or not) without the server proving
    /// it knows the password: a SCRAM server-final `v=` that was missing, wrong or malformed.
    /// The session is idle and *not* authenticated; the server is an impostor or broken, and
    /// a careful driver says so and goes no further.
    AuthServerUnverified(Reply<'a>),
    /// One recipient's RCPT reply (accepted when 2xx).
    RecipientResult {
        /// The transaction.
        tx: TxId,
        /// Index into the envelope's recipients.
        index: u32,
        /// The server's reply.
        reply: Reply<'a>,
    },
    /// A check's MAIL was accepted ([`Session::check_envelope`]; a refused MAIL ends the
    /// transaction with [`Event::TransactionDone`] as for a message).
    #[cfg(feature = "checks")]
    SenderResult {
        /// The transaction.
        tx: TxId,
        /// The server's reply.
        reply: Reply<'a>,
    },
    /// LMTP: one accepted recipient's reply to the end of data (RFC 2033 4.2), in the order
    /// the recipients were accepted. The transaction's end follows the last one.
    #[cfg(feature = "lmtp")]
    LmtpResult {
        /// The transaction.
        tx: TxId,
        /// Which accepted recipient: 0 for the first recipient whose RCPT was accepted, 1 for
        /// the second, and so on (the envelope index of refused recipients is skipped).
        accepted_index: u32,
        /// The server's reply for that recipient.
        reply: Reply<'a>,
    },
    /// Message data for `tx` may be written now ([`Session::send_data`], [`Session::end_data`]).
    SendData(TxId),
    /// The transaction is over.
    TransactionDone {
        /// The transaction.
        tx: TxId,
        /// Delivered or failed, with the reply.
        outcome: TxOutcome<'a>,
    },
    /// The reply to a RSET, NOOP, VRFY or HELP the driver sent.
    Reply(Reply<'a>),
    /// QUIT was answered; the session is over.
    Closed,
}

/// Malformed or out-of-place server input. Terminal: every later call returns it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The bytes were not a valid reply.
    Malformed(ReplyError),
    /// A reply arrived when none was expected.
    UnexpectedReply {
        /// Its code.
        code: Code,
    },
    /// Bytes arrived when no reply was due that are not (yet) a reply code: the start of a
    /// reply sent before the command it would answer, or noise.
    UnexpectedInput,
    /// A reply of the wrong kind, such as 354 where 250 was due.
    WrongReply {
        /// What the reply answered.
        phase: Phase,
        /// Its code.
        code: Code,
    },
    /// Bytes arrived while the driver was doing the TLS handshake.
    InputDuringTlsHandshake,
    /// The connection closed while replies were still due.
    ConnectionClosed {
        /// What was awaited.
        phase: Phase,
    },
    /// The output buffer had no room for a command the session had to send.
    BufferFull(BufferFull),
}

impl core::error::Error for SessionError {}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Malformed(e) => write!(f, "malformed reply from server: {e}"),
            SessionError::UnexpectedReply { code } => {
                write!(
                    f,
                    "server sent reply {} when no reply was due",
                    code.value()
                )
            }
            SessionError::UnexpectedInput => f.write_str("server sent data when no reply was due"),
            SessionError::WrongReply { phase, code } => {
                write!(
                    f,
                    "server answered {} with {}, which is out of place",
                    phase.name(),
                    code.value()
                )
            }
            SessionError::InputDuringTlsHandshake => {
                f.write_str("server sent data while the TLS handshake was due")
            }
            SessionError::ConnectionClosed { phase } => {
                write!(
                    f,
                    "connection closed while waiting for the {} reply",
                    phase.name()
                )
            }
            SessionError::BufferFull(e) => write!(f, "{e}"),
        }
    }
}

/// A call the session cannot take in its current state; the session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UseError {
    /// Not possible now (before the greeting, during AUTH or TLS, after QUIT...).
    NotReady,
    /// The deep-pipelining window is full, or an earlier transaction is still being set up.
    Busy,
    /// No message data is expected now.
    NoDataExpected,
    /// The envelope has no recipient.
    NoRecipients,
    /// A parameter is invalid.
    Invalid(AddressError),
    /// The SASL exchange cannot go on.
    Sasl(SaslError),
    /// The outbox has no room; write it out and try again.
    BufferFull(BufferFull),
    /// The session ended with this error.
    Failed(SessionError),
}

impl From<BufferFull> for UseError {
    fn from(e: BufferFull) -> Self {
        UseError::BufferFull(e)
    }
}

impl From<SaslError> for UseError {
    fn from(e: SaslError) -> Self {
        UseError::Sasl(e)
    }
}

impl core::error::Error for UseError {}

impl fmt::Display for UseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UseError::NotReady => f.write_str("the session cannot take that command now"),
            UseError::Busy => f.write_str("too many transactions in flight"),
            UseError::NoDataExpected => f.write_str("no message data is expected now"),
            UseError::NoRecipients => f.write_str("the envelope has no recipient"),
            UseError::Invalid(e) => write!(f, "invalid parameter: {e}"),
            UseError::Sasl(e) => write!(f, "authentication: {e:?}"),
            UseError::BufferFull(e) => write!(f, "{e}"),
            UseError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Tested with `matches!`, never `==`: a derived comparison takes in the [`Sasl`] of `Auth`
/// and, called out of line from a dozen places, cost a device build about 160 B of code.
#[derive(Debug, Clone, Copy)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    Ready,
    StartTls,
    TlsHandshake,
    Auth(Sasl),
    /// A server that could not prove it knows the password said AUTH succeeded: nothing
    /// more is sent to it but QUIT.
    Untrusted,
    Closed,
}

/// What the next reply in order answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
    /// RSET sent by the session after a failed transaction: its reply is not reported.
    CleanupRset,
    /// RSET, NOOP, VRFY, HELP from the driver: reported as [`Event::Reply`].
    User,
    Quit,
    Mail(u8),
    /// One entry covers every RCPT of the transaction in the slot.
    Rcpt(u8),
    Data(u8),
    DataEnd(u8),
    /// One entry covers every non-last BDAT of the transaction in the slot.
    Bdat(u8),
    BdatLast(u8),
}

impl Expect {
    fn phase(self) -> Phase {
        match self {
            Expect::Greeting => Phase::Greeting,
            Expect::Mail(_) => Phase::Mail,
            Expect::Rcpt(_) => Phase::Rcpt,
            Expect::Data(_) => Phase::DataStart,
            Expect::DataEnd(_) | Expect::Bdat(_) | Expect::BdatLast(_) => Phase::DataEnd,
            _ => Phase::Command,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// MAIL/RCPT (and DATA) sent; no data yet.
    Envelope,
    /// The driver is writing message data.
    Sending,
    /// End of data written; the final reply is due.
    AwaitFinal,
}

#[derive(Debug, Clone, Copy)]
struct Tx {
    id: TxId,
    live: bool,
    stage: Stage,
    bdat: bool,
    rcpts: u32,
    rcpt_replies: u32,
    accepted: u32,
    mail_ok: bool,
    /// TransactionDone was emitted early; the rest of the tx's replies are consumed silently.
    done: bool,
    /// Non-last BDAT replies still due.
    bdat_pending: u32,
    /// Replies still due for this tx (all expectations counted individually).
    due: u32,
    /// The end of data has been answered (no RSET needed after a failure).
    ended: bool,
    /// The end of data (or `BDAT n LAST`) is in the outbox: the server's answer to it closes
    /// the transaction whatever happened before, so the next one may follow right behind.
    last_written: bool,
    /// A check: MAIL and RCPT only, never DATA.
    #[cfg(feature = "checks")]
    check: bool,
    /// LMTP: replies still due to the end of data, one per accepted recipient.
    #[cfg(feature = "lmtp")]
    final_due: u32,
    /// LMTP: positive replies to the end of data so far.
    #[cfg(feature = "lmtp")]
    delivered: u32,
}

impl Tx {
    const EMPTY: Tx = Tx {
        id: TxId(0),
        live: false,
        stage: Stage::Envelope,
        bdat: false,
        rcpts: 0,
        rcpt_replies: 0,
        accepted: 0,
        mail_ok: false,
        done: false,
        bdat_pending: 0,
        due: 0,
        ended: false,
        last_written: false,
        #[cfg(feature = "checks")]
        check: false,
        #[cfg(feature = "lmtp")]
        final_due: 0,
        #[cfg(feature = "lmtp")]
        delivered: 0,
    };
}

/// A fixed-capacity FIFO of expectations, oldest first from `items[0]`.
///
/// Not a ring: a pop moves the rest down (under 50 bytes, once per reply), so no index wraps.
/// As a ring each access divided by the capacity to wrap its index, which cost a device build
/// 64 B of code (63 B on x86_64).
#[derive(Debug, Clone)]
struct ExpectQueue {
    items: [Expect; MAX_EXPECT],
    len: u8,
}

impl ExpectQueue {
    const fn new() -> Self {
        ExpectQueue {
            items: [Expect::Greeting; MAX_EXPECT],
            len: 0,
        }
    }
    fn front(&self) -> Option<Expect> {
        (self.len > 0).then_some(self.items[0])
    }
    fn back(&self) -> Option<Expect> {
        self.items
            .get(usize::from(self.len).checked_sub(1)?)
            .copied()
    }
    fn room(&self) -> usize {
        MAX_EXPECT - self.len as usize
    }
    fn push(&mut self, e: Expect) {
        debug_assert!(self.room() > 0);
        if let Some(slot) = self.items.get_mut(usize::from(self.len)) {
            *slot = e;
            self.len += 1;
        }
    }
    /// Inlined into its one caller: out of line, the shift cost a device build 70 B more.
    #[inline(always)]
    fn pop(&mut self) {
        if self.len > 0 {
            for i in 1..MAX_EXPECT {
                self.items[i - 1] = self.items[i];
            }
            self.len -= 1;
        }
    }
    /// Removes every entry of the slot's transaction (they will never be answered): each
    /// kept entry moves down over the removed ones.
    fn remove_slot(&mut self, slot: u8) {
        let mut kept = 0;
        for i in 0..usize::from(self.len) {
            let e = self.items[i];
            if slot_of(e) != Some(slot) {
                self.items[kept] = e;
                kept += 1;
            }
        }
        self.len = kept as u8;
    }
    fn clear(&mut self) {
        self.len = 0;
    }
}

fn slot_of(e: Expect) -> Option<u8> {
    match e {
        Expect::Mail(s)
        | Expect::Rcpt(s)
        | Expect::Data(s)
        | Expect::DataEnd(s)
        | Expect::Bdat(s)
        | Expect::BdatLast(s) => Some(s),
        _ => None,
    }
}

/// How a transaction ends when the reply that decided it already produced its own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Failed(FailedAt),
    /// A check with an accepted recipient or sender.
    #[cfg(feature = "checks")]
    Checked,
    /// LMTP: the last recipient's reply to the end of data came.
    #[cfg(feature = "lmtp")]
    PerRecipient {
        delivered: u32,
    },
}

/// What a reply decided, without the reply itself: the handlers of [`Session::dispatch`]
/// deal in codes, slots and counts, and [`Decision::event`] copies the reply into the public
/// [`Event`] once, on the way out. Passed through every branch instead, the reply (20 bytes
/// on a 32-bit device) was split into a dozen registers and stack slots at each of them:
/// about 380 B of a Cortex-M4 build and 1.2 KB on x86_64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// No event: a reply consumed silently, or a command sent in answer.
    Nothing,
    Ready,
    Rejected,
    ServiceClosing,
    StartTls,
    StartTlsRefused,
    AuthChallenge,
    Authenticated,
    AuthFailed,
    AuthServerUnverified,
    Recipient {
        tx: TxId,
        index: u32,
    },
    #[cfg(feature = "checks")]
    Sender {
        tx: TxId,
    },
    #[cfg(feature = "lmtp")]
    Lmtp {
        tx: TxId,
        accepted_index: u32,
    },
    SendData(TxId),
    /// [`TxOutcome::Delivered`] with the reply.
    Delivered(TxId),
    /// [`TxOutcome::Failed`], with the reply when `said` (the reply decided it).
    Failed {
        tx: TxId,
        at: FailedAt,
        said: bool,
    },
    Reply,
    Closed,
}

impl Decision {
    /// `d`, or nothing when the transaction was already reported (`done`).
    fn unless(done: bool, d: Decision) -> Decision {
        if done {
            Decision::Nothing
        } else {
            d
        }
    }

    /// The event for the driver, carrying `reply` where the event has one.
    fn event(self, reply: Reply<'_>) -> Option<Event<'_>> {
        Some(match self {
            Decision::Nothing => return None,
            Decision::Ready => Event::Ready,
            Decision::Rejected => Event::Rejected(reply),
            Decision::ServiceClosing => Event::ServiceClosing(reply),
            Decision::StartTls => Event::StartTls,
            Decision::StartTlsRefused => Event::StartTlsRefused(reply),
            // The 334 line's text; the driver decodes it.
            Decision::AuthChallenge => Event::AuthChallenge(reply.lines().next().unwrap_or(&[])),
            Decision::Authenticated => Event::Authenticated,
            Decision::AuthFailed => Event::AuthFailed(reply),
            Decision::AuthServerUnverified => Event::AuthServerUnverified(reply),
            Decision::Recipient { tx, index } => Event::RecipientResult { tx, index, reply },
            #[cfg(feature = "checks")]
            Decision::Sender { tx } => Event::SenderResult { tx, reply },
            #[cfg(feature = "lmtp")]
            Decision::Lmtp { tx, accepted_index } => Event::LmtpResult {
                tx,
                accepted_index,
                reply,
            },
            Decision::SendData(tx) => Event::SendData(tx),
            Decision::Delivered(tx) => Event::TransactionDone {
                tx,
                outcome: TxOutcome::Delivered(reply),
            },
            Decision::Failed { tx, at, said } => Event::TransactionDone {
                tx,
                outcome: TxOutcome::Failed {
                    at,
                    reply: said.then_some(reply),
                },
            },
            Decision::Reply => Event::Reply(reply),
            Decision::Closed => Event::Closed,
        })
    }
}

/// The SMTP client session. See the [module docs](self) for the driving loop.
///
/// Inputs are `handle_*`; commands are methods that write into the caller's [`Outbox`];
/// getters take `&self`. The state is a few hundred bytes and holds no secret and no envelope.
///
/// `T` is how many transactions may be in flight at once ([`MAX_TRANSACTIONS`] by default):
/// a driver that sends one message at a time builds its session with
/// [`Session::with_transactions`] and `T = 1`, and saves the other slots' bytes.
#[derive(Debug, Clone)]
pub struct Session<N = InlineName, const T: usize = MAX_TRANSACTIONS> {
    config: SessionConfig<N>,
    state: State,
    caps: Capabilities,
    tls: bool,
    authenticated: bool,
    parser: ReplyParser,
    expect: ExpectQueue,
    txs: [Tx; T],
    next_tx: u32,
    /// Released commands whose replies are due.
    in_flight: u32,
    /// Commands held in the outbox until a reply lets them out.
    held: u32,
    encoder: DataEncoder,
    quit_requested: bool,
    quit_sent: bool,
    /// A transaction end decided by a reply that already produced an event.
    pending_done: Option<(TxId, Ending)>,
    error: Option<SessionError>,
}

impl<N: AsRef<str> + Clone> Session<N> {
    /// A session waiting for the server's greeting, with room for [`MAX_TRANSACTIONS`]
    /// messages in flight.
    pub fn new(config: SessionConfig<N>) -> Self {
        Session::with_transactions(config)
    }
}

impl<N: AsRef<str> + Clone, const T: usize> Session<N, T> {
    /// A session waiting for the server's greeting, with room for `T` messages in flight
    /// (at least one: `T = 0` does not build).
    pub fn with_transactions(config: SessionConfig<N>) -> Self {
        const { assert!(T > 0, "a session needs room for one transaction") };
        // The greeting is awaited first: the queue starts out holding it (its empty slots
        // are greetings already), with no call to push it (28 B of a device build).
        let expect = ExpectQueue {
            len: 1,
            ..ExpectQueue::new()
        };
        Session {
            tls: config.implicit_tls,
            config,
            state: State::Greeting,
            caps: Capabilities::default(),
            authenticated: false,
            parser: ReplyParser::new(),
            expect,
            txs: [Tx::EMPTY; T],
            next_tx: 0,
            in_flight: 1,
            held: 0,
            encoder: DataEncoder::new(),
            quit_requested: false,
            quit_sent: false,
            pending_done: None,
            error: None,
        }
    }

    // ---- getters -------------------------------------------------------------------------

    /// What the server announced in its last EHLO reply (empty after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// True once TLS is in place (implicit, or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True after a successful AUTH.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// True when commands are pipelined (the server offers PIPELINING and it is enabled).
    pub fn pipelining(&self) -> bool {
        self.config.pipelining && self.caps.has(Extension::Pipelining)
    }

    /// True when message data goes out as BDAT chunks. Never without the `chunking` cargo
    /// feature, so a build without it carries no BDAT code.
    pub fn chunking(&self) -> bool {
        cfg!(feature = "chunking")
            && self.config.chunking
            && !self.lmtp()
            && self.caps.has(Extension::Chunking)
            && self.pipelining()
    }

    /// True when the session speaks LMTP. Never without the `lmtp` cargo feature, so a build
    /// without it carries none of LMTP's branches.
    #[cfg(feature = "lmtp")]
    fn lmtp(&self) -> bool {
        self.config.lmtp
    }
    #[cfg(not(feature = "lmtp"))]
    fn lmtp(&self) -> bool {
        false
    }

    /// The terminal error, if the session failed.
    pub fn error(&self) -> Option<SessionError> {
        self.error
    }

    /// Replies due for the commands released so far (and the greeting, before it came). A
    /// driver that has written everything released may take at most this many replies from
    /// its input: a reply beyond them came before its command was sent.
    pub fn replies_due(&self) -> u32 {
        self.in_flight
    }

    /// True when the session is over (QUIT answered, 421, or refused).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True when the session is greeted and idle enough to start TLS or AUTH: no command and
    /// no transaction outstanding.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Ready)
            && self.expect.len == 0
            && self.held == 0
            && !self.quit_requested
    }

    /// Which timeout applies now, or `None` when nothing is awaited.
    pub fn phase(&self) -> Option<Phase> {
        if let Some(e) = self.expect.front() {
            return Some(e.phase());
        }
        // The same search as `sending_slot`'s, through it: 16 B less of a device build.
        self.sending_slot().map(|_| Phase::DataBlock)
    }

    /// The transaction currently taking message data, if any.
    pub fn sending(&self) -> Option<TxId> {
        self.txs
            .iter()
            .find(|t| t.live && t.stage == Stage::Sending)
            .map(|t| t.id)
    }

    /// Transactions whose end of data was written but not answered: if the connection drops
    /// now, these may or may not have been delivered.
    pub fn awaiting_final(&self) -> impl Iterator<Item = TxId> + '_ {
        self.txs
            .iter()
            .filter(|t| t.live && !t.done && t.stage == Stage::AwaitFinal)
            .map(|t| t.id)
    }

    /// Transactions whose end of data is on the wire (written, per `out`) and not answered:
    /// if the connection fails now, each of these may or may not have been delivered. The
    /// others that await a reply were never complete at the server, so they were not.
    pub fn in_doubt<'s, B: Buffer>(&'s self, out: &Outbox<B>) -> impl Iterator<Item = TxId> + 's {
        // Only the latest end of data can be unwritten: the next transaction's DATA (or
        // BDAT) follows it in the output, so no later end of data can be released first.
        let latest_unwritten = if out.end_of_data_unwritten() {
            self.awaiting_final().max()
        } else {
            None
        };
        self.awaiting_final()
            .filter(move |id| Some(*id) != latest_unwritten)
    }

    /// Transactions started and not yet reported done.
    pub fn open_transactions(&self) -> impl Iterator<Item = TxId> + '_ {
        self.txs.iter().filter(|t| t.live && !t.done).map(|t| t.id)
    }

    /// True when [`Session::start_transaction`] would be accepted now: the session is ready,
    /// every earlier transaction has written its end of data, the window has room, and
    /// (without PIPELINING) nothing is in flight.
    pub fn can_start_transaction(&self) -> bool {
        if !matches!(self.state, State::Ready) || self.quit_requested || self.error.is_some() {
            return false;
        }
        let mut live = 0;
        for t in self.txs.iter().filter(|t| t.live) {
            live += 1;
            // Only behind an end of data (or BDAT LAST): a transaction that fails earlier
            // needs a RSET, which must not land in the middle of the next one.
            if !t.last_written {
                return false;
            }
        }
        if live >= T || self.expect.room() < 5 {
            return false;
        }
        // LMTP: one message at a time. The replies after the data are counted by accepted
        // recipients; a server that miscounts would, with the next message behind, have
        // its replies credited across messages. Alone, an extra reply is out of turn and a
        // missing one times out, both errors and neither a misattribution.
        if self.lmtp() && live > 0 {
            return false;
        }
        self.pipelining() || (self.in_flight == 0 && self.held == 0 && live == 0)
    }

    // ---- input ---------------------------------------------------------------------------

    /// Handles at most one reply from the start of `input`. Returns how many bytes it
    /// consumed and the event the reply caused. Call repeatedly on the rest, since input may
    /// hold several pipelined replies, until it returns `(0, None)`: the next reply is
    /// incomplete, so read more and call again with the bytes appended. (A reply can decide
    /// two things; the second event then comes from the next call, with 0 bytes consumed.)
    pub fn handle_input<'a, B: Buffer>(
        &mut self,
        input: &'a [u8],
        out: &mut Outbox<B>,
    ) -> Result<(usize, Option<Event<'a>>), SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some((tx, ending)) = self.pending_done.take() {
            let outcome = match ending {
                Ending::Failed(at) => TxOutcome::Failed { at, reply: None },
                #[cfg(feature = "checks")]
                Ending::Checked => TxOutcome::Checked,
                #[cfg(feature = "lmtp")]
                Ending::PerRecipient { delivered } => TxOutcome::PerRecipient { delivered },
            };
            return Ok((0, Some(Event::TransactionDone { tx, outcome })));
        }
        if input.is_empty() {
            return Ok((0, None));
        }
        if matches!(self.state, State::TlsHandshake) {
            return Err(self.fail(SessionError::InputDuringTlsHandshake));
        }
        let (reply, used) = match self.parser.parse(input) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok((0, None)),
            Err(e) => return Err(self.fail(SessionError::Malformed(e))),
        };
        let decision = match self.on_reply(&reply, out) {
            Ok(d) => d,
            Err(e) => return Err(self.fail(e)),
        };
        if decision == Decision::StartTls {
            // RFC 3207 5: nothing the server sent before the handshake may be acted on later.
            return Ok((input.len(), Some(Event::StartTls)));
        }
        Ok((used, decision.event(reply)))
    }

    /// The server closed the connection. `Ok` when that was expected (after QUIT or 421),
    /// otherwise the error naming what was still awaited.
    pub fn handle_close(&mut self, unconsumed: &[u8]) -> Result<(), SessionError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if matches!(self.state, State::Closed) || self.quit_sent {
            self.state = State::Closed;
            return Ok(());
        }
        if let Err(e) = self.parser.finish(unconsumed) {
            return Err(self.fail(SessionError::Malformed(e)));
        }
        match self.phase() {
            Some(phase) => Err(self.fail(SessionError::ConnectionClosed { phase })),
            None => {
                self.state = State::Closed;
                Ok(())
            }
        }
    }

    fn fail(&mut self, e: SessionError) -> SessionError {
        self.error = Some(e);
        self.state = State::Closed;
        e
    }

    fn on_reply<B: Buffer>(
        &mut self,
        reply: &Reply<'_>,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        let code = reply.code();
        let Some(exp) = self.expect.front() else {
            if code.value() == 421 {
                // An idle server timing out says 421 unprompted (RFC 5321 3.8).
                return Ok(self.closing());
            }
            return Err(SessionError::UnexpectedReply { code });
        };
        // With LMTP a 421 after the data is one recipient's answer (RFC 2033 4.2); the ones
        // still due stay due, so a close that follows leaves them in doubt, not refused.
        if code.value() == 421 && exp != Expect::Quit && !self.lmtp_final(exp) {
            return Ok(self.closing());
        }
        let shared_entry_done = match exp {
            Expect::Rcpt(slot) => self
                .txs
                .get(slot as usize)
                .is_none_or(|t| t.rcpt_replies + 1 >= t.rcpts),
            // Without the chunking feature no BDAT is sent (see `on_bdat`), and the count
            // checked here is left out of the build (34 B of a device's).
            Expect::Bdat(slot) if cfg!(feature = "chunking") => self
                .txs
                .get(slot as usize)
                .is_none_or(|t| t.bdat_pending <= 1),
            #[cfg(feature = "lmtp")]
            Expect::DataEnd(slot) => self.txs.get(slot as usize).is_none_or(|t| t.final_due <= 1),
            _ => true,
        };
        if shared_entry_done {
            self.expect.pop();
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        let decision = self.dispatch(exp, reply, out)?;
        self.pump(out).map_err(SessionError::BufferFull)?;
        Ok(decision)
    }

    /// Whether `exp` awaits one of several LMTP replies to an end of data.
    fn lmtp_final(&self, exp: Expect) -> bool {
        self.lmtp() && matches!(exp, Expect::DataEnd(_))
    }

    fn closing(&mut self) -> Decision {
        self.state = State::Closed;
        self.expect.clear();
        self.in_flight = 0;
        Decision::ServiceClosing
    }

    /// A positive reply must be of the class the command calls for; anything else in the 2xx
    /// or 3xx range is out of place.
    fn check(code: Code, phase: Phase, intermediate: bool) -> Result<bool, SessionError> {
        if code.is_transient() || code.is_permanent() {
            return Ok(false);
        }
        if code.is_intermediate() == intermediate {
            Ok(true)
        } else {
            Err(SessionError::WrongReply { phase, code })
        }
    }

    fn dispatch<B: Buffer>(
        &mut self,
        exp: Expect,
        reply: &Reply<'_>,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        let code = reply.code();
        let phase = exp.phase();
        // The class check, once here rather than in each handler below (inlined, each copy
        // cost a device build 40 B): `ok` is a positive reply of the class the command calls
        // for, the other positive class is an error. Only DATA calls for 3yz; AUTH checks its
        // own (334 only) and QUIT takes any reply.
        let ok = match exp {
            Expect::Auth | Expect::Quit => false,
            _ => Self::check(code, phase, matches!(exp, Expect::Data(_)))?,
        };
        match exp {
            // The greeting and the two hellos share their ends: one call each to send a hello
            // and to refuse the session (written out per arm, 20 B more of a device build).
            Expect::Greeting | Expect::Ehlo | Expect::Helo => {
                if ok && (exp != Expect::Greeting || self.config.greeting_only) {
                    if exp == Expect::Ehlo {
                        self.caps.read_ehlo(reply);
                    } else if exp == Expect::Helo {
                        self.caps = Capabilities::default();
                    }
                    self.state = State::Ready;
                    return Ok(Decision::Ready);
                }
                // A greeting gets EHLO. RFC 5321 3.2: a server that does not know EHLO gets
                // HELO. LMTP has no HELO (RFC 2033 4.1): a refused LHLO refuses the session.
                let ehlo = if ok {
                    true
                } else if exp == Expect::Ehlo && code.is_permanent() && !self.lmtp() {
                    false
                } else {
                    return self.reject(out);
                };
                self.state = if ehlo { State::Ehlo } else { State::Helo };
                self.send_hello(out, ehlo)
                    .map_err(SessionError::BufferFull)?;
                Ok(Decision::Nothing)
            }
            Expect::StartTls => {
                if ok {
                    self.state = State::TlsHandshake;
                    Ok(Decision::StartTls)
                } else {
                    self.state = State::Ready;
                    Ok(Decision::StartTlsRefused)
                }
            }
            Expect::Auth => {
                let State::Auth(sasl) = self.state else {
                    return Err(SessionError::UnexpectedReply { code });
                };
                if code.is_intermediate() {
                    if code.value() != 334 {
                        return Err(SessionError::WrongReply { phase, code });
                    }
                    // Stay in Auth: the driver answers with auth_respond.
                    Ok(Decision::AuthChallenge)
                } else if code.is_positive_completion() {
                    // A 235 from a SCRAM server that has not shown its `v=` is a server that
                    // does not know the password claiming success: no mail goes to it.
                    if !sasl.server_proven() {
                        self.state = State::Untrusted;
                        return Ok(Decision::AuthServerUnverified);
                    }
                    self.state = State::Ready;
                    self.authenticated = true;
                    Ok(Decision::Authenticated)
                } else {
                    self.state = State::Ready;
                    if sasl.server_refuted() {
                        return Ok(Decision::AuthServerUnverified);
                    }
                    Ok(Decision::AuthFailed)
                }
            }
            // Whatever the server says, the transaction it reset is already reported.
            Expect::CleanupRset => Ok(Decision::Nothing),
            Expect::User => Ok(Decision::Reply),
            Expect::Quit => {
                self.state = State::Closed;
                Ok(Decision::Closed)
            }
            Expect::Mail(slot) => self.on_mail(slot, code, ok, out),
            Expect::Rcpt(slot) => self.on_rcpt(slot, code, ok, out),
            Expect::Data(slot) => self.on_data(slot, code, ok, out),
            Expect::DataEnd(slot) | Expect::BdatLast(slot) => self.on_final(slot, code, ok, out),
            Expect::Bdat(slot) => self.on_bdat(slot, code, ok, out),
        }
    }

    fn reject<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<Decision, SessionError> {
        // RFC 5321 3.1: after a refused greeting the client should still say QUIT.
        self.state = State::Closed;
        self.expect.clear();
        self.in_flight = 0;
        self.push(out, Command::Quit, Expect::Quit)
            .map_err(SessionError::BufferFull)?;
        self.quit_sent = true;
        Ok(Decision::Rejected)
    }

    /// The live transaction in `slot`, which the reply answers: one reply fewer is due.
    fn answered(&mut self, slot: u8, code: Code) -> Result<&mut Tx, SessionError> {
        match self.txs.get_mut(slot as usize) {
            Some(t) if t.live => {
                t.due -= 1;
                Ok(t)
            }
            _ => Err(SessionError::UnexpectedReply { code }),
        }
    }

    fn on_mail<B: Buffer>(
        &mut self,
        slot: u8,
        code: Code,
        ok: bool,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        let pipelined = self.pipelining();
        let tx = self.answered(slot, code)?;
        tx.mail_ok = ok;
        #[cfg(feature = "checks")]
        if ok && tx.check {
            let id = tx.id;
            if tx.rcpts == 0 {
                // A sender check: the MAIL reply is the last one.
                tx.done = true;
                tx.stage = Stage::AwaitFinal;
                self.maybe_retire(slot, out)
                    .map_err(SessionError::BufferFull)?;
                self.pending_done = Some((id, Ending::Checked));
            }
            return Ok(Decision::Sender { tx: id });
        }
        if ok {
            return Ok(Decision::Nothing);
        }
        tx.done = true;
        // With BDAT the transaction took data from its start: it takes none now (no chunk
        // may go for a refused MAIL), and it retires (RSET) once its replies are in.
        if tx.stage == Stage::Sending {
            tx.stage = Stage::AwaitFinal;
        }
        let id = tx.id;
        if !pipelined {
            // The RCPT and DATA lines never left: take them back, and the replies they
            // would have had, so the transaction retires below as a pipelined one does
            // (one call for both: 44 B of a device build).
            tx.due = 0;
            self.take_back_held(slot, out);
        }
        self.maybe_retire(slot, out)
            .map_err(SessionError::BufferFull)?;
        Ok(Decision::Failed {
            tx: id,
            at: FailedAt::Mail,
            said: true,
        })
    }

    fn on_rcpt<B: Buffer>(
        &mut self,
        slot: u8,
        code: Code,
        ok: bool,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        let pipelined = self.pipelining();
        let tx = self.answered(slot, code)?;
        let index = tx.rcpt_replies;
        tx.rcpt_replies += 1;
        if ok {
            tx.accepted += 1;
        }
        let last = tx.rcpt_replies == tx.rcpts;
        let (id, done, accepted) = (tx.id, tx.done, tx.accepted);
        let bdat = cfg!(feature = "chunking") && tx.bdat;
        if done {
            self.maybe_retire(slot, out)
                .map_err(SessionError::BufferFull)?;
            return Ok(Decision::Nothing);
        }
        #[cfg(feature = "checks")]
        if last && tx.check {
            // A check ends with its last RCPT reply: nothing was sent after it, and the
            // retiring RSET closes the open MAIL.
            tx.done = true;
            tx.stage = Stage::AwaitFinal;
            self.maybe_retire(slot, out)
                .map_err(SessionError::BufferFull)?;
            let ending = if accepted == 0 {
                Ending::Failed(FailedAt::NoValidRecipients)
            } else {
                Ending::Checked
            };
            self.pending_done = Some((id, ending));
        }
        if last && accepted == 0 && (bdat || !pipelined) {
            // No recipient, and nothing else is due: without PIPELINING, DATA never leaves
            // (take it back; the retiring RSET closes the open MAIL); with BDAT the driver
            // must stop. The transaction's end is the next event, after this recipient's.
            if !pipelined {
                self.take_back_held(slot, out);
            }
            if let Some(t) = self.txs.get_mut(slot as usize) {
                t.done = true;
                t.stage = Stage::AwaitFinal;
                if !pipelined {
                    t.due = 0;
                }
            }
            self.maybe_retire(slot, out)
                .map_err(SessionError::BufferFull)?;
            self.pending_done = Some((id, Ending::Failed(FailedAt::NoValidRecipients)));
        }
        Ok(Decision::Recipient { tx: id, index })
    }

    fn on_data<B: Buffer>(
        &mut self,
        slot: u8,
        code: Code,
        go: bool,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        let lmtp = self.lmtp();
        let tx = self.answered(slot, code)?;
        let (id, done, accepted) = (tx.id, tx.done, tx.accepted);
        if go && (done || accepted == 0) && lmtp {
            // RFC 2033 4.2 requires 503 here. How many replies an end of data would get
            // (none, by the one-per-recipient rule; one, by habit) cannot be known, and a
            // wrong guess shifts every later reply: end the session instead. No later
            // transaction has started (this one's end of data was not written).
            tx.done = true;
            let e = SessionError::WrongReply {
                phase: Phase::DataStart,
                code,
            };
            self.error = Some(e);
            self.state = State::Closed;
            return Ok(Decision::unless(
                done,
                Decision::Failed {
                    tx: id,
                    at: FailedAt::NoValidRecipients,
                    said: false,
                },
            ));
        }
        if go && (done || accepted == 0) {
            // RFC 2920 3.1: DATA accepted with no valid recipient (or after a refused MAIL):
            // send an empty message's terminator and ignore the outcome.
            tx.done = true;
            tx.stage = Stage::AwaitFinal;
            tx.last_written = true;
            tx.due += 1;
            out.write(b".\r\n").map_err(SessionError::BufferFull)?;
            out.release_all();
            self.in_flight += 1;
            self.expect.push(Expect::DataEnd(slot));
            return Ok(Decision::unless(
                done,
                Decision::Failed {
                    tx: id,
                    at: FailedAt::NoValidRecipients,
                    said: false,
                },
            ));
        }
        if go {
            tx.stage = Stage::Sending;
            self.encoder = DataEncoder::new();
            return Ok(Decision::SendData(id));
        }
        tx.done = true;
        self.maybe_retire(slot, out)
            .map_err(SessionError::BufferFull)?;
        if done {
            return Ok(Decision::Nothing);
        }
        let at = if accepted == 0 {
            FailedAt::NoValidRecipients
        } else {
            FailedAt::Data
        };
        Ok(Decision::Failed {
            tx: id,
            at,
            said: true,
        })
    }

    fn on_bdat<B: Buffer>(
        &mut self,
        slot: u8,
        code: Code,
        ok: bool,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        // Without the chunking feature no BDAT is sent, so none is answered: the code that
        // takes the answer is left out of the build.
        if !cfg!(feature = "chunking") {
            return Err(SessionError::UnexpectedReply { code });
        }
        let tx = self.answered(slot, code)?;
        tx.bdat_pending -= 1;
        if ok || tx.done {
            self.maybe_retire(slot, out)
                .map_err(SessionError::BufferFull)?;
            return Ok(Decision::Nothing);
        }
        // RFC 3030 2: after a failed chunk no further chunk may be sent.
        tx.done = true;
        if tx.stage == Stage::Sending {
            tx.stage = Stage::AwaitFinal;
        }
        let id = tx.id;
        self.maybe_retire(slot, out)
            .map_err(SessionError::BufferFull)?;
        Ok(Decision::Failed {
            tx: id,
            at: FailedAt::Message,
            said: true,
        })
    }

    fn on_final<B: Buffer>(
        &mut self,
        slot: u8,
        code: Code,
        ok: bool,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        #[cfg(feature = "lmtp")]
        if self.lmtp() {
            return self.on_lmtp_final(slot, ok, code, out);
        }
        let tx = self.answered(slot, code)?;
        let (id, done) = (tx.id, tx.done);
        // After the reply to the end of data (RFC 5321 4.1.1.4) or to BDAT LAST (RFC 3030 2)
        // the server has closed the transaction, whatever happened before.
        tx.ended = true;
        tx.done = true;
        self.maybe_retire(slot, out)
            .map_err(SessionError::BufferFull)?;
        if done {
            return Ok(Decision::Nothing);
        }
        Ok(if ok {
            Decision::Delivered(id)
        } else {
            Decision::Failed {
                tx: id,
                at: FailedAt::Message,
                said: true,
            }
        })
    }

    /// One of the LMTP replies to an end of data: each is one accepted recipient's result, in
    /// RCPT order; after the last the server has closed the transaction (RFC 2033 4.2).
    #[cfg(feature = "lmtp")]
    fn on_lmtp_final<B: Buffer>(
        &mut self,
        slot: u8,
        ok: bool,
        code: Code,
        out: &mut Outbox<B>,
    ) -> Result<Decision, SessionError> {
        let tx = self.answered(slot, code)?;
        // The replies come in the order the recipients were accepted, one each.
        let accepted_index = tx.accepted.max(1).saturating_sub(tx.final_due);
        tx.final_due = tx.final_due.saturating_sub(1);
        if ok {
            tx.delivered += 1;
        }
        let last = tx.final_due == 0;
        let (id, done, delivered) = (tx.id, tx.done, tx.delivered);
        if last {
            tx.ended = true;
            tx.done = true;
            self.maybe_retire(slot, out)
                .map_err(SessionError::BufferFull)?;
        }
        if done {
            // The terminator of a message no recipient was accepted for: already reported.
            return Ok(Decision::Nothing);
        }
        if last {
            self.pending_done = Some((id, Ending::PerRecipient { delivered }));
        }
        Ok(Decision::Lmtp {
            tx: id,
            accepted_index,
        })
    }

    /// Without PIPELINING, the rest of a transaction waits in the outbox; when the
    /// transaction fails early those lines never leave, and their replies are not awaited.
    fn take_back_held<B: Buffer>(&mut self, slot: u8, out: &mut Outbox<B>) {
        out.drop_held();
        self.held = 0;
        self.expect.remove_slot(slot);
    }

    /// Retires the slot's transaction if nothing more is due for it. Like [`Self::retire`]
    /// and [`Self::push`] it fails only for a full buffer, said as [`BufferFull`]:
    /// that comes back in registers where a `SessionError` goes through memory, which at a
    /// dozen calls cost a device build 50 B.
    fn maybe_retire<B: Buffer>(&mut self, slot: u8, out: &mut Outbox<B>) -> Result<(), BufferFull> {
        match self.txs.get(slot as usize) {
            Some(t) if t.live && t.done && t.due == 0 && t.stage != Stage::Sending => {
                self.retire(slot, out)
            }
            _ => Ok(()),
        }
    }

    /// Frees the slot; a transaction left open on the server gets a RSET so the session stays
    /// usable for the next message.
    fn retire<B: Buffer>(&mut self, slot: u8, out: &mut Outbox<B>) -> Result<(), BufferFull> {
        let Some(t) = self.txs.get_mut(slot as usize) else {
            return Ok(());
        };
        t.live = false;
        if t.mail_ok && !t.ended {
            self.push(out, Command::Rset, Expect::CleanupRset)?;
        }
        Ok(())
    }

    /// Lets held commands out one at a time when not pipelining, and sends a deferred QUIT.
    ///
    /// Out of line, as are [`Self::end_data`] and [`Capabilities::read_ehlo`]: inlined into
    /// every reply's handling they cost a device build 600 B of code and no speed worth it
    /// (`bench/embedded-budget` measures both).
    #[inline(never)]
    fn pump<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), BufferFull> {
        if self.held > 0 && self.in_flight == 0 {
            out.release_line();
            self.held -= 1;
            self.in_flight += 1;
        }
        if self.quit_requested && self.held == 0 && !matches!(self.state, State::Closed) {
            self.quit_requested = false;
            self.push(out, Command::Quit, Expect::Quit)?;
        }
        Ok(())
    }

    fn send_hello<B: Buffer>(&mut self, out: &mut Outbox<B>, ehlo: bool) -> Result<(), BufferFull> {
        // A copy of the name, so the command can borrow it while the session changes.
        let hello = self.config.hello.clone();
        // Both ways into a config take a `Domain`, so the name is valid: checking it again
        // here, with a fallback never used, cost a device build 146 B.
        let name = Domain::already_valid(hello.as_ref());
        #[cfg(feature = "lmtp")]
        if ehlo && self.lmtp() {
            return self.push(out, Command::Lhlo(name), Expect::Ehlo);
        }
        if ehlo {
            self.push(out, Command::Ehlo(name), Expect::Ehlo)
        } else {
            self.push(out, Command::Helo(name), Expect::Helo)
        }
    }

    /// Encodes one command and releases it now or holds it, per RFC 2920: with pipelining,
    /// every command but a hello and STARTTLS (whose replies the session waits for before
    /// sending more) goes out behind unanswered ones. Worked out here from the expectation
    /// rather than passed by each caller (26 B of a device build).
    fn push<B: Buffer>(
        &mut self,
        out: &mut Outbox<B>,
        cmd: Command<'_>,
        exp: Expect,
    ) -> Result<(), BufferFull> {
        let pipelinable = !matches!(exp, Expect::Ehlo | Expect::Helo | Expect::StartTls);
        if self.expect.room() == 0 {
            return Err(BufferFull { needed: 1 });
        }
        cmd.encode(out.buf_mut())?;
        if self.held == 0 && (self.in_flight == 0 || (pipelinable && self.pipelining())) {
            out.release_all();
            self.in_flight += 1;
        } else {
            self.held += 1;
        }
        self.expect.push(exp);
        Ok(())
    }

    // ---- commands ------------------------------------------------------------------------

    /// Sends STARTTLS. Allowed when idle and not yet encrypted.
    pub fn start_tls<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        self.usable()?;
        if !self.is_idle() || self.tls {
            return Err(UseError::NotReady);
        }
        self.push(out, Command::StartTls, Expect::StartTls)?;
        self.state = State::StartTls;
        Ok(())
    }

    /// The driver changed the unconsumed input (dropped a long reply's middle lines to make
    /// room in a fixed buffer): the reply is read again from the start of the next input
    /// given, not from where the last call had got to in the old bytes.
    pub fn input_rewritten(&mut self) {
        self.parser.reset();
    }

    /// The driver finished the TLS handshake after [`Event::StartTls`]: the session forgets
    /// what it learnt in clear text and sends EHLO again (RFC 3207 4.2).
    pub fn tls_established<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        self.usable()?;
        if !matches!(self.state, State::TlsHandshake) {
            return Err(UseError::NotReady);
        }
        self.tls = true;
        self.caps = Capabilities::default();
        self.parser.reset();
        self.send_hello(out, true)?;
        self.state = State::Ehlo;
        Ok(())
    }

    /// Starts AUTH with `mechanism`. Allowed when idle. The credentials are used now and on
    /// each [`Session::auth_respond`]; the session keeps no copy.
    pub fn authenticate<B: Buffer>(
        &mut self,
        mechanism: Mechanism,
        creds: &Credentials<'_>,
        out: &mut Outbox<B>,
    ) -> Result<(), UseError> {
        self.usable()?;
        if !self.is_idle() {
            return Err(UseError::NotReady);
        }
        let mut sasl = Sasl::new(mechanism, creds)?;
        if self.expect.room() == 0 {
            return Err(UseError::Busy);
        }
        sasl.start(creds, out.buf_mut())?;
        out.release_all();
        self.in_flight += 1;
        self.expect.push(Expect::Auth);
        self.state = State::Auth(sasl);
        Ok(())
    }

    /// Answers the challenge of an [`Event::AuthChallenge`].
    pub fn auth_respond<B: Buffer>(
        &mut self,
        creds: &Credentials<'_>,
        challenge: &[u8],
        out: &mut Outbox<B>,
    ) -> Result<crate::sasl::Response, UseError> {
        self.usable()?;
        let State::Auth(mut sasl) = self.state else {
            return Err(UseError::NotReady);
        };
        if self.expect.len != 0 {
            return Err(UseError::NotReady);
        }
        let r = sasl.respond(creds, challenge, out.buf_mut())?;
        out.release_all();
        self.in_flight += 1;
        self.expect.push(Expect::Auth);
        self.state = State::Auth(sasl);
        Ok(r)
    }

    /// Cancels an AUTH exchange at a challenge (`*`, RFC 4954 4); the server answers 501.
    pub fn auth_cancel<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        self.usable()?;
        if !matches!(self.state, State::Auth(_)) || self.expect.len != 0 {
            return Err(UseError::NotReady);
        }
        out.write(b"*\r\n")?;
        out.release_all();
        self.in_flight += 1;
        self.expect.push(Expect::Auth);
        Ok(())
    }

    /// Starts a transaction: MAIL, every RCPT and DATA (or MAIL and RCPT with BDAT) are
    /// encoded now; see [`Session::can_start_transaction`] for when this is allowed.
    pub fn start_transaction<S: AsRef<str>, B: Buffer>(
        &mut self,
        env: &Envelope<'_, S>,
        out: &mut Outbox<B>,
    ) -> Result<TxId, UseError> {
        self.begin(env, out, false)
    }

    /// Checks an envelope without sending a message: MAIL and every RCPT (none: the sender
    /// alone), never DATA or BDAT. Each reply comes as [`Event::SenderResult`] (MAIL accepted)
    /// or [`Event::RecipientResult`]; the transaction ends with [`Event::TransactionDone`]
    /// ([`TxOutcome::Checked`], or failed at MAIL or for want of a valid recipient) and the
    /// session resets it with RSET, so it stays usable and the server holds nothing open.
    /// Only with the `checks` cargo feature.
    #[cfg(feature = "checks")]
    pub fn check_envelope<S: AsRef<str>, B: Buffer>(
        &mut self,
        env: &Envelope<'_, S>,
        out: &mut Outbox<B>,
    ) -> Result<TxId, UseError> {
        self.begin(env, out, true)
    }

    fn begin<S: AsRef<str>, B: Buffer>(
        &mut self,
        env: &Envelope<'_, S>,
        out: &mut Outbox<B>,
        check: bool,
    ) -> Result<TxId, UseError> {
        self.usable()?;
        if !matches!(self.state, State::Ready) {
            return Err(UseError::NotReady);
        }
        if !self.can_start_transaction() {
            return Err(UseError::Busy);
        }
        if env.to.is_empty() && !check {
            return Err(UseError::NoRecipients);
        }
        env.mail.validate().map_err(UseError::Invalid)?;
        let slot = self
            .txs
            .iter()
            .position(|t| !t.live)
            .ok_or(UseError::Busy)? as u8;
        let bdat = self.chunking() && !check;
        let from = match env.from {
            crate::command::ReversePath::Null => crate::command::ReversePath::Null,
            crate::command::ReversePath::Address(a) => {
                crate::command::ReversePath::Address(a.as_ref())
            }
        };
        let start = out.len();
        let lines = env.to.len() as u32 + if bdat || check { 1 } else { 2 };
        let written = Command::Mail(&from, &env.mail)
            .encode(out.buf_mut())
            .and_then(|_| {
                for to in env.to {
                    Command::Rcpt(to.as_ref(), &env.rcpt).encode(out.buf_mut())?;
                }
                if !bdat && !check {
                    Command::Data.encode(out.buf_mut())?;
                }
                Ok(())
            });
        if let Err(e) = written {
            out.rollback(start);
            return Err(UseError::BufferFull(e));
        }
        if self.pipelining() {
            out.release_all();
            self.in_flight += lines;
        } else {
            out.release_line();
            self.in_flight += 1;
            self.held += lines - 1;
        }
        self.expect.push(Expect::Mail(slot));
        if !env.to.is_empty() {
            self.expect.push(Expect::Rcpt(slot));
        }
        if !bdat && !check {
            self.expect.push(Expect::Data(slot));
        }
        let id = TxId(self.next_tx);
        self.next_tx = self.next_tx.wrapping_add(1);
        self.txs[slot as usize] = Tx {
            id,
            live: true,
            stage: if bdat {
                Stage::Sending
            } else {
                Stage::Envelope
            },
            bdat,
            rcpts: env.to.len() as u32,
            due: lines,
            #[cfg(feature = "checks")]
            check,
            ..Tx::EMPTY
        };
        if bdat {
            self.encoder = DataEncoder::bdat();
        }
        Ok(id)
    }

    /// The slot taking message data. An `Option`, which comes back in registers where a
    /// `Result` with a [`UseError`] goes through memory (76 B of a device build); the callers
    /// turn it into [`UseError::NoDataExpected`].
    fn sending_slot(&self) -> Option<u8> {
        self.txs
            .iter()
            .position(|t| t.live && t.stage == Stage::Sending)
            .map(|i| i as u8)
    }

    /// Writes a piece of the message (any size, split anywhere). With DATA it is dot-stuffed
    /// and CRLF-normalised; with BDAT it becomes one chunk. Atomic: on `BufferFull` nothing
    /// was written.
    pub fn send_data<B: Buffer>(
        &mut self,
        chunk: &[u8],
        out: &mut Outbox<B>,
    ) -> Result<(), UseError> {
        self.usable()?;
        let slot = self.sending_slot().ok_or(UseError::NoDataExpected)?;
        let tx = self.txs[slot as usize];
        if !cfg!(feature = "chunking") || !tx.bdat {
            self.encoder.encode(chunk, out.buf_mut())?;
            out.release_all();
            return Ok(());
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let n = self.encoder.encoded_len(chunk);
        let start = out.len();
        let mut header = [0u8; 40];
        let mut room = crate::buf::FixedBuf::new(&mut header);
        Command::Bdat {
            size: n as u64,
            last: false,
        }
        .encode(&mut room)?;
        out.buf_mut().reserve_check(room.len() + n)?;
        if self.expect.room() == 0 {
            return Err(UseError::Busy);
        }
        if let Err(e) = out
            .write(room.as_bytes())
            .and_then(|_| self.encoder.encode(chunk, out.buf_mut()))
        {
            out.rollback(start);
            return Err(e.into());
        }
        out.release_all();
        self.in_flight += 1;
        if self.expect.back() != Some(Expect::Bdat(slot)) {
            self.expect.push(Expect::Bdat(slot));
        }
        let t = &mut self.txs[slot as usize];
        t.bdat_pending += 1;
        t.due += 1;
        Ok(())
    }

    /// Ends the message: the terminator after DATA, or the `BDAT n LAST` chunk.
    #[inline(never)]
    pub fn end_data<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        self.usable()?;
        let slot = self.sending_slot().ok_or(UseError::NoDataExpected)?;
        if self.expect.room() == 0 {
            return Err(UseError::Busy);
        }
        let bdat = cfg!(feature = "chunking") && self.txs[slot as usize].bdat;
        let start = out.len();
        let written = if bdat {
            let tail = self.encoder.finish_len();
            Command::Bdat {
                size: tail as u64,
                last: true,
            }
            .encode(out.buf_mut())
            .and_then(|_| self.encoder.finish(out.buf_mut()))
        } else {
            self.encoder.finish(out.buf_mut())
        };
        if let Err(e) = written {
            out.rollback(start);
            return Err(e.into());
        }
        out.release_all();
        out.mark_end_of_data();
        let lmtp = self.lmtp();
        let t = &mut self.txs[slot as usize];
        // LMTP answers once per accepted recipient (RFC 2033 4.2); the 354 came after every
        // RCPT reply, so the count is known.
        let replies = if lmtp { t.accepted.max(1) } else { 1 };
        #[cfg(feature = "lmtp")]
        {
            t.final_due = replies;
        }
        t.stage = Stage::AwaitFinal;
        t.last_written = true;
        t.due += replies;
        self.in_flight += replies;
        self.expect.push(if bdat {
            Expect::BdatLast(slot)
        } else {
            Expect::DataEnd(slot)
        });
        Ok(())
    }

    /// Sends NOOP; the reply comes as [`Event::Reply`].
    pub fn noop<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        self.user_command(Command::Noop, out)
    }

    /// Sends RSET; the reply comes as [`Event::Reply`].
    pub fn rset<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        self.user_command(Command::Rset, out)
    }

    /// Sends VRFY; the reply comes as [`Event::Reply`].
    pub fn vrfy<B: Buffer>(
        &mut self,
        what: crate::command::Address<&str>,
        out: &mut Outbox<B>,
    ) -> Result<(), UseError> {
        self.user_command(Command::Vrfy(what), out)
    }

    /// Sends HELP; the reply comes as [`Event::Reply`].
    pub fn help<B: Buffer>(
        &mut self,
        topic: Option<crate::command::Address<&str>>,
        out: &mut Outbox<B>,
    ) -> Result<(), UseError> {
        self.user_command(Command::Help(topic), out)
    }

    fn user_command<B: Buffer>(
        &mut self,
        cmd: Command<'_>,
        out: &mut Outbox<B>,
    ) -> Result<(), UseError> {
        self.usable()?;
        if !matches!(self.state, State::Ready)
            || self.held != 0
            || self.quit_requested
            || self.quit_sent
            || self.txs.iter().any(|t| t.live)
        {
            return Err(UseError::NotReady);
        }
        self.push(out, cmd, Expect::User)?;
        Ok(())
    }

    /// Sends QUIT after whatever is queued. Harmless when already sent or closed.
    pub fn quit<B: Buffer>(&mut self, out: &mut Outbox<B>) -> Result<(), UseError> {
        if self.quit_sent || self.quit_requested || matches!(self.state, State::Closed) {
            return Ok(());
        }
        if matches!(self.state, State::TlsHandshake) {
            return Err(UseError::NotReady);
        }
        self.quit_sent = true;
        if self.held > 0 {
            self.quit_requested = true;
            return Ok(());
        }
        self.push(out, Command::Quit, Expect::Quit)?;
        Ok(())
    }

    fn usable(&self) -> Result<(), UseError> {
        match self.error {
            Some(e) => Err(UseError::Failed(e)),
            None => Ok(()),
        }
    }
}
