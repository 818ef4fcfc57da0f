//! The client's policy over the core session, still without I/O: which TLS and AUTH steps to
//! take, the envelope parameters a server's capabilities call for, per-recipient bookkeeping
//! and the transcript. The blocking and tokio drivers run the same [`Engine`] and differ only
//! in how they read, write and upgrade to TLS, so the protocol and the policy exist once.

use postline_proto::command::{Body, Envelope as ProtoEnvelope, MailParams, RcptParams};
use postline_proto::ehlo::{Capabilities, Extension, SizeLimit};
use postline_proto::sasl::{Credentials, Mechanism};
use postline_proto::session::{
    Event, Outbox, Phase, Session, SessionConfig, SessionError, TxId, TxOutcome, UseError,
};
use postline_proto::Domain;

use crate::config::{Auth, Config, Direction, Tls};
use crate::envelope::{BodyType, Envelope};
use crate::error::Error;
use crate::outcome::{Outcome, Recipient};
use crate::reply::ServerReply;

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write `engine.out.transmit()` and advance past what was written.
    Write,
    /// Read from the server, with the timeout of this phase, and pass the bytes to
    /// [`Engine::received`] (or call [`Engine::eof`]).
    Read(Phase),
    /// Upgrade the transport to TLS, then call [`Engine::tls_done`].
    StartTls,
    /// Feed the next piece of the message with [`Engine::body`], or [`Engine::body_end`].
    Body,
    /// Nothing to do: the goal (connection set up, message sent) is reached.
    Idle,
}

#[derive(Debug, Default)]
struct Setup {
    tls_tried: bool,
    auth_tried: bool,
    established: bool,
}

#[derive(Debug)]
struct TxTrack {
    id: TxId,
    recipients: Vec<Recipient>,
    body_octets: u64,
}

/// Session, outbox, input buffer and policy state of one connection.
pub(crate) struct Engine {
    pub(crate) session: Session,
    pub(crate) out: Outbox<Vec<u8>>,
    input: Vec<u8>,
    config: Config,
    setup: Setup,
    tls_pending: bool,
    /// Transactions started and not yet finished (two at most with deep pipelining).
    txs: Vec<TxTrack>,
    /// Finished transactions, oldest first.
    finished: std::collections::VecDeque<(TxId, Result<Outcome, Error>)>,
    last_reply: Option<ServerReply>,
    greeting: Option<ServerReply>,
    ehlo: Option<ServerReply>,
    replies: u64,
    closed: bool,
    transcript: bool,
    /// Replies the server may have sent by now: those due for commands already written.
    budget: u32,
    /// Bytes of `out.transmit()` still to write up to and including the end of data; 0 once
    /// the end of data is on the wire (or none is pending).
    end_unwritten: usize,
}

fn use_error(e: UseError) -> Error {
    match e {
        UseError::Failed(e) => Error::Protocol(e),
        other => Error::Invalid(other.to_string()),
    }
}

