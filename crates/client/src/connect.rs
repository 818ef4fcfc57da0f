//! Opening the connection: name resolution and address order (RFC 8305), blocking and
//! tokio, from a chosen source address when one is set, and through a SOCKS5 proxy when one
//! is configured ([`crate::proxy`]); or a Unix stream socket when the server is a path. A
//! caller with its own stream (a test pipe) skips this.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
#[cfg(feature = "tokio")]
use crate::connection::AsyncConnection;
use crate::connection::Connection;
use crate::error::{ConfigError, Error};
#[cfg(feature = "tokio")]
use crate::proxy::handshake_tokio;
use crate::proxy::{handshake_blocking, Handshake, ProxyFailure};

/// The addresses of `host`, IPv6 and IPv4 interleaved as RFC 8305 orders them.
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    // A colon outside an IPv6 address is a mistyped `host:port`: the caller's to fix, not a
    // name to ask DNS about (and retry for days).
    // A slash is a relative socket path (an absolute one never gets here), not a name.
    if bare.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err()
        || bare.is_empty()
        || bare.contains('/')
    {
        return Err(Error::Config(crate::ConfigError::Server(host.to_string())));
    }
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            host: host.to_string(),
            source: Arc::new(source),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Resolve {
            host: host.to_string(),
            source: Arc::new(io::Error::new(io::ErrorKind::NotFound, "no address found")),
        });
    }
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

fn connect_error(host: &str, port: u16, source: io::Error) -> Error {
    Error::Connect {
        host: host.to_string(),
        port,
        source: Arc::new(source),
    }
}

/// How long the next connection attempt may take: the connect timeout, within what is left of
/// the cap on the whole operation (counted from `started`); `TimedOut` when nothing is left.
fn connect_budget(config: &Config, started: Instant) -> io::Result<Duration> {
    let t = config.timeouts.connect;
    let Some(cap) = config.timeouts.attempt else {
        return Ok(t);
    };
    let left = cap.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
    }
    Ok(t.min(left))
}

/// Where the TCP connection goes: the proxy when there is one, else the server.
fn first_hop(config: &Config) -> (String, u16) {
    match &config.proxy {
        Some(p) => (p.host().to_string(), p.port()),
        None => (config.host.clone(), config.effective_port()),
    }
}

/// `resolve`, within the operation's cap when there is one: the lookup runs on a thread of
/// its own, which is left to finish alone if the cap passes first.
fn resolve_capped(
    config: &Config,
    host: &str,
    port: u16,
    started: Instant,
) -> Result<Vec<SocketAddr>, Error> {
    if config.timeouts.attempt.is_none() {
        return resolve(host, port);
    }
    let left = connect_budget(config, started).map_err(|e| connect_error(host, port, e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = host.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(resolve(&owned, port));
    });
    rx.recv_timeout(left).unwrap_or_else(|_| {
        Err(Error::Resolve {
            host: host.to_string(),
            source: Arc::new(io::Error::new(
                io::ErrorKind::TimedOut,
                "name resolution timed out",
            )),
        })
    })
}

