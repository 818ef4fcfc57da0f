//! The connection engine: every decision of an SMTP client connection, without I/O and
//! without a clock.
//!
//! [`Engine`] owns the protocol session ([`postline_proto::Session`]), its buffers and the
//! client's policy: which TLS and AUTH steps to take, the envelope parameters a server's
//! capabilities allow, per-recipient bookkeeping, the transcript with credentials redacted,
//! the RFC 5321 timers, and whether a message whose connection failed is *in doubt* (its end
//! of data was on the wire and no final reply came). A driver owns the stream and the clock;
//! it only moves bytes and reports what happened, so the blocking client, the tokio client
//! and any caller's own driver (an embedded stack, a test pipe) behave the same.
//!
//! # Driving an engine
//!
//! Inputs are `handle_*`, outputs are [`Engine::poll_io`] (what to do now) and
//! [`Engine::poll_timeout`] (when to give up waiting); time is always an argument. A driver
//! loop:
//!
//! ```no_run
//! # use std::io::{Read, Write};
//! # use std::time::Instant;
//! use postline::{Config, Engine, Envelope, Io, Tls};
//!
//! # fn demo(mut stream: std::net::TcpStream) -> Result<(), postline::Error> {
//! let config = Config::relay("mail.example").tls(Tls::None).hello_name("client.example");
//! let mut engine = Engine::new(config, Instant::now())?;
//! let mut buf = [0u8; 4096];
//! let mut body: &[u8] = b"Subject: hi\r\n\r\nHello\r\n";
//! let mut sent = false;
//! loop {
//!     match engine.poll_io(Instant::now())? {
//!         Io::Transmit { bytes, .. } => match stream.write(bytes) {
//!             Ok(n) => engine.handle_written(n, Instant::now()),
//!             Err(e) => engine.handle_io_error(e, Instant::now()),
//!         },
//!         Io::ReceiveNow => engine.handle_nothing_pending(), // or a non-blocking read
//!         Io::Receive { .. } => {
//!             // A real driver bounds the read by the deadline and then calls
//!             // engine.handle_timeout(now).
//!             match stream.read(&mut buf) {
//!                 Ok(0) => engine.handle_eof(Instant::now()),
//!                 Ok(n) => engine.handle_input(&buf[..n], Instant::now()),
//!                 Err(e) => engine.handle_io_error(e, Instant::now()),
//!             }
//!         }
//!         Io::NeedBody(_) => {
//!             engine.handle_body(body)?;
//!             body = &[];
//!             engine.handle_body_end()?;
//!         }
//!         Io::UpgradeTls { .. } => unreachable!("Tls::None"),
//!         Io::Done if !sent => {
//!             let env = Envelope::new("me@client.example", ["you@mail.example"])?;
//!             engine.send(&env, Instant::now())?;
//!             sent = true;
//!         }
//!         Io::Done => break,
//!     }
//! }
//! let (_, outcome) = engine.take_finished().expect("the transaction ended");
//! println!("{:?}", outcome?.reply);
//! # Ok(()) }
//! ```
//!
//! A driver that cannot read without waiting may answer [`Io::ReceiveNow`] with
//! [`Engine::handle_nothing_pending`]; it then loses only the early warning of a server that
//! closed, never correctness. A driver hands over input only when asked (`Receive`,
//! `ReceiveNow`): a reply that comes while commands are unwritten counts as out of turn.
//!
//! [`Io::UpgradeTls`] (implicit TLS at the start, or STARTTLS accepted): run a TLS client
//! handshake on the stream for [`Config::server_name`], with [`Config::rustls`] after
//! [`Config::prepare_tls`] (or any rustls configuration of yours), by the deadline; then pass
//! [`crate::TlsInfo::from_client_connection`] (which carries the channel binding that
//! SCRAM-SHA-256-PLUS needs) to [`Engine::handle_tls_established`], and carry every later
//! byte through TLS. Bytes read before the handshake are discarded by the engine
//! (RFC 3207 5).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use postline_proto::command::Envelope as ProtoEnvelope;
use postline_proto::ehlo::{Capabilities, Extension};
use postline_proto::negotiate::{negotiate, MessageOptions};
use postline_proto::reply::Unprompted;
use postline_proto::sasl::SaslError;
use postline_proto::session::{
    Event, Outbox, Phase, Session, SessionConfig, SessionError, TxId, TxOutcome, UseError,
};
use postline_proto::Domain;

use crate::auth::{choose_mechanism, redact, Exchange};
use crate::config::{Config, Direction, StopAfter, Tls};
use crate::envelope::Envelope;
use crate::error::{ConfigError, Error};
use crate::outcome::{Outcome, Recipient};
use crate::reply::ServerReply;
use crate::tls::TlsInfo;

/// How long a refused session waits for the answer to its QUIT (RFC 5321 3.1: a server that
/// greets with 554 waits for QUIT).
pub const QUIT_AFTER_REFUSAL: Duration = Duration::from_secs(2);
/// At most this many AUTH challenges in one exchange (the core's
/// [`MAX_ROUNDS`](postline_proto::sasl::MAX_ROUNDS)).
pub const MAX_AUTH_ROUNDS: u32 = postline_proto::sasl::MAX_ROUNDS;