impl Engine {
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        let hello = config.hello_or_default();
        let domain = Domain::new(hello.as_str())
            .map_err(|e| Error::Invalid(format!("HELO name {hello:?}: {e}")))?;
        let mut sc = SessionConfig::new(&domain);
        sc.pipelining = config.pipelining;
        sc.chunking = config.chunking;
        sc.implicit_tls = config.tls == Tls::Implicit;
        let transcript = config.transcript.is_some()
            || tracing::enabled!(target: "postline::transcript", tracing::Level::DEBUG);
        Ok(Engine {
            session: Session::new(sc),
            out: Outbox::new(Vec::with_capacity(4096)),
            input: Vec::with_capacity(4096),
            config,
            setup: Setup::default(),
            tls_pending: false,
            txs: Vec::new(),
            finished: std::collections::VecDeque::new(),
            last_reply: None,
            greeting: None,
            ehlo: None,
            replies: 0,
            closed: false,
            transcript,
            budget: 0,
            end_unwritten: 0,
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Replies handled so far: a driver restarts its reply timer when this moves.
    pub(crate) fn replies(&self) -> u64 {
        self.replies
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed || self.session.is_closed()
    }

    pub(crate) fn greeting(&self) -> Option<&ServerReply> {
        self.greeting.as_ref()
    }

    pub(crate) fn ehlo_reply(&self) -> Option<&ServerReply> {
        self.ehlo.as_ref()
    }

    pub(crate) fn capabilities(&self) -> &Capabilities {
        self.session.capabilities()
    }

    /// The next thing the driver must do.
    pub(crate) fn step(&mut self) -> Result<Step, Error> {
        self.process_input()?;
        if !self.out.transmit().is_empty() {
            return Ok(Step::Write);
        }
        if self.tls_pending {
            return Ok(Step::StartTls);
        }
        if let Some(id) = self.session.sending() {
            if self.txs.iter().any(|t| t.id == id) {
                return Ok(Step::Body);
            }
        }
        if let Some(phase) = self.session.phase() {
            if !self.session.is_closed() {
                return Ok(Step::Read(phase));
            }
        }
        Ok(Step::Idle)
    }

    /// Bytes from the server.
    pub(crate) fn received(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// `n` bytes of `out.transmit()` were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.out.advance(n);
        self.end_unwritten = self.end_unwritten.saturating_sub(n);
    }

    /// Whether the end of data is released but not yet (wholly) written: a server that is
    /// gone by now cannot have accepted the message.
    pub(crate) fn end_of_data_unwritten(&self) -> bool {
        self.end_unwritten > 0
    }

    /// The server closed the connection.
    pub(crate) fn eof(&mut self) -> Result<(), Error> {
        // Only an end of data that reached the wire can have been accepted.
        let dot_written = self.end_unwritten == 0;
        let delivery_unknown = dot_written && self.session.awaiting_final().next().is_some();
        let result = self.session.handle_close(&self.input);
        self.closed = true;
        match result {
            Ok(()) => Ok(()),
            Err(SessionError::ConnectionClosed { phase }) => Err(Error::ConnectionLost {
                // Still writing the message when the server went.
                phase: if dot_written || phase != Phase::DataEnd {
                    phase
                } else {
                    Phase::DataBlock
                },
                delivery_unknown,
            }),
            Err(e) => Err(Error::Protocol(e)),
        }
    }

    /// The TLS handshake after STARTTLS is done.
    pub(crate) fn tls_done(&mut self) -> Result<(), Error> {
        self.tls_pending = false;
        self.input.clear();
        let before = self.out.buffer().len();
        self.session
            .tls_established(&mut self.out)
            .map_err(use_error)?;
        self.log_new_commands(before, false);
        Ok(())
    }

    fn process_input(&mut self) -> Result<(), Error> {
        if self.input.is_empty() {
            return Ok(());
        }
        if self.out.transmit().is_empty() {
            // Everything released is on the wire: this many replies may have come.
            self.budget = self.session.replies_due();
        }
        let input = std::mem::take(&mut self.input);
        let mut pos = 0;
        let result = loop {
            if self.budget == 0 && pos < input.len() {
                if let Some(code) = premature_reply(&input[pos..]) {
                    // Sent before the command it would answer (or with none due): taking it
                    // for the next command's reply would shift every later reply by one.
                    self.closed = true;
                    break Err(Error::Protocol(SessionError::UnexpectedReply { code }));
                }
            }
            let before = self.out.buffer().len();
            match self.session.handle_input(&input[pos..], &mut self.out) {
                Err(e) => break Err(Error::Protocol(e)),
                Ok((n, ev)) => {
                    if n > 0 {
                        self.replies += 1;
                        self.budget = self.budget.saturating_sub(1);
                        if self.transcript {
                            self.log_server(&input[pos..pos + n]);
                        }
                        let keep = self.greeting.is_none() || matches!(ev, Some(Event::Ready));
                        if keep {
                            if let Ok(r) =
                                postline_proto::Reply::parse_complete(&input[pos..pos + n])
                            {
                                let r = ServerReply::from_reply(&r);
                                if self.greeting.is_none() {
                                    self.greeting = Some(r);
                                } else {
                                    self.ehlo = Some(r);
                                }
                            }
                        }
                    }
                    pos += n;
                    self.log_new_commands(before, false);
                    match ev {
                        Some(ev) => {
                            if let Err(e) = self.on_event(ev) {
                                break Err(e);
                            }
                        }
                        None if n == 0 => break Ok(()),
                        None => {}
                    }
                }
            }
        };
        self.input = input;
        self.input.drain(..pos.min(self.input.len()));
        result
    }

    fn on_event(&mut self, ev: Event<'_>) -> Result<(), Error> {
        match ev {
            Event::Ready | Event::Authenticated => self.advance_setup(),
            Event::StartTls => {
                self.tls_pending = true;
                Ok(())
            }
            Event::StartTlsRefused(r) => {
                if self.config.tls == Tls::StartTls {
                    Err(Error::StartTlsUnavailable(Some(ServerReply::from_reply(
                        &r,
                    ))))
                } else {
                    self.advance_setup()
                }
            }
            Event::AuthChallenge(challenge) => {
                let Some(auth) = self.config.auth.clone() else {
                    return Err(Error::Invalid("AUTH challenge without credentials".into()));
                };
                let before = self.out.buffer().len();
                let creds = proto_credentials(&auth, &self.config);
                self.session
                    .auth_respond(&creds, challenge, &mut self.out)
                    .map_err(use_error)?;
                self.log_new_commands(before, true);
                Ok(())
            }
            Event::AuthFailed(r) => Err(Error::AuthRejected {
                reply: ServerReply::from_reply(&r),
                advertised: self.session.capabilities().has(Extension::Auth),
            }),
            Event::Rejected(r) => Err(Error::Rejected(ServerReply::from_reply(&r))),
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
            Event::SendData(_) => Ok(()),
            Event::TransactionDone { tx, outcome } => {
                let Some(pos) = self.txs.iter().position(|t| t.id == tx) else {
                    return Ok(());
                };
                let t = self.txs.remove(pos);
                self.finished.push_back((
                    tx,
                    match outcome {
                        TxOutcome::Delivered(r) => Ok(Outcome {
                            recipients: t.recipients,
                            reply: ServerReply::from_reply(&r),
                        }),
                        TxOutcome::Failed { at, reply } => Err(Error::MessageRejected {
                            at,
                            reply: reply.map(|r| ServerReply::from_reply(&r)),
                            recipients: t.recipients,
                        }),
                    },
                ));
                Ok(())
            }
            Event::Reply(r) => {
                self.last_reply = Some(ServerReply::from_reply(&r));
                Ok(())
            }
            Event::Closed => {
                self.closed = true;
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
        let wants_tls = matches!(self.config.tls, Tls::StartTls | Tls::Opportunistic);
        if wants_tls && !self.session.is_tls() && !self.setup.tls_tried {
            self.setup.tls_tried = true;
            if self.session.capabilities().has(Extension::StartTls) {
                let before = self.out.buffer().len();
                self.session.start_tls(&mut self.out).map_err(use_error)?;
                self.log_new_commands(before, false);
                return Ok(());
            }
            if self.config.tls == Tls::StartTls {
                return Err(Error::StartTlsUnavailable(None));
            }
        }
        if let (Some(auth), false) = (self.config.auth.clone(), self.setup.auth_tried) {
            self.setup.auth_tried = true;
            let caps = self.session.capabilities();
            let mechanism = choose_mechanism(
                &auth,
                caps,
                self.session.is_tls(),
                self.config.allow_plaintext_auth,
                self.config.mechanism,
            )?;
            let creds = proto_credentials(&auth, &self.config);
            let before = self.out.buffer().len();
            self.session
                .authenticate(mechanism, &creds, &mut self.out)
                .map_err(use_error)?;
            self.log_new_commands(before, true);
            return Ok(());
        }
        self.setup.established = true;
        Ok(())
    }

    /// True when a transaction may start now: the session is set up and every earlier
    /// message has written its end of data (deep pipelining, RFC 2920 3.1).
    pub(crate) fn can_begin(&self) -> bool {
        self.setup.established && !self.is_closed() && self.session.can_start_transaction()
    }

    /// Starts a transaction for `env`, after checking it against the server's limits.
    pub(crate) fn begin_send(&mut self, env: &Envelope) -> Result<TxId, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if !self.can_begin() {
            return Err(Error::Invalid(
                "the connection is not ready for a message".into(),
            ));
        }
        let caps = self.session.capabilities();
        let smtputf8 = env.needs_smtputf8();
        if smtputf8 && !caps.has(Extension::SmtpUtf8) {
            return Err(Error::SmtpUtf8Unsupported);
        }
        if let (Some(size), SizeLimit::Limit(limit)) = (env.size, caps.size()) {
            if size > limit {
                return Err(Error::MessageTooLarge { size, limit });
            }
        }
        let eight_bit = caps.has(Extension::EightBitMime);
        let body = match env.body {
            BodyType::Auto => eight_bit.then_some(Body::EightBitMime),
            BodyType::SevenBit => None,
            BodyType::EightBit if eight_bit => Some(Body::EightBitMime),
            BodyType::EightBit => {
                return Err(Error::Invalid(
                    "the message has 8-bit data and the server does not offer 8BITMIME".into(),
                ))
            }
        };
        let dsn = caps.has(Extension::Dsn);
        if !dsn && (env.ret.is_some() || env.envid.is_some() || env.notify.is_some()) {
            tracing::warn!("server does not offer DSN; DSN parameters not sent");
        }
        let mail = MailParams {
            size: env.size.filter(|_| caps.size() != SizeLimit::NotAdvertised),
            body,
            smtputf8,
            ret: env.ret.filter(|_| dsn),
            envid: env.envid.as_deref().filter(|_| dsn),
            requiretls: false,
        };
        let rcpt = RcptParams {
            notify: env.notify.filter(|_| dsn),
            orcpt: env.orcpt && dsn,
        };
        let proto = ProtoEnvelope {
            from: &env.from,
            to: &env.to,
            mail,
            rcpt,
        };
        let before = self.out.buffer().len();
        let id = self
            .session
            .start_transaction(&proto, &mut self.out)
            .map_err(use_error)?;
        self.log_new_commands(before, false);
        self.txs.push(TxTrack {
            id,
            recipients: env
                .to
                .iter()
                .map(|a| Recipient {
                    address: a.as_str().to_string(),
                    accepted: false,
                    reply: None,
                })
                .collect(),
            body_octets: 0,
        });
        Ok(id)
    }

    /// A piece of the message.
    pub(crate) fn body(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let sending = self.session.sending();
        if let Some(t) = self.txs.iter_mut().find(|t| Some(t.id) == sending) {
            t.body_octets += chunk.len() as u64;
        }
        self.session
            .send_data(chunk, &mut self.out)
            .map_err(use_error)
    }

    /// The end of the message.
    pub(crate) fn body_end(&mut self) -> Result<(), Error> {
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
        self.end_unwritten = self.out.transmit().len();
        if self.transcript {
            let tail = &self.out.buffer()[before..];
            if tail.ends_with(b"\r\n.\r\n") || tail == b".\r\n" {
                self.emit(Direction::Client, ".");
            }
        }
        Ok(())
    }

    /// The result of the last transaction, once its final reply came.
    pub(crate) fn take_outcome(&mut self) -> Option<Result<Outcome, Error>> {
        self.finished.pop_front().map(|(_, r)| r)
    }

    /// Every finished transaction's result, oldest first.
    pub(crate) fn take_finished(
        &mut self,
    ) -> impl Iterator<Item = (TxId, Result<Outcome, Error>)> + '_ {
        self.finished.drain(..)
    }

    pub(crate) fn noop(&mut self) -> Result<(), Error> {
        let before = self.out.buffer().len();
        self.last_reply = None;
        self.session.noop(&mut self.out).map_err(use_error)?;
        self.log_new_commands(before, false);
        Ok(())
    }

    pub(crate) fn take_reply(&mut self) -> Option<ServerReply> {
        self.last_reply.take()
    }

    pub(crate) fn quit(&mut self) -> Result<(), Error> {
        let before = self.out.buffer().len();
        self.session.quit(&mut self.out).map_err(use_error)?;
        self.log_new_commands(before, false);
        Ok(())
    }

    // ---- transcript ------------------------------------------------------------------

    fn log_new_commands(&self, before: usize, secret: bool) {
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
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            self.emit(Direction::Server, line.trim_end_matches(['\r', '\n']));
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

/// The code of a reply at the start of `input` that no written command asked for; `None` for
/// a 421 (a server may close the session at any time, RFC 5321 3.8) and for bytes that do not
/// start with a code (the session reports those as malformed).
fn premature_reply(input: &[u8]) -> Option<postline_proto::reply::Code> {
    let digits = input.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    postline_proto::reply::Code::new(value).filter(|c| c.value() != 421)
}

/// Keeps `AUTH MECHANISM` and hides everything that could carry a credential.
fn redact(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some(a), Some(m), rest) if a.eq_ignore_ascii_case("AUTH") => {
            if rest.is_some() {
                format!("{a} {m} ***")
            } else {
                format!("{a} {m}")
            }
        }
        _ => "***".to_string(),
    }
}

fn proto_credentials<'a>(auth: &'a Auth, config: &'a Config) -> Credentials<'a> {
    match auth {
        Auth::Password { user, password } => Credentials::Password {
            authzid: None,
            username: user,
            password,
        },
        Auth::Token { user, token } => Credentials::Token {
            username: user,
            token,
            host: Some(config.host.as_str()),
            port: Some(config.effective_port()),
        },
    }
}

/// The strongest mechanism both sides allow. Passwords: CRAM-MD5, then PLAIN, then LOGIN, the
/// last two only under TLS unless plaintext auth is allowed; tokens: OAUTHBEARER, XOAUTH2,
/// likewise only under TLS. A server that announces no AUTH at all gets PLAIN (or XOAUTH2).
pub(crate) fn choose_mechanism(
    auth: &Auth,
    caps: &Capabilities,
    tls: bool,
    allow_plaintext: bool,
    forced: Option<Mechanism>,
) -> Result<Mechanism, Error> {
    let clear_ok = tls || allow_plaintext;
    let exposes_secret = |m: Mechanism| m != Mechanism::CramMd5;
    if let Some(m) = forced {
        if exposes_secret(m) && !clear_ok {
            return Err(Error::PlaintextAuthRefused);
        }
        return Ok(m);
    }
    let offered = caps.auth();
    let order: &[Mechanism] = match auth {
        Auth::Password { .. } => &[Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login],
        Auth::Token { .. } => &[Mechanism::OAuthBearer, Mechanism::XOAuth2],
    };
    if !caps.has(Extension::Auth) {
        // The embedded clients' habit, kept: try the simplest mechanism and report clearly.
        if !clear_ok {
            return Err(Error::PlaintextAuthRefused);
        }
        return Ok(match auth {
            Auth::Password { .. } => Mechanism::Plain,
            Auth::Token { .. } => Mechanism::XOAuth2,
        });
    }
    if let Some(m) = order
        .iter()
        .copied()
        .find(|&m| offered.contains(m) && (clear_ok || !exposes_secret(m)))
    {
        return Ok(m);
    }
    if order.iter().any(|&m| offered.contains(m)) {
        return Err(Error::PlaintextAuthRefused);
    }
    let names: Vec<&str> = Mechanism::ALL
        .iter()
        .filter(|m| offered.contains(**m))
        .map(|m| m.name())
        .collect();
    Err(Error::NoAuthMechanism {
        offered: names.join(" "),
    })
}

/// Messages sent back to back on one connection: each next transaction starts as soon as the
/// previous message's end of data is written, so its commands share that write (RFC 2920 3.1)
/// and a stream of messages costs one round trip each.
pub(crate) struct Batch<'m> {
    messages: Vec<(&'m Envelope, &'m [u8])>,
    next: usize,
    in_flight: Vec<(TxId, usize)>,
    results: Vec<Option<Result<Outcome, Error>>>,
}

impl<'m> Batch<'m> {
    pub(crate) fn new(messages: Vec<(&'m Envelope, &'m [u8])>) -> Self {
        let results = messages.iter().map(|_| None).collect();
        Batch {
            messages,
            next: 0,
            in_flight: Vec::new(),
            results,
        }
    }

