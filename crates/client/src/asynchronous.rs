//! The async client: the same driver loop as the blocking client, over tokio and
//! tokio-rustls. Deadlines are tokio timers, so tests on tokio's paused clock run the real
//! client in virtual time.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::connection::AsyncConnection;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use postline_proto::ehlo::Capabilities;

use crate::config::Config;
use crate::driver::{closed_in_handshake, BodySource, Conn, Transport, QUIT_ON_DROP};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::reply::ServerReply;
use crate::tls::{self, TlsInfo};

enum Stream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Only while the handshake owns the stream; a failed handshake leaves it here.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the stream was lost in a TLS handshake",
    )
}

/// The tokio transport over any `AsyncRead + AsyncWrite` stream.
pub(crate) struct TokioIo<S> {
    stream: Stream<S>,
}

/// `f` bounded by `deadline`: `TimedOut` when it passes first.
async fn until<T>(
    deadline: Option<Instant>,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match deadline {
        None => f.await,
        Some(d) => tokio::time::timeout_at(tokio::time::Instant::from_std(d), f)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "deadline reached"))),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for TokioIo<S> {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    async fn read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => until(deadline, s.read(buf)).await,
            Stream::Tls(s) => until(deadline, s.read(buf)).await,
            Stream::Gone => Err(gone()),
        }
    }

    async fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // Let the runtime's I/O driver catch up, so readiness that arrived is known.
        tokio::task::yield_now().await;
        let stream = &mut self.stream;
        std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(buf);
            let polled = match stream {
                Stream::Plain(s) => Pin::new(s).poll_read(cx, &mut rb),
                Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut rb),
                Stream::Gone => return Poll::Ready(Err(gone())),
            };
            Poll::Ready(match polled {
                Poll::Ready(Ok(())) => Ok(Some(rb.filled().len())),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(None),
            })
        })
        .await
    }

    async fn write(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> io::Result<usize> {
            let n = w.write(buf).await?;
            w.flush().await?;
            Ok(n)
        }
        match &mut self.stream {
            Stream::Plain(s) => until(deadline, write_flush(s, buf)).await,
            Stream::Tls(s) => until(deadline, write_flush(s.as_mut(), buf)).await,
            Stream::Gone => Err(gone()),
        }
    }

    async fn start_tls(
        &mut self,
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
        deadline: Option<Instant>,
    ) -> io::Result<TlsInfo> {
        let name = tls::server_name(config).map_err(io::Error::other)?;
        let Stream::Plain(s) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(gone());
        };
        let tls = until(deadline, TlsConnector::from(tls).connect(name, s))
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => closed_in_handshake(),
                _ => e,
            })?;
        let info = TlsInfo::from_client_connection(tls.get_ref().1);
        self.stream = Stream::Tls(Box::new(tls));
        Ok(info)
    }

    async fn close(&mut self, deadline: Instant) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => until(Some(deadline), s.shutdown()).await,
            Stream::Tls(s) => until(Some(deadline), s.shutdown()).await,
            Stream::Gone => Ok(()),
        };
    }
}

/// Reads the message from an async reader.
struct Body<R>(R);

impl<R: AsyncRead + Unpin + Send> BodySource for Body<R> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }
}

/// An SMTP client on one connection, for tokio. The same shape as [`crate::Client`]:
/// [`AsyncClient::send`] streams a message from an `AsyncRead`. Call
/// [`AsyncClient::quit`]; an idle client dropped inside a runtime says QUIT from a spawned
/// task, and one dropped in the middle of a message just closes, so that message is never
/// finished behind the caller's back.
///
/// [`AsyncClient::connect`] gives an `AsyncClient<AsyncConnection>` (TCP, or a Unix socket
/// when the server is a path: [`Config::unix_socket`]); [`AsyncClient::from_stream`] takes any
/// tokio stream.
///
/// ```no_run
/// use postline::{AsyncClient, Config, Envelope, Tls};
/// # async fn run() -> Result<(), postline::Error> {
/// let config = Config::relay("smtp.example.com").port(587).tls(Tls::StartTls).credentials("me", "secret");
/// let mut client = AsyncClient::connect(config).await?;
/// let envelope = Envelope::new("me@example.com", ["you@example.org"])?;
/// let outcome = client.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello\r\n").await?;
/// println!("accepted: {}", outcome.reply);
/// client.quit().await
/// # }
/// ```
pub struct AsyncClient<S: AsyncRead + AsyncWrite + Unpin + Send + 'static = AsyncConnection> {
    conn: Option<Conn<TokioIo<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> std::fmt::Debug for AsyncClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("peer", &self.conn.as_ref().and_then(|c| c.peer))
            .field("engine", &self.conn.as_ref().map(|c| &c.engine))
            .finish_non_exhaustive()
    }
}

