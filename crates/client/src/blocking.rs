//! The blocking client: the driver loop over a blocking stream, with rustls driven record by
//! record so that every read and write, the TLS handshake and each TLS record included, ends
//! by the engine's deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::connection::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConnection;

use postline_proto::ehlo::Capabilities;

use crate::config::Config;
use crate::driver::{block_on, closed_in_handshake, BodySource, Conn, Transport, QUIT_ON_DROP};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::reply::ServerReply;
use crate::tls::{self, TlsInfo};

/// A stream the blocking client can drive: reads and writes that can be bounded in time.
/// Implemented for `TcpStream` and `UnixStream`; implement it to carry a session over a
/// proxy, a pipe or anything else that reads and writes.
pub trait BlockingStream: Read + Write {
    /// Bounds each later read (`None`: no bound); a read that hits it fails with
    /// `WouldBlock` or `TimedOut`.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bounds each later write, likewise.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Reads what is already there without waiting (`Ok(None)`: nothing). The default says
    /// nothing is there, which costs only the early notice of a server that closed.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let _ = buf;
        Ok(None)
    }
    /// Ends the stream after QUIT (both directions).
    fn shutdown(&mut self) {}
}

/// One `recv(MSG_DONTWAIT)`: a single system call, where switching the socket to
/// non-blocking and back would take three.
fn recv_now(fd: impl std::os::fd::AsFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::net::recv(fd, buf, rustix::net::RecvFlags::DONTWAIT) {
        Ok((n, _)) => Ok(Some(n)),
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) if e == rustix::io::Errno::INTR => Ok(None),
        Err(e) => Err(e.into()),
    }
}

macro_rules! socket_stream {
    ($t:ty) => {
        impl BlockingStream for $t {
            fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, timeout)
            }
            fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                <$t>::set_write_timeout(self, timeout)
            }
            fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
                recv_now(&*self, buf)
            }
            fn shutdown(&mut self) {
                let _ = <$t>::shutdown(self, std::net::Shutdown::Both);
            }
        }
    };
}
socket_stream!(TcpStream);
socket_stream!(std::os::unix::net::UnixStream);

/// The shortest timeout a socket accepts (zero means "none" to `setsockopt`).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline reached")
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A stream whose reads and writes end by a deadline. The socket timeout is changed only
/// when the one set would outlast the deadline, so the usual message costs no `setsockopt`.
struct Deadlined<S> {
    s: S,
    read_armed: Option<Duration>,
    write_armed: Option<Duration>,
}

/// The timeout to arm for `deadline`, or `TimedOut` when it has passed.
fn left(deadline: Option<Instant>) -> io::Result<Option<Duration>> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(timed_out())
            } else {
                Ok(Some(left.max(MIN_TIMEOUT)))
            }
        }
    }
}

/// Whether an armed timeout can stay: it ends no later than the wanted one (a read that
/// wakes early is simply tried again), and not so much earlier that waits turn into polling.
fn keeps(armed: Option<Duration>, want: Option<Duration>) -> bool {
    match (armed, want) {
        (Some(a), Some(w)) => a <= w && a >= w / 2,
        (None, None) => true,
        _ => false,
    }
}

impl<S: BlockingStream> Deadlined<S> {
    fn read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        loop {
            let want = left(deadline)?;
            if !keeps(self.read_armed, want) {
                self.s.set_read_timeout(want)?;
                self.read_armed = want;
            }
            match self.s.read(buf) {
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    fn write(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        loop {
            let want = left(deadline)?;
            if !keeps(self.write_armed, want) {
                self.s.set_write_timeout(want)?;
                self.write_armed = want;
            }
            match self.s.write(buf) {
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

/// `Read`/`Write` for rustls' `read_tls`/`write_tls`, each call bounded by the deadline.
struct Bounded<'a, S> {
    io: &'a mut Deadlined<S>,
    deadline: Option<Instant>,
}

impl<S: BlockingStream> Read for Bounded<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf, self.deadline)
    }
}

impl<S: BlockingStream> Write for Bounded<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf, self.deadline)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.io.s.flush()
    }
}

fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The blocking transport: a stream, and rustls over it once TLS is on.
pub(crate) struct BlockingIo<S> {
    io: Deadlined<S>,
    tls: Option<Box<ClientConnection>>,
}

impl<S: BlockingStream> BlockingIo<S> {
    fn new(s: S) -> Self {
        BlockingIo {
            io: Deadlined {
                s,
                read_armed: None,
                write_armed: None,
            },
            tls: None,
        }
    }

    /// Writes every TLS record rustls has ready.
    fn flush_tls(
        io: &mut Deadlined<S>,
        conn: &mut ClientConnection,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        while conn.wants_write() {
            if conn.write_tls(&mut Bounded { io, deadline })? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Reads TLS records until `conn` has something new (plaintext, or progress in the
    /// handshake); 0 at end of stream.
    fn fill_tls(
        io: &mut Deadlined<S>,
        conn: &mut ClientConnection,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let n = conn.read_tls(&mut Bounded { io, deadline })?;
        conn.process_new_packets().map_err(tls_io_error)?;
        Ok(n)
    }
}

impl<S: BlockingStream> Transport for BlockingIo<S> {
    fn now(&self) -> Instant {
        Instant::now()
    }

    async fn read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        let Some(conn) = self.tls.as_deref_mut() else {
            return self.io.read(buf, deadline);
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            Self::flush_tls(&mut self.io, conn, deadline)?;
            if Self::fill_tls(&mut self.io, conn, deadline)? == 0 {
                return Ok(0);
            }
        }
    }

    async fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(conn) = self.tls.as_deref_mut() else {
            return self.io.s.read_now(buf);
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let mut raw = [0u8; 4096];
            match self.io.s.read_now(&mut raw)? {
                None => return Ok(None),
                Some(0) => return Ok(Some(0)),
                Some(n) => {
                    // rustls may take less than offered; feed it all, or the stream is lost.
                    let mut rest = &raw[..n];
                    while !rest.is_empty() {
                        if conn.read_tls(&mut rest)? == 0 {
                            break;
                        }
                        conn.process_new_packets().map_err(tls_io_error)?;
                    }
                }
            }
        }
    }

    async fn write(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        let Some(conn) = self.tls.as_deref_mut() else {
            return self.io.write(buf, deadline);
        };
        let n = conn.writer().write(buf)?;
        Self::flush_tls(&mut self.io, conn, deadline)?;
        Ok(n)
    }

    async fn start_tls(
        &mut self,
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
        deadline: Option<Instant>,
    ) -> io::Result<TlsInfo> {
        let name = tls::server_name(config).map_err(io::Error::other)?;
        let mut conn = ClientConnection::new(tls, name).map_err(tls_io_error)?;
        while conn.is_handshaking() {
            if conn.wants_write() {
                Self::flush_tls(&mut self.io, &mut conn, deadline)?;
            } else if Self::fill_tls(&mut self.io, &mut conn, deadline)? == 0 {
                return Err(closed_in_handshake());
            }
        }
        Self::flush_tls(&mut self.io, &mut conn, deadline)?;
        let info = TlsInfo::from_client_connection(&conn);
        self.tls = Some(Box::new(conn));
        Ok(info)
    }

    async fn close(&mut self, deadline: Instant) {
        if let Some(conn) = self.tls.as_deref_mut() {
            conn.send_close_notify();
            let _ = Self::flush_tls(&mut self.io, conn, Some(deadline));
        }
        self.io.s.shutdown();
    }
}

/// Reads the message from a blocking reader.
struct Body<R>(R);

impl<R: Read> BodySource for Body<R> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// A blocking SMTP client on one connection. Send any number of messages with
/// [`Client::send`]; dropping an idle client says QUIT (waiting at most 5 s).
///
/// [`Client::connect`] gives a `Client<Connection>` (TCP, or a Unix socket when the server is
/// a path: [`Config::unix_socket`]); [`Client::from_stream`] takes any [`BlockingStream`].
///
/// ```no_run
/// use postline::{Client, Config, Envelope, Tls};
/// let mut c = Client::connect(
///     Config::relay("smtp.example.com").port(587).tls(Tls::StartTls).credentials("me", "secret"),
/// )?;
/// let env = Envelope::new("me@example.com", ["you@example.org"])?;
/// let outcome = c.send(&env, &b"Subject: hi\r\n\r\nHello\r\n"[..])?;
/// println!("queued: {}", outcome.reply);
/// # Ok::<(), postline::Error>(())
/// ```
pub struct Client<S: BlockingStream = Connection> {
    conn: Conn<BlockingIo<S>>,
}

impl<S: BlockingStream> std::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.conn.peer)
            .field("engine", &self.conn.engine)
            .finish_non_exhaustive()
    }
}

