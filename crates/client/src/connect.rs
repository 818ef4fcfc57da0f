//! Opening the TCP connection: name resolution and address order (RFC 8305), blocking and
//! tokio. A caller with its own stream (a proxy, a Unix socket, a test pipe) skips this.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::Error;

/// The addresses of `host`, IPv6 and IPv4 interleaved as RFC 8305 orders them.
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    // A colon outside an IPv6 address is a mistyped `host:port`: the caller's to fix, not a
    // name to ask DNS about (and retry for days).
    if bare.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err() || bare.is_empty() {
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

fn connect_error(config: &Config, source: io::Error) -> Error {
    Error::Connect {
        host: config.host.clone(),
        port: config.effective_port(),
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

/// `resolve`, within the operation's cap when there is one: the lookup runs on a thread of
/// its own, which is left to finish alone if the cap passes first.
fn resolve_capped(config: &Config, started: Instant) -> Result<Vec<SocketAddr>, Error> {
    let (host, port) = (config.host.clone(), config.effective_port());
    if config.timeouts.attempt.is_none() {
        return resolve(&host, port);
    }
    let left = connect_budget(config, started).map_err(|e| connect_error(config, e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(resolve(&host, port));
    });
    rx.recv_timeout(left).unwrap_or_else(|_| {
        Err(Error::Resolve {
            host: config.host.clone(),
            source: Arc::new(io::Error::new(
                io::ErrorKind::TimedOut,
                "name resolution timed out",
            )),
        })
    })
}

/// Each address in turn until one answers, all within the operation's cap.
pub(crate) fn tcp(config: &Config, started: Instant) -> Result<TcpStream, Error> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in resolve_capped(config, started)? {
        let budget = connect_budget(config, started).map_err(|e| connect_error(config, e))?;
        match TcpStream::connect_timeout(&addr, budget) {
            Ok(s) => {
                // Small pipelined writes must not wait for delayed ACKs.
                s.set_nodelay(true).map_err(|e| connect_error(config, e))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_error(config, last))
}

/// Happy eyeballs (RFC 8305): attempts start 250 ms apart, alternating address families; the
/// first to connect wins and the others are dropped. Name resolution and every attempt end
/// within the operation's cap, counted from `started`.
#[cfg(feature = "tokio")]
pub(crate) async fn tokio_tcp(
    config: &Config,
    started: Instant,
) -> Result<tokio::net::TcpStream, Error> {
    match config.timeouts.attempt {
        None => tokio_tcp_uncapped(config).await,
        Some(cap) => {
            let deadline = tokio::time::Instant::from_std(started) + cap;
            match tokio::time::timeout_at(deadline, tokio_tcp_uncapped(config)).await {
                Ok(r) => r,
                Err(_) => Err(connect_error(
                    config,
                    io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                )),
            }
        }
    }
}

#[cfg(feature = "tokio")]
async fn tokio_tcp_uncapped(config: &Config) -> Result<tokio::net::TcpStream, Error> {
    use tokio::net::TcpStream;
    /// RFC 8305's recommended delay before the next attempt.
    const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

    let port = config.effective_port();
    let host = config.host.clone();
    let addrs = tokio::task::spawn_blocking(move || resolve(&host, port))
        .await
        .map_err(|e| connect_error(config, io::Error::other(e)))??;
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
                s.set_nodelay(true).map_err(|e| connect_error(config, e))?;
                return Ok(s);
            }
            Some(Ok(Err(e))) => last = e,
            Some(Err(e)) => last = io::Error::other(e),
            None => {}
        }
    }
    Err(connect_error(config, last))
}