impl AsyncClient {
    /// Connects over TCP (or to the Unix socket, when the server is a path:
    /// [`Config::unix_socket`]), reads the greeting, says EHLO, starts TLS and authenticates
    /// as configured.
    pub async fn connect(config: Config) -> Result<AsyncClient, Error> {
        let started = tokio::time::Instant::now().into_std();
        let config = config.prepare_tls()?;
        let (stream, peer, config) = crate::connect::tokio_open(config, started).await?;
        let io = TokioIo {
            stream: Stream::Plain(stream),
        };
        let conn = Conn::establish(config, io, peer, started).await?;
        Ok(AsyncClient { conn: Some(conn) })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncClient<S> {
    /// Runs the session over a stream the caller opened (a proxy, a Unix socket, an
    /// in-memory pipe); see [`crate::Client::from_stream`].
    pub async fn from_stream(stream: S, config: Config) -> Result<Self, Error> {
        let io = TokioIo {
            stream: Stream::Plain(stream),
        };
        let started = io.now();
        let conn = Conn::establish(config, io, None, started).await?;
        Ok(AsyncClient { conn: Some(conn) })
    }

    fn conn(&mut self) -> Result<&mut Conn<TokioIo<S>>, Error> {
        self.conn.as_mut().ok_or(Error::Closed)
    }

    /// Sends one message streamed from `message`; see [`crate::Client::send`].
    pub async fn send<R: AsyncRead + Unpin + Send>(
        &mut self,
        envelope: &Envelope,
        message: R,
    ) -> Result<Outcome, Error> {
        self.conn()?.send(envelope, &mut Body(message)).await
    }

    /// Checks whether the server would take `envelope` without sending a message: MAIL,
    /// each RCPT, then RSET, never DATA; see [`crate::Client::check`].
    pub async fn check(&mut self, envelope: &Envelope) -> Result<Outcome, Error> {
        self.conn()?.check(envelope).await
    }

    /// Sends a message held in memory, declaring its size.
    pub async fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Outcome, Error> {
        self.conn()?.send_bytes(envelope, message).await
    }

    /// Sends a [`crate::Message`] to the recipients of its envelope (Bcc included).
    #[cfg(feature = "message")]
    pub async fn send_message(&mut self, message: &crate::Message) -> Result<Outcome, Error> {
        self.send_bytes(message.envelope(), message.as_bytes())
            .await
    }

    /// Sends many messages on this connection, deep-pipelined; see [`crate::Client::send_many`].
    pub async fn send_many<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
    ) -> Result<Vec<Result<Outcome, Error>>, Error> {
        let messages = messages.into_iter().collect();
        self.conn()?.send_many(messages).await
    }

    /// [`AsyncClient::send_many`], giving each result to `each` as soon as it is known; see
    /// [`crate::Client::send_many_each`].
    pub async fn send_many_each<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
        mut each: impl FnMut(usize, Result<Outcome, Error>) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<(), Error> {
        let messages = messages.into_iter().collect();
        self.conn()?.send_many_each(messages, &mut each).await
    }

    /// NOOP: checks the connection is alive.
    pub async fn noop(&mut self) -> Result<ServerReply, Error> {
        self.conn()?.noop().await
    }

    /// Says QUIT, waits for its answer at most the command timeout (5 min by default, as RFC
    /// 5321 4.5.3.2 sets; dropping an idle client waits 5 s), and closes the connection.
    /// [`Error::Cancelled`] when an earlier call was cut short.
    pub async fn quit(mut self) -> Result<(), Error> {
        match self.conn.take() {
            Some(mut c) => c.quit(None).await,
            None => Ok(()),
        }
    }

    pub(crate) fn engine(&self) -> &crate::engine::Engine {
        // `conn` is only taken by `quit` (which consumes the client) and by `drop`.
        &self.conn.as_ref().expect("connection present").engine
    }

    /// What the server announced in EHLO.
    pub fn capabilities(&self) -> &Capabilities {
        self.engine().capabilities()
    }

    /// The server's greeting (the 220 banner).
    pub fn greeting(&self) -> Option<&ServerReply> {
        self.engine().greeting()
    }

    /// The server's last EHLO (or HELO) reply, as sent.
    pub fn ehlo_reply(&self) -> Option<&ServerReply> {
        self.engine().ehlo_reply()
    }

    /// The negotiated TLS parameters, when the connection is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.engine().tls_info()
    }

    /// The server's reply accepting AUTH (235), after a successful AUTH.
    pub fn auth_reply(&self) -> Option<&ServerReply> {
        self.engine().auth_reply()
    }

    /// True after a successful AUTH.
    pub fn is_authenticated(&self) -> bool {
        self.engine().session().is_authenticated()
    }

    /// The server's address, when the client opened the TCP connection to it itself (not
    /// through a proxy, which resolved the server's name; not over a Unix socket).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.as_ref().and_then(|c| c.peer)
    }

    /// True once the connection has ended; see [`crate::Client::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.conn.as_ref().is_none_or(|c| c.is_closed())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for AsyncClient<S> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !conn.may_quit_on_drop() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Dropping cannot await: a task says QUIT, bounded, and closes.
        handle.spawn(async move {
            let _ = conn.quit(Some(QUIT_ON_DROP)).await;
        });
    }
}
