//! The one driver loop: an [`Engine`] over a [`Transport`]. The blocking client runs it with
//! a transport whose futures never wait (so [`block_on`] polls each once); the tokio client
//! awaits it. Neither holds any policy: the engine decides what to do and until when, the
//! transport only moves bytes within the deadline it is given.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use postline_proto::session::TxId;

use crate::config::Config;
use crate::engine::{Engine, Io};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::reply::ServerReply;
use crate::tls::{self, TlsInfo};

/// Size of the reads from the message: memory use stays flat whatever the message size.
pub(crate) const BODY_CHUNK: usize = 64 * 1024;
/// Size of the reads from the server.
const READ_CHUNK: usize = 16 * 1024;
/// How long dropping a client waits for the server's answer to QUIT.
pub(crate) const QUIT_ON_DROP: Duration = Duration::from_secs(5);
/// How long closing the stream (TLS close_notify) may take after QUIT.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Moves bytes within deadlines. A read or write that reaches its deadline returns
/// `ErrorKind::TimedOut`; the engine decides whether the deadline really passed.
pub(crate) trait Transport {
    /// The clock deadlines are measured on.
    fn now(&self) -> Instant;
    /// Reads at least one byte (0: end of stream), by `deadline`.
    async fn read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize>;
    /// Reads what is there without waiting: `None` when nothing is.
    async fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Writes a prefix of `buf` and pushes it to the network, by `deadline`.
    async fn write(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize>;
    /// TLS over the stream, handshake done by `deadline`.
    async fn start_tls(
        &mut self,
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
        deadline: Option<Instant>,
    ) -> io::Result<TlsInfo>;
    /// Ends the stream (TLS close_notify, then shutdown), by `deadline`.
    async fn close(&mut self, deadline: Instant);
}

/// The one way both transports report a server that closed during the TLS handshake.
pub(crate) fn closed_in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed during the TLS handshake",
    )
}

/// Where the message comes from.
pub(crate) trait BodySource {
    /// Fills a prefix of `buf`; 0 at the end of the message.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// For runs that send no message.
pub(crate) struct NoBody;

impl BodySource for NoBody {
    async fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

/// A message in memory, handed over whole.
struct Bytes<'a>(&'a [u8]);

impl BodySource for Bytes<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Runs a future whose every await is already ready: the blocking transport's.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        // Blocking transports do their waiting inside the call; nothing returns Pending.
        Poll::Pending => unreachable!("a blocking transport's future waited"),
    }
}

/// A connection: the engine, its transport and buffers. Both clients are thin wrappers.
pub(crate) struct Conn<T> {
    pub(crate) engine: Engine,
    pub(crate) io: T,
    pub(crate) peer: Option<SocketAddr>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    read_buf: Vec<u8>,
    /// Pieces of the message pass through here; allocated on the first message, then reused.
    body_buf: Vec<u8>,
    /// An operation is in progress; still set after one was cancelled (a dropped future),
    /// which leaves the connection in an unknown state and unusable.
    busy: bool,
    /// What ended the connection right after an operation that returned its own result
    /// (a delivery followed by a 421): the next call reports it.
    unreported: Option<Error>,
}

impl<T: Transport> Conn<T> {
    /// Greets, says EHLO, starts TLS and authenticates over `io`, as `config` says.
    /// `started` is when connecting began: the cap on the operation
    /// ([`crate::Timeouts::attempt`]) counts from there.
    pub(crate) async fn establish(
        config: Config,
        io: T,
        peer: Option<SocketAddr>,
        started: Instant,
    ) -> Result<Self, Error> {
        let tls_config = match config.tls {
            crate::Tls::None => None,
            _ => {
                tls::check_required_name(&config)?;
                Some(tls::client_config(&config)?)
            }
        };
        let mut engine = Engine::new(config, io.now())?;
        engine.start_operation(started);
        let mut conn = Conn {
            engine,
            io,
            peer,
            tls_config,
            read_buf: vec![0; READ_CHUNK],
            body_buf: Vec::new(),
            busy: false,
            unreported: None,
        };
        if let Err(e) = conn.op(None::<&mut NoBody>, None).await {
            if e.leaves_session_usable() {
                // A policy refusal (no STARTTLS, AUTH refused): the session is still in
                // step, so it ends politely.
                let _ = conn.quit(Some(QUIT_ON_DROP)).await;
            }
            return Err(e);
        }
        Ok(conn)
    }