/// The server's address and the configuration once connected: without a proxy, the peer
/// and (for the EHLO address literal) the local address; through a proxy the server's
/// address is not known here (the proxy resolved its name) and the address the server sees
/// is the proxy's own, when the proxy told it.
pub(crate) fn after_connect(
    config: Config,
    peer: std::io::Result<std::net::SocketAddr>,
    local: std::io::Result<std::net::SocketAddr>,
    proxy_bound: Option<std::net::SocketAddr>,
) -> (Option<std::net::SocketAddr>, Config) {
    if config.proxy.is_some() {
        let config = match proxy_bound {
            Some(b) => config.hello_from_local_address(b),
            None => config,
        };
        return (None, config);
    }
    let config = match local {
        Ok(local) => config.hello_from_local_address(local),
        Err(_) => config,
    };
    (peer.ok(), config)
}

impl Client {
    /// Connects over TCP (or to the Unix socket, when the server is a path:
    /// [`Config::unix_socket`]), reads the greeting, says EHLO, starts TLS and authenticates
    /// as configured.
    pub fn connect(config: Config) -> Result<Client, Error> {
        let started = Instant::now();
        let config = config.prepare_tls()?;
        let (stream, peer, config) = crate::connect::open(config, started)?;
        block_on(Conn::establish(
            config,
            BlockingIo::new(stream),
            peer,
            started,
        ))
        .map(|conn| Client { conn })
    }
}

impl<S: BlockingStream> Client<S> {
    /// Runs the session over a stream the caller opened (a proxy, a Unix socket, a pipe):
    /// greeting, EHLO, TLS and AUTH as configured. The host in `config` names the server for
    /// TLS and AUTH; it is not connected to. `Config::relay` requires STARTTLS by default:
    /// over a local socket with no TLS, say `.tls(Tls::None)` (and, to authenticate there,
    /// `.allow_plaintext_auth(true)`).
    ///
    /// The stream's `write` must return what it handed on, not what it buffered, for the
    /// in-doubt decision to be exact (a stream that buffers errs towards "not sent"). Its
    /// `read_now` (default: none) gives the early notice of a server that closed.
    pub fn from_stream(stream: S, config: Config) -> Result<Self, Error> {
        let started = Instant::now();
        block_on(Conn::establish(
            config,
            BlockingIo::new(stream),
            None,
            started,
        ))
        .map(|conn| Client { conn })
    }

    /// Sends one message, streamed from `message` in fixed-size pieces (dot-stuffing and line
    /// endings are taken care of). Returns the per-recipient outcome when the server accepted
    /// the message for at least one recipient; [`Error::MessageRejected`] otherwise, with the
    /// connection still usable.
    pub fn send(&mut self, envelope: &Envelope, message: impl Read) -> Result<Outcome, Error> {
        block_on(self.conn.send(envelope, &mut Body(message)))
    }

    /// Checks whether the server would take `envelope`, without sending a message (what
    /// swaks' `--quit-after rcpt` does): MAIL, each RCPT, then RSET; never DATA, so nothing
    /// can be delivered. `Ok` when the sender was accepted, with each recipient's reply
    /// (every one refused is an answer too: [`Outcome::accepted`] is then empty) and, as
    /// [`Outcome::reply`], the MAIL reply; a refused MAIL is [`Error::MessageRejected`] as
    /// [`Client::send`] would say.
    /// The connection stays usable.
    pub fn check(&mut self, envelope: &Envelope) -> Result<Outcome, Error> {
        block_on(self.conn.check(envelope))
    }

