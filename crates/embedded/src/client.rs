//! The driver: the core's session over an `embedded-io-async` stream, every wait bounded by
//! the injected clock, in buffers the caller owns.

use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};

use postline_proto::command::{Address, Domain, Envelope, ReversePath};
use postline_proto::negotiate::{negotiate, BodyType, MessageOptions};
use postline_proto::reply::Code;
use postline_proto::sasl::{Credentials, Mechanism};
use postline_proto::session::{Event, FailedAt, Phase, SessionError, TxOutcome};
use postline_proto::{Extension, FixedBuf, Outbox, Session, SessionConfig};

use crate::clock::Clock;
use crate::error::Error;
use crate::reply::Reply;
use crate::transport::Transport;

/// How to talk to the server; borrowed for the client's life.
#[derive(Clone, Copy)]
pub struct Config<'a> {
    pub(crate) hello: &'a str,
    user: Option<(&'a str, Secret<'a>)>,
    allow_plaintext_auth: bool,
    timeout_ms: Option<u64>,
    pub(crate) pipelining: bool,
    composed: u32,
}

impl<'a> Config<'a> {
    /// The name to announce in EHLO: the device's fully qualified name, or an address
    /// literal such as `[192.0.2.7]`.
    pub fn new(hello: &'a str) -> Self {
        Config {
            hello,
            user: None,
            allow_plaintext_auth: false,
            timeout_ms: None,
            pipelining: true,
            composed: 0,
        }
    }

    /// Authenticate with this user name and password (PLAIN or LOGIN, as the server offers,
    /// and CRAM-MD5 with the `cram-md5` feature; the core's preference decides).
    pub fn credentials(mut self, user: &'a str, password: &'a str) -> Self {
        self.user = Some((user, Secret::Password(password)));
        self
    }

    /// Authenticate with an OAuth 2.0 access token (OAUTHBEARER or XOAUTH2, as the server
    /// offers). Getting and refreshing the token is the device's business.
    #[cfg(feature = "oauth")]
    pub fn oauth_token(mut self, user: &'a str, token: &'a str) -> Self {
        self.user = Some((user, Secret::Token(token)));
        self
    }

    /// Send the credentials over a connection that is not encrypted. Off by default: anyone
    /// on the path could read them. A device on a trusted link to its relay turns it on.
    pub fn allow_plaintext_auth(mut self, allow: bool) -> Self {
        self.allow_plaintext_auth = allow;
        self
    }

    /// Caps every wait (greeting, each reply, each write) at `ms`; without a cap (or with 0,
    /// as in the C API) the RFC 5321 timers apply (5 minutes for a command, 10 for the end of
    /// data).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = (ms > 0).then_some(ms);
        self
    }

    /// The number of messages composed before on this device, for unique Message-IDs when
    /// a client is made for each mail (the C API keeps the count between them).
    pub fn messages_composed(mut self, n: u32) -> Self {
        self.composed = n;
        self
    }

    /// Pipeline commands when the server offers PIPELINING (default on).
    pub fn pipelining(mut self, on: bool) -> Self {
        self.pipelining = on;
        self
    }
}

impl core::fmt::Debug for Config<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("hello", &self.hello)
            .field("user", &self.user.map(|(u, _)| u))
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