    pub(crate) async fn send<B: BodySource>(
        &mut self,
        envelope: &Envelope,
        body: &mut B,
    ) -> Result<Outcome, Error> {
        self.ready()?;
        let id = self.engine.send(envelope, self.io.now())?;
        self.finish(id, Some(body)).await
    }

    /// Checks `envelope` without a message ([`Engine::check`]): MAIL and each RCPT, then
    /// RSET; never DATA.
    pub(crate) async fn check(&mut self, envelope: &Envelope) -> Result<Outcome, Error> {
        self.ready()?;
        let id = self.engine.check(envelope, self.io.now())?;
        self.finish(id, None::<&mut NoBody>).await
    }

    /// Drives the transaction `id` to its end and returns its result.
    async fn finish<B: BodySource>(
        &mut self,
        id: TxId,
        body: Option<&mut B>,
    ) -> Result<Outcome, Error> {
        let ended = self.op(body, None).await.err();
        // The message's own result first: a final 250 followed in the same read by a 421 or
        // a stray reply ended the connection, not the delivery.
        while let Some((done, result)) = self.engine.take_finished() {
            if done == id {
                return match (result, ended) {
                    // Not delivered because of `e`: say `e`, as for any other call.
                    (Err(Error::NotSent { .. }), Some(e)) => Err(e),
                    (result @ Err(Error::DeliveryUnknown { .. }), _) => result,
                    (result, e) => {
                        self.unreported = e;
                        result
                    }
                };
            }
        }
        Err(ended.unwrap_or(Error::Closed))
    }

    /// A message held in memory; its size is declared with `SIZE=` when the envelope does
    /// not say.
    pub(crate) async fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Outcome, Error> {
        let sized;
        let envelope = match envelope.size {
            Some(_) => envelope,
            None => {
                sized = envelope.clone().size(message.len() as u64);
                &sized
            }
        };
        self.send(envelope, &mut Bytes(message)).await
    }

