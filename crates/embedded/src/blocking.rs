//! The blocking twin: the same engine over a blocking `embedded-io` stream (a vendor stack's
//! blocking socket, std's `TcpStream` through an adapter). The policy is the engine's, once;
//! this loop only does the reads and writes it asks for, as the async one does; without TLS,
//! with no future on the stack (a device's stack is counted in bytes).
//!
//! A blocking read cannot be raced against a deadline, so give the socket a receive timeout
//! (most stacks have one): a read that ends with `TimedOut` (or `Interrupted`) counts as
//! "nothing yet", the driver looks at the clock, and gives up at the deadline. The stream must
//! say `ErrorKind::TimedOut` for it: std's `TcpStream` reports its read timeout as
//! `WouldBlock`, which `embedded-io-adapters` turns into `ErrorKind::Other` (a failure), so
//! wrap it and map that kind (as this crate's `tests/blocking.rs` does).
//!
//! With TLS (feature `tls`), the same: embedded-tls's async connection runs over the socket,
//! a read that finds nothing yet is `Pending` rather than an error, and this loop polls
//! again until the deadline. A timeout in the middle of a TLS record therefore costs TLS
//! nothing (a blocking TLS read that failed there would lose its place in the record), and a
//! server trickling a record is bounded by the same deadline as any other.

use embedded_io::ErrorKind;
use postline_proto::command::Address;
use postline_proto::session::Phase;

use crate::client::{Config, Status};
use crate::engine::{Engine, Job, Want};
use crate::error::Error;
use crate::mail::Mail;
use crate::reply::Reply;

/// The time for the blocking driver: no waiting, only reading the clock.
pub trait BlockingClock {
    /// Milliseconds since any fixed point; never goes back.
    fn now_ms(&self) -> u64;
    /// Seconds since 1970 for `Date:`, when known; see [`Clock::unix_time`](crate::Clock::unix_time).
    fn unix_time(&self) -> Option<i64> {
        None
    }
}

/// An SMTP client over a blocking stream; every method returns when its work is done. The
/// same calls as [`Client`](crate::Client), the same engine under them.
pub struct BlockingClient<'b, S: embedded_io::Read + embedded_io::Write, C> {
    stream: Link<'b, S>,
    /// What TLS needs, until the handshake uses it.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls<'b>>,
    clock: C,
    engine: Engine<'b>,
}

/// The connection under the session: the caller's stream, or TLS over it.
#[allow(clippy::large_enum_variant)]
enum Link<'b, S: embedded_io::Read + embedded_io::Write> {
    Plain(S),
    /// TLS 1.3 over the caller's stream, driven by polling ([`Polled`]).
    #[cfg(feature = "tls")]
    Tls(
        embedded_tls::TlsConnection<
            'b,
            crate::transport::Guarded<Polled<S>>,
            embedded_tls::Aes128GcmSha256,
        >,
    ),
    /// Given to a TLS step that failed: nothing more can be sent.
    #[cfg(feature = "tls")]
    Gone,
    /// Without TLS: carries the buffers' lifetime, and cannot be made (so no code handles it).
    #[cfg(not(feature = "tls"))]
    #[allow(dead_code)]
    Never(core::convert::Infallible, core::marker::PhantomData<&'b ()>),
}