/// What the driver must do now; see [`Engine::poll_io`]. Deliberately exhaustive: a driver
/// must do each of these, and a new one would break drivers anyway.
#[derive(Debug, PartialEq, Eq)]
pub enum Io<'a> {
    /// Write these bytes (all, or a prefix) by `deadline`, then call
    /// [`Engine::handle_written`]; at the deadline, [`Engine::handle_timeout`].
    Transmit {
        /// What to write.
        bytes: &'a [u8],
        /// When to give up ([`Engine::poll_timeout`]); `None`: no limit.
        deadline: Option<Instant>,
    },
    /// Wait for the server until `deadline`: pass what comes to [`Engine::handle_input`], a
    /// close to [`Engine::handle_eof`], the deadline to [`Engine::handle_timeout`].
    Receive {
        /// When to give up ([`Engine::poll_timeout`]); `None`: no limit.
        deadline: Option<Instant>,
    },
    /// Read what the server already sent, *without waiting*: [`Engine::handle_input`], or
    /// [`Engine::handle_eof`], or [`Engine::handle_nothing_pending`] when nothing is there.
    /// Asked before the first command on an idle connection (a server may have said 421 or
    /// closed meanwhile) and before an end of data is written (a server that is gone by then
    /// certainly did not take the message).
    ReceiveNow,
    /// Start TLS on the stream now (implicit TLS, or STARTTLS was accepted), done by
    /// `deadline`; then [`Engine::handle_tls_established`] or [`Engine::handle_tls_failed`].
    UpgradeTls {
        /// When to give up ([`Engine::poll_timeout`]); `None`: no limit.
        deadline: Option<Instant>,
    },
    /// The transaction wants its message: [`Engine::handle_body`] with each piece, then
    /// [`Engine::handle_body_end`].
    NeedBody(TxId),
    /// Nothing to do: the connection is set up and every operation asked for is finished.
    Done,
}

/// Which wait the current deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    None,
    Write(Phase),
    Tls,
    Reply(Phase),
}

#[derive(Debug, Default)]
struct Setup {
    tls_tried: bool,
    auth_tried: bool,
    established: bool,
    /// Set up only as far as [`Config::stop_after`] says: no message may be sent.
    stopped: bool,
}

#[derive(Debug)]
struct TxTrack {
    id: TxId,
    recipients: Vec<Recipient>,
    body_octets: u64,
    /// A check's MAIL reply.
    mail_reply: Option<ServerReply>,
}

/// One SMTP client connection's protocol state and policy; see the module documentation.
pub struct Engine {
    session: Session,
    out: Outbox<Vec<u8>>,
    input: Vec<u8>,
    config: Config,
    setup: Setup,
    tls_pending: bool,
    tls_info: Option<TlsInfo>,
    txs: Vec<TxTrack>,
    finished: VecDeque<(TxId, Result<Outcome, Error>)>,
    last_reply: Option<ServerReply>,
    greeting: Option<ServerReply>,
    ehlo: Option<ServerReply>,
    /// The reply that accepted AUTH (235).
    auth_reply: Option<ServerReply>,
    transcript: bool,
    /// Replies the server may have sent by now: those due for commands already written,
    /// set whenever a write empties the output and counted down per reply.
    budget: u32,
    /// The input began, while no reply was due, with bytes that may start a 421: the reply
    /// they begin is looked at once three bytes are in, whatever was sent meanwhile.
    unsure: bool,
    auth_rounds: u32,
    /// The AUTH exchange under way: mechanism, SCRAM nonce and channel binding.
    auth_exchange: Option<Exchange>,
    /// The client cancelled the AUTH exchange because a challenge made no sense.
    auth_cancelled: bool,
    /// A read without waiting is due before the next write (idle check).
    check_idle: bool,
    /// The pending end of data was preceded by a read without waiting.
    probed: bool,
    /// Complete replies read since the last transaction began on an idle connection (see
    /// [`Engine::replies_since_idle`]).
    replies_since_idle: u32,
    /// The wait the deadline belongs to, and when it began.
    wait: Wait,
    since: Instant,
    /// The cap on the operation in hand (connect, send, QUIT), when one applies.
    op_deadline: Option<Instant>,
    op_cap: Duration,
    /// The server refused the session; reported once its QUIT is answered or given up.
    refused: Option<Error>,
    /// The terminal error: every later call returns it again.
    failed: Option<Error>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("phase", &self.session.phase())
            .field("tls", &self.session.is_tls())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// An LMTP transaction's result from its recipients' own replies to the end of data: an
/// outcome when the message reached at least one mailbox (its reply is the first such
/// recipient's), otherwise a refusal whose reply is a transient one when there is one, so
/// that a caller reading only the error still tries again.
pub(crate) fn per_recipient(recipients: Vec<Recipient>) -> Result<Outcome, Error> {
    let delivered = recipients
        .iter()
        .find(|r| r.delivered())
        .and_then(|r| r.data_reply.clone());
    if let Some(reply) = delivered {
        return Ok(Outcome { recipients, reply });
    }
    // A recipient deferred at RCPT or after the data makes the message worth another try.
    let transient = recipients
        .iter()
        .filter_map(|r| r.deciding_reply())
        .find(|r| !r.is_permanent());
    let reply = transient
        .or_else(|| recipients.iter().find_map(|r| r.data_reply.as_ref()))
        .cloned();
    Err(Error::MessageRejected {
        at: postline_proto::session::FailedAt::Message,
        reply,
        recipients,
    })
}

fn use_error(e: UseError) -> Error {
    match e {
        UseError::Failed(e) => Error::Protocol(e),
        UseError::Invalid(source) => Error::Address {
            address: String::new(),
            source,
        },
        UseError::NoRecipients => Error::NoRecipients,
        UseError::Sasl(e @ (SaslError::WrongCredentials | SaslError::InvalidCredential)) => {
            Error::Config(ConfigError::Credentials(e))
        }
        _ => Error::NotReady,
    }
}

impl Engine {
    /// An engine for a connection that was established at `now`: it waits for the greeting
    /// (or, with implicit TLS, asks for the handshake first).
    pub fn new(config: Config, now: Instant) -> Result<Self, Error> {
        crate::tls::check_require_tls(&config)?;
        let hello = config.hello_or_default();
        let domain = Domain::new(hello.as_str()).map_err(|source| {
            Error::Config(ConfigError::HelloName {
                name: hello.clone(),
                source,
            })
        })?;
        let mut sc = SessionConfig::new(&domain);
        sc.pipelining = config.pipelining;
        sc.chunking = config.chunking;
        sc.implicit_tls = config.tls == Tls::Implicit;
        sc.greeting_only = config.stop_after == Some(StopAfter::Banner);
        sc.lmtp = config.protocol == crate::config::Protocol::Lmtp;
        let transcript = config.transcript.is_some()
            || tracing::enabled!(target: "postline::transcript", tracing::Level::DEBUG);
        let config_tls_implicit = config.tls == Tls::Implicit;
        let mut engine = Engine {
            session: Session::new(sc),
            out: Outbox::new(Vec::with_capacity(4096)),
            input: Vec::with_capacity(4096),
            tls_pending: config.tls == Tls::Implicit,
            config,
            setup: Setup::default(),
            tls_info: None,
            txs: Vec::new(),
            finished: VecDeque::new(),
            last_reply: None,
            greeting: None,
            ehlo: None,
            auth_reply: None,
            transcript,
            // The greeting is due before anything is written.
            budget: 1,
            unsure: false,
            auth_rounds: 0,
            auth_exchange: None,
            auth_cancelled: false,
            check_idle: false,
            probed: false,
            replies_since_idle: 0,
            // The greeting's (or implicit TLS's) timer runs from the connection.
            wait: if config_tls_implicit {
                Wait::Tls
            } else {
                Wait::Reply(Phase::Greeting)
            },
            since: now,
            op_deadline: None,
            op_cap: Duration::ZERO,
            refused: None,
            failed: None,
        };
        engine.start_operation(now);
        Ok(engine)
    }