    pub(crate) async fn send_many(
        &mut self,
        messages: Vec<(&Envelope, &[u8])>,
    ) -> Result<Vec<Result<Outcome, Error>>, Error> {
        let mut results: Vec<Option<Result<Outcome, Error>>> =
            messages.iter().map(|_| None).collect();
        self.send_many_each(messages, &mut |i, r| {
            results[i] = Some(r);
            ControlFlow::Continue(())
        })
        .await?;
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Closed)))
            .collect())
    }

    /// [`Conn::send_many`], telling each message's result to `each` as soon as its final
    /// reply is in (exactly once per message, in the order they finish). When `each` says
    /// `Break`, no further message is started; those not started are reported
    /// [`Error::NotSent`] with [`Error::Cancelled`] as the cause.
    pub(crate) async fn send_many_each(
        &mut self,
        messages: Vec<(&Envelope, &[u8])>,
        each: &mut (dyn FnMut(usize, Result<Outcome, Error>) -> ControlFlow<()> + Send),
    ) -> Result<(), Error> {
        self.ready()?;
        let mut batch = Batch::new(messages, each);
        let ended = self.op(None::<&mut NoBody>, Some(&mut batch)).await.err();
        batch.finish(&mut self.engine, ended);
        Ok(())
    }

    pub(crate) async fn noop(&mut self) -> Result<ServerReply, Error> {
        self.ready()?;
        self.engine.noop(self.io.now())?;
        let ended = self.op(None::<&mut NoBody>, None).await.err();
        match (self.engine.take_reply(), ended) {
            (Some(reply), e) => {
                self.unreported = e;
                Ok(reply)
            }
            (None, e) => Err(e.unwrap_or(Error::Closed)),
        }
    }

    /// QUIT, its answer awaited at most `cap`, then the stream closed.
    pub(crate) async fn quit(&mut self, cap: Option<Duration>) -> Result<(), Error> {
        if self.busy {
            return Err(Error::Cancelled);
        }
        if self.engine.is_closed() {
            return Ok(());
        }
        self.engine.quit(self.io.now(), cap)?;
        let result = self.op(None::<&mut NoBody>, None).await;
        let deadline = self.io.now() + CLOSE_GRACE;
        self.io.close(deadline).await;
        result
    }

    /// True once the connection has ended: every later call fails.
    pub(crate) fn is_closed(&self) -> bool {
        self.engine.is_closed()
    }

    /// True when saying QUIT now cannot complete anything the caller began: nothing is in
    /// flight and no operation was cut short.
    pub(crate) fn may_quit_on_drop(&self) -> bool {
        !self.busy && self.engine.is_idle()
    }

    fn ready(&mut self) -> Result<(), Error> {
        if self.busy {
            return Err(Error::Cancelled);
        }
        if let Some(e) = self.unreported.take() {
            return Err(e);
        }
        // The error that ended the connection was reported once; now it is just closed.
        if self.engine.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    async fn op<B: BodySource>(
        &mut self,
        body: Option<&mut B>,
        batch: Option<&mut Batch<'_, '_>>,
    ) -> Result<(), Error> {
        self.busy = true;
        let result = self.run(body, batch).await;
        self.busy = false;
        result
    }

    /// The loop: do what the engine asks until it has nothing left to do.
    async fn run<B: BodySource>(
        &mut self,
        mut body: Option<&mut B>,
        mut batch: Option<&mut Batch<'_, '_>>,
    ) -> Result<(), Error> {
        loop {
            if let Some(b) = batch.as_deref_mut() {
                b.refill(&mut self.engine, self.io.now())?;
            }
            match self.engine.poll_io(self.io.now())? {
                Io::Transmit { bytes, deadline } => {
                    let r = self.io.write(bytes, deadline).await;
                    match r {
                        Ok(n) => self.engine.handle_written(n, self.io.now()),
                        Err(e) => self.engine.handle_io_error(e, self.io.now()),
                    }
                }
                Io::Receive { deadline } => {
                    let r = self.io.read(&mut self.read_buf, deadline).await;
                    self.received(r.map(Some));
                }
                Io::ReceiveNow => {
                    let r = self.io.read_now(&mut self.read_buf).await;
                    self.received(r);
                }
                Io::UpgradeTls { deadline } => {
                    let tls = match &self.tls_config {
                        Some(t) => t.clone(),
                        None => tls::client_config(self.engine.config())?,
                    };
                    let config = self.engine.config().clone();
                    let r = self.io.start_tls(&config, tls, deadline).await;
                    let now = self.io.now();
                    match r {
                        Ok(info) => self.engine.handle_tls_established(info, now),
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            self.engine.handle_timeout(now)
                        }
                        Err(e) => self
                            .engine
                            .handle_tls_failed(tls::handshake_error(&config, e)),
                    }
                }
                Io::NeedBody(_) => {
                    if let Some(b) = batch.as_deref_mut() {
                        b.feed(&mut self.engine)?;
                        continue;
                    }
                    let Some(reader) = body.as_deref_mut() else {
                        // A message started without its data: end it empty rather than hang.
                        self.engine.handle_body_end()?;
                        continue;
                    };
                    if self.body_buf.is_empty() {
                        self.body_buf = vec![0; BODY_CHUNK];
                    }
                    match reader.read(&mut self.body_buf).await {
                        Ok(0) => self.engine.handle_body_end()?,
                        Ok(n) => self.engine.handle_body(&self.body_buf[..n])?,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // No end of data for a message we could not read whole.
                            let e = Error::ReadMessage(Arc::new(e));
                            self.engine.abort(e.clone());
                            return Err(e);
                        }
                    }
                }
                Io::Done => {
                    // Replies just handled may have made room for the next message.
                    if batch
                        .as_deref()
                        .is_some_and(|b| b.has_unsent() && self.engine.can_send())
                    {
                        continue;
                    }
                    return Ok(());
                }
            }
        }
    }

    fn received(&mut self, r: io::Result<Option<usize>>) {
        let now = self.io.now();
        match r {
            Ok(None) => self.engine.handle_nothing_pending(),
            Ok(Some(0)) => self.engine.handle_eof(now),
            Ok(Some(n)) => self.engine.handle_input(&self.read_buf[..n], now),
            Err(e) => self.engine.handle_io_error(e, now),
        }
    }
}