impl<'b, S, C> BlockingClient<'b, S, C>
where
    S: embedded_io::Read + embedded_io::Write,
    C: BlockingClock,
{
    /// See [`Client::new`](crate::Client::new).
    pub fn new(
        stream: S,
        clock: C,
        config: Config<'b>,
        out: &'b mut [u8],
        input: &'b mut [u8],
    ) -> Result<Self, Error<S::Error>> {
        Ok(BlockingClient {
            stream: Link::Plain(stream),
            #[cfg(feature = "tls")]
            tls: None,
            clock,
            engine: Engine::new(config, out, input)?,
        })
    }

    /// See [`Client::last_reply`](crate::Client::last_reply).
    pub fn last_reply(&self) -> Option<&Reply> {
        self.engine.last_reply.as_ref()
    }

    /// See [`Client::connect`](crate::Client::connect).
    pub fn connect(&mut self) -> Result<(), Error<S::Error>> {
        self.engine.start_connect()?;
        self.run(&mut Job::none())
    }

    /// See [`Client::send`](crate::Client::send).
    pub fn send(
        &mut self,
        from: Address<&str>,
        to: &[Address<&str>],
        body: &[u8],
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        self.message(&mut Job::send(from, to, body, codes))
    }

    /// See [`Client::send_mail`](crate::Client::send_mail).
    pub fn send_mail(
        &mut self,
        mail: &Mail<'_>,
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        mail.check()?;
        let (unix, now) = (self.clock.unix_time(), self.clock.now_ms());
        let mut job = self.engine.mail_job(mail, codes, unix, now);
        self.message(&mut job)
    }

    /// See [`Client::quit`](crate::Client::quit). In place (a device often keeps its client
    /// in static memory): afterwards every call fails, and the stream is the caller's to close.
    pub fn quit(&mut self) -> Result<(), Error<S::Error>> {
        self.engine.start_quit()?;
        self.run(&mut Job::none())
    }

    fn message(&mut self, job: &mut Job<'_>) -> Result<Status, Error<S::Error>> {
        self.engine.start_message(job)?;
        self.run(job)?;
        job.status()
    }

    /// The loop: does what the engine asks, each by the deadline the engine gives, until
    /// the call is done; a failure is the engine's to judge.
    fn run(&mut self, job: &mut Job<'_>) -> Result<(), Error<S::Error>> {
        let Err(e) = self.turn(job) else {
            return Ok(());
        };
        let settled = self.engine.settle(e);
        #[cfg(feature = "tls")]
        if self.engine.unusable {
            self.stream = Link::Gone;
        }
        settled
    }

    fn turn(&mut self, job: &mut Job<'_>) -> Result<(), Error<S::Error>> {
        loop {
            match self.engine.poll(self.clock.now_ms(), job)? {
                Want::Done => return Ok(()),
                Want::Write { deadline, phase } => {
                    let n = self.write(deadline, phase)?;
                    if n == 0 {
                        return Err(Error::Closed(phase));
                    }
                    if self.engine.written(n) {
                        self.flush(deadline, phase)?;
                    }
                }
                Want::Read { deadline, phase } => {
                    let n = self.read(deadline, phase)?;
                    self.engine.received(n)?;
                }
                #[cfg(feature = "tls")]
                Want::Handshake { deadline } => {
                    self.handshake(deadline)?;
                    self.engine.handshaken()?;
                }
            }
        }
    }

    fn write(&mut self, deadline: u64, phase: Phase) -> Result<usize, Error<S::Error>> {
        let bytes = self.engine.transmit();
        match &mut self.stream {
            Link::Plain(s) => by(&self.clock, deadline, phase, || s.write(bytes)),
            #[cfg(feature = "tls")]
            Link::Tls(t) => polled(&self.clock, deadline, phase, async {
                crate::transport::tls_io(t.write(bytes).await)
            }),
            #[cfg(feature = "tls")]
            Link::Gone => Err(Error::Tls(crate::error::TlsFailure::Unusable)),
            #[cfg(not(feature = "tls"))]
            Link::Never(never, _) => match *never {},
        }
    }

    fn flush(&mut self, deadline: u64, phase: Phase) -> Result<(), Error<S::Error>> {
        match &mut self.stream {
            Link::Plain(s) => by(&self.clock, deadline, phase, || s.flush()),
            #[cfg(feature = "tls")]
            Link::Tls(t) => polled(&self.clock, deadline, phase, async {
                crate::transport::tls_flushed(t.flush().await, phase)
            }),
            #[cfg(feature = "tls")]
            Link::Gone => Err(Error::Tls(crate::error::TlsFailure::Unusable)),
            #[cfg(not(feature = "tls"))]
            Link::Never(never, _) => match *never {},
        }
    }

    fn read(&mut self, deadline: u64, phase: Phase) -> Result<usize, Error<S::Error>> {
        let space = self.engine.space();
        match &mut self.stream {
            Link::Plain(s) => by(&self.clock, deadline, phase, || s.read(space)),
            #[cfg(feature = "tls")]
            Link::Tls(t) => polled(&self.clock, deadline, phase, async {
                crate::transport::tls_io(t.read(space).await)
            }),
            #[cfg(feature = "tls")]
            Link::Gone => Err(Error::Tls(crate::error::TlsFailure::Unusable)),
            #[cfg(not(feature = "tls"))]
            Link::Never(never, _) => match *never {},
        }
    }
}