    // ---- inputs ----------------------------------------------------------------------

    /// Bytes from the server (any amount: half a reply, several replies), read because
    /// [`Io::Receive`] or [`Io::ReceiveNow`] asked: a reply that arrives while commands are
    /// still unwritten is taken as sent out of turn, so a driver reads only when asked.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        // The reply timer restarts when a reply completes (in poll_io), not per byte: a
        // server trickling a reply still times out.
        let _ = now;
        if self.failed.is_none() {
            self.input.extend_from_slice(bytes);
        }
        self.check_idle = false;
    }

    /// `n` bytes of the last [`Io::Transmit`] were written. `n` must count only bytes handed
    /// to the network (a stream that buffers must say so on flush, not before), or a failure
    /// after an end of data is reported as "not sent" where "in doubt" was true. A write of
    /// nothing is a stream that has ended.
    pub fn handle_written(&mut self, n: usize, now: Instant) {
        if n == 0 && !self.out.transmit().is_empty() {
            self.handle_io_error(io::ErrorKind::WriteZero.into(), now);
            return;
        }
        self.out.advance(n);
        if self.out.transmit().is_empty() {
            // Every released command is on the wire: this many replies may come now.
            self.budget = self.session.replies_due();
        }
        if n > 0 {
            // Progress restarts the write timer; the reply timer starts once the last byte
            // of a command is out.
            self.wait = Wait::None;
            self.since = now;
        }
    }

    /// A read without waiting ([`Io::ReceiveNow`]) found nothing.
    pub fn handle_nothing_pending(&mut self) {
        self.check_idle = false;
        if self.out.end_of_data_unwritten() {
            self.probed = true;
        }
    }

    /// The server closed the connection (end of stream).
    pub fn handle_eof(&mut self, now: Instant) {
        let _ = now;
        if self.failed.is_some() {
            return;
        }
        let unwritten_end = self.out.end_of_data_unwritten();
        match self.session.handle_close(&self.input) {
            Ok(()) => {
                self.input.clear();
                // A close before the answer to a refused session's QUIT, or any time it is
                // expected: the session is over.
                if let Some(e) = self.refused.take() {
                    self.fail(e);
                }
            }
            Err(SessionError::ConnectionClosed { phase }) => {
                // Still writing the message when the server went: say so, not "end of data".
                let phase = if unwritten_end && phase == Phase::DataEnd {
                    Phase::DataBlock
                } else {
                    phase
                };
                self.fail(Error::ConnectionLost { phase });
            }
            Err(e) => self.fail(Error::Protocol(e)),
        }
    }

