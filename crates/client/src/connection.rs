//! The stream [`crate::Client::connect`] opens: TCP to a host, or a Unix stream socket when the
//! server is an absolute path (a local MTA's or LMTP server's socket). One type for both, so
//! a program, a pool or a queue holds the same `Client` whichever the configuration names.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::blocking::BlockingStream;

/// The blocking client's connection: TCP, or a Unix stream socket
/// ([`crate::Config::unix_socket`]). The default stream of [`crate::Client`], so
/// `Client::connect` returns the same type for either.
#[derive(Debug)]
#[non_exhaustive]
pub enum Connection {
    /// TCP to a host (directly or through a SOCKS5 proxy).
    Tcp(TcpStream),
    /// A Unix stream socket.
    Unix(UnixStream),
}

impl Connection {
    /// The server's TCP address; `None` over a Unix socket, whose peer has no address to
    /// show (and through a proxy, this is the proxy's).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Connection::Tcp(s) => s.peer_addr().ok(),
            Connection::Unix(_) => None,
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => s.read(buf),
            Connection::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => s.write(buf),
            Connection::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.flush(),
            Connection::Unix(s) => s.flush(),
        }
    }
}

impl BlockingStream for Connection {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => BlockingStream::set_read_timeout(s, timeout),
            Connection::Unix(s) => BlockingStream::set_read_timeout(s, timeout),
        }
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => BlockingStream::set_write_timeout(s, timeout),
            Connection::Unix(s) => BlockingStream::set_write_timeout(s, timeout),
        }
    }
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Connection::Tcp(s) => s.read_now(buf),
            Connection::Unix(s) => s.read_now(buf),
        }
    }
    fn shutdown(&mut self) {
        match self {
            Connection::Tcp(s) => BlockingStream::shutdown(s),
            Connection::Unix(s) => BlockingStream::shutdown(s),
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::tokio_connection::AsyncConnection;

#[cfg(feature = "tokio")]
mod tokio_connection {
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpStream, UnixStream};

    /// The async client's connection: tokio's TCP or Unix stream; the twin of
    /// [`crate::Connection`] and the default stream of [`crate::AsyncClient`].
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum AsyncConnection {
        /// TCP to a host (directly or through a SOCKS5 proxy).
        Tcp(TcpStream),
        /// A Unix stream socket.
        Unix(UnixStream),
    }

    impl AsyncConnection {
        /// The server's TCP address; `None` over a Unix socket.
        pub fn peer_addr(&self) -> Option<SocketAddr> {
            match self {
                AsyncConnection::Tcp(s) => s.peer_addr().ok(),
                AsyncConnection::Unix(_) => None,
            }
        }
    }

    macro_rules! each {
        ($self:ident, $s:ident => $e:expr) => {
            match $self.get_mut() {
                AsyncConnection::Tcp($s) => $e,
                AsyncConnection::Unix($s) => $e,
            }
        };
    }

    impl AsyncRead for AsyncConnection {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            each!(self, s => Pin::new(s).poll_read(cx, buf))
        }
    }

    impl AsyncWrite for AsyncConnection {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            each!(self, s => Pin::new(s).poll_write(cx, buf))
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            each!(self, s => Pin::new(s).poll_flush(cx))
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            each!(self, s => Pin::new(s).poll_shutdown(cx))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
        }
        fn is_write_vectored(&self) -> bool {
            match self {
                AsyncConnection::Tcp(s) => s.is_write_vectored(),
                AsyncConnection::Unix(s) => s.is_write_vectored(),
            }
        }
    }
}