/// Messages sent back to back on one connection: each next transaction starts as soon as the
/// previous message's end of data is released, so its commands share that write (RFC 2920
/// 3.1) and a stream of messages costs one round trip each. Each result goes to `each` as
/// soon as it is known.
pub(crate) struct Batch<'m, 'e> {
    messages: Vec<(&'m Envelope, &'m [u8])>,
    next: usize,
    in_flight: Vec<(postline_proto::TxId, usize)>,
    /// The caller asked for no more messages to be started.
    stopped: bool,
    each: &'e mut (dyn FnMut(usize, Result<Outcome, Error>) -> ControlFlow<()> + Send),
}

impl<'m, 'e> Batch<'m, 'e> {
    pub(crate) fn new(
        messages: Vec<(&'m Envelope, &'m [u8])>,
        each: &'e mut (dyn FnMut(usize, Result<Outcome, Error>) -> ControlFlow<()> + Send),
    ) -> Self {
        Batch {
            messages,
            next: 0,
            in_flight: Vec::new(),
            stopped: false,
            each,
        }
    }

    /// Collects finished transactions and starts every one the session allows now.
    fn refill(&mut self, engine: &mut Engine, now: Instant) -> Result<(), Error> {
        self.collect(engine);
        while self.has_unsent() && engine.can_send() {
            let index = self.next;
            self.next += 1;
            match engine.send(self.messages[index].0, now) {
                Ok(id) => self.in_flight.push((id, index)),
                Err(e) if e.leaves_session_usable() => self.tell(index, Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn tell(&mut self, index: usize, result: Result<Outcome, Error>) {
        if (self.each)(index, result).is_break() {
            self.stopped = true;
        }
    }

    fn collect(&mut self, engine: &mut Engine) {
        while let Some((id, result)) = engine.take_finished() {
            if let Some(pos) = self.in_flight.iter().position(|(t, _)| *t == id) {
                let (_, index) = self.in_flight.remove(pos);
                self.tell(index, result);
            }
        }
    }

    fn has_unsent(&self) -> bool {
        !self.stopped && self.next < self.messages.len()
    }

    /// The whole body of the message now taking data, and its end.
    fn feed(&mut self, engine: &mut Engine) -> Result<(), Error> {
        let sending = engine.session().sending();
        let Some(&(_, index)) = self.in_flight.iter().find(|(t, _)| Some(*t) == sending) else {
            return Err(Error::NotReady);
        };
        engine.handle_body(self.messages[index].1)?;
        engine.handle_body_end()
    }

    /// The results still untold. Those never started were certainly not delivered:
    /// [`Error::NotSent`] with what ended the connection.
    fn finish(mut self, engine: &mut Engine, ended: Option<Error>) {
        self.collect(engine);
        let cause = match ended {
            Some(e) => e,
            None if self.stopped => Error::Cancelled,
            None => Error::Closed,
        };
        let cause = match &cause {
            Error::DeliveryUnknown { cause, .. } => (**cause).clone(),
            other => other.clone(),
        };
        // Started but never finished: the engine reports every open transaction when a
        // connection fails, so this is only what it could not name.
        let unfinished: Vec<usize> = self.in_flight.drain(..).map(|(_, i)| i).collect();
        for index in unfinished.into_iter().chain(self.next..self.messages.len()) {
            let _ = (self.each)(
                index,
                Err(Error::NotSent {
                    cause: Box::new(cause.clone()),
                }),
            );
        }
    }
}