/// Only the addresses of the source address's family, when one is set: none left is a
/// configuration error, named as such.
fn same_family(
    config: &Config,
    host: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Error> {
    let Some(src) = config.source_address else {
        return Ok(addrs);
    };
    let kept: Vec<_> = addrs
        .into_iter()
        .filter(|a| a.is_ipv4() == src.is_ipv4())
        .collect();
    if kept.is_empty() {
        let family = if src.is_ipv4() { "IPv4" } else { "IPv6" };
        return Err(Error::Config(ConfigError::SourceFamily {
            address: src,
            host: host.to_string(),
            family,
        }));
    }
    Ok(kept)
}

/// A bind failure: the address is not this host's (or cannot be bound) — a configuration
/// error, not a network one.
fn bind_error(address: IpAddr, e: io::Error) -> Error {
    let reason = if e.raw_os_error() == Some(rustix::io::Errno::ADDRNOTAVAIL.raw_os_error()) {
        "not an address of this host".to_string()
    } else {
        format!("cannot bind to it: {e}")
    };
    Error::Config(ConfigError::SourceAddress { address, reason })
}

/// One blocking attempt at `addr`, from the source address when one is set.
fn connect_one(config: &Config, addr: SocketAddr, budget: Duration) -> Result<TcpStream, Error> {
    let Some(src) = config.source_address else {
        return TcpStream::connect_timeout(&addr, budget).map_err(|e| Error::Io(Arc::new(e)));
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| Error::Io(Arc::new(e)))?;
    sock.bind(&SocketAddr::new(src, 0).into())
        .map_err(|e| bind_error(src, e))?;
    sock.connect_timeout(&addr.into(), budget)
        .map_err(|e| Error::Io(Arc::new(e)))?;
    Ok(sock.into())
}

/// Each address of `host` in turn until one answers, all within the operation's cap.
fn tcp_to(config: &Config, host: &str, port: u16, started: Instant) -> Result<TcpStream, Error> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    let addrs = same_family(config, host, resolve_capped(config, host, port, started)?)?;
    for addr in addrs {
        let budget = connect_budget(config, started).map_err(|e| connect_error(host, port, e))?;
        match connect_one(config, addr, budget) {
            Ok(s) => {
                // Small pipelined writes must not wait for delayed ACKs.
                s.set_nodelay(true)
                    .map_err(|e| connect_error(host, port, e))?;
                return Ok(s);
            }
            Err(Error::Io(e)) => last = unshare(e),
            Err(e) => return Err(e),
        }
    }
    Err(connect_error(host, port, last))
}

/// The error out of its `Arc` (it has no other owner here).
fn unshare(e: Arc<io::Error>) -> io::Error {
    Arc::try_unwrap(e).unwrap_or_else(|e| io::Error::new(e.kind(), e.to_string()))
}

/// A failure reaching the proxy, as the proxy's: its name, its port, its fault.
fn proxy_error(config: &Config, e: Error) -> Error {
    let Some(p) = &config.proxy else { return e };
    let failure = match e {
        Error::Resolve { source, .. } => ProxyFailure::Resolve(source),
        Error::Connect { source, .. } => ProxyFailure::Unreachable(source),
        Error::Io(source) => ProxyFailure::Io(source),
        other => return other,
    };
    Error::Proxy {
        proxy: p.addr(),
        failure,
    }
}

/// The deadline of the proxy's handshake: one connect timeout from now, within the cap.
fn handshake_deadline(config: &Config, started: Instant) -> Result<(Instant, Duration), Error> {
    let budget = connect_budget(config, started).map_err(|_| Error::Proxy {
        proxy: config.proxy.as_ref().map(|p| p.addr()).unwrap_or_default(),
        failure: ProxyFailure::Timeout(config.timeouts.connect),
    })?;
    Ok((Instant::now() + budget, budget))
}

/// The stream to the server: over TCP, or through the proxy. With a proxy, also the
/// proxy's own address towards the server when it told it.
fn tcp(config: &Config, started: Instant) -> Result<(TcpStream, Option<SocketAddr>), Error> {
    let (host, port) = first_hop(config);
    let Some(proxy) = &config.proxy else {
        return tcp_to(config, &host, port, started).map(|s| (s, None));
    };
    let hs = Handshake::new(proxy, &config.host, config.effective_port())?;
    let mut s = tcp_to(config, &host, port, started).map_err(|e| proxy_error(config, e))?;
    let (deadline, limit) = handshake_deadline(config, started)?;
    let bound =
        handshake_blocking(&mut s, hs, deadline, limit).map_err(|failure| Error::Proxy {
            proxy: proxy.addr(),
            failure,
        })?;
    Ok((s, bound))
}