    /// Collects finished transactions and starts every one the session allows now.
    pub(crate) fn refill(&mut self, engine: &mut Engine) -> Result<(), Error> {
        self.collect(engine);
        while self.next < self.messages.len() && engine.can_begin() {
            let index = self.next;
            self.next += 1;
            match engine.begin_send(self.messages[index].0) {
                Ok(id) => self.in_flight.push((id, index)),
                Err(e) if e.leaves_session_usable() => self.results[index] = Some(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn collect(&mut self, engine: &mut Engine) {
        for (id, result) in engine.take_finished() {
            if let Some(pos) = self.in_flight.iter().position(|(t, _)| *t == id) {
                let (_, index) = self.in_flight.remove(pos);
                self.results[index] = Some(result);
            }
        }
    }

    /// True while some message has not been started.
    pub(crate) fn has_unsent(&self) -> bool {
        self.next < self.messages.len()
    }

    /// The whole body of the message now taking data, and its end.
    pub(crate) fn feed(&mut self, engine: &mut Engine) -> Result<(), Error> {
        let sending = engine.session.sending();
        let Some(&(_, index)) = self.in_flight.iter().find(|(t, _)| Some(*t) == sending) else {
            return Err(Error::Invalid(
                "message data wanted for an unknown message".into(),
            ));
        };
        engine.body(self.messages[index].1)?;
        engine.body_end()
    }

    /// Each message's result in order; those never finished say why the connection ended.
    pub(crate) fn finish(
        mut self,
        engine: &mut Engine,
        ended: Option<&Error>,
    ) -> Vec<Result<Outcome, Error>> {
        self.collect(engine);
        self.results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| match ended {
                    Some(e) => Err(Error::Invalid(format!(
                        "not sent: the connection failed: {e}"
                    ))),
                    None => Err(Error::Closed),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postline_proto::reply::Reply;

    fn caps(ehlo: &[u8]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::parse_complete(ehlo).unwrap())
    }

    #[test]
    fn mechanism_choice() {
        let pw = Auth::Password {
            user: "u".into(),
            password: "p".into(),
        };
        let tok = Auth::Token {
            user: "u".into(),
            token: "t".into(),
        };
        let all = caps(b"250-x\r\n250 AUTH LOGIN PLAIN CRAM-MD5 XOAUTH2 OAUTHBEARER\r\n");
        let pl = caps(b"250-x\r\n250 AUTH PLAIN LOGIN\r\n");
        let none = caps(b"250-x\r\n250 8BITMIME\r\n");
        let odd = caps(b"250-x\r\n250 AUTH GSSAPI NTLM\r\n");
        assert_eq!(
            choose_mechanism(&pw, &all, true, false, None).unwrap(),
            Mechanism::CramMd5
        );
        assert_eq!(
            choose_mechanism(&pw, &pl, true, false, None).unwrap(),
            Mechanism::Plain
        );
        assert!(matches!(
            choose_mechanism(&pw, &pl, false, false, None),
            Err(Error::PlaintextAuthRefused)
        ));
        assert_eq!(
            choose_mechanism(&pw, &pl, false, true, None).unwrap(),
            Mechanism::Plain
        );
        assert_eq!(
            choose_mechanism(&pw, &all, false, false, None).unwrap(),
            Mechanism::CramMd5
        );
        assert_eq!(
            choose_mechanism(&tok, &all, true, false, None).unwrap(),
            Mechanism::OAuthBearer
        );
        assert_eq!(
            choose_mechanism(&pw, &none, true, false, None).unwrap(),
            Mechanism::Plain
        );
        assert!(matches!(
            choose_mechanism(&pw, &none, false, false, None),
            Err(Error::PlaintextAuthRefused)
        ));
        assert!(matches!(
            choose_mechanism(&pw, &odd, true, false, None),
            Err(Error::NoAuthMechanism { .. })
        ));
        assert_eq!(
            choose_mechanism(&pw, &all, true, false, Some(Mechanism::Login)).unwrap(),
            Mechanism::Login
        );
        assert!(matches!(
            choose_mechanism(&pw, &all, false, false, Some(Mechanism::Login)),
            Err(Error::PlaintextAuthRefused)
        ));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("AUTH PLAIN AHRpbQB0YW5z"), "AUTH PLAIN ***");
        assert_eq!(redact("AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(redact("dGlt"), "***");
    }
}