/// What the client proves itself with.
#[derive(Clone, Copy)]
enum Secret<'a> {
    Password(&'a str),
    #[cfg(feature = "oauth")]
    Token(&'a str),
}

impl<'a> Secret<'a> {
    fn credentials(self, username: &'a str) -> Credentials<'a> {
        match self {
            Secret::Password(password) => Credentials::Password {
                authzid: None,
                username,
                password,
            },
            #[cfg(feature = "oauth")]
            Secret::Token(token) => Credentials::Token {
                username,
                token,
                host: None,
                port: None,
            },
        }
    }

    /// The mechanisms this driver carries out for the secret, as this crate's features
    /// allow (not the core's: another crate turning a core feature on must not change what
    /// a device sends). SCRAM is left out: it needs a fresh random nonce for each exchange.
    fn allows(self, m: Mechanism) -> bool {
        match self {
            Secret::Password(_) => {
                matches!(m, Mechanism::Plain | Mechanism::Login)
                    || (cfg!(feature = "cram-md5") && matches!(m, Mechanism::CramMd5))
            }
            #[cfg(feature = "oauth")]
            Secret::Token(_) => matches!(m, Mechanism::OAuthBearer | Mechanism::XOAuth2),
        }
    }
}

/// What a body holds, for `BODY=`: 7-bit when every octet is ASCII.
pub(crate) fn body_type(body: &[u8]) -> BodyType {
    if body.is_ascii() {
        BodyType::SevenBit
    } else {
        BodyType::EightBit
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The server took responsibility for the message (for the recipients whose code is 2xx).
    pub delivered: bool,
    /// Where it was refused, when it was.
    pub failed_at: Option<FailedAt>,
    /// The reply that decided: the end-of-data reply, or the refusal (none when every
    /// recipient was refused: their codes say why).
    pub reply: Option<Reply>,
}

/// What a reply meant, kept past the input it was read from.
pub(crate) enum Step {
    Ready,
    /// The 220 to STARTTLS: the handshake is next.
    StartTls,
    /// STARTTLS refused.
    StartTlsRefused,
    Authenticated,
    Rcpt {
        index: u32,
        code: u16,
    },
    SendData,
    Done(Status),
    Closed,
    Other,
}

/// An SMTP client on a device: one connection, any number of messages, one at a time.
///
/// The state is the core's [`Session`] (a few hundred bytes) plus the two buffers the caller
/// lends: `out` holds commands and message data on their way out (512 bytes are plenty; data
/// goes out in pieces that fit), `input` holds what the server sent until a reply is complete
/// (512 bytes hold any RFC 5321 reply line; a longer multi-line reply needs more).
pub struct Client<'b, S: Read + Write, C> {
    pub(crate) transport: Transport<'b, S>,
    /// What TLS needs, until the handshake uses it.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls<'b>>,
    /// TLS was asked for: nothing is sent until it is in place.
    #[cfg(feature = "tls")]
    pub(crate) tls_required: bool,
    pub(crate) clock: C,
    pub(crate) config: Config<'b>,
    pub(crate) session: Session,
    pub(crate) out: Outbox<FixedBuf<'b>>,
    input: &'b mut [u8],
    pub(crate) filled: usize,
    /// Messages composed on this client, for unique Message-IDs.
    composed: u32,
}

impl<'b, S: Read + Write, C: Clock> Client<'b, S, C> {
    /// A client over a connected stream; nothing is read or written until
    /// [`Client::connect`].
    pub fn new(
        stream: S,
        clock: C,
        config: Config<'b>,
        out: &'b mut [u8],
        input: &'b mut [u8],
    ) -> Result<Self, Error<S::Error>> {
        let hello = Domain::new(config.hello)?;
        let mut sc = SessionConfig::new(&hello);
        sc.pipelining = config.pipelining;
        Ok(Client {
            transport: Transport::Plain(stream),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_required: false,
            clock,
            config,
            session: Session::new(sc),
            out: Outbox::new(FixedBuf::new(out)),
            input,
            filled: 0,
            composed: config.composed,
        })
    }

    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    /// A number no earlier message composed on this client had.
    pub(crate) fn next_message_number(&mut self) -> u32 {
        self.composed = self.composed.wrapping_add(1);
        self.composed
    }

    /// The server's capabilities from its EHLO reply (empty after HELO).
    pub fn capabilities(&self) -> &postline_proto::Capabilities {
        self.session.capabilities()
    }

    /// Reads the greeting, says EHLO (HELO when EHLO is refused), sets up TLS when asked
    /// (implicit TLS first of all; STARTTLS after EHLO, then EHLO again) and authenticates
    /// when credentials were given.
    pub async fn connect(&mut self) -> Result<(), Error<S::Error>> {
        #[cfg(feature = "tls")]
        let mode = self.tls.as_ref().map(|t| t.mode);
        #[cfg(feature = "tls")]
        if mode == Some(crate::tls::Mode::Implicit) {
            self.handshake().await?;
        }
        loop {
            if let Step::Ready = self.step().await? {
                break;
            }
        }
        #[cfg(feature = "tls")]
        if mode == Some(crate::tls::Mode::StartTls) {
            self.start_tls().await?;
        }
        let Some((user, secret)) = self.config.user else {
            return Ok(());
        };
        if !self.session.is_tls() && !self.config.allow_plaintext_auth {
            return Err(Error::AuthUnavailable);
        }
        // Credentials go only to a server that asked for them (AUTH in its EHLO reply): not
        // blind after HELO, and not to one that never offers AUTH.
        if !self.session.capabilities().has(Extension::Auth) {
            return Err(Error::AuthUnavailable);
        }
        let offered = self.session.capabilities().auth();
        let token = !matches!(secret, Secret::Password(_));
        let mechanism = Mechanism::preference(token, self.session.is_tls())
            .iter()
            .copied()
            .filter(|m| secret.allows(*m))
            .find(|m| offered.contains(*m))
            .ok_or(Error::AuthUnavailable)?;
        let creds = secret.credentials(user);
        self.session
            .authenticate(mechanism, &creds, &mut self.out)?;
        loop {
            if let Step::Authenticated = self.step().await? {
                return Ok(());
            }
        }
    }

    /// Sends one message: MAIL, each RCPT, DATA, `body` (any line endings; dot-stuffed on the
    /// way) and its end. Each recipient's RCPT code lands in `codes` (same order as `to`; 0
    /// when no reply came). A refused message is an `Ok` [`Status`] saying where; an `Err`
    /// is the connection's failure, [`Error::InDoubt`] when the end of data was written and
    /// no reply came.
    pub async fn send(
        &mut self,
        from: Address<&str>,
        to: &[Address<&str>],
        body: &[u8],
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        let kind = body_type(body);
        if let Some(status) = self
            .begin_with(from, to, Some(body.len()), kind, codes)
            .await?
        {
            return Ok(status);
        }
        self.data(body).await?;
        self.end(codes).await
    }

    /// Starts a message whose data will be streamed with [`Client::data`] and ended with
    /// [`Client::end`]: MAIL and each RCPT (with DATA when pipelining). `Some(status)` when
    /// the message was refused before any data (the refused MAIL, every recipient refused).
    /// `size`, when known, is declared with `SIZE=` and checked against the server's limit.
    /// The body is not known yet: `BODY=8BITMIME` is declared when the server offers it.
    pub async fn begin(
        &mut self,
        from: Address<&str>,
        to: &[Address<&str>],
        size: Option<usize>,
        codes: &mut [u16],
    ) -> Result<Option<Status>, Error<S::Error>> {
        self.begin_with(from, to, size, BodyType::Auto, codes).await
    }

    /// [`Client::begin`] for a body whose content is known: 7-bit ASCII goes to any server,
    /// 8-bit only to one offering 8BITMIME ([`Error::Incompatible`] otherwise).
    pub(crate) async fn begin_with(
        &mut self,
        from: Address<&str>,
        to: &[Address<&str>],
        size: Option<usize>,
        body: BodyType,
        codes: &mut [u16],
    ) -> Result<Option<Status>, Error<S::Error>> {
        codes.iter_mut().for_each(|c| *c = 0);
        // A message refused at MAIL still has RCPT and DATA replies due (they were
        // pipelined): take them before the next message starts, each by its deadline.
        while !self.session.can_start_transaction() && self.session.replies_due() > 0 {
            self.step().await?;
        }
        // TLS was asked for and is not in place (connect failed, or was not called): no
        // message goes in clear text.
        #[cfg(feature = "tls")]
        if self.tls_required && !self.session.is_tls() {
            return Err(Error::TlsUnavailable);
        }
        let from = ReversePath::Address(from);
        let opts = MessageOptions {
            size: size.map(|n| n as u64),
            body,
            smtputf8: false,
            ret: None,
            envid: None,
            notify: None,
            orcpt: false,
            require_tls: false,
        };
        let mut opts = opts;
        opts.smtputf8 = to.iter().any(|a| a.needs_smtputf8()) || from.needs_smtputf8();
        let n = negotiate(&opts, self.session.capabilities(), self.session.is_tls())
            .map_err(Error::Incompatible)?;
        let env = Envelope {
            from: &from,
            to,
            mail: n.mail,
            rcpt: n.rcpt,
        };
        self.session.start_transaction(&env, &mut self.out)?;
        loop {
            match self.step().await? {
                Step::Rcpt { index, code } => {
                    if let Some(c) = codes.get_mut(index as usize) {
                        *c = code;
                    }
                }
                Step::SendData => return Ok(None),
                Step::Done(status) => return Ok(Some(status)),
                _ => {}
            }
        }
    }

    /// Writes a piece of the message (split anywhere; line endings and dot-stuffing are taken
    /// care of), in pieces that fit the output buffer.
    pub async fn data(&mut self, mut bytes: &[u8]) -> Result<(), Error<S::Error>> {
        while !bytes.is_empty() {
            // A piece at most half the free room always fits: stuffing and CRLF at most
            // double it.
            let room = self.out.remaining() / 2;
            if room < 2 {
                self.flush(Phase::DataBlock).await?;
                if self.out.remaining() / 2 < 2 {
                    return Err(Error::Use(postline_proto::session::UseError::BufferFull(
                        postline_proto::BufferFull { needed: 4 },
                    )));
                }
                continue;
            }
            let n = bytes.len().min(room);
            self.session.send_data(&bytes[..n], &mut self.out)?;
            bytes = &bytes[n..];
            if self.out.remaining() < self.out.transmit().len() {
                self.flush(Phase::DataBlock).await?;
            }
        }
        Ok(())
    }

    /// Ends the message and waits for the server's word on it. `codes` gets any RCPT code
    /// that came only now.
    pub async fn end(&mut self, codes: &mut [u16]) -> Result<Status, Error<S::Error>> {
        self.session.end_data(&mut self.out)?;
        loop {
            match self.step().await {
                Ok(Step::Done(status)) => return Ok(status),
                Ok(Step::Rcpt { index, code }) => {
                    if let Some(c) = codes.get_mut(index as usize) {
                        *c = code;
                    }
                }
                Ok(_) => {}
                // The end of data is on the wire and unanswered: it may have been taken.
                Err(e) if self.session.in_doubt(&self.out).next().is_some() => {
                    return Err(match e {
                        Error::Closed(p) | Error::Timeout(p) => Error::InDoubt(p),
                        // A 421 is an answer: the message was not taken (deferred).
                        Error::ServiceClosing(r) => Error::ServiceClosing(r),
                        _ => Error::InDoubt(Phase::DataEnd),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Says QUIT and waits (bounded) for the answer; the stream is then the caller's to close.
    pub async fn quit(mut self) -> Result<(), Error<S::Error>> {
        self.say_quit().await
    }

    /// [`Client::quit`] in place: the future borrows the client rather than holding it, so
    /// the blocking twin's QUIT does not need a second copy of the whole client on the stack.
    pub(crate) async fn say_quit(&mut self) -> Result<(), Error<S::Error>> {
        self.session.quit(&mut self.out)?;
        loop {
            match self.step().await {
                Ok(Step::Closed) => return Ok(()),
                Ok(_) => {}
                // After QUIT a server may just close.
                Err(Error::Closed(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The deadline of a wait in `phase`, from now.
    pub(crate) fn deadline(&self, phase: Phase) -> u64 {
        let rfc = phase.default_timeout_secs() * 1000;
        let ms = self.config.timeout_ms.map_or(rfc, |cap| cap.min(rfc));
        self.clock.now_ms().saturating_add(ms)
    }

    /// Writes everything released, by the deadline.
    async fn flush(&mut self, phase: Phase) -> Result<(), Error<S::Error>> {
        let deadline = self.deadline(phase);
        while !self.out.transmit().is_empty() {
            let bytes = self.out.transmit();
            let n = match select(self.transport.write(bytes), self.clock.wait_until(deadline)).await
            {
                Either::First(Ok(0)) => return Err(Error::Closed(phase)),
                Either::First(Ok(n)) => n,
                Either::First(Err(e)) => return Err(e),
                Either::Second(()) => return Err(Error::Timeout(phase)),
            };
            self.out.advance(n);
        }
        match select(self.transport.flush(), self.clock.wait_until(deadline)).await {
            Either::First(Ok(())) => Ok(()),
            Either::First(Err(e)) => Err(e),
            Either::Second(()) => Err(Error::Timeout(phase)),
        }
    }

    /// Writes what is due, then takes one reply (reading until one is complete, by the
    /// deadline of what it answers) and says what it meant.
    pub(crate) async fn step(&mut self) -> Result<Step, Error<S::Error>> {
        let phase = self.session.phase().unwrap_or(Phase::Command);
        if !self.out.transmit().is_empty() {
            self.flush(phase).await?;
        }
        let deadline = self.deadline(phase);
        loop {
            if let Some(step) = self.take_reply()? {
                return Ok(step);
            }
            if !self.out.transmit().is_empty() {
                // The reply let held commands out (no PIPELINING): write them first.
                return Ok(Step::Other);
            }
            if self.filled == self.input.len() {
                return Err(Error::ReplyTooLong);
            }
            let phase = self.session.phase().unwrap_or(Phase::Command);
            let read = select(
                self.transport.read(&mut self.input[self.filled..]),
                self.clock.wait_until(deadline),
            )
            .await;
            match read {
                Either::First(Ok(0)) => {
                    return match self.session.handle_close(&self.input[..self.filled]) {
                        Ok(()) => Ok(Step::Closed),
                        Err(SessionError::ConnectionClosed { phase }) => Err(Error::Closed(phase)),
                        Err(e) => Err(Error::Protocol(e)),
                    }
                }
                Either::First(Ok(n)) => self.filled += n,
                Either::First(Err(e)) => return Err(e),
                Either::Second(()) => return Err(Error::Timeout(phase)),
            }
        }
    }

    /// One reply from the input, if a whole one is there (or an event the last reply
    /// decided), consumed and turned into a [`Step`].
    // Out of line, so the reply handling's frame is not merged into every polled future's.
    #[inline(never)]
    fn take_reply(&mut self) -> Result<Option<Step>, Error<S::Error>> {
        // What the last reply decided comes out first.
        let (_, pending) = self
            .session
            .handle_input(&[], &mut self.out)
            .map_err(Error::Protocol)?;
        if let Some(ev) = pending {
            return self.meaning(ev).map(Some);
        }
        if self.filled == 0 {
            return Ok(None);
        }
        // The core's rule: a reply no written command asked for ends the session, rather
        // than shift every later reply by one.
        if self.session.replies_due() == 0 && self.out.transmit().is_empty() {
            if let Some(code) = Code::premature(&self.input[..self.filled]) {
                return Err(Error::Protocol(SessionError::UnexpectedReply { code }));
            }
        }
        let input = &self.input[..self.filled];
        let (used, ev) = self
            .session
            .handle_input(input, &mut self.out)
            .map_err(Error::Protocol)?;
        let step = match ev {
            Some(ev) => Some(Self::meaning_of(
                &mut self.session,
                &mut self.out,
                &self.config,
                ev,
            )?),
            None if used > 0 => Some(Step::Other),
            None => None,
        };
        if used > 0 {
            self.input.copy_within(used..self.filled, 0);
            self.filled -= used;
        }
        Ok(step)
    }

    fn meaning(&mut self, ev: Event<'_>) -> Result<Step, Error<S::Error>> {
        Self::meaning_of(&mut self.session, &mut self.out, &self.config, ev)
    }

    /// Answers an AUTH challenge. Kept out of line: its SASL buffers would otherwise sit in
    /// the frame of every reply's handling (the peak stack a device must provide).
    #[inline(never)]
    fn respond(
        session: &mut Session,
        out: &mut Outbox<FixedBuf<'b>>,
        config: &Config<'b>,
        challenge: &[u8],
    ) -> Result<(), Error<S::Error>> {
        let Some((user, secret)) = config.user else {
            return Err(Error::AuthUnavailable);
        };
        let creds = secret.credentials(user);
        session.auth_respond(&creds, challenge, out)?;
        Ok(())
    }

    fn meaning_of(
        session: &mut Session,
        out: &mut Outbox<FixedBuf<'b>>,
        config: &Config<'b>,
        ev: Event<'_>,
    ) -> Result<Step, Error<S::Error>> {
        Ok(match ev {
            Event::Ready => Step::Ready,
            Event::StartTls => Step::StartTls,
            Event::StartTlsRefused(_) => Step::StartTlsRefused,
            Event::Rejected(r) => return Err(Error::Rejected(Reply::from_proto(&r))),
            Event::ServiceClosing(r) => return Err(Error::ServiceClosing(Reply::from_proto(&r))),
            Event::AuthChallenge(challenge) => {
                Self::respond(session, out, config, challenge)?;
                Step::Other
            }
            Event::Authenticated => Step::Authenticated,
            Event::AuthFailed(r) | Event::AuthServerUnverified(r) => {
                return Err(Error::AuthFailed(Reply::from_proto(&r)))
            }
            Event::RecipientResult { index, reply, .. } => Step::Rcpt {
                index,
                code: reply.code().value(),
            },
            Event::SendData(_) => Step::SendData,
            Event::TransactionDone { outcome, .. } => Step::Done(match outcome {
                TxOutcome::Delivered(r) => Status {
                    delivered: true,
                    failed_at: None,
                    reply: Some(Reply::from_proto(&r)),
                },
                TxOutcome::Failed { at, reply } => Status {
                    delivered: false,
                    failed_at: Some(at),
                    reply: reply.map(|r| Reply::from_proto(&r)),
                },
                // Checks and LMTP are not started by this driver.
                _ => Status {
                    delivered: false,
                    failed_at: None,
                    reply: None,
                },
            }),
            Event::Closed => Step::Closed,
            _ => Step::Other,
        })
    }
}