/// The stream to the server for tokio: Happy Eyeballs to the server, or to the proxy and
/// then its handshake.
#[cfg(feature = "tokio")]
async fn tokio_tcp(
    config: &Config,
    started: Instant,
) -> Result<(tokio::net::TcpStream, Option<SocketAddr>), Error> {
    let (host, port) = first_hop(config);
    let Some(proxy) = &config.proxy else {
        return tokio_tcp_to(config, &host, port, started)
            .await
            .map(|s| (s, None));
    };
    let hs = Handshake::new(proxy, &config.host, config.effective_port())?;
    let mut s = tokio_tcp_to(config, &host, port, started)
        .await
        .map_err(|e| proxy_error(config, e))?;
    let (deadline, limit) = handshake_deadline(config, started)?;
    let bound = handshake_tokio(&mut s, hs, deadline, limit)
        .await
        .map_err(|failure| Error::Proxy {
            proxy: proxy.addr(),
            failure,
        })?;
    Ok((s, bound))
}

/// Happy eyeballs (RFC 8305): attempts start 250 ms apart, alternating address families; the
/// first to connect wins and the others are dropped. Name resolution and every attempt end
/// within the operation's cap, counted from `started`.
#[cfg(feature = "tokio")]
async fn tokio_tcp_to(
    config: &Config,
    host: &str,
    port: u16,
    started: Instant,
) -> Result<tokio::net::TcpStream, Error> {
    match config.timeouts.attempt {
        None => tokio_tcp_uncapped(config, host, port).await,
        Some(cap) => {
            let deadline = tokio::time::Instant::from_std(started) + cap;
            match tokio::time::timeout_at(deadline, tokio_tcp_uncapped(config, host, port)).await {
                Ok(r) => r,
                Err(_) => Err(connect_error(
                    host,
                    port,
                    io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                )),
            }
        }
    }
}

/// One tokio attempt at `addr`, from the source address when one is set.
#[cfg(feature = "tokio")]
async fn tokio_connect_one(
    addr: SocketAddr,
    src: Option<IpAddr>,
) -> Result<tokio::net::TcpStream, Error> {
    let Some(src) = src else {
        return tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Error::Io(Arc::new(e)));
    };
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| Error::Io(Arc::new(e)))?;
    sock.bind(SocketAddr::new(src, 0))
        .map_err(|e| bind_error(src, e))?;
    sock.connect(addr).await.map_err(|e| Error::Io(Arc::new(e)))
}

#[cfg(feature = "tokio")]
async fn tokio_tcp_uncapped(
    config: &Config,
    host: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, Error> {
    /// RFC 8305's recommended delay before the next attempt.
    const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

    let owned = host.to_string();
    let addrs = tokio::task::spawn_blocking(move || resolve(&owned, port))
        .await
        .map_err(|e| connect_error(host, port, io::Error::other(e)))??;
    let addrs = same_family(config, host, addrs)?;
    let timeout = config.timeouts.connect;
    let src = config.source_address;
    let mut attempts = tokio::task::JoinSet::new();
    let mut pending = addrs.into_iter();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    loop {
        if let Some(addr) = pending.next() {
            attempts.spawn(async move {
                match tokio::time::timeout(timeout, tokio_connect_one(addr, src)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Io(Arc::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connect timed out",
                    )))),
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
                s.set_nodelay(true)
                    .map_err(|e| connect_error(host, port, e))?;
                return Ok(s);
            }
            Some(Ok(Err(Error::Io(e)))) => last = unshare(e),
            // A source address this host does not have fails every attempt alike.
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => last = io::Error::other(e),
            None => {}
        }
    }
    Err(connect_error(host, port, last))
}

// ---- Unix stream sockets ----------------------------------------------------------------

/// A failure connecting to the Unix socket at `path`. A refusal at a path that is there but
/// is no socket (Linux says "connection refused" for a regular file too) is told as such.
fn unix_error(path: &Path, e: io::Error) -> Error {
    let e = if e.kind() == io::ErrorKind::ConnectionRefused {
        match std::fs::metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                let what = if m.is_dir() {
                    "a directory"
                } else if m.is_file() {
                    "a regular file"
                } else {
                    "another kind of file"
                };
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a socket ({what})"),
                )
            }
            _ => e,
        }
    } else {
        e
    };
    Error::ConnectUnix {
        path: path.to_path_buf(),
        source: Arc::new(e),
    }
}

