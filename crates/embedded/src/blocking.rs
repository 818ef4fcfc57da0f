//! The blocking twin: the same driver over a blocking `embedded-io` stream (a vendor stack's
//! blocking socket, std's `TcpStream` through an adapter). The async driver runs on a
//! polling loop; nothing of the protocol or its policy is written twice.
//!
//! A blocking read cannot be raced against a deadline, so give the socket a receive timeout
//! (most stacks have one): a read that ends with `TimedOut` (or `Interrupted`) counts as
//! "nothing yet", the driver looks at the clock, and gives up at the deadline.

use embassy_futures::{block_on, yield_now};
use embedded_io::ErrorKind;
use postline_proto::command::Address;

use crate::client::{Client, Config, Status};
use crate::clock::Clock;
use crate::error::Error;
use crate::mail::Mail;

/// The time for the blocking driver: no waiting, only reading the clock.
pub trait BlockingClock {
    /// Milliseconds since any fixed point; never goes back.
    fn now_ms(&self) -> u64;
    /// Seconds since 1970 for `Date:`, when known; see [`Clock::unix_time`].
    fn unix_time(&self) -> Option<i64> {
        None
    }
}

/// A blocking stream as the async driver sees it: each call completes when the blocking one
/// returns; a timed-out read yields, so the deadline is checked.
pub struct Blocking<S>(S);

impl<S: embedded_io::ErrorType> embedded_io_async::ErrorType for Blocking<S> {
    type Error = S::Error;
}

fn not_yet<E: embedded_io::Error>(e: &E) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted)
}

impl<S: embedded_io::Read> embedded_io_async::Read for Blocking<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, S::Error> {
        loop {
            match self.0.read(buf) {
                Err(e) if not_yet(&e) => yield_now().await,
                r => return r,
            }
        }
    }
}

impl<S: embedded_io::Write> embedded_io_async::Write for Blocking<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, S::Error> {
        loop {
            match self.0.write(buf) {
                Err(e) if not_yet(&e) => yield_now().await,
                r => return r,
            }
        }
    }
    async fn flush(&mut self) -> Result<(), S::Error> {
        loop {
            match self.0.flush() {
                Err(e) if not_yet(&e) => yield_now().await,
                r => return r,
            }
        }
    }
}

/// A [`BlockingClock`] as a [`Clock`]: a wait checks the time and yields until it is up.
pub struct Polled<C>(C);

impl<C: BlockingClock> Clock for Polled<C> {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    async fn wait_until(&self, deadline_ms: u64) {
        while self.0.now_ms() < deadline_ms {
            yield_now().await;
        }
    }
    fn unix_time(&self) -> Option<i64> {
        self.0.unix_time()
    }
}

/// [`Client`] over a blocking stream; every method returns when its work is done.
///
/// Each method is kept out of line: its future and the frames polled inside it then live
/// on the stack only during that call, not all at once in the caller's frame.
pub struct BlockingClient<'b, S: embedded_io::Read + embedded_io::Write, C>(
    Client<'b, Blocking<S>, Polled<C>>,
);

impl<'b, S, C> BlockingClient<'b, S, C>
where
    S: embedded_io::Read + embedded_io::Write,
    C: BlockingClock,
{
    /// See [`Client::new`]. Out of line: the session is built in this frame and moved
    /// once, rather than in copies that would stay in the caller's.
    #[inline(never)]
    pub fn new(
        stream: S,
        clock: C,
        config: Config<'b>,
        out: &'b mut [u8],
        input: &'b mut [u8],
    ) -> Result<Self, Error<S::Error>> {
        Client::new(Blocking(stream), Polled(clock), config, out, input).map(BlockingClient)
    }

    /// See [`Client::connect`].
    #[inline(never)]
    pub fn connect(&mut self) -> Result<(), Error<S::Error>> {
        block_on(self.0.connect())
    }

    /// See [`Client::send`].
    #[inline(never)]
    pub fn send(
        &mut self,
        from: Address<&str>,
        to: &[Address<&str>],
        body: &[u8],
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        block_on(self.0.send(from, to, body, codes))
    }

    /// See [`Client::send_mail`].
    #[inline(never)]
    pub fn send_mail(
        &mut self,
        mail: &Mail<'_>,
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        block_on(self.0.send_mail(mail, codes))
    }

    /// See [`Client::quit`].
    #[inline(never)]
    pub fn quit(mut self) -> Result<(), Error<S::Error>> {
        block_on(self.0.say_quit())
    }
}
