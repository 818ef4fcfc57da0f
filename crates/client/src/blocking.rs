//! The blocking client: the [`Engine`] over `std::net::TcpStream` and rustls.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use postline_proto::ehlo::Capabilities;
use postline_proto::session::Phase;

use crate::config::{Config, Tls};
use crate::engine::{Batch, Engine, Step};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::reply::ServerReply;
use crate::tls::{self, TlsInfo};

/// Size of the reads from the message: memory use stays flat whatever the message size.
pub(crate) const BODY_CHUNK: usize = 64 * 1024;
/// How long dropping a client waits for the server's answer to QUIT.
pub(crate) const QUIT_ON_DROP: Duration = Duration::from_secs(5);
/// How long a refused session waits for the answer to its QUIT (RFC 5321 3.1: a server that
/// greets with 554 waits for QUIT).
pub(crate) const QUIT_AFTER_REFUSAL: Duration = Duration::from_secs(2);
/// Bound on the reads that collect what an idle server sent unprompted.
pub(crate) const IDLE_READS: usize = 16;

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking SMTP client on one connection. Send any number of messages with
/// [`Client::send`]; dropping the client says QUIT.
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
pub struct Client {
    engine: Engine,
    stream: Option<Stream>,
    peer: SocketAddr,
    tls_info: Option<TlsInfo>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    read_buf: Vec<u8>,
    /// Pieces of the message pass through here; allocated on the first message, then reused.
    body_buf: Vec<u8>,
    broken: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("tls", &self.tls_info.as_ref().map(|t| &t.version))
            .field("closed", &self.engine.is_closed())
            .finish_non_exhaustive()
    }
}

/// Connects to each address of `host` in turn (IPv6 and IPv4 interleaved, as RFC 8305 orders
/// them) until one answers.
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|source| Error::Connect {
            host: host.to_string(),
            port,
            source,
        })?
        .collect();
    let (v6, v4): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6());
    let mut ordered = Vec::with_capacity(v6.len() + v4.len());
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => ordered.extend(x.into_iter().chain(y)),
        }
    }
    Ok(ordered)
}

fn connect_tcp(config: &Config) -> Result<TcpStream, Error> {
    let port = config.effective_port();
    let addrs = resolve(&config.host, port)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.timeouts.connect) {
            Ok(s) => {
                // Small pipelined writes must not wait for delayed ACKs.
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(Error::Connect {
        host: config.host.clone(),
        port,
        source: last,
    })
}

fn tls_handshake(
    config: &Config,
    tls_config: Arc<rustls::ClientConfig>,
    mut tcp: TcpStream,
) -> Result<(Stream, TlsInfo), Error> {
    let name = tls::server_name(config)?;
    let mut conn = ClientConnection::new(tls_config, name)
        .map_err(|e| tls::handshake_error(config, io::Error::other(e)))?;
    let deadline = Instant::now() + config.timeouts.command;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                phase: Phase::Command,
                after: config.timeouts.command,
            });
        }
        tcp.set_read_timeout(Some(left))?;
        tcp.set_write_timeout(Some(left))?;
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(tls::handshake_error(
                    config,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during handshake",
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(Error::Timeout {
                    phase: Phase::Command,
                    after: config.timeouts.command,
                })
            }
            Err(e) => return Err(tls::handshake_error(config, e)),
        }
    }
    let info = TlsInfo::from_connection(&conn);
    Ok((Stream::Tls(Box::new(StreamOwned::new(conn, tcp))), info))
}

