//! The blocking twin: the same engine over a blocking `embedded-io` stream (a vendor stack's
//! blocking socket, std's `TcpStream` through an adapter). The policy is the engine's, once;
//! this loop only does the reads and writes it asks for, as the async one does, with no
//! future on the stack (a device's stack is counted in bytes).
//!
//! A blocking read cannot be raced against a deadline, so give the socket a receive timeout
//! (most stacks have one): a read that ends with `TimedOut` (or `Interrupted`) counts as
//! "nothing yet", the driver looks at the clock, and gives up at the deadline.

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
/// same calls as [`Client`](crate::Client) (without TLS), the same engine under them.
pub struct BlockingClient<'b, S, C> {
    stream: S,
    clock: C,
    engine: Engine<'b>,
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
            stream,
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
        self.engine.settle(e)
    }

    fn turn(&mut self, job: &mut Job<'_>) -> Result<(), Error<S::Error>> {
        loop {
            match self.engine.poll(self.clock.now_ms(), job)? {
                Want::Done => return Ok(()),
                Want::Write { deadline, phase } => {
                    let (stream, engine) = (&mut self.stream, &self.engine);
                    let n = by(&self.clock, deadline, phase, || {
                        stream.write(engine.transmit())
                    })?;
                    if n == 0 {
                        return Err(Error::Closed(phase));
                    }
                    if self.engine.written(n) {
                        let stream = &mut self.stream;
                        by(&self.clock, deadline, phase, || stream.flush())?;
                    }
                }
                Want::Read { deadline, phase } => {
                    let (stream, engine) = (&mut self.stream, &mut self.engine);
                    let n = by(&self.clock, deadline, phase, || stream.read(engine.space()))?;
                    self.engine.received(n)?;
                }
                // The blocking twin is never given TLS.
                #[cfg(feature = "tls")]
                Want::Handshake { .. } => return Err(Error::TlsUnavailable),
            }
        }
    }
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
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if clock.now_ms() >= deadline {
                    return Err(Error::Timeout(phase));
                }
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
}