/// The path, when the configuration can be served over a Unix socket; a proxy or a source
/// address with it is a configuration error, not silently ignored.
fn unix_target(config: &Config) -> Result<Option<&Path>, Error> {
    let Some(path) = config.unix_socket() else {
        return Ok(None);
    };
    if config.proxy.is_some() {
        return Err(Error::Config(ConfigError::UnixSocketProxy(path.into())));
    }
    if let Some(address) = config.source_address {
        return Err(Error::Config(ConfigError::UnixSocketSourceAddress {
            path: path.into(),
            address,
        }));
    }
    Ok(Some(path))
}

/// How long to wait before trying a busy socket again: short at first, at most 50 ms.
fn retry_pause(attempt: u32) -> Duration {
    Duration::from_millis(5u64 << attempt.min(4)).min(Duration::from_millis(50))
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
}

/// One non-blocking connect attempt: `Ok(None)` when the listener's backlog is full (Linux
/// says EAGAIN, and the attempt is over: it must be made again, not waited for).
fn unix_attempt(path: &Path) -> io::Result<Option<UnixStream>> {
    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "path too long for a Unix socket address",
        )
    })?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        Err(e) if e == Errno::AGAIN || e == Errno::INTR => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(Some(s))
}

/// The blocking connect to a Unix socket, ending within the connect timeout (and the cap on
/// the operation): a listener whose backlog is full is tried again until then.
fn unix_blocking(config: &Config, path: &Path, started: Instant) -> Result<UnixStream, Error> {
    let budget = connect_budget(config, started).map_err(|e| unix_error(path, e))?;
    let deadline = Instant::now() + budget;
    let mut attempt = 0;
    loop {
        match unix_attempt(path) {
            Ok(Some(s)) => return Ok(s),
            Ok(None) => {}
            Err(e) => return Err(unix_error(path, e)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(unix_error(path, timed_out()));
        }
        std::thread::sleep(retry_pause(attempt).min(left));
        attempt += 1;
    }
}

/// The blocking client's connection: the Unix socket when the server is a path, else TCP
/// (or through the proxy); with the server's address when known, and the configuration
/// with the EHLO name settled (an address literal only from a TCP local address).
pub(crate) fn open(config: Config, started: Instant) -> Result<Opened<Connection>, Error> {
    if let Some(path) = unix_target(&config)? {
        let s = unix_blocking(&config, path, started)?;
        return Ok((Connection::Unix(s), None, config));
    }
    let (tcp, bound) = self::tcp(&config, started)?;
    let (peer, config) =
        crate::blocking::after_connect(config, tcp.peer_addr(), tcp.local_addr(), bound);
    Ok((Connection::Tcp(tcp), peer, config))
}

/// A connection, the server's address when known, and the configuration to run it with.
pub(crate) type Opened<S> = (S, Option<SocketAddr>, Config);

/// [`open`] for tokio. A full backlog is tried again (tokio, like the kernel, gives up on it
/// at once) until the connect timeout.
#[cfg(feature = "tokio")]
pub(crate) async fn tokio_open(
    config: Config,
    started: Instant,
) -> Result<Opened<AsyncConnection>, Error> {
    if let Some(path) = unix_target(&config)? {
        let budget = connect_budget(&config, started).map_err(|e| unix_error(path, e))?;
        let attempts = async {
            let mut attempt = 0;
            loop {
                match tokio::net::UnixStream::connect(path).await {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return r,
                }
                tokio::time::sleep(retry_pause(attempt)).await;
                attempt += 1;
            }
        };
        let s = tokio::time::timeout(budget, attempts)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
            .map_err(|e| unix_error(path, e))?;
        return Ok((AsyncConnection::Unix(s), None, config));
    }
    let (tcp, bound) = tokio_tcp(&config, started).await?;
    let (peer, config) =
        crate::blocking::after_connect(config, tcp.peer_addr(), tcp.local_addr(), bound);
    Ok((AsyncConnection::Tcp(tcp), peer, config))
}
