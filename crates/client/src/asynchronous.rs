//! The async client: the same [`Engine`] over tokio and tokio-rustls.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use postline_proto::ehlo::Capabilities;
use postline_proto::session::Phase;

use crate::blocking::{resolve, BODY_CHUNK, IDLE_READS, QUIT_AFTER_REFUSAL, QUIT_ON_DROP};
use crate::config::{Config, Tls};
use crate::engine::{Batch, Engine, Step};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::reply::ServerReply;
use crate::tls::{self, TlsInfo};

/// Delay before trying the next address while an earlier attempt is still pending (RFC 8305
/// recommends 250 ms).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

/// Lets the runtime's I/O driver catch up (so readiness that arrived is known), then polls
/// `f` once: `None` when it would have to wait.
async fn poll_once<T>(mut f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Option<T> {
    tokio::task::yield_now().await;
    std::future::poll_fn(|cx| match f(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Whether the server has closed (or reset) the connection, without waiting; see the
/// blocking client's `peer_gone`.
async fn peer_gone(tcp: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let peeked = poll_once(|cx| tcp.poll_peek(cx, &mut ReadBuf::new(&mut byte))).await;
    match peeked {
        Some(Ok(0)) => true,
        Some(Ok(_)) | None => false,
        Some(Err(e)) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An SMTP client on one connection, for tokio. The same shape as [`crate::Client`]:
/// [`AsyncClient::send`] streams a message from an `AsyncRead`. Call
/// [`AsyncClient::quit`]; a client dropped inside a runtime says QUIT from a spawned task.
pub struct AsyncClient {
    engine: Engine,
    stream: Option<Stream>,
    peer: SocketAddr,
    tls_info: Option<TlsInfo>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    read_buf: Vec<u8>,
    /// Pieces of the message pass through here; allocated on the first message, then reused.
    body_buf: Vec<u8>,
    broken: bool,
    /// Owned by the task that says QUIT for a dropped client: dropping it again (the task
    /// cancelled at runtime shutdown) must not spawn yet another task.
    detached: bool,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("peer", &self.peer)
            .field("tls", &self.tls_info.as_ref().map(|t| &t.version))
            .finish_non_exhaustive()
    }
}

/// Happy eyeballs (RFC 8305): attempts start 250 ms apart, alternating address families; the
/// first to connect wins and the others are dropped.
async fn connect_tcp(config: &Config) -> Result<TcpStream, Error> {
    let port = config.effective_port();
    let host = config.host.clone();
    let addrs = tokio::task::spawn_blocking(move || resolve(&host, port))
        .await
        .map_err(|e| Error::Io(io::Error::other(e)))??;
    let timeout = config.timeouts.connect;
    let mut attempts = tokio::task::JoinSet::new();
    let mut pending = addrs.into_iter();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    loop {
        if let Some(addr) = pending.next() {
            attempts.spawn(async move {
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
                }
            });
        } else if attempts.is_empty() {
            break;
        }
        let next = if pending.len() > 0 {
            tokio::time::timeout(ATTEMPT_DELAY, attempts.join_next())
                .await
                .ok()
                .flatten()
        } else {
            attempts.join_next().await
        };
        match next {
            Some(Ok(Ok(s))) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Some(Ok(Err(e))) => last = e,
            Some(Err(e)) => last = io::Error::other(e),
            None => {}
        }
    }
    Err(Error::Connect {
        host: config.host.clone(),
        port,
        source: last,
    })
}

async fn tls_handshake(
    config: &Config,
    tls_config: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> Result<(Stream, TlsInfo), Error> {
    let name = tls::server_name(config)?;
    let connector = TlsConnector::from(tls_config);
    let t = config.timeouts.command;
    let stream = match tokio::time::timeout(t, connector.connect(name, tcp)).await {
        Err(_) => {
            return Err(Error::Timeout {
                phase: Phase::Command,
                after: t,
            })
        }
        Ok(Err(e)) => return Err(tls::handshake_error(config, e)),
        Ok(Ok(s)) => s,
    };
    let info = TlsInfo::from_connection(stream.get_ref().1);
    Ok((Stream::Tls(Box::new(stream)), info))
}

impl AsyncClient {
    /// Connects, reads the greeting, says EHLO, starts TLS and authenticates as configured.
    pub async fn connect(config: Config) -> Result<AsyncClient, Error> {
        let engine = Engine::new(config)?;
        let config = engine.config();
        let tls_config = match config.tls {
            Tls::None => None,
            _ => Some(tls::client_config(config)?),
        };
        let tcp = connect_tcp(config).await?;
        let peer = tcp.peer_addr()?;
        let (stream, tls_info) = match (&tls_config, config.tls) {
            (Some(tc), Tls::Implicit) => {
                let (s, info) = tls_handshake(config, tc.clone(), tcp).await?;
                (s, Some(info))
            }
            _ => (Stream::Plain(tcp), None),
        };
        let mut client = AsyncClient {
            engine,
            stream: Some(stream),
            peer,
            tls_info,
            tls_config,
            read_buf: vec![0; 16 * 1024],
            body_buf: Vec::new(),
            broken: false,
            detached: false,
        };
        if let Err(e) = client.drive(None).await {
            if matches!(e, Error::Rejected(_)) {
                // The session queued QUIT: say it, and wait briefly for the 221.
                let _ = client.run(&mut None, None, Some(QUIT_AFTER_REFUSAL)).await;
            }
            return Err(e);
        }
        Ok(client)
    }

    /// Sends one message streamed from `message`; see [`crate::Client::send`].
    pub async fn send<R: AsyncRead + Unpin + Send>(
        &mut self,
        envelope: &Envelope,
        mut message: R,
    ) -> Result<Outcome, Error> {
        self.usable()?;
        self.check_idle().await?;
        self.engine.begin_send(envelope)?;
        self.drive(Some(&mut message)).await?;
        self.engine.take_outcome().unwrap_or(Err(Error::Closed))
    }

    /// Sends a message held in memory, declaring its size.
    pub async fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Outcome, Error> {
        let env;
        let envelope = if envelope.size.is_none() {
            env = envelope.clone().size(message.len() as u64);
            &env
        } else {
            envelope
        };
        self.send(envelope, message).await
    }

    /// Sends many messages on this connection, deep-pipelined; see [`crate::Client::send_many`].
    pub async fn send_many<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
    ) -> Result<Vec<Result<Outcome, Error>>, Error> {
        self.usable()?;
        let mut batch = Batch::new(messages.into_iter().collect());
        let result = self.run(&mut None, Some(&mut batch), None).await;
        if result.as_ref().is_err_and(|e| !e.leaves_session_usable()) {
            self.broken = true;
        }
        Ok(batch.finish(&mut self.engine, result.as_ref().err()))
    }

    /// NOOP: checks the connection is alive.
    pub async fn noop(&mut self) -> Result<ServerReply, Error> {
        self.usable()?;
        self.check_idle().await?;
        self.engine.noop()?;
        self.drive(None).await?;
        self.engine.take_reply().ok_or(Error::Closed)
    }

    /// Says QUIT and closes the connection.
    pub async fn quit(mut self) -> Result<(), Error> {
        self.quit_inner(None).await
    }

    /// What the server announced in EHLO.
    pub fn capabilities(&self) -> &Capabilities {
        self.engine.capabilities()
    }

    /// The server's greeting (the 220 banner).
    pub fn greeting(&self) -> Option<&ServerReply> {
        self.engine.greeting()
    }

    /// The server's last EHLO (or HELO) reply, as sent.
    pub fn ehlo_reply(&self) -> Option<&ServerReply> {
        self.engine.ehlo_reply()
    }

    /// The negotiated TLS parameters, when the connection is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }

    /// True after a successful AUTH.
    pub fn is_authenticated(&self) -> bool {
        self.engine.session.is_authenticated()
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn usable(&self) -> Result<(), Error> {
        if self.broken || self.engine.is_closed() || self.stream.is_none() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Before a new command on an idle connection, what the server sent unprompted; see the
    /// blocking client's `check_idle`.
    async fn check_idle(&mut self) -> Result<(), Error> {
        let (mut got, mut eof) = (false, false);
        for _ in 0..IDLE_READS {
            let stream = self.stream.as_mut().ok_or(Error::Closed)?;
            let buf = &mut self.read_buf;
            let read = poll_once(|cx| {
                let mut rb = ReadBuf::new(buf);
                match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match read {
                None => break,
                Some(Ok(0)) => {
                    eof = true;
                    break;
                }
                Some(Ok(n)) => {
                    got = true;
                    self.engine.received(&self.read_buf[..n]);
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => {
                    let err = self.lost(e);
                    self.broken = true;
                    return Err(err);
                }
            }
        }
        if got {
            self.drive(None).await?;
        }
        if eof {
            let result = self.engine.eof();
            self.broken = true;
            return result.and(Err(Error::Closed));
        }
        self.usable()
    }

    async fn quit_inner(&mut self, cap: Option<Duration>) -> Result<(), Error> {
        if self.stream.is_none() || self.broken || self.engine.is_closed() {
            return Ok(());
        }
        self.engine.quit()?;
        let result = self.run(&mut None, None, cap).await;
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
        }
        result
    }

    async fn drive(
        &mut self,
        body: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    ) -> Result<(), Error> {
        let mut body = body;
        let result = self.run(&mut body, None, None).await;
        if result.as_ref().is_err_and(|e| !e.leaves_session_usable()) {
            self.broken = true;
        }
        result
    }

    async fn run(
        &mut self,
        body: &mut Option<&mut (dyn AsyncRead + Unpin + Send)>,
        mut batch: Option<&mut Batch<'_>>,
        cap: Option<Duration>,
    ) -> Result<(), Error> {
        let timeouts = self.engine.config().timeouts;
        let limit = |d: Duration| cap.map_or(d, |c| d.min(c));
        let mut timer: Option<(u64, Instant)> = None;
        loop {
            if let Some(b) = batch.as_deref_mut() {
                b.refill(&mut self.engine)?;
            }
            match self.engine.step()? {
                Step::Write => {
                    let stream = self.stream.as_mut().ok_or(Error::Closed)?;
                    let t = limit(if self.engine.session.sending().is_some() {
                        timeouts.data_block
                    } else {
                        timeouts.command
                    });
                    if self.engine.end_of_data_unwritten() && peer_gone(stream.tcp()).await {
                        // Gone before the end of data left: certainly not delivered.
                        return Err(self.engine.eof().err().unwrap_or(Error::Closed));
                    }
                    let stream = self.stream.as_mut().ok_or(Error::Closed)?;
                    let bytes = self.engine.out.transmit();
                    let written = match tokio::time::timeout(t, stream.write(bytes)).await {
                        Err(_) => {
                            return Err(Error::Timeout {
                                phase: Phase::DataBlock,
                                after: t,
                            })
                        }
                        Ok(r) => r,
                    };
                    match written {
                        Ok(0) => {
                            return Err(Error::Io(io::Error::new(
                                io::ErrorKind::WriteZero,
                                "connection closed while writing",
                            )))
                        }
                        Ok(n) => self.engine.advance(n),
                        Err(e) => return Err(self.lost(e)),
                    }
                    if self.engine.out.transmit().is_empty() {
                        let stream = self.stream.as_mut().ok_or(Error::Closed)?;
                        match tokio::time::timeout(t, stream.flush()).await {
                            Err(_) => {
                                return Err(Error::Timeout {
                                    phase: Phase::DataBlock,
                                    after: t,
                                })
                            }
                            Ok(Err(e)) => return Err(self.lost(e)),
                            Ok(Ok(())) => {}
                        }
                    }
                }
                Step::Read(phase) => {
                    let t = limit(timeouts.for_phase(phase));
                    let started = match timer {
                        Some((seen, at)) if seen == self.engine.replies() => at,
                        _ => {
                            let now = Instant::now();
                            timer = Some((self.engine.replies(), now));
                            now
                        }
                    };
                    let left = t.saturating_sub(started.elapsed());
                    let stream = self.stream.as_mut().ok_or(Error::Closed)?;
                    let read = tokio::time::timeout(left, stream.read(&mut self.read_buf)).await;
                    match read {
                        Err(_) => return Err(Error::Timeout { phase, after: t }),
                        Ok(Ok(0)) => {
                            self.engine.eof()?;
                            return Ok(());
                        }
                        Ok(Ok(n)) => self.engine.received(&self.read_buf[..n]),
                        Ok(Err(e)) => return Err(self.lost(e)),
                    }
                }
                Step::StartTls => {
                    let Some(Stream::Plain(tcp)) = self.stream.take() else {
                        return Err(Error::Invalid("STARTTLS on an encrypted connection".into()));
                    };
                    let tc = match &self.tls_config {
                        Some(tc) => tc.clone(),
                        None => tls::client_config(self.engine.config())?,
                    };
                    let (s, info) = tls_handshake(self.engine.config(), tc, tcp).await?;
                    self.stream = Some(s);
                    self.tls_info = Some(info);
                    self.engine.tls_done()?;
                }
                Step::Body => {
                    if let Some(b) = batch.as_deref_mut() {
                        b.feed(&mut self.engine)?;
                        continue;
                    }
                    let Some(reader) = body.as_mut() else {
                        return Err(Error::Invalid("message data wanted but none given".into()));
                    };
                    if self.body_buf.is_empty() {
                        self.body_buf = vec![0; BODY_CHUNK];
                    }
                    let chunk = &mut self.body_buf;
                    let n = reader.read(chunk).await?;
                    if n == 0 {
                        self.engine.body_end()?;
                    } else {
                        self.engine.body(&self.body_buf[..n])?;
                    }
                }
                Step::Idle => {
                    // Replies just handled may have made room for the next message.
                    if let Some(b) = batch.as_deref_mut() {
                        if b.has_unsent() && self.engine.can_begin() {
                            continue;
                        }
                    }
                    return Ok(());
                }
            }
        }
    }

    fn lost(&mut self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => match self.engine.eof() {
                Err(err) => err,
                Ok(()) => Error::Io(e),
            },
            _ => Error::Io(e),
        }
    }
}

impl Drop for AsyncClient {
    fn drop(&mut self) {
        if self.detached || self.stream.is_none() || self.broken || self.engine.is_closed() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Hand the connection to a task that says QUIT; dropping cannot await.
        let Ok(placeholder) = Engine::new(self.engine.config().clone()) else {
            return;
        };
        let mut rest = AsyncClient {
            engine: std::mem::replace(&mut self.engine, placeholder),
            stream: self.stream.take(),
            peer: self.peer,
            tls_info: None,
            tls_config: None,
            read_buf: std::mem::take(&mut self.read_buf),
            body_buf: Vec::new(),
            broken: false,
            detached: true,
        };
        handle.spawn(async move {
            let _ = rest.quit_inner(Some(QUIT_ON_DROP)).await;
        });
    }
}