    /// Sends a message held in memory; its size is declared with `SIZE=` when the envelope
    /// does not say.
    pub fn send_bytes(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Outcome, Error> {
        block_on(self.conn.send_bytes(envelope, message))
    }

    /// Sends a [`crate::Message`] to the recipients of its envelope (Bcc included).
    #[cfg(feature = "message")]
    pub fn send_message(&mut self, message: &crate::Message) -> Result<Outcome, Error> {
        self.send_bytes(message.envelope(), message.as_bytes())
    }

    /// Sends many messages on this connection, deep-pipelined: each message's end of data and
    /// the next message's MAIL, RCPT and DATA leave in one write, so a stream of messages
    /// costs one round trip each when the server offers PIPELINING. Returns each message's
    /// result in order: delivered, refused, in doubt ([`Error::DeliveryUnknown`]) or not sent
    /// ([`Error::NotSent`]); `Err` only when the connection was unusable from the start.
    pub fn send_many<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
    ) -> Result<Vec<Result<Outcome, Error>>, Error> {
        block_on(self.conn.send_many(messages.into_iter().collect()))
    }

    /// [`Client::send_many`], giving each message's result (by its position) to `each` as
    /// soon as its final reply is in, exactly once per message: a caller can record a
    /// delivery while the next messages are still on the wire. When `each` returns
    /// `ControlFlow::Break`, no further message is started (those in flight finish); the
    /// rest are reported [`Error::NotSent`] with [`Error::Cancelled`] as the cause. `Err`
    /// only when the connection was unusable from the start (then `each` is never called).
    pub fn send_many_each<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
        mut each: impl FnMut(usize, Result<Outcome, Error>) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<(), Error> {
        block_on(
            self.conn
                .send_many_each(messages.into_iter().collect(), &mut each),
        )
    }

    /// NOOP: checks the connection is alive.
    pub fn noop(&mut self) -> Result<ServerReply, Error> {
        block_on(self.conn.noop())
    }

    /// Says QUIT, waits for its answer at most the command timeout (5 min by default, as RFC
    /// 5321 4.5.3.2 sets; dropping an idle client waits 5 s), and closes the connection.
    /// [`Error::Cancelled`] when an earlier call was cut short.
    pub fn quit(mut self) -> Result<(), Error> {
        block_on(self.conn.quit(None))
    }

    /// What the server announced in EHLO (after STARTTLS, the encrypted announcement).
    pub fn capabilities(&self) -> &Capabilities {
        self.conn.engine.capabilities()
    }

    /// The server's greeting (the 220 banner).
    pub fn greeting(&self) -> Option<&ServerReply> {
        self.conn.engine.greeting()
    }

    /// The server's last EHLO (or HELO) reply, as sent.
    pub fn ehlo_reply(&self) -> Option<&ServerReply> {
        self.conn.engine.ehlo_reply()
    }

    /// The negotiated TLS parameters, when the connection is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.conn.engine.tls_info()
    }

    /// The server's reply accepting AUTH (235), after a successful AUTH.
    pub fn auth_reply(&self) -> Option<&ServerReply> {
        self.conn.engine.auth_reply()
    }

    /// True after a successful AUTH.
    pub fn is_authenticated(&self) -> bool {
        self.conn.engine.session().is_authenticated()
    }

    /// The server's address, when the client opened the TCP connection to it itself (not
    /// through a proxy, which resolved the server's name; not over a Unix socket, which has
    /// no address to show).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.peer
    }

    /// True once the connection has ended (the server closed it, a timeout, an error that
    /// left the session out of step): every later call fails, so a caller with more to
    /// send connects again.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// The engine, for the pool's reuse and retry decisions.
    pub(crate) fn engine(&self) -> &crate::engine::Engine {
        &self.conn.engine
    }
}

impl<S: BlockingStream> Drop for Client<S> {
    fn drop(&mut self) {
        // QUIT only on an idle connection: never finish a message behind the caller's back.
        if self.conn.may_quit_on_drop() {
            let _ = block_on(self.conn.quit(Some(QUIT_ON_DROP)));
        }
    }
}