    /// The stream failed. A reset or a broken pipe means the server is gone, as at end of
    /// stream; a timeout is [`Engine::handle_timeout`]'s business.
    pub fn handle_io_error(&mut self, e: io::Error, now: Instant) {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WriteZero
            | io::ErrorKind::UnexpectedEof => self.handle_eof(now),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.handle_timeout(now),
            io::ErrorKind::Interrupted => {}
            _ => {
                // A TLS alert after the handshake (a client certificate refused under TLS
                // 1.3 arrives with the first read) is a TLS failure, told as one.
                let tls = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                let err = match tls {
                    Some(r) => Error::Tls {
                        host: self.config.server_name().to_string(),
                        failure: crate::TlsFailure::from_rustls(r),
                    },
                    None => Error::Io(e.into()),
                };
                self.fail(err)
            }
        }
    }

    /// The TLS handshake asked for by [`Io::UpgradeTls`] failed.
    pub fn handle_tls_failed(&mut self, e: Error) {
        self.fail(e);
    }

    /// The TLS handshake asked for by [`Io::UpgradeTls`] succeeded.
    pub fn handle_tls_established(&mut self, info: TlsInfo, now: Instant) {
        if self.failed.is_some() || !self.tls_pending {
            return;
        }
        self.tls_pending = false;
        self.tls_info = Some(info);
        self.wait = Wait::None;
        self.since = now;
        if self.greeting.is_none() {
            // Implicit TLS: the greeting comes next, over TLS.
            return;
        }
        // RFC 3207 5: nothing received before the handshake may be acted on.
        self.input.clear();
        if let Err(e) = self.command(false, |s, out| s.tls_established(out)) {
            self.fail(e);
        }
    }

    /// The time is `now`: if the deadline of [`Engine::poll_timeout`] has passed, the wait
    /// failed. Calling it early, or twice, changes nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed.is_some() {
            return;
        }
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let phase = match self.wait {
            Wait::Write(p) | Wait::Reply(p) => p,
            Wait::Tls => Phase::Command,
            Wait::None => self.session.phase().unwrap_or(Phase::Command),
        };
        let capped = self.op_deadline.is_some_and(|d| d <= deadline);
        let after = if capped {
            self.op_cap
        } else {
            self.wait_timeout()
        };
        if let Some(e) = self.refused.take() {
            // Only the courtesy QUIT of a refused session timed out.
            self.fail(e);
            return;
        }
        self.fail(Error::Timeout { phase, after });
    }

    /// A piece of the message for the transaction of [`Io::NeedBody`].
    pub fn handle_body(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.usable()?;
        let sending = self.session.sending();
        if let Some(t) = self.txs.iter_mut().find(|t| Some(t.id) == sending) {
            t.body_octets += chunk.len() as u64;
        }
        self.session
            .send_data(chunk, &mut self.out)
            .map_err(use_error)
    }

    /// The end of the message of [`Io::NeedBody`].
    pub fn handle_body_end(&mut self) -> Result<(), Error> {
        self.usable()?;
        if self.transcript {
            let sending = self.session.sending();
            let n = self
                .txs
                .iter()
                .find(|t| Some(t.id) == sending)
                .map_or(0, |t| t.body_octets);
            self.emit(Direction::Client, &format!("<{n} octets of message data>"));
        }
        let before = self.out.buffer().len();
        self.session.end_data(&mut self.out).map_err(use_error)?;
        self.probed = false;
        if self.transcript {
            let tail = &self.out.buffer()[before..];
            if tail.ends_with(b"\r\n.\r\n") || tail == b".\r\n" {
                self.emit(Direction::Client, ".");
            }
        }
        Ok(())
    }

    /// The message cannot be completed (its source failed): the connection is given up
    /// without an end of data, so the server discards what it got.
    pub fn abort(&mut self, e: Error) {
        self.fail(e);
    }

    // ---- operations ------------------------------------------------------------------

    /// Starts a transaction for `env`, after checking it against the server's capabilities
    /// (nothing is sent when this fails). Its message is asked for with [`Io::NeedBody`];
    /// its result comes from [`Engine::take_finished`].
    pub fn send(&mut self, env: &Envelope, now: Instant) -> Result<TxId, Error> {
        self.begin(env, now, false)
    }

    /// Checks an envelope without sending a message (swaks' `--quit-after rcpt`, or `mail`
    /// with no recipient): MAIL and each RCPT, never DATA; the session then resets the
    /// transaction with RSET. The result comes from [`Engine::take_finished`] as for a
    /// message: `Ok` when the sender and at least one recipient (or, with none, the sender)
    /// were accepted, with every recipient's reply and the MAIL reply as
    /// [`Outcome::reply`]; otherwise [`Error::MessageRejected`], as a send would say.
    pub fn check(&mut self, env: &Envelope, now: Instant) -> Result<TxId, Error> {
        self.begin(env, now, true)
    }

    fn begin(&mut self, env: &Envelope, now: Instant, check: bool) -> Result<TxId, Error> {
        self.usable()?;
        if !self.can_send() {
            return Err(Error::NotReady);
        }
        let require_tls = env.require_tls || self.config.require_tls;
        if require_tls && !self.config.verifies_certificates() {
            // RFC 8689 4.1: only over TLS whose certificate was checked.
            return Err(Error::Config(ConfigError::TlsSetup(
                "REQUIRETLS needs a verified certificate, and verification is off".into(),
            )));
        }
        let opts = MessageOptions {
            size: env.size,
            body: env.body,
            smtputf8: env.needs_smtputf8(),
            ret: env.ret,
            envid: env.envid.as_deref(),
            notify: env.notify,
            orcpt: env.orcpt,
            require_tls,
        };
        let n = negotiate(&opts, self.session.capabilities(), self.session.is_tls())
            .map_err(Error::Incompatible)?;
        if n.dsn_dropped {
            tracing::warn!("server does not offer DSN; DSN parameters not sent");
        }
        let proto = ProtoEnvelope {
            from: &env.from,
            to: &env.to,
            mail: n.mail,
            rcpt: n.rcpt,
        };
        if self.is_idle() {
            self.start_operation(now);
            self.check_idle = true;
            self.replies_since_idle = 0;
        }
        let id = self.command(false, |s, out| {
            if check {
                s.check_envelope(&proto, out)
            } else {
                s.start_transaction(&proto, out)
            }
        })?;
        self.txs.push(TxTrack {
            id,
            recipients: env
                .to
                .iter()
                .map(|a| Recipient {
                    address: a.as_str().to_string(),
                    accepted: false,
                    reply: None,
                    data_reply: None,
                })
                .collect(),
            body_octets: 0,
            mail_reply: None,
        });
        Ok(id)
    }

    /// NOOP; its reply comes from [`Engine::take_reply`].
    pub fn noop(&mut self, now: Instant) -> Result<(), Error> {
        self.usable()?;
        if !self.is_idle() {
            return Err(Error::NotReady);
        }
        self.start_operation(now);
        self.check_idle = true;
        self.last_reply = None;
        self.command(false, |s, out| s.noop(out))
    }

    /// QUIT, waiting for its answer at most `cap` (the command timeout when `None`).
    pub fn quit(&mut self, now: Instant, cap: Option<Duration>) -> Result<(), Error> {
        self.usable()?;
        self.command(false, |s, out| s.quit(out))?;
        let mut cap = cap.unwrap_or(self.config.timeouts.command);
        if let Some(attempt) = self.config.timeouts.attempt {
            cap = cap.min(attempt);
        }
        self.cap_operation(now, cap);
        Ok(())
    }

    // ---- outputs ---------------------------------------------------------------------

    /// What the driver must do now (`now` starts the timer of a wait that begins here).
    /// `Err` is either an error that leaves the session usable (a refused message is not
    /// one: it comes through [`Engine::take_finished`]) or the terminal error, which every
    /// later call repeats.
    pub fn poll_io(&mut self, now: Instant) -> Result<Io<'_>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Err(e) = self.process_input(now) {
            if e.leaves_session_usable() {
                return Err(e);
            }
            self.fail(e);
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let wait = if !self.out.transmit().is_empty() {
            if self.check_idle || (self.out.end_of_data_unwritten() && !self.probed) {
                return Ok(Io::ReceiveNow);
            }
            Wait::Write(
                if self.session.sending().is_some() || self.out.end_of_data_unwritten() {
                    Phase::DataBlock
                } else {
                    self.session.phase().unwrap_or(Phase::Command)
                },
            )
        } else if self.tls_pending {
            Wait::Tls
        } else if let Some(id) = self.session.sending() {
            if self.txs.iter().any(|t| t.id == id) {
                self.set_wait(Wait::None, now);
                return Ok(Io::NeedBody(id));
            }
            Wait::None
        } else {
            match self.session.phase() {
                Some(p) if !self.session.is_closed() => Wait::Reply(p),
                _ => Wait::None,
            }
        };
        self.set_wait(wait, now);
        let deadline = self.poll_timeout();
        Ok(match wait {
            Wait::Write(_) => Io::Transmit {
                bytes: self.transmit(),
                deadline,
            },
            Wait::Tls => Io::UpgradeTls { deadline },
            Wait::Reply(_) => Io::Receive { deadline },
            Wait::None => {
                if let Some(e) = self.refused.take() {
                    self.fail(e.clone());
                    return Err(e);
                }
                self.op_deadline = None;
                Io::Done
            }
        })
    }

    /// What to write now. Over TLS a write that ends with the end of data stops there: a
    /// record that failed to go out then cannot have carried it, so a failed write is
    /// certainly not a delivery (in clear text the kernel counts what it took exactly).
    fn transmit(&self) -> &[u8] {
        let bytes = self.out.transmit();
        match self.out.end_of_data_offset() {
            Some(end) if self.tls_info.is_some() && end < bytes.len() => &bytes[..end],
            _ => bytes,
        }
    }

    /// When the current wait must end: the phase's RFC 5321 timer (restarted by each
    /// completed reply and each write that made progress, never by a trickle of bytes), or
    /// the cap on the whole operation, whichever is earlier. `None` when nothing is awaited.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() || self.wait == Wait::None {
            return None;
        }
        // A timeout too large to add to an instant is no timeout.
        let own = self.since.checked_add(self.wait_timeout());
        match (own, self.op_deadline) {
            (Some(own), Some(cap)) => Some(own.min(cap)),
            (own, cap) => own.or(cap),
        }
    }

    /// The next finished transaction, oldest first, with its result: the per-recipient
    /// outcome, the server's refusal, or, when the connection failed, whether the message
    /// is in doubt ([`Error::DeliveryUnknown`]) or was certainly not delivered
    /// ([`Error::NotSent`]).
    pub fn take_finished(&mut self) -> Option<(TxId, Result<Outcome, Error>)> {
        self.finished.pop_front()
    }

    /// The reply to the last NOOP.
    pub fn take_reply(&mut self) -> Option<ServerReply> {
        self.last_reply.take()
    }

    // ---- getters ---------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The protocol session underneath.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// What the server announced in EHLO (after STARTTLS, the encrypted announcement).
    pub fn capabilities(&self) -> &Capabilities {
        self.session.capabilities()
    }

    /// The server's greeting (the 220 banner).
    pub fn greeting(&self) -> Option<&ServerReply> {
        self.greeting.as_ref()
    }

    /// The server's last EHLO (or HELO) reply.
    pub fn ehlo_reply(&self) -> Option<&ServerReply> {
        self.ehlo.as_ref()
    }

    /// The TLS parameters, once the handshake is done.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }

    /// The server's reply accepting AUTH (235), after a successful AUTH.
    pub fn auth_reply(&self) -> Option<&ServerReply> {
        self.auth_reply.as_ref()
    }

    /// The terminal error, if the connection failed.
    pub fn error(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    /// True when the connection is over: failed, or closed by QUIT or the server.
    pub fn is_closed(&self) -> bool {
        self.failed.is_some() || self.session.is_closed()
    }

    /// True when the connection is set up and nothing is outstanding: no command, no
    /// transaction, nothing unwritten. Only then may a dropped client say QUIT without
    /// finishing something behind its caller's back.
    pub fn is_idle(&self) -> bool {
        !self.is_closed()
            && self.setup.established
            && self.txs.is_empty()
            && self.out.is_empty()
            && self.session.is_idle()
    }

    /// How many complete replies the server sent since the last transaction began on an
    /// idle connection, the reply that ended the connection (a 421) included. 0 after a
    /// failed send means the server answered nothing of that message: the connection was
    /// already gone when it was reused, which is what lets a pool retry it elsewhere.
    pub(crate) fn replies_since_idle(&self) -> u32 {
        self.replies_since_idle
    }

    /// True when a transaction may start now: the session is set up and every earlier
    /// message has released its end of data (deep pipelining, RFC 2920 3.1).
    pub fn can_send(&self) -> bool {
        self.setup.established
            && !self.setup.stopped
            && !self.is_closed()
            && self.session.can_start_transaction()
    }

    // ---- internals -------------------------------------------------------------------

    fn usable(&self) -> Result<(), Error> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None if self.session.is_closed() => Err(Error::Closed),
            None => Ok(()),
        }
    }

    /// Starts the cap on an operation at `now` (a driver that connected first backdates the
    /// setup's cap to when connecting began).
    pub(crate) fn start_operation(&mut self, now: Instant) {
        self.op_deadline = self.config.timeouts.attempt.and_then(|cap| {
            self.op_cap = cap;
            now.checked_add(cap)
        });
    }

    /// Caps what is left of the operation in hand at `cap` from `now` (never lengthens a
    /// cap already running).
    fn cap_operation(&mut self, now: Instant, cap: Duration) {
        let Some(deadline) = now.checked_add(cap) else {
            return;
        };
        if self.op_deadline.is_none_or(|d| deadline < d) {
            self.op_deadline = Some(deadline);
            self.op_cap = cap;
        }
    }

    fn set_wait(&mut self, wait: Wait, now: Instant) {
        if self.wait != wait {
            self.wait = wait;
            self.since = now;
        }
    }

    fn wait_timeout(&self) -> Duration {
        let t = &self.config.timeouts;
        match self.wait {
            Wait::None => Duration::MAX,
            Wait::Tls => t.command,
            Wait::Write(Phase::DataBlock) => t.data_block,
            Wait::Write(_) => t.command,
            Wait::Reply(p) => t.for_phase(p),
        }
    }

    /// Ends the connection with `cause`. Each open transaction learns its fate: in doubt
    /// when its end of data is on the wire, otherwise certainly not delivered.
    fn fail(&mut self, cause: Error) {
        if self.failed.is_some() {
            return;
        }
        // A 421 is the answer to the oldest command awaiting one (RFC 5321 3.8): an end of
        // data it answers was refused, not lost.
        let doubt: Vec<TxId> = if matches!(cause, Error::ServiceClosing(_)) {
            Vec::new()
        } else {
            self.session.in_doubt(&self.out).collect()
        };
        for t in self.txs.drain(..) {
            // LMTP: a recipient's reply after the data already decided for it, whatever
            // ended the connection; with every accepted recipient answered the message's
            // result is complete.
            let answered = t.recipients.iter().any(|r| r.data_reply.is_some());
            let complete = answered
                && t.recipients
                    .iter()
                    .filter(|r| r.accepted)
                    .all(|r| r.data_reply.is_some());
            let result = if complete {
                per_recipient(t.recipients)
            } else if answered || doubt.contains(&t.id) {
                Err(Error::DeliveryUnknown {
                    cause: Box::new(cause.clone()),
                    recipients: t.recipients,
                })
            } else {
                Err(Error::NotSent {
                    cause: Box::new(cause.clone()),
                })
            };
            self.finished.push_back((t.id, result));
        }
        self.failed = Some(if doubt.is_empty() {
            cause
        } else {
            Error::DeliveryUnknown {
                cause: Box::new(cause),
                recipients: Vec::new(),
            }
        });
        self.wait = Wait::None;
        self.input.clear();
    }

    /// Runs a session command that writes into the outbox, and logs what it wrote.
    fn command<T>(
        &mut self,
        secret: bool,
        f: impl FnOnce(&mut Session, &mut Outbox<Vec<u8>>) -> Result<T, UseError>,
    ) -> Result<T, Error> {
        let before = self.out.buffer().len();
        let r = f(&mut self.session, &mut self.out).map_err(use_error)?;
        self.log_commands(before, secret);
        Ok(r)
    }

    fn process_input(&mut self, now: Instant) -> Result<(), Error> {
        if self.input.is_empty() {
            return Ok(());
        }
        let input = std::mem::take(&mut self.input);
        let mut pos = 0;
        let result = loop {
            if (self.budget == 0 || self.unsure) && pos < input.len() {
                // What the last reply decided comes out first (the end of an LMTP
                // transaction after its last recipient's reply), so a stray reply behind it
                // cannot leave a finished message unreported.
                if let Ok((_, Some(ev))) = self.session.handle_input(&[], &mut self.out) {
                    if let Err(e) = self.on_event(ev, now) {
                        break Err(e);
                    }
                    continue;
                }
                // Sent before the command it would answer (or with none due): taking it for
                // the next command's reply would shift every later reply by one.
                match postline_proto::reply::unprompted(&input[pos..]) {
                    Unprompted::Premature(e) => break Err(Error::Protocol(e)),
                    u => self.unsure = u == Unprompted::Unsure,
                }
            }
            let before = self.out.buffer().len();
            match self.session.handle_input(&input[pos..], &mut self.out) {
                Err(e) => break Err(Error::Protocol(e)),
                Ok((n, ev)) => {
                    if n > 0 {
                        // A complete reply: the reply timer starts again.
                        self.budget = self.budget.saturating_sub(1);
                        self.unsure = false;
                        self.replies_since_idle = self.replies_since_idle.saturating_add(1);
                        self.wait = Wait::None;
                        self.since = now;
                        let bytes = &input[pos..pos + n];
                        if self.transcript {
                            self.log_server(bytes);
                        }
                        self.keep_reply(bytes, ev.as_ref());
                    }
                    pos += n;
                    self.log_commands(before, false);
                    match ev {
                        Some(ev) => {
                            if let Err(e) = self.on_event(ev, now) {
                                break Err(e);
                            }
                        }
                        None if n == 0 => break Ok(()),
                        None => {}
                    }
                }
            }
        };
        if self.failed.is_none() && !self.tls_pending {
            self.input = input;
            self.input.drain(..pos.min(self.input.len()));
        }
        result
    }

    /// Keeps the greeting, the EHLO reply and the reply accepting AUTH for the caller.
    fn keep_reply(&mut self, bytes: &[u8], ev: Option<&Event<'_>>) {
        let (ready, authenticated) = match ev {
            Some(Event::Ready) => (true, false),
            Some(Event::Authenticated) => (false, true),
            _ => (false, false),
        };
        if self.greeting.is_some() && !ready && !authenticated {
            return;
        }
        if let Ok(r) = postline_proto::Reply::parse_complete(bytes) {
            let r = ServerReply::from_reply(&r);
            if self.greeting.is_none() {
                self.greeting = Some(r);
            } else if authenticated {
                self.auth_reply = Some(r);
            } else {
                self.ehlo = Some(r);
            }
        }
    }

    fn on_event(&mut self, ev: Event<'_>, now: Instant) -> Result<(), Error> {
        match ev {
            Event::Ready | Event::Authenticated => self.advance_setup(),
            Event::StartTls => {
                self.tls_pending = true;
                Ok(())
            }
            Event::StartTlsRefused(r) => {
                if self.config.tls_required() {
                    Err(Error::StartTlsUnavailable(Some(ServerReply::from_reply(
                        &r,
                    ))))
                } else {
                    self.advance_setup()
                }
            }
            Event::AuthChallenge(challenge) => {
                self.auth_rounds += 1;
                if self.auth_rounds > MAX_AUTH_ROUNDS {
                    return Err(Error::AuthRounds {
                        rounds: self.auth_rounds,
                    });
                }
                // The session only challenges an exchange this engine started with credentials.
                let (Some(auth), Some(exchange)) =
                    (self.config.auth.clone(), self.auth_exchange.clone())
                else {
                    return Err(Error::NotReady);
                };
                let response = exchange.with_credentials(&auth, |creds| {
                    self.command(true, |s, out| s.auth_respond(creds, challenge, out))
                })?;
                if response == postline_proto::sasl::Response::Cancelled {
                    self.auth_cancelled = true;
                }
                Ok(())
            }
            Event::AuthServerUnverified(r) => Err(Error::ServerNotVerified {
                reply: ServerReply::from_reply(&r),
            }),
            Event::AuthFailed(r) if self.auth_cancelled => Err(Error::AuthChallengeRefused {
                mechanism: self
                    .auth_exchange
                    .as_ref()
                    .map_or("AUTH", |e| e.mechanism.name()),
                reply: ServerReply::from_reply(&r),
            }),
            Event::AuthFailed(r) => Err(Error::AuthRejected {
                reply: ServerReply::from_reply(&r),
                advertised: self.session.capabilities().has(Extension::Auth),
            }),
            Event::Rejected(r) => {
                // The session queued QUIT: say it, wait briefly for the 221, then report.
                self.refused = Some(Error::Rejected(ServerReply::from_reply(&r)));
                self.cap_operation(now, QUIT_AFTER_REFUSAL);
                Ok(())
            }
            Event::ServiceClosing(r) => Err(Error::ServiceClosing(ServerReply::from_reply(&r))),
            Event::RecipientResult { tx, index, reply } => {
                if let Some(t) = self.txs.iter_mut().find(|t| t.id == tx) {
                    if let Some(rcpt) = t.recipients.get_mut(index as usize) {
                        rcpt.accepted = reply.code().is_positive_completion();
                        rcpt.reply = Some(ServerReply::from_reply(&reply));
                    }
                }
                Ok(())
            }
            Event::LmtpResult {
                tx,
                accepted_index,
                reply,
            } => {
                let rcpt = self.txs.iter_mut().find(|t| t.id == tx).and_then(|t| {
                    t.recipients
                        .iter_mut()
                        .filter(|r| r.accepted)
                        .nth(accepted_index as usize)
                });
                if let Some(rcpt) = rcpt {
                    rcpt.data_reply = Some(ServerReply::from_reply(&reply));
                }
                Ok(())
            }
            Event::TransactionDone { tx, outcome } => {
                let Some(pos) = self.txs.iter().position(|t| t.id == tx) else {
                    return Ok(());
                };
                let t = self.txs.remove(pos);
                let result = match outcome {
                    TxOutcome::Delivered(r) => Ok(Outcome {
                        recipients: t.recipients,
                        reply: ServerReply::from_reply(&r),
                    }),
                    // A check's MAIL reply always comes before its end.
                    TxOutcome::Checked => match t.mail_reply {
                        Some(reply) => Ok(Outcome {
                            recipients: t.recipients,
                            reply,
                        }),
                        None => Err(Error::NotReady),
                    },
                    // A check whose sender was accepted answered its question even when no
                    // recipient was: each recipient's reply, and the MAIL reply.
                    TxOutcome::Failed {
                        at: postline_proto::session::FailedAt::NoValidRecipients,
                        ..
                    } if t.mail_reply.is_some() => Ok(Outcome {
                        recipients: t.recipients,
                        reply: t.mail_reply.unwrap_or_else(|| ServerReply {
                            code: 250,
                            enhanced: None,
                            lines: Vec::new(),
                        }),
                    }),
                    TxOutcome::Failed { at, reply } => Err(Error::MessageRejected {
                        at,
                        reply: reply.map(|r| ServerReply::from_reply(&r)),
                        recipients: t.recipients,
                    }),
                    TxOutcome::PerRecipient { .. } => per_recipient(t.recipients),
                    // The outcomes follow postline-proto's cargo features, and this crate
                    // enables each that has one: nothing else comes. (Were a new one to, it
                    // would be reported from the recipients' replies as LMTP's is, which
                    // without LMTP's per-recipient replies is a refusal with no reply.)
                    _ => per_recipient(t.recipients),
                };
                self.finished.push_back((tx, result));
                Ok(())
            }
            Event::SenderResult { tx, reply } => {
                if let Some(t) = self.txs.iter_mut().find(|t| t.id == tx) {
                    t.mail_reply = Some(ServerReply::from_reply(&reply));
                }
                Ok(())
            }
            Event::Reply(r) => {
                self.last_reply = Some(ServerReply::from_reply(&r));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// After each Ready: STARTTLS if wanted, then AUTH if configured, then done.
    fn advance_setup(&mut self) -> Result<(), Error> {
        if self.setup.established {
            return Ok(());
        }
        let first = !self.setup.tls_tried && !self.setup.auth_tried;
        let stop = match self.config.stop_after {
            Some(StopAfter::Banner) => true,
            Some(StopAfter::Helo) => first,
            _ => false,
        };
        if stop {
            self.stop_setup();
            return Ok(());
        }
        let wants_tls = matches!(self.config.tls, Tls::StartTls | Tls::Opportunistic);
        if wants_tls && !self.session.is_tls() && !self.setup.tls_tried {
            self.setup.tls_tried = true;
            if self.session.capabilities().has(Extension::StartTls) {
                return self.command(false, |s, out| s.start_tls(out));
            }
            if self.config.tls_required() {
                return Err(Error::StartTlsUnavailable(None));
            }
        }
        if self.config.stop_after == Some(StopAfter::Tls) {
            self.stop_setup();
            return Ok(());
        }
        if let (Some(auth), false) = (self.config.auth.clone(), self.setup.auth_tried) {
            self.setup.auth_tried = true;
            if matches!(auth, crate::Auth::External { .. }) && !self.config.has_client_certificate()
            {
                return Err(Error::Config(ConfigError::ExternalNeedsCertificate));
            }
            let binding = self
                .tls_info
                .as_ref()
                .and_then(|i| i.channel_binding.clone())
                .filter(|_| self.session.is_tls());
            let mechanism = choose_mechanism(
                &auth,
                self.session.capabilities(),
                self.session.is_tls(),
                self.config.allow_plaintext_auth,
                self.config.mechanism,
                binding.as_ref().map(|b| b.kind),
            )?;
            let exchange = Exchange::new(
                mechanism,
                &self.config.host,
                self.config.effective_port(),
                binding,
                self.session.capabilities(),
            );
            self.auth_exchange = Some(exchange.clone());
            return exchange.with_credentials(&auth, |creds| {
                self.command(true, |s, out| s.authenticate(mechanism, creds, out))
            });
        }
        self.setup.established = true;
        Ok(())
    }

    /// Ends the setup at [`Config::stop_after`]'s stage: connected, never ready for mail.
    fn stop_setup(&mut self) {
        self.setup.established = true;
        self.setup.stopped = true;
    }

    // ---- transcript ------------------------------------------------------------------

    fn log_commands(&self, before: usize, secret: bool) {
        if !self.transcript {
            return;
        }
        let bytes = self.out.buffer().get(before..).unwrap_or_default();
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.trim_end_matches(['\r', '\n']);
            if secret {
                self.emit(Direction::Client, &redact(line));
            } else {
                self.emit(Direction::Client, line);
            }
        }
    }

    fn log_server(&self, bytes: &[u8]) {
        // A SCRAM server's challenges (salt, iteration count, nonces, its signature) with the
        // user name are enough to test password guesses offline: they are not shown.
        let scram = self
            .auth_exchange
            .as_ref()
            .is_some_and(|e| crate::auth::is_scram(e.mechanism));
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.trim_end_matches(['\r', '\n']);
            if scram && line.starts_with("334") {
                self.emit(Direction::Server, "334 ***");
            } else {
                self.emit(Direction::Server, line);
            }
        }
    }

    fn emit(&self, dir: Direction, line: &str) {
        let prefix = match dir {
            Direction::Client => "C:",
            Direction::Server => "S:",
        };
        tracing::debug!(target: "postline::transcript", "{prefix} {line}");
        if let Some(sink) = &self.config.transcript {
            sink(dir, line);
        }
    }
}
