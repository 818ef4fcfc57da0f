//! The driver: the core's session over an `embedded-io-async` stream, every wait bounded by
//! the injected clock, in buffers the caller owns.

use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};

use postline_proto::command::Address;
use postline_proto::negotiate::BodyType;
use postline_proto::reply::Code;
use postline_proto::sasl::{Credentials, Mechanism};
use postline_proto::session::FailedAt;

use crate::clock::Clock;
use crate::engine::{Body, Engine, Job, Outgoing, Want};
use crate::error::Error;
use crate::reply::Reply;
use crate::transport::Transport;

/// How to talk to the server; borrowed for the client's life.
#[derive(Clone, Copy)]
pub struct Config<'a> {
    pub(crate) hello: &'a str,
    pub(crate) user: Option<(&'a str, Secret<'a>)>,
    pub(crate) allow_plaintext_auth: bool,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) pipelining: bool,
    #[cfg(feature = "chunking")]
    pub(crate) chunking: bool,
    pub(crate) composed: u32,
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
            #[cfg(feature = "chunking")]
            chunking: false,
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

    /// Send message data as BDAT chunks (RFC 3030) when the server offers CHUNKING and
    /// PIPELINING (default off; with DATA otherwise). With the `chunking` cargo feature.
    /// A chunk is at most half the output buffer, and no more than 8 chunks go out before
    /// their replies are read (a server that stops reading to answer is never waited on).
    /// MAIL and every RCPT are answered before any data (a streamed message's `begin`
    /// returns then); a refused chunk ends the message there (RFC 3030 2: nothing may follow
    /// it), and its status says so. A server that offers CHUNKING and refuses BDAT itself
    /// (500) fails every message with that reply: there is no fallback to DATA, so leave
    /// this off for such a server.
    #[cfg(feature = "chunking")]
    pub fn chunking(mut self, on: bool) -> Self {
        self.chunking = on;
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
pub(crate) enum Secret<'a> {
    Password(&'a str),
    #[cfg(feature = "oauth")]
    Token(&'a str),
}

impl<'a> Secret<'a> {
    pub(crate) fn credentials(self, username: &'a str) -> Credentials<'a> {
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
    pub(crate) fn allows(self, m: Mechanism) -> bool {
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

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The server took responsibility for the message (for the recipients whose code is 2xx).
    pub delivered: bool,
    /// Where it was refused, when it was.
    pub failed_at: Option<FailedAt>,
    /// The code of the reply that decided: the end-of-data reply, or the refusal (none when
    /// every recipient was refused: their codes say why). Its text is the client's
    /// `last_reply`, kept once there rather than copied through every return.
    pub code: Option<Code>,
}

/// An SMTP client on a device: one connection, any number of messages, one at a time.
///
/// The state is the core's [`Session`](postline_proto::Session) (232 bytes on x86_64 with one transaction slot) plus the two buffers the caller
/// lends: `out` holds commands and message data on their way out (512 bytes are plenty; data
/// goes out in pieces that fit), `input` holds what the server sent until a reply is complete
/// (512 bytes hold any RFC 5321 reply line; of a longer reply only the code and the start of
/// the first line are kept, which decide, but EHLO's positive reply and an AUTH challenge must
/// fit whole: there every line counts).
pub struct Client<'b, S: Read + Write, C> {
    pub(crate) transport: Transport<'b, S>,
    /// What TLS needs, until the handshake uses it.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls<'b>>,
    pub(crate) clock: C,
    pub(crate) engine: Engine<'b>,
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
        Ok(Client {
            transport: Transport::Plain(stream),
            #[cfg(feature = "tls")]
            tls: None,
            clock,
            engine: Engine::new(config, out, input)?,
        })
    }

    /// The reply that decided the last call: a refusal ([`Error::Rejected`],
    /// [`Error::ServiceClosing`], [`Error::AuthFailed`]) or a message's final reply
    /// ([`Status::code`]), with the start of its text. `None` when the call ended without
    /// one (every recipient refused, a timeout, a closed connection). Kept here once, rather
    /// than in every error and status, which a device would carry through each stack frame.
    pub fn last_reply(&self) -> Option<&Reply> {
        self.engine.last_reply.as_ref()
    }

    /// The server's capabilities from its EHLO reply (empty after HELO).
    pub fn capabilities(&self) -> &postline_proto::Capabilities {
        self.engine.session.capabilities()
    }

    /// Reads the greeting, says EHLO (HELO when EHLO is refused), sets up TLS when asked
    /// (implicit TLS first of all; STARTTLS after EHLO, then EHLO again) and authenticates
    /// when credentials were given.
    pub async fn connect(&mut self) -> Result<(), Error<S::Error>> {
        self.engine.start_connect()?;
        self.run(&mut Job::none()).await
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
        self.message(&mut Job::send(from, to, body, codes)).await
    }

    /// Runs a message's job to its end: the status the server's last word gave.
    pub(crate) async fn message(&mut self, job: &mut Job<'_>) -> Result<Status, Error<S::Error>> {
        self.engine.start_message(job)?;
        self.run(job).await?;
        job.status()
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
        let mut job = Job {
            codes,
            envelope: Some(Outgoing {
                from,
                to,
                size,
                body: BodyType::Auto,
            }),
            body: None,
            status: None,
        };
        self.engine.start_message(&mut job)?;
        self.run(&mut job).await?;
        Ok(job.status)
    }

    /// Writes a piece of the message (split anywhere; line endings and dot-stuffing are taken
    /// care of), in pieces that fit the output buffer. With BDAT the server may refuse the
    /// message midway: the rest of its data is then not sent, and [`Client::end`] says so.
    pub async fn data(&mut self, bytes: &[u8]) -> Result<(), Error<S::Error>> {
        let mut job = Job::none();
        job.body = Some(Body::Bytes(bytes));
        self.engine.start_data()?;
        self.run(&mut job).await
    }

    /// Ends the message and waits for the server's word on it. `codes` gets any RCPT code
    /// that came only now.
    pub async fn end(&mut self, codes: &mut [u16]) -> Result<Status, Error<S::Error>> {
        let mut job = Job::none();
        job.codes = codes;
        self.engine.start_end(&mut job)?;
        self.run(&mut job).await?;
        job.status()
    }

    /// Says QUIT and waits (bounded) for the answer; the stream is then the caller's to close.
    pub async fn quit(mut self) -> Result<(), Error<S::Error>> {
        self.engine.start_quit()?;
        self.run(&mut Job::none()).await
    }

    /// The one loop: does what the engine asks (write, read, TLS), each by the deadline the
    /// engine gives, until the call is done; a failure is the engine's to judge.
    async fn run(&mut self, job: &mut Job<'_>) -> Result<(), Error<S::Error>> {
        let Err(e) = self.turn(job).await else {
            return Ok(());
        };
        let settled = self.engine.settle(e);
        if self.engine.unusable {
            self.transport = Transport::Gone(core::marker::PhantomData);
        }
        settled
    }

    async fn turn(&mut self, job: &mut Job<'_>) -> Result<(), Error<S::Error>> {
        loop {
            match self.engine.poll(self.clock.now_ms(), job)? {
                Want::Done => return Ok(()),
                Want::Write { deadline, phase } => {
                    let write = self.transport.write(self.engine.transmit());
                    let n = match select(write, self.clock.wait_until(deadline)).await {
                        Either::First(Ok(0)) => return Err(Error::Closed(phase)),
                        Either::First(Ok(n)) => n,
                        Either::First(Err(e)) => return Err(e),
                        Either::Second(()) => return Err(Error::Timeout(phase)),
                    };
                    if self.engine.written(n) {
                        match select(self.transport.flush(phase), self.clock.wait_until(deadline))
                            .await
                        {
                            Either::First(r) => r?,
                            Either::Second(()) => return Err(Error::Timeout(phase)),
                        }
                    }
                }
                Want::Read { deadline, phase } => {
                    let read = self.transport.read(self.engine.space());
                    let n = match select(read, self.clock.wait_until(deadline)).await {
                        Either::First(r) => r?,
                        Either::Second(()) => return Err(Error::Timeout(phase)),
                    };
                    self.engine.received(n)?;
                }
                #[cfg(feature = "tls")]
                Want::Handshake { deadline } => {
                    self.handshake(deadline).await?;
                    self.engine.handshaken()?;
                }
            }
        }
    }
}