/// Whether the server has closed (or reset) the connection, without waiting: a peek that
/// finds the end of the stream. Data still to read, or nothing yet, is not "gone".
fn peer_gone(tcp: &TcpStream) -> bool {
    if tcp.set_nonblocking(true).is_err() {
        return false;
    }
    let gone = match tcp.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !is_timeout(&e) && e.kind() != io::ErrorKind::Interrupted,
    };
    let _ = tcp.set_nonblocking(false);
    gone
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Client {
    /// Connects, reads the greeting, says EHLO, starts TLS and authenticates as configured.
    pub fn connect(config: Config) -> Result<Client, Error> {
        let engine = Engine::new(config)?;
        let config = engine.config();
        let tls_config = match config.tls {
            Tls::None => None,
            _ => Some(tls::client_config(config)?),
        };
        let tcp = connect_tcp(config)?;
        let peer = tcp.peer_addr()?;
        let (stream, tls_info) = match (&tls_config, config.tls) {
            (Some(tc), Tls::Implicit) => {
                let (s, info) = tls_handshake(config, tc.clone(), tcp)?;
                (s, Some(info))
            }
            _ => (Stream::Plain(tcp), None),
        };
        let mut client = Client {
            engine,
            stream: Some(stream),
            peer,
            tls_info,
            tls_config,
            read_buf: vec![0; 16 * 1024],
            body_buf: Vec::new(),
            broken: false,
        };
        if let Err(e) = client.drive(None) {
            if matches!(e, Error::Rejected(_)) {
                // The session queued QUIT: say it, and wait briefly for the 221.
                let _ = client.run(&mut None, None, Some(QUIT_AFTER_REFUSAL));
            }
            return Err(e);
        }
        Ok(client)
    }

    /// Sends one message, streamed from `message` in fixed-size pieces (dot-stuffing and line
    /// endings are taken care of). Returns the per-recipient outcome when the server accepted
    /// the message for at least one recipient; [`Error::MessageRejected`] otherwise, with the
    /// connection still usable.
    pub fn send(&mut self, envelope: &Envelope, mut message: impl Read) -> Result<Outcome, Error> {
        self.usable()?;
        self.check_idle()?;
        self.engine.begin_send(envelope)?;
        self.drive(Some(&mut message))?;
        self.engine.take_outcome().unwrap_or(Err(Error::Closed))
    }

    /// Sends a message held in memory; its size is declared with `SIZE=` when the envelope
    /// does not say.
    pub fn send_bytes(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Outcome, Error> {
        if envelope.size.is_none() {
            let env = envelope.clone().size(message.len() as u64);
            return self.send(&env, message);
        }
        self.send(envelope, message)
    }

    /// Sends many messages on this connection, deep-pipelined: each message's end of data and
    /// the next message's MAIL, RCPT and DATA leave in one write, so a stream of messages
    /// costs one round trip each when the server offers PIPELINING. Returns each message's
    /// result in order; `Err` only when the connection itself failed before any result.
    pub fn send_many<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
    ) -> Result<Vec<Result<Outcome, Error>>, Error> {
        self.usable()?;
        let mut batch = Batch::new(messages.into_iter().collect());
        let result = self.run(&mut None, Some(&mut batch), None);
        if result.as_ref().is_err_and(|e| !e.leaves_session_usable()) {
            self.broken = true;
        }
        Ok(batch.finish(&mut self.engine, result.as_ref().err()))
    }

    /// NOOP: checks the connection is alive.
    pub fn noop(&mut self) -> Result<ServerReply, Error> {
        self.usable()?;
        self.check_idle()?;
        self.engine.noop()?;
        self.drive(None)?;
        self.engine.take_reply().ok_or(Error::Closed)
    }

    /// Says QUIT and closes the connection.
    pub fn quit(mut self) -> Result<(), Error> {
        self.quit_inner(None)
    }

    /// What the server announced in EHLO (after STARTTLS, the encrypted announcement).
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

    /// Before a new command on an idle connection: whatever the server sent since its last
    /// reply was unprompted. A 421 (idle timeout) ends the session, a close makes the
    /// connection unusable, any other reply is a protocol violation; none of them may be
    /// taken for the answer to the next command.
    fn check_idle(&mut self) -> Result<(), Error> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::Closed);
        };
        stream.tcp().set_nonblocking(true)?;
        let (mut got, mut eof) = (false, false);
        for _ in 0..IDLE_READS {
            match stream.read(&mut self.read_buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    got = true;
                    self.engine.received(&self.read_buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => break,
                Err(e) => {
                    let _ = stream.tcp().set_nonblocking(false);
                    let err = self.lost(e);
                    self.broken = true;
                    return Err(err);
                }
            }
        }
        stream.tcp().set_nonblocking(false)?;
        if got {
            self.drive(None)?;
        }
        if eof {
            let result = self.engine.eof();
            self.broken = true;
            return result.and(Err(Error::Closed));
        }
        self.usable()
    }

    fn quit_inner(&mut self, cap: Option<Duration>) -> Result<(), Error> {
        if self.stream.is_none() || self.broken || self.engine.is_closed() {
            return Ok(());
        }
        self.engine.quit()?;
        let result = self.drive_capped(None, cap);
        if let Some(mut s) = self.stream.take() {
            if let Stream::Tls(t) = &mut s {
                t.conn.send_close_notify();
                let _ = t.conn.complete_io(&mut t.sock);
            }
            let _ = s.tcp().shutdown(std::net::Shutdown::Both);
        }
        result
    }

    fn drive(&mut self, body: Option<&mut dyn Read>) -> Result<(), Error> {
        self.drive_capped(body, None)
    }

    /// Runs the engine until it is idle. Any error leaves the connection unusable, except a
    /// refused message, which the engine reports through its outcome instead.
    fn drive_capped(
        &mut self,
        mut body: Option<&mut dyn Read>,
        cap: Option<Duration>,
    ) -> Result<(), Error> {
        let result = self.run(&mut body, None, cap);
        if result.as_ref().is_err_and(|e| !e.leaves_session_usable()) {
            self.broken = true;
        }
        result
    }

    fn run(
        &mut self,
        body: &mut Option<&mut dyn Read>,
        mut batch: Option<&mut Batch<'_>>,
        cap: Option<Duration>,
    ) -> Result<(), Error> {
        let timeouts = self.engine.config().timeouts;
        let limit = |d: Duration| cap.map_or(d, |c| d.min(c));
        // The reply timer restarts whenever a reply completes, so a server that trickles
        // bytes without finishing a reply still times out.
        let mut timer: Option<(u64, Instant)> = None;
        loop {
            if let Some(b) = batch.as_deref_mut() {
                b.refill(&mut self.engine)?;
            }
            let stream = self.stream.as_mut().ok_or(Error::Closed)?;
            match self.engine.step()? {
                Step::Write => {
                    let t = limit(if self.engine.session.sending().is_some() {
                        timeouts.data_block
                    } else {
                        timeouts.command
                    });
                    stream.tcp().set_write_timeout(Some(t))?;
                    if self.engine.end_of_data_unwritten() && peer_gone(stream.tcp()) {
                        // Gone before the end of data left: certainly not delivered.
                        return Err(self.engine.eof().err().unwrap_or(Error::Closed));
                    }
                    let bytes = self.engine.out.transmit();
                    match stream.write(bytes) {
                        Ok(0) => {
                            return Err(Error::Io(io::Error::new(
                                io::ErrorKind::WriteZero,
                                "connection closed while writing",
                            )))
                        }
                        Ok(n) => self.engine.advance(n),
                        Err(e) if is_timeout(&e) => {
                            return Err(Error::Timeout {
                                phase: Phase::DataBlock,
                                after: t,
                            })
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.lost(e)),
                    }
                    if self.engine.out.transmit().is_empty() {
                        stream.flush().map_err(|e| self.lost(e))?;
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
                    if left.is_zero() {
                        return Err(Error::Timeout { phase, after: t });
                    }
                    stream.tcp().set_read_timeout(Some(left))?;
                    match stream.read(&mut self.read_buf) {
                        Ok(0) => {
                            self.engine.eof()?;
                            return Ok(());
                        }
                        Ok(n) => self.engine.received(&self.read_buf[..n]),
                        Err(e) if is_timeout(&e) => return Err(Error::Timeout { phase, after: t }),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.lost(e)),
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
                    let (s, info) = tls_handshake(self.engine.config(), tc, tcp)?;
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
                    let n = loop {
                        match reader.read(chunk) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(Error::Io(e)),
                        }
                    };
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

    /// An I/O error on the connection: if the end of data was sent and not answered, the
    /// caller must know the message may have been delivered.
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

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.quit_inner(Some(QUIT_ON_DROP));
    }
}