#[cfg(feature = "tls")]
impl<'b, S, C> BlockingClient<'b, S, C>
where
    S: embedded_io::Read + embedded_io::Write,
    C: BlockingClock,
{
    /// See [`Client::tls`](crate::Client::tls).
    pub fn tls(mut self, tls: crate::tls::Tls<'b>) -> Result<Self, Error<S::Error>> {
        self.engine.use_tls(&tls)?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// The TLS handshake over the plain stream, by `deadline`. The plain stream is given up
    /// first: after a failed handshake nothing more can be sent.
    fn handshake(&mut self, deadline: u64) -> Result<(), Error<S::Error>> {
        use crate::error::TlsFailure;
        let tls = self.tls.take().ok_or(Error::Tls(TlsFailure::Unusable))?;
        let Link::Plain(stream) = core::mem::replace(&mut self.stream, Link::Gone) else {
            return Err(Error::Tls(TlsFailure::Unusable));
        };
        let mut conn = embedded_tls::TlsConnection::new(
            crate::transport::Guarded(Polled(stream)),
            tls.read_record,
            tls.write_record,
        );
        polled(&self.clock, deadline, Phase::Command, async {
            crate::tls::open(&mut conn, tls.server_name, tls.verify, tls.rng)
                .await
                .map_err(crate::transport::tls_failure)
        })?;
        self.stream = Link::Tls(conn);
        Ok(())
    }
}

/// A blocking stream as an async one, for TLS: a read or write that finds nothing yet (the
/// socket's timeout) is `Pending`, not an error, so TLS keeps its place in a record while
/// [`polled`] looks at the clock. TLS sees it through [`Guarded`](crate::transport::Guarded),
/// as it sees the async client's stream.
#[cfg(feature = "tls")]
pub(crate) struct Polled<S>(S);

#[cfg(feature = "tls")]
impl<S: embedded_io::ErrorType> embedded_io_async::ErrorType for Polled<S> {
    type Error = S::Error;
}

#[cfg(feature = "tls")]
impl<S: embedded_io::Read> embedded_io_async::Read for Polled<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, S::Error> {
        patiently(|| self.0.read(buf)).await
    }
}

#[cfg(feature = "tls")]
impl<S: embedded_io::Write> embedded_io_async::Write for Polled<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, S::Error> {
        patiently(|| self.0.write(buf)).await
    }

    async fn flush(&mut self) -> Result<(), S::Error> {
        patiently(|| self.0.flush()).await
    }
}

/// Calls `io` until it gives something: "nothing yet" from the socket is `Pending` once, for
/// [`polled`] to look at the clock.
#[cfg(feature = "tls")]
async fn patiently<T, E: embedded_io::Error>(mut io: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    loop {
        match io() {
            Err(e) if not_yet(&e) => NotYet(false).await,
            r => return r,
        }
    }
}

/// `Pending` once, then done: hands control back to [`polled`] to look at the clock.
#[cfg(feature = "tls")]
struct NotYet(bool);

#[cfg(feature = "tls")]
impl core::future::Future for NotYet {
    type Output = ();
    fn poll(
        mut self: core::pin::Pin<&mut Self>,
        _: &mut core::task::Context<'_>,
    ) -> core::task::Poll<()> {
        if core::mem::replace(&mut self.0, true) {
            core::task::Poll::Ready(())
        } else {
            core::task::Poll::Pending
        }
    }
}

/// Polls `io` until it completes; each `Pending` (nothing yet from the socket) checks the
/// clock, and at `deadline` the call is abandoned (the session is out of step then anyway).
#[cfg(feature = "tls")]
fn polled<T, E>(
    clock: &impl BlockingClock,
    deadline: u64,
    phase: Phase,
    io: impl core::future::Future<Output = Result<T, Error<E>>>,
) -> Result<T, Error<E>> {
    let mut io = core::pin::pin!(io);
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    loop {
        if let core::task::Poll::Ready(r) = io.as_mut().poll(&mut cx) {
            return r;
        }
        if clock.now_ms() >= deadline {
            return Err(Error::Timeout(phase));
        }
    }
}

/// A socket's "nothing yet": its timeout passed, or a signal came.
fn not_yet(e: &impl embedded_io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// Calls `io` until it completes or fails; "not yet" (`TimedOut`, `Interrupted`) is tried
/// again until the clock passes `deadline`.
fn by<T, E: embedded_io::Error>(
    clock: &impl BlockingClock,
    deadline: u64,
    phase: Phase,
    mut io: impl FnMut() -> Result<T, E>,
) -> Result<T, Error<E>> {
    loop {
        match io() {
            Ok(v) => return Ok(v),
            Err(e) if not_yet(&e) => {
                if clock.now_ms() >= deadline {
                    return Err(Error::Timeout(phase));
                }
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
}
